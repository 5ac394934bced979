"""End-to-end: ``kubealias.psycopg`` inside the pod emulation, against PostgreSQL with TLS.

Each client runs in a fresh Python process inside the pod namespace with **no** ``KUBEALIAS_*``
(and no ``PG*``) variable: kubealias configures itself from the pod's ``/etc/resolv.conf`` alone.
The arguments are the negative control's (``test_pg_lab.py``) exactly: ``host="database"``,
``sslmode="verify-full"``, ``sslrootcert`` = the lab CA.
"""

from __future__ import annotations

import pytest

from integrations.pod import lab as L
from integrations.postgres import lab as P
from integrations.postgres.lab import PgLab, described

pytestmark = pytest.mark.pod


@pytest.mark.parametrize(
    ("host", "instance", "target", "address"),
    [
        ("database", P.EXTERNAL, L.DATABASE_TARGET, L.DATABASE_IP),
        ("postgres", P.PROD_DB, L.POSTGRES_TARGET, L.POSTGRES_IP),
    ],
)
def test_connect_with_the_same_arguments_verifies_the_external_name(
    pg_clean: PgLab, host: str, instance: str, target: str, address: str
) -> None:
    out = pg_clean.run_client("pg_connect_both", host)
    assert f'does not match host name "{host}"' in out["plain"], out
    assert out["ssl"] is True
    # libpq was given the TLS name as host and the resolved address as hostaddr.
    assert out["described"] == described(instance, target, address, pg_clean.port), out
    # One authorized TLS connection on the right server, none anywhere else.
    (conn,) = pg_clean.authorized(instance, min_entries=1)
    assert (conn.user, conn.database, conn.ssl) == ("app", "app", True)
    others = [n for n in pg_clean.instances if n != instance]
    assert all(pg_clean.authorized(n) == [] for n in others)


def test_every_form_of_the_service_name(pg_clean: PgLab) -> None:
    hosts = [
        "database",
        "database.production",
        "database.production.svc",
        L.DATABASE,
        L.DATABASE + ".",
        "Database.Production",
    ]
    out = pg_clean.run_client("pg_describe", {"hosts": hosts})
    for seen in out:
        assert seen == described(P.EXTERNAL, L.DATABASE_TARGET, L.DATABASE_IP, pg_clean.port)


def test_async_connection(pg_clean: PgLab) -> None:
    out = pg_clean.run_client("pg_describe", {"hosts": ["database"], "client": "kubealias-async"})[
        0
    ]
    assert out == described(P.EXTERNAL, L.DATABASE_TARGET, L.DATABASE_IP, pg_clean.port)


def test_verification_is_never_weakened(pg_clean: PgLab) -> None:
    """Another CA still fails; ``verify-ca`` and ``require`` stay what they are."""
    cases = [
        ("wrong-ca", {"sslrootcert": pg_clean.wrong_ca_file}),
        ("verify-ca", {"sslmode": "verify-ca"}),
        ("no-root-cert", {"sslrootcert": "/nonexistent/root.crt"}),
    ]
    out = pg_clean.run_client("pg_verification", cases)
    assert "certificate verify failed" in out["wrong-ca"], out
    assert out["verify-ca"] == "connected", out
    assert "root certificate file" in out["no-root-cert"], out


def test_explicit_resolver(pg_clean: PgLab) -> None:
    pg_clean.pod.clear_query_log()
    out = pg_clean.run_client("pg_explicit_resolver")
    want = described(P.EXTERNAL, L.DATABASE_TARGET, L.DATABASE_IP, pg_clean.port)
    assert out["first"] == out["second"] == want, out
    assert out["cached"]["chain"] == [L.DATABASE, L.DATABASE_TARGET, L.DATABASE_HOST]
    # Both connects and the last resolve share the cache: one lookup (A, AAAA) in all.
    assert 1 <= pg_clean.pod.query_count(L.DATABASE) <= 2

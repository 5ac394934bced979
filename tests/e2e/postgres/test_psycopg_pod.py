"""End-to-end: ``kubealias.psycopg`` inside the pod emulation, against PostgreSQL with TLS.

Each client runs in a fresh Python process inside the pod namespace with **no** ``KUBEALIAS_*``
(and no ``PG*``) variable: kubealias configures itself from the pod's ``/etc/resolv.conf`` alone.
The arguments are the negative control's (``test_pg_lab.py``) exactly: ``host="database"``,
``sslmode="verify-full"``, ``sslrootcert`` = the lab CA.
"""

from __future__ import annotations

from typing import Any

import pytest

from integrations.pod import lab as L
from integrations.postgres import lab as P
from integrations.postgres.lab import PgLab

pytestmark = pytest.mark.pod


def expected(server: str, host: str, address: str, port: int) -> dict[str, Any]:
    """What ``describe(conn)`` gives for a verified TLS connection to ``server``."""
    return {
        "server": server,
        "ssl": True,
        "tls_version": "TLSv1.3",
        "server_addr": address,
        "host": host,
        "hostaddr": address,
        "port": port,
    }


CONNECT = """
import psycopg, kubealias.psycopg
failed = None
try:
    psycopg.connect(**kwargs(HOST))  # the article's call: fails
except psycopg.OperationalError as exc:
    failed = str(exc)
conn = kubealias.psycopg.connect(**kwargs(HOST))  # the same arguments
assert isinstance(conn, psycopg.Connection) and isinstance(conn, kubealias.psycopg.Connection)
row = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
emit({"plain": failed, "ssl": row[0], "described": describe(conn), "closed": conn.closed})
"""


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
    out = pg_clean.run_client(f"HOST = {host!r}\n{CONNECT}")
    assert f'does not match host name "{host}"' in out["plain"], out
    assert out["ssl"] is True
    # libpq was given the TLS name as host and the resolved address as hostaddr.
    assert out["described"] == expected(instance, target, address, pg_clean.port), out
    # One authorized TLS connection on the right server, none anywhere else.
    (conn,) = pg_clean.authorized(instance, min_entries=1)
    assert (conn.user, conn.database, conn.ssl) == ("app", "app", True)
    others = [n for n in pg_clean.instances if n != instance]
    assert all(pg_clean.authorized(n) == [] for n in others)


FORMS = """
import kubealias.psycopg
out = []
for host in HOSTS:
    with kubealias.psycopg.connect(**kwargs(host)) as conn:
        out.append(describe(conn))
emit(out)
"""


def test_every_form_of_the_service_name(pg_clean: PgLab) -> None:
    hosts = [
        "database",
        "database.production",
        "database.production.svc",
        L.DATABASE,
        L.DATABASE + ".",
        "Database.Production",
    ]
    out = pg_clean.run_client(f"HOSTS = {hosts!r}\n{FORMS}")
    for described in out:
        assert described == expected(P.EXTERNAL, L.DATABASE_TARGET, L.DATABASE_IP, pg_clean.port)


ASYNC_CONNECT = """
import asyncio, psycopg, kubealias.psycopg

async def main():
    conn = await kubealias.psycopg.AsyncConnection.connect(**kwargs("database"))
    async with conn:
        assert isinstance(conn, psycopg.AsyncConnection)
        return await adescribe(conn)

emit(asyncio.run(main()))
"""


def test_async_connection(pg_clean: PgLab) -> None:
    out = pg_clean.run_client(ASYNC_CONNECT)
    assert out == expected(P.EXTERNAL, L.DATABASE_TARGET, L.DATABASE_IP, pg_clean.port)


VERIFICATION_KEPT = """
import psycopg, kubealias.psycopg
out = {}
for label, overrides in CASES:
    try:
        kubealias.psycopg.connect(**kwargs("database", **overrides)).close()
        out[label] = "connected"
    except psycopg.OperationalError as exc:
        out[label] = str(exc)
emit(out)
"""


def test_verification_is_never_weakened(pg_clean: PgLab) -> None:
    """Another CA still fails; ``verify-ca`` and ``require`` stay what they are."""
    cases = [
        ("wrong-ca", {"sslrootcert": pg_clean.wrong_ca_file}),
        ("verify-ca", {"sslmode": "verify-ca"}),
        ("no-root-cert", {"sslrootcert": "/nonexistent/root.crt"}),
    ]
    out = pg_clean.run_client(f"CASES = {cases!r}\n{VERIFICATION_KEPT}")
    assert "certificate verify failed" in out["wrong-ca"], out
    assert out["verify-ca"] == "connected", out
    assert "root certificate file" in out["no-root-cert"], out


RESOLVER = """
import kubealias, kubealias.psycopg
from kubealias.psycopg import Connection
resolver = kubealias.Resolver()
cls = Connection.using(resolver)
with cls.connect(**kwargs("database")) as conn:
    first = describe(conn)
with kubealias.psycopg.connect(**kwargs("database"), resolver=resolver) as conn:
    second = describe(conn)
emit({"first": first, "second": second, "cached": resolver.resolve("database").to_dict()})
"""


def test_explicit_resolver(pg_clean: PgLab) -> None:
    pg_clean.pod.clear_query_log()
    out = pg_clean.run_client(RESOLVER)
    want = expected(P.EXTERNAL, L.DATABASE_TARGET, L.DATABASE_IP, pg_clean.port)
    assert out["first"] == out["second"] == want, out
    assert out["cached"]["chain"] == [L.DATABASE, L.DATABASE_TARGET, L.DATABASE_HOST]
    # Both connects and the last resolve share the cache: one lookup (A, AAAA) in all.
    assert 1 <= pg_clean.pod.query_count(L.DATABASE) <= 2

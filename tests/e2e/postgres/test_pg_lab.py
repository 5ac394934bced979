"""The PostgreSQL lab itself, and the negative control: the article's app.py fails as in a pod.

No kubealias here. Every client runs inside the pod namespace (``PgLab.run_client``), so
``database`` and ``postgres`` resolve through the pod's ``/etc/resolv.conf`` and BIND:
``database -> mydb.abc123.us-east-1.rds.amazonaws.com -> ... -> 127.0.0.10`` and
``postgres -> prod-db.abc123.us-east-1.rds.amazonaws.com -> 127.0.0.11``.
"""

from __future__ import annotations

from typing import Any

import pytest

from integrations.pod import lab as L
from integrations.postgres import lab as P
from integrations.postgres.lab import PgLab

pytestmark = pytest.mark.pod

#: The article's app.py as written, but for psycopg 3 (psycopg2 is not installed; psycopg 3's
#: connect takes the same keyword arguments and goes through the same libpq). The TLS settings
#: come from libpq's environment (PGSSLMODE, PGSSLROOTCERT), as a deployment would set them.
ARTICLE_APP = """
# app.py
# Database connection uses the Kubernetes service name
# No cloud provider-specific hostnames in application code
import os
import psycopg

# Same connection string works in any environment
DATABASE_HOST = os.getenv("DATABASE_HOST", "postgres")
DATABASE_PORT = os.getenv("DATABASE_PORT", "5432")
DATABASE_NAME = os.getenv("DATABASE_NAME", "myapp")

try:
    connection = psycopg.connect(
        host=DATABASE_HOST,
        port=DATABASE_PORT,
        dbname=DATABASE_NAME,
        user=os.getenv("DATABASE_USER"),
        password=os.getenv("DATABASE_PASSWORD"),
    )
    emit({"connected": describe(connection)})
except psycopg.OperationalError as exc:
    emit({"error": type(exc).__name__, "message": str(exc)})
"""


def app_env(lab: PgLab, host: str | None, **extra: str) -> dict[str, str]:
    """The article's DATABASE_* variables for the lab, plus libpq's TLS settings."""
    env = {
        "DATABASE_PORT": str(lab.port),
        "DATABASE_NAME": lab.dbname,
        "DATABASE_USER": lab.user,
        "DATABASE_PASSWORD": lab.password,
        "PGSSLMODE": "verify-full",
        "PGSSLROOTCERT": lab.cafile,
        **extra,
    }
    if host is not None:
        env["DATABASE_HOST"] = host
    return env


@pytest.mark.parametrize(
    ("host", "target", "instance"),
    [
        ("database", L.DATABASE_TARGET, P.EXTERNAL),
        (None, L.POSTGRES_TARGET, P.PROD_DB),  # the article's default, "postgres"
    ],
    ids=["database", "postgres"],
)
def test_article_app_fails_hostname_verification(
    pg_clean: PgLab, host: str | None, target: str, instance: str
) -> None:
    result = pg_clean.run_client(ARTICLE_APP, env=app_env(pg_clean, host))
    alias = host or "postgres"
    assert result.get("error") == "OperationalError", result
    # Exactly the failure of the issue: the right server, which cannot prove it is "database".
    message = result["message"]
    assert f'server certificate for "{target}" does not match host name "{alias}"' in message
    # The server saw the connection arrive and never authorized it (the client hung up).
    seen = pg_clean.connections(instance, min_entries=1)
    assert seen, pg_clean.server_log(instance)
    assert not any(c.authorized for c in seen), seen


def test_article_app_without_verification_reaches_the_server(pg_clean: PgLab) -> None:
    """What users fall back to (``sslmode=require``): it works, unverified."""
    env = app_env(pg_clean, "database", PGSSLMODE="require")
    result = pg_clean.run_client(ARTICLE_APP, env=env)
    assert result["connected"]["server"] == P.EXTERNAL, result
    assert result["connected"]["ssl"] is True, result


LAB_CHECKS = """
import psycopg
out = {}
for name, host in TARGETS:
    try:
        with psycopg.connect(**kwargs(host)) as conn:
            out[name] = describe(conn)
    except psycopg.OperationalError as exc:
        out[name] = {"error": str(exc)}
# No TLS: pg_hba.conf rejects every non-TLS TCP connection.
try:
    psycopg.connect(**kwargs(DATABASE_TARGET, sslmode="disable"))
    out["no-tls"] = "connected"
except psycopg.OperationalError as exc:
    out["no-tls"] = str(exc)
# The provider's own CNAME hop (the chain's last name) is not on the certificate.
try:
    psycopg.connect(**kwargs(LAST_HOP))
    out["last-hop"] = "connected"
except psycopg.OperationalError as exc:
    out["last-hop"] = str(exc)
# Another CA did not sign the lab's certificates.
try:
    psycopg.connect(**kwargs(DATABASE_TARGET, sslrootcert=WRONG_CAFILE))
    out["wrong-ca"] = "connected"
except psycopg.OperationalError as exc:
    out["wrong-ca"] = str(exc)
emit(out)
"""


def test_each_server_has_its_own_name_address_and_certificate(pg_clean: PgLab) -> None:
    targets = [
        (P.EXTERNAL, L.DATABASE_TARGET),
        (P.PROD_DB, L.POSTGRES_TARGET),
    ]
    code = f"TARGETS = {targets!r}\nLAST_HOP = {L.DATABASE_HOST!r}\n{LAB_CHECKS}"
    out: dict[str, Any] = pg_clean.run_client(code)
    for (name, target), address in zip(targets, (L.DATABASE_IP, L.POSTGRES_IP), strict=True):
        assert out[name] == {
            "server": name,
            "ssl": True,
            "tls_version": "TLSv1.3",
            "server_addr": address,
            "host": target,
            "hostaddr": address,
            "port": pg_clean.port,
        }, out
    assert "no encryption" in out["no-tls"], out
    assert f'does not match host name "{L.DATABASE_HOST}"' in out["last-hop"], out
    assert "certificate verify failed" in out["wrong-ca"], out


def test_internal_server_certificate_is_for_the_in_cluster_names(pg_clean: PgLab) -> None:
    code = (
        "import psycopg\n"
        f"emit([describe(psycopg.connect(**kwargs(n, hostaddr=DATABASE_CLUSTER_IP)))"
        f" for n in {list(P.CLUSTER_NAMES)!r}])\n"
    )
    for name, out in zip(P.CLUSTER_NAMES, pg_clean.run_client(code), strict=True):
        assert (out["server"], out["ssl"], out["host"]) == (P.INTERNAL, True, name), out
        assert out["hostaddr"] == L.DATABASE_CLUSTER_IP, out


def test_server_logs_record_tls_connections(pg_clean: PgLab) -> None:
    pg_clean.run_client(
        "import psycopg\npsycopg.connect(**kwargs(DATABASE_TARGET)).close()\nemit(True)\n"
    )
    (conn,) = pg_clean.authorized(P.EXTERNAL, min_entries=1)
    assert (conn.user, conn.database, conn.ssl, conn.protocol) == ("app", "app", True, "TLSv1.3")
    assert pg_clean.authorized(P.PROD_DB) == [] and pg_clean.authorized(P.INTERNAL) == []
    assert pg_clean.admin(P.INTERNAL, "SELECT name FROM whoami") == [(P.INTERNAL,)]

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

#: The article's app.py as written, for psycopg 3 (``integrations/clients/pg_article_app.py``).
ARTICLE_APP = "pg_article_app"


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


def test_each_server_has_its_own_name_address_and_certificate(pg_clean: PgLab) -> None:
    targets = [
        (P.EXTERNAL, L.DATABASE_TARGET),
        (P.PROD_DB, L.POSTGRES_TARGET),
    ]
    args = {"targets": targets, "last_hop": L.DATABASE_HOST, "database_target": L.DATABASE_TARGET}
    out: dict[str, Any] = pg_clean.run_client("pg_lab_checks", args)
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
    args = {
        "hosts": list(P.CLUSTER_NAMES),
        "overrides": {"hostaddr": L.DATABASE_CLUSTER_IP},
        "client": "psycopg",
    }
    for name, out in zip(P.CLUSTER_NAMES, pg_clean.run_client("pg_describe", args), strict=True):
        assert (out["server"], out["ssl"], out["host"]) == (P.INTERNAL, True, name), out
        assert out["hostaddr"] == L.DATABASE_CLUSTER_IP, out


def test_server_logs_record_tls_connections(pg_clean: PgLab) -> None:
    pg_clean.run_client("pg_describe", {"hosts": [L.DATABASE_TARGET], "client": "psycopg"})
    (conn,) = pg_clean.authorized(P.EXTERNAL, min_entries=1)
    assert (conn.user, conn.database, conn.ssl, conn.protocol) == ("app", "app", True, "TLSv1.3")
    assert pg_clean.authorized(P.PROD_DB) == [] and pg_clean.authorized(P.INTERNAL) == []
    assert pg_clean.admin(P.INTERNAL, "SELECT name FROM whoami") == [(P.INTERNAL,)]

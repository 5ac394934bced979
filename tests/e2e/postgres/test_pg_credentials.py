"""End-to-end: a DNS answer never chooses a credential; an unresolvable host fails over.

libpq picks the password of a password file (``.pgpass``, ``PGPASSFILE``, ``passfile=``) by the
``host`` it is given. A forged ExternalName (``database`` -> the ``prod-db`` target, whose server
here plays the attacker's) must not make kubealias hand libpq a ``host`` that picks the password
stored for the forged target: under every sslmode that does not verify the host name, libpq gets
``host=database`` and only the address from the answer. The file holds the role's real password
for ``database`` and another one for the forged target, so the server proves which one it got:
the connection is authorized (the ``database`` entry) or fails its password check (the other).

Failover (libpq's multi-host list): a host kubealias cannot resolve goes to libpq as given, which
moves on to the next host; kubealias raises only when no host is left.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from integrations.pod import lab as L
from integrations.postgres import lab as P
from integrations.postgres.lab import PgLab, described

pytestmark = pytest.mark.pod

#: The password stored for the forged target: the server's role does not have it.
OTHER_PASSWORD = "pw-stored-for-the-forged-target"
LOOP = f"loop.{L.NAMESPACE}.svc.{L.CLUSTER_DOMAIN}"


def password_file(lab: PgLab, directory: Path) -> str:
    """A password file (mode 600) with the real password for ``database`` and another one
    for the forged target."""
    path = directory / "pgpass"
    path.write_text(
        f"{L.POSTGRES_TARGET}:{lab.port}:{lab.dbname}:{lab.user}:{OTHER_PASSWORD}\n"
        f"database:{lab.port}:{lab.dbname}:{lab.user}:{lab.password}\n"
    )
    path.chmod(0o600)
    return str(path)


def test_a_forged_cname_never_chooses_the_stored_password(pg_clean: PgLab, tmp_path: Path) -> None:
    passfile = password_file(pg_clean, tmp_path)
    pg_clean.pod.set_cname(L.DATABASE, L.POSTGRES_TARGET)  # the forgery
    prefer = {"password": None, "sslmode": "prefer", "passfile": passfile}
    url = (
        f"postgresql+psycopg://{pg_clean.user}@database:{pg_clean.port}/{pg_clean.dbname}"
        f"?sslmode=prefer&passfile={passfile}"
    )
    cases: list[dict[str, Any]] = [
        # Without kubealias the forgery reaches the same server, with the database password.
        {"label": "plain", "entry": "plain", "overrides": prefer},
        {"label": "prefer", "entry": "connect", "overrides": prefer},
        {
            "label": "libpq-default-pgpassfile",
            "entry": "connect",
            "overrides": {"password": None, "sslmode": None},
            "env": {"PGPASSFILE": passfile},
        },
        {
            "label": "pgsslmode-require",
            "entry": "connect",
            "overrides": {"password": None, "sslmode": None, "passfile": passfile},
            "env": {"PGSSLMODE": "require"},
        },
        {
            "label": "verify-ca",
            "entry": "connect",
            "overrides": {"password": None, "sslmode": "verify-ca", "passfile": passfile},
        },
        {"label": "async", "entry": "AsyncConnection", "overrides": prefer},
        {"label": "sqlalchemy", "entry": "sqlalchemy", "url": url},
        # verify-full: host is the TLS name, which the server proves it holds; the password
        # stored for that verified name is the one sent (docs/design.md, Trust).
        {
            "label": "verify-full",
            "entry": "connect",
            "overrides": {"password": None, "passfile": passfile},
        },
    ]
    out = pg_clean.run_client("pg_credentials", cases)
    reached = described(P.PROD_DB, "database", L.POSTGRES_IP, pg_clean.port)
    for label in ("plain", "prefer", "libpq-default-pgpassfile", "pgsslmode-require", "verify-ca"):
        assert out[label] == {"described": reached}, (label, out[label])
    for label in ("async", "sqlalchemy"):
        assert out[label] == {"described": reached}, (label, out[label])
    assert "password authentication failed" in out["verify-full"]["error"], out["verify-full"]
    # The forged target's server saw the database password every time but the verified one.
    logged = pg_clean.connections(P.PROD_DB, min_entries=len(cases))
    assert sum(c.authorized for c in logged) == len(cases) - 1, logged
    assert [c.error for c in logged if not c.authorized] == [
        f'password authentication failed for user "{pg_clean.user}"'
    ], logged
    assert pg_clean.connections(P.EXTERNAL) == []


def test_an_unresolvable_host_fails_over_to_the_next(pg_clean: PgLab) -> None:
    # database is a CNAME loop: kubealias cannot resolve it (nor can libpq); postgres works.
    pg_clean.pod.set_cname(L.DATABASE, LOOP)
    pg_clean.pod.set_cname(LOOP, L.DATABASE)
    cases: list[dict[str, Any]] = [
        {"label": "sync", "entry": "connect", "host": "database,postgres"},
        {"label": "async", "entry": "AsyncConnection", "host": "database,postgres"},
        {"label": "none-left", "entry": "connect", "host": "database,loop"},
    ]
    out = pg_clean.run_client("pg_credentials", cases)
    reached = described(P.PROD_DB, L.POSTGRES_TARGET, L.POSTGRES_IP, pg_clean.port)
    assert out["sync"] == out["async"] == {"described": reached}, out
    assert out["none-left"]["kubealias_cause"] is True, out
    lines = out["none-left"]["error"].splitlines()
    assert "cannot resolve 'database'" in lines[0] and "cannot resolve 'loop'" in lines[1], out
    assert pg_clean.connections(P.EXTERNAL) == []

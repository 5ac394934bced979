"""End-to-end: ``kubealias.asyncpg`` inside the pod emulation, against PostgreSQL 15 with TLS.

Each client runs in a fresh Python process inside the pod namespace with no ``KUBEALIAS_*`` or
``PG*`` variable: kubealias configures itself from the pod's ``/etc/resolv.conf`` alone. The
lab's servers accept TCP only with TLS and a password, so every "connected" below is a verified
TLS connection that authenticated.

``direct_tls`` is not tested here: PostgreSQL accepts TLS without the SSLRequest only from
version 17 (``sslnegotiation=direct``), and the lab runs PostgreSQL 15. It is tested against a
TLS server in ``tests/unit/test_asyncpg_adapter.py`` (``test_direct_tls``).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from integrations.pod import lab as L
from integrations.postgres import lab as P
from integrations.postgres.lab import PgLab

pytestmark = pytest.mark.pod

TTL = 1
WAIT = TTL + 0.3
ALLOWLIST_ADVICE = "kubealias WARNING kubealias verifies TLS against names learned from DNS"


def _server(name: str, address: str) -> dict[str, Any]:
    return {"server": name, "ssl": True, "tls_version": "TLSv1.3", "server_addr": address}


EXTERNAL = _server(P.EXTERNAL, L.DATABASE_IP)


def test_plain_asyncpg_fails_and_kubealias_connects_with_the_same_arguments(
    pg_clean: PgLab,
) -> None:
    cases = [
        ["plain-verify-full", {"client": "plain"}],
        ["plain-context", {"client": "plain", "ssl": "context"}],
        ["verify-full", {}],
        ["context", {"ssl": "context"}],
        ["postgres", {"host": "postgres"}],
        ["fqdn", {"host": L.DATABASE}],
    ]
    out = pg_clean.run_client("pg_asyncpg", {"cases": cases})
    for label in ("plain-verify-full", "plain-context"):
        assert out[label]["error"] == "SSLCertVerificationError", out[label]
        assert any("'database'" in t for t in out[label]["texts"]), out[label]
    assert out["verify-full"] == EXTERNAL, out
    assert out["context"] == EXTERNAL, out
    assert out["fqdn"] == EXTERNAL, out
    assert out["postgres"] == _server(P.PROD_DB, L.POSTGRES_IP), out
    # One authorized TLS connection per kubealias case, each on the server its name leads to.
    assert len(pg_clean.authorized(P.EXTERNAL, min_entries=3)) == 3
    assert len(pg_clean.authorized(P.PROD_DB, min_entries=1)) == 1
    assert pg_clean.authorized(P.INTERNAL) == []


def test_verification_is_never_weakened(pg_clean: PgLab) -> None:
    cases = [
        ["wrong-ca", {"ssl": "wrong-ca"}],
        ["verify-ca", {"ssl": "verify-ca"}],
        ["require", {"ssl": "require"}],
    ]
    out = pg_clean.run_client("pg_asyncpg", {"cases": cases})
    assert out["wrong-ca"]["error"] == "SSLCertVerificationError", out
    assert out["verify-ca"] == EXTERNAL, out  # the name is not checked, the CA is
    assert out["require"] == EXTERNAL, out
    assert len(pg_clean.authorized(P.EXTERNAL, min_entries=2)) == 2


def test_unresolvable_alias_is_asyncpgs_connection_error_with_no_password(
    pod: L.PodLab, pg_clean: PgLab
) -> None:
    # The ExternalName now points to a name that does not exist.
    pod.set_cname(L.DATABASE, "nowhere.example.test")
    cases = [["gone", {}], ["gone-sqlalchemy", {"client": "sqlalchemy", "ssl": "context"}]]
    out = pg_clean.run_client("pg_asyncpg", {"cases": cases})
    for label in ("gone", "gone-sqlalchemy"):
        assert out[label]["error"] == "ConnectionError", out[label]
        assert out[label]["cause"] == "ResolutionError", out[label]
        assert any("nowhere.example.test" in t for t in out[label]["texts"]), out[label]
        assert all(pg_clean.password not in t for t in out[label]["texts"]), out[label]
    assert out["logs"], "the run logged nothing: the check below would prove nothing"
    assert all(pg_clean.password not in line for line in out["logs"])
    assert all(pg_clean.authorized(n) == [] for n in pg_clean.instances)


def test_sqlalchemy_asyncpg_engine(pg_clean: PgLab) -> None:
    out = pg_clean.run_client(
        "pg_asyncpg", {"cases": [["engine", {"client": "sqlalchemy", "ssl": "context"}]]}
    )
    assert out["engine"] == EXTERNAL, out


def test_pool_follows_externalname_to_clusterip(pod: L.PodLab, pg_clean: PgLab) -> None:
    pod.set_cname(L.DATABASE, L.DATABASE_TARGET, ttl=TTL)
    with pg_clean.start_client("pg_asyncpg_pool", {"wait": WAIT}) as client:
        phase1 = client.read()
        assert phase1["seen"] == [EXTERNAL, EXTERNAL], phase1
        before = pg_clean.authorized(P.EXTERNAL, min_entries=2)
        assert len(before) >= 2 and all(c.ssl for c in before), before

        # Phase 3 of the article: "kubectl apply" of the ClusterIP Service.
        pod.set_a(L.DATABASE, L.DATABASE_CLUSTER_IP, ttl=TTL)
        assert pod.getent("database") == [L.DATABASE_CLUSTER_IP]
        client.send()
        phase2 = client.finish()

    internal = _server(P.INTERNAL, L.DATABASE_CLUSTER_IP)
    # The in-cluster server's certificate is for `database`: verified as given, no alias.
    assert phase2["seen"] == [internal, internal], phase2
    assert [p for p in phase2["problems"] if not p.startswith(ALLOWLIST_ADVICE)] == [], phase2
    after = pg_clean.authorized(P.INTERNAL, min_entries=2)
    assert len(after) >= 2 and all(c.ssl and c.user == "app" for c in after), after
    assert len(pg_clean.authorized(P.EXTERNAL)) == len(before)


# --- examples/asyncpg_app.py --------------------------------------------------------------------

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "asyncpg_app.py"
KUBEALIAS_IMPORT = "import kubealias.asyncpg as asyncpg  # was: import asyncpg"
UNPINNED_ONLY = re.compile(
    r"\S+:\d+: UnpinnedTargetWarning: kubealias verifies TLS [^\n]*\n(  .*\n)?"
)


def _run_example(lab: PgLab, path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "DATABASE_HOST": "database",
        "DATABASE_PORT": str(lab.port),
        "DATABASE_NAME": lab.dbname,
        "DATABASE_USER": lab.user,
        "DATABASE_PASSWORD": lab.password,
        "PGSSLROOTCERT": lab.cafile,
    }
    return lab.pod.exec([sys.executable, str(path)], env=env, timeout=60)


def test_asyncpg_app(pg_clean: PgLab) -> None:
    result = _run_example(pg_clean, EXAMPLE)
    assert result.returncode == 0 and UNPINNED_ONLY.fullmatch(result.stderr), result
    assert result.stdout == (
        f"database: connected to {L.DATABASE_IP} port {pg_clean.port}\n"
        "server external, database app, TLS TLSv1.3\n"
    )
    assert pg_clean.authorized(P.EXTERNAL, min_entries=1)


def test_asyncpg_app_with_the_import_changed_back_fails(pg_clean: PgLab, tmp_path: Path) -> None:
    source = EXAMPLE.read_text()
    assert source.count(KUBEALIAS_IMPORT) == 1
    unchanged = tmp_path / "asyncpg_app.py"
    unchanged.write_text(source.replace(KUBEALIAS_IMPORT, "import asyncpg"))
    result = _run_example(pg_clean, unchanged)
    assert result.returncode == 1, result
    assert "certificate is not valid for 'database'" in result.stderr, result.stderr
    assert pg_clean.password not in result.stderr + result.stdout

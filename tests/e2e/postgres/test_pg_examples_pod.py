"""End-to-end: ``examples/psycopg_app.py``, ``psycopg2_app.py``, ``sqlalchemy_app.py`` in the pod.

The examples run as a pod would run them: ``python examples/...`` with the article's
``DATABASE_*`` variables and libpq's ``PGSSLROOTCERT``, no ``KUBEALIAS_*``. ``psycopg_app.py``
is the article's app.py with one changed import: with that import changed back
(``import psycopg``) the same file fails as the article's app does. With no allowlist set,
kubealias's one ``UnpinnedTargetWarning`` is all they write to stderr.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from integrations.pod import lab as L
from integrations.postgres import lab as P
from integrations.postgres.lab import PgLab

pytestmark = pytest.mark.pod

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
KUBEALIAS_IMPORT = "import kubealias.psycopg as psycopg  # was: import psycopg2"

TARGETS = {
    "postgres": (L.POSTGRES_TARGET, L.POSTGRES_IP, P.PROD_DB),
    "database": (L.DATABASE_TARGET, L.DATABASE_IP, P.EXTERNAL),
}


def app_env(lab: PgLab, host: str | None) -> dict[str, str]:
    env = {
        "DATABASE_PORT": str(lab.port),
        "DATABASE_NAME": lab.dbname,
        "DATABASE_USER": lab.user,
        "DATABASE_PASSWORD": lab.password,
        "PGSSLROOTCERT": lab.cafile,
    }
    if host is not None:
        env["DATABASE_HOST"] = host
    return env


# Python's warning format: "file:line: Category: message", then the source line.
UNPINNED_ONLY = re.compile(
    r"\S+:\d+: UnpinnedTargetWarning: kubealias verifies TLS [^\n]*\n(  .*\n)?"
)


def run(lab: PgLab, argv: list[str], host: str | None) -> subprocess.CompletedProcess[str]:
    return lab.pod.exec([sys.executable, *argv], env=app_env(lab, host), timeout=60)


def expected_output(lab: PgLab, alias: str, suffix: str = "") -> str:
    target, address, server = TARGETS[alias]
    return (
        f"{alias}: connected to {target} at {address} port {lab.port}{suffix}\n"
        f"server {server}, database app, TLS TLSv1.3, sslmode verify-full\n"
    )


@pytest.mark.parametrize("host", [None, "database"], ids=["default-postgres", "database"])
def test_psycopg_app(pg_clean: PgLab, host: str | None) -> None:
    result = run(pg_clean, [str(EXAMPLES / "psycopg_app.py")], host)
    assert result.returncode == 0 and UNPINNED_ONLY.fullmatch(result.stderr), result
    assert result.stdout == expected_output(pg_clean, host or "postgres")
    (conn,) = pg_clean.authorized(TARGETS[host or "postgres"][2], min_entries=1)
    assert conn.ssl


def test_psycopg_app_with_the_import_changed_back_fails(pg_clean: PgLab, tmp_path: Path) -> None:
    source = (EXAMPLES / "psycopg_app.py").read_text()
    assert source.count(KUBEALIAS_IMPORT) == 1
    unchanged = tmp_path / "psycopg_app.py"
    unchanged.write_text(source.replace(KUBEALIAS_IMPORT, "import psycopg"))
    result = run(pg_clean, [str(unchanged)], None)
    assert result.returncode == 1, result
    assert (
        f'server certificate for "{L.POSTGRES_TARGET}" does not match host name "postgres"'
        in result.stderr
    ), result.stderr
    assert pg_clean.password not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("args", "suffix"),
    [([], " (sync engine)"), (["--async"], " (async engine)")],
    ids=["sync", "async"],
)
def test_sqlalchemy_app(pg_clean: PgLab, args: list[str], suffix: str) -> None:
    result = run(pg_clean, [str(EXAMPLES / "sqlalchemy_app.py"), *args], "database")
    assert result.returncode == 0 and UNPINNED_ONLY.fullmatch(result.stderr), result
    assert result.stdout == expected_output(pg_clean, "database", suffix)


PSYCOPG2_IMPORT = "import kubealias.psycopg2 as psycopg2  # was: import psycopg2"


@pytest.mark.parametrize("args", [[], ["--pool"]], ids=["connect", "pool"])
@pytest.mark.parametrize("host", [None, "database"], ids=["default-postgres", "database"])
def test_psycopg2_app(pg_clean: PgLab, host: str | None, args: list[str]) -> None:
    result = run(pg_clean, [str(EXAMPLES / "psycopg2_app.py"), *args], host)
    assert result.returncode == 0 and UNPINNED_ONLY.fullmatch(result.stderr), result
    assert result.stdout == expected_output(pg_clean, host or "postgres")
    (conn,) = pg_clean.authorized(TARGETS[host or "postgres"][2], min_entries=1)
    assert conn.ssl


def test_psycopg2_app_with_the_import_changed_back_fails(pg_clean: PgLab, tmp_path: Path) -> None:
    source = (EXAMPLES / "psycopg2_app.py").read_text()
    assert source.count(PSYCOPG2_IMPORT) == 1
    unchanged = tmp_path / "psycopg2_app.py"
    unchanged.write_text(source.replace(PSYCOPG2_IMPORT, "import psycopg2"))
    result = run(pg_clean, [str(unchanged)], None)
    assert result.returncode == 1, result
    assert (
        f'server certificate for "{L.POSTGRES_TARGET}" does not match host name "postgres"'
        in result.stderr
    ), result.stderr
    assert pg_clean.password not in result.stderr + result.stdout

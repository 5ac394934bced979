"""kubealias.sqlalchemy and the kubealias.django backend on psycopg2, without a PostgreSQL server.

The engines go through SQLAlchemy's real connect path; ``psycopg2.connect`` (what the psycopg2
dialect calls) records its arguments and fails, or attempts go to a closed loopback port.
Django on psycopg2 runs in a process of its own (``_django_on_psycopg2``), where psycopg 3
cannot be imported: Django picks its driver once per process, and this one has psycopg 3.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extras
import pytest
import sqlalchemy
import sqlalchemy.exc
from psycopg2.extensions import parse_dsn
from sqlalchemy import create_engine, event

import kubealias
from kubealias import KubeAliasError, Resolver
from kubealias.sqlalchemy import install
from kubealias.testing import ClusterDNS
from tests.unit.conftest import DATABASE_FQDN, PASSWORD, RDS

ROOT = Path(__file__).resolve().parents[2]


class Recorded(psycopg2.OperationalError):  # type: ignore[misc]  # psycopg2 is untyped
    """Raised by the recorder in place of connecting."""


@pytest.fixture
def pg_dns(cluster_dns: ClusterDNS) -> ClusterDNS:
    """conftest's, with ``database`` at 127.0.0.1 (``pg_resolver`` asks this one here)."""
    cluster_dns.article_services(database_ip="127.0.0.1")  # database -> RDS -> 127.0.0.1
    return cluster_dns


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """Every psycopg2.connect() call (the psycopg2 dialect's DBAPI connect), which then fails."""
    seen: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def record(*args: Any, **kwargs: Any) -> Any:
        seen.append((args, kwargs))
        raise Recorded("recorded")

    monkeypatch.setattr(psycopg2, "connect", record)
    return seen


def url(port: int | None = None, host: str = "database", query: str = "") -> str:
    where = host if port is None else f"{host}:{port}"
    return f"postgresql+psycopg2://app:{PASSWORD}@{where}/app{query}"


VERIFY_FULL = "?sslmode=verify-full"

# --- SQLAlchemy --------------------------------------------------------------------------------


def test_psycopg2_engine_gives_psycopg2_the_rewritten_params(
    pg_resolver: Resolver, calls: list[Any]
) -> None:
    engine = install(create_engine(url(5432, query=VERIFY_FULL)), resolver=pg_resolver)
    assert engine.dialect.driver == "psycopg2"
    with pytest.raises(sqlalchemy.exc.OperationalError) as info:
        engine.connect()
    assert isinstance(info.value.orig, Recorded)
    ((args, kwargs),) = calls
    assert args == ()
    assert (kwargs["host"], kwargs["hostaddr"], str(kwargs["port"])) == (RDS, "127.0.0.1", "5432")
    assert (kwargs["user"], kwargs["password"], kwargs["dbname"]) == ("app", PASSWORD, "app")
    engine.dispose()


@pytest.mark.parametrize("query", ["", "?sslmode=require", "?sslmode=verify-ca"])
def test_psycopg2_engine_keeps_the_host_unless_verify_full(
    pg_resolver: Resolver, calls: list[Any], query: str
) -> None:
    engine = install(create_engine(url(5432, query=query)), resolver=pg_resolver)
    with pytest.raises(sqlalchemy.exc.OperationalError):
        engine.connect()
    ((_, kwargs),) = calls
    assert (kwargs["host"], kwargs["hostaddr"]) == ("database", "127.0.0.1")
    engine.dispose()


def test_postgresql_url_is_hooked_whichever_driver_it_means(
    pg_resolver: Resolver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLAlchemy 2.0 means psycopg2 by postgresql://, 2.1 psycopg 3: install() goes by the
    # dialect the engine got, and rewrites what that driver's connect() receives.
    engine = create_engine(f"postgresql://app:{PASSWORD}@database/app{VERIFY_FULL}")
    version = tuple(int(part) for part in sqlalchemy.__version__.split(".")[:2])
    assert engine.dialect.driver == ("psycopg2" if version < (2, 1) else "psycopg")
    seen: list[dict[str, Any]] = []

    def record(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs)
        raise engine.dialect.loaded_dbapi.OperationalError("recorded")

    monkeypatch.setattr(engine.dialect.loaded_dbapi, "connect", record)
    install(engine, resolver=pg_resolver)
    with pytest.raises(sqlalchemy.exc.OperationalError):
        engine.connect()
    assert (seen[0]["host"], seen[0]["hostaddr"]) == (RDS, "127.0.0.1")
    engine.dispose()


def test_psycopg2_engine_every_new_connection_resolves_again(
    pg_resolver: Resolver, pg_dns: ClusterDNS, calls: list[Any]
) -> None:
    engine = install(create_engine(url()), resolver=pg_resolver)
    with pytest.raises(sqlalchemy.exc.OperationalError):
        engine.connect()
    pg_dns.record(RDS, "CNAME", "ec2-127-0-0-2.compute-1.amazonaws.com", replace=True)
    pg_dns.record("ec2-127-0-0-2.compute-1.amazonaws.com", "A", "127.0.0.2")
    pg_resolver.flush()  # the TTL has run out
    with pytest.raises(sqlalchemy.exc.OperationalError):
        engine.connect()
    assert [kw["hostaddr"] for _, kw in calls] == ["127.0.0.1", "127.0.0.2"]
    engine.dispose()


def test_psycopg2_engine_keeps_its_own_keywords_with_a_dsn_in_cargs(
    pg_resolver: Resolver, calls: list[Any]
) -> None:
    # psycopg2's parser refuses connection_factory: only the DSN string is parsed.
    engine = create_engine(
        "postgresql+psycopg2://",
        connect_args={"connection_factory": psycopg2.extras.LoggingConnection},
    )

    @event.listens_for(engine, "do_connect")
    def put_dsn(dialect: Any, conn_rec: Any, cargs: list[Any], cparams: Any) -> None:
        cargs[:] = [f"host=database port=5433 password={PASSWORD} sslmode=verify-full"]

    install(engine, resolver=pg_resolver)
    with pytest.raises(sqlalchemy.exc.OperationalError):
        engine.connect()
    ((args, kwargs),) = calls
    assert kwargs.pop("connection_factory") is psycopg2.extras.LoggingConnection
    merged = {**parse_dsn(args[0]), **kwargs}
    assert (merged["host"], merged["hostaddr"], merged["port"]) == (RDS, "127.0.0.1", "5433")
    engine.dispose()


def test_psycopg2_engine_resolution_failure(
    pg_resolver: Resolver, pg_dns: ClusterDNS, calls: list[Any]
) -> None:
    pg_dns.fault(DATABASE_FQDN, "servfail")
    engine = install(create_engine(url()), resolver=pg_resolver)
    with pytest.raises(sqlalchemy.exc.OperationalError) as info:
        engine.connect()
    orig = info.value.orig
    assert orig is not None and type(orig) is psycopg2.OperationalError
    assert isinstance(orig.__cause__, KubeAliasError)
    assert "database" in str(info.value) and PASSWORD not in str(info.value)
    assert calls == []  # nothing was attempted
    engine.dispose()


def test_psycopg2_engine_real_attempt_goes_to_the_resolved_address(
    pg_resolver: Resolver, closed_port: int
) -> None:
    kubealias.set_default_resolver(pg_resolver)
    engine = install(create_engine(url(closed_port, query="?connect_timeout=1")))
    with pytest.raises(sqlalchemy.exc.OperationalError) as info:
        engine.connect()
    assert isinstance(info.value.orig, psycopg2.OperationalError)
    assert f'"127.0.0.1", port {closed_port}' in str(info.value)
    assert PASSWORD not in str(info.value)
    engine.dispose()


# --- Django on psycopg2 --------------------------------------------------------------------------


def django_on_psycopg2(
    dns: ClusterDNS,
    *,
    engine: str = "kubealias.django",
    port: int = 5432,
    options: dict[str, Any] | None = None,
    record: bool = True,
) -> dict[str, Any]:
    """Run ``_django_on_psycopg2`` against ``dns`` and return its report."""
    args = {
        "engine": engine,
        "host": "database",
        "port": port,
        "password": PASSWORD,
        "options": {"sslmode": "verify-full"} if options is None else options,
        "record": record,
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBEALIAS_", "PG"))}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.unit._django_on_psycopg2", json.dumps(args)],
        env={**env, **dns.env()},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert PASSWORD not in proc.stdout + proc.stderr
    out: dict[str, Any] = json.loads(proc.stdout)
    assert out["driver"] == "psycopg2", out
    return out


def test_django_on_psycopg2_gets_the_rewritten_params(pg_dns: ClusterDNS) -> None:
    out = django_on_psycopg2(pg_dns)
    (kwargs,) = out["connect"]
    assert (kwargs["host"], kwargs["hostaddr"], kwargs["port"]) == (RDS, "127.0.0.1", "5432")
    assert kwargs["cursor_factory"] == "Django's", "Django's own cursor class passes through"
    assert (kwargs["sslmode"], kwargs["password"]) == ("verify-full", True)


def test_django_on_psycopg2_keeps_the_host_unless_verify_full(pg_dns: ClusterDNS) -> None:
    out = django_on_psycopg2(pg_dns, options={"sslmode": "require"})
    (kwargs,) = out["connect"]
    assert (kwargs["host"], kwargs["hostaddr"]) == ("database", "127.0.0.1")


def test_django_stock_backend_on_psycopg2_is_the_negative_control(pg_dns: ClusterDNS) -> None:
    out = django_on_psycopg2(pg_dns, engine="django.db.backends.postgresql")
    (kwargs,) = out["connect"]
    assert kwargs["host"] == "database" and "hostaddr" not in kwargs


def test_django_on_psycopg2_resolution_failure(pg_dns: ClusterDNS) -> None:
    pg_dns.fault(DATABASE_FQDN, "servfail")
    out = django_on_psycopg2(pg_dns)
    assert out["connect"] == []  # nothing was attempted
    assert out["error"]["chain"] == [
        "django.db.utils.OperationalError",
        "psycopg2.OperationalError",
        "kubealias._errors.ResolutionError",
    ], out
    assert "cannot resolve 'database'" in out["error"]["text"]


def test_django_on_psycopg2_real_attempt_goes_to_the_resolved_address(
    pg_dns: ClusterDNS, closed_port: int
) -> None:
    options = {"sslmode": "verify-full", "connect_timeout": 1}
    out = django_on_psycopg2(pg_dns, port=closed_port, options=options, record=False)
    assert f'"127.0.0.1", port {closed_port}' in out["error"]["text"], out


def test_install_needs_no_psycopg3_for_a_psycopg2_engine() -> None:
    # A psycopg2-only install: kubealias.sqlalchemy imports kubealias.psycopg for psycopg 3
    # engines only.
    code = (
        "import sys; sys.modules['psycopg'] = None; import sqlalchemy, kubealias.sqlalchemy as k;"
        " print(k.install(sqlalchemy.create_engine('postgresql+psycopg2://')).dialect.driver)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert (proc.returncode, proc.stdout.strip()) == (0, "psycopg2"), proc.stderr

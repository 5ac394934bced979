"""End-to-end: SQLAlchemy (sync and async engines) and Django against the lab, inside the pod.

Each framework is configured as its documentation shows, with the service name ``database`` and
``sslmode=verify-full``; the only kubealias line is ``kubealias.sqlalchemy.install(engine)``,
``ENGINE: "kubealias.django"``, or (Django >= 5.1 with its stock backend)
``OPTIONS["pool"]["connection_class"] = kubealias.psycopg.Connection``. Each has a negative
control without that line.
"""

from __future__ import annotations

from typing import Any

import pytest

from integrations.pod import lab as L
from integrations.postgres import lab as P
from integrations.postgres.lab import PgLab

pytestmark = pytest.mark.pod

SQLALCHEMY = """
import asyncio
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import create_async_engine
import kubealias.sqlalchemy

URL = url("database").replace("postgresql://", "postgresql+psycopg://")
out = {}

def sync(install):
    engine = create_engine(URL)
    if install:
        kubealias.sqlalchemy.install(engine)
    try:
        with engine.connect() as conn:
            described = describe(conn.connection.dbapi_connection)
            return {"described": described, "one": conn.execute(text("SELECT 1")).scalar()}
    except OperationalError as exc:
        return {"error": str(exc.orig)}
    finally:
        engine.dispose()

async def asynchronous(install):
    engine = create_async_engine(URL)
    if install:
        kubealias.sqlalchemy.install(engine)
    try:
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            described = await adescribe(raw.driver_connection)
            return {"described": described, "one": (await conn.execute(text("SELECT 1"))).scalar()}
    except OperationalError as exc:
        return {"error": str(exc.orig)}
    finally:
        await engine.dispose()

out["sync"] = sync(True)
out["sync-control"] = sync(False)
out["async"] = asyncio.run(asynchronous(True))
out["async-control"] = asyncio.run(asynchronous(False))
emit(out)
"""


def verified_external(port: int) -> dict[str, Any]:
    return {
        "server": P.EXTERNAL,
        "ssl": True,
        "tls_version": "TLSv1.3",
        "server_addr": L.DATABASE_IP,
        "host": L.DATABASE_TARGET,
        "hostaddr": L.DATABASE_IP,
        "port": port,
    }


@pytest.fixture(scope="module")
def sqlalchemy_results(pg_lab: PgLab) -> dict[str, Any]:
    pg_lab.pod.ensure_running()
    pg_lab.pod.reset_records()
    pg_lab.ensure_running()
    out: dict[str, Any] = pg_lab.run_client(SQLALCHEMY)
    return out


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_sqlalchemy_engine(sqlalchemy_results: dict[str, Any], pg_lab: PgLab, kind: str) -> None:
    result = sqlalchemy_results[kind]
    assert result == {"described": verified_external(pg_lab.port), "one": 1}, result
    control = sqlalchemy_results[f"{kind}-control"]
    assert 'does not match host name "database"' in control.get("error", ""), control


DJANGO = """
import django
from django.conf import settings
import kubealias.psycopg

OPTIONS = {"sslmode": "verify-full", "sslrootcert": CAFILE}
POOLS = {
    "kubealias": None,
    "kubealias-pool": True,
    "stock-pool-connection-class": {"connection_class": kubealias.psycopg.Connection,
                                    "min_size": 1, "max_size": 2},
    "stock": None,
}
ENGINES = {
    "kubealias": "kubealias.django",
    "kubealias-pool": "kubealias.django",
    "stock-pool-connection-class": "django.db.backends.postgresql",
    "stock": "django.db.backends.postgresql",
}
databases = {}
for alias, engine in ENGINES.items():
    options = dict(OPTIONS)
    if POOLS[alias] is not None:
        options["pool"] = POOLS[alias]
    databases[alias] = {
        "ENGINE": engine, "HOST": "database", "PORT": str(PORT), "NAME": DBNAME,
        "USER": USER, "PASSWORD": PASSWORD, "OPTIONS": options,
    }
databases["default"] = databases["kubealias"]
settings.configure(DATABASES=databases, INSTALLED_APPS=[], USE_TZ=True)
django.setup()

from django.db import OperationalError, connections

out = {}
for alias in ENGINES:
    connection = connections[alias]
    try:
        with connection.cursor() as cursor:
            cursor.execute(WHO)
            row = cursor.fetchone()
            cursor.execute("SELECT 1")
            one = cursor.fetchone()[0]
        out[alias] = {"described": _described(connection.connection, row), "one": one,
                      "vendor": connection.vendor,
                      "pooled": connection.pool is not None}
    except OperationalError as exc:
        out[alias] = {"error": str(exc)}
    finally:
        connection.close()
        connection.close_pool() if connection.pool is not None else None
emit(out)
"""


@pytest.fixture(scope="module")
def django_results(pg_lab: PgLab) -> dict[str, Any]:
    pg_lab.pod.ensure_running()
    pg_lab.pod.reset_records()
    pg_lab.ensure_running()
    out: dict[str, Any] = pg_lab.run_client(DJANGO)
    return out


@pytest.mark.parametrize(
    ("alias", "pooled"),
    [("kubealias", False), ("kubealias-pool", True), ("stock-pool-connection-class", True)],
)
def test_django_cursor(
    django_results: dict[str, Any], pg_lab: PgLab, alias: str, pooled: bool
) -> None:
    result = django_results[alias]
    assert result == {
        "described": verified_external(pg_lab.port),
        "one": 1,
        "vendor": "postgresql",
        "pooled": pooled,
    }, result


def test_django_stock_backend_fails_without_kubealias(django_results: dict[str, Any]) -> None:
    control = django_results["stock"]
    assert 'does not match host name "database"' in control.get("error", ""), control

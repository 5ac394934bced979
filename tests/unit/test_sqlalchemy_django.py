"""kubealias.sqlalchemy and the kubealias.django backend, without a PostgreSQL server.

The engines and the backend go through their real connect paths; psycopg is stopped at the
last step (a recorder that raises) or connects to a closed loopback port, so the tests see
exactly the arguments psycopg would have used.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy.exc
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy import create_engine, event
from sqlalchemy.ext.asyncio import create_async_engine

import kubealias
import kubealias.psycopg
from kubealias import KubeAliasError, Resolver
from kubealias.sqlalchemy import install
from kubealias.testing import ClusterDNS
from tests.unit.conftest import DATABASE_FQDN, PASSWORD, RDS


class Recorded(psycopg.OperationalError):
    """Raised by the recorders in place of connecting."""


@pytest.fixture
def pg_dns(cluster_dns: ClusterDNS) -> ClusterDNS:
    """conftest's, with ``database`` at 127.0.0.1 (``pg_resolver`` asks this one here)."""
    cluster_dns.article_services(database_ip="127.0.0.1")  # database -> RDS -> 127.0.0.1
    return cluster_dns


@pytest.fixture
def sync_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """Every psycopg.connect() call (the psycopg dialect's DBAPI connect), which then fails."""
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def record(*args: Any, **kwargs: Any) -> Any:
        calls.append((args, kwargs))
        raise Recorded("recorded")

    monkeypatch.setattr(psycopg, "connect", record)
    return calls


@pytest.fixture
def async_params(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The parameters every AsyncConnection.connect() goes on with after its
    _get_connection_params hook (psycopg's next step splits them into attempts)."""
    seen: list[dict[str, Any]] = []

    async def record(params: dict[str, Any]) -> Any:
        seen.append(dict(params))
        raise Recorded("recorded")

    monkeypatch.setattr(psycopg.connection_async, "conninfo_attempts_async", record)
    return seen


#: Under verify-full an alias's host is its TLS name; under any other sslmode it stays as given.
VERIFY_FULL = "?sslmode=verify-full"


def url(port: int | None = None, host: str = "database", query: str = "") -> str:
    where = host if port is None else f"{host}:{port}"
    return f"postgresql+psycopg://app:{PASSWORD}@{where}/app{query}"


# --- SQLAlchemy, sync --------------------------------------------------------------------------


def test_sync_engine_gives_psycopg_the_rewritten_params(
    pg_resolver: Resolver, sync_calls: list[Any]
) -> None:
    engine = install(create_engine(url(5432, query=VERIFY_FULL)), resolver=pg_resolver)
    with pytest.raises(sqlalchemy.exc.OperationalError):
        engine.connect()
    ((args, kwargs),) = sync_calls
    assert args == ()
    assert kwargs["host"] == RDS
    assert kwargs["hostaddr"] == "127.0.0.1"
    assert str(kwargs["port"]) == "5432"
    assert (kwargs["user"], kwargs["password"], kwargs["dbname"]) == ("app", PASSWORD, "app")
    engine.dispose()


def test_sync_engine_every_new_connection_resolves_again(
    pg_resolver: Resolver, pg_dns: ClusterDNS, sync_calls: list[Any]
) -> None:
    engine = install(create_engine(url()), resolver=pg_resolver)
    with pytest.raises(sqlalchemy.exc.OperationalError):
        engine.connect()
    pg_dns.record(RDS, "CNAME", "ec2-127-0-0-2.compute-1.amazonaws.com", replace=True)
    pg_dns.record("ec2-127-0-0-2.compute-1.amazonaws.com", "A", "127.0.0.2")
    pg_resolver.flush()  # the TTL has run out
    with pytest.raises(sqlalchemy.exc.OperationalError):
        engine.connect()
    assert [kw["hostaddr"] for _, kw in sync_calls] == ["127.0.0.1", "127.0.0.2"]
    engine.dispose()


def test_sync_engine_real_attempt_goes_to_the_resolved_address(
    pg_resolver: Resolver, closed_port: int
) -> None:
    engine = install(
        create_engine(url(closed_port, query="?connect_timeout=1")), resolver=pg_resolver
    )
    with pytest.raises(sqlalchemy.exc.OperationalError) as info:
        engine.connect()
    assert isinstance(info.value.orig, psycopg.OperationalError)
    assert f'"127.0.0.1", port {closed_port}' in str(info.value)
    assert PASSWORD not in str(info.value)
    engine.dispose()


def test_sync_engine_honours_pghost(
    pg_resolver: Resolver, sync_calls: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # No URL arguments at all: the dialect passes cargs=[""] and libpq would read PG*.
    monkeypatch.setenv("PGHOST", "database")
    monkeypatch.setenv("PGPORT", "6543")
    monkeypatch.setenv("PGSSLMODE", "verify-full")
    engine = install(create_engine("postgresql+psycopg://"), resolver=pg_resolver)
    with pytest.raises(sqlalchemy.exc.OperationalError):
        engine.connect()
    ((args, kwargs),) = sync_calls
    assert args == ("",)
    assert (kwargs["host"], kwargs["hostaddr"], kwargs["port"]) == (RDS, "127.0.0.1", "6543")
    engine.dispose()


def test_sync_engine_conninfo_in_cargs(pg_resolver: Resolver, sync_calls: list[Any]) -> None:
    engine = create_engine("postgresql+psycopg://")

    @event.listens_for(engine, "do_connect")
    def put_conninfo(dialect: Any, conn_rec: Any, cargs: list[Any], cparams: Any) -> None:
        cargs[:] = [f"host=database port=5433 password={PASSWORD} sslmode=verify-full"]

    install(engine, resolver=pg_resolver)
    with pytest.raises(sqlalchemy.exc.OperationalError):
        engine.connect()
    ((args, kwargs),) = sync_calls
    # psycopg lets keyword arguments override the conninfo string.
    merged = conninfo_to_dict(*args, **kwargs)
    assert (merged["host"], merged["hostaddr"], merged["port"]) == (RDS, "127.0.0.1", "5433")
    assert merged["password"] == PASSWORD
    engine.dispose()


def test_sync_engine_conninfo_not_utf8_never_shows_the_password(
    pg_resolver: Resolver, sync_calls: list[Any]
) -> None:
    engine = create_engine("postgresql+psycopg://")

    @event.listens_for(engine, "do_connect")
    def put_conninfo(dialect: Any, conn_rec: Any, cargs: list[Any], cparams: Any) -> None:
        cargs[:] = [f"postgresql://app:%80{PASSWORD}@database/app"]  # %80: not UTF-8

    install(engine, resolver=pg_resolver)
    with pytest.raises(sqlalchemy.exc.SQLAlchemyError) as info:
        engine.connect()
    seen: list[BaseException] = [info.value]
    errors: list[BaseException] = []
    while seen:
        error = seen.pop()
        errors.append(error)
        seen += [e for e in (error.__cause__, error.__context__) if e is not None]
    assert not any(PASSWORD in str(e) or PASSWORD in repr(e) for e in errors)
    assert sync_calls == []  # nothing was attempted
    engine.dispose()


def test_sync_engine_cluster_ip_keeps_its_name(
    pg_resolver: Resolver, sync_calls: list[Any]
) -> None:
    # Not an alias: the host as given (verified as such), pinned to the answer's address.
    engine = install(create_engine(url(5432, host="orders")), resolver=pg_resolver)
    with pytest.raises(sqlalchemy.exc.OperationalError):
        engine.connect()
    ((_, kwargs),) = sync_calls
    assert kwargs["host"] == "orders"
    assert kwargs["hostaddr"] == "127.0.0.40"
    engine.dispose()


def test_sync_engine_resolution_failure(
    pg_resolver: Resolver, pg_dns: ClusterDNS, sync_calls: list[Any]
) -> None:
    pg_dns.fault(DATABASE_FQDN, "servfail")
    engine = install(create_engine(url()), resolver=pg_resolver)
    with pytest.raises(sqlalchemy.exc.OperationalError) as info:
        engine.connect()
    assert isinstance(info.value.orig, psycopg.OperationalError)
    assert isinstance(info.value.orig.__cause__, KubeAliasError)
    assert "database" in str(info.value)
    assert PASSWORD not in str(info.value)
    assert sync_calls == []  # nothing was attempted
    engine.dispose()


def test_sync_engine_default_resolver(pg_resolver: Resolver, sync_calls: list[Any]) -> None:
    kubealias.set_default_resolver(pg_resolver)
    engine = install(create_engine(url()))
    with pytest.raises(sqlalchemy.exc.OperationalError):
        engine.connect()
    assert sync_calls[0][1]["hostaddr"] == "127.0.0.1"
    engine.dispose()


def test_install_twice_registers_one_listener(pg_dns: ClusterDNS, sync_calls: list[Any]) -> None:
    engine = create_engine(url(query=VERIFY_FULL))
    refusing = pg_dns.resolver(timeout=1, allowed_targets=["*.example.test"])
    assert install(engine, resolver=refusing) is engine
    assert install(engine, resolver=pg_dns.resolver(timeout=1)) is engine
    assert len(list(engine.dialect.dispatch.do_connect)) == 1
    with pytest.raises(sqlalchemy.exc.OperationalError):
        engine.connect()
    assert sync_calls[0][1]["host"] == RDS  # the last resolver given is the one used
    engine.dispose()


@pytest.mark.parametrize("query", ["", "?sslmode=prefer", "?sslmode=require", "?sslmode=verify-ca"])
def test_sync_engine_keeps_the_host_unless_verify_full(
    pg_resolver: Resolver, sync_calls: list[Any], query: str
) -> None:
    # libpq picks the .pgpass password by host: a name nothing verifies must not come from DNS.
    engine = install(create_engine(url(5432, query=query)), resolver=pg_resolver)
    with pytest.raises(sqlalchemy.exc.OperationalError):
        engine.connect()
    ((_, kwargs),) = sync_calls
    assert (kwargs["host"], kwargs["hostaddr"]) == ("database", "127.0.0.1")
    engine.dispose()


def test_sync_engine_fails_over_past_an_unresolvable_host(
    pg_resolver: Resolver, pg_dns: ClusterDNS, sync_calls: list[Any]
) -> None:
    pg_dns.fault(DATABASE_FQDN, "servfail")
    engine = install(
        create_engine(
            "postgresql+psycopg://app@/app?host=database&host=orders&sslmode=verify-full"
        ),
        resolver=pg_resolver,
    )
    with pytest.raises(sqlalchemy.exc.OperationalError):
        engine.connect()
    ((_, kwargs),) = sync_calls
    assert (kwargs["host"], kwargs["hostaddr"]) == ("database,orders", ",127.0.0.40")
    engine.dispose()


def test_other_dialects_are_a_type_error() -> None:
    engine = create_engine("sqlite://")
    with pytest.raises(TypeError, match=r"asyncpg dialects only .*not sqlite\+pysqlite"):
        install(engine)
    assert len(list(engine.dialect.dispatch.do_connect)) == 0
    engine.dispose()


def test_not_an_engine_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="Engine or AsyncEngine, not str"):
        install("postgresql+psycopg://database/app")  # type: ignore[type-var]


# --- SQLAlchemy, async -------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["postgresql+psycopg", "postgresql+psycopg_async"])
async def test_async_engine_connects_through_kubealias_async_connection(
    pg_resolver: Resolver,
    async_params: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    scheme: str,
) -> None:
    def no_resolve(host: str) -> Any:
        raise AssertionError("the event loop must not block on resolve()")

    monkeypatch.setattr(pg_resolver, "resolve", no_resolve)
    engine = install(
        create_async_engine(url(5432, query=VERIFY_FULL).replace("postgresql+psycopg", scheme)),
        resolver=pg_resolver,
    )
    with pytest.raises(sqlalchemy.exc.OperationalError):
        async with engine.connect():
            pass
    (params,) = async_params
    assert (params["host"], params["hostaddr"], params["port"]) == (RDS, "127.0.0.1", "5432")
    assert (params["user"], params["password"], params["dbname"]) == ("app", PASSWORD, "app")
    await engine.dispose()


async def test_async_engine_real_attempt_goes_to_the_resolved_address(
    pg_resolver: Resolver, closed_port: int
) -> None:
    engine = install(
        create_async_engine(url(closed_port, query="?connect_timeout=1")), resolver=pg_resolver
    )
    with pytest.raises(sqlalchemy.exc.OperationalError) as info:
        async with engine.connect():
            pass
    assert f'"127.0.0.1", port {closed_port}' in str(info.value)
    assert PASSWORD not in str(info.value)
    await engine.dispose()


async def test_async_engine_resolution_failure(
    pg_resolver: Resolver, pg_dns: ClusterDNS, async_params: list[Any]
) -> None:
    pg_dns.fault(DATABASE_FQDN, "servfail")
    engine = install(create_async_engine(url()), resolver=pg_resolver)
    with pytest.raises(sqlalchemy.exc.OperationalError) as info:
        async with engine.connect():
            pass
    assert isinstance(info.value.orig, psycopg.OperationalError)
    assert isinstance(info.value.orig.__cause__, KubeAliasError)
    assert PASSWORD not in str(info.value)
    assert async_params == []
    await engine.dispose()


async def test_async_install_twice_registers_one_listener(pg_resolver: Resolver) -> None:
    engine = create_async_engine(url())
    assert install(engine, resolver=pg_resolver) is engine
    install(engine, resolver=pg_resolver)
    assert len(list(engine.sync_engine.dialect.dispatch.do_connect)) == 1
    await engine.dispose()


# --- Django ------------------------------------------------------------------------------------

_aliases = itertools.count()


@pytest.fixture(scope="module")
def django_settings() -> None:
    from django.conf import settings

    if not settings.configured:
        settings.configure(DATABASES={}, USE_TZ=True, TIME_ZONE="UTC")


@pytest.fixture
def django_db(django_settings: None, pg_resolver: Resolver) -> Iterator[Any]:
    """A factory of Django connections (one new alias each, so pools never leak across tests)."""
    from django.db.utils import ConnectionHandler

    kubealias.set_default_resolver(pg_resolver)
    made: list[Any] = []

    def make(engine: str = "kubealias.django", **overrides: Any) -> Any:
        alias = f"db{next(_aliases)}"
        config = {
            "ENGINE": engine,
            "HOST": "database",
            "PORT": "5432",
            "NAME": "app",
            "USER": "app",
            "PASSWORD": PASSWORD,
            "OPTIONS": {"sslmode": "verify-full", "connect_timeout": 1},
            **overrides,
        }
        handler = ConnectionHandler(
            {"default": {"ENGINE": "django.db.backends.dummy"}, alias: config}
        )
        conn = handler[alias]
        made.append(conn)
        return conn

    yield make
    for conn in made:
        conn.close_pool()
        conn.close()


def test_django_get_new_connection_gets_rewritten_params(
    django_db: Any, sync_calls: list[Any]
) -> None:
    from django.db import OperationalError

    conn = django_db()
    with pytest.raises(OperationalError):
        conn.ensure_connection()
    ((args, kwargs),) = sync_calls
    assert args == ()
    assert (kwargs["host"], kwargs["hostaddr"], kwargs["port"]) == (RDS, "127.0.0.1", "5432")
    assert (kwargs["sslmode"], kwargs["password"], kwargs["dbname"]) == (
        "verify-full",
        PASSWORD,
        "app",
    )


@pytest.mark.parametrize("sslmode", [None, "prefer", "require", "verify-ca"])
def test_django_keeps_the_host_unless_verify_full(
    django_db: Any, sync_calls: list[Any], sslmode: str | None
) -> None:
    from django.db import OperationalError

    options = {"connect_timeout": 1} if sslmode is None else {"sslmode": sslmode}
    conn = django_db(OPTIONS=options)
    with pytest.raises(OperationalError):
        conn.ensure_connection()
    ((_, kwargs),) = sync_calls
    assert (kwargs["host"], kwargs["hostaddr"]) == ("database", "127.0.0.1")


def test_django_fails_over_past_an_unresolvable_host(
    django_db: Any, pg_dns: ClusterDNS, sync_calls: list[Any]
) -> None:
    from django.db import OperationalError

    pg_dns.fault(DATABASE_FQDN, "servfail")
    conn = django_db(HOST="database,orders")
    with pytest.raises(OperationalError):
        conn.ensure_connection()
    ((_, kwargs),) = sync_calls
    assert (kwargs["host"], kwargs["hostaddr"]) == ("database,orders", ",127.0.0.40")


def test_django_real_attempt_goes_to_the_resolved_address(django_db: Any, closed_port: int) -> None:
    from django.db import OperationalError

    conn = django_db(PORT=str(closed_port))
    with pytest.raises(OperationalError) as info:
        conn.ensure_connection()
    assert f'"127.0.0.1", port {closed_port}' in str(info.value)
    assert PASSWORD not in str(info.value)


def test_django_resolution_failure(
    django_db: Any, pg_dns: ClusterDNS, sync_calls: list[Any]
) -> None:
    from django.db import OperationalError

    pg_dns.fault(DATABASE_FQDN, "servfail")
    conn = django_db()
    with pytest.raises(OperationalError) as info:
        conn.ensure_connection()
    assert isinstance(info.value.__cause__, psycopg.OperationalError)
    assert isinstance(info.value.__cause__.__cause__, KubeAliasError)
    assert PASSWORD not in str(info.value)
    assert sync_calls == []


def test_django_stock_backend_is_the_negative_control(
    django_db: Any, sync_calls: list[Any]
) -> None:
    from django.db import OperationalError

    conn = django_db(engine="django.db.backends.postgresql")
    with pytest.raises(OperationalError):
        conn.ensure_connection()
    assert sync_calls[0][1]["host"] == "database"
    assert "hostaddr" not in sync_calls[0][1]


@pytest.fixture
def pool_attempts(monkeypatch: pytest.MonkeyPatch) -> tuple[list[dict[str, Any]], threading.Event]:
    """What every sync Connection.connect() goes on with after _get_connection_params."""
    seen: list[dict[str, Any]] = []
    event_ = threading.Event()

    def record(params: dict[str, Any]) -> Any:
        seen.append(dict(params))
        event_.set()
        raise Recorded("recorded")

    monkeypatch.setattr(psycopg.connection, "conninfo_attempts", record)
    return seen, event_


@pytest.mark.parametrize("pool", [True, {"min_size": 1, "max_size": 1}])
def test_django_pool_connects_through_kubealias_connection(
    django_db: Any, pool_attempts: tuple[list[dict[str, Any]], threading.Event], pool: Any
) -> None:
    conn = django_db(OPTIONS={"sslmode": "verify-full", "pool": pool})
    assert issubclass(conn.pool.connection_class, kubealias.psycopg.Connection)
    assert conn.pool.kwargs["host"] == "database"  # resolved at each connect, not once
    seen, attempted = pool_attempts
    conn.pool.open(wait=False)
    assert attempted.wait(5), "the pool made no connection attempt"
    conn.pool.close(timeout=1)
    assert (seen[0]["host"], seen[0]["hostaddr"], seen[0]["port"]) == (RDS, "127.0.0.1", "5432")


def test_django_pool_keeps_a_kubealias_connection_class(
    django_db: Any, pg_resolver: Resolver
) -> None:
    chosen = kubealias.psycopg.Connection.using(pg_resolver)
    conn = django_db(OPTIONS={"pool": {"connection_class": chosen}})
    assert conn.pool.connection_class is chosen


def test_django_pool_refuses_a_class_that_does_not_resolve(django_db: Any) -> None:
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match=r"kubealias\.psycopg\.Connection"):
        django_db(OPTIONS={"pool": {"connection_class": psycopg.Connection}})


def test_django_stock_backend_passes_connection_class_to_the_pool(
    django_db: Any, pool_attempts: tuple[list[dict[str, Any]], threading.Event]
) -> None:
    # The documented alternative: Django hands OPTIONS["pool"] to ConnectionPool unchanged.
    conn = django_db(
        engine="django.db.backends.postgresql",
        OPTIONS={
            "sslmode": "verify-full",
            "pool": {"connection_class": kubealias.psycopg.Connection, "min_size": 1},
        },
    )
    assert conn.pool.connection_class is kubealias.psycopg.Connection
    seen, attempted = pool_attempts
    conn.pool.open(wait=False)
    assert attempted.wait(5), "the pool made no connection attempt"
    conn.pool.close(timeout=1)
    assert (seen[0]["host"], seen[0]["hostaddr"]) == (RDS, "127.0.0.1")

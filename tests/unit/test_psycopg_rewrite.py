"""kubealias.psycopg against the in-process cluster DNS: rewrite rules, errors, no password leaks.

Table-driven as psycopg's ``tests/test_conninfo_attempts.py``: ``(conninfo, kwargs, env, want)``.
No PostgreSQL server: connection attempts go to closed ports on loopback addresses.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator, Mapping
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import kubealias
from kubealias import KubeAliasError, PolicyError, ResolutionError, Resolver
from kubealias.psycopg import AsyncConnection, Connection, connect, rewrite_conninfo, rewrite_params
from kubealias.testing import ClusterDNS
from tests.unit.conftest import DATABASE_FQDN, PASSWORD, PROD, RDS, REDIS, REPLICAS


def parsed(conninfo: str) -> dict[str, Any]:
    return {k: str(v) for k, v in conninfo_to_dict(conninfo).items()}


def assert_counts_consistent(conninfo: str) -> None:
    """libpq's rule: as many hostaddrs as hosts; one port for all, or one per host."""
    params = conninfo_to_dict(conninfo)
    hosts = str(params.get("host", "")).split(",")
    if "hostaddr" in params:
        assert len(str(params["hostaddr"]).split(",")) == len(hosts)
    if "port" in params:
        assert len(str(params["port"]).split(",")) in (1, len(hosts))


def rendered(exc: BaseException) -> str:
    """What a traceback or a log line with exc_info would show, causes included."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


# --- the rewrite ------------------------------------------------------------------------------

#: libpq reads the sslmode from PGSSLMODE too. Under verify-full an alias's host is its TLS name
#: (the rows below); under any other sslmode it stays as given (see SSLMODES).
FULL = {"PGSSLMODE": "verify-full"}

REWRITES = [
    pytest.param(
        "host=database dbname=app",
        {},
        FULL,
        {"host": RDS, "hostaddr": "127.0.0.10", "dbname": "app"},
        id="single-alias",
    ),
    pytest.param(
        "host=replicas port=5433",
        {},
        FULL,
        {
            "host": f"{REPLICAS},{REPLICAS}",
            "hostaddr": "127.0.0.21,127.0.0.22",
            "port": "5433,5433",
        },
        id="alias-two-addresses-port-repeated",
    ),
    pytest.param(
        "host=replicas,database port=5433",
        {},
        FULL,
        {
            "host": f"{REPLICAS},{REPLICAS},{RDS}",
            "hostaddr": "127.0.0.21,127.0.0.22,127.0.0.10",
            "port": "5433,5433,5433",
        },
        id="two-aliases-one-port",
    ),
    pytest.param(
        "host=database,db.example.test port=5432,5433",
        {},
        FULL,
        {"host": f"{RDS},db.example.test", "hostaddr": "127.0.0.10,", "port": "5432,5433"},
        id="multi-host-alias-and-plain",
    ),
    pytest.param(
        "host=orders,replicas port=5432,5433",
        {},
        FULL,
        {
            "host": f"orders,{REPLICAS},{REPLICAS}",
            "hostaddr": ",127.0.0.21,127.0.0.22",
            "port": "5432,5433,5433",
        },
        id="multi-host-clusterip-and-alias-ports-follow",
    ),
    pytest.param(
        "host=database,/var/run/postgresql,127.0.0.5",
        {},
        FULL,
        {"host": f"{RDS},/var/run/postgresql,127.0.0.5", "hostaddr": "127.0.0.10,,"},
        id="alias-socket-ip-literal",
    ),
    pytest.param(
        "host=database,orders hostaddr=,127.0.0.40",
        {},
        FULL,
        {"host": f"{RDS},orders", "hostaddr": "127.0.0.10,127.0.0.40"},
        id="empty-hostaddr-entry-is-resolved",
    ),
    pytest.param(
        "host=shared-cache.app-team-a",
        {},
        FULL,
        {"host": REDIS, "hostaddr": "127.0.0.30"},
        id="cross-namespace-alias",
    ),
    pytest.param(
        f"postgresql://app:{PASSWORD}@database:5432/app?sslmode=verify-full",
        {},
        FULL,
        {
            "user": "app",
            "password": PASSWORD,
            "host": RDS,
            "hostaddr": "127.0.0.10",
            "port": "5432",
            "dbname": "app",
            "sslmode": "verify-full",
        },
        id="url-user-password",
    ),
    pytest.param(
        "postgresql://app@database:5432,orders:5433/app",
        {},
        FULL,
        {
            "user": "app",
            "host": f"{RDS},orders",
            "hostaddr": "127.0.0.10,",
            "port": "5432,5433",
            "dbname": "app",
        },
        id="url-multi-host",
    ),
    pytest.param(
        "",
        {"host": "database", "dbname": "app", "password": PASSWORD, "port": 5432},
        FULL,
        {
            "host": RDS,
            "hostaddr": "127.0.0.10",
            "dbname": "app",
            "password": PASSWORD,
            "port": "5432",
        },
        id="keywords",
    ),
    pytest.param(
        "dbname=app host=orders",
        {"host": "postgres", "sslmode": "verify-full"},
        {},
        {"dbname": "app", "host": PROD, "hostaddr": "127.0.0.11", "sslmode": "verify-full"},
        id="mixed-keyword-wins",
    ),
    pytest.param(
        "dbname=app",
        {},
        {**FULL, "PGHOST": "database"},
        {"dbname": "app", "host": RDS, "hostaddr": "127.0.0.10"},
        id="pghost",
    ),
    pytest.param(
        "dbname=app",
        {},
        {**FULL, "PGHOST": "replicas", "PGPORT": "6543"},
        {
            "dbname": "app",
            "host": f"{REPLICAS},{REPLICAS}",
            "hostaddr": "127.0.0.21,127.0.0.22",
            "port": "6543,6543",
        },
        id="pghost-pgport",
    ),
    pytest.param(
        "dbname=app",
        {},
        {**FULL, "PGHOST": "database,postgres", "PGHOSTADDR": ",127.0.0.50"},
        {"dbname": "app", "host": f"{RDS},postgres", "hostaddr": "127.0.0.10,127.0.0.50"},
        id="pghost-pghostaddr-kept",
    ),
    pytest.param(
        "host=database",
        {},
        {**FULL, "PGPORT": "6543", "PGHOST": "orders"},
        {"host": RDS, "hostaddr": "127.0.0.10", "port": "6543"},
        id="param-host-beats-pghost",
    ),
]


@pytest.mark.parametrize(("conninfo", "kwargs", "env", "want"), REWRITES)
def test_rewrite_conninfo(
    pg_resolver: Resolver,
    monkeypatch: pytest.MonkeyPatch,
    conninfo: str,
    kwargs: dict[str, Any],
    env: dict[str, str],
    want: dict[str, str],
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    out = rewrite_conninfo(conninfo, resolver=pg_resolver, **kwargs)
    assert parsed(out) == want
    assert_counts_consistent(out)


@pytest.mark.parametrize(("conninfo", "kwargs", "env", "want"), REWRITES)
def test_rewrite_params(
    pg_resolver: Resolver,
    conninfo: str,
    kwargs: dict[str, Any],
    env: dict[str, str],
    want: dict[str, str],
) -> None:
    params = conninfo_to_dict(conninfo, **kwargs)
    out = rewrite_params(params, resolver=pg_resolver, environ=env)
    assert {k: str(v) for k, v in out.items()} == want
    assert params == conninfo_to_dict(conninfo, **kwargs), "the input is not modified"
    assert_counts_consistent(make_conninfo("", **out))


PASS_THROUGH = [
    pytest.param("host=orders dbname=app", {}, id="clusterip"),
    pytest.param(f"postgresql://app:{PASSWORD}@orders/app?sslmode=verify-full", {}, id="url"),
    pytest.param("host=db.example.test   dbname=app", {}, id="external-name"),
    pytest.param("host=/var/run/postgresql", {}, id="unix-socket"),
    pytest.param("host=127.0.0.1 port=5432", {}, id="ip-literal"),
    pytest.param("host=::1", {}, id="ipv6-literal"),
    pytest.param("host=localhost", {}, id="localhost"),
    pytest.param("host=database hostaddr=127.0.0.99", {}, id="hostaddr-given"),
    pytest.param("host=nosuch dbname=app", {}, id="unknown-name"),
    pytest.param("dbname=app", {}, id="no-host"),
    pytest.param("host=database,orders hostaddr=127.0.0.1", {}, id="hostaddr-count-mismatch"),
    pytest.param("host=database,orders port=1,2,3", {}, id="port-count-mismatch"),
    pytest.param("", {"host": "orders", "password": PASSWORD}, id="keywords"),
    pytest.param("port=5432", {"host": "db.example.test"}, id="mixed"),
]


@pytest.mark.parametrize(("conninfo", "kwargs"), PASS_THROUGH)
def test_not_an_alias_is_unchanged_byte_for_byte(
    pg_resolver: Resolver, conninfo: str, kwargs: dict[str, Any]
) -> None:
    assert rewrite_conninfo(conninfo, resolver=pg_resolver, **kwargs) == make_conninfo(
        conninfo, **kwargs
    )
    params = conninfo_to_dict(conninfo, **kwargs)
    assert rewrite_params(params, resolver=pg_resolver, environ={}) == params


@pytest.mark.parametrize(
    "conninfo",
    [
        "host=db.example.test",
        "host=/tmp",
        "host=127.0.0.1,::1",
        "host=database hostaddr=127.0.0.99",
        "dbname=app",
    ],
)
def test_not_cluster_shaped_costs_no_query(
    pg_resolver: Resolver, pg_dns: ClusterDNS, conninfo: str
) -> None:
    pg_dns.reset_queries()
    rewrite_conninfo(conninfo, resolver=pg_resolver)
    assert pg_dns.queries == []


def test_pgport_alone_does_not_rewrite_a_plain_host(
    pg_resolver: Resolver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGPORT", "6543")
    assert rewrite_conninfo("host=orders", resolver=pg_resolver) == "host=orders"


# --- errors -----------------------------------------------------------------------------------

MALFORMED = [
    f"host=database password={PASSWORD} junk",
    f"host=database password='{PASSWORD}",
    f'host=database password=x"{PASSWORD}"y junk',
    f"postgresql://app:{PASSWORD}@[database/app",
    f'postgresql://app:a"{PASSWORD}"b"@[database/app',
    f"postgresql://app@database/app?{PASSWORD}",
    f"postgresql://app@database/app?{PASSWORD}=1",
    f"postgresql://app:%zz{PASSWORD}@database/app",
    f"postgresql://app:{PASSWORD}@database/app?sslmode",
    # percent-encoded bytes that are not UTF-8: psycopg's UnicodeDecodeError holds them
    f"postgresql://app:%80{PASSWORD}@database/app",
    f"postgresql://app@database/app?password=%ff{PASSWORD}",
    f"postgresql://app@%c3{PASSWORD}/app",
    PASSWORD,
]


@pytest.mark.parametrize("conninfo", MALFORMED)
def test_malformed_conninfo_is_a_programming_error_without_the_password(
    pg_resolver: Resolver, conninfo: str
) -> None:
    with pytest.raises(psycopg.ProgrammingError) as info:
        rewrite_conninfo(conninfo, resolver=pg_resolver)
    assert "invalid connection string" in str(info.value)
    assert PASSWORD not in rendered(info.value)
    with pytest.raises(psycopg.ProgrammingError) as info:
        Connection.using(pg_resolver)._get_connection_params(conninfo)
    assert PASSWORD not in rendered(info.value)


def test_malformed_keeps_libpq_reason(pg_resolver: Resolver) -> None:
    with pytest.raises(psycopg.ProgrammingError, match=r'missing "=" after "…"'):
        rewrite_conninfo(f"password={PASSWORD} junk", resolver=pg_resolver)


def test_unknown_keyword_is_a_programming_error(pg_resolver: Resolver) -> None:
    with pytest.raises(psycopg.ProgrammingError, match="invalid connection option"):
        rewrite_conninfo("host=database", resolver=pg_resolver, bogus="1", password=PASSWORD)


_FRAGMENTS = st.sampled_from(
    [
        PASSWORD,
        PASSWORD,
        "password=",
        "host=",
        "database",
        "postgresql://",
        "app:",
        "@",
        "[",
        "]",
        "?",
        "&",
        "=",
        "%",
        "%zz",
        "'",
        '"',
        "\\",
        " ",
        ",",
        ":",
        "/",
        "dbname=",
        "x",
    ]
)
_CONNINFO = st.one_of(
    st.lists(_FRAGMENTS, max_size=12).map("".join),
    st.tuples(st.text(max_size=20), st.text(max_size=20)).map(lambda t: PASSWORD.join(t)),
)


@pytest.fixture(scope="module")
def disabled_resolver() -> Resolver:
    # No DNS at all: this property is about parsing, and must not depend on a server.
    return Resolver(disable=True, nameservers=["127.0.0.1:9"], hosts_file=None)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conninfo=_CONNINFO)
def test_no_exception_text_ever_holds_the_password(
    disabled_resolver: Resolver, conninfo: str
) -> None:
    for call in (
        lambda: rewrite_conninfo(conninfo, resolver=disabled_resolver),
        lambda: Connection.using(disabled_resolver)._get_connection_params(conninfo),
    ):
        try:
            call()
        except Exception as exc:
            assert isinstance(exc, psycopg.ProgrammingError), rendered(exc)
            assert PASSWORD not in rendered(exc)


@pytest.mark.parametrize("kind", ["servfail", "refused"])
def test_dns_failure_is_an_operational_error(
    pg_resolver: Resolver, pg_dns: ClusterDNS, kind: str
) -> None:
    pg_dns.fault(DATABASE_FQDN, kind)
    with pytest.raises(psycopg.OperationalError) as info:
        rewrite_conninfo(f"host=database password={PASSWORD}", resolver=pg_resolver)
    assert isinstance(info.value.__cause__, ResolutionError)
    assert "database" in str(info.value)
    assert PASSWORD not in rendered(info.value)


def test_policy_refusal_is_an_operational_error(pg_dns: ClusterDNS) -> None:
    resolver = pg_dns.resolver(timeout=1, allowed_targets=["*.example.test"])
    with pytest.raises(psycopg.OperationalError) as info:
        rewrite_params({"host": "database", "password": PASSWORD}, resolver=resolver)
    assert isinstance(info.value.__cause__, PolicyError)
    assert RDS in str(info.value)
    assert PASSWORD not in rendered(info.value)


async def test_async_dns_failure_is_an_operational_error(
    pg_resolver: Resolver, pg_dns: ClusterDNS
) -> None:
    pg_dns.fault(DATABASE_FQDN, "servfail")
    with pytest.raises(psycopg.OperationalError) as info:
        await AsyncConnection.using(pg_resolver)._get_connection_params(
            f"host=database password={PASSWORD}"
        )
    assert isinstance(info.value.__cause__, KubeAliasError)
    assert PASSWORD not in rendered(info.value)


def test_no_password_in_any_log_record(
    pg_dns: ClusterDNS, closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="kubealias")
    caplog.set_level(logging.DEBUG, logger="psycopg")
    resolver = pg_dns.resolver(timeout=1)
    conninfo = f"host=replicas port={closed_port} password={PASSWORD} connect_timeout=1"
    rewrite_conninfo(conninfo, resolver=resolver)
    with pytest.raises(psycopg.OperationalError):
        connect(conninfo, resolver=resolver)
    pg_dns.fault(DATABASE_FQDN, "servfail")
    with pytest.raises(psycopg.OperationalError):
        connect(f"host=database password={PASSWORD}", resolver=resolver)
    with pytest.raises(psycopg.ProgrammingError):
        connect(f"host=database password={PASSWORD} junk", resolver=resolver)
    assert any(r.name.startswith("psycopg") for r in caplog.records), "psycopg logged attempts"
    for record in caplog.records:
        text = record.getMessage() + (
            "".join(traceback.format_exception(*record.exc_info)) if record.exc_info else ""
        )
        assert PASSWORD not in text, record


# --- the connection classes -------------------------------------------------------------------


def test_connection_get_connection_params(pg_resolver: Resolver) -> None:
    params = Connection.using(pg_resolver)._get_connection_params(
        "host=database dbname=app sslmode=verify-full", port=5432
    )
    assert params == {
        "host": RDS,
        "hostaddr": "127.0.0.10",
        "dbname": "app",
        "sslmode": "verify-full",
        "port": "5432",
    }


def test_connection_uses_the_default_resolver(pg_resolver: Resolver) -> None:
    kubealias.set_default_resolver(pg_resolver)
    params = Connection._get_connection_params("host=database sslmode=verify-full")
    assert (params["host"], params["hostaddr"]) == (RDS, "127.0.0.10")


def test_connection_sync_path_never_awaits(
    pg_resolver: Resolver, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_aresolve(host: str) -> Any:
        raise AssertionError("the sync hook must not use aresolve")

    monkeypatch.setattr(pg_resolver, "aresolve", no_aresolve)
    params = Connection.using(pg_resolver)._get_connection_params("host=replicas")
    assert params["hostaddr"] == "127.0.0.21,127.0.0.22"


async def test_async_connection_get_connection_params_uses_aresolve(
    pg_resolver: Resolver, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_resolve(host: str) -> Any:
        raise AssertionError("the async hook must not block the loop with resolve()")

    asked: list[str] = []
    real = pg_resolver.aresolve

    async def aresolve(host: str) -> Any:
        asked.append(host)
        return await real(host)

    monkeypatch.setattr(pg_resolver, "resolve", no_resolve)
    monkeypatch.setattr(pg_resolver, "aresolve", aresolve)
    params = await AsyncConnection.using(pg_resolver)._get_connection_params(
        "host=database,orders,/tmp,127.0.0.1 port=5432 sslmode=verify-full", dbname="app"
    )
    # The ClusterIP keeps its name, pinned to the address of the answer (no second lookup).
    assert params == {
        "host": f"{RDS},orders,/tmp,127.0.0.1",
        "hostaddr": "127.0.0.10,127.0.0.40,,",
        "port": "5432,5432,5432,5432",
        "sslmode": "verify-full",
        "dbname": "app",
    }
    assert asked == ["database", "orders"]  # as the sync path: no socket, no IP literal


async def test_async_looks_up_nothing_the_sync_path_would_not(
    pg_resolver: Resolver, pg_dns: ClusterDNS
) -> None:
    # A hostaddr count mismatch is libpq's to report: neither path resolves anything.
    pg_dns.reset_queries()
    conninfo = "host=database,postgres hostaddr=127.0.0.1"
    params = await AsyncConnection.using(pg_resolver)._get_connection_params(conninfo)
    assert params == conninfo_to_dict(conninfo)
    assert pg_dns.queries == []


def test_using_makes_a_bound_subclass(pg_resolver: Resolver) -> None:
    bound = Connection.using(pg_resolver)
    assert issubclass(bound, Connection) and issubclass(bound, psycopg.Connection)
    assert bound.resolver is pg_resolver
    assert Connection.resolver is None
    assert bound.__name__ == "Connection"
    abound = AsyncConnection.using(pg_resolver)
    assert issubclass(abound, AsyncConnection) and abound.resolver is pg_resolver
    assert AsyncConnection.resolver is None


# --- connecting (no server: closed ports) ------------------------------------------------------


def test_connect_attempt_goes_to_the_resolved_address(
    pg_resolver: Resolver, closed_port: int
) -> None:
    with pytest.raises(psycopg.OperationalError) as info:
        connect(
            f"host=database port={closed_port} password={PASSWORD} connect_timeout=1",
            resolver=pg_resolver,
        )
    text = str(info.value)
    assert f'"127.0.0.10", port {closed_port}' in text
    assert PASSWORD not in rendered(info.value)


def test_connect_attempts_list_the_tls_name_per_address(
    pg_resolver: Resolver, closed_port: int
) -> None:
    with pytest.raises(psycopg.OperationalError) as info:
        connect(
            host="replicas",
            port=closed_port,
            sslmode="verify-full",
            password=PASSWORD,
            connect_timeout=1,
            resolver=pg_resolver,
        )
    text = str(info.value)
    # psycopg reports every attempt: host (the TLS name), port and hostaddr.
    for address in ("127.0.0.21", "127.0.0.22"):
        assert f"host: '{REPLICAS}', port: '{closed_port}', hostaddr: '{address}'" in text
    assert "replicas'" not in text.replace(REPLICAS, "")
    assert PASSWORD not in rendered(info.value)


async def test_async_connect_attempts_list_the_tls_name_per_address(
    pg_resolver: Resolver, closed_port: int
) -> None:
    with pytest.raises(psycopg.OperationalError) as info:
        await AsyncConnection.using(pg_resolver).connect(
            f"host=replicas port={closed_port} password={PASSWORD} connect_timeout=1"
            " sslmode=verify-full"
        )
    text = str(info.value)
    for address in ("127.0.0.21", "127.0.0.22"):
        assert f"host: '{REPLICAS}', port: '{closed_port}', hostaddr: '{address}'" in text
    assert PASSWORD not in rendered(info.value)


def test_connect_with_a_dns_failure_does_not_attempt_a_connection(
    pg_resolver: Resolver, pg_dns: ClusterDNS, monkeypatch: pytest.MonkeyPatch
) -> None:
    pg_dns.fault(DATABASE_FQDN, "servfail")
    attempts: list[Mapping[str, Any]] = []

    def record(params: Mapping[str, Any]) -> Iterator[Any]:
        attempts.append(params)
        raise AssertionError("no attempt expected")

    monkeypatch.setattr(psycopg.connection, "conninfo_attempts", record)
    with pytest.raises(psycopg.OperationalError) as info:
        connect(f"host=database password={PASSWORD}", resolver=pg_resolver)
    assert isinstance(info.value.__cause__, ResolutionError)
    assert attempts == []


def _chain(exc: BaseException | None) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


@pytest.mark.parametrize(
    "call",
    [
        lambda: kubealias.psycopg.rewrite_conninfo("host=x password:SECRET-CTX"),
        lambda: kubealias.psycopg.connect("host=x password:SECRET-CTX"),
        lambda: kubealias.psycopg.Connection._get_connection_params("host=x password:SECRET-CTX"),
    ],
)
def test_password_is_not_kept_in_the_exception_chain(call: Any) -> None:
    with pytest.raises(psycopg.ProgrammingError) as info:
        call()
    for exc in _chain(info.value):
        assert "SECRET-CTX" not in str(exc) and "SECRET-CTX" not in repr(exc.args)


def test_drop_in_for_the_psycopg_module() -> None:
    import kubealias.psycopg as pg

    assert pg.OperationalError is psycopg.OperationalError
    assert pg.sql is psycopg.sql
    with pytest.raises(AttributeError):
        _ = pg.no_such_name


def test_connection_hook_pins_a_cluster_ip_but_rewrite_conninfo_leaves_it(
    pg_resolver: Resolver,
) -> None:
    # rewrite_conninfo/rewrite_params: a non-alias comes back byte for byte (invariant 3).
    assert rewrite_conninfo("host=orders dbname=app", resolver=pg_resolver) == (
        "host=orders dbname=app"
    )
    # The connection hook: the name as given (libpq verifies it), the answer's address.
    params = Connection.using(pg_resolver)._get_connection_params("host=orders dbname=app")
    assert (params["host"], params["hostaddr"]) == ("orders", "127.0.0.40")


# --- a DNS answer never chooses a credential ----------------------------------------------------
# libpq picks the .pgpass/passfile password by host: under every sslmode that does not verify the
# host name, host stays the application's and only hostaddr comes from kubealias's answer.

SSLMODES = [
    pytest.param("host=database dbname=app", {}, "database", id="libpq-default-prefer"),
    pytest.param("host=database sslmode=disable", {}, "database", id="disable"),
    pytest.param("host=database sslmode=allow", {}, "database", id="allow"),
    pytest.param("host=database sslmode=prefer", {}, "database", id="prefer"),
    pytest.param("host=database sslmode=require", {}, "database", id="require"),
    pytest.param("host=database sslmode=verify-ca", {}, "database", id="verify-ca"),
    pytest.param("postgresql://app@database/app?sslmode=require", {}, "database", id="uri"),
    pytest.param("host=database", {"PGSSLMODE": "verify-ca"}, "database", id="pgsslmode"),
    pytest.param("host=database sslmode=require", FULL, "database", id="param-beats-env"),
    pytest.param("host=database sslmode=verify-full", {}, RDS, id="verify-full"),
    pytest.param("postgresql://app@database/app?sslmode=verify-full", {}, RDS, id="uri-full"),
    pytest.param("host=database", FULL, RDS, id="pgsslmode-verify-full"),
]


@pytest.mark.parametrize(("conninfo", "env", "host"), SSLMODES)
async def test_only_verify_full_puts_the_tls_name_in_host(
    pg_resolver: Resolver,
    monkeypatch: pytest.MonkeyPatch,
    conninfo: str,
    env: dict[str, str],
    host: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    outs = [
        parsed(rewrite_conninfo(conninfo, resolver=pg_resolver)),
        rewrite_params(conninfo_to_dict(conninfo), resolver=pg_resolver),
        Connection.using(pg_resolver)._get_connection_params(conninfo),
        await AsyncConnection.using(pg_resolver)._get_connection_params(conninfo),
    ]
    for out in outs:
        assert (out["host"], out["hostaddr"]) == (host, "127.0.0.10"), out
        assert out.get("sslmode") == conninfo_to_dict(conninfo).get("sslmode")


def test_connect_attempts_keep_the_applications_host_without_verify_full(
    pg_resolver: Resolver, closed_port: int
) -> None:
    with pytest.raises(psycopg.OperationalError) as info:
        connect(host="replicas", port=closed_port, connect_timeout=1, resolver=pg_resolver)
    text = str(info.value)
    for address in ("127.0.0.21", "127.0.0.22"):
        assert f"host: 'replicas', port: '{closed_port}', hostaddr: '{address}'" in text
    assert REPLICAS not in text


# --- failover: a host kubealias cannot resolve goes to libpq as given ---------------------------

LOOP = "loop.production.svc.cluster.local"


@pytest.fixture
def broken_database(pg_dns: ClusterDNS) -> ClusterDNS:
    """``database`` answers SERVFAIL; ``loop`` is a CNAME loop (a ChainError)."""
    pg_dns.fault(DATABASE_FQDN, "servfail")
    pg_dns.record(LOOP, "CNAME", "loop2.production.svc.cluster.local")
    pg_dns.record("loop2.production.svc.cluster.local", "CNAME", LOOP)
    return pg_dns


FAILOVERS = [
    pytest.param(
        "host=database,orders", {"host": "database,orders", "hostaddr": ",127.0.0.40"}, id="first"
    ),
    pytest.param(
        "host=orders,database port=5432,5433",
        {"host": "orders,database", "hostaddr": "127.0.0.40,", "port": "5432,5433"},
        id="last-ports-kept",
    ),
    pytest.param(
        "host=loop,replicas",
        {"host": "loop,replicas,replicas", "hostaddr": ",127.0.0.21,127.0.0.22"},
        id="chain-error",
    ),
    pytest.param(
        "postgresql://app@database,replicas/app?sslmode=verify-full",
        {"host": f"database,{REPLICAS},{REPLICAS}", "hostaddr": ",127.0.0.21,127.0.0.22"},
        id="uri-verify-full",
    ),
    pytest.param(
        "host=database,/var/run/postgresql", {"host": "database,/var/run/postgresql"}, id="socket"
    ),
]


@pytest.mark.parametrize(("conninfo", "want"), FAILOVERS)
async def test_an_unresolvable_host_is_handed_to_libpq_as_given(
    pg_resolver: Resolver, broken_database: ClusterDNS, conninfo: str, want: dict[str, str]
) -> None:
    outs = [
        Connection.using(pg_resolver)._get_connection_params(conninfo),
        await AsyncConnection.using(pg_resolver)._get_connection_params(conninfo),
        parsed(rewrite_conninfo(conninfo, resolver=pg_resolver)),
    ]
    for out in outs[:2]:
        assert {k: out.get(k) for k in want} == want, out
        assert ("hostaddr" in out) is ("hostaddr" in want)
    assert outs[2]["host"] == want["host"]  # rewrite_conninfo: orders, not an alias, unpinned
    assert_counts_consistent(make_conninfo("", **outs[0]))


@pytest.mark.parametrize("conninfo", ["host=database", "host=database,loop,database"])
async def test_no_host_left_is_an_operational_error(
    pg_resolver: Resolver, broken_database: ClusterDNS, conninfo: str
) -> None:
    for call in (
        lambda: Connection.using(pg_resolver)._get_connection_params(conninfo),
        lambda: rewrite_conninfo(f"{conninfo} password={PASSWORD}", resolver=pg_resolver),
    ):
        with pytest.raises(psycopg.OperationalError) as info:
            call()
        assert isinstance(info.value.__cause__, ResolutionError)
        assert "cannot resolve 'database'" in str(info.value).splitlines()[0]
        assert ("cannot resolve 'loop'" in str(info.value)) is ("loop" in conninfo)
        assert PASSWORD not in rendered(info.value)
    with pytest.raises(psycopg.OperationalError) as ainfo:
        await AsyncConnection.using(pg_resolver)._get_connection_params(conninfo)
    assert str(ainfo.value) == str(info.value)


def test_a_policy_refusal_never_falls_back(pg_dns: ClusterDNS) -> None:
    # orders (a ClusterIP) would do, but a refusal is a security decision, not a failure.
    resolver = pg_dns.resolver(timeout=1, allowed_targets=["*.example.test"])
    with pytest.raises(psycopg.OperationalError) as info:
        Connection.using(resolver)._get_connection_params("host=orders,database")
    assert isinstance(info.value.__cause__, PolicyError)

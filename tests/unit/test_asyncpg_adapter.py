"""kubealias.asyncpg against the in-process cluster DNS and a TLS server that speaks
PostgreSQL's SSLRequest (:class:`kubealias.testing.TLSServer` ``postgres=True``).

The server completes the TLS handshake and then is no PostgreSQL server, so asyncpg fails
*after* the handshake (``ConnectionDoesNotExistError``); that is enough to see the name asyncpg
sent (SNI), whether the certificate verified, and where it connected. The real servers are in
``tests/e2e/postgres/test_asyncpg_pod.py``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import trustme
from asyncpg import connect_utils

import kubealias
import kubealias.asyncpg as kapg
from kubealias import PolicyError, Resolution, ResolutionError, Resolver, _libpq
from kubealias._tls import routed_context
from kubealias.testing import ClusterDNS, TLSServer

from .conftest import PASSWORD, RDS, unknown_to_getaddrinfo, wait_for

# What asyncpg raises once the handshake is over: the server is no PostgreSQL server.
AFTER_HANDSHAKE = asyncpg.exceptions.ConnectionDoesNotExistError
REPLICAS = "replicas.example.test"
MISSING = "nowhere.example.test"  # the target of `gone`: no such name


@pytest.fixture
def dns(cluster_dns: ClusterDNS) -> ClusterDNS:
    """database -> RDS at 127.0.0.1; replicas -> two addresses, the first refusing;
    orders: a ClusterIP Service at 127.0.0.1; gone -> a target that does not exist."""
    cluster_dns.external_name("database", "production", RDS)
    cluster_dns.record(RDS, "A", "127.0.0.1")
    cluster_dns.external_name("replicas", "production", REPLICAS)
    cluster_dns.record(REPLICAS, "A", ["127.0.0.2", "127.0.0.1"])
    cluster_dns.cluster_ip("orders", "production", "127.0.0.1")
    cluster_dns.external_name("gone", "production", MISSING)
    return cluster_dns


@pytest.fixture
def resolver(dns: ClusterDNS) -> Resolver:
    return dns.resolver(timeout=1)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server(ca: trustme.CA):
    """PostgreSQL's SSLRequest, then TLS with a certificate for RDS (another one for other
    SNI, and for none)."""
    with TLSServer([RDS, "orders"], ca=ca, postgres=True, http=False) as srv:
        yield srv


@pytest.fixture(scope="module")
def direct_server(ca: trustme.CA):
    """TLS from the first byte, as PostgreSQL 17's direct TLS (``direct_tls=True``)."""
    with TLSServer([RDS], ca=ca, http=False) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _no_pg_files(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """No ~/.pgpass, ~/.postgresql or service file of the machine's user."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "nopgpass"))


def _kw(server: TLSServer, resolver: Resolver, **kwargs: Any) -> dict[str, Any]:
    return {
        "port": server.port,
        "user": "app",
        "password": PASSWORD,
        "resolver": resolver,
        "timeout": 5,
        **kwargs,
    }


async def _handshake(server: TLSServer, **kwargs: Any) -> str | None:
    """Connect with kubealias; return the SNI of the handshake the server completed."""
    before = len(server.connections)
    with pytest.raises(AFTER_HANDSHAKE):
        await kapg.connect(**kwargs)
    assert len(server.connections) == before + 1
    return server.connections[-1].sni


# --- the TLS name is verified ---------------------------------------------------------------------


async def test_ssl_context_verifies_the_tls_name(server, resolver, lookups):
    sni = await _handshake(
        server, **_kw(server, resolver, host="database", ssl=server.client_context())
    )
    assert sni == RDS
    assert lookups == []  # asyncpg was given the address: no second lookup


async def test_sslmode_verify_full_with_sslrootcert_in_the_dsn(server, resolver):
    query = f"sslmode=verify-full&sslrootcert={server.cafile}"
    dsn = f"postgresql://app@database:{server.port}/app?{query}"
    assert await _handshake(server, dsn=dsn, password=PASSWORD, resolver=resolver) == RDS


async def test_pgsslmode_and_pgsslrootcert_from_the_environment(server, resolver, monkeypatch):
    monkeypatch.setenv("PGSSLMODE", "verify-full")
    monkeypatch.setenv("PGSSLROOTCERT", server.cafile)
    assert await _handshake(server, **_kw(server, resolver, host="database")) == RDS


async def test_ssl_true_verifies_the_tls_name(server, resolver, monkeypatch):
    # ssl=True is ssl.create_default_context(): the CAs of the default verify paths.
    monkeypatch.setenv("SSL_CERT_FILE", server.cafile)
    assert await _handshake(server, **_kw(server, resolver, host="database", ssl=True)) == RDS


async def test_the_callers_context_is_used_not_copied(server, resolver):
    ctx = server.client_context()
    seen: list[str | None] = []
    real = ctx.wrap_bio

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("server_hostname"))
        return real(*args, **kwargs)

    ctx.wrap_bio = spy
    await _handshake(server, **_kw(server, resolver, host="database", ssl=ctx))
    assert seen == [RDS]


async def test_control_plain_asyncpg_fails_verification(server, monkeypatch):
    """Without kubealias the short name is verified and fails (the article's failure)."""
    real = socket.getaddrinfo

    def cluster(host: Any, *args: Any, **kwargs: Any) -> Any:
        return real("127.0.0.1" if host == "database" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", cluster)
    with pytest.raises(ssl.SSLCertVerificationError, match="database"):
        await asyncpg.connect(
            host="database",
            port=server.port,
            user="app",
            password=PASSWORD,
            ssl=server.client_context(),
            timeout=5,
        )


@pytest.mark.parametrize("form", ["context", "sslmode"])
async def test_a_wrong_ca_still_fails(server, resolver, form, tmp_path):
    other = trustme.CA()
    if form == "context":
        ctx = ssl.create_default_context()
        other.configure_trust(ctx)
        kwargs = _kw(server, resolver, host="database", ssl=ctx)
    else:
        path = tmp_path / "other.pem"
        other.cert_pem.write_to_path(str(path))
        kwargs = _kw(
            server,
            resolver,
            dsn=f"postgresql://database:{server.port}/app?sslmode=verify-full&sslrootcert={path}",
        )
        kwargs.pop("port")
    with pytest.raises(ssl.SSLCertVerificationError):
        await kapg.connect(**kwargs)


@pytest.mark.parametrize("form", ["context", "sslmode"])
async def test_direct_tls(direct_server, resolver, form):
    """TLS from the first byte (PostgreSQL 17's sslnegotiation=direct; the lab's PostgreSQL 15
    has no direct TLS, so this is the test of it)."""
    kwargs = _kw(direct_server, resolver, host="database", direct_tls=True)
    if form == "context":
        kwargs["ssl"] = direct_server.client_context()
    else:
        kwargs["dsn"] = f"postgresql:///app?sslmode=verify-full&sslrootcert={direct_server.cafile}"
    assert await _handshake(direct_server, **kwargs) == RDS


# --- sslmodes that verify no name; pass-through; pinning ----------------------------------------


@pytest.mark.parametrize("mode", ["require", "verify-ca"])
async def test_modes_without_name_check_keep_the_applications_name(server, resolver, mode, lookups):
    kwargs = _kw(server, resolver, host="database", ssl=mode)
    if mode == "verify-ca":
        kwargs["dsn"] = f"postgresql:///app?sslrootcert={server.cafile}"
    assert await _handshake(server, **kwargs) == "database"
    assert lookups == []  # connected to the answer's address


async def test_prefer_connects_to_the_address_with_tls(server, resolver, lookups):
    # asyncpg's default: TLS is tried first (and verifies nothing); no SNI for an address.
    assert await _handshake(server, **_kw(server, resolver, host="database")) is None
    assert lookups == []


async def test_clusterip_service_keeps_its_name_pinned_to_the_answer(server, resolver, lookups):
    sni = await _handshake(
        server, **_kw(server, resolver, host="orders", ssl=server.client_context())
    )
    assert sni == "orders"
    assert lookups == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_names_that_are_not_cluster_names_pass_through(
    server, dns, resolver, monkeypatch, host
):
    calls: list[tuple[Any, dict[str, Any]]] = []
    real = asyncpg.connect

    async def spy(dsn: Any = None, **kwargs: Any) -> Any:
        calls.append((dsn, kwargs))
        return await real(dsn, **kwargs)

    monkeypatch.setattr(asyncpg, "connect", spy)
    before = len(dns.queries)
    ctx = server.client_context()
    ctx.check_hostname = False
    kwargs = _kw(server, resolver, host=host, ssl=ctx)
    with pytest.raises(AFTER_HANDSHAKE):
        await kapg.connect(**kwargs)
    kwargs.pop("resolver")
    assert calls == [(None, kwargs)]  # asyncpg got exactly the caller's arguments
    assert len(dns.queries) == before  # and kubealias asked nothing


async def test_a_keyword_host_with_a_comma_is_one_host_to_asyncpg(
    server, dns, resolver, monkeypatch
):
    # asyncpg splits only a DSN's host list: host="a,b" is one (impossible) name to it.
    unknown_to_getaddrinfo(monkeypatch, "127.0.0.1,database")  # no query leaves the machine
    before = len(dns.queries)
    with pytest.raises(socket.gaierror):
        await kapg.connect(**_kw(server, resolver, host="127.0.0.1,database", ssl=True))
    assert len(dns.queries) == before


async def test_failover_across_the_answers_addresses(server, resolver):
    # replicas: 127.0.0.2 (nothing listens there) then 127.0.0.1.
    ctx = server.client_context()
    ctx.check_hostname = False  # the certificate is for RDS, not replicas.example.test
    assert await _handshake(server, **_kw(server, resolver, host="replicas", ssl=ctx)) == "replicas"


async def test_host_list_fails_over_and_keeps_each_hosts_name(server, resolver, lookups):
    # 127.0.0.3 refuses (nothing listens there) and is verified as itself; then `database`.
    sni = await _handshake(
        server, **_kw(server, resolver, host=["127.0.0.3", "database"], ssl=server.client_context())
    )
    assert sni == RDS
    assert lookups == []


# --- failures -----------------------------------------------------------------------------------


async def test_unresolvable_alias_is_a_connection_error_with_the_cause(server, resolver):
    with pytest.raises(ConnectionError) as info:
        await kapg.connect(**_kw(server, resolver, host="gone", ssl=True))
    assert isinstance(info.value, OSError)
    assert isinstance(info.value.__cause__, ResolutionError)
    assert MISSING in str(info.value)
    assert PASSWORD not in str(info.value) and PASSWORD not in repr(info.value.__cause__)


async def test_dns_outage_fails_within_the_resolver_timeout(server, dns):
    dns.fault(None, "drop")  # the cluster DNS answers nothing
    resolver = dns.resolver(timeout=0.5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ConnectionError) as info:
        await kapg.connect(**_kw(server, resolver, host="database", ssl=True))
    assert loop.time() - started < 2.0
    assert isinstance(info.value.__cause__, ResolutionError)


async def test_pghost_and_pgport_from_the_environment(server, resolver, monkeypatch):
    monkeypatch.setenv("PGHOST", "database")
    monkeypatch.setenv("PGPORT", str(server.port))
    kwargs = _kw(server, resolver, ssl=server.client_context())
    kwargs.pop("port")
    assert await _handshake(server, **kwargs) == RDS


async def test_password_in_the_dsn_never_in_the_error(server, resolver):
    query = f"sslmode=verify-full&sslrootcert={server.cafile}"
    dsn = f"postgresql://app:{PASSWORD}@gone:{server.port}/app?{query}"
    with pytest.raises(ConnectionError) as info:
        await kapg.connect(dsn, resolver=resolver, timeout=5)
    texts = [str(info.value), repr(info.value), str(info.value.__cause__)]
    assert all(PASSWORD not in t for t in texts)


async def test_an_unresolvable_host_goes_to_asyncpg_and_the_next_host_is_tried(
    server, resolver, monkeypatch
):
    unknown_to_getaddrinfo(monkeypatch, "gone")  # no query leaves the machine
    sni = await _handshake(
        server, **_kw(server, resolver, host=["gone", "database"], ssl=server.client_context())
    )
    assert sni == RDS


async def test_policy_refusal_is_raised_at_once(server, dns):
    resolver = dns.resolver(timeout=1, allowed_targets=["*.example.test"])
    before = len(server.connections)
    with pytest.raises(ConnectionError) as info:
        await kapg.connect(**_kw(server, resolver, host=["database", "replicas"], ssl=True))
    assert isinstance(info.value.__cause__, PolicyError)
    assert len(server.connections) == before  # nothing was attempted


async def test_bad_input_is_asyncpgs_own_error(resolver):
    with pytest.raises(asyncpg.exceptions.ClientConfigurationError):
        await kapg.connect("mysql://database/app", resolver=resolver)
    with pytest.raises(asyncpg.exceptions.ClientConfigurationError, match="sslmode"):
        await kapg.connect(host="database", ssl="verify-everything", resolver=resolver)


async def test_one_address_two_names_while_verifying(server, resolver):
    with pytest.raises(ConnectionError, match="both"):
        await kapg.connect(**_kw(server, resolver, host=["database", "orders"], ssl=True))


# --- credentials: a DNS answer never chooses the stored password ---------------------------------


@pytest.fixture
def passwords(tmp_path, monkeypatch: pytest.MonkeyPatch, server: TLSServer) -> None:
    path = tmp_path / "pgpass"
    path.write_text(
        f"127.0.0.1:{server.port}:app:app:by-address\n"
        f"database:{server.port}:app:app:by-app-host\n"
        f"{RDS}:{server.port}:app:app:by-tls-name\n"
    )
    path.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(path))


@pytest.mark.parametrize(
    ("ssl_arg", "want"),
    [("verify-full", "by-tls-name"), ("require", "by-app-host"), ("prefer", "by-app-host")],
)
async def test_pgpass_password_by_the_verified_name_or_the_applications_host(
    server, resolver, monkeypatch, passwords, ssl_arg, want
):
    monkeypatch.setenv("PGSSLROOTCERT", server.cafile)
    sent: list[Any] = []
    real = asyncpg.connect

    async def spy(dsn: Any = None, **kwargs: Any) -> Any:
        password = kwargs["password"]
        sent.append(password() if callable(password) else password)
        return await real(dsn, **kwargs)

    monkeypatch.setattr(asyncpg, "connect", spy)
    kwargs = _kw(server, resolver, host="database", ssl=ssl_arg)
    kwargs.pop("password")
    await _handshake(server, **kwargs)
    assert sent == [want]


async def test_no_stored_password_for_the_name_means_none_not_the_addresses(
    server, resolver, monkeypatch, tmp_path
):
    path = tmp_path / "pgpass"
    path.write_text(f"127.0.0.1:{server.port}:app:app:by-address\n")
    path.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(path))
    sent: list[Any] = []
    real = asyncpg.connect

    async def spy(dsn: Any = None, **kwargs: Any) -> Any:
        password = kwargs["password"]
        sent.append(password() if callable(password) else password)
        return await real(dsn, **kwargs)

    monkeypatch.setattr(asyncpg, "connect", spy)
    kwargs = _kw(server, resolver, host="database", ssl=server.client_context())
    kwargs.pop("password")
    await _handshake(server, **kwargs)
    assert sent == [None]


# --- pools ---------------------------------------------------------------------------------------


async def test_create_pool_connects_through_kubealias(server, resolver):
    pool = kapg.create_pool(
        host="database",
        port=server.port,
        user="app",
        password=PASSWORD,
        ssl=server.client_context(),
        resolver=resolver,
        min_size=1,
        max_size=1,
        timeout=5,
    )
    with pytest.raises(AFTER_HANDSHAKE):
        await pool
    assert server.connections[-1].sni == RDS
    await pool.close()


def test_create_pool_refuses_a_connect_of_its_own():
    async def mine(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("not called")

    with pytest.raises(TypeError, match=r"kubealias\.asyncpg\.connect"):
        kapg.create_pool("postgresql://database/app", connect=mine)


def test_the_module_is_a_drop_in_for_asyncpgs_names():
    assert kapg.Connection is asyncpg.Connection
    assert kapg.exceptions is asyncpg.exceptions
    with pytest.raises(AttributeError):
        kapg.no_such_name  # noqa: B018


# --- what kubealias.asyncpg relies on ------------------------------------------------------------


def test_asyncpgs_reader_has_the_parameters_used(server):
    """kubealias.asyncpg reads arguments with asyncpg's own reader (module docstring)."""
    names = set(kapg._READER_KEYS)
    assert {"dsn", "host", "port", "password", "ssl", "direct_tls"} <= names
    addrs, params = connect_utils._parse_connect_dsn_and_args(
        **{
            **dict.fromkeys(names),
            "dsn": f"postgresql://app@a,b:7/app?sslmode=verify-ca&sslrootcert={server.cafile}",
        }
    )
    assert addrs == [("a", 5432), ("b", 7)]  # libpq's rule: a port per host
    assert params.sslmode is connect_utils.SSLMode.verify_ca
    assert isinstance(params.ssl, ssl.SSLContext) and not params.ssl.check_hostname


SOCKET = "/run/postgresql/.s.PGSQL.5433"
DB = Resolution(
    "database", "database.production.svc.cluster.local", (), RDS, ("127.0.0.10", "::1"), True
)
ORDERS = Resolution(
    "orders", "orders.production.svc.cluster.local", (), "orders", ("127.0.0.40",), False
)


@pytest.mark.parametrize(
    ("addrs", "verifying", "outcomes", "want"),
    [
        # nothing to look up: no plan (asyncpg gets the caller's arguments)
        ([("127.0.0.1", 5432), SOCKET], True, {}, None),
        # an alias, verifying: the TLS name for each of its addresses, in order
        (
            [("database", 6432)],
            True,
            {"database": DB},
            kapg._Plan(
                ["127.0.0.10", "::1"], [6432, 6432], [RDS, RDS], {"127.0.0.10": RDS, "::1": RDS}
            ),
        ),
        # not verifying: the application's name; a socket keeps its place and its port
        (
            [SOCKET, ("database", 6432)],
            False,
            {"database": DB},
            kapg._Plan(
                [SOCKET, "127.0.0.10", "::1"],
                [5433, 6432, 6432],
                [SOCKET, "database", "database"],
                {"127.0.0.10": "database", "::1": "database"},
            ),
        ),
        # a ClusterIP Service: its own name, pinned to the answer's address
        (
            [("orders", 5432)],
            True,
            {"orders": ORDERS},
            kapg._Plan(["127.0.0.40"], [5432], ["orders"], {"127.0.0.40": "orders"}),
        ),
        # a host kubealias could not resolve goes to asyncpg as given
        (
            [("gone", 5432), ("database", 5432)],
            True,
            {"gone": ResolutionError("timed out", name="gone"), "database": DB},
            kapg._Plan(
                ["gone", "127.0.0.10", "::1"],
                [5432, 5432, 5432],
                ["gone", RDS, RDS],
                {"127.0.0.10": RDS, "::1": RDS},
            ),
        ),
    ],
)
def test_plan(addrs, verifying, outcomes, want):
    view = kapg._libpq_view(addrs, verifying)
    assert view is not None
    rewritten = _libpq.rewrite(view, outcomes, {}, pin=True)
    assert kapg._plan(view, rewritten, verifying) == want


def test_plan_one_address_two_names_only_matters_while_verifying():
    view = kapg._libpq_view([("database", 5432), ("127.0.0.10", 5432)], True)
    assert view is not None
    rewritten = _libpq.rewrite(view, {"database": DB}, {}, pin=True)
    with pytest.raises(ConnectionError, match="both"):
        kapg._plan(view, rewritten, True)
    plain = kapg._libpq_view([("database", 5432), ("127.0.0.10", 5432)], False)
    assert plain is not None
    plan = kapg._plan(plain, _libpq.rewrite(plain, {"database": DB}, {}, pin=True), False)
    assert plan is not None and plan.routes["127.0.0.10"] == "database"


# --- the routed context --------------------------------------------------------------------------


class _FirstBytes(asyncio.Protocol):
    def __init__(self) -> None:
        self.data: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        if not self.data.done():
            self.data.set_result(data)


SSL_REQUEST = b"\x00\x00\x00\x08\x04\xd2\x16\x2f"


async def test_routed_context_names_each_address(server):
    """asyncio's TLS (wrap_bio, as asyncpg uses it) with an address as server_hostname."""
    ctx = routed_context({"127.0.0.1": RDS}, server.client_context())
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_connection(_FirstBytes, "127.0.0.1", server.port)
    transport.write(SSL_REQUEST)
    assert await proto.data == b"S"
    tls = await loop.start_tls(transport, proto, ctx, server_hostname="127.0.0.1")
    assert tls is not None
    assert wait_for(lambda: bool(server.connections) and server.connections[-1].sni == RDS)
    tls.close()
    transport.close()


def test_routed_context_leaves_other_hosts_alone(server):
    ctx = routed_context({"127.0.0.9": RDS}, server.client_context())
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    raw.sendall(SSL_REQUEST)
    assert raw.recv(1) == b"S"
    with pytest.raises(ssl.SSLCertVerificationError, match="database"):
        ctx.wrap_socket(raw, server_hostname="database")
    raw.close()


def test_routed_context_is_reused_for_the_same_context_and_routes():
    base = ssl.create_default_context()
    first = routed_context({"127.0.0.1": RDS}, base)
    assert routed_context({"127.0.0.1": RDS}, base) is first
    assert routed_context({"127.0.0.1": "other.example.test"}, base) is not first
    assert routed_context({"127.0.0.1": RDS}, base, reuse=False) is not first


def test_routed_context_over_a_named_context_uses_the_callers():
    base = ssl.create_default_context()
    named = kubealias.tls_context(RDS, base)
    routed = routed_context({"127.0.0.1": "x"}, named)
    routed.check_hostname = True
    assert routed.verify_mode == base.verify_mode
    assert "127.0.0.1" in repr(routed)
    with pytest.raises(ValueError, match="server-side"):
        routed_context({}, ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))


# --- SQLAlchemy: postgresql+asyncpg engines ------------------------------------------------------


def _engine(url: str, resolver: Resolver, **connect_args: Any) -> Any:
    from sqlalchemy.ext.asyncio import create_async_engine

    import kubealias.sqlalchemy

    engine = create_async_engine(url, connect_args={"timeout": 5, **connect_args})
    return kubealias.sqlalchemy.install(engine, resolver=resolver)


async def test_sqlalchemy_asyncpg_engine_verifies_the_tls_name(server, resolver, lookups):
    from sqlalchemy.exc import DBAPIError

    url = f"postgresql+asyncpg://app:{PASSWORD}@database:{server.port}/app"
    engine = _engine(url, resolver, ssl=server.client_context())
    before = len(server.connections)
    try:
        with pytest.raises(DBAPIError) as info:  # SQLAlchemy's wrapper of asyncpg's error
            async with engine.connect():
                pass
    finally:
        await engine.dispose()
    orig = info.value.orig  # SQLAlchemy's adapted error, asyncpg's chained
    assert orig is not None and isinstance(orig.__cause__, AFTER_HANDSHAKE)
    assert len(server.connections) == before + 1
    assert server.connections[-1].sni == RDS
    assert lookups == []


async def test_sqlalchemy_asyncpg_engine_unresolvable_alias(server, resolver):
    url = f"postgresql+asyncpg://app:{PASSWORD}@gone:{server.port}/app"
    engine = _engine(url, resolver, ssl=True)
    try:
        with pytest.raises(ConnectionError) as info:  # passed on by SQLAlchemy, as OSErrors
            async with engine.connect():
                pass
    finally:
        await engine.dispose()
    assert isinstance(info.value.__cause__, ResolutionError)
    assert PASSWORD not in str(info.value)


# --- examples/asyncpg_app.py, up to the verified handshake ---------------------------------------


def test_example_app_verifies_the_external_name(server, dns):
    example = Path(__file__).resolve().parents[2] / "examples" / "asyncpg_app.py"
    env = {
        **os.environ,
        **dns.env(),
        "DATABASE_PORT": str(server.port),
        "DATABASE_USER": "app",
        "DATABASE_PASSWORD": PASSWORD,
        "PGSSLROOTCERT": server.cafile,
        "HOME": "/nonexistent",
    }
    before = len(server.connections)
    proc = subprocess.run(
        [sys.executable, str(example)], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1
    assert "ConnectionDoesNotExistError" in proc.stderr  # after TLS: no PostgreSQL there
    assert PASSWORD not in proc.stderr
    assert [c.sni for c in server.connections[before:]] == [RDS]

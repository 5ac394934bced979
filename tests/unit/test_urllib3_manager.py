"""kubealias.urllib3 (PoolManager, ProxyManager) and the shared route logic of kubealias._http."""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.metadata
import inspect
import json
import pickle
import socket
import ssl
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3
from urllib3 import poolmanager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    InsecureRequestWarning,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.util.retry import Retry

import kubealias._http
from kubealias import PolicyError, ResolutionError, Resolver
from kubealias._http import Route, connect_first, plan_route
from kubealias.testing import ClusterDNS, FakeClock, TLSServer
from kubealias.urllib3 import PoolManager, ProxyManager
from tests.unit._connect_proxy import ConnectProxy
from tests.unit.conftest import (
    DEAD,
    PAYMENT,
    SECOND,
    WRONG,
    host_header,
    unknown_to_getaddrinfo,
    url,
)

ALIAS_HTTPS = kubealias.urllib3._AliasHTTPSConnectionPool
ALIAS_HTTP = kubealias.urllib3._AliasHTTPConnectionPool


@pytest.fixture
def http(resolver: Resolver, cafile: str) -> Iterator[PoolManager]:
    with PoolManager(ca_certs=cafile, resolver=resolver) as manager:
        yield manager


def echo(response: urllib3.BaseHTTPResponse) -> dict[str, Any]:
    assert response.status == 200, response.data
    body: dict[str, Any] = response.json()
    return body


# --- the route (kubealias._http, shared by every adapter) -----------------------------------------


@pytest.mark.parametrize(
    ("scheme", "port", "rewrite", "want_port", "want_header"),
    [
        ("https", None, True, 443, PAYMENT),
        ("https", 443, True, 443, PAYMENT),
        ("https", 8443, True, 8443, f"{PAYMENT}:8443"),
        ("https", 80, True, 80, f"{PAYMENT}:80"),
        ("http", None, True, 80, PAYMENT),
        ("http", 80, True, 80, PAYMENT),
        ("HTTP", 8080, True, 8080, f"{PAYMENT}:8080"),
        ("http", 443, True, 443, f"{PAYMENT}:443"),
        ("https", 8443, False, 8443, None),
    ],
)
def test_plan_route(
    resolver: Resolver,
    scheme: str,
    port: int | None,
    rewrite: bool,
    want_port: int,
    want_header: str | None,
) -> None:
    route = plan_route(resolver, "payment-api", port, scheme, rewrite_host=rewrite)

    assert route == Route("payment-api", PAYMENT, ("127.0.0.1",), want_port, want_header)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "::1", "api.example.com"])
def test_plan_route_is_none_for_names_that_are_not_aliases(
    resolver: Resolver, dns: ClusterDNS, host: str
) -> None:
    assert plan_route(resolver, host, 443, "https", rewrite_host=True) is None
    assert dns.queries == []


def test_connect_first_lists_every_address(server: TLSServer) -> None:
    with pytest.raises(OSError, match="no address"):
        connect_first([], server.port, 1, name="x")
    with pytest.raises(OSError) as info:
        connect_first(["127.0.0.2", "127.0.0.3"], server.port, 1, name="dead-api (dead)")
    assert str(info.value).startswith("cannot connect to dead-api (dead): ")
    assert f"127.0.0.2:{server.port} (" in str(info.value)
    assert f"127.0.0.3:{server.port} (" in str(info.value)
    assert isinstance(info.value.__cause__, ConnectionRefusedError)

    with connect_first(["127.0.0.2", "127.0.0.1"], server.port, 1, name="multi") as sock:
        assert sock.getpeername() == ("127.0.0.1", server.port)


def test_connect_first_times_out_per_address(blackhole_port: int) -> None:
    with pytest.raises(TimeoutError, match="cannot connect to slow"):
        connect_first(["127.0.0.1"], blackhole_port, 0.1, name="slow")


# --- the documented use ---------------------------------------------------------------------------


def test_alias_pool_and_its_verified_connection(http: PoolManager, server: TLSServer) -> None:
    target = url(server.port, "payment-api")
    pool = http.connection_from_url(target)
    response = http.request("GET", target, preload_content=False)
    conn = response.connection
    assert isinstance(conn, HTTPSConnection)
    sock = conn.sock

    assert type(pool) is ALIAS_HTTPS
    assert (pool.host, pool.port) == ("payment-api", server.port)
    assert pool.conn_kw["server_hostname"] == PAYMENT
    assert pool.assert_hostname is None  # kubealias never touches it
    assert conn.is_verified
    assert isinstance(sock, ssl.SSLSocket)
    assert sock.server_hostname == PAYMENT
    cert = sock.getpeercert()
    assert cert is not None
    assert cert["subjectAltName"] == (("DNS", PAYMENT),)
    assert sock.getpeername() == ("127.0.0.1", server.port)
    response.read()
    response.release_conn()
    assert http.connection_from_url(url(server.port, "payment-api", "/other")) is pool


def test_post_body_and_preload_content_false(http: PoolManager, server: TLSServer) -> None:
    target = url(server.port, "payment-api", "/charges")
    response = http.request("POST", target, body=b"amount=1", preload_content=False)
    body = json.loads(b"".join(response.stream(5)))
    response.release_conn()
    after = echo(http.request("GET", target))

    assert (body["method"], body["body"], body["sni"]) == ("POST", "amount=1", PAYMENT)
    assert after["conn"] == body["conn"]  # back in the pool once read


# --- pools: one per TLS name and address set ------------------------------------------------------


def test_new_tls_name_after_the_ttl_gets_a_new_pool(
    dns: ClusterDNS, clock: FakeClock, cafile: str, server: TLSServer
) -> None:
    target = url(server.port, "payment-api")
    with PoolManager(ca_certs=cafile, resolver=dns.resolver(timeout=1, clock=clock)) as http:
        first = echo(http.request("GET", target))
        old_pool = http.connection_from_url(target)
        dns.external_name("payment-api", "production", SECOND)
        clock.advance(1)
        cached = echo(http.request("GET", target))
        clock.advance(5)
        moved = echo(http.request("GET", target))
        new_pool = http.connection_from_url(target)

    assert (first["sni"], cached["sni"], cached["conn"]) == (PAYMENT, PAYMENT, first["conn"])
    assert (moved["sni"], moved["host"]) == (SECOND, f"{SECOND}:{server.port}")
    assert moved["conn"] != first["conn"]
    assert new_pool is not old_pool
    assert new_pool.conn_kw["server_hostname"] == SECOND


# --- the Host header ------------------------------------------------------------------------------


def test_host_header_of_the_caller_is_kept(http: PoolManager) -> None:
    pool = http.connection_from_url("https://payment-api/")

    assert host_header(pool, Host="api.example.com") is None  # putrequest adds none: theirs


@pytest.mark.parametrize(("host", "sni"), [("127.0.0.1", None), ("localhost", "localhost")])
def test_redirect_to_another_host_does_not_carry_the_rewritten_host(
    http: PoolManager, server: TLSServer, host: str, sni: str | None
) -> None:
    target = url(server.port, host, "/final")
    response = http.request(
        "GET", url(server.port, "payment-api", "/redirect"), fields={"to": target}
    )

    final = echo(response)
    assert (final["sni"], final["host"], final["path"]) == (sni, f"{host}:{server.port}", "/final")
    assert response.retries is not None
    (hop,) = response.retries.history
    assert (hop.status, hop.redirect_location) == (302, target)


# --- names that are not aliases -------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "https://api.example.com/v1",
        "https://127.0.0.1:8443/",
        "https://[::1]/",
        "https://localhost/",
        "http://api.example.com/",
        "http://10.0.0.1/",
    ],
)
def test_non_alias_pool_is_built_as_urllib3_builds_it(http: PoolManager, target: str) -> None:
    # The rest of this contract, for requests too, is in test_http_contract.py.
    pool = http.connection_from_url(target)
    plain = urllib3.PoolManager(ca_certs=http.connection_pool_kw["ca_certs"])

    assert vars(pool).keys() == vars(plain.connection_from_url(target)).keys()
    # Its key is exactly the one urllib3 builds: urllib3's own PoolKey, field for field.
    (key,) = http.pools.keys()
    (want,) = plain.pools.keys()
    assert type(key) is poolmanager.PoolKey
    assert key == want


def test_cluster_ip_service_keeps_its_name_and_connects_to_the_answer(
    http: PoolManager, dns: ClusterDNS, server: TLSServer, lookups: list[str]
) -> None:
    dns.cluster_ip("ledger", "production", "127.0.0.1")

    pool = http.connection_from_url("https://ledger/")
    assert pool.host == "ledger"
    route = pool.conn_kw["ka_route"]
    assert (route.tls_name, route.addresses, route.host_header) == ("ledger", ("127.0.0.1",), None)

    with pytest.raises(urllib3.exceptions.SSLError, match="not valid for 'ledger'"):
        http.request("GET", url(server.port, "ledger"), retries=False)
    assert lookups == []


# --- verification ---------------------------------------------------------------------------------


def test_certificate_for_another_name_fails(http: PoolManager, server: TLSServer) -> None:
    with pytest.raises(MaxRetryError) as info:
        http.request("GET", url(server.port, "wrong-api"))

    assert isinstance(info.value.reason, SSLError)
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value.reason)


@pytest.mark.parametrize("ca_certs", ["system", "other"])
def test_untrusted_ca_fails(
    resolver: Resolver, server: TLSServer, other_cafile: str, ca_certs: str
) -> None:
    kwargs: dict[str, Any] = {"ca_certs": other_cafile} if ca_certs == "other" else {}
    with PoolManager(resolver=resolver, **kwargs) as http, pytest.raises(MaxRetryError) as info:
        http.request("GET", url(server.port, "payment-api"), retries=1)

    assert isinstance(info.value.reason, SSLError)


def test_cert_none_is_the_callers_choice(resolver: Resolver, server: TLSServer) -> None:
    with (
        PoolManager(resolver=resolver, cert_reqs="CERT_NONE") as http,
        pytest.warns(InsecureRequestWarning),
    ):
        response = http.request("GET", url(server.port, "wrong-api"))

    assert response.status == 421
    assert response.json()["sni"] == WRONG


def test_client_certificate_is_passed_through(
    resolver: Resolver, cafile: str, mtls_server: TLSServer, client_cert: tuple[str, str]
) -> None:
    target = url(mtls_server.port, "payment-api")
    with PoolManager(ca_certs=cafile, resolver=resolver) as http, pytest.raises(MaxRetryError):
        http.request("GET", target, retries=1)
    cert_file, key_file = client_cert
    with PoolManager(
        ca_certs=cafile, cert_file=cert_file, key_file=key_file, resolver=resolver
    ) as http:
        body = echo(http.request("GET", target))

    assert body["sni"] == PAYMENT


# --- connecting, timeouts, retries ----------------------------------------------------------------


def test_no_address_accepting(http: PoolManager, server: TLSServer) -> None:
    with pytest.raises(MaxRetryError) as info:
        http.request(
            "GET", url(server.port, "dead-api"), retries=Retry(connect=2, backoff_factor=0)
        )
    assert isinstance(info.value.reason, NewConnectionError)
    assert f"cannot connect to dead-api ({DEAD})" in str(info.value.reason)

    with pytest.raises(NewConnectionError, match=rf"127\.0\.0\.2:{server.port}.*127\.0\.0\.3"):
        http.request("GET", url(server.port, "dead-api"), retries=False)


def _same_failure(http: PoolManager, alias: str, port: int, **kw: Any) -> type[Exception]:
    """The error of the alias's request, checked to be urllib3's own for the address."""
    with urllib3.PoolManager() as plain, pytest.raises(Exception) as base:
        plain.request("GET", url(port, "127.0.0.1"), **kw)
    with pytest.raises(Exception) as ours:
        http.request("GET", url(port, alias), **kw)
    assert type(ours.value) is type(base.value)
    if isinstance(ours.value, MaxRetryError):
        assert isinstance(base.value, MaxRetryError)  # the same type, as just checked
        assert type(ours.value.reason) is type(base.value.reason)
    return type(ours.value)


@pytest.mark.parametrize("retries", [False, 0])
def test_read_timeout_as_urllib3(http: PoolManager, silent_port: int, retries: Any) -> None:
    failure = _same_failure(http, "payment-api", silent_port, timeout=0.2, retries=retries)

    assert failure is (ReadTimeoutError if retries is False else MaxRetryError)


@pytest.mark.parametrize("retries", [False, 0])
def test_connect_timeout_as_urllib3(http: PoolManager, blackhole_port: int, retries: Any) -> None:
    timeout = urllib3.Timeout(connect=0.2, read=5)
    failure = _same_failure(http, "payment-api", blackhole_port, timeout=timeout, retries=retries)

    assert failure is (ConnectTimeoutError if retries is False else MaxRetryError)


def test_connect_errors_are_retried(
    http: PoolManager, server: TLSServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, ...]] = []
    real = kubealias._http.connect_first

    def flaky(addresses: Any, *args: Any, **kwargs: Any) -> socket.socket:
        calls.append(tuple(addresses))
        if len(calls) == 1:
            raise ConnectionRefusedError("refused once")
        return real(addresses, *args, **kwargs)

    monkeypatch.setattr(kubealias._http, "connect_first", flaky)
    body = echo(http.request("GET", url(server.port, "payment-api"), retries=Retry(connect=1)))

    assert body["sni"] == PAYMENT
    assert calls == [("127.0.0.1",), ("127.0.0.1",)]


# --- resolution failures --------------------------------------------------------------------------


@pytest.fixture
def broken(dns: ClusterDNS) -> str:
    dns.external_name("broken-api", "production", "broken.example.test")
    dns.fault("broken-api.production.svc.cluster.local", "servfail")
    return "broken-api"


@pytest.mark.parametrize("retries", [None, 3, Retry(total=2)])
def test_resolution_failure_is_max_retry_error_with_a_name_resolution_reason(
    http: PoolManager, server: TLSServer, broken: str, dns: ClusterDNS, retries: Any
) -> None:
    target = url(server.port, broken)
    with pytest.raises(MaxRetryError) as info:
        http.request("GET", target, retries=retries)

    reason = info.value.reason
    assert isinstance(reason, NameResolutionError)
    assert isinstance(reason.__cause__, ResolutionError)
    assert "cannot resolve 'broken-api'" in str(reason)
    assert "cannot resolve 'broken-api'" in str(info.value)
    assert info.value.url == "/"  # the request target, as urllib3 reports it (no userinfo)
    # Not retried: another try would only wait for the DNS timeout again. One request makes
    # the queries of one resolution.
    asked = len(dns.queries)
    dns.reset_queries()
    with pytest.raises(ResolutionError):
        dns.resolver(timeout=1).resolve(broken)
    assert asked == len(dns.queries)


def test_resolution_failure_with_retries_false(
    http: PoolManager, server: TLSServer, broken: str
) -> None:
    with pytest.raises(NameResolutionError) as info:
        http.request("GET", url(server.port, broken), retries=False)

    assert isinstance(info.value.__cause__, ResolutionError)
    assert "cannot resolve 'broken-api'" in str(info.value)
    with pytest.raises(NameResolutionError):  # also from connection_from_url
        http.connection_from_url(url(server.port, broken))


def _failure(send: Any) -> tuple[type[BaseException], str]:
    with pytest.raises(Exception) as info:
        send()
    return type(info.value), str(info.value)


@pytest.mark.parametrize("target", ["http://:1/", "https://:443/x", "http:///x", "http://@:1/"])
def test_a_url_without_a_host_fails_as_with_urllib3(
    http: PoolManager, server: TLSServer, dns: ClusterDNS, target: str
) -> None:
    plain = urllib3.PoolManager()
    want = _failure(lambda: plain.request("GET", target, retries=False))
    dns.reset_queries()

    assert want == (urllib3.exceptions.LocationValueError, "No host specified.")
    assert _failure(lambda: http.request("GET", target, retries=False)) == want
    # A redirect to it, followed by urllib3 itself.
    redirect = url(server.port, "payment-api", f"/redirect?to={target}")
    assert _failure(lambda: http.request("GET", redirect)) == want
    for host in (None, ""):
        assert _failure(lambda h=host: http.connection_from_host(h, 1, "https")) == want
    assert {q.name.split(".")[0] for q in dns.queries} <= {"payment-api"}


def test_policy_refusal(dns: ClusterDNS, cafile: str, server: TLSServer) -> None:
    resolver = dns.resolver(timeout=1, allowed_targets=["*.allowed.test"])
    with PoolManager(ca_certs=cafile, resolver=resolver) as http:
        with pytest.raises(MaxRetryError, match="ALLOWED_TARGETS") as info:
            http.request("GET", url(server.port, "payment-api"))
        assert isinstance(info.value.reason, NameResolutionError)
        assert isinstance(info.value.reason.__cause__, PolicyError)
        # An alias outside the cluster domain is fine with the same resolver.
        assert echo(http.request("GET", url(server.port, "localhost")))["sni"] == "localhost"


@pytest.fixture
def no_such_host(monkeypatch: pytest.MonkeyPatch) -> str:
    """``host.nonexistent.invalid``, which getaddrinfo fails for (stubbed: no query leaves)."""
    unknown_to_getaddrinfo(monkeypatch, "host.nonexistent.invalid")
    return "host.nonexistent.invalid"


@pytest.mark.parametrize("retries", [0, False])
def test_other_name_resolution_errors_are_urllib3s_own(
    http: PoolManager, dns: ClusterDNS, no_such_host: str, retries: Any
) -> None:
    # A name that urllib3 resolves itself (not an alias): its own error, unchanged.
    target = f"https://{no_such_host}/"
    with pytest.raises((MaxRetryError, NameResolutionError)) as base:
        urllib3.PoolManager().request("GET", target, retries=retries)
    with pytest.raises((MaxRetryError, NameResolutionError)) as ours:
        http.request("GET", target, retries=retries)

    assert type(ours.value) is type(base.value)
    error = ours.value.reason if isinstance(ours.value, MaxRetryError) else ours.value
    assert isinstance(error, NameResolutionError)
    assert isinstance(error.__cause__, socket.gaierror)
    assert str(ours.value) == str(base.value)
    assert dns.queries == []


# --- proxies --------------------------------------------------------------------------------------


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    with ConnectProxy() as p:
        yield p


def test_proxy_manager_connect_goes_to_the_tls_name(
    resolver: Resolver, cafile: str, server: TLSServer, proxy: ConnectProxy
) -> None:
    with ProxyManager(proxy.url, ca_certs=cafile, resolver=resolver) as http:
        bodies = [echo(http.request("GET", url(server.port, "payment-api"))) for _ in range(3)]
        other = echo(http.request("GET", url(server.port, "localhost")))
        pool = http.connection_from_url(url(server.port, "payment-api"))
        plain = http.connection_from_url(url(server.port, "localhost"))

    assert proxy.targets == [f"{PAYMENT}:{server.port}", f"localhost:{server.port}"]
    assert {(b["sni"], b["host"]) for b in bodies} == {(PAYMENT, f"{PAYMENT}:{server.port}")}
    assert len({b["conn"] for b in bodies}) == 1
    assert (other["sni"], other["host"]) == ("localhost", f"localhost:{server.port}")
    assert type(pool) is ALIAS_HTTPS and pool.host == PAYMENT
    assert pool.conn_kw["ka_route"].addresses == ()  # the proxy connects
    assert type(plain) is HTTPSConnectionPool


def test_proxy_manager_with_rewrite_host_false(
    resolver: Resolver, cafile: str, server: TLSServer, proxy: ConnectProxy
) -> None:
    with ProxyManager(proxy.url, ca_certs=cafile, resolver=resolver, rewrite_host=False) as http:
        body = echo(http.request("GET", url(server.port, "payment-api")))
        explicit = echo(
            http.request("GET", url(server.port, "second-api"), headers={"Host": "api.example"})
        )

    assert proxy.targets == [f"{PAYMENT}:{server.port}", f"{SECOND}:{server.port}"]
    assert (body["sni"], body["host"]) == (PAYMENT, f"payment-api:{server.port}")
    assert (explicit["sni"], explicit["host"]) == (SECOND, "api.example")


def test_proxy_manager_leaves_plain_http_to_the_forward_proxy(
    resolver: Resolver, dns: ClusterDNS, proxy: ConnectProxy
) -> None:
    with ProxyManager(proxy.url, resolver=resolver) as http:
        response = http.request("GET", "http://payment-api:8080/x", retries=False)

    assert response.status == 405  # ConnectProxy only tunnels; the request reached it unchanged
    assert proxy.targets == ["http://payment-api:8080/x"]
    assert dns.queries == []


def test_proxy_manager_resolution_failure(
    resolver: Resolver, cafile: str, server: TLSServer, proxy: ConnectProxy, broken: str
) -> None:
    with ProxyManager(proxy.url, ca_certs=cafile, resolver=resolver) as http:
        with pytest.raises(MaxRetryError) as info:
            http.request("GET", url(server.port, broken))
        with pytest.raises(NameResolutionError):
            http.request("GET", url(server.port, broken), retries=False)

    assert isinstance(info.value.reason, NameResolutionError)
    assert isinstance(info.value.reason.__cause__, ResolutionError)
    assert proxy.targets == []


# --- pinned routes --------------------------------------------------------------------------------


def test_a_cluster_ip_keeps_the_callers_server_hostname(
    resolver: Resolver, cafile: str, server: TLSServer, dns: ClusterDNS, lookups: list[str]
) -> None:
    dns.cluster_ip("ledger", "production", "127.0.0.1")
    with PoolManager(ca_certs=cafile, resolver=resolver, server_hostname=PAYMENT) as manager:
        body = echo(manager.request("GET", url(server.port, "ledger")))
    assert body["sni"] == PAYMENT  # kubealias pinned the address, the SNI is the caller's
    assert lookups == []


def test_a_new_address_order_reuses_the_pool(http: PoolManager) -> None:
    first = Route("multi-api", "multi.example.test", ("10.0.0.1", "10.0.0.2"), 443, None)
    again = Route("multi-api", "multi.example.test", ("10.0.0.2", "10.0.0.1"), 443, None)
    pools = [
        http.connection_from_host("multi-api", 443, "https", {"ka_route": r})
        for r in (first, again)
    ]
    assert pools[0] is pools[1]


# --- urllib3's code that kubealias follows --------------------------------------------------------


def _shape(function: Any) -> str:
    """A fingerprint of a function's code: the code as Python reads it, without its docstring
    or comments (a reworded comment is no change of shape)."""
    node = ast.parse(textwrap.dedent(inspect.getsource(function))).body[0]
    assert isinstance(node, ast.FunctionDef)
    if ast.get_docstring(node) is not None:
        node.body = node.body[1:]
    return hashlib.sha256(ast.unparse(node).encode()).hexdigest()[:16]


# Read for urllib3 2.8.0. _pool_key restates the first, the alias connections' _new_conn the
# second; the third is the documented hook that hands pool_classes_by_scheme the request context.
FOLLOWED = {
    ("urllib3.poolmanager", "_default_key_normalizer"): "98dd8be38ad98a8c",
    ("urllib3.connection", "HTTPConnection._new_conn"): "905855ed863f6737",
    ("urllib3.poolmanager", "PoolManager._new_pool"): "f8bfb7f0ac86635e",
}


@pytest.mark.parametrize(("module", "qualname"), FOLLOWED, ids=[q for _, q in FOLLOWED])
def test_the_urllib3_code_kubealias_follows_has_not_changed_shape(
    module: str, qualname: str
) -> None:
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)

    version = importlib.metadata.version("urllib3")
    assert _shape(target) == FOLLOWED[module, qualname], (
        f"{module}.{qualname} changed shape in urllib3 {version} (fingerprint "
        "taken from urllib3 2.8.0): re-read it, bring kubealias/urllib3.py in line with it, "
        "then update FOLLOWED"
    )


@pytest.mark.parametrize(
    "context",
    [
        {"scheme": "HTTPS", "host": "Payment-API", "port": 443},
        {
            "scheme": "http",
            "host": "a",
            "port": 80,
            "headers": {"X-A": "1"},
            "_proxy_headers": {"P": "2"},
            "_socks_options": {"S": "3"},
            "socket_options": [(6, 1, 1)],
            "blocksize": 1024,
            "timeout": 3.0,
        },
        {"scheme": "https", "host": "b", "port": 8443, "blocksize": None, "server_hostname": "x"},
    ],
)
def test_pool_key_is_urllib3s_key_plus_the_route(context: dict[str, Any]) -> None:
    route = Route("payment-api", PAYMENT, ("10.0.0.2", "10.0.0.1"), 443, None)
    theirs = poolmanager._default_key_normalizer(poolmanager.PoolKey, context)

    ours = kubealias.urllib3._pool_key({**context, "ka_route": route})
    passed_through = kubealias.urllib3._pool_key({**context, "ka_route": None})

    assert ours._asdict() == {**theirs._asdict(), "key_ka_route": route.pool_key}
    assert type(passed_through) is poolmanager.PoolKey  # urllib3's own key, exactly
    assert passed_through == theirs and passed_through != ours
    assert kubealias.urllib3._pool_key(dict(context)) == theirs
    with pytest.raises(TypeError):  # an unknown key, as urllib3's own normaliser
        kubealias.urllib3._pool_key({**context, "no_such_key": 1})
    with pytest.raises(TypeError):
        poolmanager._default_key_normalizer(poolmanager.PoolKey, {**context, "no_such_key": 1})


def _parameters(function: Any) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


@pytest.mark.parametrize(
    ("ours", "theirs"), [(PoolManager, urllib3.PoolManager), (ProxyManager, urllib3.ProxyManager)]
)
def test_managers_take_urllib3s_arguments_in_urllib3s_order(ours: Any, theirs: Any) -> None:
    params = _parameters(ours)
    keyword_only = [p for p in params if p[1] is inspect.Parameter.KEYWORD_ONLY]

    assert issubclass(ours, theirs)
    assert [p for p in params if p not in keyword_only] == _parameters(theirs)
    assert keyword_only == [
        ("resolver", inspect.Parameter.KEYWORD_ONLY, None),
        ("rewrite_host", inspect.Parameter.KEYWORD_ONLY, True),
    ]


def test_proxy_manager_takes_proxy_headers_by_position(resolver: Resolver) -> None:
    args = ("http://proxy.example.test:3128", 3, {"A": "1"}, {"Proxy-Authorization": "Basic eA=="})
    context = ssl.create_default_context()
    plain = urllib3.ProxyManager(*args, context, True, "proxy.example.test", None)
    ours = ProxyManager(*args, context, True, "proxy.example.test", None, resolver=resolver)

    for manager in (plain, ours):
        config = manager.proxy_config
        assert manager.proxy_headers == {"Proxy-Authorization": "Basic eA=="}
        assert config is not None and config.ssl_context is context
        assert (config.use_forwarding_for_https, config.assert_hostname) == (
            True,
            "proxy.example.test",
        )
        assert (manager.pools._maxsize, manager.headers) == (3, {"A": "1"})


def test_putrequest_has_the_signature_the_alias_connections_call() -> None:
    parameters = list(inspect.signature(HTTPConnection.putrequest).parameters)

    assert parameters == ["self", "method", "url", "skip_host", "skip_accept_encoding"]


def test_pool_classes_set_by_the_application_serve_non_aliases_and_aliases_keep_ours(
    resolver: Resolver, cafile: str, server: TLSServer
) -> None:
    class Counting(urllib3.HTTPSConnectionPool):
        made = 0

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            type(self).made += 1
            super().__init__(*args, **kwargs)

    manager = PoolManager(resolver=resolver, ca_certs=cafile)
    manager.pool_classes_by_scheme = {"http": urllib3.HTTPConnectionPool, "https": Counting}
    alias = manager.request("GET", url(server.port, "payment-api"))
    assert alias.status == 200 and Counting.made == 0  # an alias: kubealias's pool class
    plain = manager.request("GET", f"https://127.0.0.1:{server.port}/")  # not an alias
    assert plain.status in (200, 421) and Counting.made == 1  # the manager's own pool class


def test_a_manager_pickles_as_urllib3s_does(resolver: Resolver) -> None:
    # urllib3's managers hold their pools behind a lock and do not pickle; neither do ours
    # (requests pickles an adapter without its manager and builds a new one, see
    # test_requests_adapter.py). The resolver they hold pickles on its own.
    def failure(manager: Any) -> tuple[type[BaseException], str]:
        with pytest.raises(TypeError) as info:
            pickle.dumps(manager)
        return type(info.value), str(info.value)

    assert failure(PoolManager(resolver=resolver)) == failure(urllib3.PoolManager())
    proxy = "http://proxy.example.test:3128"
    assert failure(ProxyManager(proxy, resolver=resolver)) == failure(urllib3.ProxyManager(proxy))
    assert pickle.loads(pickle.dumps(resolver)).config == resolver.config

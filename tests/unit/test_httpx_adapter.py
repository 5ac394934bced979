"""kubealias.httpx against the in-process cluster DNS and a loopback HTTPS server with SNI hosts."""

from __future__ import annotations

import importlib
import inspect
import json
import ssl
import sys
import types
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpcore
import httpx
import pytest
import trustme

import kubealias.httpx
from kubealias import KubeAliasError, PolicyError, ResolutionError, Resolver
from kubealias._http import Route
from kubealias.httpx import AsyncHTTPTransport, HTTPTransport
from kubealias.testing import ClusterDNS, TLSServer
from tests.unit._connect_proxy import ConnectProxy
from tests.unit.conftest import DEAD, MULTI, PAYMENT, SECOND, WRONG

# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trust(ca: trustme.CA) -> ssl.SSLContext:
    """The client's verification: the system defaults plus the test CA."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.fixture
def transport(resolver: Resolver, trust: ssl.SSLContext) -> Iterator[HTTPTransport]:
    with HTTPTransport(verify=trust, resolver=resolver) as kt:
        yield kt


@pytest.fixture
def client(transport: HTTPTransport) -> Iterator[httpx.Client]:
    with httpx.Client(transport=transport) as c:
        yield c


def url(server: TLSServer, host: str, path: str = "/") -> str:
    return f"https://{host}:{server.port}{path}"


def echo(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    return body


# --- drop-in: the types and signatures of httpx's transports --------------------------------------

TRANSPORTS = [
    (HTTPTransport, httpx.HTTPTransport, httpcore.ConnectionPool),
    (AsyncHTTPTransport, httpx.AsyncHTTPTransport, httpcore.AsyncConnectionPool),
]


def _parameters(cls: type) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(cls).parameters.values()]


@pytest.mark.parametrize(("ours", "theirs", "pool_cls"), TRANSPORTS)
def test_the_transports_are_httpx_transports_with_httpx_signature(
    ours: type[Any], theirs: type[Any], pool_cls: type[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert issubclass(ours, theirs)
    params = _parameters(ours)
    # httpx's parameters, in httpx's order, kinds and defaults; then kubealias's keyword-only.
    assert params[:-2] == _parameters(theirs)
    assert params[-2:] == [
        ("resolver", inspect.Parameter.KEYWORD_ONLY, None),
        ("rewrite_host", inspect.Parameter.KEYWORD_ONLY, True),
    ]
    built: list[Any] = []
    real = pool_cls.__init__

    def counting(self: Any, *args: Any, **kwargs: Any) -> None:
        built.append(self)
        real(self, *args, **kwargs)

    monkeypatch.setattr(pool_cls, "__init__", counting)
    transport = ours(limits=httpx.Limits(max_connections=3))

    assert isinstance(transport, theirs)
    # One pool, httpx's own, for the hosts kubealias passes through: not a second transport.
    assert built == [transport._pool]
    assert transport._pool._max_connections == 3


async def test_leaving_the_client_closes_every_pool(
    resolver: Resolver, trust: ssl.SSLContext, server: TLSServer
) -> None:
    # httpx's own __exit__ closes its pool only; the routes' pools are closed too.
    kt = HTTPTransport(verify=trust, resolver=resolver)
    with httpx.Client(transport=kt) as client:
        client.get(url(server, "payment-api"))
        client.get(url(server, "localhost"))
        inner = [slot.transport for slot in kt._routes._slots.values()]
        assert inner and kt._pool.connections
    akt = AsyncHTTPTransport(verify=trust, resolver=resolver)
    async with httpx.AsyncClient(transport=akt) as aclient:
        await aclient.get(url(server, "payment-api"))
        await aclient.get(url(server, "localhost"))
        ainner = [slot.transport for slot in akt._routes._slots.values()]
        assert ainner and akt._pool.connections

    assert len(kt._routes) == len(akt._routes) == 0
    assert not kt._pool.connections and not akt._pool.connections
    assert not any(t._pool.connections for t in inner)
    assert not any(t._pool.connections for t in ainner)


# --- the request sent for an alias (no I/O) -------------------------------------------------------


ROUTE = Route("payment-api", PAYMENT, ("127.0.0.1",), 443, PAYMENT)


@pytest.mark.parametrize(
    ("request_url", "headers", "route", "want_url", "want_host"),
    [
        ("https://payment-api/v1", {}, ROUTE, f"https://{PAYMENT}/v1", PAYMENT),
        (
            "https://payment-api:8443/v1?a=1",
            {},
            Route("payment-api", PAYMENT, ("127.0.0.1",), 8443, f"{PAYMENT}:8443"),
            f"https://{PAYMENT}:8443/v1?a=1",
            f"{PAYMENT}:8443",
        ),
        (
            "http://payment-api/",
            {},
            Route("payment-api", PAYMENT, ("127.0.0.1",), 80, PAYMENT),
            f"http://{PAYMENT}/",
            PAYMENT,
        ),
        # The caller's own Host is kept (any case of the header name).
        ("https://payment-api/", {"host": "api.example.com"}, ROUTE, None, "api.example.com"),
        # A Host equal to the URL's authority is what httpx writes itself: not the caller's.
        ("https://payment-api/", {"Host": "Payment-API"}, ROUTE, None, PAYMENT),
        # rewrite_host=False: the route carries no Host.
        (
            "https://payment-api/",
            {},
            Route("payment-api", PAYMENT, ("127.0.0.1",), 443, None),
            None,
            "payment-api",
        ),
    ],
)
def test_forwarded_request(
    request_url: str,
    headers: dict[str, str],
    route: Route,
    want_url: str | None,
    want_host: str,
) -> None:
    original = httpx.Request(
        "POST", request_url, headers=headers, content=b"body", extensions={"k": "v"}
    )
    before = (original.url, original.headers.multi_items())

    raw = kubealias.httpx._HeaderMemo().raw(original, route)
    forwarded = kubealias.httpx._forward(original, route, raw, proxied=False)
    proxied = kubealias.httpx._forward(original, route, raw, proxied=True)
    core = kubealias.httpx._core_request(original, route, raw)

    # Direct: same URL, the TLS name as httpcore's sni_hostname (SNI and verification).
    assert forwarded.url == original.url
    assert forwarded.extensions == {"k": "v", "sni_hostname": route.tls_name}
    assert core.extensions == forwarded.extensions
    assert bytes(core.url) == str(original.url).encode() and core.method == b"POST"
    assert core.headers == forwarded.headers.raw
    # Through a proxy: the URL host is the TLS name, so the CONNECT goes there.
    assert str(proxied.url) == (want_url or str(original.url).replace("payment-api", PAYMENT))
    assert proxied.extensions == {"k": "v"}
    assert forwarded.headers["Host"] == proxied.headers["Host"] == want_host
    assert [k for k, _ in forwarded.headers.multi_items()] == [
        k for k, _ in original.headers.multi_items()
    ]
    assert forwarded.stream is original.stream and forwarded.read() == b"body"
    assert (original.url, original.headers.multi_items()) == before  # never mutated
    assert original.extensions == {"k": "v"}


class FakeBackend(httpcore.NetworkBackend):
    """Records each connect; addresses in ``fail`` raise the given httpcore error."""

    def __init__(self, fail: dict[str, Exception]) -> None:
        self.calls: list[tuple[str, int, float | None]] = []
        self.fail = fail

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        self.calls.append((host, port, timeout))
        if host in self.fail:
            raise self.fail[host]
        return httpcore.MockStream([])


MULTI_ROUTE = Route("multi-api", MULTI, ("10.0.0.1", "10.0.0.2", "::1"), 443, MULTI)


def test_header_memo_reuses_only_for_the_same_route_and_headers() -> None:
    memo = kubealias.httpx._HeaderMemo()
    one = httpx.Request("GET", "https://payment-api/", headers={"X-A": "1"})
    same = httpx.Request("GET", "https://payment-api/", headers={"X-A": "1"})
    other = httpx.Request("GET", "https://payment-api/", headers={"X-A": "2"})
    theirs = httpx.Request("GET", "https://payment-api/", headers={"Host": "mine.example"})

    first = memo.raw(one, ROUTE)
    assert dict(first)[b"Host"] == PAYMENT.encode()
    assert memo.raw(same, ROUTE) is first  # the same header list: the same answer
    assert dict(memo.raw(other, ROUTE))[b"X-A"] == b"2"
    assert memo.raw(theirs, ROUTE) == theirs.headers.raw  # the caller's Host: untouched
    assert memo.raw(theirs, ROUTE) == theirs.headers.raw  # also when remembered
    # Another route object never gets the answer remembered for the first one.
    twin = Route(ROUTE.name, "elsewhere.example", ROUTE.addresses, ROUTE.port, "elsewhere.example")
    assert dict(memo.raw(same, twin))[b"Host"] == b"elsewhere.example"
    assert (one.headers["Host"], same.headers["Host"]) == ("payment-api", "payment-api")


@pytest.fixture(params=[True, False], ids=["direct", "through-inner-transport"])
def either_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Both ways an alias request reaches its route's pool (see _DIRECT)."""
    monkeypatch.setattr(kubealias.httpx, "_DIRECT", request.param)
    return bool(request.param)


async def test_both_paths_verify_send_the_body_and_stream(
    either_path: bool, resolver: Resolver, trust: ssl.SSLContext, server: TLSServer
) -> None:
    with httpx.Client(transport=HTTPTransport(verify=trust, resolver=resolver)) as c:
        body = echo(c.post(url(server, "payment-api"), content=b"x" * 100))
        assert (body["sni"], body["host"]) == (PAYMENT, f"{PAYMENT}:{server.port}")
        with c.stream("GET", url(server, "second-api")) as streaming:
            assert json.loads(b"".join(streaming.iter_bytes()))["sni"] == SECOND
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            c.get(url(server, "wrong-api"))
    async with httpx.AsyncClient(
        transport=AsyncHTTPTransport(verify=trust, resolver=resolver)
    ) as ac:
        body = echo(await ac.post(url(server, "payment-api"), content=b"x" * 100))
        assert (body["sni"], body["host"]) == (PAYMENT, f"{PAYMENT}:{server.port}")
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await ac.get(url(server, "wrong-api"))


def _failure(send: Any) -> tuple[type[BaseException], str]:
    with pytest.raises(Exception) as info:
        send()
    return type(info.value), str(info.value)


async def _afailure(send: Any) -> tuple[type[BaseException], str]:
    with pytest.raises(Exception) as info:
        await send()
    return type(info.value), str(info.value)


@pytest.mark.parametrize("target", ["http://:1/", "https://:443/x", "http:///x", "http://@:1/"])
async def test_a_url_without_a_host_fails_as_with_httpx(
    resolver: Resolver, dns: ClusterDNS, monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    def no_lookup(host: str) -> Any:
        raise AssertionError(f"resolve({host!r})")

    with httpx.Client() as plain:
        want = _failure(lambda: plain.get(target))
    assert want[0] is httpx.UnsupportedProtocol
    monkeypatch.setattr(resolver, "resolve", no_lookup)
    monkeypatch.setattr(resolver, "aresolve", no_lookup)

    with httpx.Client(transport=HTTPTransport(resolver=resolver)) as client:
        assert _failure(lambda: client.get(target)) == want
    async with httpx.AsyncClient(transport=AsyncHTTPTransport(resolver=resolver)) as aclient:
        assert await _afailure(lambda: aclient.get(target)) == want
    # The client takes such a URL as relative; a transport called directly gets it as is.
    request = httpx.Request("GET", target)
    assert request.url.scheme in ("http", "https") and request.url.host == ""
    with httpx.HTTPTransport() as plain_transport:
        want = _failure(lambda: plain_transport.handle_request(request))
    with HTTPTransport(resolver=resolver) as transport:
        assert _failure(lambda: transport.handle_request(request)) == want
    async with AsyncHTTPTransport(resolver=resolver) as atransport:
        assert await _afailure(lambda: atransport.handle_async_request(request)) == want


def test_pinned_backend_tries_each_address_in_order_with_the_whole_timeout() -> None:
    fake = FakeBackend({"10.0.0.1": httpcore.ConnectError("refused")})
    backend = kubealias.httpx._PinnedBackend(MULTI_ROUTE, fake)

    backend.connect_tcp("multi-api", 443, timeout=3.0)

    assert fake.calls == [("10.0.0.1", 443, 3.0), ("10.0.0.2", 443, 3.0)]


@pytest.mark.parametrize(
    ("errors", "kind"),
    [
        ([httpcore.ConnectTimeout("t")] * 3, httpcore.ConnectTimeout),
        (
            [
                httpcore.ConnectTimeout("t"),
                httpcore.ConnectError("r"),
                httpcore.ConnectTimeout("t"),
            ],
            httpcore.ConnectError,
        ),
    ],
)
def test_pinned_backend_reports_every_address(errors: list[Exception], kind: type) -> None:
    fake = FakeBackend(dict(zip(MULTI_ROUTE.addresses, errors, strict=True)))
    backend = kubealias.httpx._PinnedBackend(MULTI_ROUTE, fake)

    with pytest.raises((httpcore.ConnectError, httpcore.ConnectTimeout)) as info:
        backend.connect_tcp("multi-api", 443)

    assert type(info.value) is kind
    assert str(info.value).startswith(f"cannot connect to {MULTI}: 10.0.0.1:443 (")
    assert "10.0.0.2:443" in str(info.value) and "[::1]:443" in str(info.value)


@pytest.mark.parametrize(
    ("host", "port"), [("payment.example.test", 443), (MULTI, 443), ("multi-api", 8443)]
)
def test_pinned_backend_refuses_another_origin(host: str, port: int) -> None:
    fake = FakeBackend({})
    backend = kubealias.httpx._PinnedBackend(MULTI_ROUTE, fake)

    with pytest.raises(httpcore.ConnectError, match="refusing"):
        backend.connect_tcp(host, port)
    assert fake.calls == []


@pytest.mark.parametrize("port", [65536, 99999])
async def test_a_port_out_of_range_is_a_connect_error_in_both_transports(
    resolver: Resolver, trust: ssl.SSLContext, port: int
) -> None:
    # httpx accepts any port number in a URL; the socket layer would raise OverflowError (in
    # an ExceptionGroup from anyio), which no httpx user catches.
    target = f"https://payment-api:{port}/"
    with (
        httpx.Client(transport=HTTPTransport(verify=trust, resolver=resolver)) as c,
        pytest.raises(httpx.ConnectError, match="out of range"),
    ):
        c.get(target)
    async with httpx.AsyncClient(
        transport=AsyncHTTPTransport(verify=trust, resolver=resolver)
    ) as ac:
        with pytest.raises(httpx.ConnectError, match="out of range"):
            await ac.get(target)


# --- sync: the alias path -------------------------------------------------------------------------


def test_alias_is_verified_as_the_external_name(
    client: httpx.Client, server: TLSServer, lookups: list[str]
) -> None:
    response = client.get(url(server, "payment-api", "/v1/charges"))

    assert response.status_code == 200
    body = echo(response)
    assert body["sni"] == PAYMENT
    assert body["host"] == f"{PAYMENT}:{server.port}"
    assert body["path"] == "/v1/charges"
    assert response.request.url.host == "payment-api"  # the client's request is untouched
    assert lookups == []  # connected to the cluster DNS's address, no lookup of any name


def test_connection_is_reused(client: httpx.Client, server: TLSServer) -> None:
    before = len(server.connections)
    ids = {echo(client.get(url(server, "payment-api")))["conn"] for _ in range(5)}

    assert len(ids) == 1
    # One handshake for five requests
    assert [c.sni for c in server.connections[before:]] == [PAYMENT]


def test_two_aliases_on_one_address_never_share_a_connection(
    client: httpx.Client, transport: HTTPTransport, server: TLSServer
) -> None:
    seen: dict[str, set[int]] = {PAYMENT: set(), SECOND: set()}
    for _ in range(4):
        for service, name in (("payment-api", PAYMENT), ("second-api", SECOND)):
            body = echo(client.get(url(server, service)))
            assert (body["sni"], body["host"]) == (name, f"{name}:{server.port}")
            seen[name].add(body["conn"])

    assert len(seen[PAYMENT]) == len(seen[SECOND]) == 1
    assert not seen[PAYMENT] & seen[SECOND]
    assert len(transport._routes) == 2


def test_rewrite_host_false_keeps_the_host_header(
    resolver: Resolver, trust: ssl.SSLContext, server: TLSServer
) -> None:
    kt = HTTPTransport(verify=trust, resolver=resolver, rewrite_host=False)
    with httpx.Client(transport=kt) as client:
        body = echo(client.get(url(server, "payment-api")))

    assert body["sni"] == PAYMENT
    assert body["host"] == f"payment-api:{server.port}"


def test_explicit_host_header_is_kept(client: httpx.Client, server: TLSServer) -> None:
    response = client.get(url(server, "payment-api"), headers={"Host": "api.example.com"})

    assert echo(response)["host"] == "api.example.com"
    assert echo(response)["sni"] == PAYMENT


@pytest.mark.parametrize(
    ("host", "tls_name"),
    [("localhost", "localhost"), ("payment-api", PAYMENT)],
    ids=[
        "to-another-host-does-not-carry-the-rewritten-host",
        "within-the-alias-is-rewritten-again",
    ],
)
def test_redirect(client: httpx.Client, server: TLSServer, host: str, tls_name: str) -> None:
    target = url(server, host, "/final")
    response = client.get(
        url(server, "payment-api", "/redirect"), params={"to": target}, follow_redirects=True
    )

    assert response.status_code == 200
    (hop,) = response.history
    assert echo(hop)["host"] == f"{PAYMENT}:{server.port}"
    final = echo(response)
    assert (final["sni"], final["host"], final["path"]) == (
        tls_name,
        f"{tls_name}:{server.port}",
        "/final",
    )


def test_post_body_and_streaming_response(client: httpx.Client, server: TLSServer) -> None:
    with client.stream("POST", url(server, "payment-api"), content=b"charge=1") as response:
        body = b"".join(response.iter_bytes())

    assert httpx.Response(200, content=body).json()["body"] == "charge=1"


# --- sync: names that are not aliases -------------------------------------------------------------


@pytest.mark.parametrize(("host", "sni"), [("localhost", "localhost"), ("127.0.0.1", None)])
def test_non_alias_goes_through_the_base_transport_unchanged(
    transport: HTTPTransport,
    server: TLSServer,
    dns: ClusterDNS,
    monkeypatch: pytest.MonkeyPatch,
    host: str,
    sni: str | None,
) -> None:
    seen: list[httpx.Request] = []
    assert kubealias.httpx._httpx_send is httpx.HTTPTransport.handle_request

    def spy(self: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
        assert self is transport  # httpx's own handle_request, on the transport's own pool
        seen.append(request)
        return httpx.HTTPTransport.handle_request(self, request)

    monkeypatch.setattr(kubealias.httpx, "_httpx_send", spy)
    dns.reset_queries()
    with httpx.Client(transport=transport) as client:
        response = client.get(url(server, host))

    assert response.status_code == 200
    assert (echo(response)["sni"], echo(response)["host"]) == (sni, f"{host}:{server.port}")
    assert seen == [response.request]  # the very request object, to httpx's own transport
    assert len(transport._routes) == 0
    assert dns.queries == []  # no DNS query for a name that cannot be a service


# --- sync: verification ---------------------------------------------------------------------------


def test_verification_stays_on(client: httpx.Client, server: TLSServer) -> None:
    # The server has no certificate for wrong.example.test: it presents its default one.
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        client.get(url(server, "wrong-api"))


def test_default_verification_uses_the_system_trust_store(
    resolver: Resolver, server: TLSServer
) -> None:
    kt = HTTPTransport(resolver=resolver)  # verify=True: the test CA is not trusted
    context = kt._options["verify"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    with httpx.Client(transport=kt) as client, pytest.raises(httpx.ConnectError):
        client.get(url(server, "payment-api"))


async def test_verify_goes_to_the_transport_and_the_error_says_so(
    resolver: Resolver, trust: ssl.SSLContext, server: TLSServer
) -> None:
    # httpx ignores the client's verify= once transport= is given: the README's way works...
    with httpx.Client(transport=HTTPTransport(verify=trust, resolver=resolver)) as client:
        assert echo(client.get(url(server, "payment-api")))["sni"] == PAYMENT
    # ...and the client's, ignored by httpx, fails with a message that says what to do.
    with (
        httpx.Client(verify=trust, transport=HTTPTransport(resolver=resolver)) as client,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED") as info,
    ):
        client.get(url(server, "payment-api"))
    assert "pass verify= to the transport, HTTPTransport(verify=...)" in str(info.value)
    assert isinstance(info.value.__cause__, httpx.ConnectError)  # httpx's own error
    async with httpx.AsyncClient(
        verify=trust, transport=AsyncHTTPTransport(resolver=resolver)
    ) as aclient:
        with pytest.raises(httpx.ConnectError, match="pass verify= to the transport"):
            await aclient.get(url(server, "payment-api"))


def test_the_verify_hint_is_only_for_an_untrusted_issuer(
    resolver: Resolver, trust: ssl.SSLContext, server: TLSServer, other_cafile: str
) -> None:
    # A name mismatch is no CA problem: no hint, whatever the transport trusts.
    with (
        httpx.Client(transport=HTTPTransport(verify=trust, resolver=resolver)) as client,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED") as info,
    ):
        client.get(url(server, "wrong-api"))
    assert "kubealias" not in str(info.value)
    # A host kubealias passes through gets httpx's own error, word for word.
    target = url(server, "127.0.0.1")
    with (
        httpx.Client(transport=httpx.HTTPTransport()) as plain,
        pytest.raises(httpx.ConnectError) as want,
    ):
        plain.get(target)
    with (
        httpx.Client(transport=HTTPTransport(resolver=resolver)) as client,
        pytest.raises(httpx.ConnectError) as got,
    ):
        client.get(target)
    assert str(got.value) == str(want.value)
    # A transport given a CA of its own gets no hint: its own CA is the one that failed.
    other = ssl.create_default_context(cafile=other_cafile)
    with (
        httpx.Client(transport=HTTPTransport(verify=other, resolver=resolver)) as client,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED") as info,
    ):
        client.get(url(server, "payment-api"))
    assert "kubealias" not in str(info.value)


def test_verify_false_is_the_callers_choice(resolver: Resolver, server: TLSServer) -> None:
    with httpx.Client(transport=HTTPTransport(verify=False, resolver=resolver)) as client:
        response = client.get(url(server, "wrong-api"))

    # Not verified, as asked; the SNI is still the TLS name, which this server does not serve.
    assert response.status_code == 421
    assert echo(response)["sni"] == WRONG


# --- sync: failures -------------------------------------------------------------------------------


def test_resolution_failure_is_a_connect_error(
    client: httpx.Client, dns: ClusterDNS, server: TLSServer
) -> None:
    dns.external_name("broken-api", "production", "broken.example.test")
    dns.fault("broken-api.production.svc.cluster.local", "servfail")

    with pytest.raises(httpx.ConnectError) as info:
        client.get(url(server, "broken-api"))

    cause = info.value.__cause__
    assert isinstance(cause, ResolutionError)
    assert str(info.value) == str(cause)
    assert "cannot resolve 'broken-api'" in str(info.value)
    assert info.value.request.url.host == "broken-api"


def test_policy_refusal_is_a_connect_error(
    dns: ClusterDNS, trust: ssl.SSLContext, server: TLSServer
) -> None:
    resolver = dns.resolver(timeout=1, allowed_targets=["*.allowed.test"])
    with (
        httpx.Client(transport=HTTPTransport(verify=trust, resolver=resolver)) as client,
        pytest.raises(httpx.ConnectError, match="ALLOWED_TARGETS") as info,
    ):
        client.get(url(server, "payment-api"))

    assert isinstance(info.value.__cause__, PolicyError)


def test_first_address_refusing_moves_to_the_next(
    client: httpx.Client, resolver: Resolver, server: TLSServer
) -> None:
    assert resolver.resolve("multi-api").addresses == ("127.0.0.2", "127.0.0.1")

    body = echo(client.get(url(server, "multi-api")))

    assert (body["sni"], body["host"]) == (MULTI, f"{MULTI}:{server.port}")


def test_no_address_accepting_lists_every_address(client: httpx.Client, server: TLSServer) -> None:
    with pytest.raises(httpx.ConnectError) as info:
        client.get(url(server, "dead-api"))

    message = str(info.value)
    assert f"cannot connect to {DEAD}" in message
    assert f"127.0.0.2:{server.port}" in message
    assert f"127.0.0.3:{server.port}" in message
    assert "Connection refused" in message


# --- sync: proxies --------------------------------------------------------------------------------


def test_proxy_connect_goes_to_the_tls_name(
    resolver: Resolver, trust: ssl.SSLContext, server: TLSServer
) -> None:
    with ConnectProxy() as proxy:
        kt = HTTPTransport(verify=trust, resolver=resolver, proxy=proxy.url)
        with httpx.Client(transport=kt) as client:
            body = echo(client.get(url(server, "payment-api")))
            other = echo(client.get(url(server, "localhost")))

    assert proxy.targets == [f"{PAYMENT}:{server.port}", f"localhost:{server.port}"]
    assert (body["sni"], body["host"]) == (PAYMENT, f"{PAYMENT}:{server.port}")
    assert other["host"] == f"localhost:{server.port}"
    assert len(kt._routes) == 0  # the proxy connects: nothing pinned


# --- sync: threads, eviction, closing -------------------------------------------------------------


def test_threads_share_one_client(
    client: httpx.Client, transport: HTTPTransport, server: TLSServer
) -> None:
    pairs = (("payment-api", PAYMENT), ("second-api", SECOND))

    def work(worker: int) -> int:
        for n in range(50):
            service, name = pairs[(worker + n) % 2]
            response = client.get(url(server, service))
            body = echo(response)
            assert response.status_code == 200
            assert (body["sni"], body["host"]) == (name, f"{name}:{server.port}")
        return worker

    with ThreadPoolExecutor(16) as pool:
        assert sorted(pool.map(work, range(16))) == list(range(16))
    assert len(transport._routes) == 2


def test_evicted_route_closes_once_its_responses_are_done(
    monkeypatch: pytest.MonkeyPatch,
    resolver: Resolver,
    trust: ssl.SSLContext,
    server: TLSServer,
) -> None:
    monkeypatch.setattr(kubealias.httpx, "_MAX_ROUTES", 1)
    kt = HTTPTransport(verify=trust, resolver=resolver)
    closed: list[str] = []
    with httpx.Client(transport=kt) as client:
        with client.stream("GET", url(server, "payment-api")) as streaming:
            (slot,) = kt._routes._slots.values()
            inner_close = slot.transport.close

            def close() -> None:
                closed.append(PAYMENT)
                inner_close()

            monkeypatch.setattr(slot.transport, "close", close)
            assert echo(client.get(url(server, "second-api")))["sni"] == SECOND
            assert echo(client.get(url(server, "second-api")))["sni"] == SECOND
            assert closed == []  # evicted, but a response is still streaming from it
            streaming.read()
        assert echo(streaming)["sni"] == PAYMENT
        # Its connection is idle now: the next request closes the retired transport.
        assert echo(client.get(url(server, "payment-api")))["sni"] == PAYMENT  # a new pool
        assert closed == [PAYMENT]


def keyed(name: str) -> tuple[kubealias.httpx._RouteKey, Route]:
    """A route to ``name`` and its key in a ``_RouteCache``, as the transports make it."""
    route = Route(name, name, (), 443, None)
    return ("https", route.pool_key), route


def test_route_cache_closes_retired_transports_once_idle() -> None:
    busy = {"A": True, "B": False, "C": False}
    cache: kubealias.httpx._RouteCache[str] = kubealias.httpx._RouteCache(1, lambda t: not busy[t])
    made = {"a": "A", "b": "B", "c": "C"}

    def factory(route: Route) -> str:
        return made[route.name]

    def enter(name: str) -> Any:
        key, route = keyed(name)
        return cache.enter(key, factory, route)

    a = enter("a")
    cache.leave(a)  # the request left handle_request; A's response is still streaming
    b = enter("b")
    assert cache.retiring
    assert cache.take_idle() == []  # A is retired but its pool is busy
    busy["A"] = False
    c = enter("c")
    # B is retired with a request still inside handle_request: kept; A is idle now: closed.
    assert cache.take_idle() == ["A"]
    cache.leave(b)
    cache.leave(c)
    assert cache.take_idle() == ["B"]
    assert not cache.retiring
    assert cache.drain() == ["C"]
    assert len(cache) == 0


def test_route_cache_evicts_the_least_recently_used() -> None:
    cache: kubealias.httpx._RouteCache[str] = kubealias.httpx._RouteCache(2, lambda t: True)

    def use(name: str) -> None:
        key, route = keyed(name)
        cache.leave(cache.enter(key, lambda r: r.name.upper(), route))

    use("a")
    use("b")
    use("a")  # a hit (no lock): a is now the most recent
    use("c")
    assert cache.take_idle() == ["B"]
    assert sorted(cache.drain()) == ["A", "C"]


def test_route_cache_request_racing_an_eviction_goes_round_again() -> None:
    cache: kubealias.httpx._RouteCache[str] = kubealias.httpx._RouteCache(1, lambda t: True)
    (key_a, route_a), (key_b, route_b) = keyed("a"), keyed("b")
    first = cache.enter(key_a, lambda r: "A1", route_a)
    cache.leave(first)

    class Racing(dict[Any, Any]):
        """The lock-free lookup of a finds its slot, and b's request evicts it right then."""

        fired = False

        def get(self, key: Any, default: Any = None) -> Any:
            slot = super().get(key, default)
            if key == key_a and not self.fired:
                self.fired = True
                cache.leave(cache.enter(key_b, lambda r: "B", route_b))
            return slot

    cache._slots = Racing(cache._slots)
    second = cache.enter(key_a, lambda r: "A2", route_a)

    # The request saw the retirement after registering, left the retired slot and took a new
    # one; the retired transport has nobody inside and is closed.
    assert (first.retired, first.inside, second.transport) == (True, [], "A2")
    assert sorted(cache.take_idle()) == ["A1", "B"]
    cache.leave(second)


def test_the_callers_request_is_restored(
    transport: HTTPTransport, server: TLSServer, silent_port: int
) -> None:
    request = httpx.Request("GET", url(server, "payment-api"), extensions={"k": "v"})
    before = (request.url, request.headers.multi_items(), dict(request.extensions))

    response = transport.handle_request(request)
    response.read()
    assert echo(response)["host"] == f"{PAYMENT}:{server.port}"
    assert (request.url, request.headers.multi_items(), request.extensions) == before

    timeout = {"connect": 0.2, "read": 0.2, "write": 0.2, "pool": 0.2}
    failing = httpx.Request(
        "GET", f"https://payment-api:{silent_port}/", extensions={"timeout": timeout}
    )
    before = (failing.url, failing.headers.multi_items(), dict(failing.extensions))
    with pytest.raises(httpx.ConnectTimeout):  # the TLS handshake never completes
        transport.handle_request(failing)
    assert (failing.url, failing.headers.multi_items(), failing.extensions) == before


def test_close_closes_every_inner_transport(
    resolver: Resolver, trust: ssl.SSLContext, server: TLSServer
) -> None:
    with HTTPTransport(verify=trust, resolver=resolver) as kt:
        for service in ("payment-api", "second-api"):
            response = kt.handle_request(httpx.Request("GET", url(server, service)))
            response.read()
            response.close()
        inner = [slot.transport for slot in kt._routes._slots.values()]
        assert len(inner) == 2
        assert all(t._pool.connections for t in inner)

    assert len(kt._routes) == 0
    assert not any(t._pool.connections for t in inner)


def test_missing_httpx_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)
    monkeypatch.delitem(sys.modules, "kubealias.httpx")

    with pytest.raises(ImportError, match=r"pip install 'kubealias\[httpx\]'"):
        importlib.import_module("kubealias.httpx")


# --- httpx internals: the fallback, and the loud failure (httpx is bounded in pyproject.toml) --


def _httpx_without(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """An ``httpx._transports.default`` without ``name``, as kubealias.httpx sees it (httpx's
    own code keeps its module)."""
    real = importlib.import_module("httpx._transports.default")
    stand_in = types.ModuleType(real.__name__)
    stand_in.__dict__.update({k: v for k, v in vars(real).items() if k != name})
    monkeypatch.setitem(sys.modules, real.__name__, stand_in)


def test_missing_glue_names_what_this_httpx_lacks(monkeypatch: pytest.MonkeyPatch) -> None:
    assert kubealias.httpx._missing_glue() == ()

    _httpx_without(monkeypatch, "map_httpcore_exceptions")
    assert kubealias.httpx._missing_glue() == ("httpx._transports.default.map_httpcore_exceptions",)
    monkeypatch.setitem(sys.modules, "httpx._transports.default", None)  # no such module
    assert kubealias.httpx._missing_glue() == ("httpx._transports.default",)


def test_an_httpx_without_its_glue_sends_a_second_request_through_the_inner_transport(
    monkeypatch: pytest.MonkeyPatch,
    resolver: Resolver,
    trust: ssl.SSLContext,
    server: TLSServer,
) -> None:
    # An httpx without ResponseStream: kubealias.httpx imported afresh takes the documented
    # fallback (the package attribute and sys.modules are restored afterwards).
    _httpx_without(monkeypatch, "ResponseStream")
    monkeypatch.setattr(kubealias, "httpx", kubealias.httpx)
    monkeypatch.delitem(sys.modules, "kubealias.httpx")
    fresh = importlib.import_module("kubealias.httpx")
    assert (fresh._DIRECT, fresh._MISSING_GLUE) == (
        False,
        ("httpx._transports.default.ResponseStream",),
    )
    sent: list[httpx.Request] = []
    real = httpx.HTTPTransport.handle_request

    def spy(inner: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return real(inner, request)

    monkeypatch.setattr(httpx.HTTPTransport, "handle_request", spy)
    with httpx.Client(transport=fresh.HTTPTransport(verify=trust, resolver=resolver)) as c:
        response = c.get(url(server, "payment-api"))
        body = echo(response)

    assert (body["sni"], body["host"]) == (PAYMENT, f"{PAYMENT}:{server.port}")
    (forwarded,) = sent  # through the route's inner httpx transport, as a new request
    assert forwarded is not response.request
    assert forwarded.url == response.request.url
    assert forwarded.extensions["sni_hostname"] == PAYMENT


def _without_network_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every httpx transport built from now on has a pool without ``_network_backend``."""
    for cls in (httpx.HTTPTransport, httpx.AsyncHTTPTransport):

        def init(self: Any, *args: Any, __real: Any = cls.__init__, **kwargs: Any) -> None:
            __real(self, *args, **kwargs)
            del self._pool._network_backend

        monkeypatch.setattr(cls, "__init__", init)


async def test_an_httpx_without_the_pool_backend_fails_loudly(
    monkeypatch: pytest.MonkeyPatch,
    resolver: Resolver,
    trust: ssl.SSLContext,
    server: TLSServer,
) -> None:
    _without_network_backend(monkeypatch)
    versions = f"httpx {httpx.__version__} with httpcore {httpcore.__version__}"

    with (
        httpx.Client(transport=HTTPTransport(verify=trust, resolver=resolver)) as c,
        pytest.raises(RuntimeError) as info,
    ):
        c.get(url(server, "payment-api"))
    message = str(info.value)
    assert not isinstance(info.value, OSError)  # not a network failure to retry
    assert versions in message
    assert "no usable ConnectionPool._network_backend" in message
    assert "refusing to connect to an alias by its name" in message
    assert "httpx>=0.27,<0.29" in message

    async with httpx.AsyncClient(
        transport=AsyncHTTPTransport(verify=trust, resolver=resolver)
    ) as ac:
        with pytest.raises(RuntimeError, match=r"no usable AsyncConnectionPool\._network_backend"):
            await ac.get(url(server, "payment-api"))


@pytest.mark.parametrize("cls", [httpx.HTTPTransport, httpx.AsyncHTTPTransport])
def test_an_httpx_transport_without_a_pool_fails_loudly(cls: type[Any]) -> None:
    transport = cls()
    pool = transport._pool
    del transport._pool
    try:
        with pytest.raises(RuntimeError, match=rf"no usable {cls.__name__}\._pool \(") as info:
            kubealias.httpx._pin(transport, ROUTE)
    finally:
        transport._pool = pool
    assert httpx.__version__ in str(info.value)


# --- async ----------------------------------------------------------------------------------------


@pytest.fixture
async def aclient(resolver: Resolver, trust: ssl.SSLContext) -> Any:
    async with httpx.AsyncClient(
        transport=AsyncHTTPTransport(verify=trust, resolver=resolver)
    ) as c:
        yield c


async def test_async_alias_is_verified_as_the_external_name(
    aclient: httpx.AsyncClient, server: TLSServer, lookups: list[str]
) -> None:
    before = len(server.connections)
    bodies = [echo(await aclient.get(url(server, "payment-api"))) for _ in range(3)]

    assert {(b["sni"], b["host"]) for b in bodies} == {(PAYMENT, f"{PAYMENT}:{server.port}")}
    assert [c.sni for c in server.connections[before:]] == [PAYMENT]  # reused
    assert lookups == []


async def test_async_two_aliases_never_share_a_connection(
    aclient: httpx.AsyncClient, server: TLSServer
) -> None:
    seen: dict[str, set[int]] = {PAYMENT: set(), SECOND: set()}
    for _ in range(3):
        for service, name in (("payment-api", PAYMENT), ("second-api", SECOND)):
            body = echo(await aclient.get(url(server, service)))
            assert (body["sni"], body["host"]) == (name, f"{name}:{server.port}")
            seen[name].add(body["conn"])

    assert len(seen[PAYMENT]) == len(seen[SECOND]) == 1
    assert not seen[PAYMENT] & seen[SECOND]


async def test_async_path_uses_aresolve_only(
    monkeypatch: pytest.MonkeyPatch,
    resolver: Resolver,
    trust: ssl.SSLContext,
    server: TLSServer,
) -> None:
    def blocking(host: str) -> None:
        raise AssertionError(f"the async transport called the blocking resolve({host!r})")

    monkeypatch.setattr(resolver, "resolve", blocking)
    kt = AsyncHTTPTransport(verify=trust, resolver=resolver)
    async with httpx.AsyncClient(transport=kt) as client:
        response = await client.get(url(server, "payment-api"))

    assert echo(response)["sni"] == PAYMENT


async def test_async_explicit_host_and_rewrite_host_false(
    resolver: Resolver, trust: ssl.SSLContext, server: TLSServer
) -> None:
    kt = AsyncHTTPTransport(verify=trust, resolver=resolver, rewrite_host=False)
    async with httpx.AsyncClient(transport=kt) as client:
        kept = echo(await client.get(url(server, "payment-api")))
        explicit = echo(
            await client.get(url(server, "second-api"), headers={"Host": "api.example.com"})
        )

    assert (kept["sni"], kept["host"]) == (PAYMENT, f"payment-api:{server.port}")
    assert (explicit["sni"], explicit["host"]) == (SECOND, "api.example.com")


async def test_async_non_alias_passes_through(
    aclient: httpx.AsyncClient, server: TLSServer
) -> None:
    body = echo(await aclient.get(url(server, "localhost")))

    assert (body["sni"], body["host"]) == ("localhost", f"localhost:{server.port}")


async def test_async_failures(
    aclient: httpx.AsyncClient, dns: ClusterDNS, server: TLSServer
) -> None:
    dns.external_name("broken-api", "production", "broken.example.test")
    dns.fault("broken-api.production.svc.cluster.local", "servfail")

    with pytest.raises(httpx.ConnectError) as info:
        await aclient.get(url(server, "broken-api"))
    assert isinstance(info.value.__cause__, KubeAliasError)
    assert str(info.value) == str(info.value.__cause__)

    with pytest.raises(httpx.ConnectError, match=r"127\.0\.0\.2:.*127\.0\.0\.3:") as dead:
        await aclient.get(url(server, "dead-api"))
    # The errno behind anyio's "All connection attempts failed", as the sync transport says.
    assert "Connection refused" in str(dead.value)

    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        await aclient.get(url(server, "wrong-api"))


async def test_async_first_address_refusing_moves_to_the_next(
    aclient: httpx.AsyncClient, server: TLSServer
) -> None:
    body = echo(await aclient.get(url(server, "multi-api")))

    assert (body["sni"], body["host"]) == (MULTI, f"{MULTI}:{server.port}")


async def test_async_redirect_to_another_host(
    aclient: httpx.AsyncClient, server: TLSServer
) -> None:
    target = url(server, "localhost", "/final")
    response = await aclient.get(
        url(server, "payment-api", "/redirect"), params={"to": target}, follow_redirects=True
    )

    assert echo(response.history[0])["host"] == f"{PAYMENT}:{server.port}"
    assert echo(response)["host"] == f"localhost:{server.port}"


async def test_async_streaming_and_aclose(
    resolver: Resolver, trust: ssl.SSLContext, server: TLSServer
) -> None:
    kt = AsyncHTTPTransport(verify=trust, resolver=resolver)
    async with httpx.AsyncClient(transport=kt) as client:
        async with client.stream("GET", url(server, "payment-api")) as response:
            body = b"".join([chunk async for chunk in response.aiter_bytes()])
        inner = [slot.transport for slot in kt._routes._slots.values()]

    assert httpx.Response(200, content=body).json()["sni"] == PAYMENT
    assert len(kt._routes) == 0
    assert inner and not any(t._pool.connections for t in inner)


# --- pinned routes (Services that are not aliases) and pool keys ---------------------------------


def test_a_cluster_ip_keeps_the_callers_own_sni(
    resolver: Resolver,
    trust: ssl.SSLContext,
    server: TLSServer,
    dns: ClusterDNS,
    lookups: list[str],
) -> None:
    dns.cluster_ip("ledger", "production", "127.0.0.1")
    # Not an alias: kubealias only pins the address; the caller's own SNI setting stays.
    with httpx.Client(transport=HTTPTransport(verify=trust, resolver=resolver)) as c:
        response = c.get(url(server, "ledger"), extensions={"sni_hostname": PAYMENT})
        assert echo(response)["sni"] == PAYMENT
    # Without it, the name as given is what is verified (a new client: httpcore would reuse
    # the connection above, whatever the SNI asked, as it does without kubealias).
    with (
        httpx.Client(transport=HTTPTransport(verify=trust, resolver=resolver)) as c,
        pytest.raises(httpx.ConnectError, match="not valid for 'ledger'"),
    ):
        c.get(url(server, "ledger"))
    assert lookups == []


def test_two_names_of_one_alias_each_get_their_pool(
    client: httpx.Client, transport: HTTPTransport, server: TLSServer
) -> None:
    for name in ("payment-api", "payment-api.production", "payment-api"):
        assert echo(client.get(url(server, name)))["sni"] == PAYMENT
    assert len(transport._routes) == 2


def test_a_new_address_order_keeps_the_pool() -> None:
    a = Route("multi-api", MULTI, ("10.0.0.1", "10.0.0.2"), 443, MULTI)
    b = Route("multi-api", MULTI, ("10.0.0.2", "10.0.0.1"), 443, MULTI)
    c = Route("multi-api", MULTI, ("10.0.0.2", "10.0.0.3"), 443, MULTI)
    assert a.pool_key == b.pool_key != c.pool_key
    assert a != b  # the route itself keeps the answer order, for connecting

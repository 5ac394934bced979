"""kubealias.requests against the in-process cluster DNS and loopback HTTPS/HTTP echo servers."""

from __future__ import annotations

import json
import pickle
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import urllib3
from requests.adapters import BaseAdapter, HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.util.retry import Retry

import kubealias
import kubealias._http
import kubealias.urllib3
from kubealias import PolicyError, ResolutionError, Resolver
from kubealias.requests import KubeAliasAdapter, Session
from kubealias.testing import ClusterDNS, FakeClock, TLSServer
from tests.unit._connect_proxy import ConnectProxy
from tests.unit.conftest import DEAD, PAYMENT, SECOND, WRONG, url


@pytest.fixture
def session(resolver: Resolver, cafile: str) -> Iterator[Session]:
    with Session(resolver=resolver) as s:
        s.verify = cafile
        yield s


def echo(response: requests.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def adapter_of(session: requests.Session) -> KubeAliasAdapter:
    adapter = session.get_adapter("https://")
    assert isinstance(adapter, KubeAliasAdapter)
    return adapter


def pool_for(adapter: BaseAdapter, target: str, verify: Any = True) -> HTTPConnectionPool:
    """The pool the adapter would send ``GET target`` on (no I/O)."""
    assert isinstance(adapter, HTTPAdapter)
    prepared = requests.Request("GET", target).prepare()
    return adapter.get_connection_with_tls_context(prepared, verify)


# --- the documented use ---------------------------------------------------------------------------


def test_mounted_on_a_plain_requests_session(
    resolver: Resolver, cafile: str, server: TLSServer
) -> None:
    with requests.Session() as s:
        s.mount("https://", KubeAliasAdapter(resolver=resolver))
        body = echo(s.get(url(server.port, "payment-api", "/v1/charges"), verify=cafile))

    assert (body["sni"], body["host"], body["path"]) == (
        PAYMENT,
        f"{PAYMENT}:{server.port}",
        "/v1/charges",
    )


def test_request_object_is_not_changed(session: Session, server: TLSServer) -> None:
    response = session.get(url(server.port, "payment-api"))

    # The Host is written on the wire by the connection: the PreparedRequest (which redirects
    # and hooks see) keeps the application's URL and no Host header.
    assert response.request.url == url(server.port, "payment-api")
    assert "Host" not in response.request.headers
    assert response.url == url(server.port, "payment-api")


def test_post_body(session: Session, server: TLSServer) -> None:
    body = echo(session.post(url(server.port, "payment-api", "/charges"), data=b"amount=1"))

    assert (body["method"], body["body"], body["sni"]) == ("POST", "amount=1", PAYMENT)


# --- pools: one per TLS name and address set ------------------------------------------------------


def test_new_tls_name_after_the_ttl_gets_a_new_connection(
    dns: ClusterDNS, clock: FakeClock, cafile: str, server: TLSServer
) -> None:
    with Session(resolver=dns.resolver(timeout=1, clock=clock)) as s:
        s.verify = cafile
        first = echo(s.get(url(server.port, "payment-api")))
        dns.external_name("payment-api", "production", SECOND)  # the ExternalName changes

        clock.advance(1)  # within the TTL (5 s): the cached answer, the same connection
        cached = echo(s.get(url(server.port, "payment-api")))
        clock.advance(5)
        moved = echo(s.get(url(server.port, "payment-api")))
        again = echo(s.get(url(server.port, "payment-api")))

    assert (first["sni"], cached["sni"], cached["conn"]) == (PAYMENT, PAYMENT, first["conn"])
    assert (moved["sni"], moved["host"]) == (SECOND, f"{SECOND}:{server.port}")
    assert moved["conn"] != first["conn"]
    assert again["conn"] == moved["conn"]


# --- the Host header ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "sni"),
    [("127.0.0.1", None), ("localhost", "localhost")],
)
def test_redirect_to_another_host_does_not_carry_the_rewritten_host(
    session: Session, server: TLSServer, host: str, sni: str | None
) -> None:
    target = url(server.port, host, "/final")
    response = session.get(url(server.port, "payment-api", "/redirect"), params={"to": target})

    (hop,) = response.history
    assert hop.status_code == 302
    assert (hop.json()["sni"], hop.json()["host"]) == (PAYMENT, f"{PAYMENT}:{server.port}")
    final = echo(response)
    assert (final["sni"], final["host"], final["path"]) == (sni, f"{host}:{server.port}", "/final")


# --- names that are not aliases -------------------------------------------------------------------


def test_cluster_ip_service_keeps_its_name_and_connects_to_the_answer(
    session: Session, dns: ClusterDNS, server: TLSServer, lookups: list[str]
) -> None:
    # Not an alias: the name as given for SNI, Host and the certificate check; the connection
    # goes to the addresses kubealias read (one answer decides both), not to a second lookup.
    dns.cluster_ip("ledger", "production", "127.0.0.1")

    pool = pool_for(session.get_adapter("https://ledger/"), "https://ledger/")
    assert pool.host == "ledger"
    assert pool.conn_kw["ka_route"].addresses == ("127.0.0.1",)
    assert "server_hostname" not in pool.conn_kw  # the name as given: urllib3 sets it itself

    with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        session.get(url(server.port, "ledger"))  # verified as "ledger": the server has no such cert
    assert lookups == []


# --- verification ---------------------------------------------------------------------------------


def test_certificate_for_another_name_fails(session: Session, server: TLSServer) -> None:
    # The server has no certificate for wrong.example.test: it presents its default one, from
    # the trusted CA but for other names.
    with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        session.get(url(server.port, "wrong-api"))


@pytest.mark.parametrize("verify", [True, "other"])
def test_untrusted_ca_fails(
    resolver: Resolver, server: TLSServer, other_cafile: str, verify: bool | str
) -> None:
    with Session(resolver=resolver) as s, pytest.raises(requests.exceptions.SSLError):
        s.get(url(server.port, "payment-api"), verify=other_cafile if verify == "other" else True)


def test_verify_false_is_the_callers_choice_and_stays_theirs(
    session: Session, server: TLSServer
) -> None:
    with pytest.warns(urllib3.exceptions.InsecureRequestWarning):
        response = session.get(url(server.port, "wrong-api"), verify=False)

    # Not verified, as asked; the SNI is still the TLS name, which this server does not serve.
    assert response.status_code == 421
    assert response.json()["sni"] == WRONG
    # The unverified connection is not reused for a request that verifies.
    with pytest.raises(requests.exceptions.SSLError):
        session.get(url(server.port, "wrong-api"))


def test_kubealias_only_changes_the_name_verified(session: Session, server: TLSServer) -> None:
    target = url(server.port, "payment-api")
    with session.get(target, stream=True) as response:
        pool = pool_for(adapter_of(session), target, session.verify)
        conn = response.raw.connection
        sock = conn.sock

        assert type(pool) is kubealias.urllib3._AliasHTTPSConnectionPool
        assert (pool.cert_reqs, pool.ca_certs) == ("CERT_REQUIRED", session.verify)
        assert pool.assert_hostname is None
        assert conn.is_verified
        assert sock.server_hostname == PAYMENT
        assert sock.getpeercert()["subjectAltName"] == (("DNS", PAYMENT),)


def test_client_certificate_is_passed_through(
    resolver: Resolver, cafile: str, mtls_server: TLSServer, client_cert: tuple[str, str]
) -> None:
    target = url(mtls_server.port, "payment-api")
    with Session(resolver=resolver) as s:
        s.verify = cafile
        # Without one, the server ends the handshake (TLS 1.3: at the first read).
        with pytest.raises(requests.exceptions.ConnectionError):
            s.get(target)
        body = echo(s.get(target, cert=client_cert))

    assert (body["sni"], body["host"]) == (PAYMENT, f"{PAYMENT}:{mtls_server.port}")


# --- connecting, timeouts, retries ----------------------------------------------------------------


def test_no_address_accepting_lists_every_address(session: Session, server: TLSServer) -> None:
    with pytest.raises(requests.exceptions.ConnectionError) as info:
        session.get(url(server.port, "dead-api"))

    message = str(info.value)
    assert f"cannot connect to dead-api ({DEAD})" in message
    assert f"127.0.0.2:{server.port}" in message
    assert f"127.0.0.3:{server.port}" in message


def _same_failure(
    session: Session, alias: str, port: int, timeout: Any
) -> type[requests.RequestException]:
    """The error of the alias's request, checked to be the base adapter's for the address."""
    with pytest.raises(requests.RequestException) as base:
        requests.get(url(port, "127.0.0.1"), timeout=timeout)
    with pytest.raises(requests.RequestException) as ours:
        session.get(url(port, alias), timeout=timeout)
    assert type(ours.value) is type(base.value)
    return type(ours.value)


def test_read_timeout_as_the_base_adapter(
    session: Session, silent_port: int, lookups: list[str]
) -> None:
    # The server accepts the TCP connection and never answers the TLS handshake.
    assert _same_failure(session, "payment-api", silent_port, 0.2) is requests.ReadTimeout


def test_connect_timeout_as_the_base_adapter(session: Session, blackhole_port: int) -> None:
    failure = _same_failure(session, "payment-api", blackhole_port, (0.2, 5))

    assert failure is requests.ConnectTimeout


class ConnectSpy:
    """Records the addresses of every connect kubealias makes; fails the first if told to."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.fail_first = False
        self._real = kubealias._http.connect_first

    def __call__(self, addresses: Any, *args: Any, **kwargs: Any) -> socket.socket:
        self.calls.append(tuple(addresses))
        if self.fail_first and len(self.calls) == 1:
            raise ConnectionRefusedError("refused once")
        return self._real(addresses, *args, **kwargs)


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> ConnectSpy:
    spy = ConnectSpy()
    monkeypatch.setattr(kubealias._http, "connect_first", spy)
    return spy


def test_connect_errors_are_not_retried_by_default(
    session: Session, server: TLSServer, connects: ConnectSpy
) -> None:
    connects.fail_first = True

    with pytest.raises(requests.ConnectionError, match="refused once"):
        session.get(url(server.port, "payment-api"))
    assert len(connects.calls) == 1


def test_connect_errors_are_retried_with_max_retries(
    resolver: Resolver, cafile: str, server: TLSServer, connects: ConnectSpy
) -> None:
    connects.fail_first = True
    with Session(resolver=resolver, max_retries=1) as s:
        body = echo(s.get(url(server.port, "payment-api"), verify=cafile))

    assert body["sni"] == PAYMENT
    assert connects.calls == [("127.0.0.1",), ("127.0.0.1",)]


def test_retries_are_exhausted_as_with_the_base_adapter(
    resolver: Resolver, cafile: str, server: TLSServer, connects: ConnectSpy
) -> None:
    with (
        Session(resolver=resolver, max_retries=Retry(connect=2, backoff_factor=0)) as s,
        pytest.raises(requests.ConnectionError, match="Max retries exceeded") as info,
    ):
        s.get(url(server.port, "dead-api"), verify=cafile)

    assert connects.calls == [("127.0.0.2", "127.0.0.3")] * 3
    reason = info.value.args[0].reason
    assert isinstance(reason, urllib3.exceptions.NewConnectionError)


def test_stream_true(session: Session, server: TLSServer) -> None:
    target = url(server.port, "payment-api", "/streamed")
    with session.get(target, stream=True) as response:
        assert isinstance(response.raw, urllib3.HTTPResponse)
        assert not response.raw.isclosed()  # the body is still to be read
        body = b"".join(response.iter_content(chunk_size=7))
    after = echo(session.get(target))

    streamed = json.loads(body)
    assert (streamed["sni"], streamed["path"]) == (PAYMENT, "/streamed")
    assert after["conn"] == streamed["conn"]  # back in the pool once read


# --- resolution failures --------------------------------------------------------------------------


def test_resolution_failure_is_a_connection_error(
    session: Session, dns: ClusterDNS, server: TLSServer
) -> None:
    dns.external_name("broken-api", "production", "broken.example.test")
    dns.fault("broken-api.production.svc.cluster.local", "servfail")

    with pytest.raises(requests.ConnectionError) as info:
        session.get(url(server.port, "broken-api"))

    assert type(info.value) is requests.ConnectionError
    cause = info.value.__cause__
    assert isinstance(cause, ResolutionError)
    assert str(info.value) == str(cause)
    assert "cannot resolve 'broken-api'" in str(info.value)
    assert "SERVFAIL" in str(info.value)
    assert info.value.request is not None
    assert info.value.request.url == url(server.port, "broken-api")


def _failure(send: Any) -> tuple[type[BaseException], str]:
    with pytest.raises(Exception) as info:
        send()
    return type(info.value), str(info.value)


#: URLs whose host is missing or empty, as a redirect can hand them to the adapter.
NO_HOST = ["http://:1/", "https://:443/x", "http:///x", "http://@:1/"]


@pytest.mark.parametrize("target", NO_HOST)
def test_a_url_without_a_host_fails_as_with_the_base_adapter(
    session: Session, server: TLSServer, dns: ClusterDNS, target: str
) -> None:
    # requests validates the URL it is given, but not a redirect's Location: the adapter gets
    # a URL whose host is None (urlparse), and HTTPAdapter.send reports it as InvalidURL.
    def send(s: requests.Session) -> Any:
        prepared = requests.Request("GET", "http://example.test/").prepare()
        prepared.url = target  # as requests' resolve_redirects sets it
        return lambda: s.send(prepared)

    with requests.Session() as plain:
        want = _failure(send(plain))
    dns.reset_queries()

    assert want[0] is requests.exceptions.InvalidURL
    assert _failure(send(session)) == want
    redirect = url(server.port, "payment-api", "/redirect")
    assert _failure(lambda: session.get(redirect, params={"to": target})) == want
    assert {q.name.split(".")[0] for q in dns.queries} <= {"payment-api"}


def test_policy_refusal_is_a_connection_error(
    dns: ClusterDNS, cafile: str, server: TLSServer
) -> None:
    resolver = dns.resolver(timeout=1, allowed_targets=["*.allowed.test"])
    with (
        Session(resolver=resolver) as s,
        pytest.raises(requests.ConnectionError, match="ALLOWED_TARGETS") as info,
    ):
        s.get(url(server.port, "payment-api"), verify=cafile)

    assert isinstance(info.value.__cause__, PolicyError)
    assert PAYMENT in str(info.value)


# --- proxies --------------------------------------------------------------------------------------


def test_proxy_connect_goes_to_the_tls_name(session: Session, server: TLSServer) -> None:
    with ConnectProxy() as proxy:
        proxies = {"https": proxy.url}
        bodies = [
            echo(session.get(url(server.port, "payment-api"), proxies=proxies)) for _ in range(3)
        ]
        other = echo(session.get(url(server.port, "localhost"), proxies=proxies))
        session.close()  # end the tunnels before the proxy stops

    assert proxy.targets == [f"{PAYMENT}:{server.port}", f"localhost:{server.port}"]  # one each
    assert {(b["sni"], b["host"]) for b in bodies} == {(PAYMENT, f"{PAYMENT}:{server.port}")}
    assert len({b["conn"] for b in bodies}) == 1
    assert (other["sni"], other["host"]) == ("localhost", f"localhost:{server.port}")


# The client resets the tunnel when it refuses the certificate, and ConnectProxy's pipe thread
# does not expect ECONNRESET.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_verification_stays_on_through_a_proxy(session: Session, server: TLSServer) -> None:
    with ConnectProxy() as proxy, pytest.raises(requests.exceptions.SSLError):
        session.get(url(server.port, "wrong-api"), proxies={"https": proxy.url})

    assert proxy.targets == [f"{WRONG}:{server.port}"]


def test_proxy_with_rewrite_host_false(resolver: Resolver, cafile: str, server: TLSServer) -> None:
    with ConnectProxy() as proxy, Session(resolver=resolver, rewrite_host=False) as s:
        body = echo(
            s.get(url(server.port, "payment-api"), proxies={"https": proxy.url}, verify=cafile)
        )

    assert proxy.targets == [f"{PAYMENT}:{server.port}"]
    assert (body["sni"], body["host"]) == (PAYMENT, f"payment-api:{server.port}")


@pytest.mark.parametrize(
    ("no_proxy", "proxied"),
    [
        ("payment-api", {"second-api"}),  # the name the application used
        ("payment-api,second-api", set()),
        (PAYMENT, {"payment-api", "second-api"}),  # the TLS name is not what NO_PROXY sees
        ("", {"payment-api", "second-api"}),
    ],
)
def test_https_proxy_and_no_proxy_from_the_environment(
    session: Session,
    server: TLSServer,
    monkeypatch: pytest.MonkeyPatch,
    no_proxy: str,
    proxied: set[str],
) -> None:
    names = {"payment-api": PAYMENT, "second-api": SECOND}
    with ConnectProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", no_proxy)
        for service, name in names.items():
            body = echo(session.get(url(server.port, service)))
            assert (body["sni"], body["host"]) == (name, f"{name}:{server.port}")
        session.close()

    assert proxy.targets == [f"{names[s]}:{server.port}" for s in names if s in proxied]


def test_resolution_failure_through_a_proxy(
    session: Session, dns: ClusterDNS, server: TLSServer
) -> None:
    dns.fault("payment-api.production.svc.cluster.local", "servfail")
    with ConnectProxy() as proxy, pytest.raises(requests.ConnectionError) as info:
        session.get(url(server.port, "payment-api"), proxies={"https": proxy.url})

    assert isinstance(info.value.__cause__, ResolutionError)
    assert proxy.targets == []  # never asked the proxy for the service name


# --- the adapter itself ---------------------------------------------------------------------------


def test_session_mounts_on_http_and_https(resolver: Resolver) -> None:
    with Session(resolver=resolver, rewrite_host=False) as s:
        https, http = s.adapters["https://"], s.adapters["http://"]

    assert isinstance(https, KubeAliasAdapter) and isinstance(http, KubeAliasAdapter)
    assert https is not http
    for adapter in (https, http):
        assert adapter._ka_resolver is resolver
        assert adapter._ka_rewrite_host is False
        assert type(adapter.poolmanager) is kubealias.urllib3.PoolManager


@pytest.mark.parametrize(
    "make",
    [
        lambda r: KubeAliasAdapter(3, 7, 2, True, resolver=r),
        lambda r: KubeAliasAdapter(
            pool_connections=3, pool_maxsize=7, max_retries=2, pool_block=True, resolver=r
        ),
        lambda r: Session(
            resolver=r, pool_connections=3, pool_maxsize=7, max_retries=2, pool_block=True
        ).get_adapter("https://"),
    ],
    ids=["positional", "keywords", "session"],
)
def test_adapter_takes_httpadapters_arguments(resolver: Resolver, make: Any) -> None:
    adapter = make(resolver)

    assert adapter.max_retries.total == 2
    assert adapter.poolmanager.pools._maxsize == 3
    assert (adapter._pool_connections, adapter._pool_maxsize, adapter._pool_block) == (3, 7, True)
    for target in ("https://payment-api/", "https://api.example.com/"):
        pool = pool_for(adapter, target)
        assert pool.pool is not None
        assert (pool.pool.maxsize, pool.block) == (7, True)


def test_adapter_pickles_without_a_resolver(
    resolver: Resolver, cafile: str, server: TLSServer
) -> None:
    adapter = KubeAliasAdapter(pool_maxsize=7, max_retries=2, rewrite_host=False)

    clone = pickle.loads(pickle.dumps(adapter))

    assert type(clone.poolmanager) is kubealias.urllib3.PoolManager
    assert (clone._ka_resolver, clone._ka_rewrite_host) == (None, False)
    assert (clone._pool_maxsize, clone.max_retries.total) == (7, 2)
    # It works, with the default resolver.
    kubealias.set_default_resolver(resolver)
    try:
        with requests.Session() as s:
            s.mount("https://", clone)
            body = echo(s.get(url(server.port, "payment-api"), verify=cafile))
        session = pickle.loads(pickle.dumps(Session()))
        assert isinstance(session.get_adapter("http://"), KubeAliasAdapter)
    finally:
        kubealias.set_default_resolver(None)

    assert (body["sni"], body["host"]) == (PAYMENT, f"payment-api:{server.port}")


def test_a_resolver_pickles_its_configuration_not_its_state(
    dns: ClusterDNS, clock: FakeClock
) -> None:
    resolver = dns.resolver(clock=clock, timeout=1, cache_size=7)
    resolver._hosts = frozenset({"pinned-host"})
    assert resolver.resolve("payment-api").tls_name == PAYMENT

    clone = pickle.loads(pickle.dumps(resolver))

    assert type(clone) is Resolver
    assert clone.config == resolver.config
    assert (clone._cache.maxsize, clone._hosts) == (7, frozenset({"pinned-host"}))
    assert isinstance(clone._clock, FakeClock)  # a copy of the clock, at the same reading
    assert clone._clock() == clock()
    assert clone.cache_stats().size == 0  # no cached answer, no lock, no flight is shared
    assert clone._lock is not resolver._lock and clone._flights is not resolver._flights
    assert clone.resolve("payment-api").tls_name == PAYMENT
    assert resolver.cache_stats().size == 1  # the original keeps its own cache


def test_a_resolver_with_a_clock_that_does_not_pickle_fails_with_picklings_error(
    dns: ClusterDNS,
) -> None:
    resolver = dns.resolver(clock=lambda: 0.0)

    with pytest.raises((pickle.PicklingError, AttributeError), match="lambda"):
        pickle.dumps(resolver)
    with pytest.raises((pickle.PicklingError, AttributeError), match="lambda"):
        pickle.dumps(Session(resolver=resolver))


def test_a_session_with_an_explicit_resolver_pickles(
    resolver: Resolver, cafile: str, server: TLSServer
) -> None:
    with Session(resolver=resolver, rewrite_host=False, max_retries=2) as session:
        session.verify = cafile
        echo(session.get(url(server.port, "payment-api")))
        clone: Session = pickle.loads(pickle.dumps(session))

    https, http = adapter_of(clone), clone.get_adapter("http://")
    assert isinstance(http, KubeAliasAdapter)
    assert https._ka_resolver is http._ka_resolver  # one resolver, as before pickling
    assert isinstance(https._ka_resolver, Resolver) and https._ka_resolver is not resolver
    assert https._ka_resolver.config == resolver.config
    assert (https._ka_rewrite_host, https.max_retries.total) == (False, 2)
    with clone:
        body = echo(clone.get(url(server.port, "payment-api")))
    assert (body["sni"], body["host"]) == (PAYMENT, f"payment-api:{server.port}")
    # The adapter alone, too.
    adapter = pickle.loads(pickle.dumps(KubeAliasAdapter(resolver=resolver)))
    assert adapter.poolmanager._ka_planner._resolver is adapter._ka_resolver

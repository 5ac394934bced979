"""What kubealias.requests and kubealias.urllib3 both promise, checked once for each client.

Each test runs for both (the ``kind`` fixture, parametrised over :data:`CLIENTS`).

The requests adapter hands its routes to kubealias.urllib3's PoolManager, so both clients keep
the same contract: the TLS name for SNI, verification and Host, one pool per TLS name and
address set, the cluster DNS's addresses, names that are not aliases untouched. What only one
client does (its errors, proxies, pickling, retries) stays in test_requests_adapter.py and
test_urllib3_manager.py.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

import kubealias.urllib3
from kubealias import Resolver
from kubealias.requests import Session
from kubealias.testing import ClusterDNS, FakeClock, TLSServer
from kubealias.urllib3 import PoolManager
from tests.unit.conftest import MULTI, PAYMENT, SECOND, host_header, url

CLIENTS = ("requests", "urllib3")


class Client:
    """One client under the contract: a kubealias ``Session`` or a kubealias ``PoolManager``,
    verifying with the test CA."""

    def __init__(
        self,
        kind: str,
        resolver: Resolver,
        cafile: str,
        *,
        rewrite_host: bool = True,
        pool_size: int | None = None,
    ) -> None:
        self.kind = kind
        self.cafile = cafile
        sized: dict[str, Any]
        if kind == "requests":
            sized = {} if pool_size is None else {"pool_maxsize": pool_size}
            self.session = Session(resolver=resolver, rewrite_host=rewrite_host, **sized)
            self.session.verify = cafile
        else:
            sized = {} if pool_size is None else {"maxsize": pool_size}
            self.manager = PoolManager(
                ca_certs=cafile, resolver=resolver, rewrite_host=rewrite_host, **sized
            )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.kind == "requests":
            self.session.close()
        else:
            self.manager.clear()

    def get(
        self,
        target: str,
        *,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        connect_timeout: float | None = None,
    ) -> dict[str, Any]:
        """The echo server's answer to ``GET target``, checked to be a 200."""
        if self.kind == "requests":
            timeout = None if connect_timeout is None else (connect_timeout, 5)
            response = self.session.get(target, headers=headers, params=params, timeout=timeout)
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            return body
        kw: dict[str, Any] = {"headers": headers, "fields": params}
        if connect_timeout is not None:
            kw["timeout"] = urllib3.Timeout(connect=connect_timeout)
        answer = self.manager.request("GET", target, **kw)
        assert answer.status == 200, answer.data
        body = answer.json()
        return body

    def pool(self, target: str) -> HTTPConnectionPool:
        """The pool ``GET target`` would be sent on (no I/O)."""
        if self.kind == "requests":
            adapter = self.session.get_adapter(target)
            assert isinstance(adapter, HTTPAdapter)
            prepared = requests.Request("GET", target).prepare()
            return adapter.get_connection_with_tls_context(prepared, self.cafile)
        return self.manager.connection_from_url(target)

    def pool_keys(self) -> list[Any]:
        if self.kind == "requests":
            adapter = self.session.get_adapter("https://")
            assert isinstance(adapter, HTTPAdapter)
            return list(adapter.poolmanager.pools.keys())
        return list(self.manager.pools.keys())


@pytest.fixture(params=CLIENTS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def client(kind: str, resolver: Resolver, cafile: str) -> Iterator[Client]:
    with Client(kind, resolver, cafile) as c:
        yield c


# --- the documented use ---------------------------------------------------------------------------


def test_alias_is_verified_as_the_external_name_and_reused(
    client: Client, server: TLSServer, dns: ClusterDNS, lookups: list[str]
) -> None:
    before = len(server.connections)
    bodies = [client.get(url(server.port, "payment-api", f"/{n}")) for n in range(5)]

    assert {(b["sni"], b["host"]) for b in bodies} == {(PAYMENT, f"{PAYMENT}:{server.port}")}
    assert [b["path"] for b in bodies] == [f"/{n}" for n in range(5)]
    assert [c.sni for c in server.connections[before:]] == [
        PAYMENT
    ]  # five requests, one TLS handshake
    assert lookups == []  # connected to the cluster DNS's addresses: no second lookup
    # Resolved once (A and AAAA of the first search candidate), then from the cache.
    assert {q.name for q in dns.queries} == {"payment-api.production.svc.cluster.local"}


# --- pools: one per TLS name and address set ------------------------------------------------------


def test_two_aliases_on_one_address_never_share_a_connection(
    client: Client, server: TLSServer
) -> None:
    conns: dict[str, set[int]] = {PAYMENT: set(), SECOND: set()}
    for _ in range(4):
        for service, name in (("payment-api", PAYMENT), ("second-api", SECOND)):
            body = client.get(url(server.port, service))
            assert (body["sni"], body["host"]) == (name, f"{name}:{server.port}")
            conns[name].add(body["conn"])

    assert len(conns[PAYMENT]) == len(conns[SECOND]) == 1  # each reused
    assert not conns[PAYMENT] & conns[SECOND]  # never each other's


def test_new_address_set_after_the_ttl_gets_a_new_pool(
    kind: str, dns: ClusterDNS, clock: FakeClock, cafile: str, server: TLSServer
) -> None:
    target = url(server.port, "payment-api")
    with Client(kind, dns.resolver(timeout=1, clock=clock), cafile) as c:
        first = c.get(target)
        old_pool = c.pool(target)
        dns.record(PAYMENT, "A", ["127.0.0.2", "127.0.0.1"], replace=True)
        clock.advance(6)
        moved = c.get(target)
        new_pool = c.pool(target)

    assert moved["sni"] == PAYMENT
    assert moved["conn"] != first["conn"]  # a new handshake on a new pool
    assert new_pool is not old_pool
    assert new_pool.conn_kw["ka_route"].addresses == ("127.0.0.2", "127.0.0.1")
    assert old_pool.conn_kw["ka_route"].addresses == ("127.0.0.1",)


# --- the Host header ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "want"),
    [
        ("https://payment-api/", PAYMENT),
        ("https://payment-api:443/", PAYMENT),
        ("https://payment-api:8443/", f"{PAYMENT}:8443"),
        ("https://payment-api:80/", f"{PAYMENT}:80"),
        ("http://payment-api/", PAYMENT),
        ("http://payment-api:80/", PAYMENT),
        ("http://payment-api:8080/", f"{PAYMENT}:8080"),
    ],
)
def test_host_header_has_the_port_only_when_not_the_default(
    client: Client, target: str, want: str
) -> None:
    assert host_header(client.pool(target)) == want  # never connects


def test_rewrite_host_false_keeps_the_applications_name(
    kind: str, resolver: Resolver, cafile: str, server: TLSServer
) -> None:
    with Client(kind, resolver, cafile, rewrite_host=False) as c:
        body = c.get(url(server.port, "payment-api"))

    # The echo server chooses its virtual host by SNI (421 only for an unknown SNI), so the
    # original Host is accepted: SNI and verification are still the TLS name.
    assert (body["sni"], body["host"]) == (PAYMENT, f"payment-api:{server.port}")


@pytest.mark.parametrize("header", ["host", "HOST"])
@pytest.mark.parametrize("rewrite_host", [True, False])
def test_callers_host_header_is_never_overwritten(
    kind: str,
    resolver: Resolver,
    cafile: str,
    server: TLSServer,
    rewrite_host: bool,
    header: str,
) -> None:
    with Client(kind, resolver, cafile, rewrite_host=rewrite_host) as c:
        body = c.get(url(server.port, "payment-api"), headers={header: "api.example.com"})

    assert (body["sni"], body["host"]) == (PAYMENT, "api.example.com")


def test_redirect_within_the_alias_is_rewritten_again(client: Client, server: TLSServer) -> None:
    target = url(server.port, "second-api", "/final")
    final = client.get(url(server.port, "payment-api", "/redirect"), params={"to": target})

    assert (final["sni"], final["host"], final["path"]) == (
        SECOND,
        f"{SECOND}:{server.port}",
        "/final",
    )


# --- names that are not aliases -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "pool_class"),
    [
        ("https://api.example.com/v1", HTTPSConnectionPool),
        ("https://127.0.0.1:8443/", HTTPSConnectionPool),
        ("https://[::1]/", HTTPSConnectionPool),
        ("https://localhost/", HTTPSConnectionPool),
        ("http://api.example.com/", HTTPConnectionPool),
        ("http://10.0.0.1/", HTTPConnectionPool),
    ],
)
def test_non_alias_takes_urllib3s_own_pool_without_a_dns_query(
    client: Client, dns: ClusterDNS, target: str, pool_class: type[HTTPConnectionPool]
) -> None:
    pool = client.pool(target)

    assert type(pool) is pool_class
    assert "ka_route" not in pool.conn_kw
    assert "server_hostname" not in pool.conn_kw
    assert dns.queries == []


@pytest.mark.parametrize(("host", "sni"), [("localhost", "localhost"), ("127.0.0.1", None)])
def test_non_alias_request_is_unchanged(
    client: Client, server: TLSServer, dns: ClusterDNS, host: str, sni: str | None
) -> None:
    body = client.get(url(server.port, host))

    assert (body["sni"], body["host"]) == (sni, f"{host}:{server.port}")
    assert dns.queries == []


# --- connecting -----------------------------------------------------------------------------------


def test_first_address_refusing_moves_to_the_next(
    client: Client, resolver: Resolver, server: TLSServer, lookups: list[str]
) -> None:
    assert resolver.resolve("multi-api").addresses == ("127.0.0.2", "127.0.0.1")

    body = client.get(url(server.port, "multi-api"))

    assert (body["sni"], body["host"]) == (MULTI, f"{MULTI}:{server.port}")
    assert lookups == []


def test_first_address_timing_out_moves_to_the_next(
    client: Client, dns: ClusterDNS, server: TLSServer
) -> None:
    # 127.0.0.2 on the server's port accepts nothing more (its queue is full): SYNs are dropped.
    with socket.create_server(("127.0.0.2", server.port), backlog=0) as listener:
        filler = socket.create_connection(listener.getsockname(), timeout=1)
        with filler:
            dns.record(PAYMENT, "A", ["127.0.0.2", "127.0.0.1"], replace=True)
            body = client.get(url(server.port, "payment-api"), connect_timeout=0.2)

    assert body["sni"] == PAYMENT


def test_plain_http_alias_connects_to_the_addresses(
    client: Client, plain_server: Any, lookups: list[str]
) -> None:
    port = plain_server.server_address[1]
    target = url(port, "payment-api", "/plain", scheme="http")

    bodies = [client.get(target) for _ in range(3)]

    assert {b["host"] for b in bodies} == {f"{PAYMENT}:{port}"}
    assert len({b["conn"] for b in bodies}) == 1  # keep-alive
    pool = client.pool(target)
    assert type(pool) is kubealias.urllib3._AliasHTTPConnectionPool
    assert "server_hostname" not in pool.conn_kw
    assert lookups == []  # payment.example.test is known to no resolver but the cluster DNS


# --- threads --------------------------------------------------------------------------------------


def test_threads_share_one_client(
    kind: str, resolver: Resolver, cafile: str, server: TLSServer
) -> None:
    pairs = (("payment-api", PAYMENT), ("second-api", SECOND))
    with Client(kind, resolver, cafile, pool_size=32) as c:

        def work(worker: int) -> int:
            for n in range(32):
                service, name = pairs[(worker + n) % 2]
                body = c.get(url(server.port, service, f"/{worker}/{n}"))
                assert (body["sni"], body["host"], body["path"]) == (
                    name,
                    f"{name}:{server.port}",
                    f"/{worker}/{n}",
                )
            return worker

        with ThreadPoolExecutor(32) as pool:
            assert sorted(pool.map(work, range(32))) == list(range(32))
        keys = c.pool_keys()

    assert sorted(key.key_server_hostname for key in keys) == [PAYMENT, SECOND]

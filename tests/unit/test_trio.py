"""The async API under trio as under asyncio: aresolve, single flight, and httpx's AsyncClient.

httpx's ``AsyncClient`` runs on trio (through anyio); kubealias's async path must too. Tests that
hold for both event loops take the ``run`` fixture (``asyncio.run`` or ``trio.run``); the ones about
trio tasks, and trio waiting on a lookup led elsewhere, call ``trio.run`` themselves. They are plain
functions: pytest-asyncio runs every ``async def`` test on asyncio (auto mode), so a test that
chooses its event loop starts it itself.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

import httpx
import pytest
import trio
import trustme

from kubealias import Resolution, ResolutionError, Resolver
from kubealias.httpx import AsyncHTTPTransport
from kubealias.testing import ClusterDNS, FakeClock, TLSServer
from tests.unit.conftest import PAYMENT, RDS, add_database

T = TypeVar("T")

FQDN = "database.production.svc.cluster.local"


class Run(Protocol):
    """Runs one coroutine function to completion on a fresh event loop."""

    def __call__(self, fn: Callable[[], Coroutine[Any, Any, T]], /) -> T: ...


def _asyncio_run(fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(fn())


def _trio_run(fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return trio.run(fn)


@pytest.fixture(params=["asyncio", "trio"])
def run(request: pytest.FixtureRequest) -> Run:
    return _trio_run if request.param == "trio" else _asyncio_run


@pytest.fixture
def dns(dns: ClusterDNS) -> ClusterDNS:
    """conftest's aliases (``payment-api`` and the others) plus the article's ``database``."""
    return add_database(dns)


def queries(dns: ClusterDNS) -> tuple[int, int]:
    return dns.query_count(FQDN, "A"), dns.query_count(FQDN, "AAAA")


# --- aresolve on both event loops -----------------------------------------------------------------


def test_an_alias_resolves(run: Run, resolver: Resolver) -> None:
    result = run(lambda: resolver.aresolve("database"))
    assert result.tls_name == RDS and result.addresses == ("127.0.0.10",)


def test_a_cluster_ip_and_an_ip_literal_pass_through(
    run: Run, resolver: Resolver, dns: ClusterDNS
) -> None:
    orders = run(lambda: resolver.aresolve("orders"))
    assert not orders.is_alias and orders.tls_name == "orders"
    asked = len(dns.queries)
    literal = run(lambda: resolver.aresolve("127.0.0.1"))
    assert literal.tls_name == "127.0.0.1" and len(dns.queries) == asked  # no query at all


def test_serve_stale(run: Run, dns: ClusterDNS, clock: FakeClock) -> None:
    resolver = dns.resolver(clock=clock, timeout=0.3)
    run(lambda: resolver.aresolve("database"))
    dns.fault(FQDN, "drop")
    clock.advance(6)
    assert run(lambda: resolver.aresolve("database")).stale


def test_a_timeout_is_bounded(run: Run, dns: ClusterDNS) -> None:
    dns.fault(FQDN, "drop")
    resolver = dns.resolver(timeout=0.5)
    started = time.monotonic()
    with pytest.raises(ResolutionError, match="timed out"):
        run(lambda: resolver.aresolve("database"))
    assert time.monotonic() - started < 0.75


def test_truncation_falls_back_to_tcp(run: Run, dns: ClusterDNS) -> None:
    dns.fault(FQDN, "truncate")
    assert run(lambda: dns.resolver().aresolve(FQDN)).tls_name == RDS
    assert dns.query_count(FQDN, transport="tcp") == 2


def test_outside_any_event_loop_the_error_says_what_is_needed(resolver: Resolver) -> None:
    coroutine = resolver.aresolve("database")
    with pytest.raises(RuntimeError, match="asyncio or trio"):
        coroutine.send(None)
    coroutine.close()


# --- single flight among trio tasks, threads and other loops --------------------------------------


def led_by_another_thread(
    dns: ClusterDNS, lead: Callable[[], Resolution], follow: Callable[[], Resolution]
) -> tuple[list[Resolution], Resolution]:
    """Run ``lead`` in another thread (a lookup of ``database``, which the server delays 0.3 s),
    then, 50 ms later so that it leads, ``follow`` here.

    Returns:
        ``([what lead returned], what follow returned)``.
    """
    dns.delay(FQDN, 0.3)
    led: list[Resolution] = []
    thread = threading.Thread(target=lambda: led.append(lead()))
    thread.start()
    time.sleep(0.05)  # the other thread leads
    try:
        result = follow()
    finally:
        thread.join(5)
    return led, result


def test_trio_tasks_share_one_lookup(resolver: Resolver, dns: ClusterDNS) -> None:
    dns.delay(FQDN, 0.2)
    results: list[Resolution] = []

    async def one() -> None:
        results.append(await resolver.aresolve("database"))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(16):
                nursery.start_soon(one)

    trio.run(main)
    assert len(results) == 16 and len({id(r) for r in results}) == 1
    assert queries(dns) == (1, 1)


def test_a_cancelled_trio_leader_does_not_strand_its_followers(
    resolver: Resolver, dns: ClusterDNS
) -> None:
    dns.delay(FQDN, 0.3)
    results: list[Resolution] = []

    async def follow() -> None:
        results.append(await resolver.aresolve("database"))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow)  # runs once the leader below has joined and awaits
            with trio.move_on_after(0.05) as leader:
                await resolver.aresolve("database")
            assert leader.cancelled_caught

    trio.run(main)
    assert [r.tls_name for r in results] == [RDS]


def test_a_trio_task_waits_on_a_threads_lookup(resolver: Resolver, dns: ClusterDNS) -> None:
    led, result = led_by_another_thread(
        dns,
        lead=lambda: resolver.resolve("database"),
        follow=lambda: trio.run(resolver.aresolve, "database"),
    )
    assert led == [result] and led[0] is result
    assert queries(dns) == (1, 1)


def test_a_trio_task_waits_on_an_asyncio_lookup_in_another_thread(
    resolver: Resolver, dns: ClusterDNS
) -> None:
    led, result = led_by_another_thread(
        dns,
        lead=lambda: asyncio.run(resolver.aresolve("database")),
        follow=lambda: trio.run(resolver.aresolve, "database"),
    )
    assert led == [result] and led[0] is result
    assert queries(dns) == (1, 1)


def test_an_asyncio_task_waits_on_a_trio_lookup_in_another_thread(
    resolver: Resolver, dns: ClusterDNS
) -> None:
    led, result = led_by_another_thread(
        dns,
        lead=lambda: trio.run(resolver.aresolve, "database"),
        follow=lambda: asyncio.run(resolver.aresolve("database")),
    )
    assert led == [result] and led[0] is result
    assert queries(dns) == (1, 1)


def test_a_sync_call_inside_a_trio_task_while_its_lookup_runs(
    resolver: Resolver, dns: ClusterDNS
) -> None:
    dns.delay(FQDN, 0.1)
    results: list[Resolution] = []

    async def lead() -> None:
        results.append(await resolver.aresolve("database"))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lead)
            await trio.sleep(0.01)
            started = time.monotonic()
            results.append(resolver.resolve("database"))  # no deadlock on our own loop
            assert time.monotonic() - started < 1.0

    trio.run(main)
    assert [r.tls_name for r in results] == [RDS, RDS]


# --- httpx.AsyncClient under trio -----------------------------------------------------------------


@pytest.fixture(scope="module")
def trust(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def test_httpx_async_client_reaches_an_alias_by_its_external_name(
    run: Run, resolver: Resolver, trust: ssl.SSLContext, server: TLSServer
) -> None:
    async def get() -> list[dict[str, Any]]:
        transport = AsyncHTTPTransport(verify=trust, resolver=resolver)
        async with httpx.AsyncClient(transport=transport) as client:
            pages = [await client.get(f"https://payment-api:{server.port}/") for _ in range(2)]
        return [page.json() for page in pages]

    before = len(server.connections)
    bodies = run(get)
    assert {(b["sni"], b["host"]) for b in bodies} == {(PAYMENT, f"{PAYMENT}:{server.port}")}
    assert [c.sni for c in server.connections[before:]] == [PAYMENT]  # verified, then reused


def test_httpx_async_client_passes_a_name_that_is_not_an_alias_through(
    run: Run, resolver: Resolver, trust: ssl.SSLContext, server: TLSServer
) -> None:
    async def get() -> dict[str, Any]:
        transport = AsyncHTTPTransport(verify=trust, resolver=resolver)
        async with httpx.AsyncClient(transport=transport) as client:
            page = await client.get(f"https://localhost:{server.port}/")
        body: dict[str, Any] = page.json()
        return body

    body = run(get)
    assert (body["sni"], body["host"]) == ("localhost", f"localhost:{server.port}")

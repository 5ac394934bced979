"""Fork safety: a child forked while other threads resolve (issue 10, item 6).

Only the forking thread lives on in a child (POSIX ``fork``): a lookup another thread was leading,
or a background refresh, never finishes there, and a lock another thread held is never released.
Each test forks while such a thread is busy, runs ``work`` in the child, which reports through a
pipe and leaves with ``os._exit`` (it never returns into pytest), and bounds how long it may take.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import select
import signal
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import kubealias
import kubealias._resolver
from kubealias import ResolutionError, Resolver
from kubealias._cache import Cache, Entry
from kubealias.testing import ClusterDNS, FakeClock
from tests.unit.conftest import wait_for

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")

FQDN = "database.production.svc.cluster.local"
RDS = "mydb.abc123.us-east-1.rds.amazonaws.com"
#: How long a child may take before the test calls it stuck (a deadlock, or a wait on a lookup
#: that nobody in the child runs).
CHILD_LIMIT = 10.0


@pytest.fixture
def dns(cluster_dns: ClusterDNS) -> ClusterDNS:
    cluster_dns.external_name("database", "production", RDS)
    cluster_dns.record(RDS, "A", "127.0.0.10")
    cluster_dns.external_name("payment-api", "production", "api.example.test")
    cluster_dns.record("api.example.test", "A", "127.0.0.20")
    return cluster_dns


def fork() -> int:
    """``os.fork()``, without the warning Python 3.12+ gives when other threads run: forking
    while threads run is exactly the situation under test."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"This process .* is multi-threaded", category=DeprecationWarning
        )
        return os.fork()


def in_child(work: Callable[[], Any], limit: float = CHILD_LIMIT) -> dict[str, Any]:
    """Fork; in the child run ``work`` and send back ``{"ok": result, "took": s}`` or
    ``{"error": ...}``; in the parent return it, or ``{"stuck": True}`` when the child did not
    answer within ``limit`` seconds (it is then killed).

    The child touches nothing but what ``work`` does (not the ClusterDNS object, whose lock a
    server thread of the parent may have held at the fork).
    """
    read_end, write_end = os.pipe()
    pid = fork()
    if pid == 0:  # the child: never return into pytest
        code = 0
        try:
            os.close(read_end)
            started = time.monotonic()
            try:
                report: dict[str, Any] = {"ok": work()}
            except BaseException as exc:
                report = {"error": f"{type(exc).__name__}: {exc}"}
            report["took"] = time.monotonic() - started
            os.write(write_end, json.dumps(report).encode())
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], limit)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            return {"stuck": True}
        data = b""
        while chunk := os.read(read_end, 65536):
            data += chunk
        result: dict[str, Any] = json.loads(data) if data else {"error": "no report"}
        return result
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)


@contextlib.contextmanager
def held_by_another_thread(lock: Any) -> Iterator[None]:
    """``lock`` held by another thread for the duration of the block."""
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            taken.set()
            release.wait(CHILD_LIMIT + 5)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert taken.wait(5)
    try:
        yield
    finally:
        release.set()
        holder.join(5)


def resolve_timed(resolver: Resolver, host: str) -> dict[str, Any]:
    """What the child reports: the TLS name, whether stale, and how long it took."""
    started = time.monotonic()
    r = resolver.resolve(host)
    return {"tls_name": r.tls_name, "stale": r.stale, "took": time.monotonic() - started}


def forked_during_a_lookup(
    dns: ClusterDNS, timeout: float, lead: Callable[[Resolver], object]
) -> dict[str, Any]:
    """The child's :func:`resolve_timed` report for ``database``, forked while another thread of
    the parent runs ``lead(resolver)``: a lookup of ``database``, which the server delays 1 s.

    Args:
        dns: the cluster DNS; ``database`` is delayed on it.
        timeout: the resolver's timeout.
        lead: what the parent's thread runs with the resolver (a sync or an async lookup).
    """
    resolver = dns.resolver(timeout=timeout)
    dns.delay(FQDN, 1.0)
    parent = threading.Thread(target=lead, args=(resolver,), daemon=True)
    parent.start()
    try:
        assert wait_for(lambda: dns.query_count(FQDN, "A") >= 1)
        return in_child(lambda: resolve_timed(resolver, "database"))
    finally:
        parent.join(timeout + 1)


# --- (a) a lookup in flight in another thread ----------------------------------------------


def test_a_child_does_not_wait_on_a_lookup_its_parent_was_running(dns: ClusterDNS) -> None:
    # The parent's thread leads a slow lookup (1 s); the child, forked meanwhile, asks for the
    # same name. Before: it joined the inherited flight, that no thread of the child runs, waited
    # until the flight's deadline and then had no time left ("timed out").
    timeout = 4.0
    report = forked_during_a_lookup(dns, timeout, lambda resolver: resolver.resolve("database"))
    assert "ok" in report, report
    assert report["ok"]["tls_name"] == RDS
    assert report["ok"]["took"] < timeout / 2, report  # the server's 1 s, not the timeout


async def test_an_async_lookup_in_flight_in_the_parent(dns: ClusterDNS) -> None:
    # The same with the parent's lookup an asyncio task on another thread's loop.
    timeout = 4.0
    report = forked_during_a_lookup(
        dns, timeout, lambda resolver: asyncio.run(resolver.aresolve("database"))
    )
    assert "ok" in report, report
    assert report["ok"]["took"] < timeout / 2, report


# --- (b) a background refresh (serve-stale) in flight ----------------------------------------


def test_a_child_refreshes_a_stale_answer_itself(dns: ClusterDNS) -> None:
    # The parent serves stale during an outage; a background refresh is in flight (slow) at the
    # fork. Before: the child's callers found the refresh's flight registered, started none of
    # their own, and were served stale until KUBEALIAS_MAX_STALE ran out.
    clock = FakeClock()
    resolver = dns.resolver(clock=clock, timeout=3, max_stale=300)
    assert not resolver.resolve("database").stale
    dns.fault(FQDN, "servfail")
    clock.advance(6)
    assert resolver.resolve("database").stale  # the refresh failed: an outage
    dns.clear_faults()
    dns.delay(FQDN, 1.0)  # the server is back, slowly (within one try of 1.5 s)
    clock.advance(1.5)  # past the recheck interval
    asked = dns.query_count(FQDN, "A")
    assert resolver.resolve("database").stale  # and a background refresh starts
    assert wait_for(lambda: dns.query_count(FQDN, "A") > asked)

    def child() -> dict[str, Any]:
        dns_answers = wait_for(lambda: not resolver.resolve("database").stale, timeout=5)
        return {"refreshed": dns_answers, "tls_name": resolver.resolve("database").tls_name}

    report = in_child(child)
    assert report.get("ok") == {"refreshed": True, "tls_name": RDS}, report


# --- (c) a lock held by another thread at the fork -------------------------------------------


def _cache_lock(resolver: Resolver) -> Any:
    return resolver._cache._lock


def _flights_lock(resolver: Resolver) -> Any:
    return resolver._flights._lock


def _generation_lock(resolver: Resolver) -> Any:
    return resolver._lock


def _default_lock(resolver: Resolver) -> Any:
    return kubealias._resolver._default_lock


def _warn_lock(resolver: Resolver) -> Any:
    return kubealias._resolver._warn_lock


@pytest.mark.parametrize(
    "lock",
    [_cache_lock, _flights_lock, _generation_lock, _default_lock, _warn_lock],
    ids=["cache", "flights", "generation", "default", "warn-once"],
)
def test_a_lock_held_at_the_fork_does_not_deadlock_the_child(
    dns: ClusterDNS, lock: Callable[[Resolver], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    resolver = dns.resolver(timeout=2)
    resolver.resolve("database")  # cached: the child keeps it
    # The warn-once notice not yet given, so that the child takes its lock.
    monkeypatch.setattr(kubealias._resolver, "_warned_no_allowlist", False)

    def child() -> dict[str, Any]:
        cached = resolver.resolve("database")  # the hot path: from the inherited cache
        fresh = resolver.resolve("payment-api")  # miss: cache, flights, warn-once
        resolver.flush("orders")  # the generation lock
        kubealias.set_default_resolver(resolver)  # the default-resolver lock
        return {"cached": cached.tls_name, "fresh": fresh.tls_name}

    with held_by_another_thread(lock(resolver)):
        report = in_child(child)
    # The child's default resolver was set in the child only.
    assert report.get("ok") == {"cached": RDS, "fresh": "api.example.test"}, report


def test_the_child_keeps_the_cache(dns: ClusterDNS) -> None:
    resolver = dns.resolver(timeout=2)
    resolver.resolve("database")
    asked = len(dns.queries)
    report = in_child(lambda: resolver.resolve("database").tls_name)
    assert report.get("ok") == RDS, report
    assert len(dns.queries) == asked  # answered from the inherited cache


def test_resolvers_are_tracked_weakly() -> None:
    resolver = Resolver(nameservers=["127.0.0.1"], search=[], namespace_file=None)
    assert resolver in kubealias._resolver._live
    gone = weakref.ref(resolver)
    del resolver
    gc.collect()
    assert gone() is None  # the registry of live resolvers kept none alive


def test_the_cache_resets_its_lock_and_keeps_its_entries() -> None:
    # What the child's reset does, without a fork: a lock held by nobody alive is replaced.
    cache = Cache(4)
    cache.put("database", Entry(ResolutionError("x", name="database"), 1.0))
    cache._lock.acquire()  # as if held by a thread of the parent at the fork
    cache.reset_after_fork()
    cache.put("orders", Entry(ResolutionError("y", name="orders"), 1.0))  # does not block
    assert cache.get("database") is not None and len(cache) == 2

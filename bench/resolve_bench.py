"""Row 1: warm-cache resolve() vs dnspython's Resolver with LRUCache vs a dict.

Also the query counts of rows 2 and 6 against the in-process server, used only where the pod
emulation cannot run (``fallback_run``); ``bench/cold_bench.py`` and
``bench/concurrency_bench.py`` measure them against BIND in the pod.

Interleaved A B C A B C ... in one run so that machine noise cancels; each round times a batch
of calls per contender; the figure is the median of the per-round ratios.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import dns.resolver

from bench._table import row
from kubealias.testing import ClusterDNS

FQDN = "database.production.svc.cluster.local"


def _batch(fn: Callable[[], Any], n: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - start) / n


def warm_cache(dns_server: ClusterDNS, rounds: int, batch: int) -> dict[str, Any]:
    ours = dns_server.resolver()
    ours.resolve("database")
    peer = dns.resolver.Resolver(configure=False)
    peer.nameservers = [dns_server.host]
    peer.port = dns_server.port
    peer.cache = dns.resolver.LRUCache()
    peer.resolve(FQDN, "A")
    table = {"database": ours.resolve("database")}

    def k() -> object:
        return ours.resolve("database")

    def d() -> object:
        return peer.resolve(FQDN, "A")

    def floor() -> object:
        return table.get("database")

    ks, ds, fs, vs_dns, vs_dict = [], [], [], [], []
    for _ in range(rounds):
        tk, td, tf = _batch(k, batch), _batch(d, batch), _batch(floor, batch)
        ks.append(tk)
        ds.append(td)
        fs.append(tf)
        vs_dns.append(td / tk)
        vs_dict.append(tk / tf)
    return {
        "kubealias_ns": statistics.median(ks),
        "dnspython_ns": statistics.median(ds),
        "dict_ns": statistics.median(fs),
        "speedup_vs_dnspython": statistics.median(vs_dns),
        "slowdown_vs_dict": statistics.median(vs_dict),
    }


def query_counts(dns_server: ClusterDNS) -> dict[str, Any]:
    resolver = dns_server.resolver()
    dns_server.reset_queries()
    resolver.resolve("database")
    cold = {t: dns_server.query_count(rdtype=t) for t in ("A", "AAAA")}
    dns_server.reset_queries()
    resolver.resolve("api.example.test")
    external = len(dns_server.queries)

    # 64 threads and 64 tasks on one cold name, the server answering 100 ms late.
    dns_server.delay(FQDN, 0.1)
    threaded = dns_server.resolver()
    dns_server.reset_queries()
    barrier = threading.Barrier(64)
    latencies: list[float] = []

    def call() -> None:
        barrier.wait()
        start = time.perf_counter()
        threaded.resolve("database")
        latencies.append(time.perf_counter() - start)

    threads = [threading.Thread(target=call) for _ in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    threads_q = {t: dns_server.query_count(rdtype=t) for t in ("A", "AAAA")}

    tasked = dns_server.resolver()
    dns_server.reset_queries()

    async def many() -> None:
        await asyncio.gather(*(tasked.aresolve("database") for _ in range(64)))

    asyncio.run(many())
    tasks_q = {t: dns_server.query_count(rdtype=t) for t in ("A", "AAAA")}
    dns_server.delay(FQDN, 0)
    latencies.sort()
    return {
        "cold_alias": cold,
        "external_name": external,
        "threads_64": threads_q,
        "tasks_64": tasks_q,
        "threads_p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


def run(quick: bool = False) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Row 1 (warm cache) against the in-process server; the table rows and the raw data."""
    with ClusterDNS(namespace="production") as server:
        server.article_services()
        warm = warm_cache(server, rounds=5 if quick else 31, batch=2_000 if quick else 20_000)
    per_call_us = warm["kubealias_ns"] / 1000
    speedup = warm["speedup_vs_dnspython"]
    floor = warm["slowdown_vs_dict"]
    rows = [
        row(
            1,
            "resolve() warm cache, median per call",
            f"{per_call_us:.2f} µs",
            f"dnspython Resolver + LRUCache {warm['dnspython_ns'] / 1000:.2f} µs",
            f"{speedup:.1f}x faster",
            "<= 2 µs, >= 10x faster",
            per_call_us <= 2 and speedup >= 10,
        ),
        row(
            1,
            "resolve() warm cache vs a dict lookup (the floor)",
            f"{warm['kubealias_ns']:.0f} ns",
            f"dict.get {warm['dict_ns']:.0f} ns",
            f"{floor:.1f}x the floor",
            "within 10x",
            floor <= 10,
        ),
    ]
    return rows, warm


def fallback_run() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows 2 and 6 against the in-process server (a 100 ms answer delay for the crowds), for
    machines where the pod emulation cannot run: query counts only, no glibc comparison."""
    with ClusterDNS(namespace="production") as server:
        server.article_services()
        counts = query_counts(server)

    def families(c: dict[str, int]) -> str:
        return f"A {c['A']}, AAAA {c['AAAA']}"

    def one_each(c: dict[str, int]) -> bool:
        return c == {"A": 1, "AAAA": 1}

    note = "in-process server (no pod here)"
    rows = [
        row(2, f"cold `database`, {note}", families(counts["cold_alias"]), "-", "-",
            "1 per family", one_each(counts["cold_alias"])),
        row(2, f"cold `api.example.test`, {note}", f"{counts['external_name']} queries", "-",
            "-", "0 queries", counts["external_name"] == 0),
        row(6, f"64 threads on a cold name, {note}, answer delayed 100 ms",
            f"{families(counts['threads_64'])}; p99 {counts['threads_p99_ms']:.0f} ms", "-", "-",
            "1 query per family", one_each(counts["threads_64"])),
        row(6, f"64 asyncio tasks on a cold name, {note}, answer delayed 100 ms",
            families(counts["tasks_64"]), "-", "-", "1 query per family",
            one_each(counts["tasks_64"])),
    ]  # fmt: skip
    return rows, counts

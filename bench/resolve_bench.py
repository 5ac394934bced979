"""Resolution cost: warm cache vs dnspython's Resolver with LRUCache vs a dict; query counts.

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


def run(quick: bool = False) -> list[dict[str, Any]]:
    with ClusterDNS(namespace="production") as server:
        server.article_services()
        warm = warm_cache(server, rounds=5 if quick else 31, batch=2_000 if quick else 20_000)
        counts = query_counts(server)
    return [
        {
            "name": "resolve() warm cache, median per call",
            "ours": f"{warm['kubealias_ns'] / 1000:.2f} µs",
            "peer": f"dnspython LRUCache {warm['dnspython_ns'] / 1000:.2f} µs",
            "value": f"{warm['speedup_vs_dnspython']:.1f}x faster",
            "target": "<= 2 µs, >= 10x",
        },
        {
            "name": "resolve() warm cache vs dict lookup (floor)",
            "ours": f"{warm['kubealias_ns']:.0f} ns",
            "peer": f"dict.get {warm['dict_ns']:.0f} ns",
            "value": f"{warm['slowdown_vs_dict']:.1f}x the floor",
            "target": "within 10x",
        },
        {
            "name": "queries for a cold alias (whole-chain server)",
            "ours": f"A {counts['cold_alias']['A']}, AAAA {counts['cold_alias']['AAAA']}",
            "peer": "-",
            "value": "",
            "target": "1 per family",
        },
        {
            "name": "queries for an external name (api.example.test)",
            "ours": str(counts["external_name"]),
            "peer": "-",
            "value": "",
            "target": "0",
        },
        {
            "name": "64 threads on a cold name",
            "ours": f"A {counts['threads_64']['A']}, AAAA {counts['threads_64']['AAAA']}",
            "peer": "-",
            "value": f"p99 {counts['threads_p99_ms']:.0f} ms (server delay 100 ms)",
            "target": "1 per family",
        },
        {
            "name": "64 asyncio tasks on a cold name",
            "ours": f"A {counts['tasks_64']['A']}, AAAA {counts['tasks_64']['AAAA']}",
            "peer": "-",
            "value": "",
            "target": "1 per family",
        },
    ]

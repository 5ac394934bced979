"""Row 6: 64 callers on one cold name at once, counted at the pod's BIND.

Against BIND in the pod emulation (not the in-process server): for each sample ``named`` is
paused (SIGSTOP), :mod:`bench.pod_worker` starts 64 callers on the cold alias ``database`` — 64
threads released by a barrier, or 64 asyncio tasks — and once every one of them is inside its
call and 50 ms more have passed, ``named`` is resumed (SIGCONT). So all 64 are waiting when the
server answers, whatever the thread scheduling; the queries that BIND's query log shows for the
sample are every query the crowd sent.

* **kubealias**: a fresh ``Resolver()`` per sample, ``resolve("database")`` per thread or
  ``await aresolve("database")`` per task: one lookup in flight, every other caller joins it;
* **glibc**: ``socket.getaddrinfo`` per thread, ``loop.getaddrinfo`` per task (asyncio runs it
  in its default executor, as asyncio HTTP clients do): each call does its own lookup.

Latency is the time from the moment ``named`` is resumed to the moment each caller returns
(both CLOCK_MONOTONIC), i.e. how long the waiters take to be served once the answer can come;
the time held is the same for both contenders and is left out. p99 is by nearest rank over the
64 callers of a sample (so the slowest one); the ratio is the median over the pairs of
kubealias's p99 / glibc's p99. Target: 1 query per address family.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from bench._table import fmt_seconds, interleaved, median_ratio, percentile, row

if TYPE_CHECKING:
    from bench._pod import Worker
    from integrations.pod.lab import PodLab

OURS, PEER = "kubealias", "glibc"
NAME = "database"
CALLERS = 64
HOLD = 0.05
SETTLE = 0.02
MODES = ("threads", "tasks")
PEER_LABELS = {
    "threads": "glibc getaddrinfo per thread",
    "tasks": "asyncio loop.getaddrinfo per task",
}


def _sample(pod: PodLab, worker: Worker, mode: str, who: str) -> dict[str, Any]:
    pod.clear_query_log("full", settle=SETTLE)
    released: list[float] = []

    def release() -> None:
        # The clock first: on a busy machine this process may lose the CPU right after the
        # SIGCONT, while BIND answers and the callers return.
        released.append(time.monotonic())
        pod.resume_named("full")

    command = {"op": "crowd", "who": who, "mode": mode, "name": NAME, "n": CALLERS, "hold": HOLD}
    pod.pause_named("full")
    try:
        answer = worker.call_with_crowd(command, release)
    finally:
        pod.resume_named("full")
    if answer["errors"]:
        raise RuntimeError(f"{who} {mode}: {len(answer['errors'])} callers failed: {answer}")
    queries = pod.query_log("full", settle=SETTLE)
    return {
        "after_release": [end - released[0] for end in answer["ends"]],
        "total": [end - start for start, end in zip(answer["starts"], answer["ends"], strict=True)],
        "queries": dict(Counter(q.rdtype for q in queries)),
        "names": sorted({q.name for q in queries}),
    }


def measure(pod: PodLab, worker: Worker, *, quick: bool = False) -> dict[str, Any]:
    """Interleaved samples per mode: ``{mode: {"kubealias": [...], "glibc": [...]}}``."""
    pairs = 3 if quick else 15
    data: dict[str, Any] = {}
    for mode in MODES:
        data[mode] = interleaved(pairs, (OURS, PEER), functools.partial(_sample, pod, worker, mode))
    return data


def _queries(samples: list[dict[str, Any]]) -> str:
    """ "A 1, AAAA 1" when every sample sent the same, else each family's range."""
    parts = []
    for rdtype in sorted({t for s in samples for t in s["queries"]}):
        counts = [s["queries"].get(rdtype, 0) for s in samples]
        lo, hi = min(counts), max(counts)
        parts.append(f"{rdtype} {lo}" if lo == hi else f"{rdtype} {lo}-{hi}")
    return ", ".join(parts) or "none"


def rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per mode: queries per family, p99 after release, the p99 ratio."""
    out = []
    for mode in MODES:
        ours, peer = data[mode][OURS], data[mode][PEER]
        ours_p99 = [percentile(s["after_release"], 99) for s in ours]
        peer_p99 = [percentile(s["after_release"], 99) for s in peer]
        pooled_ours = percentile((x for s in ours for x in s["after_release"]), 99)
        pooled_peer = percentile((x for s in peer for x in s["after_release"]), 99)
        met = all(s["queries"] == {"A": 1, "AAAA": 1} for s in ours)
        out.append(
            row(
                6,
                (
                    f"{CALLERS} {mode} on one cold alias, BIND in the pod held until all wait, "
                    f"{len(ours)} pairs; p99 after BIND resumes"
                ),
                f"{_queries(ours)} queries; p99 {fmt_seconds(pooled_ours)}",
                f"{PEER_LABELS[mode]}: {_queries(peer)} queries; p99 {fmt_seconds(pooled_peer)}",
                f"{median_ratio(ours_p99, peer_p99):.3g}x p99",
                "1 query per family",
                met,
            )
        )
    return out

"""Row 2: a cold resolution in the pod, kubealias against glibc, timed and counted at the server.

Inside the pod emulation (BIND 9 on 127.0.0.1:53 with the kubelet's resolv.conf: three search
domains, ``ndots:5``), :mod:`bench.pod_worker` resolves each name once per sample:

* **kubealias**: ``Resolver.flush()`` then ``Resolver.resolve(name)`` (the resolver made from the
  pod's resolv.conf, as an application has it);
* **glibc**: ``socket.getaddrinfo(name, 443, type=SOCK_STREAM)``, which is what an HTTP client
  or libpq calls for a host name, through the same resolv.conf (no nscd in the pod).

The two alternate A B, B A, ... and the number of queries of every sample is read from BIND's
query log (cleared before the sample), so the counts are what the server received, not what a
client believes it sent. Names:

* ``database``: an ExternalName alias (``database.production.svc.cluster.local`` -> RDS name ->
  provider host -> 127.0.0.10); the first search candidate answers with the whole chain;
* ``shared-cache.app-team-a``: an alias in another namespace (one dot, so the search list is
  walked: ``...production.svc.cluster.local`` is NXDOMAIN, ``...svc.cluster.local`` answers);
* ``api.example.test``: an external name under ``ndots:5``: glibc walks the three search
  domains before the name itself (8 queries), kubealias sees that it cannot be a Service and
  asks nothing (the client then resolves it as it always did).

Target: kubealias never sends more queries than glibc, and none for a name that cannot be a
Service. Wall time is reported as the median of the per-pair ratios, without a target.
"""

from __future__ import annotations

import functools
import statistics
from collections import Counter
from typing import TYPE_CHECKING, Any

from bench._table import fmt_seconds, interleaved, median_ratio, row

if TYPE_CHECKING:
    from bench._pod import Worker
    from integrations.pod.lab import PodLab

OURS, PEER = "kubealias", "glibc"
#: (name, what it is, whether it can be a Service: kubealias must then make 0 queries).
CASES = (
    ("database", "ExternalName alias", True),
    ("shared-cache.app-team-a", "alias in another namespace (search-list walk)", True),
    ("api.example.test", "external name under ndots:5", False),
)
SETTLE = 0.02  # BIND logs a query before answering it; this only guards a half-written line


def _sample(pod: PodLab, worker: Worker, name: str, who: str) -> dict[str, Any]:
    pod.clear_query_log("full", settle=SETTLE)
    seconds = worker.call({"op": "cold", "who": who, "name": name})["seconds"]
    queries = pod.query_log("full", settle=SETTLE)
    return {"seconds": seconds, "queries": [f"{q.name} {q.rdtype}" for q in queries]}


def measure(pod: PodLab, worker: Worker, *, quick: bool = False) -> dict[str, Any]:
    """Interleaved samples per case: ``{name: {"kubealias": [...], "glibc": [...]}}``."""
    pairs = 5 if quick else 21
    data: dict[str, Any] = {}
    for name, _what, _service in CASES:
        for who in (OURS, PEER):  # warm-up: imports, sockets, the pod's page cache
            worker.call({"op": "cold", "who": who, "name": name})
        data[name] = interleaved(pairs, (OURS, PEER), functools.partial(_sample, pod, worker, name))
    return data


def _counts(samples: list[dict[str, Any]]) -> str:
    """ "2 (A 1, AAAA 1)" when every sample sent the same queries, else the range."""
    sizes = [len(s["queries"]) for s in samples]
    if min(sizes) != max(sizes):
        return f"{min(sizes)}-{max(sizes)} queries"
    per_type = Counter(q.split()[1] for q in samples[0]["queries"])
    names = len({q.split()[0] for q in samples[0]["queries"]})
    detail = ", ".join(f"{t} {c}" for t, c in sorted(per_type.items()))
    where = f" for {names} names" if names > 1 else ""
    return f"{sizes[0]} queries" + (f" ({detail}{where})" if detail else "")


def rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per name: wall times, query counts, the time ratio and the query target."""
    out = []
    for name, what, service in CASES:
        ours, peer = data[name][OURS], data[name][PEER]
        ours_s = [s["seconds"] for s in ours]
        peer_s = [s["seconds"] for s in peer]
        ours_q = [len(s["queries"]) for s in ours]
        peer_q = [len(s["queries"]) for s in peer]
        never_more = all(a <= b for a, b in zip(ours_q, peer_q, strict=True))
        if service:
            target, met = "queries <= glibc", never_more
        else:
            target, met = "0 queries (and <= glibc)", never_more and max(ours_q) == 0
        out.append(
            row(
                2,
                f"cold `{name}`, {what}: BIND in the pod, {len(ours)} pairs",
                f"{fmt_seconds(statistics.median(ours_s))}, {_counts(ours)}",
                f"glibc getaddrinfo {fmt_seconds(statistics.median(peer_s))}, {_counts(peer)}",
                f"{median_ratio(ours_s, peer_s):.3g}x time",
                target,
                met,
            )
        )
    return out

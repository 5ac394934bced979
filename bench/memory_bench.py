"""Row 7: 10,000 cached names — resident memory growth and warm lookup time.

The in-process ``kubealias.testing.ClusterDNS`` serves 10,000 ExternalName services
(``svc-00000`` ... -> ``svc-00000.ext.example.test`` -> an A record, TTL 3600, which kubealias
clamps to its 300 s maximum) from **this** process; the resolver runs in a **child** process
(this file with ``--child``), so that the server's records do not count in the growth measured.

In the child:

* **memory**: ``VmRSS`` from ``/proc/self/status`` (the resident size the target means; not
  tracemalloc), after ``gc.collect()``, before and after resolving the names into one
  resolver's cache (default ``cache_size=10_000``: all fit, none evicted; checked). Before the
  first reading the resolver has already resolved one name, so code paths, imports and the
  DNS socket machinery are not counted as cache. Target: growth < 20 MB.
* **lookup time**: warm ``resolve()`` of a resolver holding 1 name against one holding 10,000,
  interleaved A B A B in batches; the ratio per round, then the median. Two readings: the same
  name each time (what the cache costs per lookup once it is big), and a different one of the
  10,000 each time in a shuffled order (adds the CPU-cache misses of touching many entries).
  Target: "unchanged", read here as the same-name ratio <= 1.10.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._table import fmt_seconds, row

NAMES = 10_000
TARGET_MB = 20.0
TARGET_RATIO = 1.10
NAMESPACE = "production"


def _name(i: int) -> str:
    return f"svc-{i:05d}"


# --- in the child -----------------------------------------------------------------------------


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def _batch(fn: Callable[[str], Any], hosts: list[str]) -> float:
    """Seconds per call of ``fn`` over ``hosts``."""
    start = time.perf_counter()
    for host in hosts:
        fn(host)
    return (time.perf_counter() - start) / len(hosts)


def child_main(config: dict[str, Any]) -> dict[str, Any]:
    import gc

    import kubealias

    n, rounds, batch = config["names"], config["rounds"], config["batch"]
    names = [_name(i) for i in range(n)]
    # Environment (KUBEALIAS_*, from ClusterDNS.env) names the server; no hosts file.
    small = kubealias.Resolver(hosts_file=None)
    big = kubealias.Resolver(hosts_file=None)
    first = small.resolve(names[0])
    big.resolve(names[0])
    if not first.is_alias:
        raise RuntimeError(f"{names[0]} is not an alias: {first}")
    gc.collect()
    before = _rss_kib()
    start = time.perf_counter()
    for name in names[1:]:
        big.resolve(name)
    fill_seconds = time.perf_counter() - start
    gc.collect()
    after = _rss_kib()
    stats = big.cache_stats()
    if stats.size != n or stats.evictions:
        raise RuntimeError(f"not all {n} names stayed cached: {stats}")

    same = [names[0]] * batch
    spread = random.Random(5).sample(names, min(n, batch))
    spread = (spread * (batch // len(spread) + 1))[:batch]
    for fn, hosts in ((small.resolve, same), (big.resolve, same), (big.resolve, spread)):
        _batch(fn, hosts)  # warm-up
    one, big_same, big_spread = [], [], []
    for _ in range(rounds):
        one.append(_batch(small.resolve, same))
        big_same.append(_batch(big.resolve, same))
        big_spread.append(_batch(big.resolve, spread))
    if big.cache_stats().size != n:
        raise RuntimeError("the cache changed size while timing")
    return {
        "names": n,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "fill_seconds": fill_seconds,
        "one_name": one,
        "many_same_name": big_same,
        "many_spread": big_spread,
    }


# --- outside: the server, the table -----------------------------------------------------------


def measure(*, quick: bool = False, names: int | None = None) -> dict[str, Any]:
    """Serve ``names`` aliases (10,000; 2,000 with ``quick``) and run the child against them."""
    from kubealias.testing import ClusterDNS

    n = names if names is not None else (2_000 if quick else NAMES)
    config = {"names": n, "rounds": 7 if quick else 31, "batch": 2_000 if quick else 20_000}
    with ClusterDNS(namespace=NAMESPACE) as server:
        for i in range(n):
            target = f"{_name(i)}.ext.example.test"
            server.external_name(_name(i), NAMESPACE, target, ttl=3600)
            server.record(target, "A", f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", ttl=3600)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("KUBEALIAS_") and k not in ("LOCALDOMAIN", "RES_OPTIONS")
        }
        env.update(server.env())
        result = subprocess.run(
            [sys.executable, "-m", "bench.memory_bench", "--child", json.dumps(config)],
            env=env,
            cwd=Path(__file__).resolve().parent.parent,
            capture_output=True,
            text=True,
            timeout=600,
        )
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"memory bench child failed ({result.returncode}):\n{result.stderr}")
    data: dict[str, Any] = json.loads(lines[-1])
    data["quick"] = quick or n != NAMES
    return data


def rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Two rows: resident growth; warm lookup with N names vs with 1."""
    n = data["names"]
    growth_mb = (data["rss_after_kib"] - data["rss_before_kib"]) / 1024
    judged = not data["quick"]
    same = [b / a for a, b in zip(data["one_name"], data["many_same_name"], strict=True)]
    spread = [b / a for a, b in zip(data["one_name"], data["many_spread"], strict=True)]
    same_ratio, spread_ratio = statistics.median(same), statistics.median(spread)
    not_judged = "" if judged else f" (not judged at {n:,} names)"
    return [
        row(
            7,
            f"{n:,} cached aliases: resident growth (VmRSS, child process, after gc)",
            (
                f"+{growth_mb:.1f} MB ({growth_mb * 1024 * 1024 / n:.0f} B per name; "
                f"filled in {data['fill_seconds']:.1f} s)"
            ),
            "-",
            "-",
            f"< {TARGET_MB:g} MB at {NAMES:,}{not_judged}",
            growth_mb < TARGET_MB if judged else None,
        ),
        row(
            7,
            f"warm resolve() with {n:,} names cached vs with 1, {len(same)} rounds",
            (
                f"same name {fmt_seconds(statistics.median(data['many_same_name']))}; "
                f"a different name each call {fmt_seconds(statistics.median(data['many_spread']))}"
                f" ({spread_ratio:.2f}x)"
            ),
            f"1 name cached {fmt_seconds(statistics.median(data['one_name']))}",
            f"{same_ratio:.2f}x time (same name)",
            f"unchanged: <= {TARGET_RATIO:.2f}x{not_judged}",
            same_ratio <= TARGET_RATIO if judged else None,
        ),
    ]


if __name__ == "__main__":  # the child: python -m bench.memory_bench --child CONFIG
    if sys.argv[1:2] != ["--child"] or len(sys.argv) != 3:
        sys.exit("usage: python -m bench --only memory (this file runs itself as a child)")
    print(json.dumps(child_main(json.loads(sys.argv[2]))))

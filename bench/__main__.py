"""``python -m bench``: run the benchmarks, print one Markdown table, write JSON.

The rows follow the list of issue 5 ("Benchmarks"); each shows its target and whether it is met:

====================  ====  ===================================================================
``--only``            row   what
====================  ====  ===================================================================
``resolve``           1     warm ``resolve()`` vs dnspython + LRUCache vs a dict (in-process DNS)
``cold``              2     cold resolution, time and queries at BIND, vs glibc (pod)
``http``              3, 4  HTTPS keep-alive and new connection per request vs peers (pod, nginx)
``pg``                5     psycopg connect and pool checkout (pod, PostgreSQL 15)
``concurrency``       6     64 threads / 64 tasks on one cold name, queries at BIND (pod)
``memory``            7     10,000 cached names: RSS growth and warm lookup time (in-process DNS)
``asyncpg``           9     asyncpg connect through kubealias vs plain asyncpg (pod, PostgreSQL 15)
====================  ====  ===================================================================

``--only`` may be given several times; without it everything runs. ``--quick`` is a smoke run
(fewer rounds, 2,000 names for row 7, whose targets are then not judged). The pod benchmarks
need root (network namespaces, BIND, nginx, PostgreSQL); where they cannot run they are skipped
with the reason, and rows 2 and 6 fall back to the in-process server (query counts only).
A benchmark that fails is reported and the exit status is 1; the others still run.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import _table

CHOICES = ("resolve", "cold", "http", "pg", "concurrency", "memory", "asyncpg")


def _pod_rows(parts: list[str], quick: bool) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows 2 and/or 6: one pod emulation and one worker inside it for both."""
    from bench import _pod, cold_bench, concurrency_bench

    rows: list[dict[str, Any]] = []
    data: dict[str, Any] = {}
    with _pod.session() as (pod, worker):
        if "cold" in parts:
            data["cold"] = cold_bench.measure(pod, worker, quick=quick)
            rows += cold_bench.rows(data["cold"])
        if "concurrency" in parts:
            data["concurrency"] = concurrency_bench.measure(pod, worker, quick=quick)
            rows += concurrency_bench.rows(data["concurrency"])
    return rows, data


def _measured(module: Any, quick: bool) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows and the raw data of a benchmark module with ``measure`` and ``rows``."""
    data: dict[str, Any] = module.measure(quick=quick)
    return module.rows(data), data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--json", default="bench/results/latest.json", help="where to write")
    parser.add_argument("--quick", action="store_true", help="fewer rounds (smoke run)")
    parser.add_argument(
        "--only",
        action="append",
        choices=CHOICES,
        help="run this benchmark (repeatable; default: all)",
    )
    args = parser.parse_args(argv)
    chosen = args.only or list(CHOICES)
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    raw: dict[str, Any] = {}
    notes: list[str] = []
    failed = False

    def attempt(label: str, fn: Callable[[], tuple[list[dict[str, Any]], dict[str, Any]]]) -> None:
        nonlocal failed
        t0 = time.monotonic()
        try:
            got_rows, got_data = fn()
        except Exception:
            failed = True
            notes.append(f"{label} FAILED:\n{traceback.format_exc()}")
            return
        rows.extend(got_rows)
        raw[label] = got_data
        print(f"[bench] {label}: {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)

    from bench import _pod, asyncpg_bench, http_bench, memory_bench, pg_bench, resolve_bench

    if "resolve" in chosen:
        attempt("resolve", lambda: resolve_bench.run(quick=args.quick))
    pod_parts = [p for p in ("cold", "concurrency") if p in chosen]
    if pod_parts:
        reason = _pod.unavailable()
        if reason is None:
            attempt("+".join(pod_parts), lambda: _pod_rows(pod_parts, args.quick))
        else:
            notes.append(
                f"{' and '.join(pod_parts)} against BIND skipped: {reason}; "
                "in-process server used instead"
            )
            attempt("in-process query counts", resolve_bench.fallback_run)
    for label, module in (("http", http_bench), ("pg", pg_bench), ("asyncpg", asyncpg_bench)):
        if label in chosen:
            reason = module.unavailable()
            if reason is None:
                attempt(label, functools.partial(_measured, module, args.quick))
            else:
                notes.append(f"{label} benchmark skipped: {reason}")
    if "memory" in chosen:
        attempt("memory", functools.partial(_measured, memory_bench, args.quick))

    rows.sort(key=lambda r: int(r["row"]))  # stable: the order within a row is kept
    runtime = time.monotonic() - started
    command = "python -m bench" + "".join(" " + a for a in (sys.argv[1:] if argv is None else argv))
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"`{command}`: {date}, {os.cpu_count()} CPUs, {runtime:.0f} s")
    print()
    print(_table.render(rows))
    for note in notes:
        print(f"\n{note}")
    met = [r["met"] for r in rows if r["met"] is not None]
    print(f"\ntargets met: {sum(met)} of {len(met)}")
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "command": command,
        "date": date,
        "quick": args.quick,
        "runtime_seconds": round(runtime, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "rows": rows,
        "notes": notes,
        "data": raw,
    }
    path.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
    print(f"written to {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

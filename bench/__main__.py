"""``python -m bench``: run the benchmarks, print one Markdown table, write JSON.

``--only resolve``, ``--only http`` or ``--only pg`` runs one of them; the HTTP and PostgreSQL
benchmarks need the pod emulation (root) and are skipped, with the reason, where they cannot run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench import http_bench, pg_bench, resolve_bench


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--json", default="bench/results/latest.json", help="where to write")
    parser.add_argument("--quick", action="store_true", help="fewer rounds (smoke run)")
    parser.add_argument(
        "--only", choices=("resolve", "http", "pg"), help="run one benchmark (default: all)"
    )
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    if args.only in (None, "resolve"):
        rows += resolve_bench.run(quick=args.quick)
    if args.only in (None, "http"):
        reason = http_bench.unavailable()
        if reason is None:
            rows += http_bench.run(quick=args.quick)
        else:
            notes.append(f"http benchmark skipped: {reason}")
    if args.only in (None, "pg"):
        reason = pg_bench.unavailable()
        if reason is None:
            rows += pg_bench.run(quick=args.quick)
        else:
            notes.append(f"pg benchmark skipped: {reason}")
    print("| benchmark | kubealias | peer | value | target |")
    print("|---|---|---|---|---|")
    for row in rows:
        cells = (row[key] for key in ("name", "ours", "peer", "value", "target"))
        print("| " + " | ".join(cells) + " |")
    for note in notes:
        print(f"\n{note}")
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=2))
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()

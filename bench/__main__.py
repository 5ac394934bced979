"""``python -m bench``: run every benchmark, print one Markdown table, write JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench import resolve_bench


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--json", default="bench/results/latest.json", help="where to write")
    parser.add_argument("--quick", action="store_true", help="fewer rounds (smoke run)")
    args = parser.parse_args()
    rows = resolve_bench.run(quick=args.quick)
    print("| benchmark | kubealias | peer | value | target |")
    print("|---|---|---|---|---|")
    for row in rows:
        cells = (row[key] for key in ("name", "ours", "peer", "value", "target"))
        print("| " + " | ".join(cells) + " |")
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=2))
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()

"""The benchmark code paths that need no pod: the table, the verdicts, and row 7 at small N.

The pod rows (2-6) are exercised by ``make bench``; here only their verdict logic, on canned
samples, so that a regression cannot turn a missed target into a tick.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import __main__ as bench_main
from bench import _table, cold_bench, concurrency_bench, memory_bench


def test_render_one_table_with_verdicts() -> None:
    rows = [
        _table.row(1, "a|b", "1 µs", "2 µs", "2x", "<= 2", True),
        _table.row(2, "c", "x", "y", "-", "0", False),
        _table.row(4, "d", "x", "y", "1x", "-", None),
    ]
    lines = _table.render(rows).splitlines()
    assert lines[0].startswith("| # | benchmark |") and lines[0].endswith("| met |")
    assert lines[1] == "|---|---|---|---|---|---|---|"
    assert lines[2] == "| 1 | a\\|b | 1 µs | 2 µs | 2x | <= 2 | ✓ met |"
    assert lines[3].endswith("| ✗ NOT met |")
    assert lines[4].endswith("| - | - |")


def test_percentile_is_nearest_rank_and_ratio_is_median_of_pairs() -> None:
    values = [float(i) for i in range(1, 65)]
    assert _table.percentile(values, 99) == 64.0
    assert _table.percentile(values, 50) == 32.0
    # Per-pair ratios 1, 2, 10: the median is 2, not the ratio of the medians (3/2).
    assert _table.median_ratio([1.0, 4.0, 30.0], [1.0, 2.0, 3.0]) == 2.0


def _cold_samples(ours_queries: int, peer_queries: int) -> dict[str, list[dict[str, object]]]:
    def sample(n: int) -> dict[str, object]:
        return {"seconds": 0.001, "queries": [f"n{i} A" for i in range(n)]}

    return {"kubealias": [sample(ours_queries)] * 3, "glibc": [sample(peer_queries)] * 3}


ALIAS, OTHER_NS, EXTERNAL = "database", "shared-cache.app-team-a", "api.example.test"


@pytest.mark.parametrize(
    ("counts", "want"),
    [
        # name: (kubealias queries, glibc queries)
        ({ALIAS: (2, 2), OTHER_NS: (4, 4), EXTERNAL: (0, 8)}, True),
        ({ALIAS: (3, 2), OTHER_NS: (4, 4), EXTERNAL: (0, 8)}, False),  # more than glibc
        ({ALIAS: (2, 2), OTHER_NS: (4, 4), EXTERNAL: (1, 8)}, False),  # not a Service: not 0
    ],
)
def test_cold_verdicts(counts: dict[str, tuple[int, int]], want: bool) -> None:
    data = {name: _cold_samples(ours, peer) for name, (ours, peer) in counts.items()}
    rows = cold_bench.rows(data)
    assert [r["row"] for r in rows] == ["2", "2", "2"]
    assert all(r["met"] for r in rows) is want


def test_concurrency_verdict_wants_one_query_per_family() -> None:
    def sample(queries: dict[str, int]) -> dict[str, object]:
        return {"after_release": [0.001] * 64, "total": [0.05] * 64, "queries": queries}

    good = {"A": 1, "AAAA": 1}
    data = {
        "threads": {"kubealias": [sample(good)] * 2, "glibc": [sample({"A": 64, "AAAA": 64})] * 2},
        "tasks": {
            "kubealias": [sample(good), sample({"A": 2, "AAAA": 1})],
            "glibc": [sample(good)] * 2,
        },
    }
    threads, tasks = concurrency_bench.rows(data)
    assert threads["met"] is True and "A 1, AAAA 1" in threads["ours"]
    assert tasks["met"] is False and "A 1-2" in tasks["ours"]


def test_memory_row_at_small_n() -> None:
    data = memory_bench.measure(quick=True, names=50)
    assert data["names"] == 50 and data["quick"]
    assert data["rss_after_kib"] >= data["rss_before_kib"] > 0
    growth, lookup = memory_bench.rows(data)
    assert growth["row"] == lookup["row"] == "7"
    assert growth["met"] is None and lookup["met"] is None  # not judged below 10,000 names
    assert "50 cached aliases" in growth["name"]


def test_main_resolve_quick_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    assert bench_main.main(["--only", "resolve", "--quick", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| 1 | resolve() warm cache, median per call |" in printed
    document = json.loads(out.read_text())
    assert document["quick"] is True and document["command"].startswith("python -m bench")
    assert [r["row"] for r in document["rows"]] == ["1", "1"]
    assert "kubealias_ns" in document["data"]["resolve"]

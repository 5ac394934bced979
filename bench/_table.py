"""The one Markdown table every benchmark contributes rows to, and the helpers they share.

A row is a dict of text cells plus ``met``: ``True``/``False`` when the row has a target, ``None``
when it only shows a figure. Nothing here rounds a figure towards its target: ``met`` is decided
on the unrounded number by the benchmark that made the row.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

_T = TypeVar("_T")

COLUMNS = ("row", "name", "ours", "peer", "ratio", "target", "met")
HEADER = ("#", "benchmark", "kubealias", "peer", "ratio (median of pairs)", "target", "met")


def row(
    number: int | str,
    name: str,
    ours: str,
    peer: str,
    ratio: str,
    target: str,
    met: bool | None,
) -> dict[str, Any]:
    """One table row; ``number`` is the row of the issue's list (1-7) it belongs to."""
    return {
        "row": str(number),
        "name": name,
        "ours": ours,
        "peer": peer,
        "ratio": ratio,
        "target": target,
        "met": met,
    }


def verdict(met: bool | None) -> str:
    """The text of the ``met`` column."""
    if met is None:
        return "-"
    return "✓ met" if met else "✗ NOT met"


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def render(rows: Iterable[Mapping[str, Any]]) -> str:
    """The rows as one Markdown table (header included), without a trailing newline."""
    lines = [
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    for r in rows:
        cells = [_cell(r[key]) for key in COLUMNS[:-1]] + [verdict(r["met"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def alternating(round_: int, contenders: Sequence[_T]) -> Sequence[_T]:
    """The contenders in order on even rounds, reversed on odd ones (A B, B A, ...): each one
    follows every other as often as it precedes it, so that a slow spell of the machine, and
    what one contender leaves in the caches for the next, fall on all of them alike."""
    return contenders if round_ % 2 == 0 else contenders[::-1]


def interleaved(
    pairs: int, contenders: Sequence[str], sample: Callable[[str], _T]
) -> dict[str, list[_T]]:
    """``pairs`` samples of each contender (``sample(contender)``), taken in
    :func:`alternating` order."""
    samples: dict[str, list[_T]] = {who: [] for who in contenders}
    for i in range(pairs):
        for who in alternating(i, contenders):
            samples[who].append(sample(who))
    return samples


def pair_ratios(ours: Sequence[float], peer: Sequence[float]) -> list[float]:
    """Per interleaved pair, ``ours / peer`` (pairs where the peer is 0 are left out)."""
    return [a / b for a, b in zip(ours, peer, strict=True) if b]


def median_ratio(ours: Sequence[float], peer: Sequence[float]) -> float:
    """The median of the per-pair ratios ``ours / peer``: the figure of every ratio row."""
    ratios = pair_ratios(ours, peer)
    return statistics.median(ratios) if ratios else math.nan


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q``-th percentile by nearest rank (``q`` in 0-100): an observed value, never an
    interpolation. With 64 values, p99 is the slowest one."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def fmt_seconds(seconds: float) -> str:
    """A duration with a unit that keeps three significant digits or so."""
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    if seconds >= 1e-6:
        return f"{seconds * 1e6:.1f} µs"
    return f"{seconds * 1e9:.0f} ns"

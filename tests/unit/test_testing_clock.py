"""kubealias.testing.FakeClock: the clock the tests (and users' tests) give resolvers."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from kubealias.testing import ClusterDNS, FakeClock


def test_reads_and_moves_only_when_told() -> None:
    clock = FakeClock()
    assert clock() == clock.now == 1000.0
    assert clock() == 1000.0
    clock.advance(2.5)
    clock.advance(0)
    assert clock() == 1002.5
    assert repr(clock) == "FakeClock(now=1002.5)"
    assert FakeClock(start=7.0)() == 7.0


def test_never_goes_back() -> None:
    clock = FakeClock()
    with pytest.raises(ValueError, match="never goes back"):
        clock.advance(-0.1)
    assert clock() == 1000.0


def test_docstring_example_runs(cluster_dns: ClusterDNS) -> None:
    doc = FakeClock.__doc__ or ""
    code = textwrap.dedent(doc.split("::\n\n", 1)[1].split("\n\n    Reading", 1)[0])
    namespace: dict[str, Any] = {}
    exec(compile(code, "kubealias/testing/_clock.py", "exec"), namespace)
    namespace["test_the_answer_is_cached_for_its_ttl"](cluster_dns)

"""The protocol of every client module: JSON arguments on argv, JSON lines on stdout."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["args", "emit", "main", "wait"]


def args() -> Any:
    """The client's arguments: ``sys.argv[1]`` parsed as JSON (None when absent)."""
    return json.loads(sys.argv[1]) if len(sys.argv) > 1 else None


def emit(value: Any) -> None:
    """Print ``value`` as one JSON line (flushed: the test may be waiting for it)."""
    print(json.dumps(value), flush=True)


def wait() -> None:
    """Block until the test writes a line on stdin (it changed the world in between)."""
    sys.stdin.readline()


def main(run: Callable[[Any], Any]) -> None:
    """Call ``run(args())`` and emit what it returns (the client's result)."""
    emit(run(args()))

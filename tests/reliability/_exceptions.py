"""What the reliability tests read from an exception: everything chained behind it."""

from __future__ import annotations


def exception_chain(error: BaseException) -> list[BaseException]:
    """``error`` and everything reachable through ``__cause__``, ``__context__`` and urllib3's
    ``reason`` (each exception once, even in a cycle)."""
    seen: list[BaseException] = []
    todo = [error]
    while todo:
        current = todo.pop()
        if any(current is other for other in seen):
            continue
        seen.append(current)
        for linked in (current.__cause__, current.__context__, getattr(current, "reason", None)):
            if isinstance(linked, BaseException):
                todo.append(linked)
    return seen

"""psycopg2 calls, plain and through kubealias, each reported with everything a leak could hide in.

Args: a list of calls, each ``{"entry": ..., "host": str, "overrides": {...}}`` (the lab's
keyword arguments, as :meth:`~integrations.clients._pg.PgTarget.kwargs` makes them) or
``{"entry": ..., "dsn": str}``. Entries:

* ``psycopg2.connect``: plain psycopg2 (the control), with the keywords or the DSN;
* ``connect``: ``kubealias.psycopg2.connect(**kwargs)``, or ``connect(dsn)``;
* ``connect-dsn``, ``connect-url``: the same parameters as one DSN string, or as the lab's URL;
* ``factory``: plain ``psycopg2.connect(dsn, connection_factory=kubealias.psycopg2.Connection)``;
* ``rewrite_dsn``: plain ``psycopg2.connect(kubealias.psycopg2.rewrite_dsn(dsn))``;
* ``cursor_factory``: ``kubealias.psycopg2.connect(..., cursor_factory=RealDictCursor)``;
* ``async``: ``kubealias.psycopg2.connect(..., async_=True)``, polled with ``wait_select``;
* ``Connection``: ``kubealias.psycopg2.Connection(dsn)``, what a pool's ``connect`` calls.

Result: one outcome per call (``integrations.clients.pg_failures.outcome``): ``{"ok": ...}``
(the connection described, with ``cursor`` the default cursor's class name) or ``{"error",
"message", "chain", "kubealias_cause", "texts"}``, plus ``elapsed`` and ``logs``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg2
import psycopg2.extras

import kubealias.psycopg2
from integrations.clients._pg import PgTarget, capture_logs, main
from integrations.clients._pg2 import describe, dsn
from integrations.clients.pg_failures import outcome


def _described(conn: Any) -> dict[str, Any]:
    if conn.async_:
        psycopg2.extras.wait_select(conn)
    try:
        out = describe(conn)
        with conn.cursor() as cursor:
            out["cursor"] = type(cursor).__name__
        return out
    finally:
        conn.close()


def _call(lab: PgTarget, spec: dict[str, Any]) -> Callable[[], Any]:
    entry = spec["entry"]
    params = lab.kwargs(spec.get("host", "database"), **spec.get("overrides", {}))
    text = spec.get("dsn", dsn(params))
    calls: dict[str, Callable[[], Any]] = {
        "psycopg2.connect": (
            (lambda: psycopg2.connect(text))
            if "dsn" in spec
            else (lambda: psycopg2.connect(**params))
        ),
        "connect": (
            (lambda: kubealias.psycopg2.connect(text))
            if "dsn" in spec
            else (lambda: kubealias.psycopg2.connect(**params))
        ),
        "connect-dsn": lambda: kubealias.psycopg2.connect(text),
        "connect-url": lambda: kubealias.psycopg2.connect(lab.url(spec.get("host", "database"))),
        "factory": lambda: psycopg2.connect(text, connection_factory=kubealias.psycopg2.Connection),
        "rewrite_dsn": lambda: psycopg2.connect(kubealias.psycopg2.rewrite_dsn(text)),
        "cursor_factory": lambda: kubealias.psycopg2.connect(
            cursor_factory=psycopg2.extras.RealDictCursor, **params
        ),
        "async": lambda: kubealias.psycopg2.connect(async_=True, **params),
        "Connection": lambda: kubealias.psycopg2.Connection(text),
    }
    return lambda: _described(calls[entry]())


def calls(lab: PgTarget, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The outcome of each call, in order, in this one process."""
    logs = capture_logs()
    results = []
    for spec in specs:
        seen: list[dict[str, Any]] = []
        call = _call(lab, spec)

        def keep(call: Callable[[], Any] = call, seen: list[dict[str, Any]] = seen) -> None:
            seen.append(call())

        result = outcome(keep, logs)
        if "ok" in result:
            result["ok"] = seen[0]  # the description itself, not its repr
        results.append(result)
    return results


if __name__ == "__main__":
    main(calls)

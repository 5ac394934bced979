"""Failing calls, each with everything a password leak could hide in.

Args: a list of calls, each ``{"entry": ..., "conninfo": str}`` or ``{"entry": ...,
"host": str, "overrides": {...}}`` (the lab's keyword arguments). Entries: ``connect``
(``kubealias.psycopg.connect``), ``rewrite_conninfo``, ``Connection`` and ``AsyncConnection``
(``.connect``), ``psycopg.connect`` (the control, no kubealias) and ``pool`` (a
``psycopg_pool.ConnectionPool`` of kubealias connections that must come up within 1 s).

Result: one outcome per call: ``{"ok": repr}`` or ``{"error", "message", "chain" (module.type
of each chained exception), "kubealias_cause", "texts" (str/repr of the chain and the formatted
traceback)}``, plus ``elapsed`` and ``logs`` (every log record during the call, at DEBUG).
"""

from __future__ import annotations

import asyncio
import inspect
import time
import traceback
from collections.abc import Callable
from typing import Any

import psycopg
import psycopg_pool

import kubealias
import kubealias.psycopg
from integrations.clients._pg import PgTarget, capture_logs, exception_chain, exception_texts, main
from kubealias.psycopg import AsyncConnection, Connection


def _pool_attempt(conninfo: str) -> Callable[[], None]:
    pool = psycopg_pool.ConnectionPool(
        conninfo, connection_class=Connection, min_size=1, open=True, reconnect_timeout=0.5
    )

    def attempt() -> None:
        try:
            pool.wait(timeout=1.0)
        finally:
            pool.close()

    return attempt


def _call(lab: PgTarget, spec: dict[str, Any]) -> Callable[[], Any]:
    entry = spec["entry"]
    if entry == "pool":
        return _pool_attempt(spec["conninfo"])
    entries: dict[str, Callable[..., Any]] = {
        "connect": kubealias.psycopg.connect,
        "rewrite_conninfo": kubealias.psycopg.rewrite_conninfo,
        "Connection": Connection.connect,
        "AsyncConnection": AsyncConnection.connect,
        "psycopg.connect": psycopg.connect,
    }
    function = entries[entry]
    if "conninfo" in spec:
        return lambda: function(spec["conninfo"])
    params = lab.kwargs(spec.get("host", "database"), **spec.get("overrides", {}))
    return lambda: function(**params)


def outcome(call: Callable[[], Any], logs: list[str]) -> dict[str, Any]:
    """Run ``call`` (its result may be awaitable) and report how it ended."""
    del logs[:]
    start = time.monotonic()
    out: dict[str, Any]
    try:
        value = call()
        if inspect.isawaitable(value):
            value = asyncio.run(value)  # type: ignore[arg-type]
        out = {"ok": repr(value)}
    except Exception as exc:
        out = {
            "error": type(exc).__name__,
            "message": str(exc),
            "chain": [type(e).__module__ + "." + type(e).__name__ for e in exception_chain(exc)],
            "kubealias_cause": isinstance(exc.__cause__, kubealias.KubeAliasError),
            "texts": exception_texts(exc) + traceback.format_exception(exc),
        }
    out["elapsed"] = time.monotonic() - start
    out["logs"] = list(logs)
    return out


def failures(lab: PgTarget, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The outcome of each call, in order, in this one process."""
    logs = capture_logs()
    results = []
    for spec in calls:

        def call(spec: dict[str, Any] = spec) -> Any:
            # A pool starts connecting as soon as it is made: inside the measured outcome.
            return _call(lab, spec)()

        results.append(outcome(call, logs))
    return results


if __name__ == "__main__":
    main(failures)

"""A ``psycopg_pool`` pool of kubealias connections through the ExternalName -> ClusterIP switch.

Args: ``{"kind": "sync" | "async", "mode": "drain" | "max_lifetime", "wait": s,
"pool_kwargs": {...}}``. Prints ``{"seen": [describe, describe]}`` (two connections checked
out at once), waits for a line on stdin (the test switches the DNS), sleeps ``wait``, has the
pool replace its connections (``drain()``, or ``check()`` after ``max_lifetime``) and prints
``{"seen", "stats", "problems"}`` (problems: WARNING and ERROR log records).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from psycopg_pool import AsyncConnectionPool, ConnectionPool

import kubealias.psycopg
from integrations.clients._pg import PgTarget, adescribe, capture_logs, describe, main
from integrations.clients._run import emit, wait


def _problems(logs: list[str]) -> list[str]:
    return [r for r in logs if " WARNING " in r or " ERROR " in r]


def _options(lab: PgTarget, args: dict[str, Any]) -> dict[str, Any]:
    """What both pools are given besides their connection class and how they open."""
    return {
        "conninfo": lab.conninfo("database"),
        "min_size": 2,
        "max_size": 4,
        "name": "app",
        "kwargs": {"autocommit": True},
        **args["pool_kwargs"],
    }


def sync_pool(lab: PgTarget, args: dict[str, Any]) -> dict[str, Any]:
    """The sync pool's run."""
    logs = capture_logs()
    pool = ConnectionPool(
        connection_class=kubealias.psycopg.Connection, open=True, **_options(lab, args)
    )
    pool.wait(timeout=15)

    def batch() -> list[dict[str, Any]]:
        conns = [pool.getconn(timeout=15) for _ in range(2)]
        try:
            return [describe(c) for c in conns]
        finally:
            for c in conns:
                pool.putconn(c)

    emit({"seen": batch()})
    wait()  # the test switches the DNS
    time.sleep(args["wait"])
    if args["mode"] == "drain":
        pool.drain()
    else:
        pool.check()  # discards the connections older than max_lifetime, opens new ones
    seen = batch()
    result = {"seen": seen, "stats": pool.get_stats(), "problems": _problems(logs)}
    pool.close()
    return result


async def async_pool(lab: PgTarget, args: dict[str, Any]) -> dict[str, Any]:
    """The async pool's run."""
    logs = capture_logs()
    pool = AsyncConnectionPool(
        connection_class=kubealias.psycopg.AsyncConnection, open=False, **_options(lab, args)
    )
    await pool.open(wait=True, timeout=15)

    async def batch() -> list[dict[str, Any]]:
        conns = [await pool.getconn(timeout=15) for _ in range(2)]
        try:
            return [await adescribe(c) for c in conns]
        finally:
            for c in conns:
                await pool.putconn(c)

    emit({"seen": await batch()})
    await asyncio.to_thread(wait)  # the test switches the DNS
    await asyncio.sleep(args["wait"])
    if args["mode"] == "drain":
        await pool.drain()
    else:
        await pool.check()
    seen = await batch()
    result = {"seen": seen, "stats": pool.get_stats(), "problems": _problems(logs)}
    await pool.close()
    return result


def run(lab: PgTarget, args: dict[str, Any]) -> dict[str, Any]:
    """The pool of ``args["kind"]``."""
    if args["kind"] == "sync":
        return sync_pool(lab, args)
    return asyncio.run(async_pool(lab, args))


if __name__ == "__main__":
    main(run)

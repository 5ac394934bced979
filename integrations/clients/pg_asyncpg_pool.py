"""A ``kubealias.asyncpg`` pool through the ExternalName -> ClusterIP switch.

Args: ``{"wait": s}``. Prints ``{"seen": [describe, describe]}`` (two connections held at
once), waits for a line on stdin (the test switches the DNS), sleeps ``wait``, expires the
pool's connections (``Pool.expire_connections()``: each is replaced on its next acquire) and
prints ``{"seen", "problems"}`` (problems: WARNING and ERROR log records).
"""

from __future__ import annotations

import asyncio
from typing import Any

import kubealias.asyncpg
from integrations.clients._pg import PgTarget, capture_logs, main
from integrations.clients._run import emit, wait
from integrations.clients.pg_asyncpg import describe, dsn


async def pool_run(lab: PgTarget, args: dict[str, Any]) -> dict[str, Any]:
    """Open the pool, describe two connections, switch, describe two new ones."""
    logs = capture_logs()
    url = dsn(lab, "database", sslmode="verify-full", sslrootcert=lab.cafile)
    pool = await kubealias.asyncpg.create_pool(url, min_size=2, max_size=2, timeout=10)

    async def batch() -> list[dict[str, Any]]:
        conns = [await pool.acquire(timeout=15) for _ in range(2)]
        try:
            return [await describe(c) for c in conns]
        finally:
            for c in conns:
                await pool.release(c)

    emit({"seen": await batch()})
    await asyncio.to_thread(wait)  # the test switches the DNS
    await asyncio.sleep(args["wait"])
    await pool.expire_connections()
    seen = await batch()
    await pool.close()
    return {"seen": seen, "problems": [r for r in logs if " WARNING " in r or " ERROR " in r]}


def run(lab: PgTarget, args: dict[str, Any]) -> dict[str, Any]:
    """The pool's run, under asyncio."""
    return asyncio.run(pool_run(lab, args))


if __name__ == "__main__":
    main(run)

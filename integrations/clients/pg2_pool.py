"""A ``psycopg2.pool.ThreadedConnectionPool`` of kubealias connections through the ExternalName
-> ClusterIP switch.

Args: ``{"factory": "Connection" | "mixed", "wait": s}``. ``Connection`` is
``connection_factory=kubealias.psycopg2.Connection``; ``mixed`` is a class of the
application's own with kubealias's first among its bases (here with psycopg2's
``RealDictConnection``, whose cursors give dicts). Prints ``{"seen": [describe, describe],
"cursor", "connect"}``: the pool's two connections, checked out at once, then closed
(psycopg2's pools keep an idle connection open for good, so only a closed one is replaced),
and one more from ``kubealias.psycopg2.connect`` in the same process. Then waits for a line on
stdin (the test switches the DNS), sleeps ``wait``, does the same again (new connections) and
prints ``{"seen", "cursor", "connect", "problems"}`` (problems: WARNING and ERROR log records).
"""

from __future__ import annotations

import time
from typing import Any

import psycopg2.extras
from psycopg2.pool import ThreadedConnectionPool

import kubealias.psycopg2
from integrations.clients._pg import PgTarget, capture_logs, main
from integrations.clients._pg2 import describe, dsn
from integrations.clients._run import emit, wait


class AppConnection(kubealias.psycopg2.Connection, psycopg2.extras.RealDictConnection):  # type: ignore[misc]
    """An application's own connection class, resolving through kubealias."""


FACTORIES = {"Connection": kubealias.psycopg2.Connection, "mixed": AppConnection}


def batch(pool: ThreadedConnectionPool, lab: PgTarget) -> dict[str, Any]:
    """Two connections at once, described, then closed (the pool opens new ones next time);
    and one of ``kubealias.psycopg2.connect`` in the same process (the same cache)."""
    conns = [pool.getconn() for _ in range(2)]
    try:
        with conns[0].cursor() as cursor:
            kind = type(cursor).__name__
        seen = [describe(c) for c in conns]
    finally:
        for c in conns:
            pool.putconn(c, close=True)
    with kubealias.psycopg2.connect(**lab.kwargs("database")) as conn:
        connected = describe(conn)
    conn.close()  # psycopg2's "with" ends the transaction, not the connection
    return {"seen": seen, "cursor": kind, "connect": connected}


def run(lab: PgTarget, args: dict[str, Any]) -> dict[str, Any]:
    """The pool's run."""
    logs = capture_logs()
    pool = ThreadedConnectionPool(
        2, 4, dsn(lab.kwargs("database")), connection_factory=FACTORIES[args["factory"]]
    )
    emit(batch(pool, lab))
    wait()  # the test switches the DNS
    time.sleep(args["wait"])
    result = batch(pool, lab)
    pool.closeall()
    result["problems"] = [r for r in logs if " WARNING " in r or " ERROR " in r]
    return result


if __name__ == "__main__":
    main(run)

"""The article's call with plain psycopg (fails), then the same arguments with kubealias.

Args: the host. Result: ``{"plain": psycopg's error, "ssl": pg_stat_ssl.ssl, "described":
describe(conn), "closed": conn.closed}``.
"""

from __future__ import annotations

from typing import Any

import psycopg

import kubealias.psycopg
from integrations.clients._pg import PgTarget, describe, main


def connect_both(lab: PgTarget, host: str) -> dict[str, Any]:
    """psycopg.connect, then kubealias.psycopg.connect, with the same keyword arguments."""
    failed = None
    try:
        psycopg.connect(**lab.kwargs(host))  # the article's call: fails
    except psycopg.OperationalError as exc:
        failed = str(exc)
    conn = kubealias.psycopg.connect(**lab.kwargs(host))  # the same arguments
    assert isinstance(conn, psycopg.Connection)
    assert isinstance(conn, kubealias.psycopg.Connection)
    row = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
    assert row is not None
    return {"plain": failed, "ssl": row[0], "described": describe(conn), "closed": conn.closed}


if __name__ == "__main__":
    main(connect_both)

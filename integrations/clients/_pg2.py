"""What the psycopg2 client modules share: ``describe`` for a psycopg2 connection.

psycopg2's ``connection.info`` has no ``hostaddr`` (psycopg 3's ``PQhostaddr``); the one given
to libpq is in ``info.dsn_parameters``, which is the address used whenever the host list has one
entry (the lab's ``database`` has one address).
"""

from __future__ import annotations

from typing import Any

import psycopg2.extensions
import psycopg2.extras

from integrations.clients._pg import WHO

__all__ = ["describe", "dsn"]


def describe(conn: Any) -> dict[str, Any]:
    """What ``integrations.clients._pg.describe`` gives for psycopg 3, for a psycopg2
    connection (sync, or async once ready): which server, whether TLS, and how."""
    with conn.cursor() as cursor:
        cursor.execute(WHO)
        if conn.async_:
            psycopg2.extras.wait_select(conn)
        row = cursor.fetchone()
    values = list(row.values()) if isinstance(row, dict) else list(row)
    server, ssl, version, addr = values
    return {
        "server": server,
        "ssl": ssl,
        "tls_version": version,
        "server_addr": addr,
        "host": conn.info.host,
        "hostaddr": conn.info.dsn_parameters.get("hostaddr"),
        "port": conn.info.port,
    }


def dsn(params: dict[str, Any]) -> str:
    """``params`` as a libpq ``key=value`` string, as psycopg2 builds it."""
    result: str = psycopg2.extensions.make_dsn("", **params)
    return result

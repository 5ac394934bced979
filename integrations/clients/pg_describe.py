"""Connect to each host in turn and describe where each connection landed.

Args: ``{"hosts": [...], "overrides": {...}, "client": "psycopg" | "kubealias" |
"kubealias-async"}``: ``psycopg.connect``, ``kubealias.psycopg.connect`` or
``kubealias.psycopg.AsyncConnection.connect`` with the lab's keyword arguments for each host
(plus ``overrides``). Result: the list of ``describe(conn)``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg

import kubealias.psycopg
from integrations.clients._pg import PgTarget, adescribe, describe, main


async def _async_describe(params: dict[str, Any]) -> dict[str, Any]:
    conn = await kubealias.psycopg.AsyncConnection.connect(**params)
    async with conn:
        assert isinstance(conn, psycopg.AsyncConnection)
        return await adescribe(conn)


def describe_hosts(lab: PgTarget, args: dict[str, Any]) -> list[dict[str, Any]]:
    """``describe`` of one connection per host, made by the chosen client."""
    out = []
    client = args.get("client", "kubealias")
    for host in args["hosts"]:
        params = lab.kwargs(host, **args.get("overrides", {}))
        if client == "kubealias-async":
            out.append(asyncio.run(_async_describe(params)))
            continue
        connect = psycopg.connect if client == "psycopg" else kubealias.psycopg.connect
        with connect(**params) as conn:
            out.append(describe(conn))
    return out


if __name__ == "__main__":
    main(describe_hosts)

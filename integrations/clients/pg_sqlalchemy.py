"""SQLAlchemy sync and async engines on ``database``, with ``kubealias.sqlalchemy.install``
and without (the control). Result: per case ``{"described", "one"}`` or ``{"error"}``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import create_async_engine

import kubealias.sqlalchemy
from integrations.clients._pg import PgTarget, adescribe, describe, main


def sync(url: str, install: bool) -> dict[str, Any]:
    """One connection of a sync engine."""
    engine = create_engine(url)
    if install:
        kubealias.sqlalchemy.install(engine)
    try:
        with engine.connect() as conn:
            described = describe(conn.connection.dbapi_connection)
            return {"described": described, "one": conn.execute(text("SELECT 1")).scalar()}
    except OperationalError as exc:
        return {"error": str(exc.orig)}
    finally:
        engine.dispose()


async def asynchronous(url: str, install: bool) -> dict[str, Any]:
    """One connection of an async engine."""
    engine = create_async_engine(url)
    if install:
        kubealias.sqlalchemy.install(engine)
    try:
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            described = await adescribe(raw.driver_connection)
            return {"described": described, "one": (await conn.execute(text("SELECT 1"))).scalar()}
    except OperationalError as exc:
        return {"error": str(exc.orig)}
    finally:
        await engine.dispose()


def engines(lab: PgTarget, args: Any) -> dict[str, Any]:
    """Both engines, with and without kubealias."""
    url = lab.url("database").replace("postgresql://", "postgresql+psycopg://")
    return {
        "sync": sync(url, True),
        "sync-control": sync(url, False),
        "async": asyncio.run(asynchronous(url, True)),
        "async-control": asyncio.run(asynchronous(url, False)),
    }


if __name__ == "__main__":
    main(engines)

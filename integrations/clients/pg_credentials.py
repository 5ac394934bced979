"""Connections that take their password from a password file, or fail over across hosts.

Args: a list of cases, each ``{"label", "entry", "host" and "overrides" (the lab's keyword
arguments, ``None`` removing one) or "url", "env" (variables set around the call only)}``.
Entries: ``plain`` (``psycopg.connect``, the control without kubealias), ``connect``
(``kubealias.psycopg.connect``), ``AsyncConnection`` (its ``.connect``), ``sqlalchemy`` (a
sync engine with ``kubealias.sqlalchemy.install``; ``url`` is its URL).

Result: ``{label: {"described": ...} or {"error": message, "kubealias_cause": bool}}``; the
error is the client's own (psycopg's ``OperationalError``; SQLAlchemy's ``.orig``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

import psycopg
from sqlalchemy import create_engine
from sqlalchemy.exc import OperationalError

import kubealias
import kubealias.psycopg
import kubealias.sqlalchemy
from integrations.clients._pg import PgTarget, adescribe, describe, main


@contextlib.contextmanager
def environment(env: Mapping[str, str]) -> Iterator[None]:
    """``env`` in ``os.environ`` for the duration (libpq and kubealias read it at connect)."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


async def _async_connect(params: dict[str, Any]) -> dict[str, Any]:
    async with await kubealias.psycopg.AsyncConnection.connect(**params) as conn:
        return await adescribe(conn)


def _sqlalchemy(url: str) -> dict[str, Any]:
    engine = kubealias.sqlalchemy.install(create_engine(url))
    try:
        with engine.connect() as conn:
            return describe(conn.connection.dbapi_connection)
    finally:
        engine.dispose()


def _error(exc: BaseException) -> dict[str, Any]:
    return {
        "error": str(exc),
        "kubealias_cause": isinstance(exc.__cause__, kubealias.KubeAliasError),
    }


def attempt(lab: PgTarget, case: dict[str, Any]) -> dict[str, Any]:
    """One case: how it connected, or the client's error."""
    entry = case["entry"]
    params = lab.kwargs(case.get("host", "database"), **case.get("overrides", {}))
    try:
        with environment(case.get("env", {})):
            if entry == "sqlalchemy":
                return {"described": _sqlalchemy(case["url"])}
            if entry == "AsyncConnection":
                return {"described": asyncio.run(_async_connect(params))}
            connect = psycopg.connect if entry == "plain" else kubealias.psycopg.connect
            with connect(**params) as conn:
                return {"described": describe(conn)}
    except OperationalError as exc:  # SQLAlchemy's wrapper: psycopg's error is .orig
        return _error(exc.orig if exc.orig is not None else exc)
    except psycopg.OperationalError as exc:
        return _error(exc)


def run(lab: PgTarget, cases: list[dict[str, Any]]) -> dict[str, Any]:
    """Every case, by label."""
    return {case["label"]: attempt(lab, case) for case in cases}


if __name__ == "__main__":
    main(run)

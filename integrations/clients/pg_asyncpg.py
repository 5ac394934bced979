"""asyncpg inside the pod: plain ``asyncpg`` and ``kubealias.asyncpg`` with the same arguments.

Args: ``{"cases": [[label, case], ...]}`` where ``case`` is

* ``client``: ``"plain"`` (:func:`asyncpg.connect`), ``"kubealias"``
  (:func:`kubealias.asyncpg.connect`) or ``"sqlalchemy"`` (a ``postgresql+asyncpg`` engine
  with :func:`kubealias.sqlalchemy.install`);
* ``host``: the host (default ``database``);
* ``ssl``: ``"context"`` (an ``SSLContext`` trusting the lab CA), ``"wrong-ca"`` (one trusting
  another CA), or an sslmode string, given with ``sslrootcert`` = the lab CA in the DSN
  (``"verify-full"``, ``"verify-ca"``...).

Result: per label, :func:`describe` of the connection, or ``{"error": type name, "texts":
every str/repr/type of the exception chain, "cause": the __cause__'s type name}``; and
``"logs"``: every log record of the run (for the no-password check).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any
from urllib.parse import quote, urlencode

import asyncpg

import kubealias.asyncpg
from integrations.clients._pg import WHO, PgTarget, capture_logs, exception_texts, main


def dsn(lab: PgTarget, host: str, scheme: str = "postgresql", **query: str) -> str:
    """``postgresql://app:PASSWORD@host:PORT/app?query``."""
    tail = f"?{urlencode(query)}" if query else ""
    return (
        f"{scheme}://{quote(lab.user, safe='')}:{quote(lab.password, safe='')}"
        f"@{host}:{lab.port}/{lab.dbname}{tail}"
    )


def arguments(lab: PgTarget, case: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The DSN and keyword arguments of ``case`` (see the module docstring)."""
    host = case.get("host", "database")
    mode = case.get("ssl", "verify-full")
    kwargs: dict[str, Any] = {"timeout": 10}
    if mode in ("context", "wrong-ca"):
        kwargs["ssl"] = ssl.create_default_context(
            cafile=lab.cafile if mode == "context" else lab.wrong_cafile
        )
        return dsn(lab, host), kwargs
    return dsn(lab, host, sslmode=mode, sslrootcert=lab.cafile), kwargs


async def describe(conn: Any) -> dict[str, Any]:
    """Which server, whether TLS and which version, the server's address."""
    server, on, version, addr = await conn.fetchrow(WHO)
    return {"server": server, "ssl": on, "tls_version": version, "server_addr": addr}


async def one(lab: PgTarget, case: dict[str, Any]) -> dict[str, Any]:
    """Connect as ``case`` says; describe the connection or the failure."""
    url, kwargs = arguments(lab, case)
    client = case.get("client", "kubealias")
    try:
        if client == "sqlalchemy":
            return await through_sqlalchemy(url, kwargs)
        connect = asyncpg.connect if client == "plain" else kubealias.asyncpg.connect
        conn = await connect(url, **kwargs)
        try:
            return await describe(conn)
        finally:
            await conn.close()
    except Exception as exc:
        cause = exc.__cause__
        return {
            "error": type(exc).__name__,
            "texts": exception_texts(exc),
            "cause": None if cause is None else type(cause).__name__,
        }


async def through_sqlalchemy(url: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """A ``postgresql+asyncpg`` engine with :func:`kubealias.sqlalchemy.install`."""
    from sqlalchemy.ext.asyncio import create_async_engine

    import kubealias.sqlalchemy

    # asyncpg reads sslmode/sslrootcert from its DSN, which SQLAlchemy does not pass on:
    # the SSL context goes through connect_args, as SQLAlchemy's documentation shows.
    engine = kubealias.sqlalchemy.install(
        create_async_engine(
            url.replace("postgresql://", "postgresql+asyncpg://", 1).split("?")[0],
            connect_args=kwargs,
        )
    )
    try:
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            return await describe(raw.driver_connection)
    finally:
        await engine.dispose()


async def cases(lab: PgTarget, args: dict[str, Any]) -> dict[str, Any]:
    """Every case of ``args``, in order, and the log records."""
    logs = capture_logs()
    out: dict[str, Any] = {}
    for label, case in args["cases"]:
        out[label] = await one(lab, case)
    out["logs"] = logs
    return out


def run(lab: PgTarget, args: dict[str, Any]) -> dict[str, Any]:
    """The cases, under asyncio."""
    return asyncio.run(cases(lab, args))


if __name__ == "__main__":
    main(run)

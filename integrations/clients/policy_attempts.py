"""One fresh client object per adapter, one request each: what the allowlist lets through.

Args: ``{"https_ca", "https_port", "pg" (psycopg keyword arguments), "clients": [...]}``, the
clients among ``requests``, ``httpx``, ``httpx-async``, ``psycopg``, ``psycopg-async``.
Prints one JSON line per attempt: ``{"client", "server"}`` (the vhost or PostgreSQL instance
reached) or ``{"client", "error", "message", "cause", "cause_name", "cause_chain",
"cause_reason"}`` (the kubealias error behind the client's own).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any

import httpx

import kubealias
import kubealias.httpx
import kubealias.psycopg
import kubealias.requests
from integrations.clients._run import args, emit

WHO = "SELECT (SELECT name FROM whoami)"


def cause(exc: BaseException | None) -> kubealias.KubeAliasError | None:
    """The kubealias error behind ``exc`` (``__cause__``, ``__context__`` or ``reason``)."""
    seen: set[int] = set()
    current: Any = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, kubealias.KubeAliasError):
            return current
        current = current.__cause__ or current.__context__ or getattr(current, "reason", None)
        current = current if isinstance(current, BaseException) else None
    return None


def calls(config: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    """One zero-argument call per client."""
    cafile, pg = config["https_ca"], config["pg"]
    context = ssl.create_default_context(cafile=cafile)
    url = f"https://payment-api:{config['https_port']}/policy"

    def requests_() -> Any:
        with kubealias.requests.Session() as s:
            return s.get(url, verify=cafile, timeout=5).json()["server"]

    def httpx_() -> Any:
        with httpx.Client(transport=kubealias.httpx.HTTPTransport(verify=context)) as c:
            return c.get(url, timeout=5).json()["server"]

    def httpx_async() -> Any:
        async def go() -> Any:
            transport = kubealias.httpx.AsyncHTTPTransport(verify=context)
            async with httpx.AsyncClient(transport=transport) as c:
                return (await c.get(url, timeout=5)).json()["server"]

        return asyncio.run(go())

    def psycopg_() -> Any:
        with kubealias.psycopg.connect(**pg) as conn:
            row = conn.execute(WHO).fetchone()
            return row[0] if row is not None else None

    def psycopg_async() -> Any:
        async def go() -> Any:
            async with await kubealias.psycopg.AsyncConnection.connect(**pg) as conn:
                row = await (await conn.execute(WHO)).fetchone()
                return row[0] if row is not None else None

        return asyncio.run(go())

    return {
        "requests": requests_,
        "httpx": httpx_,
        "httpx-async": httpx_async,
        "psycopg": psycopg_,
        "psycopg-async": psycopg_async,
    }


def attempts(config: dict[str, Any]) -> None:
    """Each client once, its outcome as one JSON line."""
    table = calls(config)
    for name in config["clients"]:
        out: dict[str, Any] = {"client": name}
        try:
            out["server"] = table[name]()
        except Exception as exc:
            c = cause(exc)
            out.update(
                error=type(exc).__name__,
                message=str(exc),
                cause=type(c).__name__ if c is not None else None,
                cause_name=getattr(c, "name", None),
                cause_chain=list(getattr(c, "chain", ())),
                cause_reason=getattr(c, "reason", None),
            )
        emit(out)


if __name__ == "__main__":
    attempts(args())

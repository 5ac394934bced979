"""websockets (asyncio) through ``kubealias.tls_context``.

Args: ``{"port", "cafile", "wrong_cafile", "cases": [{"label", "entry", "host", "ca"}]}``:
``entry`` is ``plain`` (``wss://<host>:<port>/feed`` with a verifying context: the control),
``recipe`` (:func:`connect`, the recipe of docs/clients-tls-context.md) or
``recipe-keep-host`` (the same with ``rewrite_host=False``); ``ca`` is ``lab`` or ``wrong``.
Result: ``{label: the server's message, or {"error", "message", "oserror",
"kubealias_error"}}``.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.parse
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

import kubealias
from integrations.clients._run import main


async def connect(
    url: str, base: ssl.SSLContext, *, rewrite_host: bool = True, **kwargs: Any
) -> ClientConnection:
    """The recipe: resolve the URL's host without blocking the loop, connect to its addresses
    in order with the TLS name as SNI and certificate name, and as Host header unless
    ``rewrite_host=False`` (as kubealias's HTTP adapters do)."""
    parts = urllib.parse.urlsplit(url)
    r = await kubealias.aresolve(parts.hostname or "")
    if not r.addresses:  # a name kubealias passes through: websockets as usual
        return await ws_connect(url, ssl=base, **kwargs)
    context = kubealias.tls_context(r, base)
    if rewrite_host:
        url = parts._replace(netloc=f"{r.tls_name}:{parts.port or 443}").geturl()
    last: OSError | None = None
    for address in r.addresses:
        try:  # proxy=None: to this address, not wherever a proxy would resolve the name
            return await ws_connect(url, host=address, ssl=context, proxy=None, **kwargs)
        except OSError as exc:  # refused, unreachable, timed out, TLS failure: next address
            last = exc
    assert last is not None
    raise last


async def attempt(config: dict[str, Any], case: dict[str, Any]) -> dict[str, Any]:
    """One case: the server's message, or the error."""
    base = ssl.create_default_context(
        cafile=config["cafile" if case["ca"] == "lab" else "wrong_cafile"]
    )
    url = f"wss://{case['host']}:{config['port']}/feed"
    try:
        if case["entry"] == "plain":
            ws = await ws_connect(url, ssl=base, proxy=None, open_timeout=10)
        else:
            rewrite = case["entry"] != "recipe-keep-host"
            ws = await connect(url, base, rewrite_host=rewrite, open_timeout=10)
        async with ws:
            message: dict[str, Any] = json.loads(await ws.recv())
            return message
    except Exception as exc:
        return {
            "error": type(exc).__name__,
            "message": str(exc),
            "oserror": isinstance(exc, OSError),
            "kubealias_error": isinstance(exc, kubealias.KubeAliasError),
        }


def run(config: dict[str, Any]) -> dict[str, Any]:
    async def every() -> dict[str, Any]:
        return {case["label"]: await attempt(config, case) for case in config["cases"]}

    return asyncio.run(every())


if __name__ == "__main__":
    main(run)

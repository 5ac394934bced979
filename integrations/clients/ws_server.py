"""A WebSocket server with TLS (websockets) on one address of the pod, for the
``kubealias.tls_context`` tests.

Args: ``{"name", "address", "port", "certfile", "keyfile"}``. Prints ``{"listening": port}``
once it accepts connections, then answers each connection with one JSON message
``{"server": name, "sni": the client's SNI, "host": its Host header, "path": its path}`` and
closes it. When its stdin closes it stops and prints ``{"connections": [those messages]}``.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

from integrations.clients._run import args, emit


async def _serve(config: dict[str, Any]) -> list[dict[str, Any]]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config["certfile"], config["keyfile"])
    seen: list[dict[str, Any]] = []

    def remember_sni(sslobj: Any, name: str | None, _: ssl.SSLContext) -> None:
        sslobj.kubealias_test_sni = name  # read back by the handler below

    context.sni_callback = remember_sni

    async def answer(ws: ServerConnection) -> None:
        assert ws.request is not None
        message = {
            "server": config["name"],
            "sni": getattr(ws.transport.get_extra_info("ssl_object"), "kubealias_test_sni", None),
            "host": ws.request.headers.get("Host"),
            "path": ws.request.path,
        }
        seen.append(message)
        await ws.send(json.dumps(message))

    loop = asyncio.get_running_loop()
    async with serve(answer, config["address"], config["port"], ssl=context):
        emit({"listening": config["port"]})
        await loop.run_in_executor(None, sys.stdin.read)  # until the test closes stdin
    return seen


if __name__ == "__main__":
    emit({"connections": asyncio.run(_serve(args()))})

"""A long-running process that keeps resolving ``database`` while the test changes the world.

Args: ``{"watch": "switch"}`` or ``{"watch": "outage"}``.

* ``switch``: prints ``{"ready": resolution}``, then resolves every 0.5 s (at most 15 s) until
  ``database`` is no alias: ``{"switched": {"at": time, "r": resolution} | null}``.
* ``outage``: prints ``{"ready": resolution, "at": time}``, waits for a line on stdin (the test
  paused the DNS server), then resolves every 0.5 s, recording each outcome and its duration,
  until an error or 20 s: ``{"events": [...]}``.
"""

from __future__ import annotations

import time
from typing import Any

import kubealias
from integrations.clients._run import emit, main, wait


def switch() -> dict[str, Any]:
    """Resolve until the ExternalName became a ClusterIP."""
    emit({"ready": kubealias.resolve("database").to_dict()})
    start = time.time()
    seen = None
    while time.time() - start < 15:
        r = kubealias.resolve("database")
        if not r.is_alias:
            seen = {"at": time.time(), "r": r.to_dict()}
            break
        time.sleep(0.5)
    return {"switched": seen}


def outage() -> dict[str, Any]:
    """Resolve through a DNS outage until kubealias gives up."""
    emit({"ready": kubealias.resolve("database").to_dict(), "at": time.time()})
    wait()
    events = []
    start = time.monotonic()
    while time.monotonic() - start < 20:
        t0 = time.monotonic()
        event: dict[str, Any]
        try:
            r = kubealias.resolve("database")
            event = {"stale": r.stale, "addresses": list(r.addresses), "tls_name": r.tls_name}
        except kubealias.KubeAliasError as exc:
            event = {
                "error": type(exc).__name__,
                "message": str(exc),
                "is_resolution_error": isinstance(exc, kubealias.ResolutionError),
            }
        event["at"] = time.time()
        event["took"] = time.monotonic() - t0
        events.append(event)
        if "error" in event:
            break
        time.sleep(0.5)
    return {"events": events}


if __name__ == "__main__":
    main(lambda args: switch() if args["watch"] == "switch" else outage())

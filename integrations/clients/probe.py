"""Wait until every (address, port) accepts a TCP connection, or a deadline passes.

``python -m integrations.clients.probe '{"targets": [[addr, port], ...], "timeout": s}'``
prints the targets still refusing (``[]`` when all accept) and exits 1 if any is left.
"""

from __future__ import annotations

import socket
import sys
import time
from typing import Any

from integrations.clients._run import args, emit


def probe(targets: list[tuple[str, int]], timeout: float) -> list[tuple[str, int]]:
    """The targets that did not accept a connection within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    pending = list(targets)
    while pending and time.monotonic() < deadline:
        for target in list(pending):
            try:
                socket.create_connection(target, timeout=0.5).close()
                pending.remove(target)
            except OSError:
                pass
        if pending:
            time.sleep(0.01)
    return pending


if __name__ == "__main__":
    config: dict[str, Any] = args()
    left = probe([(a, int(p)) for a, p in config["targets"]], float(config["timeout"]))
    emit(left)
    sys.exit(1 if left else 0)

"""Open one TCP connection: ``python -m integrations.clients.tcp_connect '[address, port]'``.

Prints ``true`` when it was accepted; a refusal is the traceback of ``ConnectionRefusedError``
on stderr (exit 1), as a client would see it.
"""

from __future__ import annotations

import socket

from integrations.clients._run import main


def connect(target: list[object]) -> bool:
    """Connect to ``target`` (one second at most) and close."""
    address, port = target
    socket.create_connection((str(address), int(str(port))), timeout=1).close()
    return True


if __name__ == "__main__":
    main(connect)

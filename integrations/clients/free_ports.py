"""N distinct TCP ports free on every address of the namespace (bound at once, then released).

``python -m integrations.clients.free_ports N`` prints the list of ports.
"""

from __future__ import annotations

import socket

from integrations.clients._run import main


def free_ports(count: int) -> list[int]:
    """``count`` ports the kernel gave to sockets bound on 0.0.0.0 at the same time."""
    held = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("0.0.0.0", 0))
            held.append(s)
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


if __name__ == "__main__":
    main(lambda count: free_ports(int(count or 1)))

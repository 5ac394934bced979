"""Where a process started by the pod lab runs: what ``database`` resolves to and its resolv.conf.

Prints a line that is not JSON first (the lab reads the last line), then ``{"db", "resolv"}``.
With ``{"fail": true}`` it raises ``ZeroDivisionError`` instead: the lab's error report must
carry the traceback.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from integrations.clients._run import main


def whereami(args: dict[str, Any] | None) -> dict[str, str]:
    """The address of ``database`` and the text of ``/etc/resolv.conf``, as seen here."""
    print("noise")
    if args and args.get("fail"):
        return {"never": str(1 / 0)}
    return {
        "db": socket.gethostbyname("database"),
        "resolv": Path("/etc/resolv.conf").read_text(),
    }


if __name__ == "__main__":
    main(whereami)

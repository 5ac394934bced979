"""Only loopback: a guard for the hostile-DNS and fuzz tests, and what it saw.

``socket.getaddrinfo`` refuses every host name (the machine's resolver is never asked: a name
that reaches it is recorded in :attr:`NetGuard.lookups`) and every address off loopback;
``socket.socket.connect``/``connect_ex`` refuse every address off loopback (recorded in
:attr:`NetGuard.off_loopback`). Every Python client goes through these: requests and urllib3
(``create_connection``), httpx's sync backend, and asyncio's ``getaddrinfo`` and ``sock_connect``
under httpx's async backend. libpq resolves and connects in C: the psycopg tests give it only
loopback addresses, or names that kubealias refuses before libpq is called.

Listener: a TCP socket on a 127.0.0.x address that never accepts by itself; :meth:`Listener.count`
drains its accept queue and counts what reached it (the kernel completes handshakes without
``accept``, so nothing that connected is missed).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from dataclasses import dataclass, field
from typing import Any

import pytest


@dataclass
class NetGuard:
    """What the guard refused while the test ran."""

    lookups: list[str] = field(default_factory=list)
    """Host names given to ``getaddrinfo`` (every one refused with EAI_NONAME)."""
    off_loopback: list[str] = field(default_factory=list)
    """Addresses off loopback asked for or connected to (every one refused)."""

    def reset(self) -> None:
        """Forget what was seen (hypothesis runs many examples in one test)."""
        self.lookups.clear()
        self.off_loopback.clear()


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def install(monkeypatch: pytest.MonkeyPatch) -> NetGuard:
    """Install the guard until ``monkeypatch`` is undone (see the module docstring)."""
    guard = NetGuard()
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None:
            text = host.decode("ascii", "replace") if isinstance(host, bytes) else str(host)
            ip = _ip(text)
            if ip is None:
                guard.lookups.append(text)
                raise socket.gaierror(socket.EAI_NONAME, f"netguard: no lookup of {text!r}")
            if not ip.is_loopback:
                guard.off_loopback.append(text)
                raise socket.gaierror(socket.EAI_NONAME, f"netguard: {text} is off loopback")
        return real_getaddrinfo(host, port, *args, **kwargs)

    def check(address: Any) -> None:
        if isinstance(address, tuple) and address and isinstance(address[0], str):
            ip = _ip(address[0])
            if ip is None or not ip.is_loopback:
                guard.off_loopback.append(address[0])
                raise OSError(errno.ENETUNREACH, f"netguard: {address[0]} is off loopback")

    def connect(self: socket.socket, address: Any) -> None:
        check(address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    return guard


class Listener:
    """A listening TCP socket on ``host`` that records whether anything connected."""

    def __init__(self, host: str) -> None:
        self.host = host
        self._sock = socket.create_server((host, 0), backlog=64)
        self._sock.setblocking(False)
        self.port: int = self._sock.getsockname()[1]
        self.connections = 0

    def count(self) -> int:
        """Accept (and close) every queued connection; return how many arrived in all."""
        while True:
            try:
                conn, _ = self._sock.accept()
            except BlockingIOError:
                return self.connections
            conn.close()
            self.connections += 1

    def close(self) -> None:
        self._sock.close()

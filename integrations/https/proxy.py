"""A small HTTP forward proxy for the HTTPS lab: ``CONNECT`` tunnels and absolute-form requests.

Run inside the pod namespace by :meth:`integrations.https.lab.HttpsLab.start_proxy`::

    python proxy.py --port-file FILE --log FILE [--listen 127.0.0.1] [--port 0]

It resolves every target with :func:`socket.getaddrinfo`, that is with the namespace's resolver
(the pod's ``/etc/resolv.conf``), as a real proxy outside the pod would resolve the external
name. Each request appends one JSON line to the log *before* the proxy connects upstream::

    {"time": 1700000000.1, "event": "request", "method": "CONNECT",
     "target": "api.payments.example.test:8443", "host": "api.payments.example.test",
     "port": 8443, "client": "127.0.0.1:40000"}

followed, once known, by ``"addresses"`` and ``"status"`` (200, or 502 with ``"error"``) in a
second line with ``"event": "result"``. Absolute-form requests (``GET http://host:port/path``)
are forwarded in origin form with ``Connection: close``; the answer is relayed until the server
closes. Standard library only, one thread per client connection, every socket with a timeout.
The chosen port is written to ``--port-file`` (atomically) once the proxy listens.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import socket
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

IO_TIMEOUT = 30.0  # idle seconds before a tunnel or a client connection is dropped
CONNECT_TIMEOUT = 5.0
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    }
)


class _Log:
    """Appends JSON lines to a file, one ``write`` and flush per line, from many threads."""

    def __init__(self, path: str) -> None:
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the proxy
        self._lock = threading.Lock()

    def write(self, entry: dict[str, Any]) -> None:
        line = json.dumps({"time": time.time(), **entry}) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], log: _Log) -> None:
        super().__init__(address, _Handler)
        self.log = log

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that goes away mid-request is not worth a traceback on stderr.
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):
            super().handle_error(request, client_address)


def _split_host_port(authority: str, default_port: int) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``host`` -> (host, port)."""
    if authority.startswith("["):
        host, _, rest = authority[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    host, sep, port = authority.rpartition(":")
    if not sep:
        return authority, default_port
    return host, int(port)


def _relay(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes or nothing moves for IO_TIMEOUT."""
    sockets = [a, b]
    while True:
        readable, _, _ = select.select(sockets, [], [], IO_TIMEOUT)
        if not readable:
            return
        for sock in readable:
            try:
                data = sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            other = b if sock is a else a
            try:
                other.sendall(data)
            except OSError:
                return


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    rbufsize = 0  # unbuffered: no client bytes may hide in a buffer when the tunnel starts
    timeout = IO_TIMEOUT
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _client(self) -> str:
        host, port = self.client_address[:2]
        return f"{host}:{port}"

    def _open(self, host: str, port: int, entry: dict[str, Any]) -> socket.socket | None:
        """Resolve (pod resolver) and connect; log the outcome; None after a 502."""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            self._fail(entry, f"resolve {host}: {exc}")
            return None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        last: OSError | None = None
        for family, kind, proto, _, sockaddr in infos:
            sock = socket.socket(family, kind, proto)
            sock.settimeout(CONNECT_TIMEOUT)
            try:
                sock.connect(sockaddr)
            except OSError as exc:
                sock.close()
                last = exc
                continue
            sock.settimeout(IO_TIMEOUT)
            self.server.log.write(
                {**entry, "event": "result", "addresses": addresses, "status": 200}
            )
            return sock
        self._fail(entry, f"connect {host}:{port} ({', '.join(addresses)}): {last}", addresses)
        return None

    def _fail(self, entry: dict[str, Any], error: str, addresses: list[str] | None = None) -> None:
        self.server.log.write(
            {
                **entry,
                "event": "result",
                "addresses": addresses or [],
                "status": 502,
                "error": error,
            }
        )
        body = (error + "\n").encode()
        self.send_response(502, "Bad Gateway")
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def _log_and_open(self, method: str, host: str, port: int) -> socket.socket | None:
        """Log the request (before connecting: the log shows what was asked even if the
        connection hangs), then connect to the target (None: an error was sent)."""
        entry = {
            "event": "request",
            "method": method,
            "target": self.path,
            "host": host,
            "port": port,
            "client": self._client(),
        }
        self.server.log.write(entry)
        return self._open(host, port, entry)

    def do_CONNECT(self) -> None:
        try:
            host, port = _split_host_port(self.path, 443)
        except ValueError:
            self.send_error(400, "bad CONNECT target")
            return
        upstream = self._log_and_open("CONNECT", host, port)
        if upstream is None:
            return
        with upstream:
            self.send_response(200, "Connection established")
            self.end_headers()
            self.wfile.flush()
            _relay(self.connection, upstream)
        self.close_connection = True

    def _forward(self) -> None:
        url = urlsplit(self.path)
        if url.scheme != "http" or not url.netloc:
            self.send_error(400, "absolute-form http:// URL expected")
            return
        host, port = _split_host_port(url.netloc.rpartition("@")[2], 80)
        upstream = self._log_and_open(self.command, host, port)
        if upstream is None:
            return
        path = url.path or "/"
        if url.query:
            path += "?" + url.query
        lines = [f"{self.command} {path} HTTP/1.1"]
        lines += [f"{k}: {v}" for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP]
        lines.append("Connection: close")
        with upstream:
            upstream.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            # The body (if any) and the answer: relayed until the server closes.
            _relay(self.connection, upstream)
        self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _forward


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, listen, write the port file, serve until killed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args(argv)
    server = _Server((args.listen, args.port), _Log(args.log))
    tmp = args.port_file + ".tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(f"{server.server_address[1]}\n")
    os.replace(tmp, args.port_file)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever(poll_interval=0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

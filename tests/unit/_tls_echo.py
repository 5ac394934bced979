"""A small HTTPS echo server with SNI virtual hosts, and a CONNECT proxy, both on loopback.

:class:`TLSEchoServer` behaves like the nginx of ``integrations/https`` in miniature: a known SNI
gets its own certificate, an unknown one gets a CDN-style default certificate and ``421``; no SNI
(an IP literal in the URL) gets the default certificate, which is also valid for 127.0.0.1, and
``200``. Every answer is JSON naming the SNI and the ``Host`` header it saw and the id of the
TLS connection (one id per handshake), so tests can count handshakes and prove reuse. HTTP/1.1
keep-alive. ``/redirect?to=URL`` answers ``302`` to ``URL`` (with the same JSON body).

:class:`ConnectProxy` records each ``CONNECT host:port`` and tunnels it to a loopback address.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import socketserver
import ssl
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trustme

__all__ = ["ConnectProxy", "TLSEchoServer"]

DEFAULT_NAMES = ("127.0.0.1", "*.cdn.invalid")
_IO_TIMEOUT = 10.0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server: _Server

    def setup(self) -> None:
        raw: socket.socket = self.request
        raw.settimeout(_IO_TIMEOUT)
        # Headers and body leave in two writes: without this, Nagle and the client's delayed
        # ACK add 40 ms to every keep-alive response.
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(raw)
        tls = self.server.context.wrap_socket(raw, server_side=True)  # handshake here
        self.server.track(tls)
        self.request = tls
        self.sni: str | None = getattr(tls, "sni", None)
        self.conn_id = self.server.new_connection(self.sni)
        super().setup()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            # socketserver closes the socket it accepted, which wrap_socket detached: the TLS
            # socket is ours to close.
            self.request.close()

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._answer(self.rfile.read(length))

    def _answer(self, body: bytes = b"") -> None:
        known = self.sni is None or self.sni in self.server.names
        url = urlsplit(self.path)
        echo: dict[str, Any] = {
            "sni": self.sni,
            "host": self.headers.get("Host"),
            "conn": self.conn_id,
            "path": url.path,
            "method": self.command,
            "body": body.decode("latin-1"),
        }
        status, location = 200, None
        if not known:
            status = 421  # Misdirected Request, as nginx's default_server in the lab
        elif url.path == "/redirect":
            status, location = 302, parse_qs(url.query)["to"][0]
        payload = json.dumps(echo).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if location:
            self.send_header("Location", location)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = True

    def __init__(self, context: ssl.SSLContext, names: set[str]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.context = context
        self.names = names
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        self.connections: list[str | None] = []  # SNI of each completed handshake
        self.errors: list[BaseException] = []

    def track(self, sock: socket.socket) -> None:
        with self.lock:
            self.sockets.append(sock)

    def new_connection(self, sni: str | None) -> int:
        with self.lock:
            self.connections.append(sni)
            return len(self.connections)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Failed handshakes are expected (the client refuses a certificate): keep them quiet.
        import sys

        with self.lock:
            self.errors.append(sys.exc_info()[1])  # type: ignore[arg-type]


class TLSEchoServer:
    """The echo server; ``with TLSEchoServer(ca, names) as server: server.port``.

    Args:
        ca: The CA that issues every certificate.
        names: The SNI names served with their own certificate (200).
    """

    def __init__(self, ca: trustme.CA, names: Iterable[str]) -> None:
        self.names = set(names)
        self._contexts = {}
        for name in self.names:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ca.issue_cert(name).configure_cert(context)
            self._contexts[name] = context
        default = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert(*DEFAULT_NAMES).configure_cert(default)
        default.sni_callback = self._on_sni
        self._server = _Server(default, self.names)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def _on_sni(self, sock: Any, name: str | None, _: ssl.SSLContext) -> None:
        sock.sni = name  # read back by the handler once the handshake is done
        context = self._contexts.get(name) if name else None
        if context is not None:
            sock.context = context

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def connections(self) -> list[str | None]:
        """The SNI of each TLS connection accepted so far, in order (index + 1 = its id)."""
        with self._server.lock:
            return list(self._server.connections)

    def __enter__(self) -> TLSEchoServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        with self._server.lock:
            sockets = list(self._server.sockets)
        for sock in sockets:  # wake the keep-alive readers so that their threads end
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)
        self._server.server_close()  # joins the handler threads
        self._thread.join()
        for sock in sockets:
            sock.close()


class ConnectProxy:
    """An HTTP CONNECT proxy that records each target and tunnels it to ``address``."""

    def __init__(self, address: str = "127.0.0.1") -> None:
        self.targets: list[str] = []
        self._address = address
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def __enter__(self) -> ConnectProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for thread in self._threads:
            thread.join()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            thread = threading.Thread(target=self._tunnel, args=(client,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _tunnel(self, client: socket.socket) -> None:
        with client:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
            self.targets.append(target)
            if method != "CONNECT":
                client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            port = int(target.rsplit(":", 1)[1])
            with socket.create_connection((self._address, port)) as upstream:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                self._pipe(client, upstream)

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        while not self._stop.is_set():
            ready, _, _ = select.select([a, b], [], [], 0.05)
            for sock in ready:
                data = sock.recv(65536)
                if not data:
                    return
                peers[sock].sendall(data)

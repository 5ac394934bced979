"""A TLS test server on 127.0.0.1 with SNI virtual hosts, for tests of TLS clients.

:class:`TLSServer` stands in for the external server behind an alias (an RDS instance, a payment
API behind a CDN): each name it serves has its own certificate, chosen by the SNI the client
sends, and any other SNI (or none) gets a default certificate that names none of them, as a CDN
or a shared load balancer answers. The certificates come from a throwaway CA (trustme, installed
with ``pip install 'kubealias[demo]'``); :attr:`TLSServer.cafile` and
:meth:`TLSServer.client_context` hand it to the client under test. The server records what each
connection saw (SNI, peer, every HTTP request with its ``Host`` header), so a test can assert that
the client verified and asked for the right name::

    import socket
    import ssl

    from kubealias.testing import TLSServer

    with TLSServer(["mydb.example.test"]) as server:
        # What a client does through kubealias: connect to the address, verify the external name.
        context = server.client_context()
        with (
            socket.create_connection(("127.0.0.1", server.port)) as sock,
            context.wrap_socket(sock, server_hostname="mydb.example.test") as tls,
        ):
            print(tls.recv(100).decode(), end="")  # hello, verified client of mydb.example.test
        # What an unchanged client does: the alias name as SNI meets the default certificate.
        try:
            with socket.create_connection(("127.0.0.1", server.port)) as sock:
                context.wrap_socket(sock, server_hostname="database")
        except ssl.SSLCertVerificationError as exc:
            print(exc.verify_message)  # Hostname mismatch, certificate is not valid for 'database'.
        assert [c.sni for c in server.connections] == ["mydb.example.test"]

It speaks HTTP/1.1 with keep-alive to a client that offers the ALPN protocol ``http/1.1``
(urllib3, requests, httpx, curl and ``http.client``'s own contexts do) and says one line,
``hello, verified client of <SNI>``, to any other (a plain TLS socket, libpq), then closes; the
``http`` argument forces either. The HTTP answer comes from ``app``, by default
:func:`vhost_echo`. With ``postgres=True`` it first answers PostgreSQL's SSLRequest with ``S``, so
libpq gets as far as ``sslmode=verify-full`` goes.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import socketserver
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import trustme

__all__ = ["DEFAULT_NAMES", "TLSConnection", "TLSReply", "TLSRequest", "TLSServer", "vhost_echo"]

#: The names of the default certificate: 127.0.0.1 (a client that sends no SNI) and a CDN-style
#: wildcard that no alias name matches.
DEFAULT_NAMES = ("127.0.0.1", "*.cdn.invalid")

_HANDSHAKE_TIMEOUT = 5.0
_IO_TIMEOUT = 30.0  # idle seconds before the server drops a keep-alive connection
_JOIN_TIMEOUT = 2.0  # seconds close() waits for each connection thread


@dataclass(frozen=True)
class TLSRequest:
    """One HTTP request as the server received it.

    Attributes:
        connection: The number of the TLS connection it came on (1 for the first handshake).
        number: Its place on that connection (1, 2, ... with keep-alive).
        sni: The server name the client sent in the handshake; ``None`` if it sent none.
        vhost: The virtual host the SNI selected (lowercase); ``None`` for the default
            certificate.
        peer: The client's ``(address, port)``.
        method: ``GET``, ``POST``, ...
        target: The request target as sent: path and query.
        host: The ``Host`` header as sent (with its port, if any); ``None`` if absent.
        headers: Every header as ``(name, value)``, in the order sent.
        body: The request body (read by ``Content-Length``).
    """

    connection: int
    number: int
    sni: str | None
    vhost: str | None
    peer: tuple[str, int]
    method: str
    target: str
    host: str | None
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True)
class TLSConnection:
    """One completed TLS handshake and what came over it.

    Attributes:
        number: 1 for the first handshake the server completed, then 2, ...
        sni: The server name the client sent; ``None`` if it sent none.
        vhost: The virtual host the SNI selected (lowercase); ``None`` for the default
            certificate.
        peer: The client's ``(address, port)``.
        alpn: The ALPN protocol agreed (``"http/1.1"``), or ``None``.
        requests: The HTTP requests received on it so far.
    """

    number: int
    sni: str | None
    vhost: str | None
    peer: tuple[str, int]
    alpn: str | None
    requests: tuple[TLSRequest, ...] = ()


@dataclass(frozen=True)
class TLSReply:
    """The answer of an ``app`` to one :class:`TLSRequest`.

    ``Content-Length`` is added unless given; a ``HEAD`` request gets the headers only.

    Attributes:
        status: The HTTP status code.
        body: The body.
        headers: Extra headers as ``(name, value)``.
    """

    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(
        cls, data: object, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> TLSReply:
        """A JSON reply.

        Args:
            data: Anything :func:`json.dumps` takes.
            status: The HTTP status code.
            headers: Extra headers; ``Content-Type: application/json`` is set.

        Returns:
            The reply.
        """
        extra = tuple((headers or {}).items())
        body = json.dumps(data).encode()
        return cls(status, body, (("Content-Type", "application/json"), *extra))


def vhost_echo(request: TLSRequest) -> TLSReply:
    """The default ``app``: a JSON echo of what the server saw, judged as a virtual host would.

    The status is 200 when the SNI selected a virtual host and the ``Host`` header (without its
    port) names that host, and 421 (Misdirected Request) otherwise, as CDNs and API gateways
    answer a request whose ``Host`` is not a name they serve. The body::

        {"sni": <SNI or "">, "host": <Host without port, lowercase>, "http_host": <Host as sent>,
         "server": <virtual host or "default">, "method": ..., "path": <target as sent>,
         "connection": <n-th TLS connection>, "requests": <n-th request on it>,
         "body": <request body as text>}

    Args:
        request: What the server received.

    Returns:
        The reply.
    """
    http_host = request.host or ""
    host = _without_port(http_host)
    ok = request.vhost is not None and host == request.vhost
    return TLSReply.json(
        {
            "sni": request.sni or "",
            "host": host,
            "http_host": http_host,
            "server": request.vhost or "default",
            "method": request.method,
            "path": request.target,
            "connection": request.connection,
            "requests": request.number,
            "body": request.body.decode("utf-8", "replace"),
        },
        status=200 if ok else 421,
    )


def _without_port(http_host: str) -> str:
    """``name:port`` or ``[v6]:port`` -> ``name`` / ``v6``, lowercase."""
    host = http_host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def _new_ca() -> trustme.CA:
    # Imported here: kubealias.testing must import without trustme (the cluster_dns plugin is
    # loaded in every pytest session of every project that installs kubealias).
    try:
        import trustme
    except ImportError as exc:
        raise ImportError(
            "kubealias.testing.TLSServer needs trustme: pip install 'kubealias[demo]'"
        ) from exc
    return trustme.CA()


class TLSServer:
    """A TLS server on 127.0.0.1 (a free port) with one certificate per name, chosen by SNI.

    Use it as a context manager: it serves from ``__enter__`` (or :meth:`start`) until
    ``__exit__`` (or :meth:`close`), one thread per connection.

    Args:
        names: The virtual hosts: each gets a certificate for its name (wildcards allowed),
            served to a client whose SNI is that name (case-insensitive).
        ca: The CA that issues the certificates; a new throwaway one by default.
        default_names: The names of the certificate for any other SNI, or none.
        app: Answers each HTTP request; :func:`vhost_echo` by default.
        http: ``True`` speaks HTTP to every client, ``False`` greets every client; ``None``
            (default) speaks HTTP to clients that offer ALPN ``http/1.1`` and greets the others.
        postgres: Answer PostgreSQL's SSLRequest with ``S`` before the handshake.
        require_client_cert: Refuse a client without a certificate issued by ``ca`` (mTLS).

    Raises:
        ImportError: ``ca`` is not given and trustme is not installed.
        OSError: No port could be bound on 127.0.0.1.
    """

    def __init__(
        self,
        names: Iterable[str] = (),
        *,
        ca: trustme.CA | None = None,
        default_names: Iterable[str] = DEFAULT_NAMES,
        app: Callable[[TLSRequest], TLSReply] = vhost_echo,
        http: bool | None = None,
        postgres: bool = False,
        require_client_cert: bool = False,
    ) -> None:
        self.ca: trustme.CA = ca if ca is not None else _new_ca()
        self.app = app
        self.http = http
        self.postgres = postgres
        self._require_client_cert = require_client_cert
        self._vhosts = {name.lower(): self._context([name]) for name in names}
        self._default = self._context(default_names)
        self._default.sni_callback = self._select_vhost
        self._lock = threading.Lock()
        self._connections: list[TLSConnection] = []
        self._open: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._cadir: str | None = None
        self._listener = _Listener(self)
        self._thread = threading.Thread(
            target=self._listener.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="kubealias-tls-server",
            daemon=True,
        )
        self._closed = False

    # --- what tests read --------------------------------------------------------------------

    @property
    def names(self) -> tuple[str, ...]:
        """The virtual hosts, lowercase."""
        return tuple(self._vhosts)

    @property
    def port(self) -> int:
        """The TCP port on 127.0.0.1."""
        return int(self._listener.server_address[1])

    @property
    def cafile(self) -> str:
        """A PEM file of the CA (``verify=`` for requests, ``PGSSLROOTCERT``); removed on close."""
        with self._lock:
            if self._cadir is None:
                self._cadir = tempfile.mkdtemp(prefix="kubealias-tls-")
                self.ca.cert_pem.write_to_path(f"{self._cadir}/ca.pem")
            return f"{self._cadir}/ca.pem"

    @property
    def connections(self) -> list[TLSConnection]:
        """Every completed handshake so far, in order, each with its requests.

        The server records a connection when its side of the handshake ends, which can be just
        after the client's: read it once the client got an answer, or after :meth:`close`.
        """
        with self._lock:
            return list(self._connections)

    @property
    def requests(self) -> list[TLSRequest]:
        """Every HTTP request so far, in the order of their connections."""
        return [request for conn in self.connections for request in conn.requests]

    def url(self, host: str, path: str = "/") -> str:
        """``https://<host>:<port><path>``.

        Args:
            host: The host part, e.g. the alias name the application uses.
            path: Path and query.

        Returns:
            The URL.
        """
        return f"https://{host}:{self.port}{path}"

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts the CA and verifies host names (and nothing else).

        Returns:
            A new ``ssl.SSLContext``.
        """
        context = ssl.create_default_context()
        context.load_verify_locations(cadata=self.ca.cert_pem.bytes().decode())
        return context

    # --- life cycle ---------------------------------------------------------------------------

    def start(self) -> TLSServer:
        """Start serving (the listening socket is bound already).

        Returns:
            The server itself.
        """
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving: close every connection, join the threads, remove :attr:`cafile`."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            self._listener.shutdown()
        with self._lock:
            sockets, threads = list(self._open), list(self._threads)
        for sock in sockets:  # wake the keep-alive readers so that their threads end
            with contextlib.suppress(OSError):  # closed meanwhile
                sock.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(_JOIN_TIMEOUT)
        self._listener.server_close()
        if self._thread.is_alive():
            self._thread.join(_JOIN_TIMEOUT)
        if self._cadir is not None:
            shutil.rmtree(self._cadir, ignore_errors=True)

    def __enter__(self) -> TLSServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- serving ------------------------------------------------------------------------------

    def _context(self, names: Iterable[str]) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ca.issue_cert(*names).configure_cert(context)
        context.set_alpn_protocols(["http/1.1"])
        if self._require_client_cert:
            # On every context: OpenSSL keeps the verify mode of the context a connection
            # starts with when the SNI callback switches to a virtual host's (SSL_set_SSL_CTX).
            context.verify_mode = ssl.CERT_REQUIRED
            self.ca.configure_trust(context)
        return context

    def _select_vhost(
        self, tls: ssl.SSLSocket | ssl.SSLObject, name: str | None, _: ssl.SSLContext
    ) -> None:
        # The server side has no API for the SNI it received: keep it on the socket.
        tls.kubealias_sni = name  # type: ignore[union-attr]
        vhost = self._vhosts.get((name or "").lower())
        if vhost is not None:
            tls.context = vhost

    def _serve(self, raw: socket.socket, peer: tuple[str, int]) -> None:
        raw.settimeout(_HANDSHAKE_TIMEOUT)
        # Headers and body leave in two writes: without this, Nagle and the client's delayed
        # ACK add 40 ms to every keep-alive response.
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tracked = [raw]
        with self._lock:
            self._open.add(raw)
            self._threads.add(threading.current_thread())
        try:
            if self.postgres:  # PostgreSQL's SSLRequest, answered "S" (willing to do TLS)
                raw.recv(8)
                raw.sendall(b"S")
            with self._default.wrap_socket(raw, server_side=True) as tls:
                tracked.append(tls)
                tls.settimeout(_IO_TIMEOUT)
                sni: str | None = getattr(tls, "kubealias_sni", None)
                alpn = tls.selected_alpn_protocol()
                with self._lock:
                    self._open.add(tls)
                    number = len(self._connections) + 1
                    vhost = (sni or "").lower()
                    selected = vhost if vhost in self._vhosts else None
                    self._connections.append(TLSConnection(number, sni, selected, peer, alpn))
                if self.http if self.http is not None else alpn == "http/1.1":
                    _HTTPHandler(tls, peer, self._listener, number)
                else:
                    tls.sendall(f"hello, verified client of {sni or ''}\n".encode())
        except OSError:  # ssl.SSLError included
            pass  # the client refused our certificate (often the point of the test) or left
        finally:
            with self._lock:
                self._open.difference_update(tracked)
                self._threads.discard(threading.current_thread())
            raw.close()

    def _received(
        self, number: int, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> TLSRequest:
        """Record one HTTP request on connection ``number`` and return it."""
        with self._lock:
            conn = self._connections[number - 1]
            host = next((value for name, value in headers if name.lower() == "host"), None)
            request = TLSRequest(
                connection=number,
                number=len(conn.requests) + 1,
                sni=conn.sni,
                vhost=conn.vhost,
                peer=conn.peer,
                method=method,
                target=target,
                host=host,
                headers=tuple(headers),
                body=body,
            )
            self._connections[number - 1] = TLSConnection(
                conn.number, conn.sni, conn.vhost, conn.peer, conn.alpn, (*conn.requests, request)
            )
        return request


class _Listener(socketserver.ThreadingTCPServer):
    """One thread per connection: a keep-alive client must not hold up the others."""

    daemon_threads = True  # TLSServer.close joins them itself, after waking them
    allow_reuse_address = True

    def __init__(self, owner: TLSServer) -> None:
        super().__init__(("127.0.0.1", 0), _Accepted)
        self.owner = owner


class _Accepted(socketserver.BaseRequestHandler):
    server: _Listener

    def handle(self) -> None:
        self.server.owner._serve(self.request, self.client_address)


class _HTTPHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 on one TLS connection, until the client closes it or goes idle."""

    protocol_version = "HTTP/1.1"  # keep-alive
    server_version = "kubealias-testing"
    server: _Listener

    def __init__(self, tls: ssl.SSLSocket, peer: Any, listener: _Listener, number: int) -> None:
        self.number = number
        super().__init__(tls, peer, listener)

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        owner = self.server.owner
        request = owner._received(
            self.number, self.command, self.path, list(self.headers.items()), body
        )
        reply = owner.app(request)
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        if not any(name.lower() == "content-length" for name, _ in reply.headers):
            self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests read TLSConnection records, not a log on stderr

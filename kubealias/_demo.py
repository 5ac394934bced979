"""``kubealias demo``: the article's problem and its fix on this machine, no cluster needed.

:func:`demo_lab` starts the in-process cluster DNS of :mod:`kubealias.testing` with the article's
services and a local TLS server with SNI virtual hosts whose certificates (from a throwaway CA)
name only the external hosts. :func:`run_demo` uses it: a plain verified TLS connection to
``database`` fails on the host name, exactly as ``sslmode=verify-full`` does in a pod; the same
connection through kubealias verifies. The HTTP examples (``examples/requests_app.py``,
``examples/httpx_app.py``) run against the same lab with ``--demo``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import os
import socket
import socketserver
import ssl
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, TextIO

from ._report import print_resolution

if TYPE_CHECKING:
    from ._resolver import Resolver
    from .testing import ClusterDNS

__all__ = ["DemoLab", "TLSServer", "demo_lab", "run_demo"]

EXTERNAL = "mydb.abc123.us-east-1.rds.amazonaws.com"
PROVIDER = "ec2-127-0-0-1.compute-1.amazonaws.com"
PAYMENT_API_EXTERNAL = "api.payments.example.test"
POSTGRES_EXTERNAL = "prod-db.abc123.us-east-1.rds.amazonaws.com"
REDIS = "redis.shared-infra.svc.cluster.local"
#: The TLS names of the article's aliases: each is a virtual host with its own certificate.
VHOSTS = (EXTERNAL, POSTGRES_EXTERNAL, PAYMENT_API_EXTERNAL, REDIS)
#: The certificate any other SNI gets (a CDN-style default, valid for no alias name).
DEFAULT_CERT_NAMES = ("*.cdn.example.test", "127.0.0.1")
#: The lab resolver's pinned targets, as production should set ``KUBEALIAS_ALLOWED_TARGETS``.
ALLOWED_TARGETS = ("*.rds.amazonaws.com", "*.example.test", "*.svc.cluster.local")

_HANDSHAKE_TIMEOUT = 5.0
_IO_TIMEOUT = 30.0  # idle seconds before the server drops a keep-alive connection


class TLSServer:
    """A TLS server on 127.0.0.1 with SNI virtual hosts; it speaks HTTP/1.1 or says hello.

    A client that offers the ALPN protocol ``http/1.1`` (urllib3, httpcore, ``http.client``
    and curl all do) gets HTTP/1.1 with keep-alive: every request is answered with a JSON echo
    of what the server saw::

        {"sni": ..., "host": <Host without port>, "http_host": <Host as sent>, "server": <vhost>,
         "method": ..., "path": ..., "connection": <n-th TLS connection>,
         "requests": <n-th request on it>, "body": <request body as text>}

    with status 200 when the SNI is one of ``vhosts`` and the Host header names it, and 421
    (Misdirected Request, ``"server": "default"``) otherwise, as CDNs and API gateways answer.
    Request bodies need a ``Content-Length``. Any other client (a plain TLS socket, PostgreSQL)
    gets one line, ``hello, verified client of <SNI>``, and the connection is closed.

    Args:
        context: The server context for an SNI that is not in ``vhosts`` (or no SNI). It gets
            the SNI callback that picks the virtual host; every context gets the ALPN list.
        postgres: Answer PostgreSQL's SSLRequest with ``S`` before the handshake.
        vhosts: Server name -> server context with that name's certificate, chosen by SNI.

    Raises:
        OSError: No port could be bound on 127.0.0.1.
    """

    def __init__(
        self,
        context: ssl.SSLContext,
        *,
        postgres: bool = False,
        vhosts: Mapping[str, ssl.SSLContext] | None = None,
    ) -> None:
        self.context = context
        self.postgres = postgres
        self.vhosts = {name.lower(): ctx for name, ctx in (vhosts or {}).items()}
        for ctx in (context, *self.vhosts.values()):
            ctx.set_alpn_protocols(["http/1.1"])
        context.sni_callback = self._select_vhost
        self._server = _Server(self)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="kubealias-demo-tls",
            daemon=True,
        )
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._connections = itertools.count(1)

    def _select_vhost(
        self, tls: ssl.SSLObject | ssl.SSLSocket, name: str | None, _: object
    ) -> None:
        tls._ka_sni = name or ""  # type: ignore[union-attr]  # read back after the handshake
        vhost = self.vhosts.get((name or "").lower())
        if vhost is not None:
            tls.context = vhost

    def _serve_connection(self, raw: socket.socket, client_address: Any) -> None:
        raw.settimeout(_HANDSHAKE_TIMEOUT)
        # Headers and body leave in two writes: without this, Nagle and the client's delayed
        # ACK add 40 ms to every keep-alive response.
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tracked = [raw]
        with self._lock:
            self._open.add(raw)
        try:
            if self.postgres:  # PostgreSQL's SSLRequest, answered "S" (willing to do TLS)
                raw.recv(8)
                raw.sendall(b"S")
            with self.context.wrap_socket(raw, server_side=True) as tls:
                sni: str = getattr(tls, "_ka_sni", "")
                tls.settimeout(_IO_TIMEOUT)
                tracked.append(tls)
                with self._lock:
                    self._open.add(tls)
                    number = next(self._connections)
                if tls.selected_alpn_protocol() == "http/1.1":
                    _EchoHandler(tls, client_address, self._server, sni=sni, number=number)
                else:
                    tls.sendall(f"hello, verified client of {sni}\n".encode())
        except OSError:  # ssl.SSLError included
            pass  # the client refused our certificate (that is the point) or went away
        finally:
            with self._lock:
                self._open.difference_update(tracked)
            raw.close()

    def __enter__(self) -> TLSServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        with self._lock:
            sockets = list(self._open)
        for sock in sockets:  # wake the keep-alive readers so that their threads end
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        # The connection threads are daemons (never joined by socketserver): the shutdowns
        # above end them at their next read.
        self._server.server_close()
        self._thread.join(2)


class _Server(socketserver.ThreadingTCPServer):
    """One thread per connection: keep-alive clients must not hold up the others."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, owner: TLSServer) -> None:
        super().__init__(("127.0.0.1", 0), _Connection)
        self.owner = owner


class _Connection(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        self.server.owner._serve_connection(self.request, self.client_address)


class _EchoHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 on one TLS connection, until the client closes it or goes idle."""

    protocol_version = "HTTP/1.1"  # keep-alive
    server_version = "kubealias-demo"
    server: _Server

    def __init__(
        self, tls: ssl.SSLSocket, address: Any, server: _Server, *, sni: str, number: int
    ) -> None:
        self.sni = sni
        self.number = number
        self.served = 0
        super().__init__(tls, address, server)

    def _echo(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        self.served += 1
        http_host = self.headers.get("Host", "")
        host = _without_port(http_host)
        known = self.sni.lower() in self.server.owner.vhosts
        status = 200 if known and host == self.sni.lower() else 421
        payload = json.dumps(
            {
                "sni": self.sni,
                "host": host,
                "http_host": http_host,
                "server": self.sni.lower() if known else "default",
                "method": self.command,
                "path": self.path,
                "connection": self.number,
                "requests": self.served,
                "body": body.decode("utf-8", "replace"),
            }
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _echo

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _without_port(http_host: str) -> str:
    """``name:port`` or ``[v6]:port`` -> ``name`` / ``v6``, lowercase."""
    host = http_host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


# --- the lab ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoLab:
    """The running demo lab (see :func:`demo_lab`).

    Attributes:
        dns: The in-process cluster DNS, namespace ``production``, with the article's services
            (``database``, ``postgres``, ``payment-api``, ``orders``, ``shared-cache.app-team-a``),
            every address 127.0.0.1.
        resolver: A :class:`kubealias.Resolver` that asks ``dns`` as a pod would, with the
            targets pinned (:data:`ALLOWED_TARGETS`).
        server: The TLS server; one virtual host per external name (:data:`VHOSTS`).
        port: The TLS server's port on 127.0.0.1.
        cafile: The PEM file of the CA that issued every certificate of the lab.
    """

    dns: ClusterDNS
    resolver: Resolver
    server: TLSServer
    port: int
    cafile: str

    def url(self, name: str, path: str = "/") -> str:
        """``https://<name>:<port><path>``, e.g. ``lab.url("payment-api", "/v1/charges")``."""
        return f"https://{name}:{self.port}{path}"

    def env(self) -> dict[str, str]:
        """The ``KUBEALIAS_*`` variables that make a default resolver (in another process) ask
        the lab's DNS with the same pinned targets."""
        return {**self.dns.env(), "KUBEALIAS_ALLOWED_TARGETS": ",".join(ALLOWED_TARGETS)}

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts the lab's CA (and verifies host names)."""
        return ssl.create_default_context(cafile=self.cafile)


@contextlib.contextmanager
def demo_lab() -> Iterator[DemoLab]:
    """Start the cluster DNS and the TLS server of the demo; stop both on exit.

    Yields:
        The :class:`DemoLab`.

    Raises:
        ImportError: trustme is not installed (``pip install 'kubealias[demo]'``).
        OSError: A socket could not be bound on 127.0.0.1.
    """
    try:
        import trustme
    except ImportError as exc:
        raise ImportError("the demo needs trustme: pip install 'kubealias[demo]'") from exc
    from .testing import ClusterDNS

    ca = trustme.CA()

    def server_context(*names: str) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(*names).configure_cert(context)
        return context

    vhosts = {name: server_context(name) for name in VHOSTS}
    with (
        tempfile.TemporaryDirectory(prefix="kubealias-demo-") as tmp,
        ClusterDNS(namespace="production") as dns,
        TLSServer(server_context(*DEFAULT_CERT_NAMES), vhosts=vhosts) as server,
    ):
        cafile = os.path.join(tmp, "ca.pem")
        ca.cert_pem.write_to_path(cafile)
        # The article's services: database is an ExternalName for an RDS-style name that is
        # itself a CNAME to the provider's host (PROVIDER); payment-api an API; shared-cache
        # crosses namespaces.
        dns.article_services(
            database_ip="127.0.0.1",
            postgres_ip="127.0.0.1",
            payment_api_ip="127.0.0.1",
            redis_ip="127.0.0.1",
            orders_ip="127.0.0.1",
        )
        resolver = dns.resolver(allowed_targets=list(ALLOWED_TARGETS))
        yield DemoLab(dns=dns, resolver=resolver, server=server, port=server.port, cafile=cafile)


# --- the demo ---------------------------------------------------------------------------------


def run_demo(out: TextIO) -> int:
    """Run the demo, printing to ``out``; returns 0 when the fix works as it should."""
    if importlib.util.find_spec("trustme") is None:
        print("the demo needs trustme: pip install 'kubealias[demo]'", file=out)
        return 2

    with demo_lab() as lab:
        resolver, port = lab.resolver, lab.port
        client_context = lab.client_context()
        print(
            f"cluster DNS (like CoreDNS) on {lab.dns.nameserver}; pod namespace: production",
            file=out,
        )
        print(
            f"TLS server on 127.0.0.1:{port}, certificates for the external names only "
            f"(SNI virtual hosts: {', '.join(VHOSTS)})\n",
            file=out,
        )
        for name in ("payment-api", "shared-cache.app-team-a", "database"):
            print(f"$ kubealias resolve {name}", file=out)
            print_resolution(resolver.resolve(name), out)
            print(file=out)
        result = resolver.resolve("database")
        address = result.addresses[0]

        print("1. a plain verified TLS client connects to 'database' (verify-full):", file=out)
        plain_error = _talk(address, port, "database", client_context)
        print(f"   FAILS: {plain_error}", file=out)
        print(
            '   (psycopg says: server certificate ... does not match host name "database")\n',
            file=out,
        )

        print(
            "2. the same client through kubealias: same address, TLS name from the chain:", file=out
        )
        fixed = _talk(address, port, result.tls_name, client_context)
        print(f"   connect {address}:{port}, SNI and certificate name {result.tls_name}", file=out)
        print(f"   VERIFIED: the server says {fixed!r}", file=out)
    ok = plain_error.startswith("certificate verify failed") and fixed.startswith("hello")
    print(
        "\nthe application keeps 'database'; verification stays on; only the name checked changes.",
        file=out,
    )
    return 0 if ok else 1


def _talk(address: str, port: int, server_name: str, context: ssl.SSLContext) -> str:
    try:
        with (
            socket.create_connection((address, port), timeout=5) as sock,
            context.wrap_socket(sock, server_hostname=server_name) as tls,
        ):
            return tls.recv(200).decode().strip()
    except ssl.SSLCertVerificationError as exc:
        return f"certificate verify failed: {exc.verify_message}"
    except OSError as exc:
        return f"error: {exc}"

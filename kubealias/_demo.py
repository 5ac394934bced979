"""``kubealias demo``: the article's problem and its fix on this machine, no cluster needed.

Starts the in-process cluster DNS of :mod:`kubealias.testing` with the article's services and a
local TLS server whose certificate (from a throwaway CA) names only the external host. A plain
verified TLS connection to ``database`` fails on the host name, exactly as ``sslmode=verify-full``
does in a pod; the same connection through kubealias verifies.
"""

from __future__ import annotations

import socket
import ssl
import threading
from typing import TextIO

from ._cli import print_resolution

EXTERNAL = "mydb.abc123.us-east-1.rds.amazonaws.com"
PROVIDER = "ec2-127-0-0-1.compute-1.amazonaws.com"


class TLSServer:
    """A TLS server on 127.0.0.1 that answers each connection with the SNI it was sent."""

    def __init__(self, context: ssl.SSLContext, *, postgres: bool = False) -> None:
        self.context = context
        self.postgres = postgres
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="kubealias-demo-tls", daemon=True)
        self._sni: dict[int, str] = {}
        context.sni_callback = self._remember_sni

    def _remember_sni(
        self, tls: ssl.SSLObject | ssl.SSLSocket, name: str | None, _: object
    ) -> None:
        self._sni[id(tls)] = name or ""

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            try:
                if self.postgres:  # PostgreSQL's SSLRequest, answered "S" (willing to do TLS)
                    conn.recv(8)
                    conn.sendall(b"S")
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(
                        f"hello, verified client of {self._sni.pop(id(tls), '')}\n".encode()
                    )
            except (OSError, ssl.SSLError):
                conn.close()  # the client refused our certificate: that is the point

    def __enter__(self) -> TLSServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(2)


def run_demo(out: TextIO) -> int:
    """Run the demo, printing to ``out``; returns 0 when the fix works as it should."""
    try:
        import trustme
    except ImportError:
        print("the demo needs trustme: pip install 'kubealias[demo]'", file=out)
        return 2
    from .testing import ClusterDNS

    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(EXTERNAL).configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)

    with ClusterDNS(namespace="production") as dns, TLSServer(server_context) as server:
        # The article's services: database is an ExternalName for an RDS-style name that is
        # itself a CNAME to the provider's host; payment-api an API; shared-cache crosses
        # namespaces.
        dns.external_name("database", "production", EXTERNAL)
        dns.record(EXTERNAL, "CNAME", PROVIDER, ttl=60)
        dns.record(PROVIDER, "A", "127.0.0.1")
        dns.external_name("payment-api", "production", "api.payments.example.test")
        dns.record("api.payments.example.test", "A", "127.0.0.1")
        dns.external_name("shared-cache", "app-team-a", "redis.shared-infra.svc.cluster.local")
        dns.cluster_ip("redis", "shared-infra", "127.0.0.1")
        # Pin the targets, as production should (KUBEALIAS_ALLOWED_TARGETS).
        resolver = dns.resolver(
            allowed_targets=["*.rds.amazonaws.com", "*.example.test", "*.svc.cluster.local"]
        )

        print(
            f"cluster DNS (like CoreDNS) on {dns.nameserver}; pod namespace: production", file=out
        )
        print(f"TLS server on 127.0.0.1:{server.port}, certificate for {EXTERNAL} only\n", file=out)
        for name in ("payment-api", "shared-cache.app-team-a", "database"):
            print(f"$ kubealias resolve {name}", file=out)
            print_resolution(resolver.resolve(name), out)
            print(file=out)
        result = resolver.resolve("database")
        address = result.addresses[0]

        print("1. a plain verified TLS client connects to 'database' (verify-full):", file=out)
        plain_error = _talk(address, server.port, "database", client_context)
        print(f"   FAILS: {plain_error}", file=out)
        print(
            '   (psycopg says: server certificate ... does not match host name "database")\n',
            file=out,
        )

        print(
            "2. the same client through kubealias: same address, TLS name from the chain:", file=out
        )
        fixed = _talk(address, server.port, result.tls_name, client_context)
        print(
            f"   connect {address}:{server.port}, SNI and certificate name {result.tls_name}",
            file=out,
        )
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

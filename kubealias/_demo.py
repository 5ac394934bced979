"""``kubealias demo``: the article's problem and its fix on this machine, no cluster needed.

:func:`demo_lab` starts the in-process cluster DNS of :mod:`kubealias.testing` with the article's
services and its TLS server (:class:`kubealias.testing.TLSServer`) with SNI virtual hosts whose
certificates (from a throwaway CA) name only the external hosts. :func:`run_demo` uses it: a
plain verified TLS connection to ``database`` fails on the host name, exactly as
``sslmode=verify-full`` does in a pod; the same connection through kubealias verifies. The HTTP
examples (``examples/requests_app.py``, ``examples/httpx_app.py``) build the same kind of lab
from :mod:`kubealias.testing` with ``--demo``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NamedTuple, TextIO

from ._report import print_resolution
from .testing import article

if TYPE_CHECKING:
    from ._resolver import Resolver
    from .testing import ClusterDNS, TLSServer

__all__ = ["DemoLab", "demo_lab", "run_demo"]

# The article's names, from the one table the in-process DNS and the pod emulation read too;
# every address of the demo is 127.0.0.1.
EXTERNAL = article.external_name("database")
PROVIDER = article.provider_host("127.0.0.1")
PAYMENT_API_EXTERNAL = article.external_name("payment-api")
POSTGRES_EXTERNAL = article.external_name("postgres")
REDIS = article.external_name("shared-cache")
#: The TLS names of the article's aliases: each is a virtual host with its own certificate.
VHOSTS = (EXTERNAL, POSTGRES_EXTERNAL, PAYMENT_API_EXTERNAL, REDIS)
#: The certificate any other SNI gets (a CDN-style default, valid for no alias name).
DEFAULT_CERT_NAMES = ("*.cdn.example.test", "127.0.0.1")
#: The lab resolver's pinned targets, as production should set ``KUBEALIAS_ALLOWED_TARGETS``.
ALLOWED_TARGETS = ("*.rds.amazonaws.com", "*.example.test", "*.svc.cluster.local")

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
        server: The TLS server (:class:`kubealias.testing.TLSServer`, answering HTTP with
            :func:`kubealias.testing.vhost_echo`); one virtual host per external name
            (:data:`VHOSTS`).
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
    # Imported here: kubealias.testing is loaded only when the demo runs.
    from .testing import ClusterDNS, TLSServer

    with (
        ClusterDNS(namespace="production") as dns,
        TLSServer(VHOSTS, default_names=DEFAULT_CERT_NAMES) as server,
    ):
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
        yield DemoLab(
            dns=dns, resolver=resolver, server=server, port=server.port, cafile=server.cafile
        )


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
        plain = _talk(address, port, "database", client_context)
        print(f"   FAILS: {plain.said}", file=out)
        print(
            '   (psycopg says: server certificate ... does not match host name "database")\n',
            file=out,
        )

        print(
            "2. the same client through kubealias: same address, TLS name from the chain:", file=out
        )
        fixed = _talk(address, port, result.tls_name, client_context)
        print(f"   connect {address}:{port}, SNI and certificate name {result.tls_name}", file=out)
        print(f"   VERIFIED: the server says {fixed.said!r}", file=out)
    ok = plain.outcome == "refused" and fixed.outcome == "verified"
    print(
        "\nthe application keeps 'database'; verification stays on; only the name checked changes.",
        file=out,
    )
    return 0 if ok else 1


class _Talk(NamedTuple):
    """What one verified TLS connection came to, and what to show for it."""

    outcome: Literal["verified", "refused", "error"]
    said: str


def _talk(address: str, port: int, server_name: str, context: ssl.SSLContext) -> _Talk:
    try:
        with (
            socket.create_connection((address, port), timeout=5) as sock,
            context.wrap_socket(sock, server_hostname=server_name) as tls,
        ):
            return _Talk("verified", tls.recv(200).decode().strip())
    except ssl.SSLCertVerificationError as exc:
        return _Talk("refused", f"certificate verify failed: {exc.verify_message}")
    except OSError as exc:
        return _Talk("error", f"error: {exc}")

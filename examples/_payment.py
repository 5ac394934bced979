"""What the two payment examples (``requests_app.py``, ``httpx_app.py``) share besides their
client: the ``--demo`` lab and what they print about the URL and the server's answer.

Not an example itself: the examples run as scripts (``python examples/requests_app.py``), so this
directory is on ``sys.path`` and they import it as ``_payment``. Copy it along with an example.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import kubealias

DEFAULT_URL = "https://payment-api/v1/charges"


@contextlib.contextmanager
def demo_lab() -> Iterator[tuple[str, str, kubealias.Resolver]]:
    """An in-process cluster DNS and TLS server from ``kubealias.testing`` (needs
    ``pip install 'kubealias[demo]'``): yields the ``payment-api`` URL to post to, the CA file
    that verifies the server, and a resolver that asks that cluster DNS."""
    from kubealias.testing import ClusterDNS, TLSServer

    # payment-api is an ExternalName for the provider's host, served on 127.0.0.1 by a TLS
    # server whose certificate names only that host.
    with ClusterDNS(namespace="production") as dns:
        dns.article_services(payment_api_ip="127.0.0.1")
        # Targets pinned, as KUBEALIAS_ALLOWED_TARGETS should pin them in production (without,
        # kubealias warns once: UnpinnedTargetWarning).
        resolver = dns.resolver(allowed_targets="*.example.test")
        with TLSServer([resolver.resolve("payment-api").tls_name]) as server:
            yield server.url("payment-api", "/v1/charges"), server.cafile, resolver


def explain(url: str, resolver: kubealias.Resolver | None) -> None:
    """Print what kubealias makes of the URL's host (the client does the same on its own)."""
    host = urlsplit(url).hostname or ""
    try:
        r = (resolver or kubealias.get_default_resolver()).resolve(host)
    except kubealias.KubeAliasError as exc:
        print(f"  {host}: {exc}")
        return
    print(f"  {host} -> TLS name {r.tls_name}, addresses {', '.join(r.addresses) or '-'}")


def describe(answer: Any) -> str:
    """What the test server echoes (SNI, Host, connection reuse), or the API's answer as is."""
    if isinstance(answer, dict) and {"sni", "host", "connection", "requests"} <= answer.keys():
        return (
            f"server saw SNI {answer['sni']}, Host {answer['host']}, "
            f"connection {answer['connection']} request {answer['requests']}"
        )
    return f"answer {answer}"

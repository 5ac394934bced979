"""A payment client that keeps the Kubernetes name, with httpx (sync or asyncio).

The same client as ``examples/requests_app.py``: ``payment-api`` is an ExternalName Service for
the provider's API host, whose certificate does not name ``payment-api``. The one change is the
transport: ``kubealias.httpx.HTTPTransport`` (``AsyncHTTPTransport`` for ``AsyncClient``, which
resolves without blocking the event loop) connects to the addresses the cluster DNS gave for
``payment-api`` and verifies the certificate (SNI and ``Host``) for the external name.

Inside a pod (the default resolver reads the pod's ``/etc/resolv.conf``)::

    PAYMENT_API_URL=https://payment-api/v1/charges python examples/httpx_app.py [--async]

The CA bundle is httpx's default unless ``REQUESTS_CA_BUNDLE`` or ``SSL_CERT_FILE`` names one.
Against an in-process cluster DNS and TLS server from ``kubealias.testing`` (as
``kubealias demo`` does; needs ``pip install 'kubealias[demo]'``, no cluster)::

    python examples/httpx_app.py --demo [--async]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import sys
from typing import Any
from urllib.parse import urlsplit

import httpx

import kubealias
from kubealias.httpx import AsyncHTTPTransport, HTTPTransport

DEFAULT_URL = "https://payment-api/v1/charges"


def describe(answer: Any) -> str:
    """What the test server echoes (SNI, Host, connection reuse), or the API's answer as is."""
    if isinstance(answer, dict) and {"sni", "host", "connection", "requests"} <= answer.keys():
        return (
            f"server saw SNI {answer['sni']}, Host {answer['host']}, "
            f"connection {answer['connection']} request {answer['requests']}"
        )
    return f"answer {answer}"


def explain(url: str, resolver: kubealias.Resolver | None) -> None:
    """Print what kubealias makes of the URL's host (the client does the same on its own)."""
    host = urlsplit(url).hostname or ""
    try:
        r = (resolver or kubealias.get_default_resolver()).resolve(host)
    except kubealias.KubeAliasError as exc:
        print(f"  {host}: {exc}")
        return
    print(f"  {host} -> TLS name {r.tls_name}, addresses {', '.join(r.addresses) or '-'}")


def charge_body(n: int) -> dict[str, Any]:
    return {"amount": 100 * n, "currency": "usd"}


def run_sync(
    url: str, verify: ssl.SSLContext | bool, resolver: kubealias.Resolver | None, count: int
) -> int:
    transport = HTTPTransport(verify=verify, resolver=resolver)  # the only kubealias line
    with httpx.Client(transport=transport, timeout=10) as client:
        for n in range(1, count + 1):
            try:
                response = client.post(url, json=charge_body(n))
                response.raise_for_status()
            except httpx.HTTPError as exc:  # an unresolvable alias: httpx.ConnectError
                print(f"charge {n} failed: {type(exc).__name__}: {exc}")
                return 1
            print(f"charge {n}: accepted; {describe(response.json())}")
    return 0


async def run_async(
    url: str, verify: ssl.SSLContext | bool, resolver: kubealias.Resolver | None, count: int
) -> int:
    transport = AsyncHTTPTransport(verify=verify, resolver=resolver)  # the only kubealias line
    async with httpx.AsyncClient(transport=transport, timeout=10) as client:
        for n in range(1, count + 1):
            try:
                response = await client.post(url, json=charge_body(n))
                response.raise_for_status()
            except httpx.HTTPError as exc:
                print(f"charge {n} failed: {type(exc).__name__}: {exc}")
                return 1
            print(f"charge {n}: accepted (asyncio); {describe(response.json())}")
    return 0


def run(
    url: str,
    verify: ssl.SSLContext | bool,
    resolver: kubealias.Resolver | None,
    count: int,
    use_async: bool,
) -> int:
    print(f"POST {url}")
    explain(url, resolver)
    if use_async:
        return asyncio.run(run_async(url, verify, resolver, count))
    return run_sync(url, verify, resolver, count)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", action="store_true", help="run against an in-process lab")
    parser.add_argument("--async", dest="use_async", action="store_true", help="use AsyncClient")
    parser.add_argument("--count", type=int, default=3, help="charges to send (default 3)")
    args = parser.parse_args(argv)
    if args.demo:
        from kubealias.testing import ClusterDNS, TLSServer

        # payment-api is an ExternalName for the provider's host, served on 127.0.0.1 by a TLS
        # server whose certificate names only that host.
        with ClusterDNS(namespace="production") as dns:
            dns.article_services(payment_api_ip="127.0.0.1")
            resolver = dns.resolver()
            with TLSServer([resolver.resolve("payment-api").tls_name]) as server:
                url = server.url("payment-api", "/v1/charges")
                return run(url, server.client_context(), resolver, args.count, args.use_async)
    url = os.environ.get("PAYMENT_API_URL", DEFAULT_URL)
    cafile = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE")
    # httpx 0.28 takes a CA bundle as an SSLContext (verify=<path> is deprecated).
    verify = ssl.create_default_context(cafile=cafile) if cafile else True
    return run(url, verify, None, args.count, args.use_async)


if __name__ == "__main__":
    sys.exit(main())

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

The demo lab and the printing are in ``examples/_payment.py``, shared with the requests example.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import sys
from typing import Any

import httpx
from _payment import DEFAULT_URL, demo_lab, describe, explain

import kubealias
from kubealias.httpx import AsyncHTTPTransport, HTTPTransport


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
        with demo_lab() as (url, lab_ca, resolver):
            context = ssl.create_default_context(cafile=lab_ca)
            return run(url, context, resolver, args.count, args.use_async)
    url = os.environ.get("PAYMENT_API_URL", DEFAULT_URL)
    cafile = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE")
    # httpx 0.28 takes a CA bundle as an SSLContext (verify=<path> is deprecated).
    verify = ssl.create_default_context(cafile=cafile) if cafile else True
    return run(url, verify, None, args.count, args.use_async)


if __name__ == "__main__":
    sys.exit(main())

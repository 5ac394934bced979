"""A payment client that keeps the Kubernetes name, with requests.

In the article, ``payment-api`` is an ExternalName Service: the cluster DNS answers it with a
CNAME to the provider's API host. The application keeps ``https://payment-api/v1/charges``, but
the provider's certificate names only its own host, so a plain ``requests.post`` fails with
``Hostname mismatch, certificate is not valid for 'payment-api'`` (and ``verify=False`` is no
fix: an API gateway answers ``421`` to ``Host: payment-api``). The one change below is the
session: ``kubealias.requests.Session()`` connects to the addresses the cluster DNS gave for
``payment-api`` and verifies the certificate (SNI and ``Host``) for the external name.

Inside a pod (the default resolver reads the pod's ``/etc/resolv.conf``)::

    PAYMENT_API_URL=https://payment-api/v1/charges python examples/requests_app.py

The CA bundle is requests' own default unless ``REQUESTS_CA_BUNDLE`` or ``SSL_CERT_FILE`` names
one. Against an in-process cluster DNS and TLS server from ``kubealias.testing`` (as
``kubealias demo`` does; needs ``pip install 'kubealias[demo]'``, no cluster)::

    python examples/requests_app.py --demo

The demo lab and the printing are in ``examples/_payment.py``, shared with the httpx example.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import requests
from _payment import DEFAULT_URL, demo_lab, describe, explain

import kubealias
from kubealias.requests import Session


def charge(session: requests.Session, url: str, verify: str | bool, cents: int) -> Any:
    """POST one charge; returns the decoded JSON answer.

    Raises:
        requests.RequestException: the API is unreachable (an alias that cannot be resolved
            safely arrives as ``requests.ConnectionError`` with the kubealias message) or
            answered an error status.
    """
    response = session.post(
        url, json={"amount": cents, "currency": "usd"}, verify=verify, timeout=10
    )
    response.raise_for_status()
    return response.json()


def run(url: str, verify: str | bool, resolver: kubealias.Resolver | None, count: int) -> int:
    print(f"POST {url}")
    explain(url, resolver)
    with Session(resolver=resolver) as session:  # the only kubealias line of the client
        for n in range(1, count + 1):
            try:
                answer = charge(session, url, verify, 100 * n)
            except requests.RequestException as exc:
                print(f"charge {n} failed: {type(exc).__name__}: {exc}")
                return 1
            print(f"charge {n}: accepted; {describe(answer)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", action="store_true", help="run against an in-process lab")
    parser.add_argument("--count", type=int, default=3, help="charges to send (default 3)")
    args = parser.parse_args(argv)
    if args.demo:
        with demo_lab() as (url, cafile, resolver):
            return run(url, cafile, resolver, args.count)
    url = os.environ.get("PAYMENT_API_URL", DEFAULT_URL)
    verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE") or True
    return run(url, verify, None, args.count)


if __name__ == "__main__":
    sys.exit(main())

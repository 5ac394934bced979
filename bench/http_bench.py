"""HTTP cost: requests per second against the nginx lab, kubealias against its peers.

The bench starts the pod emulation and the HTTPS lab itself (``integrations/``; needs root) and
runs the client loop **inside** the pod, where ``payment-api`` resolves as in a pod
(``payment-api -> api.payments.example.test -> 127.0.0.20``, nginx with SNI virtual hosts).
Contenders, each making the same verified GET and reading the whole answer:

* ``requests+kubealias``: ``requests.Session`` with ``KubeAliasAdapter``, ``https://payment-api:PORT/``;
* ``requests``: plain ``requests.Session``, ``https://api.payments.example.test:PORT/`` (the
  external name hard-coded: what users fall back to);
* ``requests+toolbelt``: requests-toolbelt's ``HostHeaderSSLAdapter``, ``https://127.0.0.20:PORT/``
  with ``Host: api.payments.example.test``. It only sets urllib3's ``assert_hostname``, so to an IP
  URL it sends no SNI, gets nginx's default certificate and fails verification; the bench gives it
  ``server_hostname`` as well (the usual workaround), the configuration that works;
* ``httpx+kubealias``: ``httpx.Client`` with kubealias's ``HTTPTransport``, ``https://payment-api:PORT/``;
* ``httpx``: plain ``httpx.Client``, ``https://api.payments.example.test:PORT/``.

Two modes: keep-alive (one connection per contender, reused) and a new connection per request
(``Connection: close``: TCP and TLS handshake every time, and for the plain clients a
getaddrinfo through the pod's resolv.conf, ``ndots:5`` search list included).

The contenders run interleaved, A B C D E, then E D C B A, ..., in one process, so that machine
noise, and what one contender's batch leaves in the CPU caches for the next, falls on all of
them alike; each round times a batch of requests per contender and the figure
is the median of the per-round ratios.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from integrations.pod import lab as pod_lab

#: The service the contenders reach, the external name it leads to and that name's address.
ALIAS, EXTERNAL, ADDRESS = "payment-api", pod_lab.PAYMENT_API_TARGET, pod_lab.PAYMENT_API_IP
KEEP_ALIVE = "keep-alive"
NEW_CONNECTION = "new connection per request"
#: (ours, peer, target) per table row of each mode.
COMPARISONS = (
    ("requests+kubealias", "requests", 0.97),
    ("requests+kubealias", "requests+toolbelt", 1.0),
    ("httpx+kubealias", "httpx", 0.97),
)
PEER_LABELS = {
    "requests": "plain requests to the external name",
    "requests+toolbelt": "toolbelt HostHeaderSSLAdapter (IP + Host)",
    "httpx": "plain httpx to the external name",
}


# --- inside the pod ---------------------------------------------------------------------------


def _contenders(config: dict[str, Any], close: bool) -> dict[str, Callable[[], Any]]:
    """One zero-argument function per contender: one verified GET, whole body read."""
    import ssl

    import httpx
    import requests
    from requests_toolbelt.adapters.host_header_ssl import HostHeaderSSLAdapter

    from kubealias.httpx import HTTPTransport
    from kubealias.requests import KubeAliasAdapter

    port, cafile = config["port"], config["cafile"]
    alias_url = f"https://{ALIAS}:{port}/"
    external_url = f"https://{EXTERNAL}:{port}/"
    ip_url = f"https://{ADDRESS}:{port}/"
    headers = {"Connection": "close"} if close else {}

    class ToolbeltWithSNI(HostHeaderSSLAdapter):  # type: ignore[misc]
        def send(self, request: Any, **kwargs: Any) -> Any:
            self.poolmanager.connection_pool_kw["server_hostname"] = request.headers["Host"]
            return super().send(request, **kwargs)

    ours = requests.Session()
    ours.mount("https://", KubeAliasAdapter())
    plain = requests.Session()
    toolbelt = requests.Session()
    toolbelt.mount("https://", ToolbeltWithSNI())
    # One SSL context for both httpx clients (httpx 0.28 deprecates verify=<path>).
    context = ssl.create_default_context(cafile=cafile)
    httpx_ours = httpx.Client(transport=HTTPTransport(verify=context))
    httpx_plain = httpx.Client(verify=context)
    toolbelt_headers = {**headers, "Host": EXTERNAL}

    # verify= on every call: requests lets REQUESTS_CA_BUNDLE override Session.verify.
    def requests_ours() -> Any:
        return ours.get(alias_url, headers=headers, verify=cafile)

    def requests_plain() -> Any:
        return plain.get(external_url, headers=headers, verify=cafile)

    def requests_toolbelt() -> Any:
        return toolbelt.get(ip_url, headers=toolbelt_headers, verify=cafile)

    def httpx_kubealias() -> Any:
        return httpx_ours.get(alias_url, headers=headers)

    def httpx_external() -> Any:
        return httpx_plain.get(external_url, headers=headers)

    return {
        "requests+kubealias": requests_ours,
        "requests": requests_plain,
        "requests+toolbelt": requests_toolbelt,
        "httpx+kubealias": httpx_kubealias,
        "httpx": httpx_external,
    }


def _check(name: str, response: Any, external: str) -> None:
    """The contender reached the external name's virtual host, verified."""
    status = response.status_code
    body = response.json()
    if status != 200 or (body["sni"], body["host"], body["server"]) != (external,) * 3:
        raise RuntimeError(f"{name} got {status}: {body}")


def client_main(config: dict[str, Any]) -> dict[str, Any]:
    """Run every mode's interleaved rounds; per mode and contender, requests/s of each round."""
    from bench._table import alternating

    results: dict[str, Any] = {}
    for mode, per_contender in config["modes"].items():
        fns = _contenders(config, close=mode == NEW_CONNECTION)
        rounds = config["rounds"]
        batch = max(1, per_contender // rounds)
        for name, fn in fns.items():  # warm-up: imports, pools, resolver cache; and a check
            for _ in range(3):
                _check(name, fn(), EXTERNAL)
        rates: dict[str, list[float]] = {name: [] for name in fns}
        order = list(fns.items())
        for n in range(rounds):
            # A B C D E, then E D C B A: each contender follows every other one as often as
            # it precedes it, so what the previous batch left in the CPU caches (the code of
            # another client library, its objects) falls on all of them alike.
            for name, fn in alternating(n, order):
                start = time.perf_counter()
                for _ in range(batch):
                    response = fn()
                    if response.status_code != 200:
                        raise RuntimeError(f"{name}: status {response.status_code}")
                rates[name].append(batch / (time.perf_counter() - start))
        results[mode] = {"batch": batch, "rounds": rounds, "rates": rates}
    return results


# --- outside: the lab, the table --------------------------------------------------------------


def unavailable() -> str | None:
    """Why the bench cannot run here (not root, no namespaces, no BIND, no nginx), or None."""
    from integrations._lab import which
    from integrations.pod import lab as pod_lab

    reason = pod_lab.unavailable_reason()
    if reason is None and which("nginx") is None:
        reason = "nginx not found (Debian package nginx-light)"
    return reason


def measure(*, quick: bool = False) -> dict[str, Any]:
    """Start the pod and the HTTPS lab, run :func:`client_main` inside the pod, return its data.

    Raises:
        integrations.pod.lab.LabUnavailable: the pod emulation or nginx is not available.
        integrations.pod.lab.LabError: the lab or the client failed.
    """
    from bench._pod import run_in_lab
    from integrations.https.lab import HttpsLab

    # Requests per contender in each mode, in this many rounds.
    modes = {KEEP_ALIVE: 2_000, NEW_CONNECTION: 500}
    if quick:
        modes = {KEEP_ALIVE: 300, NEW_CONNECTION: 60}
    return run_in_lab(HttpsLab, "bench.http_bench", {"modes": modes, "rounds": 10 if quick else 40})


def rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The Markdown table rows (3: keep-alive, 4: new connection per request): per mode, each
    comparison's median of per-round ratios."""
    from bench._table import row

    out = []
    for mode, result in data.items():
        rates = result["rates"]
        n = result["batch"] * result["rounds"]
        keep_alive = mode == KEEP_ALIVE
        for ours, peer, target in COMPARISONS:
            ratios = [a / b for a, b in zip(rates[ours], rates[peer], strict=True)]
            ratio = statistics.median(ratios)
            out.append(
                row(
                    3 if keep_alive else 4,
                    f"HTTPS GET {mode}, nginx in the pod, {n} requests each, req/s",
                    f"{ours} {statistics.median(rates[ours]):.0f}",
                    f"{PEER_LABELS[peer]} {statistics.median(rates[peer]):.0f}",
                    f"{ratio:.3f}x req/s",
                    f">= {target:g}" if keep_alive else "- (shows the handshake path)",
                    ratio >= target if keep_alive else None,
                )
            )
    return out


if __name__ == "__main__":  # the client, inside the pod: python -m bench.http_bench CONFIG
    from bench._pod import client_entry

    client_entry(client_main, "http")

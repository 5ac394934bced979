"""Every kubealias HTTP adapter inside the pod, one scenario per run.

``Client(kind, **adapter_kwargs)`` wraps ``kubealias.requests.Session``,
``kubealias.urllib3.PoolManager``, ``kubealias.httpx.HTTPTransport`` and ``AsyncHTTPTransport``
(on one event loop that lives as long as the client) behind one blocking ``get(url)`` ->
``{"status", "body"}`` or ``{"error", "message", "cause", "cause_message"}``.

Args: ``{"scenario": name, ...}``, the scenarios being the functions of :data:`SCENARIOS`
(their docstrings say what they take and return).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx

import kubealias
import kubealias.httpx
import kubealias.requests
import kubealias.urllib3
from integrations.clients._http import HttpTarget, main
from integrations.clients._run import emit

PAYMENT_API = "payment-api"
SECOND_API = "second-api"


def _cause(exc: BaseException) -> BaseException | None:
    """The kubealias error behind the client's own error (urllib3 wraps it in a reason)."""
    seen: Any = exc
    while seen is not None and not isinstance(seen, kubealias.KubeAliasError):
        seen = seen.__cause__ or getattr(seen, "reason", None)
    return seen if isinstance(seen, BaseException) else None


class Client:
    """One adapter's client object, used one blocking request at a time."""

    def __init__(self, lab: HttpTarget, kind: str, **kwargs: Any) -> None:
        self.lab = lab
        self.kind = kind
        # httpx 0.28 deprecates verify=<path>: an SSLContext, as its documentation shows.
        context = ssl.create_default_context(cafile=lab.cafile)
        self.client: Any
        if kind == "requests":
            self.client = kubealias.requests.Session(**kwargs)
        elif kind == "urllib3":
            self.client = kubealias.urllib3.PoolManager(ca_certs=lab.cafile, **kwargs)
        elif kind == "httpx":
            transport = kubealias.httpx.HTTPTransport(verify=context, **kwargs)
            self.client = httpx.Client(transport=transport)
        else:
            self.loop = asyncio.new_event_loop()
            async_transport = kubealias.httpx.AsyncHTTPTransport(verify=context, **kwargs)
            self.client = httpx.AsyncClient(transport=async_transport)

    def _get(self, u: str) -> tuple[int, Any]:
        if self.kind == "requests":
            # verify= per request: requests lets REQUESTS_CA_BUNDLE override session.verify.
            r = self.client.get(u, verify=self.lab.cafile, timeout=10)
            return r.status_code, r.json()
        if self.kind == "urllib3":
            response = self.client.request("GET", u, timeout=10)
            return response.status, json.loads(response.data)
        if self.kind == "httpx":
            r = self.client.get(u, timeout=10)
            return r.status_code, r.json()
        r = self.loop.run_until_complete(self.client.get(u, timeout=10))
        return r.status_code, r.json()

    def get(self, u: str) -> dict[str, Any]:
        """One GET; the outcome as data."""
        try:
            status, body = self._get(u)
            return {"status": status, "body": body}
        except Exception as exc:
            cause = _cause(exc)
            return {
                "error": type(exc).__name__,
                "message": str(exc),
                "cause": type(cause).__name__ if cause is not None else None,
                "cause_message": str(cause) if cause is not None else None,
            }

    def close(self) -> None:
        if self.kind == "urllib3":
            self.client.clear()
        elif self.kind == "httpx-async":
            self.loop.run_until_complete(self.client.aclose())
            self.loop.close()
        else:
            self.client.close()


def keep_alive(lab: HttpTarget, args: dict[str, Any]) -> list[dict[str, Any]]:
    """``n`` requests to ``payment-api`` (``/r/<i>``) on one client of ``kind``."""
    client = Client(lab, args["kind"])
    results = [client.get(lab.url(PAYMENT_API, f"/r/{i}")) for i in range(args["n"])]
    client.close()
    return results


def alternate(lab: HttpTarget, args: dict[str, Any]) -> list[dict[str, Any]]:
    """``n`` rounds of one request to each alias, on one client of ``kind``."""
    client = Client(lab, args["kind"])
    results = [
        client.get(lab.url(name)) for _ in range(args["n"]) for name in (PAYMENT_API, SECOND_API)
    ]
    client.close()
    return results


def threads(lab: HttpTarget, args: dict[str, Any]) -> dict[str, Any]:
    """``total`` requests from ``threads`` threads on one ``kubealias.requests.Session``,
    alternating the aliases: per request ``[alias, status, sni, host, server, error,
    message]``, and the time it took."""
    count, total = args["threads"], args["total"]
    client = Client(lab, "requests", pool_maxsize=count)
    barrier = threading.Barrier(count)
    outcomes: list[Any] = [None] * total

    def work(first: int) -> None:
        barrier.wait()
        for i in range(first, total, count):
            alias = (PAYMENT_API, SECOND_API)[i % 2]
            r = client.get(lab.url(alias, f"/t/{i}"))
            body = r.get("body") or {}
            outcomes[i] = [
                alias,
                r.get("status"),
                body.get("sni"),
                body.get("host"),
                body.get("server"),
                r.get("error"),
                r.get("message"),
            ]

    t0 = time.monotonic()
    workers = [threading.Thread(target=work, args=(n,)) for n in range(count)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    elapsed = time.monotonic() - t0
    client.close()
    return {"outcomes": outcomes, "elapsed": elapsed}


def switch_loop(lab: HttpTarget, args: dict[str, Any]) -> dict[str, Any]:
    """Every adapter of ``kinds``, one request each per round to ``payment-api``, one JSON line
    per request; ``{"ready": [...]}`` after the first round; then rounds every ``interval``
    seconds until every adapter reached ``cluster_vhost`` for ``settle`` rounds in a row (or
    ``deadline`` seconds): ``{"done": bool}``."""
    clients = {kind: Client(lab, kind) for kind in args["kinds"]}

    def one_round() -> Iterator[dict[str, Any]]:
        for kind, client in clients.items():
            r = client.get(lab.url(PAYMENT_API))
            body = r.get("body") or {}
            line = {
                "kind": kind,
                "at": time.time(),
                "status": r.get("status"),
                "server": body.get("server"),
                "sni": body.get("sni"),
                "host": body.get("host"),
                "server_addr": body.get("server_addr"),
                "error": r.get("message"),
            }
            emit(line)
            yield line

    emit({"ready": list(one_round())})
    start = time.monotonic()
    settled = 0
    while settled < args["settle"] and time.monotonic() - start < args["deadline"]:
        time.sleep(args["interval"])
        lines = list(one_round())
        done = all(line["server"] == args["cluster_vhost"] for line in lines)
        settled = settled + 1 if done else 0
    for client in clients.values():
        client.close()
    return {"done": settled >= args["settle"]}


def failing(lab: HttpTarget, args: dict[str, Any]) -> dict[str, Any]:
    """One request to ``payment-api`` per adapter of ``kinds``, each with a fresh resolver
    (``Resolver()`` reads the environment and resolv.conf as the default one does), so each
    pays its own resolution; per adapter the outcome and ``took`` (seconds)."""
    out = {}
    for kind in args["kinds"]:
        client = Client(lab, kind, resolver=kubealias.Resolver())
        t0 = time.monotonic()
        r = client.get(lab.url(PAYMENT_API))
        r["took"] = time.monotonic() - t0
        client.close()
        out[kind] = r
    return out


def proxied(lab: HttpTarget, args: dict[str, Any]) -> list[dict[str, Any]]:
    """Two requests to ``payment-api`` (``/p/<i>``) on one ``kubealias.requests.Session``."""
    client = Client(lab, "requests")
    return [client.get(lab.url(PAYMENT_API, f"/p/{i}")) for i in range(2)]


SCENARIOS = {
    "keep_alive": keep_alive,
    "alternate": alternate,
    "threads": threads,
    "switch_loop": switch_loop,
    "failing": failing,
    "proxied": proxied,
}


if __name__ == "__main__":
    main(lambda lab, args: SCENARIOS[args["scenario"]](lab, args))

"""A WSGI app for ``gunicorn --preload`` whose import leaves lookups in flight at the fork.

At import (in gunicorn's master, before it forks the workers) threads resolve ``database`` and
``payment-api`` with the default resolver; the test has frozen the DNS server, so those lookups
are still running when the workers are forked, and only the master has the threads that run them.
Each worker then serves:

* ``/ping?hold=S``: ``{"pid", "in_flight_at_import"}`` after ``S`` seconds (the hold lets a test
  reach both workers with concurrent requests);
* ``/resolve?name=N&hold=S``: ``kubealias.resolve(N)`` timed: ``{"pid", "name", "took",
  "tls_name", "addresses"}`` or ``{"pid", "name", "took", "error"}``.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

import kubealias

#: The names resolved at import, in threads of the master.
PRELOADED = ("database", "payment-api")
#: Seconds the import gives those threads to send their queries before gunicorn forks.
HEAD_START = 0.5


def _resolve_quietly(name: str) -> None:
    with contextlib.suppress(kubealias.KubeAliasError):
        kubealias.resolve(name)


def _preload() -> list[str]:
    """Start the lookups and return the names whose lookup is in flight when the import ends
    (read from the resolver's single-flight registry: a private attribute, read here only so
    that the test can check it is not passing vacuously)."""
    for name in PRELOADED:
        threading.Thread(
            target=_resolve_quietly, args=(name,), name=f"preload-{name}", daemon=True
        ).start()
    time.sleep(HEAD_START)
    return sorted(kubealias.get_default_resolver()._flights._flights)


IN_FLIGHT_AT_IMPORT = _preload()


def _hold(query: dict[str, list[str]]) -> None:
    time.sleep(float(query.get("hold", ["0"])[0]))


def _resolve(name: str) -> dict[str, Any]:
    started = time.monotonic()
    out: dict[str, Any] = {"pid": os.getpid(), "name": name}
    try:
        r = kubealias.resolve(name)
        out.update(tls_name=r.tls_name, addresses=list(r.addresses))
    except kubealias.KubeAliasError as exc:
        out["error"] = str(exc)
    out["took"] = time.monotonic() - started
    return out


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The WSGI entry point."""
    query = parse_qs(environ.get("QUERY_STRING", ""))
    path = environ.get("PATH_INFO", "/")
    body: dict[str, Any]
    if path == "/ping":
        body = {"pid": os.getpid(), "in_flight_at_import": IN_FLIGHT_AT_IMPORT}
    elif path == "/resolve":
        body = _resolve(query["name"][0])
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
    _hold(query)
    data = json.dumps(body).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]

"""Talk to the ``gunicorn --preload`` app of ``preload_app.py`` over loopback in the pod.

Args: ``{"port": P, "names": [...], "rounds": R}``. Prints ``{"ready": {"pids", "in_flight"}}``
once both workers answered ``/ping`` (pairs of concurrent requests that each hold a worker for a
moment, so that two sync workers take one each), waits for a line on stdin (the test thawed the
DNS server), then resolves every name ``rounds`` times, two concurrent requests at a time, and
prints ``{"results": [...]}`` (what ``/resolve`` answered, one per request).
"""

from __future__ import annotations

import http.client
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from integrations.clients._run import emit, main, wait

#: Seconds one request may take: longer than a lookup stranded on the master's flight would
#: wait (KUBEALIAS_TIMEOUT in the test), so that the slow answer is measured, not lost.
REQUEST_TIMEOUT = 30.0
HOLD = 0.3


def get(port: int, path: str) -> dict[str, Any]:
    """GET ``path`` on 127.0.0.1:``port`` on a new connection; the JSON body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body: dict[str, Any] = json.loads(response.read())
        return body
    finally:
        conn.close()


def pair(port: int, path: str) -> list[dict[str, Any]]:
    """Two concurrent GETs of ``path``."""
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda _: get(port, path), range(2)))


def ready(port: int) -> dict[str, Any]:
    """Wait until both workers answer; their pids and what the master had in flight."""
    pids: set[int] = set()
    in_flight: list[str] = []
    end = time.monotonic() + 60
    while len(pids) < 2 and time.monotonic() < end:
        try:
            answers = pair(port, f"/ping?hold={HOLD}")
        except OSError:
            time.sleep(0.2)  # gunicorn is not listening yet
            continue
        pids.update(a["pid"] for a in answers)
        in_flight = answers[0]["in_flight_at_import"]
    return {"pids": sorted(pids), "in_flight": in_flight}


def run(args: dict[str, Any]) -> dict[str, Any]:
    port = int(args["port"])
    emit({"ready": ready(port)})
    wait()
    results: list[dict[str, Any]] = []
    for _ in range(int(args.get("rounds", 2))):
        for name in args["names"]:
            results.extend(pair(port, f"/resolve?name={name}&hold={HOLD}"))
    return {"results": results}


if __name__ == "__main__":
    main(run)

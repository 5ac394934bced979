"""A long-running process that connects, waits while the test freezes the DNS, connects again.

Args: ``wait``, seconds to sleep after the go (the cached answer has then expired). Prints
``{"warm": describe}``, waits for a line on stdin, then prints the result: ``connected``
(describe) or ``error``/``texts``, ``elapsed``, ``resolution`` (``resolve("database")``
afterwards) and ``logs``.
"""

from __future__ import annotations

import time
import traceback
from typing import Any

import kubealias
import kubealias.psycopg
from integrations.clients._pg import PgTarget, capture_logs, describe, exception_texts, main
from integrations.clients._run import emit, wait


def stale(lab: PgTarget, wait_seconds: float) -> dict[str, Any]:
    """Warm the cache, wait for the go, connect once the answer has expired."""
    logs = capture_logs()
    with kubealias.psycopg.connect(**lab.kwargs()) as conn:
        emit({"warm": describe(conn)})
    wait()  # the test freezes the pod's DNS server
    time.sleep(wait_seconds)  # the cached answer has expired
    start = time.monotonic()
    out: dict[str, Any] = {}
    try:
        with kubealias.psycopg.connect(**lab.kwargs()) as conn:
            out["connected"] = describe(conn)
    except Exception as exc:
        out.update(error=str(exc), texts=exception_texts(exc) + traceback.format_exception(exc))
    out["elapsed"] = time.monotonic() - start
    out["resolution"] = kubealias.resolve("database").to_dict()
    out["logs"] = list(logs)
    return out


if __name__ == "__main__":
    main(stale)

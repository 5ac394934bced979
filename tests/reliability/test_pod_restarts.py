"""Reliability: nginx and PostgreSQL restarted under load; the clients recover by themselves.

Eight client threads in one process inside the pod (``_load.py``) keep sending through
kubealias to ``payment-api`` (nginx) and ``database`` (the ``external`` PostgreSQL server):
``requests`` and ``httpx`` with keep-alive (one with a new connection per request), the async
``httpx`` transport, a new ``kubealias.psycopg`` connection per query, and two
``psycopg_pool`` pools with ``kubealias.psycopg.Connection``: one that checks each connection on
checkout (``check=ConnectionPool.check_connection``, psycopg_pool's advice for servers that
restart) and one that does not. Mid-run, nginx is restarted (``HttpsLab.restart``: fast
shutdown, which cuts every open connection, then start), and later the PostgreSQL server
(``PgLab.restart_instance``: ``pg_ctl restart -m fast`` semantics). Nothing else happens: no
client is rebuilt, no pool is reopened.

Verified: failures only for requests in flight while the server was away (started between the
restart command and the server accepting again, plus :data:`SLACK`), at most
:data:`MAX_FAILURES_PER_CLIENT` per client per restart; they are connection errors from the
client, never a kubealias error (DNS did not change) and never a certificate error; every client
succeeds again within :data:`RECOVERY` s after the server is back, and nothing fails later. The
pool without ``check`` may hand out each of its (two) broken connections once: those failures
are counted separately and bounded by its size.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from integrations.https.lab import HttpsLab
from integrations.pod import lab as L
from integrations.pod.lab import PodLab
from integrations.postgres.lab import EXTERNAL, PgLab
from tests.reliability import _pod as W
from tests.reliability._pod import brief, by_kind, failures, report, start_load

STEADY = 2.0
SLACK = 0.5
#: A client must succeed again this soon after the server is back. The pools set it: a refill
#: attempt that failed while the server was away is retried after psycopg_pool's first
#: reconnect delay (1 s, with jitter), and a checkout waits for it meanwhile (no error).
RECOVERY = 2.0
POOL_SIZE = 2
#: In flight during a restart: with 20 ms between requests and a server away for well under a
#: second, a client cannot start more than this many requests while it is away.
MAX_FAILURES_PER_CLIENT = 60

HTTP_WORKERS = [W.REQUESTS, W.REQUESTS_NEW_CONN, W.HTTPX, W.HTTPX_ASYNC]
PG_WORKERS = [W.PSYCOPG, W.pool(POOL_SIZE, check=True), W.pool(POOL_SIZE), W.PSYCOPG_ASYNC]
#: The worker index of the pool without ``check``.
UNCHECKED_POOL = len(HTTP_WORKERS) + 2


def _served_right(record: dict[str, Any]) -> bool:
    info = record["info"]
    if "sni" in info:
        return (info["sni"], info["server"]) == (L.PAYMENT_API_TARGET, L.PAYMENT_API_TARGET)
    return (info["server"], info["host"], info["ssl"]) == (EXTERNAL, L.DATABASE_TARGET, True)


def test_server_restarts_only_requests_in_flight_fail(
    request: pytest.FixtureRequest,
    pod: PodLab,
    https_clean: HttpsLab,
    pg_clean: PgLab,
    tmp_path: Path,
) -> None:
    workers = HTTP_WORKERS + PG_WORKERS
    load = start_load(pod, tmp_path, workers, https=https_clean, pg=pg_clean)
    outages: dict[str, tuple[float, float]] = {}
    try:
        time.sleep(STEADY)
        stopped = time.time()
        https_clean.restart()
        outages["nginx"] = (stopped, time.time())
        time.sleep(STEADY)
        stopped = time.time()
        pg_clean.restart_instance(EXTERNAL)
        outages["postgres"] = (stopped, time.time())
        time.sleep(RECOVERY + STEADY)
    finally:
        https_clean.ensure_running()
        pg_clean.ensure_running()
        records = load.end()

    per_restart: dict[str, Any] = {}
    for server, (down, up) in outages.items():
        window = [
            r
            for r in records
            if (r["kind"] in W.HTTP_KINDS) == (server == "nginx") and down - SLACK <= r["t0"] <= up
        ]
        per_restart[server] = {
            "away_s": round(up - down, 3),
            "failures": len(failures(window)),
            "started_while_away": by_kind(window),
        }
    figures = {
        "requests": len(records),
        "failures": len(failures(records)),
        "restarts": per_restart,
        "per_client": by_kind(records),
    }
    report(request, figures)

    late_pool = []
    for r in failures(records):
        # A connection error from the client, not a kubealias one, not a refused certificate.
        assert r["cause"] is None, r
        assert "certificate" not in r["error"]["message"].lower(), r
        server = "nginx" if r["kind"] in W.HTTP_KINDS else "postgres"
        down, up = outages[server]
        in_flight = down - SLACK <= r["t0"] <= up + SLACK or down <= r["t1"] <= up + SLACK
        if not in_flight:
            late_pool.append(r)
    # Only the pool without check fails later: once for each connection broken by the restart,
    # when it hands it out (psycopg_pool then discards it and connects anew).
    assert all(r["w"] == UNCHECKED_POOL for r in late_pool), brief(late_pool)
    assert len(late_pool) <= POOL_SIZE, brief(late_pool)
    for index, spec in enumerate(workers):
        mine = failures(r for r in records if r["w"] == index)
        assert len(mine) <= MAX_FAILURES_PER_CLIENT, (spec, len(mine), brief(mine))

    # Every client recovered on its own, soon after the server was back, and stayed well.
    for index, spec in enumerate(workers):
        server = "nginx" if spec["kind"] in W.HTTP_KINDS else "postgres"
        down, up = outages[server]
        mine = [r for r in records if r["w"] == index]
        late = [r for r in mine if r["t0"] >= up + RECOVERY and not r["ok"]]
        assert late == [], (spec, brief(late))
        ok_after = [r for r in mine if r["ok"] and r["t1"] >= up]
        assert ok_after and ok_after[0]["t1"] <= up + RECOVERY, (spec, brief(ok_after, 1), up)
        assert [r for r in mine if r["t0"] >= up + RECOVERY], spec  # it kept going
    wrong = [r for r in records if r["ok"] and not _served_right(r)]
    assert wrong == [], brief(wrong)

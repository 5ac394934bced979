"""Reliability: with ``KUBEALIAS_ALLOWED_TARGETS`` set, a spoofed CNAME is refused before any
connection is opened.

The spoof (``nsupdate``, as anyone able to write the cluster DNS could) points each service at
**another real server with a valid certificate for the spoofed name**, the dangerous case:
``payment-api`` -> ``api2.payments.example.test`` (nginx's other vhost, same address) and
``database`` -> ``prod-db.abc123.us-east-1.rds.amazonaws.com`` (the ``prod-db`` PostgreSQL
server). Without an allowlist, kubealias verifies against whatever DNS says, so these clients
would connect and verify successfully: the control run shows that they do, which also proves
the spoof took effect and that the servers' logs see such connections.

With ``KUBEALIAS_ALLOWED_TARGETS`` pinning the two genuine external names, every adapter
(``requests``, ``httpx`` sync and async, ``kubealias.psycopg`` sync and async) fails with a
``PolicyError`` naming the input, the chain and the refused name, and no server accepted a TCP
connection meanwhile:

* nginx: its ``$connection`` serial number is one counter shared by all workers and bumped for
  every accepted connection; a probe connection made just before and one just after the
  refused attempts have consecutive numbers (around the control run they are 3 apart: one
  connection per HTTP client);
* PostgreSQL: ``log_connections`` logs every accepted connection (``connection received``,
  before TLS) and no server logged any.

A run with the allowlist and the genuine records shows that the allowlist lets them through.
"""

from __future__ import annotations

from typing import Any

import pytest

from integrations.https.lab import HttpsLab
from integrations.pod import lab as L
from integrations.pod.lab import PodLab
from integrations.postgres import lab as P
from integrations.postgres.lab import PgLab
from tests.reliability._pod import report

ALLOWED = f"{L.PAYMENT_API_TARGET},{L.DATABASE_TARGET}"
CLIENTS = ("requests", "httpx", "httpx-async", "psycopg", "psycopg-async")


def attempts(pod: PodLab, https: HttpsLab, pg: PgLab, allowlist: bool) -> dict[str, Any]:
    """Run ``integrations/clients/policy_attempts.py`` in the pod (a fresh process: nothing
    cached); results by client."""
    config = {
        "https_ca": https.cafile,
        "https_port": https.port,
        "pg": pg.kwargs("database"),
        "clients": list(CLIENTS),
    }
    env = {"KUBEALIAS_ALLOWED_TARGETS": ALLOWED} if allowlist else {}
    with pod.start_module("integrations.clients.policy_attempts", config, env=env) as child:
        lines = [child.read() for _ in CLIENTS]
        assert child.process.wait(60) == 0, child.stderr()
    return {line["client"]: line for line in lines}


def probe_connection(pod: PodLab, https: HttpsLab) -> int:
    """nginx's ``$connection`` for one new connection (to the genuine vhost, by address)."""
    config = {"url": f"https://{L.PAYMENT_API_TARGET}:{https.port}/probe", "cafile": https.cafile}
    # The external name resolves inside the pod (example.test is the pod's zone): glibc only.
    echo = pod.run_module("integrations.clients.https_echo", config, timeout=30)
    return int(echo["connection"])


def pg_connections(pg: PgLab) -> dict[str, int]:
    return {name: len(pg.connections(name)) for name in pg.instances}


def test_spoofed_cname_refused_before_any_connection(
    request: pytest.FixtureRequest, pod: PodLab, https_clean: HttpsLab, pg_clean: PgLab
) -> None:
    # The allowlist lets the genuine answers through.
    genuine = attempts(pod, https_clean, pg_clean, allowlist=True)
    assert {k: v.get("server") for k, v in genuine.items()} == {
        "requests": L.PAYMENT_API_TARGET,
        "httpx": L.PAYMENT_API_TARGET,
        "httpx-async": L.PAYMENT_API_TARGET,
        "psycopg": P.EXTERNAL,
        "psycopg-async": P.EXTERNAL,
    }, genuine

    # The spoof: each alias now points at another real, validly certified server.
    pod.set_cname(L.PAYMENT_API, L.SECOND_API_TARGET)
    pod.set_cname(L.DATABASE, L.POSTGRES_TARGET)

    # Control: without the allowlist kubealias follows it, and the servers see it.
    https_clean.clear_logs()
    pg_clean.clear_logs()
    control_before = probe_connection(pod, https_clean)
    followed = attempts(pod, https_clean, pg_clean, allowlist=False)
    # One new connection per HTTP client: the probes' serial numbers count them.
    assert probe_connection(pod, https_clean) - control_before - 1 == 3
    assert {k: v.get("server") for k, v in followed.items()} == {
        "requests": L.SECOND_API_TARGET,
        "httpx": L.SECOND_API_TARGET,
        "httpx-async": L.SECOND_API_TARGET,
        "psycopg": P.PROD_DB,
        "psycopg-async": P.PROD_DB,
    }, followed
    control_pg = pg_connections(pg_clean)
    assert control_pg[P.PROD_DB] >= 2, control_pg

    # With the allowlist: refused, and no server accepted a connection.
    pg_clean.clear_logs()
    before = probe_connection(pod, https_clean)
    https_clean.clear_logs()
    refused = attempts(pod, https_clean, pg_clean, allowlist=True)
    after = probe_connection(pod, https_clean)
    accepted_by_nginx = after - before - 1
    accepted_by_pg = pg_connections(pg_clean)
    report(
        request,
        {
            "clients": len(refused),
            "refused_with_policy_error": sum(
                r.get("cause") == "PolicyError" for r in refused.values()
            ),
            "nginx_connections_accepted_meanwhile": accepted_by_nginx,
            "pg_connections_accepted_meanwhile": accepted_by_pg,
            "control_without_allowlist": {k: v.get("server") for k, v in followed.items()},
        },
    )
    for client, outcome in refused.items():
        host = "database" if client.startswith("psycopg") else "payment-api"
        spoofed = L.POSTGRES_TARGET if host == "database" else L.SECOND_API_TARGET
        assert outcome.get("cause") == "PolicyError", outcome
        assert outcome["cause_name"] == host, outcome
        assert spoofed in outcome["cause_chain"], outcome
        assert spoofed in outcome["cause_reason"], outcome
        assert "KUBEALIAS_ALLOWED_TARGETS" in outcome["message"], outcome  # the client's error
    assert accepted_by_nginx == 0, (before, after)
    assert [e for e in https_clean.access_log() if e["uri"] != "/probe"] == []
    assert accepted_by_pg == {name: 0 for name in pg_clean.instances}, accepted_by_pg

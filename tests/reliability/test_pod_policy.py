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

import json
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

#: One fresh client object per adapter, one request each; prints one JSON line per attempt.
ATTEMPTS = """
import asyncio, json, ssl, sys
import httpx, kubealias, kubealias.httpx, kubealias.psycopg, kubealias.requests

CONTEXT = ssl.create_default_context(cafile=HTTPS_CA)
URL = f"https://payment-api:{HTTPS_PORT}/policy"
WHO = "SELECT (SELECT name FROM whoami)"

def cause(exc):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, kubealias.KubeAliasError):
            return exc
        exc = exc.__cause__ or exc.__context__ or getattr(exc, "reason", None)
        exc = exc if isinstance(exc, BaseException) else None
    return None

def requests_():
    with kubealias.requests.Session() as s:
        return s.get(URL, verify=HTTPS_CA, timeout=5).json()["server"]

def httpx_():
    with httpx.Client(transport=kubealias.httpx.HTTPTransport(verify=CONTEXT)) as c:
        return c.get(URL, timeout=5).json()["server"]

def httpx_async():
    async def go():
        transport = kubealias.httpx.AsyncHTTPTransport(verify=CONTEXT)
        async with httpx.AsyncClient(transport=transport) as c:
            return (await c.get(URL, timeout=5)).json()["server"]
    return asyncio.run(go())

def psycopg_():
    with kubealias.psycopg.connect(**PG) as conn:
        return conn.execute(WHO).fetchone()[0]

def psycopg_async():
    async def go():
        async with await kubealias.psycopg.AsyncConnection.connect(**PG) as conn:
            return (await (await conn.execute(WHO)).fetchone())[0]
    return asyncio.run(go())

CALLS = {"requests": requests_, "httpx": httpx_, "httpx-async": httpx_async,
         "psycopg": psycopg_, "psycopg-async": psycopg_async}
for name in CLIENTS:
    out = {"client": name}
    try:
        out["server"] = CALLS[name]()
    except Exception as exc:
        c = cause(exc)
        out.update(error=type(exc).__name__, message=str(exc),
                   cause=type(c).__name__ if c is not None else None,
                   cause_name=getattr(c, "name", None), cause_chain=list(getattr(c, "chain", ())),
                   cause_reason=getattr(c, "reason", None))
    print(json.dumps(out), flush=True)
"""


def attempts(pod: PodLab, https: HttpsLab, pg: PgLab, allowlist: bool) -> dict[str, Any]:
    """Run :data:`ATTEMPTS` in the pod (a fresh process: nothing cached); results by client."""
    names = {
        "HTTPS_CA": https.cafile,
        "HTTPS_PORT": https.port,
        "PG": pg.kwargs("database"),
        "CLIENTS": list(CLIENTS),
    }
    code = "".join(f"{k} = {v!r}\n" for k, v in names.items()) + ATTEMPTS
    env = {"KUBEALIAS_ALLOWED_TARGETS": ALLOWED} if allowlist else {}
    result = pod.python(code, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return {line["client"]: line for line in lines}


def probe_connection(pod: PodLab, https: HttpsLab) -> int:
    """nginx's ``$connection`` for one new connection (to the genuine vhost, by address)."""
    code = (
        "import json, ssl, urllib.request\n"
        f"ctx = ssl.create_default_context(cafile={https.cafile!r})\n"
        f"req = urllib.request.Request('https://{L.PAYMENT_API_TARGET}:{https.port}/probe')\n"
        "print(urllib.request.urlopen(req, context=ctx, timeout=5).read().decode())\n"
    )
    # The external name resolves inside the pod (example.test is the pod's zone): glibc only.
    result = pod.python(code, timeout=30)
    assert result.returncode == 0, result.stderr
    return int(json.loads(result.stdout)["connection"])


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

"""End-to-end: every HTTP adapter inside the pod emulation, against nginx with SNI virtual hosts.

Each client runs in a fresh Python process inside the pod namespace (``HttpsLab.run_client`` or
``pod.popen``) with **no** ``KUBEALIAS_*`` variable unless a test sets one: kubealias configures
itself from the pod's ``/etc/resolv.conf`` alone. ``payment-api`` and ``second-api`` are
ExternalNames for ``api.payments.example.test`` and ``api2.payments.example.test``, both at
127.0.0.20, where nginx serves each external name with its own certificate (and answers 421 to
any other SNI or Host). What nginx saw is read twice: from the JSON echo and from its access log
(``$ssl_server_name``, ``$host``, ``$connection``, ``$connection_requests``).

The negative controls (the same clients without kubealias fail) are in ``test_https_lab.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import pytest

from integrations.https import lab as H
from integrations.https.lab import HttpsLab
from integrations.pod import lab as L
from integrations.pod.lab import PodLab

pytestmark = pytest.mark.pod

ADAPTERS = ("requests", "urllib3", "httpx", "httpx-async")
TARGETS = {"payment-api": L.PAYMENT_API_TARGET, "second-api": L.SECOND_API_TARGET}

#: Put before every snippet: ``Client(kind, **adapter_kwargs)`` with one blocking ``get(url)``
#: -> ``{"status", "body"}`` (or ``{"error", "message", "cause", "cause_message"}``), for each
#: adapter. The async transport runs on one event loop that lives as long as the client.
CLIENTS = """
import asyncio, ssl, time
import httpx, kubealias, requests, urllib3
import kubealias.httpx, kubealias.requests, kubealias.urllib3

# httpx 0.28 deprecates verify=<path>: an SSLContext, as its documentation shows.
CONTEXT = ssl.create_default_context(cafile=CAFILE)

def _cause(exc):
    # The kubealias error behind the client's own error (urllib3 wraps it in a reason).
    seen = exc
    while seen is not None and not isinstance(seen, kubealias.KubeAliasError):
        seen = seen.__cause__ or getattr(seen, "reason", None)
    return seen

class Client:
    def __init__(self, kind, **kwargs):
        self.kind = kind
        if kind == "requests":
            self.session = kubealias.requests.Session(**kwargs)
        elif kind == "urllib3":
            self.pool = kubealias.urllib3.PoolManager(ca_certs=CAFILE, **kwargs)
        elif kind == "httpx":
            transport = kubealias.httpx.HTTPTransport(verify=CONTEXT, **kwargs)
            self.client = httpx.Client(transport=transport)
        else:
            self.loop = asyncio.new_event_loop()
            transport = kubealias.httpx.AsyncHTTPTransport(verify=CONTEXT, **kwargs)
            self.client = httpx.AsyncClient(transport=transport)

    def _get(self, u):
        if self.kind == "requests":
            # verify= per request: requests lets REQUESTS_CA_BUNDLE override session.verify.
            r = self.session.get(u, verify=CAFILE, timeout=10)
            return r.status_code, r.json()
        if self.kind == "urllib3":
            r = self.pool.request("GET", u, timeout=10)
            return r.status, json.loads(r.data)
        if self.kind == "httpx":
            r = self.client.get(u, timeout=10)
            return r.status_code, r.json()
        r = self.loop.run_until_complete(self.client.get(u, timeout=10))
        return r.status_code, r.json()

    def get(self, u):
        try:
            status, body = self._get(u)
            return {"status": status, "body": body}
        except Exception as exc:
            cause = _cause(exc)
            return {"error": type(exc).__name__, "message": str(exc),
                    "cause": type(cause).__name__ if cause is not None else None,
                    "cause_message": str(cause) if cause is not None else None}

    def close(self):
        if self.kind == "requests":
            self.session.close()
        elif self.kind == "urllib3":
            self.pool.clear()
        elif self.kind == "httpx":
            self.client.close()
        else:
            self.loop.run_until_complete(self.client.aclose())
            self.loop.close()
"""


def run(lab: HttpsLab, code: str, env: dict[str, str] | None = None, **names: Any) -> Any:
    """``CLIENTS`` + ``code`` inside the pod, with ``names`` as globals of the snippet."""
    assignments = "".join(f"{k} = {v!r}\n" for k, v in names.items())
    return lab.run_client(CLIENTS + assignments + code, env=env, timeout=60)


def assert_verified_for(result: dict[str, Any], alias: str, port: int) -> None:
    """A 200 from the vhost of ``alias``'s external name, with SNI = Host = that name."""
    name = TARGETS[alias]
    assert result.get("status") == 200, result
    body = result["body"]
    assert (body["sni"], body["host"], body["server"]) == (name, name, name), body
    assert body["http_host"] == f"{name}:{port}", body  # the Host header as sent
    assert body["server_addr"] == L.PAYMENT_API_IP, body


def assert_log_matches(lab: HttpsLab, entries: Sequence[dict[str, Any]]) -> None:
    """Every logged request was a 200 whose SNI and Host were its vhost's name, and every
    connection served one name only (a connection verified for one name never served another)."""
    for entry in entries:
        assert entry["status"] == 200, entry
        assert entry["sni"] == entry["host"] == entry["server"], entry
        assert entry["server"] in TARGETS.values(), entry
    names_per_connection: dict[H.ConnectionKey, set[str]] = {}
    for entry in entries:
        key = H.ConnectionKey(entry["pid"], entry["connection"])
        names_per_connection.setdefault(key, set()).add(entry["sni"])
    assert all(len(names) == 1 for names in names_per_connection.values()), names_per_connection


# --------------------------------------------------------------------------------------------
# One alias, one connection
# --------------------------------------------------------------------------------------------

N_REQUESTS = 5

KEEP_ALIVE = """
client = Client(KIND)
results = [client.get(url(PAYMENT_API, "/r/%d" % i)) for i in range(N)]
client.close()
emit(results)
"""


@pytest.mark.parametrize("kind", ADAPTERS)
def test_alias_verifies_and_keeps_its_connection(https_clean: HttpsLab, kind: str) -> None:
    results = run(https_clean, KEEP_ALIVE, KIND=kind, N=N_REQUESTS)
    for result in results:
        assert_verified_for(result, "payment-api", https_clean.port)
    bodies = [r["body"] for r in results]
    assert [b["requests"] for b in bodies] == [str(i) for i in range(1, N_REQUESTS + 1)]
    assert len({b["connection"] for b in bodies}) == 1

    entries = https_clean.access_log(min_entries=N_REQUESTS)
    assert [e["uri"] for e in entries] == [f"/r/{i}" for i in range(N_REQUESTS)]
    assert_log_matches(https_clean, entries)
    assert {e["sni"] for e in entries} == {L.PAYMENT_API_TARGET}
    # One TLS handshake for N requests.
    assert https_clean.handshakes(entries) == 1
    assert list(https_clean.requests_per_connection(entries).values()) == [N_REQUESTS]
    assert https_clean.failed_handshakes() == 0


# --------------------------------------------------------------------------------------------
# Two aliases, one address, two TLS names (httpcore keys pools by scheme/host/port only)
# --------------------------------------------------------------------------------------------

ALTERNATE = """
client = Client(KIND)
results = [client.get(url(name)) for _ in range(N) for name in (PAYMENT_API, SECOND_API)]
client.close()
emit(results)
"""


@pytest.mark.parametrize("kind", ADAPTERS)
def test_two_aliases_on_one_address_are_each_verified_for_their_own_name(
    https_clean: HttpsLab, kind: str
) -> None:
    rounds = 3
    results = run(https_clean, ALTERNATE, KIND=kind, N=rounds)
    expected = ["payment-api", "second-api"] * rounds
    for result, alias in zip(results, expected, strict=True):
        assert_verified_for(result, alias, https_clean.port)
    entries = https_clean.access_log(min_entries=2 * rounds)
    assert [e["sni"] for e in entries] == [TARGETS[a] for a in expected]
    assert_log_matches(https_clean, entries)
    # One connection per name, each reused: two handshakes for six requests.
    assert list(https_clean.requests_per_connection(entries).values()) == [rounds, rounds]


# --------------------------------------------------------------------------------------------
# 32 threads, one requests session
# --------------------------------------------------------------------------------------------

THREADS = """
import threading
client = Client("requests", pool_maxsize=THREADS)
barrier = threading.Barrier(THREADS)
outcomes = [None] * TOTAL

def work(first):
    barrier.wait()
    for i in range(first, TOTAL, THREADS):
        alias = (PAYMENT_API, SECOND_API)[i % 2]
        r = client.get(url(alias, "/t/%d" % i))
        body = r.get("body") or {}
        outcomes[i] = [alias, r.get("status"), body.get("sni"), body.get("host"),
                       body.get("server"), r.get("error"), r.get("message")]

t0 = time.monotonic()
threads = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
elapsed = time.monotonic() - t0
client.close()
emit({"outcomes": outcomes, "elapsed": elapsed})
"""


def test_32_threads_share_one_session(https_clean: HttpsLab) -> None:
    threads, total = 32, 2000
    out = run(https_clean, THREADS, THREADS=threads, TOTAL=total)
    outcomes = out["outcomes"]
    assert len(outcomes) == total and None not in outcomes
    errors = [o for o in outcomes if o[5] is not None]
    assert errors == [], errors[:5]
    wrong = [o for o in outcomes if o[1:5] != [200, TARGETS[o[0]], TARGETS[o[0]], TARGETS[o[0]]]]
    assert wrong == [], wrong[:5]

    entries = https_clean.access_log(min_entries=total, timeout=5)
    assert len(entries) == total
    for entry in entries:
        i = int(entry["uri"].rsplit("/", 1)[1])
        assert entry["sni"] == TARGETS[("payment-api", "second-api")[i % 2]], entry
    assert_log_matches(https_clean, entries)
    # At most one pool of `threads` connections per name: connections are kept and reused.
    assert https_clean.handshakes(entries) <= 2 * threads


# --------------------------------------------------------------------------------------------
# ExternalName -> ClusterIP while a client keeps sending
# --------------------------------------------------------------------------------------------

#: Loops over every adapter, one request each per round, and prints one JSON line per request
#: until every adapter has reached the in-cluster service for SETTLE rounds (or DEADLINE).
SWITCH_LOOP = """
clients = {kind: Client(kind) for kind in KINDS}
def round_():
    for kind, client in clients.items():
        r = client.get(url(PAYMENT_API))
        body = r.get("body") or {}
        line = {"kind": kind, "at": time.time(), "status": r.get("status"),
                "server": body.get("server"), "sni": body.get("sni"), "host": body.get("host"),
                "server_addr": body.get("server_addr"), "error": r.get("message")}
        print(json.dumps(line), flush=True)
        yield line
first = list(round_())
print(json.dumps({"ready": first}), flush=True)
start = time.monotonic()
settled = 0
while settled < SETTLE and time.monotonic() - start < DEADLINE:
    time.sleep(INTERVAL)
    lines = list(round_())
    settled = settled + 1 if all(l["server"] == CLUSTER_VHOST for l in lines) else 0
for client in clients.values():
    client.close()
print(json.dumps({"done": settled >= SETTLE}), flush=True)
"""


def test_externalname_to_clusterip_switch_is_followed_without_restart(
    pod: PodLab, https_clean: HttpsLab
) -> None:
    margin = 1.5
    source = https_clean.client_preamble() + CLIENTS
    source += f"KINDS = {list(ADAPTERS)!r}\nSETTLE = 3\nDEADLINE = 20\nINTERVAL = 0.1\n"
    child = pod.popen(
        [sys.executable, "-c", source + SWITCH_LOOP],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        lines = []
        while True:
            line = child.stdout.readline()
            if not line:
                _, err = child.communicate(timeout=10)
                pytest.fail(f"the client exited before it was ready:\n{err}")
            if line.startswith('{"ready"'):
                break
            lines.append(json.loads(line))
        # The migration: payment-api becomes a ClusterIP service, served by its own vhost.
        pod.set_a(L.PAYMENT_API, H.PAYMENT_API_CLUSTER_IP)
        updated = time.time()
        out, err = child.communicate(timeout=40)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 0, err
    *more, last = [json.loads(line) for line in out.splitlines() if line.strip()]
    lines += more
    assert last == {"done": True}, f"the switch was not followed by every adapter:\n{lines[-8:]}"

    # One client process (and one client object per adapter) throughout: no restart.
    for kind in ADAPTERS:
        mine = [line for line in lines if line["kind"] == kind]
        # Every request succeeded, before, during and after the switch.
        assert all(line["status"] == 200 and line["error"] is None for line in mine), mine
        switched = [line["server"] == H.CLUSTER_VHOST for line in mine]
        first = switched.index(True)
        assert all(switched[first:]), (kind, mine)  # no flapping back
        for line in mine[:first]:
            assert (line["server"], line["sni"]) == (L.PAYMENT_API_TARGET, L.PAYMENT_API_TARGET)
            assert line["server_addr"] == L.PAYMENT_API_IP
        for line in mine[first:]:
            # No alias any more: the name as given, to the ClusterIP, untouched (invariant 3).
            assert (line["sni"], line["host"]) == ("payment-api", "payment-api"), line
            assert line["server_addr"] == H.PAYMENT_API_CLUSTER_IP
        # Followed within the TTL of the service record (plus a request round).
        assert mine[first]["at"] - updated <= L.SERVICE_TTL + margin, (kind, mine[first], updated)
        assert first > 0, mine  # the warm-up round reached the external name


# --------------------------------------------------------------------------------------------
# Resolution failures: the client's own connection error, with the kubealias message
# --------------------------------------------------------------------------------------------

#: One request per adapter, each with a fresh resolver (Resolver() reads the environment and
#: the pod's resolv.conf exactly as the default one does), so each pays its own resolution.
FAILING = """
out = {}
for kind in KINDS:
    client = Client(kind, resolver=kubealias.Resolver())
    t0 = time.monotonic()
    r = client.get(url(PAYMENT_API))
    r["took"] = time.monotonic() - t0
    client.close()
    out[kind] = r
emit(out)
"""

CLIENT_ERRORS = {
    "requests": "ConnectionError",
    "urllib3": "MaxRetryError",
    "httpx": "ConnectError",
    "httpx-async": "ConnectError",
}
DNS_TIMEOUT = 0.5


@pytest.mark.parametrize(
    "failure, kubealias_error, words",
    [
        ("policy", "PolicyError", ["KUBEALIAS_ALLOWED_TARGETS", L.PAYMENT_API_TARGET]),
        ("ip-literal-target", "ChainError", ["127.0.0.99", "IP address literal"]),
        ("dns-hung", "ResolutionError", ["DNS failure: timed out", L.PAYMENT_API]),
        # Refused (ICMP) for the blocking resolver; the asyncio one's unconnected UDP socket
        # never hears it and times out.
        ("dns-down", "ResolutionError", ["DNS failure", L.PAYMENT_API]),
    ],
)
def test_failed_resolution_is_the_clients_connection_error(
    pod: PodLab, https_clean: HttpsLab, failure: str, kubealias_error: str, words: list[str]
) -> None:
    env = {"KUBEALIAS_TIMEOUT": str(DNS_TIMEOUT)}
    if failure == "policy":
        env["KUBEALIAS_ALLOWED_TARGETS"] = "*.example.invalid"
    elif failure == "ip-literal-target":
        pod.set_cname(L.PAYMENT_API, "127.0.0.99")  # what an ExternalName may not be
    elif failure == "dns-hung":
        pod.pause_named("full")
    else:
        pod.stop_named("full")
    results = run(https_clean, FAILING, env, KINDS=list(ADAPTERS))
    for kind, result in results.items():
        assert result.get("error") == CLIENT_ERRORS[kind], (kind, result)
        assert result["cause"] == kubealias_error, (kind, result)
        # The kubealias message, whole, in the client's error: input, chain and reason.
        assert result["cause_message"] in result["message"], (kind, result)
        assert "'payment-api'" in result["message"], (kind, result)
        for word in words:
            assert word in result["message"], (kind, word, result)
        assert result["took"] <= DNS_TIMEOUT + 1.0, (kind, result)  # never a hang
    # Nothing was sent anywhere: no fallback to the unverified name.
    assert https_clean.access_log() == []
    assert https_clean.failed_handshakes() == 0


# --------------------------------------------------------------------------------------------
# HTTPS_PROXY / NO_PROXY
# --------------------------------------------------------------------------------------------

PROXIED = """
client = Client("requests")
emit([client.get(url(PAYMENT_API, "/p/%d" % i)) for i in range(2)])
"""


def test_proxy_is_asked_for_the_tls_name_and_no_proxy_matches_the_alias(
    https_clean: HttpsLab,
) -> None:
    proxy = https_clean.start_proxy()
    port = https_clean.port
    results = run(https_clean, PROXIED, {"HTTPS_PROXY": proxy})
    for result in results:
        assert_verified_for(result, "payment-api", port)
    # The CONNECT names the TLS name (the proxy resolves it), once: the tunnel is reused.
    assert https_clean.proxy_targets() == [f"{L.PAYMENT_API_TARGET}:{port}"]
    resolved = [e for e in https_clean.proxy_log() if e["event"] == "result"]
    assert [(e["status"], e["addresses"]) for e in resolved] == [(200, [L.PAYMENT_API_IP])]
    entries = https_clean.access_log(min_entries=2)
    assert_log_matches(https_clean, entries)
    assert https_clean.handshakes(entries) == 1

    https_clean.clear_logs()
    env = {"HTTPS_PROXY": proxy, "NO_PROXY": "payment-api"}
    for result in run(https_clean, PROXIED, env):
        assert_verified_for(result, "payment-api", port)
    # NO_PROXY matched the name the application used: straight to the origin.
    assert https_clean.proxy_log() == []
    assert_log_matches(https_clean, https_clean.access_log(min_entries=2))

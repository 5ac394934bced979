"""End-to-end: every HTTP adapter inside the pod emulation, against nginx with SNI virtual hosts.

Each client runs in a fresh Python process inside the pod namespace
(``integrations/clients/http_adapters.py``, through ``HttpsLab.run_client`` or ``start_client``)
with **no** ``KUBEALIAS_*`` variable unless a test sets one: kubealias configures
itself from the pod's ``/etc/resolv.conf`` alone. ``payment-api`` and ``second-api`` are
ExternalNames for ``api.payments.example.test`` and ``api2.payments.example.test``, both at
127.0.0.20, where nginx serves each external name with its own certificate (and answers 421 to
any other SNI or Host). What nginx saw is read twice: from the JSON echo and from its access log
(``$ssl_server_name``, ``$host``, ``$connection``, ``$connection_requests``).

The negative controls (the same clients without kubealias fail) are in ``test_https_lab.py``.
"""

from __future__ import annotations

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


def run(lab: HttpsLab, scenario: str, env: dict[str, str] | None = None, **args: Any) -> Any:
    """The ``scenario`` of ``integrations/clients/http_adapters.py`` inside the pod."""
    return lab.run_client("http_adapters", {"scenario": scenario, **args}, env=env, timeout=60)


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


@pytest.mark.parametrize("kind", ADAPTERS)
def test_alias_verifies_and_keeps_its_connection(https_clean: HttpsLab, kind: str) -> None:
    results = run(https_clean, "keep_alive", kind=kind, n=N_REQUESTS)
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


@pytest.mark.parametrize("kind", ADAPTERS)
def test_two_aliases_on_one_address_are_each_verified_for_their_own_name(
    https_clean: HttpsLab, kind: str
) -> None:
    rounds = 3
    results = run(https_clean, "alternate", kind=kind, n=rounds)
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


def test_32_threads_share_one_session(https_clean: HttpsLab) -> None:
    threads, total = 32, 2000
    out = run(https_clean, "threads", threads=threads, total=total)
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


def test_externalname_to_clusterip_switch_is_followed_without_restart(
    pod: PodLab, https_clean: HttpsLab
) -> None:
    margin = 1.5
    args = {
        "scenario": "switch_loop",
        "kinds": list(ADAPTERS),
        "settle": 3,
        "deadline": 20,
        "interval": 0.1,
        "cluster_vhost": H.CLUSTER_VHOST,
    }
    with https_clean.start_client("http_adapters", args) as child:
        lines = []
        while "ready" not in (line := child.read()):
            lines.append(line)
        # The migration: payment-api becomes a ClusterIP service, served by its own vhost.
        pod.set_a(L.PAYMENT_API, H.PAYMENT_API_CLUSTER_IP)
        updated = time.time()
        more = []
        while "done" not in (line := child.read(timeout=40)):
            more.append(line)
        last = line
        assert child.process.wait(10) == 0, child.stderr()
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
        # Refused (ICMP): both resolvers' UDP sockets are connected and hear it.
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
    results = run(https_clean, "failing", env, kinds=list(ADAPTERS))
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


def test_proxy_is_asked_for_the_tls_name_and_no_proxy_matches_the_alias(
    https_clean: HttpsLab,
) -> None:
    proxy = https_clean.start_proxy()
    port = https_clean.port
    results = run(https_clean, "proxied", {"HTTPS_PROXY": proxy})
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
    for result in run(https_clean, "proxied", env):
        assert_verified_for(result, "payment-api", port)
    # NO_PROXY matched the name the application used: straight to the origin.
    assert https_clean.proxy_log() == []
    assert_log_matches(https_clean, https_clean.access_log(min_entries=2))

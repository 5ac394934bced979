"""End-to-end: ``kubealias.resolve`` inside the pod emulation, against real BIND servers.

Every resolution runs in a fresh Python process inside the namespace with **no** ``KUBEALIAS_*``
variable (the lab scrubs them) unless a test sets one, so the library configures itself from the
namespace's ``/etc/resolv.conf`` alone, exactly as in a pod.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import pytest

from integrations._lab import JsonLinesChild
from integrations.pod import lab as L
from integrations.pod.lab import PodLab

pytestmark = pytest.mark.pod

TIMEOUT = 1.0  # KUBEALIAS_TIMEOUT in the outage test
MAX_STALE = 3.0  # KUBEALIAS_MAX_STALE in the outage test


def resolve_in_pod(
    lab: PodLab, names: list[str], env: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """``kubealias.resolve(name).to_dict()`` for each name, in one process inside the pod."""
    result: list[dict[str, Any]] = lab.run_module(
        "integrations.clients.resolve_names", names, env=env
    )
    return result


def resolve_one(lab: PodLab, name: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """``kubealias.resolve(name).to_dict()`` in a fresh (cold-cache) process inside the pod."""
    (result,) = resolve_in_pod(lab, [name], env)
    assert "error" not in result, result
    return result


def test_database_gets_the_external_name_from_resolv_conf_alone(pod: PodLab) -> None:
    r = resolve_one(pod, "database")
    assert r["name"] == "database"
    assert r["fqdn"] == L.DATABASE
    assert r["chain"] == [L.DATABASE, L.DATABASE_TARGET, L.DATABASE_HOST]
    assert r["tls_name"] == L.DATABASE_TARGET
    assert r["addresses"] == [L.DATABASE_IP]
    assert r["is_alias"] is True
    assert r["stale"] is False
    assert 0 < r["ttl"] <= L.SERVICE_TTL


DATABASE_FORMS = [
    "database",
    "database.production",
    "database.production.svc",
    "database.production.svc.cluster.local",
    "database.production.svc.cluster.local.",
    "DATABASE",
    "Database.Production.SVC.Cluster.Local",
]


def test_every_name_form_gives_what_glibc_gives(pod: PodLab) -> None:
    results = resolve_in_pod(pod, DATABASE_FORMS)
    for form, r in zip(DATABASE_FORMS, results, strict=True):
        assert "error" not in r, (form, r)
        assert r["name"] == form
        assert sorted(r["addresses"]) == sorted(pod.getent(form)), form
        assert r["addresses"] == [L.DATABASE_IP], form
        assert r["tls_name"] == L.DATABASE_TARGET, form
        assert r["chain"] == [L.DATABASE, L.DATABASE_TARGET, L.DATABASE_HOST], form


@pytest.mark.parametrize("service", sorted(L.SERVICES), ids=str)
def test_every_service_matches_glibc_and_the_tls_rule(pod: PodLab, service: str) -> None:
    expected = L.SERVICES[service]
    forms = [expected.short, f"{expected.service}.{expected.namespace}", expected.fqdn]
    for form, r in zip(forms, resolve_in_pod(pod, forms), strict=True):
        assert "error" not in r, (form, r)
        assert sorted(r["addresses"]) == sorted(pod.getent(form)), form
        assert sorted(r["addresses"]) == sorted(expected.addresses), form
        assert r["chain"] == list(expected.chain), form
        assert r["is_alias"] is expected.is_alias, form
        assert r["tls_name"] == (expected.tls_name or form), form


def test_cross_namespace_alias_keeps_the_cluster_name(pod: PodLab) -> None:
    r = resolve_one(pod, "shared-cache.app-team-a")
    assert r["tls_name"] == L.REDIS
    assert r["chain"] == [L.SHARED_CACHE, L.REDIS]
    assert r["addresses"] == [L.REDIS_IP]


def test_clusterip_service_is_not_an_alias(pod: PodLab) -> None:
    r = resolve_one(pod, "orders")
    assert r["is_alias"] is False
    assert r["tls_name"] == "orders"
    assert r["addresses"] == [L.ORDERS_IP]


def test_same_address_different_tls_names(pod: PodLab) -> None:
    first, second = resolve_in_pod(pod, ["payment-api", "second-api"])
    assert first["addresses"] == second["addresses"] == [L.PAYMENT_API_IP]
    assert first["tls_name"] == L.PAYMENT_API_TARGET
    assert second["tls_name"] == L.SECOND_API_TARGET


@pytest.mark.parametrize("name", [L.EXTERNAL_API, "localhost", "127.0.0.10", "::1"])
def test_non_cluster_names_pass_through_with_zero_queries(pod_clean: PodLab, name: str) -> None:
    r = resolve_one(pod_clean, name)
    assert r["is_alias"] is False
    assert r["tls_name"] == name
    assert pod_clean.query_log("both") == []


def test_cold_alias_costs_one_query_per_family(pod_clean: PodLab) -> None:
    resolve_one(pod_clean, "database")
    log = pod_clean.query_log("full")
    assert sorted(log) == [(L.DATABASE, "A"), (L.DATABASE, "AAAA")]
    assert pod_clean.query_log("edge") == []


def test_zone_edge_server_makes_the_follow_up_queries(pod_clean: PodLab) -> None:
    env = {"KUBEALIAS_NAMESERVERS": f"{L.LISTEN_ADDRESS}:{L.EDGE_PORT}"}
    r = resolve_one(pod_clean, "database", env)
    assert r["tls_name"] == L.DATABASE_TARGET
    assert r["chain"] == [L.DATABASE, L.DATABASE_TARGET, L.DATABASE_HOST]
    assert r["addresses"] == [L.DATABASE_IP]
    edge = pod_clean.query_log("edge")
    assert (L.DATABASE, "A") in edge
    assert (L.DATABASE_TARGET, "A") in edge  # the follow-up: the edge server stopped at the CNAME
    assert pod_clean.query_log("full") == []


def _start_child(
    lab: PodLab, watch: str, env: dict[str, str] | None = None
) -> tuple[JsonLinesChild, dict[str, Any]]:
    """Start ``integrations/clients/resolve_watch.py`` inside the pod and return it with its
    first JSON line (``ready``)."""
    child = lab.start_module("integrations.clients.resolve_watch", {"watch": watch}, env=env)
    first: dict[str, Any] = child.read(timeout=30)
    return child, first


def _finish_child(child: JsonLinesChild, timeout: float) -> dict[str, Any]:
    with child:
        last: dict[str, Any] = child.finish(timeout=timeout)
    return last


def test_externalname_to_clusterip_switch_is_seen_within_the_ttl(pod_clean: PodLab) -> None:
    child, first = _start_child(pod_clean, "switch")
    assert first["ready"]["tls_name"] == L.DATABASE_TARGET
    pod_clean.set_a(L.DATABASE, L.DATABASE_CLUSTER_IP)  # the migration, no restart
    updated = time.time()
    switched = _finish_child(child, timeout=30)["switched"]
    assert switched is not None, "the switch was never seen"
    assert switched["r"]["addresses"] == [L.DATABASE_CLUSTER_IP]
    assert switched["r"]["tls_name"] == "database"
    assert switched["r"]["chain"] == [L.DATABASE]
    assert switched["at"] - updated <= L.SERVICE_TTL + 1


def test_outage_serves_stale_within_the_bound_then_fails_clearly(pod_clean: PodLab) -> None:
    env = {"KUBEALIAS_MAX_STALE": f"{MAX_STALE:g}", "KUBEALIAS_TIMEOUT": f"{TIMEOUT:g}"}
    child, first = _start_child(pod_clean, "outage", env)
    warmed = first["at"]
    assert first["ready"]["stale"] is False
    pod_clean.pause_named("full")
    child.send("go")
    events = _finish_child(child, timeout=40)["events"]

    for event in events:
        assert event["took"] <= TIMEOUT + 1, event
    answers = [e for e in events if "error" not in e]
    for event in answers:
        assert event["addresses"] == [L.DATABASE_IP]
        assert event["tls_name"] == L.DATABASE_TARGET
        if event["stale"]:
            assert event["at"] - warmed >= L.SERVICE_TTL - 0.5  # only once the TTL ran out
    assert any(e["stale"] for e in answers), events
    last = events[-1]
    assert "error" in last, f"no error after the stale bound: {events}"
    assert last["is_resolution_error"], last
    assert "database" in last["message"]
    # The error comes once the stale bound is over, not before and not much later.
    assert last["at"] - warmed >= L.SERVICE_TTL + MAX_STALE - 0.5, events
    assert last["at"] - warmed <= L.SERVICE_TTL + MAX_STALE + TIMEOUT + 2, events


def test_resolve_example_in_the_pod(pod: PodLab) -> None:
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "examples" / "resolve.py"
    proc = pod.exec([sys.executable, str(example), "database", "api.example.test"], timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert L.DATABASE_TARGET in proc.stdout and L.DATABASE_IP in proc.stdout


def test_cli_resolve_in_the_pod(pod: PodLab) -> None:
    proc = pod.exec(
        [sys.executable, "-m", "kubealias", "resolve", "database", "--json"], timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["tls_name"] == L.DATABASE_TARGET
    proc = pod.exec([sys.executable, "-m", "kubealias", "env", "--json"], timeout=30)
    env = json.loads(proc.stdout)
    assert env["KUBEALIAS_NAMESPACE"]["value"] == "production"
    assert env["KUBEALIAS_NDOTS"] == {"value": "5", "source": "/etc/resolv.conf"}

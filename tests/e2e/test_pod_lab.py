"""The pod emulation itself: proof that the lab reproduces what a pod sees.

These tests do not use kubealias. They check the namespace's resolv.conf, that glibc resolves
ExternalName services through the whole-chain server, that the zone-edge server stops at the
CNAME, that query counting, zone changes, outages and teardown work.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from integrations.pod import lab as L
from integrations.pod.lab import DigError, LabError, PodLab

pytestmark = pytest.mark.pod


def test_resolv_conf_and_hosts_are_the_kubelets(pod: PodLab) -> None:
    result = pod.exec(["cat", "/etc/resolv.conf"], check=True)
    assert result.stdout == (
        "search production.svc.cluster.local svc.cluster.local cluster.local\n"
        "nameserver 127.0.0.1\n"
        "options ndots:5\n"
    )
    hosts = pod.exec(["cat", "/etc/hosts"], check=True).stdout
    assert all("localhost" in line for line in hosts.splitlines() if line.strip())


def test_namespace_has_only_loopback(pod: PodLab) -> None:
    links = pod.exec(["ip", "-o", "link", "show"], check=True).stdout.splitlines()
    assert [line.split(":")[1].strip() for line in links] == ["lo"]
    routes = pod.exec(["ip", "-4", "route", "show"], check=True).stdout
    assert "default" not in routes


def test_getent_resolves_externalname_through_the_whole_chain(pod: PodLab) -> None:
    assert pod.getent("database") == [L.DATABASE_IP]
    assert pod.getent("database", "hosts") == [L.DATABASE_IP]


@pytest.mark.parametrize("service", sorted(L.SERVICES), ids=str)
def test_getent_gives_every_service_its_addresses(pod: PodLab, service: str) -> None:
    expected = L.SERVICES[service]
    for form in (expected.short, f"{expected.service}.{expected.namespace}", expected.fqdn):
        assert sorted(pod.getent(form)) == sorted(expected.addresses), form


def test_full_server_answers_with_the_whole_chain(pod: PodLab) -> None:
    answer = pod.dig(L.DATABASE)
    assert [(r.name, r.rdtype, r.value) for r in answer] == [
        (L.DATABASE, "CNAME", L.DATABASE_TARGET),
        (L.DATABASE_TARGET, "CNAME", L.DATABASE_HOST),
        (L.DATABASE_HOST, "A", L.DATABASE_IP),
    ]
    assert [r.ttl for r in answer] == [L.SERVICE_TTL, 60, 60]


def test_edge_server_returns_the_cname_alone(pod: PodLab) -> None:
    answer = pod.dig(L.DATABASE, port=L.EDGE_PORT)
    assert [(r.name, r.rdtype, r.value) for r in answer] == [
        (L.DATABASE, "CNAME", L.DATABASE_TARGET)
    ]
    cross_namespace = pod.dig(L.SHARED_CACHE, port=L.EDGE_PORT)
    # Same zone (cluster.local): BIND chases the CNAME inside one zone even with recursion no.
    assert [r.rdtype for r in cross_namespace] == ["CNAME", "A"]


def test_edge_server_answers_the_follow_up_query(pod: PodLab) -> None:
    answer = pod.dig(L.DATABASE_TARGET, port=L.EDGE_PORT)
    # The provider's own CNAME is in the same zone (amazonaws.com), so it comes with the A.
    assert [(r.name, r.rdtype, r.value) for r in answer] == [
        (L.DATABASE_TARGET, "CNAME", L.DATABASE_HOST),
        (L.DATABASE_HOST, "A", L.DATABASE_IP),
    ]


def test_names_outside_the_lab_get_a_fast_nxdomain(pod: PodLab) -> None:
    started = time.monotonic()
    assert pod.dig_status("www.example.com") == "NXDOMAIN"
    assert pod.dig_status("api.stripe.com", port=L.EDGE_PORT) == "NXDOMAIN"
    assert pod.dig_status("nothing.production.svc.cluster.local") == "NXDOMAIN"
    assert pod.getent("www.example.com") == []
    assert time.monotonic() - started < 2


def test_query_log_counts_queries(pod_clean: PodLab) -> None:
    for _ in range(3):
        pod_clean.dig(L.ORDERS)
    for _ in range(2):
        pod_clean.dig(L.ORDERS, "AAAA")
    pod_clean.dig(L.REDIS, port=L.EDGE_PORT)
    assert pod_clean.query_count(L.ORDERS, "A") == 3
    assert pod_clean.query_count(L.ORDERS + ".", "aaaa") == 2
    assert pod_clean.query_count() == 5
    assert pod_clean.query_log("edge") == [(L.REDIS, "A")]
    assert pod_clean.query_count(server="both") == 6
    pod_clean.clear_query_log("full")
    assert pod_clean.query_count() == 0
    assert pod_clean.query_count(server="edge") == 1


def test_query_log_is_written_before_the_answer(pod_clean: PodLab) -> None:
    """No waiting needed: the line is in the file when dig returns (settle=0)."""
    for i in range(1, 6):
        pod_clean.dig(L.POSTGRES)
        assert pod_clean.query_count(L.POSTGRES, settle=0) == i


def test_glibc_walks_the_search_list_for_an_external_name(pod_clean: PodLab) -> None:
    assert pod_clean.getent(L.EXTERNAL_API) == [L.EXTERNAL_API_IP]
    names = [q.name for q in pod_clean.query_log()]
    # ndots:5 and one dot: the three search domains first, then the name; A and AAAA each.
    assert sorted(set(names), key=names.index) == [
        f"{L.EXTERNAL_API}.production.svc.cluster.local",
        f"{L.EXTERNAL_API}.svc.cluster.local",
        f"{L.EXTERNAL_API}.cluster.local",
        L.EXTERNAL_API,
    ]
    assert len(names) == 8


def test_externalname_to_clusterip_switch_is_visible_to_glibc(pod_clean: PodLab) -> None:
    assert pod_clean.getent("database") == [L.DATABASE_IP]
    pod_clean.set_a(L.DATABASE, L.DATABASE_CLUSTER_IP)
    assert pod_clean.getent("database") == [L.DATABASE_CLUSTER_IP]
    for port in (L.FULL_PORT, L.EDGE_PORT):
        answer = pod_clean.dig(L.DATABASE, port=port)
        assert [(r.rdtype, r.value, r.ttl) for r in answer] == [
            ("A", L.DATABASE_CLUSTER_IP, L.SERVICE_TTL)
        ]


def test_set_cname_delete_name_and_reset(pod_clean: PodLab) -> None:
    pod_clean.set_cname(L.ORDERS, L.PAYMENT_API_TARGET)
    pod_clean.delete_name(L.REDIS)
    pod_clean.set_a(L.PG_HEADLESS, ["127.0.0.43"], ttl=7)
    assert pod_clean.getent("orders") == [L.PAYMENT_API_IP]
    assert pod_clean.dig_status(L.REDIS, port=L.EDGE_PORT) == "NXDOMAIN"
    assert pod_clean.getent("shared-cache.app-team-a") == []
    assert [(r.value, r.ttl) for r in pod_clean.dig(L.PG_HEADLESS)] == [("127.0.0.43", 7)]
    assert pod_clean.dirty == {L.ORDERS, L.REDIS, L.PG_HEADLESS}

    assert pod_clean.reset_records() is True
    assert pod_clean.dirty == set()
    assert pod_clean.reset_records() is False
    assert pod_clean.getent("orders") == [L.ORDERS_IP]
    assert pod_clean.getent("shared-cache.app-team-a") == [L.REDIS_IP]
    assert sorted(r.value for r in pod_clean.dig(L.PG_HEADLESS, port=L.EDGE_PORT)) == list(
        L.PG_HEADLESS_IPS
    )


def test_raw_nsupdate_on_one_server(pod_clean: PodLab) -> None:
    name = "extra.production.svc.cluster.local"
    pod_clean.nsupdate(f"zone cluster.local.\nupdate add {name}. 5 IN A 127.0.0.77\n", "edge")
    assert pod_clean.dig(name, port=L.EDGE_PORT)[0].value == "127.0.0.77"
    assert pod_clean.dig_status(name) == "NXDOMAIN"
    assert name in pod_clean.dirty  # the autouse fixture removes it again
    with pytest.raises(LabError, match="nsupdate failed"):
        pod_clean.nsupdate(f"zone cluster.local.\nprereq nxdomain {L.ORDERS}.")


def test_pause_makes_queries_time_out_and_resume_recovers(pod_clean: PodLab) -> None:
    pod_clean.pause_named("full")
    assert not pod_clean.running("full")
    started = time.monotonic()
    with pytest.raises(DigError, match="timed out"):
        pod_clean.dig(L.DATABASE, timeout=1)
    assert time.monotonic() - started < 3
    # The edge server is not affected.
    assert pod_clean.dig(L.ORDERS, port=L.EDGE_PORT)[0].value == L.ORDERS_IP
    pod_clean.resume_named("full")
    assert pod_clean.running("full")
    assert pod_clean.dig(L.ORDERS)[0].value == L.ORDERS_IP


def test_stop_and_start_keep_zone_changes(pod_clean: PodLab) -> None:
    pod_clean.set_cname(L.ORDERS, L.EXTERNAL_API)
    pod_clean.stop_named("full")
    with pytest.raises(DigError, match=r"refused|no servers"):
        pod_clean.dig(L.ORDERS)
    pod_clean.start_named("full")
    assert [r.value for r in pod_clean.dig(L.ORDERS)] == [L.EXTERNAL_API, L.EXTERNAL_API_IP]
    assert pod_clean.dig(L.PROBE[0], "SOA")  # the probe is not counted ...
    assert pod_clean.query_log() == [(L.ORDERS, "A")]  # ... only the query after the restart


def test_exec_scrubs_the_environment(pod: PodLab, monkeypatch: pytest.MonkeyPatch) -> None:
    scrubbed = {
        "KUBEALIAS_NAMESERVERS": "10.0.0.1",
        "PGHOST": "elsewhere",
        "PGSSLMODE": "disable",
        "HTTPS_PROXY": "http://proxy:3128",
        "no_proxy": "*",
        "LOCALDOMAIN": "example.org",
        "RES_OPTIONS": "ndots:1",
    }
    for key, value in scrubbed.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("KAPOD_KEEP", "kept")
    env = dict(
        line.split("=", 1)
        for line in pod.exec(["env"], env={"KUBEALIAS_TIMEOUT": "1"}).stdout.splitlines()
        if "=" in line
    )
    assert not set(scrubbed) & set(env)
    assert env["KAPOD_KEEP"] == "kept"
    assert env["KUBEALIAS_TIMEOUT"] == "1"


def test_run_module_runs_inside_the_namespace(pod: PodLab) -> None:
    out = pod.run_module("integrations.clients.whereami")
    assert out == {"db": L.DATABASE_IP, "resolv": L.RESOLV_CONF}
    with pytest.raises(LabError, match="ZeroDivisionError"):
        pod.run_module("integrations.clients.whereami", {"fail": True})


def test_popen_runs_inside_the_namespace(pod: PodLab) -> None:
    child = pod.popen(["getent", "hosts", "orders"], stdout=subprocess.PIPE, text=True)
    out, _ = child.communicate(timeout=10)
    assert out.split()[0] == L.ORDERS_IP


def test_stale_labs_of_dead_processes_are_removed(pod: PodLab) -> None:
    name = "kapod-dead00"
    lab_dir = Path(pod.tmp_root) / name
    lab_dir.mkdir()
    owner = L.OWNERS_DIR / name
    owner.write_text(f"999999999 1\n{lab_dir}\n")
    subprocess.run(["ip", "netns", "add", name], check=True)
    etc = Path("/etc/netns") / name
    etc.mkdir(parents=True)
    try:
        removed = L.cleanup_stale_labs(pod.tmp_root)
        assert name in removed
        assert pod.name not in removed  # our own lab: owner alive
        assert name not in L._netns_names()
        assert not lab_dir.exists()
        assert not etc.exists()
        assert not owner.exists()
        assert (L.OWNERS_DIR / pod.name).exists()
        assert pod.dig(L.ORDERS)[0].value == L.ORDERS_IP
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
        subprocess.run(["rm", "-rf", str(lab_dir), str(etc), str(owner)], check=True)


def test_failed_start_says_why_and_leaves_nothing_behind(pod: PodLab) -> None:
    """(``pod`` only gates on the machine being able to host labs.)"""
    lab = PodLab(extra_records=[("broken.production.svc.cluster.local", "A", "not-an-ip")])
    lab.ready_timeout = 1.5
    with pytest.raises(LabError) as info:
        lab.start()
    message = str(info.value)
    assert "did not answer" in message
    assert "cluster.local" in message and "not loaded" in message  # from named.log
    assert not lab.started
    assert lab.name not in L._netns_names()
    assert not (Path("/etc/netns") / lab.name).exists()
    assert not (lab.tmp_root / lab.name).exists()
    assert not (L.OWNERS_DIR / lab.name).exists()
    running = subprocess.run(["pgrep", "-f", f"{lab.name}/"], capture_output=True, text=True)
    assert running.stdout == ""


def test_context_manager_tears_down(pod: PodLab) -> None:
    started = time.monotonic()
    with PodLab() as lab:
        name, lab_dir = lab.name, lab.dir
        assert lab.getent("database") == [L.DATABASE_IP]
        pids = [s.process.pid for s in lab.servers.values() if s.process is not None]
        sleeper = lab.popen(["sleep", "300"])
        pids.append(sleeper.pid)
    assert name not in L._netns_names()
    assert lab_dir is not None and not lab_dir.exists()
    assert sleeper.returncode is not None
    for pid in pids:
        assert _proc_state(pid) in ("gone", "Z")
    assert time.monotonic() - started < 5


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_not_root_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert "root" in (L.unavailable_reason() or "")

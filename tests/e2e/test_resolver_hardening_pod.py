"""End-to-end, in the pod emulation: fork safety under a real ``gunicorn --preload`` (issue 10,
item 6) and glibc parity for a missing Service and an alias to a missing target (item 9)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from integrations.pod import lab as L
from integrations.pod.lab import PodLab

pytestmark = pytest.mark.pod

#: KUBEALIAS_TIMEOUT of the gunicorn test: a worker stranded on the master's flight would wait
#: up to this long; the answers must come in a small fraction of it.
TIMEOUT = 10.0
FAST = 1.0


@contextlib.contextmanager
def gunicorn(lab: PodLab, port: int, log: Path) -> Iterator[subprocess.Popen[Any]]:
    """``gunicorn --preload`` with two sync workers serving ``preload_app`` in the pod."""
    with log.open("w") as out:
        server = lab.popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--preload",
                "--workers=2",
                f"--bind=127.0.0.1:{port}",
                "integrations.clients.preload_app:app",
            ],
            env={"PYTHONPATH": str(L.REPO_ROOT), "KUBEALIAS_TIMEOUT": f"{TIMEOUT:g}"},
            cwd=L.REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(5)


def test_gunicorn_preload_workers_resolve_at_once(pod_clean: PodLab, tmp_path: Path) -> None:
    # The master resolves at import while the DNS server is frozen, so the lookups are in
    # flight when it forks the two workers. Before: each worker's first resolve joined the
    # master's flight, that no thread of the worker runs, and waited until its deadline
    # (KUBEALIAS_TIMEOUT after the import).
    (port,) = pod_clean.free_ports(1)
    log = tmp_path / "gunicorn.log"
    pod_clean.pause_named("full")
    with gunicorn(pod_clean, port, log):
        probe = pod_clean.start_module(
            "integrations.clients.preload_probe",
            {"port": port, "names": ["database", "payment-api"], "rounds": 2},
            timeout=120,
        )
        with probe:
            ready = probe.read(timeout=60)["ready"]
            assert len(ready["pids"]) == 2, (ready, log.read_text())
            # Not vacuous: the master's lookups were in flight at the fork.
            assert ready["in_flight"] == ["database", "payment-api"], ready
            pod_clean.resume_named("full")
            probe.send("go")
            results = probe.finish(timeout=120)["results"]
    want = {"database": L.DATABASE_TARGET, "payment-api": L.PAYMENT_API_TARGET}
    assert {r["pid"] for r in results} == set(ready["pids"]), results  # both workers answered
    for r in results:
        assert "error" not in r, r
        assert r["tls_name"] == want[r["name"]], r
        assert r["took"] < FAST, r


def test_an_alias_to_a_missing_target_fails_in_glibc_and_names_the_target(
    pod_clean: PodLab,
) -> None:
    pod_clean.set_cname(L.svc("ghost"), "gone.example.test")
    assert pod_clean.getent("ghost") == []  # glibc: "Name or service not known", no more
    (r,) = pod_clean.run_module("integrations.clients.resolve_names", ["ghost"])
    assert r["error"] == "ResolutionError", r
    assert f"the alias {L.svc('ghost')} points to gone.example.test" in r["message"], r
    assert "does not exist (NXDOMAIN)" in r["message"], r


def test_a_name_with_no_service_passes_through_as_in_glibc(pod_clean: PodLab) -> None:
    assert pod_clean.getent("no-such-service") == []
    (r,) = pod_clean.run_module("integrations.clients.resolve_names", ["no-such-service"])
    assert "error" not in r, r
    assert r["is_alias"] is False and r["tls_name"] == "no-such-service"
    assert [c["result"] for c in r["candidates"]] == ["NXDOMAIN"] * 3

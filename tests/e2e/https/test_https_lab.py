"""The HTTPS lab itself: proof that it reproduces the problem kubealias fixes, with plain clients.

No kubealias here. Every client runs inside the pod namespace (``HttpsLab.run_client``), so
``payment-api`` resolves through the pod's ``/etc/resolv.conf`` and BIND, as in a pod:
``payment-api -> api.payments.example.test -> 127.0.0.20``, where nginx serves the external name
with its certificate and everything else with a CDN-style default certificate and 421.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from typing import Any

import pytest

from integrations.https import lab as H
from integrations.https.lab import HttpsLab
from integrations.pod import lab as L
from integrations.pod.lab import LabError, PodLab

pytestmark = pytest.mark.pod

EXTERNAL_NAMES = [L.PAYMENT_API_TARGET, L.SECOND_API_TARGET]


def get(lab: HttpsLab, host: str, verify: str | bool | None = None) -> dict[str, Any]:
    """``requests.get(https://host:PORT/, verify=...)`` inside the pod (default: the lab CA),
    with the addresses ``getaddrinfo`` gives for ``host``."""
    choice = "ca" if verify is None else "wrong" if verify == lab.wrong_ca_file else verify
    spec = {"name": host, "verify": choice, "timeout": 5, "addresses": True}
    (result,) = lab.run_client("http_plain", [spec])
    out: dict[str, Any] = result
    return out


# --------------------------------------------------------------------------------------------
# Negative controls: the unchanged application fails as it does in a pod
# --------------------------------------------------------------------------------------------


def test_requests_to_the_alias_fails_hostname_verification(https_clean: HttpsLab) -> None:
    result = get(https_clean, "payment-api")
    # The pod resolves the alias to the external name's address: the right server...
    assert result["addresses"] == [L.PAYMENT_API_IP]
    # ...which cannot prove it is "payment-api": the lab CA signed it, but not for that name.
    assert result["error"] == "SSLError", result
    assert "Hostname mismatch" in result["message"], result["message"]
    assert "'payment-api'" in result["message"], result["message"]
    # The client gave up during the handshake: no request reached nginx.
    assert https_clean.access_log() == []
    assert https_clean.failed_handshakes() == 1
    assert "alert bad certificate" in https_clean.error_log()


def test_requests_without_verification_gets_421_from_the_default_server(
    https_clean: HttpsLab,
) -> None:
    # The workaround users fall back to (verify=False) still does not work: the SNI and Host
    # "payment-api" match no virtual host. Only this negative control turns verification off.
    spec = {"name": "payment-api", "verify": False, "timeout": 5}
    (result,) = https_clean.run_client("http_plain", [spec])
    assert result["status"] == 421
    body = result["body"]
    assert body["server"] == H.DEFAULT_VHOST
    assert body["sni"] == body["host"] == "payment-api"
    assert body["server_addr"] == L.PAYMENT_API_IP
    (entry,) = https_clean.access_log(min_entries=1)
    assert (entry["status"], entry["sni"], entry["host"], entry["server"]) == (
        421,
        "payment-api",
        "payment-api",
        H.DEFAULT_VHOST,
    )


def test_httpx_to_the_alias_fails_hostname_verification(https_clean: HttpsLab) -> None:
    spec = {"name": "payment-api", "client": "httpx", "timeout": 5}
    (result,) = https_clean.run_client("http_plain", [spec])
    assert result.get("error") == "ConnectError", result
    assert "Hostname mismatch" in result["message"], result["message"]
    assert "'payment-api'" in result["message"], result["message"]
    assert https_clean.access_log() == []


def test_the_lab_ca_is_needed(https_clean: HttpsLab) -> None:
    result = get(https_clean, L.PAYMENT_API_TARGET, verify=https_clean.wrong_ca_file)
    assert result["error"] == "SSLError", result
    assert "certificate verify failed" in result["message"]
    assert "Hostname mismatch" not in result["message"]


def test_sni_and_host_must_agree(https_clean: HttpsLab) -> None:
    # What an adapter that rewrote SNI but not the Host header would get (rewrite_host=False).
    spec = {"name": L.PAYMENT_API_TARGET, "headers": {"Host": "payment-api"}}
    (result,) = https_clean.run_client("http_plain", [spec])
    assert result["status"] == 421
    assert result["body"]["sni"] == L.PAYMENT_API_TARGET
    assert result["body"]["http_host"] == "payment-api"


# --------------------------------------------------------------------------------------------
# Positive controls: the external name works, each with its own virtual host
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", EXTERNAL_NAMES)
def test_the_external_name_verifies_and_gets_its_vhost(https_clean: HttpsLab, name: str) -> None:
    result = get(https_clean, name)
    assert result["addresses"] == [L.PAYMENT_API_IP]  # both names: one IP, two TLS names
    assert result["status"] == 200, result
    body = result["body"]
    assert body["sni"] == body["host"] == body["server"] == name
    assert body["http_host"] == f"{name}:{https_clean.port}"
    assert body["uri"] == "/"
    assert body["requests"] == "1"
    (entry,) = https_clean.access_log(min_entries=1)
    assert (entry["sni"], entry["host"], entry["server"], entry["status"]) == (
        name,
        name,
        name,
        200,
    )
    assert entry["connection"] == int(body["connection"])


def test_httpx_to_the_external_name(https_clean: HttpsLab) -> None:
    specs = [{"name": n, "client": "httpx", "session": "one"} for n in EXTERNAL_NAMES]
    bodies = [r["body"] for r in https_clean.run_client("http_plain", specs)]
    assert [(b["sni"], b["host"], b["server"]) for b in bodies] == [
        (n, n, n) for n in EXTERNAL_NAMES
    ]


def test_plain_http_routes_by_host_header(https_clean: HttpsLab) -> None:
    specs = [{"name": n, "scheme": "http"} for n in (L.PAYMENT_API_TARGET, "payment-api")]
    (external, alias) = [
        [r["status"], r["body"]] for r in https_clean.run_client("http_plain", specs)
    ]
    assert external[0] == 200
    assert external[1]["server"] == external[1]["host"] == L.PAYMENT_API_TARGET
    assert external[1]["scheme"] == "http"
    assert external[1]["sni"] == ""
    assert alias[0] == 421
    assert (alias[1]["server"], alias[1]["host"]) == (H.DEFAULT_VHOST, "payment-api")


def test_ip_literal_gets_the_default_certificate_without_sni(https_clean: HttpsLab) -> None:
    result = get(https_clean, L.PAYMENT_API_IP)
    assert result["status"] == 200, result
    assert result["body"]["server"] == H.IP_VHOST
    assert result["body"]["sni"] == ""


def test_after_the_switch_to_a_cluster_ip_the_plain_client_works(
    pod: PodLab, https_clean: HttpsLab
) -> None:
    # ExternalName -> ClusterIP: payment-api is then an in-cluster service with its own name.
    pod.set_a(L.PAYMENT_API, H.PAYMENT_API_CLUSTER_IP)
    result = get(https_clean, "payment-api")
    assert result["addresses"] == [H.PAYMENT_API_CLUSTER_IP]
    assert result["status"] == 200, result
    assert result["body"]["server"] == H.CLUSTER_VHOST
    assert result["body"]["sni"] == result["body"]["host"] == "payment-api"


# --------------------------------------------------------------------------------------------
# The measuring instruments: access log, handshakes, proxy, restart, teardown
# --------------------------------------------------------------------------------------------


def test_keep_alive_requests_share_one_handshake(https_clean: HttpsLab) -> None:
    n = 5
    specs = [
        {"name": L.PAYMENT_API_TARGET, "path": f"/r/{i}", "session": "first"} for i in range(n)
    ]
    specs.append({"name": L.SECOND_API_TARGET, "session": "second"})
    bodies = [r["body"] for r in https_clean.run_client("http_plain", specs)]
    assert [b["requests"] for b in bodies[:n]] == [str(i) for i in range(1, n + 1)]
    assert len({b["connection"] for b in bodies[:n]}) == 1
    entries = https_clean.access_log(min_entries=n + 1)
    assert len(entries) == n + 1
    assert [e["uri"] for e in entries[:n]] == [f"/r/{i}" for i in range(n)]
    assert https_clean.handshakes() == 2
    per_connection = https_clean.requests_per_connection()
    assert list(per_connection.values()) == [n, 1]
    first = next(iter(per_connection))
    assert first.connection == int(bodies[0]["connection"])
    assert [e["requests"] for e in entries[:n]] == list(range(1, n + 1))
    https_clean.clear_access_log()
    assert https_clean.access_log() == []
    assert https_clean.handshakes() == 0


def test_client_certificate_is_seen(https_clean: HttpsLab) -> None:
    specs = [{"name": L.PAYMENT_API_TARGET, "cert": True}, {"name": L.PAYMENT_API_TARGET}]
    results = https_clean.run_client("http_plain", specs)
    assert [r["body"]["client_verify"] for r in results] == ["SUCCESS", "NONE"]


def test_stream_and_redirect_locations(https_clean: HttpsLab) -> None:
    target = https_clean.url(L.SECOND_API_TARGET, "/after")
    specs = [
        {"name": L.PAYMENT_API_TARGET, "path": "/stream", "stream": True},
        {"name": L.PAYMENT_API_TARGET, "path": "/redirect?to=" + target},
    ]
    stream, redirect = https_clean.run_client("http_plain", specs)
    result = {"digest": stream["digest"], "history": redirect["history"], "body": redirect["body"]}
    assert result["digest"] == hashlib.sha256(H.stream_body()).hexdigest()
    assert result["history"] == [302]
    assert result["body"]["server"] == L.SECOND_API_TARGET
    assert result["body"]["uri"] == "/after"


def test_proxy_logs_connect_targets_and_resolves_in_the_pod(https_clean: HttpsLab) -> None:
    proxy = https_clean.start_proxy()
    specs = [{"name": L.PAYMENT_API_TARGET}, {"name": L.SECOND_API_TARGET, "scheme": "http"}]
    env = {"HTTPS_PROXY": proxy, "HTTP_PROXY": proxy}
    https, http = [r["body"] for r in https_clean.run_client("http_plain", specs, env=env)]
    assert https["server"] == https["sni"] == L.PAYMENT_API_TARGET
    assert http["server"] == L.SECOND_API_TARGET
    assert https_clean.proxy_targets() == [f"{L.PAYMENT_API_TARGET}:{https_clean.port}"]
    assert https_clean.proxy_targets(method="GET") == [
        https_clean.url(L.SECOND_API_TARGET, scheme="http")
    ]
    results = [e for e in https_clean.proxy_log() if e["event"] == "result"]
    assert [(e["addresses"], e["status"]) for e in results] == [([L.PAYMENT_API_IP], 200)] * 2


def test_proxy_answers_502_for_a_name_it_cannot_resolve(https_clean: HttpsLab) -> None:
    proxy = https_clean.start_proxy()
    assert https_clean.start_proxy() == proxy  # already running: same proxy
    spec = {"name": "nowhere.example.test", "timeout": 5}
    (result,) = https_clean.run_client("http_plain", [spec], env={"HTTPS_PROXY": proxy})
    assert result.get("error") == "ProxyError", result
    message = result["message"]
    assert "502" in message
    (request, result) = https_clean.proxy_log()
    assert request["target"] == f"nowhere.example.test:{https_clean.port}"
    assert result["status"] == 502 and "resolve nowhere.example.test" in result["error"]


def test_restart_keeps_the_ports_and_counts_connections_apart(https_clean: HttpsLab) -> None:
    specs = [{"name": L.PAYMENT_API_TARGET}]
    port = https_clean.port
    https_clean.run_client("http_plain", specs)
    https_clean.restart()
    assert https_clean.running()
    assert https_clean.port == port
    https_clean.run_client("http_plain", specs)
    # $connection restarts at 1 after a restart; the worker pid tells the two apart.
    assert https_clean.handshakes() == 2


def test_failed_start_names_nginx_error_and_stop_leaves_nothing(pod: PodLab) -> None:
    lab = HttpsLab(pod)
    lab.start()
    try:
        master = lab.pid
        assert master is not None
        lab_dir = lab.dir
        assert lab_dir is not None and lab.url("x", scheme="http").endswith(f":{lab.http_port}/")
    finally:
        lab.stop()
    lab.stop()  # idempotent
    assert not lab_dir.exists()
    assert not os.path.exists(f"/proc/{master}")
    with pytest.raises(LabError) as refused:
        pod.run_module("integrations.clients.tcp_connect", [L.PAYMENT_API_IP, lab.port])
    assert "ConnectionRefusedError" in str(refused.value)

    broken = HttpsLab(pod)
    broken.workers = -1  # nginx refuses "worker_processes -1"
    with pytest.raises(LabError, match="worker_processes"):
        broken.start()
    assert broken.dir is None and not broken.running()


def test_nothing_of_the_lab_runs_outside_the_namespace(https_lab: HttpsLab, pod: PodLab) -> None:
    pids = subprocess.run(
        ["ip", "netns", "pids", pod.name], capture_output=True, text=True, check=True
    ).stdout.split()
    assert str(https_lab.pid) in pids
    # Every file nginx writes is in the lab directory (not /run/nginx.pid, /var/lib/nginx).
    words = {"pid", "lock_file", "error_log", "access_log"}
    words |= {f"{kind}_temp_path" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    lines = [line.split() for line in https_lab.conf.read_text().splitlines()]
    directives = [fields for fields in lines if fields and fields[0] in words]
    assert len(directives) == len(words)
    assert all(d[1].startswith(f"{https_lab.dir}/") for d in directives), directives
    assert all(v is None or isinstance(v, (str, int)) for v in https_lab.client_config().values())

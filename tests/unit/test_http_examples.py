"""The HTTP examples run as documented, against a cluster DNS and TLS server on loopback.

Each example runs as a subprocess: with ``--demo`` it starts a lab itself from
``kubealias.testing``; without, it takes the default resolver and ``PAYMENT_API_URL``/CA bundle
from the environment, pointed here at the demo lab (``kubealias._demo.demo_lab``) started by the
test (``DemoLab.env()``), as a pod's environment would point it.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from kubealias._demo import DemoLab, demo_lab
from kubealias.requests import Session

ROOT = Path(__file__).resolve().parents[2]
EXTERNAL = "api.payments.example.test"
EXAMPLES = [
    pytest.param(["requests_app.py"], "", id="requests"),
    pytest.param(["httpx_app.py"], "", id="httpx"),
    pytest.param(["httpx_app.py", "--async"], " (asyncio)", id="httpx-async"),
]
CHARGE = re.compile(
    r"charge (\d): accepted(?: \(asyncio\))?; server saw SNI (\S+), Host (\S+), "
    r"connection (\d+) request (\d+)"
)


def run_example(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    script, *rest = args
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *rest],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert proc.stderr == "", proc.stderr
    return proc.returncode, proc.stdout


def assert_three_charges_on_one_connection(out: str, suffix: str) -> None:
    lines = out.splitlines()
    assert re.fullmatch(r"POST https://payment-api:\d+/v1/charges", lines[0]), out
    assert lines[1] == f"  payment-api -> TLS name {EXTERNAL}, addresses 127.0.0.1", out
    charges = [CHARGE.fullmatch(line) for line in lines[2:]]
    assert all(charges) and len(charges) == 3, out
    assert all(f"accepted{suffix};" in line for line in lines[2:]), out
    # Verified for the external name, sent to its virtual host, one connection kept alive.
    seen = [m.groups() for m in charges if m]
    assert seen == [(str(n), EXTERNAL, EXTERNAL, seen[0][3], str(n)) for n in (1, 2, 3)], out


@pytest.mark.parametrize("args, suffix", EXAMPLES)
def test_example_against_the_demo_lab(args: list[str], suffix: str) -> None:
    status, out = run_example([*args, "--demo"])
    assert status == 0, out
    assert_three_charges_on_one_connection(out, suffix)


@pytest.fixture(scope="module")
def lab() -> Iterator[DemoLab]:
    with demo_lab() as running:
        yield running


def pod_env(lab: DemoLab, **extra: str) -> dict[str, str]:
    """This process's environment (cleaned by ``clean_environ``), with the lab's cluster DNS as
    the default resolver's, the API URL and the CA bundle, as a pod would set them."""
    env = {**os.environ, **lab.env(), **extra}
    env["PAYMENT_API_URL"] = lab.url("payment-api", "/v1/charges")
    env["REQUESTS_CA_BUNDLE"] = env["SSL_CERT_FILE"] = lab.cafile
    return env


@pytest.mark.parametrize("args, suffix", EXAMPLES)
def test_example_from_the_environment(lab: DemoLab, args: list[str], suffix: str) -> None:
    status, out = run_example(args, pod_env(lab))
    assert status == 0, out
    assert_three_charges_on_one_connection(out, suffix)


@pytest.mark.parametrize(
    "args, error",
    [
        pytest.param(["requests_app.py"], "ConnectionError", id="requests"),
        pytest.param(["httpx_app.py"], "ConnectError", id="httpx"),
        pytest.param(["httpx_app.py", "--async"], "ConnectError", id="httpx-async"),
    ],
)
def test_example_reports_a_refused_alias_as_a_connection_error(
    lab: DemoLab, args: list[str], error: str
) -> None:
    # A pinned allowlist that the external name does not match: kubealias fails closed.
    status, out = run_example(args, pod_env(lab, KUBEALIAS_ALLOWED_TARGETS="*.invalid"))
    assert status == 1, out
    assert f"charge 1 failed: {error}: cannot resolve 'payment-api'" in out, out
    assert "matches none of KUBEALIAS_ALLOWED_TARGETS" in out, out


# --- the demo lab's TLS server itself -------------------------------------------------------


@pytest.mark.parametrize(
    "name, vhost",
    [
        ("payment-api", EXTERNAL),
        ("database", "mydb.abc123.us-east-1.rds.amazonaws.com"),
        ("shared-cache.app-team-a", "redis.shared-infra.svc.cluster.local"),
    ],
)
def test_each_alias_reaches_its_own_virtual_host(lab: DemoLab, name: str, vhost: str) -> None:
    with Session(resolver=lab.resolver) as session:
        answer = session.get(lab.url(name, "/x?y=1"), verify=lab.cafile)
    assert answer.status_code == 200
    assert answer.json() | {"connection": 0} == {
        "sni": vhost,
        "host": vhost,
        "http_host": f"{vhost}:{lab.port}",
        "server": vhost,
        "method": "GET",
        "path": "/x?y=1",
        "connection": 0,
        "requests": 1,
        "body": "",
    }


def test_host_other_than_sni_is_misdirected(lab: DemoLab) -> None:
    with Session(resolver=lab.resolver, rewrite_host=False) as session:
        answer = session.get(lab.url("payment-api"), verify=lab.cafile)
    assert answer.status_code == 421
    assert (answer.json()["sni"], answer.json()["host"]) == (EXTERNAL, "payment-api")


def test_unknown_or_missing_sni_gets_the_default_certificate_and_421(lab: DemoLab) -> None:
    # An IP literal sends no SNI: the default certificate (valid for 127.0.0.1), 421.
    answer = requests.get(lab.url("127.0.0.1"), verify=lab.cafile, timeout=5)
    assert answer.status_code == 421
    assert (answer.json()["sni"], answer.json()["server"]) == ("", "default")
    # The unchanged application: the alias name as SNI meets the default certificate.
    context = lab.client_context()
    with (
        socket.create_connection(("127.0.0.1", lab.port), timeout=5) as sock,
        pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"),
    ):
        context.wrap_socket(sock, server_hostname="payment-api")

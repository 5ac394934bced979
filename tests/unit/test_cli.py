"""The command line, called in-process (trustme's ``main(argv)`` pattern), plus one subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from kubealias._cli import split_target
from kubealias.testing import ClusterDNS, TLSServer
from tests.unit.conftest import RDS, run_cli


def test_resolve_readable(cli_dns: ClusterDNS) -> None:
    status, out = run_cli("resolve", "database")
    assert status == 0
    assert "database.production.svc.cluster.local" in out
    assert f"TLS name    {RDS}" in out
    assert "TTL 5" in out and "127.0.0.1" in out
    assert "cached for 5 s" in out


def test_resolve_json(cli_dns: ClusterDNS) -> None:
    status, out = run_cli("resolve", "database", "--json")
    data = json.loads(out)
    assert status == 0
    assert data["tls_name"] == RDS and data["is_alias"] is True
    assert data["candidates"] == [
        {"name": "database.production.svc.cluster.local", "result": "answer"}
    ]
    assert data["chain_ttls"] == [5, 30]


def test_resolve_explains_pass_through(cli_dns: ClusterDNS) -> None:
    status, out = run_cli("resolve", "api.stripe.com")
    assert status == 0 and "passed through" in out and "not a Service name" in out
    assert cli_dns.queries == []


def test_resolve_error_is_clear(cli_dns: ClusterDNS) -> None:
    cli_dns.fault("database.production.svc.cluster.local", "servfail")
    status, out = run_cli("resolve", "database", "--json")
    data = json.loads(out)
    assert status == 1 and data["type"] == "ResolutionError" and "database" in data["error"]


def test_bad_configuration_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBEALIAS_NDOTS", "many")
    status, out = run_cli("env")
    assert status == 1 and "KUBEALIAS_NDOTS" in out and "'many'" in out


def test_env_shows_sources(cli_dns: ClusterDNS) -> None:
    status, out = run_cli("env", "--json")
    data = json.loads(out)
    assert status == 0
    assert data["KUBEALIAS_NAMESERVERS"] == {
        "value": cli_dns.nameserver,
        "source": "environment KUBEALIAS_NAMESERVERS",
    }
    assert data["KUBEALIAS_TIMEOUT"]["source"] == "default"
    status, out = run_cli("env")
    assert "KUBEALIAS_MAX_STALE" in out and "default" in out


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def cafile(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(params=[False, True], ids=["https", "postgres"])
def tls_server(request: pytest.FixtureRequest, ca: trustme.CA) -> Iterator[TLSServer]:
    # One certificate, for the external name, whatever the SNI.
    with TLSServer(ca=ca, default_names=[RDS], postgres=request.param) as server:
        yield server


def test_check_finds_the_name_that_verifies(
    cli_dns: ClusterDNS, tls_server: TLSServer, cafile: str
) -> None:
    flags = ["--postgres"] if tls_server.postgres else []
    status, out = run_cli("check", f"database:{tls_server.port}", "--cafile", cafile, *flags)
    assert status == 0, out
    assert "as given    database: FAILS" in out
    assert "Hostname mismatch" in out
    assert f"TLS name    {RDS}: verifies" in out
    assert f"certificate {RDS}" in out
    status, out = run_cli(
        "check", f"database:{tls_server.port}", "--cafile", cafile, "--json", *flags
    )
    data = json.loads(out)
    assert data["verified_with_tls_name"] is True
    assert [h["ok"] for h in data["handshakes"]] == [False, True]


def test_check_when_nothing_verifies(
    cli_dns: ClusterDNS, tls_server: TLSServer, cafile: str
) -> None:
    flags = ["--postgres"] if tls_server.postgres else []
    status, out = run_cli("check", f"orders:{tls_server.port}", "--cafile", cafile, *flags)
    assert status == 1
    # Every probe verifies (issue 10, item 5): the names of a certificate that verifies for no
    # name tried stay unread; the check says the CA is trusted and how to read them.
    assert "orders: FAILS: Hostname mismatch" in out
    assert "certificate from a trusted CA, for none of the names tried" in out
    assert "openssl s_client -connect 127.0.0.1:" in out and RDS not in out
    assert "verification fails for every name" in out


def test_check_untrusted_chain(cli_dns: ClusterDNS, tls_server: TLSServer, tmp_path: Path) -> None:
    flags = ["--postgres"] if tls_server.postgres else []
    path = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    status, out = run_cli("check", f"database:{tls_server.port}", "--cafile", str(path), *flags)
    assert status == 1 and "not trusted" in out


@pytest.mark.parametrize(
    "target, want",
    [
        ("database", ("database", 443)),
        ("database:5432", ("database", 5432)),
        ("[::1]:8443", ("::1", 8443)),
        ("[::1]", ("::1", 443)),
    ],
)
def test_split_target(target: str, want: tuple[str, int]) -> None:
    assert split_target(target, 443) == want


def test_demo() -> None:
    status, out = run_cli("demo")
    assert status == 0, out
    assert "FAILS: certificate verify failed: Hostname mismatch" in out
    assert f"VERIFIED: the server says 'hello, verified client of {RDS}'" in out


def test_no_command_prints_help() -> None:
    status, out = run_cli()
    assert status == 2 and "resolve" in out


def test_python_dash_m(cli_dns: ClusterDNS) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kubealias", "resolve", "database", "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["tls_name"] == RDS


@pytest.mark.parametrize(
    "argv, text",
    [
        (["check", "database:abc"], "the port must be a number"),
        (["check", "database:70000"], "the port must be a number"),
        (["check", "database:443", "--cafile", "/nonexistent/ca.pem"], "No such file"),
    ],
)
def test_check_usage_errors_are_one_line(cli_dns: ClusterDNS, argv: list[str], text: str) -> None:
    status, out = run_cli(*argv)
    assert status == 1
    assert out.startswith("error: ") and text in out

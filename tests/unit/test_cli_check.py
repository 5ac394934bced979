"""``kubealias check``: every probe verifies (issue 10, item 5), and a connection problem is
reported as one, with the hint that fits (item 12).

Real sockets on 127.0.0.1 only: :class:`~kubealias.testing.TLSServer` for TLS and PostgreSQL's
SSLRequest, and plain sockets for a closed port, a silent server and plain-text servers.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from kubealias import ResolutionError
from kubealias._cli import (
    HINT_NO_CLUSTER_DNS,
    HINT_POSTGRES,
    Probe,
    connection_problem,
    no_cluster_dns,
)
from kubealias._config import Config
from kubealias.testing import ClusterDNS, TLSServer
from tests.unit.conftest import RDS, run_cli, unknown_to_getaddrinfo


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


# --- item 5: every probe handshake verifies -----------------------------------------------


@pytest.fixture
def wraps(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bool, ssl.VerifyMode, str | None]]:
    """Records (check_hostname, verify_mode, server_hostname) of every client-side wrap."""
    seen: list[tuple[bool, ssl.VerifyMode, str | None]] = []
    real_socket, real_bio = ssl.SSLContext.wrap_socket, ssl.SSLContext.wrap_bio

    def wrap_socket(self: ssl.SSLContext, sock: Any, *args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("server_side"):
            seen.append((self.check_hostname, self.verify_mode, kwargs.get("server_hostname")))
        return real_socket(self, sock, *args, **kwargs)

    def wrap_bio(self: ssl.SSLContext, *args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("server_side"):
            seen.append((self.check_hostname, self.verify_mode, kwargs.get("server_hostname")))
        return real_bio(self, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "wrap_socket", wrap_socket)
    monkeypatch.setattr(ssl.SSLContext, "wrap_bio", wrap_bio)
    return seen


@pytest.mark.parametrize("postgres", [False, True], ids=["https", "postgres"])
@pytest.mark.parametrize("target", ["database", "orders", "untrusted"])
def test_every_probe_verifies(
    cli_dns: ClusterDNS,
    ca: trustme.CA,
    tmp_path: Path,
    wraps: list[tuple[bool, ssl.VerifyMode, str | None]],
    target: str,
    postgres: bool,
) -> None:
    cafile = tmp_path / "ca.pem"
    (trustme.CA() if target == "untrusted" else ca).cert_pem.write_to_path(str(cafile))
    host = "database" if target == "untrusted" else target
    flags = ["--postgres"] if postgres else []
    with TLSServer(ca=ca, default_names=[RDS], postgres=postgres) as server:
        status, _ = run_cli("check", f"{host}:{server.port}", "--cafile", str(cafile), *flags)
    assert status == (0 if target == "database" else 1)
    assert wraps, "no handshake was made"
    assert all(check and mode == ssl.CERT_REQUIRED and name for check, mode, name in wraps), wraps


#: The article's case as `kubealias check` printed it before issue 10, port aside: unchanged.
ARTICLE = f"""\
name        database
tried       database.production.svc.cluster.local              answer
chain          database.production.svc.cluster.local  (CNAME, TTL 5)
            -> {RDS}  (A/AAAA, TTL 30)
TLS name    {RDS}
addresses   127.0.0.1
alias       yes: the TLS name is the first name of the chain outside the cluster domain

port        PORT{{pg}}
certificate {RDS}
as given    database: FAILS: Hostname mismatch, certificate is not valid for 'database'.
TLS name    {RDS}: verifies

verify-full fails for 'database' but passes for '{RDS}': connect through kubealias \
(or give the client that name as SNI/sslhost).
"""


@pytest.mark.parametrize("postgres", [False, True], ids=["https", "postgres"])
def test_article_output_unchanged(cli_dns: ClusterDNS, ca: trustme.CA, postgres: bool) -> None:
    flags = ["--postgres"] if postgres else []
    with TLSServer(ca=ca, default_names=[RDS], postgres=postgres) as server:
        status, out = run_cli("check", f"database:{server.port}", "--cafile", server.cafile, *flags)
    assert status == 0
    pg = " (PostgreSQL SSLRequest first)" if postgres else ""
    assert out.replace(str(server.port), "PORT") == ARTICLE.format(pg=pg)


def test_untrusted_chain_is_named_from_the_verification_error(
    cli_dns: ClusterDNS, ca: trustme.CA, tmp_path: Path
) -> None:
    other = tmp_path / "other.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    with TLSServer(ca=ca, default_names=[RDS]) as server:
        status, out = run_cli("check", f"database:{server.port}", "--cafile", str(other), "--json")
    data = json.loads(out)
    assert status == 1 and data["certificate_error"] == "unable to get local issuer certificate"
    assert [h["problem"] for h in data["handshakes"]] == ["certificate", "certificate"]
    assert (
        data["handshakes"][0]["verify_code"] == 20
    )  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    assert data["connection_error"] == ""


# --- item 12: connection problems are connection problems ---------------------------------


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A listening socket that never accepts: the kernel completes the TCP handshake, and
    nothing ever answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


@contextlib.contextmanager
def serving(handle: Callable[[socket.socket], object]) -> Iterator[int]:
    """A TCP server on 127.0.0.1 that runs ``handle`` on each connection, then closes it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    stop = threading.Event()

    listener.settimeout(0.05)  # accept() polls, so that the loop sees stop

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                with contextlib.suppress(OSError):  # the client left first
                    handle(conn)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        listener.close()
        thread.join(5)


def _close(conn: socket.socket) -> None:
    """What PostgreSQL does with a ClientHello that comes without its SSLRequest: it reads the
    first bytes as a startup packet of absurd length and closes without a word."""
    conn.recv(8)


def _pg_error(conn: socket.socket) -> None:
    """Answer the ClientHello with PostgreSQL's ErrorResponse."""
    conn.recv(1024)
    fields = b"SFATAL\0C08P01\0Munsupported frontend protocol 5635.1\0\0"
    conn.sendall(b"E" + (4 + len(fields)).to_bytes(4, "big") + fields)


def _http_400(conn: socket.socket) -> None:
    conn.recv(1024)
    body = b"<html>400 The plain HTTP request was sent to HTTPS port</html>"
    head = b"HTTP/1.1 400 Bad Request\r\nServer: nginx\r\nContent-Length: %d\r\n\r\n"
    conn.sendall(head % len(body) + body)


@pytest.fixture
def http_port() -> Iterator[int]:
    """A plain HTTP port (no TLS): it answers the ClientHello as nginx answers a bad request."""
    with serving(_http_400) as port:
        yield port


def check(target: str, *flags: str, cafile: str) -> tuple[int, str, dict[str, Any]]:
    """The text and the JSON report of one check."""
    status, out = run_cli("check", target, "--cafile", cafile, "--timeout", "0.5", *flags)
    json_status, json_out = run_cli(
        "check", target, "--cafile", cafile, "--timeout", "0.5", "--json", *flags
    )
    assert json_status == status
    return status, out, json.loads(json_out)


@pytest.fixture
def cafile(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def assert_connection_failure(out: str, data: dict[str, Any], message: str, hint: str) -> None:
    assert "no TLS handshake took place: a connection problem, not a certificate problem" in out
    assert f"connection  FAILS: {message}" in out, out
    assert ("hint" in out) == bool(hint), out
    if hint:
        assert f"hint        {hint}" in out
    # Not a certificate problem, in words or in fields.
    assert "not trusted" not in out and "verification fails for every name" not in out
    assert "certificate" not in out.split("\n\n", 1)[1].replace("certificate problem", "")
    assert data["connection_error"] == message and data["hint"] == hint
    assert data["certificate_error"] == "" and data["certificate_names"] == []
    assert data["verified_with_tls_name"] is False
    # The next name would meet the same port: one attempt only.
    assert [h["problem"] for h in data["handshakes"]] == ["connection"]


def test_refused_port(cli_dns: ClusterDNS, cafile: str, closed_port: int) -> None:
    status, out, data = check(f"database:{closed_port}", cafile=cafile)
    assert status == 1
    where = f"127.0.0.1:{closed_port}"
    assert_connection_failure(
        out, data, f"{where} refused the connection: nothing listens on that port", ""
    )


def test_silent_port(cli_dns: ClusterDNS, cafile: str, silent_port: int) -> None:
    status, out, data = check(f"database:{silent_port}", cafile=cafile)
    assert status == 1
    where = f"127.0.0.1:{silent_port}"
    message = (
        f"{where} accepted the connection but sent no answer to the TLS ClientHello within 0.5 s"
    )
    assert_connection_failure(out, data, message, "")


def test_plain_http_port(cli_dns: ClusterDNS, cafile: str, http_port: int) -> None:
    status, out, data = check(f"database:{http_port}", cafile=cafile)
    assert status == 1
    message = (
        f"127.0.0.1:{http_port} answered the TLS ClientHello with plain text "
        "('HTTP/1.1 400 Bad Request'), not TLS"
    )
    hint = "the port does not speak TLS: the wrong port, or TLS is not enabled there"
    assert_connection_failure(out, data, message, hint)


def test_postgres_port_without_postgres_flag(
    cli_dns: ClusterDNS, ca: trustme.CA, cafile: str
) -> None:
    # TLSServer(postgres=True) answers the first 8 bytes with "S", as to an SSLRequest.
    with TLSServer(ca=ca, default_names=[RDS], postgres=True) as server:
        status, out, data = check(f"database:{server.port}", cafile=cafile)
    assert status == 1
    message = (
        f"127.0.0.1:{server.port} answered the TLS ClientHello with 'S' "
        "(PostgreSQL's answer to an SSLRequest), not TLS"
    )
    assert_connection_failure(out, data, message, HINT_POSTGRES)


@pytest.mark.parametrize(
    "handle, message",
    [
        pytest.param(
            _close,
            "127.0.0.1:{port} closed the connection without answering the TLS ClientHello",
            id="closes-on-a-client-hello",
        ),
        pytest.param(
            _pg_error,
            "127.0.0.1:{port} answered the TLS ClientHello with a PostgreSQL error "
            "(unsupported frontend protocol 5635.1), not TLS",
            id="answers-with-a-postgres-error",
        ),
    ],
)
def test_postgres_server_that_refuses_a_client_hello(
    cli_dns: ClusterDNS, cafile: str, handle: Callable[[socket.socket], object], message: str
) -> None:
    with serving(handle) as port:
        status, out, data = check(f"database:{port}", cafile=cafile)
    assert status == 1
    assert_connection_failure(out, data, message.format(port=port), HINT_POSTGRES)


def test_postgres_flag_on_an_https_port(cli_dns: ClusterDNS, ca: trustme.CA, cafile: str) -> None:
    with TLSServer(ca=ca, default_names=[RDS]) as server:
        status, out, data = check(f"database:{server.port}", "--postgres", cafile=cafile)
    assert status == 1
    assert data["connection_error"] == (
        f"127.0.0.1:{server.port} closed the connection without answering PostgreSQL's SSLRequest"
    )
    assert data["hint"] == "not a PostgreSQL server? probe it without --postgres"
    assert "no TLS handshake took place" in out


def test_postgres_without_tls(cli_dns: ClusterDNS, cafile: str) -> None:
    def no_tls(conn: socket.socket) -> None:
        conn.recv(8)
        conn.sendall(b"N")  # PostgreSQL with ssl = off

    with serving(no_tls) as port:
        status, out, data = check(f"database:{port}", "--postgres", cafile=cafile)
    assert status == 1 and "no TLS handshake took place" in out
    assert data["connection_error"] == (
        f"127.0.0.1:{port} answered N to PostgreSQL's SSLRequest: "
        "the PostgreSQL server does not offer TLS"
    )


@pytest.mark.parametrize(
    "stage, error, heard, port, postgres, want",
    [
        # The default PostgreSQL port, probed as HTTPS, and silent: --postgres is the hint.
        ("handshake", TimeoutError(), b"", 5432, False, HINT_POSTGRES),
        ("handshake", TimeoutError(), b"", 8443, False, ""),
        (
            "handshake",
            ConnectionResetError(104, "Connection reset by peer"),
            b"",
            443,
            False,
            HINT_POSTGRES,
        ),
        ("handshake", None, b"SSH-2.0-OpenSSH_9.2\r\n", 5432, False, HINT_POSTGRES),
        (
            "handshake",
            None,
            b"SSH-2.0-OpenSSH_9.2\r\n",
            22,
            False,
            "the port does not speak TLS: the wrong port, or TLS is not enabled there",
        ),
        ("handshake", None, b"\x00\x01\x02\x03", 9000, False, ""),
        # With --postgres, the PostgreSQL hint never comes back.
        ("handshake", None, b"", 5432, True, ""),
        (
            "sslrequest",
            None,
            b"\x15\x03\x03\x00\x02\x02\x32",
            443,
            True,
            "not a PostgreSQL server? probe it without --postgres",
        ),
        ("connect", ConnectionRefusedError(111, "Connection refused"), b"", 5432, False, ""),
    ],
)
def test_connection_hints(
    stage: str, error: BaseException | None, heard: bytes, port: int, postgres: bool, want: str
) -> None:
    message, hint = connection_problem(Probe("127.0.0.1", port, postgres, 1.0), stage, error, heard)
    assert hint == want
    assert f"127.0.0.1:{port}" in message


# --- item 12: no cluster DNS here ---------------------------------------------------------


@pytest.fixture
def outside_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    """A laptop: no KUBERNETES_SERVICE_HOST, no namespace from a service account."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setattr("kubealias._config.NAMESPACE_FILE", "/nonexistent/namespace")
    monkeypatch.setattr(
        "kubealias._resolver.NAMESPACE_FILE", "/nonexistent/namespace", raising=False
    )


def test_no_nameserver_answers_outside_a_pod(
    outside_pod: None, closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBEALIAS_NAMESERVERS", f"127.0.0.1:{closed_port}")
    monkeypatch.setenv("KUBEALIAS_SEARCH", "example.test")
    monkeypatch.setenv("KUBEALIAS_TIMEOUT", "0.5")
    status, out = run_cli("check", "database.production.svc.cluster.local:5432", "--postgres")
    assert status == 1
    first, second = out.splitlines()
    assert first.startswith("error: cannot resolve 'database.production.svc.cluster.local'")
    assert second == f"hint: {HINT_NO_CLUSTER_DNS}"
    status, out = run_cli("check", "database.production.svc.cluster.local:5432", "--json")
    assert json.loads(out)["hint"] == HINT_NO_CLUSTER_DNS
    assert json.loads(out)["type"] == "ResolutionError"


def test_service_name_unknown_outside_a_pod(
    outside_pod: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No cluster search domain: "database" is passed through to the system resolver, which
    # does not know it either.
    monkeypatch.setenv("KUBEALIAS_SEARCH", "example.test")
    unknown_to_getaddrinfo(monkeypatch, "database")
    status, out = run_cli("check", "database:5432", "--postgres")
    assert status == 1
    assert out == (
        f"error: cannot resolve database: Name or service not known\nhint: {HINT_NO_CLUSTER_DNS}\n"
    )
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")  # in a pod: no such hint
    status, out = run_cli("check", "database:5432", "--postgres")
    assert out == "error: cannot resolve database: Name or service not known\n"
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    status, out = run_cli("check", "api.example.test:443")  # not a Service name: no such hint
    assert "hint" not in out


@pytest.mark.parametrize(
    "host, error, namespace, want",
    [
        ("database", socket.gaierror(-2, "Name or service not known"), None, True),
        ("database", socket.gaierror(-2, "Name or service not known"), "production", False),
        ("api.stripe.com", socket.gaierror(-2, "Name or service not known"), None, False),
        ("database", ResolutionError("DNS failure: timed out", name="database"), None, True),
        # A CNAME was seen: a DNS server answered, this is something else.
        (
            "database",
            ResolutionError("missing target", name="database", chain=["database.x", "rds.y"]),
            None,
            False,
        ),
    ],
)
def test_no_cluster_dns_rule(
    host: str, error: BaseException, namespace: str | None, want: bool
) -> None:
    config = Config.from_env(
        {}, resolv_conf=io.StringIO(""), namespace_file=None, namespace=namespace
    )
    assert no_cluster_dns(host, error, config, {}) is want


# --- item 12: every error names its host or file ------------------------------------------


@pytest.mark.parametrize(
    "argv, want",
    [
        (
            ["check", "database:443", "--cafile", "/nonexistent/ca.pem"],
            "error: --cafile /nonexistent/ca.pem: No such file or directory",
        ),
        (["check", "database:abc"], "error: database:abc: the port must be a number"),
        (["check", "no-such-host.invalid:443"], "error: cannot resolve no-such-host.invalid: "),
    ],
)
def test_errors_name_their_subject(cli_dns: ClusterDNS, argv: list[str], want: str) -> None:
    status, out = run_cli(*argv)
    assert status == 1 and out.startswith(want), out


def test_cafile_that_is_not_pem(cli_dns: ClusterDNS, tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a certificate\n")
    status, out = run_cli("check", "database:443", "--cafile", str(path))
    assert status == 1 and out.startswith(f"error: --cafile {path}: "), out

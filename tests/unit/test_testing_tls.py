"""kubealias.testing.TLSServer: SNI virtual hosts, the default certificate, records, close."""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import struct
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

import kubealias.testing._tls
from kubealias.testing import DEFAULT_NAMES, ClusterDNS, TLSReply, TLSRequest, TLSServer
from tests.unit.conftest import run_readme_tests

ROOT = Path(__file__).resolve().parents[2]
API = "api.example.test"
DB = "db.example.test"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server(ca: trustme.CA) -> Iterator[TLSServer]:
    with TLSServer([API, DB], ca=ca) as tls:
        yield tls


def handshake(
    server: TLSServer, sni: str | None, *, alpn: bool = False, verify: bool = True
) -> ssl.SSLSocket:
    """A TLS connection to ``server`` sending ``sni`` (none for ``None``)."""
    context = server.client_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols(["http/1.1"])
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    try:
        return context.wrap_socket(sock, server_hostname=sni)
    except BaseException:
        sock.close()
        raise


def sans(tls: ssl.SSLSocket) -> Any:
    """The subjectAltName of the verified peer certificate."""
    cert = tls.getpeercert()
    assert cert is not None  # None only before the handshake
    return cert["subjectAltName"]


def get(tls: ssl.SSLSocket, host: str, path: str = "/", method: str = "GET") -> tuple[int, Any]:
    """One HTTP/1.1 request on an open TLS connection; returns (status, JSON body or b"")."""
    conn = http.client.HTTPConnection("unused")
    conn.sock = tls
    conn.request(method, path, headers={"Host": host})
    response = conn.getresponse()
    body = response.read()
    return response.status, (json.loads(body) if body else b"")


# --- SNI selects the certificate ----------------------------------------------------------------


@pytest.mark.parametrize("name", [API, DB, API.upper()])
def test_each_name_gets_its_own_certificate(server: TLSServer, name: str) -> None:
    with handshake(server, name) as tls:
        assert sans(tls) == (("DNS", name.lower()),)
        assert tls.recv(100) == f"hello, verified client of {name}\n".encode()  # recorded by now
    assert server.connections[-1].sni == name
    assert server.connections[-1].vhost == name.lower()


def test_unknown_sni_gets_the_default_certificate(server: TLSServer) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        handshake(server, "database")
    with handshake(server, "database", verify=False) as tls:
        assert tls.recv(100) == b"hello, verified client of database\n"
    assert (server.connections[-1].sni, server.connections[-1].vhost) == ("database", None)


def test_no_sni_gets_the_default_certificate_valid_for_127_0_0_1(server: TLSServer) -> None:
    # An IP literal as server_hostname: Python sends no SNI and verifies the address.
    with handshake(server, "127.0.0.1") as tls:
        names = sans(tls)
        assert tls.recv(100) == b"hello, verified client of \n"
    assert ("IP Address", "127.0.0.1") in names
    assert (server.connections[-1].sni, server.connections[-1].vhost) == (None, None)


def test_default_names_can_be_chosen(ca: trustme.CA) -> None:
    with TLSServer(ca=ca, default_names=[DB]) as server, handshake(server, DB) as tls:
        assert sans(tls) == (("DNS", DB),)
    assert (server.connections[-1].sni, server.connections[-1].vhost) == (DB, None)
    assert DEFAULT_NAMES == ("127.0.0.1", "*.cdn.invalid")  # the documented default


# --- what the server records and answers -------------------------------------------------------


def test_requests_are_recorded_with_sni_host_and_peer(server: TLSServer) -> None:
    with handshake(server, API, alpn=True) as tls:
        first = get(tls, f"{API}:{server.port}", "/v1/charges?x=1")
        second = get(tls, "payment-api")
        local = tls.getsockname()
    assert first[0] == 200 and second[0] == 421  # Host names another host than the SNI
    assert first[1] == {
        "sni": API,
        "host": API,
        "http_host": f"{API}:{server.port}",
        "server": API,
        "method": "GET",
        "path": "/v1/charges?x=1",
        "connection": server.connections[-1].number,
        "requests": 1,
        "body": "",
    }
    (conn,) = server.connections
    assert (conn.sni, conn.vhost, conn.alpn, conn.peer) == (API, API, "http/1.1", local)
    assert [(r.number, r.host, r.target) for r in conn.requests] == [
        (1, f"{API}:{server.port}", "/v1/charges?x=1"),
        (2, "payment-api", "/"),
    ]
    assert server.requests == list(conn.requests)
    assert all(r.connection == conn.number and r.sni == API for r in server.requests)


def test_no_sni_or_unknown_sni_is_misdirected(server: TLSServer) -> None:
    with handshake(server, "127.0.0.1", alpn=True) as tls:
        status, body = get(tls, "127.0.0.1")
    assert (status, body["sni"], body["server"]) == (421, "", "default")


def test_an_app_answers_and_head_gets_no_body(ca: trustme.CA) -> None:
    seen: list[TLSRequest] = []

    def app(request: TLSRequest) -> TLSReply:
        seen.append(request)
        return TLSReply(201, b"made", (("X-Seen", request.sni or "-"),))

    with TLSServer([API], ca=ca, app=app) as server, handshake(server, API, alpn=True) as tls:
        conn = http.client.HTTPConnection("unused")
        conn.sock = tls
        conn.request("POST", "/things", body=b"payload", headers={"Host": API})
        made = conn.getresponse()
        assert (made.status, made.read(), made.getheader("X-Seen")) == (201, b"made", API)
        conn.request("HEAD", "/things", headers={"Host": API})
        head = conn.getresponse()
        assert (head.status, head.getheader("Content-Length"), head.read()) == (201, "4", b"")
    assert [(r.method, r.body) for r in seen] == [("POST", b"payload"), ("HEAD", b"")]


@pytest.mark.parametrize(
    "http, alpn, speaks_http",
    [(None, True, True), (None, False, False), (True, False, True), (False, True, False)],
)
def test_http_or_greeting(ca: trustme.CA, http: bool | None, alpn: bool, speaks_http: bool) -> None:
    with TLSServer([API], ca=ca, http=http) as server, handshake(server, API, alpn=alpn) as tls:
        if speaks_http:
            assert get(tls, API)[0] == 200
        else:
            assert tls.recv(100) == f"hello, verified client of {API}\n".encode()


def test_postgres_sslrequest_is_answered_before_tls(ca: trustme.CA) -> None:
    with (
        TLSServer([DB], ca=ca, postgres=True) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock,
    ):
        sock.sendall(struct.pack("!ii", 8, 80877103))
        assert sock.recv(1) == b"S"
        with server.client_context().wrap_socket(sock, server_hostname=DB) as tls:
            assert tls.recv(100) == f"hello, verified client of {DB}\n".encode()


def test_client_certificate_can_be_required(ca: trustme.CA, tmp_path: Path) -> None:
    with TLSServer([API], ca=ca, require_client_cert=True) as server:
        # TLS 1.3 reports the refusal on the first read, after the client's handshake ends.
        with pytest.raises((ssl.SSLError, ConnectionError)), handshake(server, API) as tls:
            tls.recv(100)
        context = server.client_context()
        ca.issue_cert("client.example.test").configure_cert(context)
        with (
            socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock,
            context.wrap_socket(sock, server_hostname=API) as tls,
        ):
            assert tls.recv(100).startswith(b"hello")
        assert [c.sni for c in server.connections] == [API]


def test_cafile_and_url(server: TLSServer) -> None:
    assert Path(server.cafile).read_bytes() == server.ca.cert_pem.bytes()
    assert server.url("payment-api", "/x") == f"https://payment-api:{server.port}/x"
    assert server.names == (API, DB)
    context = ssl.create_default_context(cafile=server.cafile)
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname=DB),
    ):
        pass


# --- close --------------------------------------------------------------------------------------


def test_close_ends_connections_threads_and_files(ca: trustme.CA) -> None:
    def serving() -> int:
        return sum(t.name == "kubealias-tls-server" for t in threading.enumerate())

    before = serving()
    server = TLSServer([API], ca=ca).start()
    cafile = server.cafile
    tls = handshake(server, API, alpn=True)
    assert get(tls, API)[0] == 200  # a keep-alive connection, open and idle
    server.close()
    with tls:
        assert tls.recv(100) == b""  # the server closed it
    assert not Path(cafile).exists()
    assert serving() == before
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
    server.close()  # again: nothing left to do


def test_binds_loopback_only(server: TLSServer) -> None:
    with pytest.raises(ConnectionRefusedError):  # another loopback address: nobody listens
        socket.create_connection(("127.0.0.2", server.port), timeout=5).close()


def test_missing_trustme_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "trustme", None)
    with pytest.raises(ImportError, match=re.escape("pip install 'kubealias[demo]'")):
        TLSServer([API])


# --- the documented examples run ----------------------------------------------------------------


def test_module_docstring_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    doc = kubealias.testing._tls.__doc__ or ""
    code = textwrap.dedent(doc.split("::\n\n", 1)[1].split("\n\nIt speaks", 1)[0])
    exec(compile(code, "kubealias/testing/_tls.py", "exec"), {})
    assert capsys.readouterr().out.splitlines() == [
        "hello, verified client of mydb.example.test",
        "Hostname mismatch, certificate is not valid for 'database'.",
    ]


def test_readme_example_runs(cluster_dns: ClusterDNS) -> None:
    run_readme_tests("### A TLS server for the external name", cluster_dns)

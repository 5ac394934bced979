"""Fixtures for the requests and urllib3 adapter tests: cluster DNS aliases and loopback servers.

The names are shared by ``test_requests_adapter.py``, ``test_urllib3_manager.py`` and
``test_httpx_adapter.py`` (which import the constants from here).

The libpq adapter tests (``test_psycopg_rewrite.py``, ``test_sqlalchemy_django.py``) share the
last section: ``pg_dns`` (the article's Services plus ``replicas``, an alias with two
addresses; a module that needs other addresses overrides it and ``pg_resolver`` follows),
``pg_resolver`` and ``closed_port``, and import its constants.

Every server binds 127.0.0.1 only. :data:`ALIASES` are ExternalName services in namespace
``production`` of the in-process cluster DNS, each a CNAME to an external name whose A records
are loopback addresses (127.0.0.2 and 127.0.0.3 have nothing listening: connections are refused).
"""

from __future__ import annotations

import io
import ipaddress
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import trustme
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool

from kubealias import Resolver
from kubealias._cli import main
from kubealias.testing import ClusterDNS, FakeClock, TLSReply, TLSRequest, TLSServer

PAYMENT = "payment.example.test"
SECOND = "second.example.test"
MULTI = "multi.example.test"  # two A records, the first with nothing listening
WRONG = "wrong.example.test"  # the server has no certificate for it: the default one, and 421
DEAD = "dead.example.test"  # no address accepts

ALIASES = [
    ("payment-api", PAYMENT, ["127.0.0.1"]),
    ("second-api", SECOND, ["127.0.0.1"]),
    ("multi-api", MULTI, ["127.0.0.2", "127.0.0.1"]),
    ("wrong-api", WRONG, ["127.0.0.1"]),
    ("dead-api", DEAD, ["127.0.0.2", "127.0.0.3"]),
]


def url(port: int, host: str, path: str = "/", scheme: str = "https") -> str:
    """``scheme://host:port/path``."""
    return f"{scheme}://{host}:{port}{path}"


def host_header(pool: HTTPConnectionPool, **headers: str) -> str | None:
    """The Host line a request on a new connection of ``pool`` would send (no I/O).

    Args:
        pool: a urllib3 pool (urllib3's own or kubealias's).
        **headers: the request's headers; a ``Host`` among them means urllib3 adds none.

    Returns:
        The value of the Host line, or None when there is none.
    """
    conn = pool._new_conn()
    assert isinstance(conn, HTTPConnection)
    conn.putrequest("GET", "/", skip_host="host" in {k.lower() for k in headers})
    # http.client keeps the unsent header lines in _buffer, which typeshed does not declare.
    lines = [line.decode() for line in conn._buffer]  # type: ignore[attr-defined]
    hosts = [line.split(": ", 1)[1] for line in lines if line.lower().startswith("host:")]
    assert len(hosts) <= 1
    return hosts[0] if hosts else None


# --- certificates and the TLS server -------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def cafile(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The test CA as a PEM file: ``verify=`` for requests, ``ca_certs=`` for urllib3."""
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="module")
def other_cafile(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A CA that issued none of the servers' certificates."""
    path = tmp_path_factory.mktemp("other-ca") / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return str(path)


def echo(request: TLSRequest) -> TLSReply:
    """The adapter suites' answer: what the server saw, judged by SNI alone.

    ``{"sni": <SNI or None>, "host": <Host as sent>, "conn": <connection number>, "path": <path
    without query>, "method": ..., "body": <text>}``: 421 for an SNI the server has no
    certificate for (as nginx's default_server in the lab), 200 otherwise, also without SNI (an
    IP literal; the default certificate is valid for 127.0.0.1); ``/redirect?to=URL`` answers
    302 to URL.
    """
    url = urlsplit(request.target)
    status, headers = 200, {}
    if request.sni is not None and request.vhost is None:
        status = 421  # Misdirected Request
    elif url.path == "/redirect":
        status, headers = 302, {"Location": parse_qs(url.query)["to"][0]}
    return TLSReply.json(
        {
            "sni": request.sni,
            "host": request.host,
            "conn": request.connection,
            "path": url.path,
            "method": request.method,
            "body": request.body.decode("latin-1"),
        },
        status=status,
        headers=headers,
    )


@pytest.fixture(scope="module")
def server(ca: trustme.CA) -> Iterator[TLSServer]:
    with TLSServer([PAYMENT, SECOND, MULTI, "localhost"], ca=ca, app=echo, http=True) as tls:
        yield tls


@pytest.fixture(scope="module")
def mtls_server(ca: trustme.CA) -> Iterator[TLSServer]:
    """An echo server that requires a client certificate issued by ``ca``."""
    with TLSServer([PAYMENT], ca=ca, app=echo, http=True, require_client_cert=True) as tls:
        yield tls


@pytest.fixture(scope="module")
def client_cert(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """``(certificate chain, key)`` PEM files of a client certificate issued by ``ca``."""
    leaf = ca.issue_cert("client.example.test")
    folder = tmp_path_factory.mktemp("client")
    cert, key = folder / "client.pem", folder / "client.key"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    return str(cert), str(key)


# --- other loopback servers ---------------------------------------------------------------------


class _PlainHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server: _PlainServer

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.count += 1
            self.conn_id = self.server.count

    def do_GET(self) -> None:
        payload = json.dumps(
            {"sni": None, "host": self.headers.get("Host"), "conn": self.conn_id, "path": self.path}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _PlainServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _PlainHandler)
        self.lock = threading.Lock()
        self.count = 0


@pytest.fixture(scope="module")
def plain_server() -> Iterator[_PlainServer]:
    """A plain-HTTP echo (the TLS echo server has no plain listener): same JSON, ``sni`` None."""
    httpd = _PlainServer()
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose listener completes TCP handshakes but never reads: TLS never starts."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as listener:
        yield listener.getsockname()[1]


@pytest.fixture
def blackhole_port() -> Iterator[int]:
    """A port where connecting times out: its accept queue is full, so Linux drops new SYNs."""
    with socket.create_server(("127.0.0.1", 0), backlog=0) as listener:
        port = listener.getsockname()[1]
        filler = socket.create_connection(("127.0.0.1", port), timeout=1)
        with filler:
            yield port


# --- the cluster DNS and resolvers --------------------------------------------------------------


@pytest.fixture
def dns(cluster_dns: ClusterDNS) -> ClusterDNS:
    for service, target, addresses in ALIASES:
        cluster_dns.external_name(service, "production", target)
        cluster_dns.record(target, "A", addresses)
    return cluster_dns


@pytest.fixture
def resolver(dns: ClusterDNS) -> Resolver:
    return dns.resolver(timeout=1)


@pytest.fixture
def clock() -> FakeClock:
    """A :class:`kubealias.testing.FakeClock` at 1000.0: give it to a resolver as ``clock=``."""
    return FakeClock()


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every host name (not IP literal) given to getaddrinfo while the test runs."""
    names: list[str] = []
    real = socket.getaddrinfo

    def spy(host: Any, *args: Any, **kwargs: Any) -> Any:
        text = host.decode() if isinstance(host, bytes) else host
        try:
            ipaddress.ip_address(text)
        except (TypeError, ValueError):
            names.append(text)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", spy)
    return names


def unknown_to_getaddrinfo(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Make ``socket.getaddrinfo`` fail for ``name`` as for a name no DNS server knows
    (``EAI_NONAME``) without sending a query; other names resolve as before."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == name:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def wait_for(condition: Callable[[], bool], timeout: float = 3.0) -> bool:
    """Poll ``condition`` every 10 ms until it holds (True) or ``timeout`` seconds pass (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.01)
    return False


EC2 = "ec2-127-0-0-10.compute-1.amazonaws.com"  # the host name behind RDS (below)


def add_database(dns: ClusterDNS) -> ClusterDNS:
    """Add the article's ``database`` (an alias of RDS, itself a CNAME to EC2 at 127.0.0.10,
    TTL 60) and ``orders`` (a ClusterIP Service at 127.0.0.40) to ``dns``, and return it."""
    dns.external_name("database", "production", RDS)
    dns.record(RDS, "CNAME", EC2, ttl=60)
    dns.record(EC2, "A", "127.0.0.10")
    dns.cluster_ip("orders", "production", "127.0.0.40")
    return dns


# --- the libpq adapters: cluster DNS and a closed port -------------------------------------------

RDS = "mydb.abc123.us-east-1.rds.amazonaws.com"  # the TLS name of `database`
PROD = "prod-db.abc123.us-east-1.rds.amazonaws.com"  # the TLS name of `postgres`
REPLICAS = "replicas.example.test"  # the TLS name of `replicas`: two addresses
REDIS = "redis.shared-infra.svc.cluster.local"  # `shared-cache.app-team-a` stays in the cluster
DATABASE_FQDN = "database.production.svc.cluster.local"
PASSWORD = "Pw-9f2c-TOKEN"  # never to be seen in an error or a log record


@pytest.fixture
def pg_dns(cluster_dns: ClusterDNS) -> ClusterDNS:
    cluster_dns.article_services()  # database -> RDS -> EC2 (127.0.0.10), postgres, orders...
    cluster_dns.external_name("replicas", "production", REPLICAS)
    cluster_dns.record(REPLICAS, "A", ["127.0.0.21", "127.0.0.22"])
    return cluster_dns


@pytest.fixture
def pg_resolver(pg_dns: ClusterDNS) -> Resolver:
    return pg_dns.resolver(timeout=1)


@pytest.fixture
def closed_port() -> int:
    """A TCP port with nothing listening (on any loopback address: 127/8 is all ``lo``)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the command line ---------------------------------------------------------------------------


@pytest.fixture
def cli_dns(cluster_dns: ClusterDNS, monkeypatch: pytest.MonkeyPatch) -> ClusterDNS:
    """The cluster DNS of the CLI tests, its nameserver and search path in the environment:
    ``database`` (an alias of :data:`RDS`, at 127.0.0.1) and ``orders`` (a ClusterIP Service)."""
    cluster_dns.external_name("database", "production", RDS)
    cluster_dns.record(RDS, "A", "127.0.0.1")
    cluster_dns.cluster_ip("orders", "production", "127.0.0.1")
    for key, value in cluster_dns.env().items():
        monkeypatch.setenv(key, value)
    return cluster_dns


def run_cli(*argv: str) -> tuple[int, str]:
    """``kubealias *argv`` in-process: ``(exit status, standard output)``."""
    out = io.StringIO()
    status = main(list(argv), stdout=out)
    return status, out.getvalue()


def run_readme_tests(heading: str, cluster_dns: ClusterDNS) -> None:
    """Run the ``test_*`` functions of the first Python block under ``heading`` in the README,
    with ``cluster_dns``: the README's examples are code that runs."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split(heading, 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    tests = [fn for name, fn in namespace.items() if name.startswith("test_")]
    assert tests
    for test in tests:
        test(cluster_dns)

"""Reliability: hostile DNS answers, the complete catalogue (issue 5).

Every case of :data:`CASES` makes the in-process cluster DNS (:class:`ClusterDNS` with its fault
injection and :func:`raw_cname`) answer for the service ``hostile`` in a way a client must not
trust. For each one:

* ``resolve`` and ``aresolve`` raise the case's :class:`KubeAliasError` subclass, whose message
  names the input (``'hostile'``), the reason and the chain seen so far, within
  ``KUBEALIAS_TIMEOUT`` plus a small margin;
* every adapter (requests ``Session``, urllib3 ``PoolManager``, httpx ``HTTPTransport`` and
  ``AsyncHTTPTransport``, ``kubealias.psycopg.connect`` and ``AsyncConnection``) pointed at
  ``hostile`` raises its client's documented error with the kubealias error as the cause, in
  time, and connects nowhere: the lure listener on 127.0.0.77 (the address the hostile answers
  give) saw no connection, no name went to ``getaddrinfo`` and no address off loopback was
  asked for (:mod:`tests.reliability._netguard`).

:data:`HARMLESS` holds hostile answers that the design says to survive, not refuse: records of
other owners around a valid chain (ignored), a 64 KiB answer over TCP after truncation; they
resolve to the genuine chain and address only, and the request reaches the genuine server.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import dns.message
import dns.rrset
import httpx
import psycopg
import pytest
import requests
import urllib3

import kubealias.psycopg
from kubealias import ChainError, KubeAliasError, ResolutionError, Resolver
from kubealias.httpx import AsyncHTTPTransport, HTTPTransport
from kubealias.requests import Session
from kubealias.testing import ClusterDNS, Fault, raw_cname
from kubealias.urllib3 import PoolManager
from tests.reliability._exceptions import exception_chain
from tests.reliability._netguard import Listener, NetGuard, install

SERVICE = "hostile"
FQDN = "hostile.production.svc.cluster.local"
LURE = "127.0.0.77"
#: KUBEALIAS_TIMEOUT of every resolver here, and the slack allowed past it (thread start-up,
#: a loaded CI machine).
TIMEOUT = 0.4
MARGIN = 0.3
SECRET = "PW-hostile-7f3a9c1e5b"


@dataclass(frozen=True)
class Case:
    """One hostile answer and what it must raise."""

    id: str
    covers: str
    """The item of issue 5's list this case belongs to."""
    setup: Callable[[ClusterDNS], None]
    error: type[KubeAliasError]
    reason: str
    """A regular expression the error's message must match."""
    chain: tuple[str, ...] = (FQDN,)
    """The chain the error must report (the chain seen so far)."""


def _data_chain(server: ClusterDNS, hops: int, last: str = "") -> None:
    """``hostile`` -> h0.chain.test -> ... -> h{hops-1}.chain.test (-> ``last``), in the data."""
    server.external_name(SERVICE, "production", "h0.chain.test")
    for i in range(hops - 1):
        server.record(f"h{i}.chain.test", "CNAME", f"h{i + 1}.chain.test")
    if last:
        server.record(f"h{hops - 1}.chain.test", "CNAME", last)


def _edge_chain(server: ClusterDNS, hops: int) -> None:
    """The same chain from a server that stops at every zone edge: one CNAME per answer, no
    SOA, so the client asks for each hop itself."""
    names = [FQDN, *(f"h{i}.chain.test" for i in range(hops))]
    for owner, target in itertools.pairwise(names):
        server.raw_answer(owner, None, raw_cname(target, address=LURE))


def _lure(target: str | list[bytes]) -> Callable[[ClusterDNS], None]:
    """A CNAME written byte for byte, with an A record for the target pointing at the lure."""
    return lambda server: server.raw_answer(FQDN, None, raw_cname(target, address=LURE))


def _fault(kind: Fault, name: str | None = FQDN) -> Callable[[ClusterDNS], None]:
    def setup(server: ClusterDNS) -> None:
        _genuine(server)
        server.fault(name, kind)

    return setup


def _loop_self(server: ClusterDNS) -> None:
    server.external_name(SERVICE, "production", FQDN)


def _loop_across_queries(server: ClusterDNS) -> None:
    server.raw_answer(FQDN, None, raw_cname("ping.example.test"))
    server.raw_answer("ping.example.test", None, raw_cname("pong.example.test"))
    server.raw_answer("pong.example.test", None, raw_cname("ping.example.test"))


def _ip_literal_in_data(server: ClusterDNS) -> None:
    server.external_name(SERVICE, "production", LURE)  # ExternalName: 127.0.0.77
    server.record(LURE, "A", LURE)


def _large_to_ip_literal(server: ClusterDNS) -> None:
    _ip_literal_in_data(server)
    server.fault(FQDN, Fault.LARGE)


def _dangling_to_invalid(server: ClusterDNS) -> None:
    # The target is unknown to the server: CNAME + NXDOMAIN; the target is still checked.
    server.external_name(SERVICE, "production", "bad_name.example.test")


def _other_question(server: ClusterDNS) -> None:
    def build(query: dns.message.Message) -> bytes:
        # A well-formed answer, with the query's id, to a question for another name.
        other = dns.message.make_query("other.example.", query.question[0].rdtype)
        other.id = query.id
        response = dns.message.make_response(other)
        response.answer.append(dns.rrset.from_text("other.example.", 5, "IN", "A", LURE))
        return response.to_wire()

    server.raw_answer(FQDN, None, build)


def _two_cnames(server: ClusterDNS) -> None:
    def build(query: dns.message.Message) -> bytes:
        response = dns.message.make_response(query)
        response.answer = [
            dns.rrset.from_text(FQDN + ".", 5, "IN", "CNAME", "genuine.example.test."),
            dns.rrset.from_text(FQDN + ".", 5, "IN", "CNAME", "evil.example.test."),
            dns.rrset.from_text("genuine.example.test.", 5, "IN", "A", LURE),
            dns.rrset.from_text("evil.example.test.", 5, "IN", "A", LURE),
        ]
        return response.to_wire()

    server.raw_answer(FQDN, None, build)


def _genuine(server: ClusterDNS, address: str = LURE) -> None:
    server.external_name(SERVICE, "production", "genuine.example.test")
    server.record("genuine.example.test", "A", address)


def _slow(server: ClusterDNS) -> None:
    _genuine(server)
    server.delay(FQDN, 5 * TIMEOUT)


HOPS = tuple(f"h{i}.chain.test" for i in range(9))
TIMED_OUT = r"DNS failure: timed out"
#: Random bytes after our id: ignored until the deadline (timed out), unless their header
#: happens to read as a truncated error response to our query (dnspython accepts an error rcode
#: without the question), whose retry over TCP then cannot be parsed (FormError).
GARBAGE = r"DNS failure: (FormError: DNS message is malformed|timed out)"
#: Every search candidate was asked, and failed, before the error.
STORM = r"server failure \(SERVFAIL\); tried: " + ", ".join(
    rf"hostile\.{domain} \(SERVFAIL\)"
    for domain in (r"production\.svc\.cluster\.local", r"svc\.cluster\.local", r"cluster\.local")
)

CASES = [
    # -- CNAME loops -----------------------------------------------------------------------
    Case(
        "loop-two-names",
        "loop",
        _fault(Fault.CNAME_LOOP),
        ChainError,
        r"CNAME loop: .* is already on the chain",
        (FQDN, f"loop-b.{FQDN}", FQDN),
    ),
    Case("loop-to-itself", "loop", _loop_self, ChainError, r"CNAME loop", (FQDN, FQDN)),
    Case(
        "loop-across-queries",
        "loop",
        _loop_across_queries,
        ChainError,
        r"CNAME loop",
        (FQDN, "ping.example.test", "pong.example.test", "ping.example.test"),
    ),
    Case(
        "loop-deep-in-data",
        "loop",
        lambda s: _data_chain(s, 3, "h1.chain.test"),
        ChainError,
        r"CNAME loop",
        (FQDN, *HOPS[:3], "h1.chain.test"),
    ),
    # -- long chains -------------------------------------------------------------------------
    Case(
        "20-hops-in-one-answer",
        "20-hops",
        lambda s: _data_chain(s, 20),
        ChainError,
        r"CNAME chain longer than 8 hops",
        (FQDN, *HOPS),
    ),
    Case(
        "20-hops-one-per-query",
        "20-hops",
        lambda s: _edge_chain(s, 20),
        ChainError,
        r"CNAME chain longer than 8 hops",
        (FQDN, *HOPS),
    ),
    # -- CNAME to an IP literal ------------------------------------------------------------
    Case(
        "to-ipv4-literal",
        "ip-literal",
        _ip_literal_in_data,
        ChainError,
        r"points to '127\.0\.0\.77', an IP address literal",
    ),
    Case(
        "to-ipv6-literal",
        "ip-literal",
        _lure([b"::1"]),
        ChainError,
        r"points to '::1', an IP address literal",
    ),
    Case(
        "to-bracketed-ipv6", "ip-literal", _lure([b"[::1]"]), ChainError, r"an IP address literal"
    ),
    Case(
        "to-ip-literal-in-64k-answer",
        "64k",
        _large_to_ip_literal,
        ChainError,
        r"an IP address literal",
    ),
    # -- empty labels: evil..example ---------------------------------------------------------
    # Unparseable on the wire: no answer at all, ignored until the deadline (see test_strays).
    Case(
        "empty-label-on-the-wire", "empty-label", _lure("evil..example"), ResolutionError, TIMED_OUT
    ),
    Case(
        "dot-inside-a-label",
        "empty-label",
        _lure([b"evil.", b"example"]),
        ChainError,
        r"points to 'evil\\\\..example', not a valid host name",
    ),
    Case("to-the-root", "empty-label", _lure([]), ChainError, r"not a valid host name"),
    # -- over-long names ---------------------------------------------------------------------
    Case(
        "300-octets-on-the-wire",
        "300-chars",
        _lure(".".join(["a" * 59] * 5)),
        ResolutionError,
        TIMED_OUT,  # unparseable (a name over 255 octets): no answer, as above
    ),
    Case(
        "300-chars-as-text",
        "300-chars",
        _lure([b"\x01" * 60] * 4),
        ChainError,
        r"not a valid host name",
    ),
    # -- bytes outside letters, digits, hyphen ---------------------------------------------
    Case(
        "underscore",
        "non-ldh",
        _lure("bad_name.example.test"),
        ChainError,
        r"'bad_name\.example\.test', not a valid host name",
    ),
    Case("space", "non-ldh", _lure([b"a b", b"example"]), ChainError, r"not a valid host name"),
    Case(
        "nul-byte", "non-ldh", _lure([b"a\x00b", b"example"]), ChainError, r"not a valid host name"
    ),
    Case(
        "high-byte",
        "non-ldh",
        _lure([b"caf\xe9", b"example"]),
        ChainError,
        r"not a valid host name",
    ),
    Case("utf-8", "non-ldh", _lure("caf\u00e9.example"), ChainError, r"not a valid host name"),
    Case("wildcard", "non-ldh", _lure("*.example.test"), ChainError, r"not a valid host name"),
    Case(
        "leading-hyphen",
        "non-ldh",
        _lure("-evil.example.test"),
        ChainError,
        r"not a valid host name",
    ),
    Case(
        "numeric-top-label",
        "non-ldh",
        _lure("evil.example.123"),
        ChainError,
        r"not a valid host name",
    ),
    Case(
        "invalid-after-nxdomain",
        "non-ldh",
        _dangling_to_invalid,
        ChainError,
        r"'bad_name\.example\.test', not a valid host name",
    ),
    Case(
        "invalid-deep-in-chain",
        "non-ldh",
        lambda s: _data_chain(s, 2, "bad_name.example.test"),
        ChainError,
        r"CNAME of h1\.chain\.test points to 'bad_name",
        (FQDN, *HOPS[:2]),
    ),
    # -- answers for another owner or question --------------------------------------------
    Case(
        "only-other-owners",
        "other-owner",
        _fault(Fault.FOREIGN),
        ResolutionError,
        r"only records of other names \('evil\.example', 'other\.example'\)",
    ),
    # Our id, another question: not the answer, so ignored until the deadline (glibc's
    # res_queriesmatch), in the sync and async paths alike (tests/unit/test_strays.py).
    Case("answer-to-another-question", "other-owner", _other_question, ResolutionError, TIMED_OUT),
    Case("two-cnames-one-owner", "other-owner", _two_cnames, ChainError, r"has 2 CNAME records"),
    # -- truncation, then a TCP server that misbehaves ------------------------------------
    Case(
        "tc-then-tcp-hangs", "tc-tcp-hang", _fault(Fault.TRUNCATE_HANG), ResolutionError, TIMED_OUT
    ),
    Case(
        "tc-then-half-a-tcp-answer",
        "tc-tcp-hang",
        _fault(Fault.TRUNCATE_PARTIAL),
        ResolutionError,
        TIMED_OUT,
    ),
    # -- storms: every name fails ----------------------------------------------------------
    Case(
        "servfail-storm",
        "servfail-storm",
        _fault(Fault.SERVFAIL, None),
        ResolutionError,
        STORM,
        (),
    ),
    Case(
        "refused-storm",
        "servfail-storm",
        _fault(Fault.REFUSED, None),
        ResolutionError,
        r"DNS failure: REFUSED",
    ),
    Case(
        "formerr-storm",
        "servfail-storm",
        _fault(Fault.FORMERR, None),
        ResolutionError,
        r"DNS failure: FORMERR",
    ),
    Case(
        "garbage-storm",
        "servfail-storm",
        _fault(Fault.GARBAGE, None),
        ResolutionError,
        GARBAGE,
    ),
    Case("silence", "servfail-storm", _fault(Fault.DROP, None), ResolutionError, TIMED_OUT),
    Case("slower-than-the-timeout", "servfail-storm", _slow, ResolutionError, TIMED_OUT),
]

#: The items of issue 5's hostile-DNS list; every one has cases.
ISSUE_ITEMS = {
    "loop",
    "20-hops",
    "ip-literal",
    "empty-label",
    "300-chars",
    "non-ldh",
    "other-owner",
    "tc-tcp-hang",
    "64k",
    "servfail-storm",
}
IDS = [case.id for case in CASES]


def test_the_catalogue_covers_every_item_of_the_issue() -> None:
    assert {case.covers for case in CASES} == ISSUE_ITEMS
    assert len(set(IDS)) == len(CASES) == 36


@pytest.fixture
def netguard(monkeypatch: pytest.MonkeyPatch) -> NetGuard:
    return install(monkeypatch)


@pytest.fixture
def lure() -> Iterator[Listener]:
    """A listener on 127.0.0.77, the address the hostile answers give."""
    listener = Listener(LURE)
    yield listener
    listener.close()


@pytest.fixture
def hostile(cluster_dns: ClusterDNS, request: pytest.FixtureRequest) -> Case:
    case: Case = request.param
    case.setup(cluster_dns)
    return case


@pytest.fixture
def resolver(cluster_dns: ClusterDNS) -> Resolver:
    return cluster_dns.resolver(timeout=TIMEOUT)


def check_error(error: BaseException, case: Case) -> None:
    """The error is the case's, names the input, the reason and the chain so far."""
    assert isinstance(error, case.error), repr(error)
    text = str(error)
    assert text.startswith(f"cannot resolve {SERVICE!r}; "), text
    assert re.search(case.reason, text), text
    assert isinstance(error, KubeAliasError)
    assert error.name == SERVICE
    assert error.chain == case.chain
    if case.chain:
        assert "chain: " + " -> ".join(case.chain) in text


def kubealias_error(error: BaseException) -> KubeAliasError:
    found = [e for e in exception_chain(error) if isinstance(e, KubeAliasError)]
    assert found, f"no KubeAliasError behind {error!r}"
    return found[0]


def nothing_reached(guard: NetGuard, listener: Listener) -> None:
    assert listener.count() == 0, "a connection was made with an unvalidated name"
    assert guard.lookups == [], "a name went to getaddrinfo"
    assert guard.off_loopback == []


# --- the resolver ---------------------------------------------------------------------------


@pytest.mark.parametrize("hostile", CASES, ids=IDS, indirect=True)
def test_resolve_refuses_in_time(
    hostile: Case, resolver: Resolver, netguard: NetGuard, lure: Listener
) -> None:
    started = time.monotonic()
    with pytest.raises(KubeAliasError) as info:
        resolver.resolve(SERVICE)
    assert time.monotonic() - started <= TIMEOUT + MARGIN
    check_error(info.value, hostile)
    # Asked again at once: the same error, from the failure cache, without waiting.
    started = time.monotonic()
    with pytest.raises(hostile.error) as again:
        resolver.resolve(SERVICE)
    assert time.monotonic() - started < 0.05
    assert str(again.value) == str(info.value)
    nothing_reached(netguard, lure)


@pytest.mark.parametrize("hostile", CASES, ids=IDS, indirect=True)
async def test_aresolve_refuses_in_time(
    hostile: Case, resolver: Resolver, netguard: NetGuard, lure: Listener
) -> None:
    started = time.monotonic()
    with pytest.raises(KubeAliasError) as info:
        await resolver.aresolve(SERVICE)
    assert time.monotonic() - started <= TIMEOUT + MARGIN
    check_error(info.value, hostile)
    nothing_reached(netguard, lure)


# --- the adapters ---------------------------------------------------------------------------


def _requests(resolver: Resolver, port: int) -> None:
    with Session(resolver=resolver) as session:
        session.get(f"https://{SERVICE}:{port}/", timeout=2)


def _urllib3(resolver: Resolver, port: int) -> None:
    with PoolManager(resolver=resolver, timeout=2) as manager:
        manager.request("GET", f"https://{SERVICE}:{port}/")


def _httpx(resolver: Resolver, port: int) -> None:
    with httpx.Client(transport=HTTPTransport(resolver=resolver), timeout=2) as client:
        client.get(f"https://{SERVICE}:{port}/")


def _httpx_async(resolver: Resolver, port: int) -> None:
    async def run() -> None:
        transport = AsyncHTTPTransport(resolver=resolver)
        async with httpx.AsyncClient(transport=transport, timeout=2) as client:
            await client.get(f"https://{SERVICE}:{port}/")

    asyncio.run(run())


PG: dict[str, Any] = {"user": "app", "password": SECRET, "dbname": "app", "sslmode": "verify-full"}


def _psycopg(resolver: Resolver, port: int) -> None:
    kubealias.psycopg.connect(host=SERVICE, port=port, connect_timeout=2, resolver=resolver, **PG)


def _psycopg_async(resolver: Resolver, port: int) -> None:
    async def run() -> None:
        cls = kubealias.psycopg.AsyncConnection.using(resolver)
        await cls.connect(host=SERVICE, port=port, connect_timeout=2, **PG)

    asyncio.run(run())


#: Each adapter and the error its client documents for a name that cannot be resolved.
ADAPTERS: dict[str, tuple[Callable[[Resolver, int], None], type[BaseException]]] = {
    "requests": (_requests, requests.ConnectionError),
    "urllib3": (_urllib3, urllib3.exceptions.MaxRetryError),
    "httpx": (_httpx, httpx.ConnectError),
    "httpx-async": (_httpx_async, httpx.ConnectError),
    "psycopg": (_psycopg, psycopg.OperationalError),
    "psycopg-async": (_psycopg_async, psycopg.OperationalError),
}


@pytest.mark.parametrize("adapter", list(ADAPTERS))
@pytest.mark.parametrize("hostile", CASES, ids=IDS, indirect=True)
def test_adapters_connect_nowhere(
    hostile: Case,
    adapter: str,
    resolver: Resolver,
    netguard: NetGuard,
    lure: Listener,
    caplog: pytest.LogCaptureFixture,
) -> None:
    call, documented = ADAPTERS[adapter]
    caplog.set_level("DEBUG")
    started = time.monotonic()
    with pytest.raises(documented) as info:
        call(resolver, lure.port)
    assert time.monotonic() - started <= TIMEOUT + MARGIN
    cause = kubealias_error(info.value)
    check_error(cause, hostile)
    if adapter != "urllib3":  # MaxRetryError names the pool and the NameResolutionError only
        assert str(cause) in str(info.value)
    nothing_reached(netguard, lure)
    for error in exception_chain(info.value):
        assert SECRET not in str(error) and SECRET not in repr(error)
    assert all(SECRET not in record.getMessage() for record in caplog.records)


# --- hostile, but to be survived -------------------------------------------------------------

GENUINE = "127.0.0.78"


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = json.dumps({"host": self.headers.get("Host")}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def genuine_server() -> Iterator[ThreadingHTTPServer]:
    """A plain HTTP server on 127.0.0.78, the address of the genuine answer."""
    httpd = ThreadingHTTPServer((GENUINE, 0), _Echo)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


HARMLESS = [
    pytest.param(Fault.WRONG_OWNER, "udp", id="other-owners-around-the-chain"),
    pytest.param(Fault.LARGE, "tcp", id="64k-answer-after-truncation"),
    pytest.param(Fault.TRUNCATE, "tcp", id="truncated-then-tcp"),
]


@pytest.mark.parametrize("fault, transport", HARMLESS)
def test_survivable_answers_resolve_to_the_genuine_chain_only(
    cluster_dns: ClusterDNS,
    resolver: Resolver,
    netguard: NetGuard,
    genuine_server: ThreadingHTTPServer,
    fault: Fault,
    transport: Literal["udp", "tcp"],
) -> None:
    _genuine(cluster_dns, GENUINE)
    cluster_dns.fault(FQDN, fault)
    started = time.monotonic()
    result = resolver.resolve(SERVICE)
    assert time.monotonic() - started <= TIMEOUT + MARGIN
    assert result.chain == (FQDN, "genuine.example.test")
    assert result.tls_name == "genuine.example.test"
    assert result.addresses == (GENUINE,)
    assert cluster_dns.query_count(FQDN, "A", transport) >= 1
    port = genuine_server.server_address[1]
    with Session(resolver=resolver) as session:
        answer = session.get(f"http://{SERVICE}:{port}/", timeout=2)
    assert answer.json() == {"host": f"genuine.example.test:{port}"}
    assert netguard.lookups == [] and netguard.off_loopback == []

"""One rule for stray datagrams, down the blocking and the async wire paths (asyncio, trio) alike.

A datagram that is not the answer to the question asked (another id, another question, not a
response, unparseable, from another address) is ignored, and the wait goes on until the try's
deadline, as glibc's ``res_send`` does. Each stray is sent just before the genuine answer, which
must then be the one returned; with strays only, the try ends at its deadline as a timeout.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator

import dns.flags
import dns.message
import dns.rdatatype
import dns.rrset
import pytest
import trio

from kubealias._transport import exchange, exchange_async

QNAME = "database.production.svc.cluster.local"
QUESTION = (QNAME, dns.rdatatype.A)
ADDRESS = "127.0.0.10"
PER_TRY = 0.4

Stray = Callable[[dns.message.Message], bytes]


def _answer(query: dns.message.Message) -> dns.message.Message:
    response = dns.message.make_response(query)
    response.answer.append(dns.rrset.from_text(QNAME + ".", 5, "IN", "A", ADDRESS))
    return response


def _other_id(query: dns.message.Message) -> bytes:
    response = _answer(query)
    response.id = (query.id + 1) % 65536
    return response.to_wire()


def _other_question(query: dns.message.Message) -> bytes:
    other = dns.message.make_query("evil.example.test.", dns.rdatatype.A)
    other.id = query.id
    response = dns.message.make_response(other)
    response.answer.append(dns.rrset.from_text("evil.example.test.", 5, "IN", "A", "127.0.0.66"))
    return response.to_wire()


def _not_a_response(query: dns.message.Message) -> bytes:
    echo = _answer(query)
    echo.flags &= ~dns.flags.QR
    return echo.to_wire()


def _unparseable(query: dns.message.Message) -> bytes:
    garbage = bytearray(query.id.to_bytes(2, "big") + bytes(10))
    garbage[5] = 1  # one question announced, none present
    return bytes(garbage)


STRAYS: dict[str, Stray] = {
    "other-id": _other_id,
    "other-question": _other_question,
    "not-a-response": _not_a_response,
    "unparseable": _unparseable,
}


class StrayServer:
    """A UDP server on 127.0.0.1 that sends strays before (or instead of) the answer.

    ``from_elsewhere`` sends the genuine answer from a second socket (another port) first:
    the right bytes from the wrong source.
    """

    def __init__(self, stray: Stray | None, *, answer: bool, from_elsewhere: bool = False) -> None:
        self.stray = stray
        self.answer = answer
        self.from_elsewhere = from_elsewhere
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> StrayServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                wire, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            query = dns.message.from_wire(wire)
            if self.stray is not None:
                self.sock.sendto(self.stray(query), peer)
            if self.from_elsewhere:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
                    other.sendto(_answer(query).to_wire(), peer)
            time.sleep(0.02)  # the stray arrives, and is read, before the answer
            if self.answer:
                self.sock.sendto(_answer(query).to_wire(), peer)

    def tries(self) -> Iterator[tuple[str, int, float]]:
        yield "127.0.0.1", self.port, PER_TRY


def _exchange(
    path: str, tries: Callable[[], Iterator[tuple[str, int, float]]], deadline: float
) -> object:
    """The reply to :data:`QUESTION` down the blocking path, or the async one on asyncio or trio."""
    if path == "sync":
        return exchange([QUESTION], tries, deadline)[0]
    if path == "trio":
        return trio.run(exchange_async, [QUESTION], tries, deadline)[0]
    return asyncio.run(exchange_async([QUESTION], tries, deadline))[0]


def _ask(server: StrayServer, path: str) -> object:
    return _exchange(path, server.tries, time.monotonic() + 2 * PER_TRY)


def _addresses(reply: object) -> list[str]:
    assert isinstance(reply, dns.message.Message), reply
    return [rdata.address for rrset in reply.answer for rdata in rrset]


PATHS = ["sync", "async", "trio"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kind", sorted(STRAYS))
def test_a_stray_before_the_answer_is_ignored(kind: str, path: str) -> None:
    with StrayServer(STRAYS[kind], answer=True) as server:
        assert _addresses(_ask(server, path)) == [ADDRESS]


@pytest.mark.parametrize("path", PATHS)
def test_an_answer_from_another_source_is_ignored(path: str) -> None:
    with StrayServer(None, answer=True, from_elsewhere=True) as server:
        assert _addresses(_ask(server, path)) == [ADDRESS]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kind", [*sorted(STRAYS), "other-source"])
def test_strays_alone_wait_until_the_deadline(kind: str, path: str) -> None:
    stray = STRAYS.get(kind)
    with StrayServer(stray, answer=False, from_elsewhere=kind == "other-source") as server:
        start = time.monotonic()
        reply = _ask(server, path)
        waited = time.monotonic() - start
    assert isinstance(reply, TimeoutError), reply
    # Kept waiting for the real answer for the whole try, not giving up at the stray.
    assert PER_TRY - 0.05 <= waited < PER_TRY + 0.5


@pytest.mark.parametrize("path", PATHS)
def test_a_closed_port_is_refused_at_once_on_both_paths(path: str) -> None:
    # Every path uses connected sockets, so every one hears ICMP "port unreachable".
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    def tries() -> Iterator[tuple[str, int, float]]:
        yield "127.0.0.1", port, PER_TRY

    deadline = time.monotonic() + PER_TRY
    start = time.monotonic()
    reply = _exchange(path, tries, deadline)
    assert isinstance(reply, ConnectionRefusedError), reply
    assert time.monotonic() - start < PER_TRY / 2

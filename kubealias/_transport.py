"""DNS on the wire: send a batch of questions, get one reply (or exception) per question.

dnspython builds, parses and does TCP; this module decides which server gets which try
(:func:`schedule`, glibc's ``res_send`` order), which datagram is an answer (:func:`accept`, one
rule for both paths), and, in the blocking path, sends the questions of a batch together (A and
AAAA at once, as glibc does) and waits for all with one selector, so a cold lookup costs one
round trip, not two. The async path does the same on asyncio or trio (:mod:`kubealias._aio`).
"""

from __future__ import annotations

import enum
import functools
import selectors
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Final, Literal

import dns.asyncbackend
import dns.asyncquery
import dns.exception
import dns.message
import dns.query
import dns.rcode

from . import _aio
from ._chain import Question, Reply
from ._config import Config

__all__ = [
    "EDNS_PAYLOAD",
    "TRUNCATED",
    "Tries",
    "accept",
    "exchange",
    "exchange_async",
    "make_query",
    "schedule",
]

#: EDNS payload we advertise (the DNS Flag Day 2020 value).
EDNS_PAYLOAD = 1232
#: What dnspython raises for a response it cannot use, plus socket errors.
_FAILURES = (dns.exception.DNSException, OSError, EOFError, ValueError)

#: Yields (server, port, seconds) for each try; see :func:`schedule`.
Tries = Iterator[tuple[str, int, float]]


class _Truncated(enum.Enum):
    TRUNCATED = "truncated"


#: What :func:`accept` returns for a truncated answer to our question: ask again over TCP.
TRUNCATED: Final = _Truncated.TRUNCATED


def schedule(config: Config, deadline: float) -> Tries:
    """(server, port, timeout) for each try, as glibc's res_send: every server, then again,
    ``attempts`` rounds; each try gets a share of what is left of the deadline.

    Args:
        config: the nameservers, ``attempts`` and per-try timeout of resolv.conf, and
            ``KUBEALIAS_TIMEOUT``.
        deadline: ``time.monotonic()`` value past which no try starts.
    """
    per_try = min(config.resolv_timeout, max(0.1, config.timeout / config.attempts))
    for _ in range(config.attempts):
        for host, port in config.nameservers:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            yield host, port, min(per_try, left)


def accept(
    wire: bytes, query: dns.message.Message
) -> dns.message.Message | Literal[_Truncated.TRUNCATED] | None:
    """The answer to ``query`` in one datagram, :data:`TRUNCATED`, or None to keep waiting.

    One rule for the blocking and the asyncio path: a datagram that is not the answer to the
    question asked (another id, another question, not a response, unparseable) is ignored and
    the wait goes on until the try's deadline, as glibc's ``res_send`` does (``res_queriesmatch``
    failing means "wait for another reply"). Giving up on a server at the first stray packet
    would let anyone who can reach the pod's port turn a lookup into a failure. Datagrams from
    another source never get here: the callers' sockets are connected, or check the source.
    """
    try:
        response = dns.message.from_wire(
            wire,
            keyring=query.keyring,
            request_mac=query.mac,
            raise_on_truncation=True,
            one_rr_per_rrset=True,
        )
    except dns.message.Truncated as truncated:
        if query.is_response(truncated.message()):  # type: ignore[no-untyped-call]
            return TRUNCATED
        return None
    except _FAILURES:
        return None
    return response if query.is_response(response) else None


def make_query(question: Question) -> dns.message.Message:
    """A recursive query with EDNS, as a stub resolver sends it."""
    qname, rdtype = question
    return dns.message.make_query(qname + ".", rdtype, use_edns=0, payload=EDNS_PAYLOAD)


def _final(response: dns.message.Message) -> bool:
    """False for the rcodes after which glibc asks the next server (SERVFAIL, REFUSED)."""
    return response.rcode() not in (dns.rcode.SERVFAIL, dns.rcode.REFUSED)


def _timeout() -> TimeoutError:
    return TimeoutError("timed out")


def exchange(
    questions: Sequence[Question], tries: Callable[[], Tries], deadline: float
) -> list[Reply]:
    """Ask every question, blocking; each question moves to the next try until it is answered.

    Args:
        questions: the batch (usually one name, A and AAAA).
        tries: makes the (server, port, seconds) of each try, as glibc's res_send orders them.
        deadline: ``time.monotonic()`` value after which nothing more is sent or awaited.

    Returns:
        For each question, the final response, or the last non-final response or exception.
    """
    queries = [make_query(q) for q in questions]
    done: list[dns.message.Message | None] = [None] * len(queries)
    last: list[Reply] = [_timeout() for _ in queries]
    for server, port, seconds in tries():
        pending = [i for i, answer in enumerate(done) if answer is None]
        if not pending:
            break
        _udp_round(
            queries,
            pending,
            server,
            port,
            min(deadline, time.monotonic() + seconds),
            deadline,
            done,
            last,
        )
    return [answer if answer is not None else last[i] for i, answer in enumerate(done)]


def _udp_round(
    queries: list[dns.message.Message],
    pending: list[int],
    server: str,
    port: int,
    end: float,
    deadline: float,
    done: list[dns.message.Message | None],
    last: list[Reply],
) -> None:
    """One try at one server for every pending question, all in flight together."""
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    owners: dict[socket.socket, int] = {}
    with selectors.DefaultSelector() as selector:
        try:
            for i in pending:
                sock = socket.socket(family, socket.SOCK_DGRAM)
                owners[sock] = i
                sock.setblocking(False)
                try:
                    # A connected socket sees ICMP "port unreachable" and only the server's replies.
                    sock.connect((server, port))
                    sock.send(queries[i].to_wire())
                except OSError as exc:
                    last[i] = exc
                    continue
                selector.register(sock, selectors.EVENT_READ)
            while selector.get_map():
                left = end - time.monotonic()
                if left <= 0:
                    return
                for key, _ in selector.select(left):
                    sock = key.fileobj  # type: ignore[assignment]
                    i = owners[sock]
                    reply = _receive(sock, queries[i], server, port, deadline)
                    if reply is None:
                        continue  # not the answer to our query: keep waiting (dnspython does)
                    selector.unregister(sock)
                    if isinstance(reply, dns.message.Message) and _final(reply):
                        done[i] = reply
                    else:
                        last[i] = reply
        finally:
            for sock in owners:
                sock.close()


def _receive(
    sock: socket.socket, query: dns.message.Message, server: str, port: int, deadline: float
) -> Reply | None:
    try:
        wire = sock.recv(65535)
    except OSError as exc:
        return exc
    reply = accept(wire, query)
    if reply is TRUNCATED:  # ask again over TCP
        left = deadline - time.monotonic()
        if left <= 0:
            return _timeout()
        try:
            return dns.query.tcp(query, server, left, port, one_rr_per_rrset=True)
        except _FAILURES as exc:
            return exc
    return reply


async def exchange_async(
    questions: Sequence[Question], tries: Callable[[], Tries], deadline: float
) -> list[Reply]:
    """Ask every question concurrently without blocking the event loop, asyncio's or trio's
    (see :func:`exchange`)."""
    return await _aio.gather(
        [functools.partial(_ask_async, q, tries(), deadline) for q in questions]
    )


async def _ask_async(question: Question, tries: Tries, deadline: float) -> Reply:
    query = make_query(question)
    wire = query.to_wire()
    last: Reply = _timeout()
    for server, port, seconds in tries:
        try:
            response = await _udp_async(query, wire, server, port, time.monotonic() + seconds)
            if response is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _timeout()
                # The backend named: dnspython would ask sniffio, which kubealias does not need.
                response = await dns.asyncquery.tcp(
                    query,
                    server,
                    left,
                    port,
                    one_rr_per_rrset=True,
                    backend=dns.asyncbackend.get_backend(_aio.running()),
                )
        except _FAILURES as exc:
            last = exc
            continue
        if _final(response):
            return response
        last = response
    return last


async def _udp_async(
    query: dns.message.Message, wire: bytes, server: str, port: int, end: float
) -> dns.message.Message | None:
    """One try at one server: the answer to ``query``, or None when it came truncated.

    A connected socket, as in the blocking path: the kernel drops datagrams from any other
    source and reports ICMP "port unreachable" as ``ConnectionRefusedError``, so both paths see
    the same server behaviour. The socket is read through the running loop (asyncio or trio,
    :func:`kubealias._aio.recv`); every datagram is judged by :func:`accept`.

    Raises:
        TimeoutError: no answer by ``end``.
        OSError: the network said no.
    """
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect((server, port))
        sock.send(wire)  # a datagram to a connected socket: never blocks for long
        while True:
            reply = accept(await _aio.recv(sock, end), query)
            if reply is TRUNCATED:
                return None
            if reply is not None:
                return reply

"""DNS on the wire: send a batch of questions, get one reply (or exception) per question.

dnspython builds, parses and does TCP; this module decides which server gets which try, and,
in the blocking path, sends the questions of a batch together (A and AAAA at once, as glibc
does) and waits for all with one selector, so a cold lookup costs one round trip, not two.
"""

from __future__ import annotations

import asyncio
import selectors
import socket
import time
from collections.abc import Callable, Iterator, Sequence

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode

from ._chain import Question, Reply

__all__ = ["EDNS_PAYLOAD", "Tries", "exchange", "exchange_async", "make_query"]

#: EDNS payload we advertise (the DNS Flag Day 2020 value).
EDNS_PAYLOAD = 1232
#: What dnspython raises for a response it cannot use, plus socket errors.
_FAILURES = (dns.exception.DNSException, OSError, EOFError, ValueError)

#: Yields (server, port, seconds) for each try; see Resolver._tries.
Tries = Iterator[tuple[str, int, float]]


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
    try:
        response = dns.message.from_wire(
            wire,
            keyring=query.keyring,
            request_mac=query.mac,
            raise_on_truncation=True,
            one_rr_per_rrset=True,
        )
    except dns.message.Truncated as truncated:
        if not query.is_response(truncated.message()):  # type: ignore[no-untyped-call]
            return None
        left = deadline - time.monotonic()
        if left <= 0:
            return _timeout()
        try:
            return dns.query.tcp(query, server, left, port, one_rr_per_rrset=True)
        except _FAILURES as exc:
            return exc
    except _FAILURES as exc:
        return exc
    if query.is_response(response):
        return response
    if response.id == query.id and response.flags & dns.flags.QR:
        # Our id, but an answer to another question: what dnspython's own udp() raises, and so
        # what the async path reports, instead of waiting out the timeout for nothing.
        return dns.query.BadResponse()  # type: ignore[no-untyped-call]
    return None  # another id: not for this query, keep waiting (dnspython does)


async def exchange_async(
    questions: Sequence[Question], tries: Callable[[], Tries], deadline: float
) -> list[Reply]:
    """Ask every question concurrently without blocking the event loop (see :func:`exchange`)."""
    replies = await asyncio.gather(*(_ask_async(q, tries(), deadline) for q in questions))
    return list(replies)


async def _ask_async(question: Question, tries: Tries, deadline: float) -> Reply:
    query = make_query(question)
    last: Reply = _timeout()
    for server, port, seconds in tries:
        try:
            try:
                response = await dns.asyncquery.udp(
                    query,
                    server,
                    seconds,
                    port,
                    raise_on_truncation=True,
                    ignore_unexpected=True,
                    one_rr_per_rrset=True,
                )
            except dns.message.Truncated:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _timeout() from None
                response = await dns.asyncquery.tcp(
                    query, server, left, port, one_rr_per_rrset=True
                )
        except _FAILURES as exc:
            last = exc
            continue
        if _final(response):
            return response
        last = response
    return last

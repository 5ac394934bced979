"""Decide, without I/O, which query comes next and what a response means.

:func:`lookup` is a generator that yields batches of questions and receives, for each
question, the DNS response or the exception the transport raised. The sync and the async
resolver only run this loop with their own I/O, so both share one set of rules, and every rule
is tested here with canned responses.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

from ._errors import ChainError
from ._names import in_domain, is_ip_literal, is_valid_hostname

__all__ = [
    "MAX_CHAIN",
    "Attempt",
    "Kind",
    "Lookup",
    "Outcome",
    "Question",
    "Status",
    "choose_tls_name",
    "lookup",
    "read_response",
]

#: Most CNAME hops followed for one name (the chain then has at most MAX_CHAIN + 1 names).
MAX_CHAIN = 8

FAMILIES = (dns.rdatatype.A, dns.rdatatype.AAAA)

Question = tuple[str, dns.rdatatype.RdataType]
Reply = dns.message.Message | BaseException

#: What one family's queries, or one search candidate, established.
Status = Literal["pending", "answer", "nxdomain", "nodata", "servfail", "failure"]
#: What a whole lookup established: ``dangling`` is "not found" where a candidate was an alias
#: whose target does not exist (NXDOMAIN at the end of its chain, docs/design.md).
Kind = Literal["answer", "notfound", "dangling", "failure"]


class Attempt(NamedTuple):
    """One search candidate queried, and what the server said."""

    name: str
    #: As shown to people: ``answer``, ``NXDOMAIN at <name>``, ``timed out``...
    result: str
    #: As read by code: decisions look here, never at ``result``.
    status: Status


@dataclass
class Family:
    """What one address family's queries have established so far."""

    rdtype: dns.rdatatype.RdataType
    chain: list[str]
    ttls: list[int] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)
    status: Status = "pending"
    detail: str = ""
    negative_ttl: int | None = None


@dataclass(frozen=True)
class Outcome:
    """The result of a lookup: an answer, "no such service", an alias to a missing target,
    or a failure. For ``dangling``, ``chain`` is the alias's chain, ending at the missing
    target."""

    kind: Kind
    fqdn: str = ""
    chain: tuple[str, ...] = ()
    chain_ttls: tuple[int, ...] = ()
    addresses: tuple[str, ...] = ()
    ttl: int = 0
    detail: str = ""
    tried: tuple[Attempt, ...] = ()


def _text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True).lower()


def _soa_minimum(response: dns.message.Message) -> int | None:
    """RFC 2308 §5: the negative TTL is min(SOA TTL, SOA MINIMUM)."""
    for rrset in response.authority:
        if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
            return int(min(rrset.ttl, rrset[0].minimum))
    return None


def read_response(family: Family, response: dns.message.Message) -> str | None:
    """Fold one response into ``family``; return the name to query next, if the chain goes on.

    Follows the CNAMEs inside the answer from the last name of ``family.chain``; records whose
    owner is not on the chain are ignored, and an answer that holds records but none for the
    name asked is a failure. Each CNAME target is validated.

    Raises:
        ChainError: a loop, more than :data:`MAX_CHAIN` hops, or an invalid target.
    """
    rcode = response.rcode()
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        family.status = "servfail" if rcode == dns.rcode.SERVFAIL else "failure"
        family.detail = dns.rcode.to_text(rcode)
        return None
    # Index the answer by owner; anything not reached from the chain is never looked at.
    # Responses are parsed one record per RRset (one_rr_per_rrset), so that two CNAMEs at
    # one owner stay visible instead of one silently replacing the other.
    cnames: dict[str, list[tuple[dns.name.Name, int]]] = {}
    addresses: dict[str, tuple[list[str], int]] = {}
    for rrset in response.answer:
        owner = _text(rrset.name)
        ttl = int(rrset.ttl)
        if rrset.rdtype == dns.rdatatype.CNAME:
            cnames.setdefault(owner, []).extend((rdata.target, ttl) for rdata in rrset)
        elif rrset.rdtype == family.rdtype:
            found, least = addresses.get(owner, ([], ttl))
            found.extend(rdata.address for rdata in rrset if rdata.address not in found)
            addresses[owner] = (found, min(least, ttl))
    start = len(family.chain)
    current = family.chain[-1]
    while current in cnames:
        records = cnames[current]
        targets = {target for target, _ in records}
        if len(targets) > 1:  # RFC 2181 §10.1: one CNAME per name; which one would we trust?
            raise ChainError(f"{current} has {len(targets)} CNAME records", chain=family.chain)
        target = _target_text(family, current, records[0][0])
        family.ttls.append(min(ttl for _, ttl in records))
        _extend(family, target)
        current = target
    if len(family.chain) == start and current not in addresses:
        foreign = _foreign_owners(response, current)
        if foreign:
            # Records, but none for the name asked: an answer to another question (spoofed or
            # broken). Taking it as NODATA would pass the name through as "not an alias".
            family.status = "failure"
            family.detail = (
                f"the answer for {current} holds only records of other names ({foreign})"
            )
            return None
    if current in addresses:
        family.addresses, ttl = addresses[current]
        family.ttls.append(ttl)
        family.status = "answer"
        return None
    if rcode == dns.rcode.NXDOMAIN:
        family.status = "nxdomain"
        family.negative_ttl = _soa_minimum(response)
        return None
    if len(family.chain) > start and _soa_minimum(response) is None:
        # The answer stops at a CNAME whose target the server did not chase (an authoritative
        # server that does not leave its zone): ask for the target.
        return current
    family.status = "nodata"
    family.negative_ttl = _soa_minimum(response)
    return None


def _foreign_owners(response: dns.message.Message, asked: str) -> str:
    """The owners of the answer section when none of them is ``asked`` (else ``""``)."""
    owners = list(dict.fromkeys(_text(rrset.name) for rrset in response.answer))
    if not owners or asked in owners:
        return ""
    shown = ", ".join(repr(owner[:80]) for owner in owners[:3])
    return shown + (f" and {len(owners) - 3} more" if len(owners) > 3 else "")


def _target_text(family: Family, owner: str, target: dns.name.Name) -> str:
    text = target.to_text(omit_final_dot=True)
    if is_ip_literal(text) or not is_valid_hostname(text):
        reason = "an IP address literal" if is_ip_literal(text) else "not a valid host name"
        raise ChainError(
            f"CNAME of {owner} points to {text[:80]!r}, {reason}",
            chain=family.chain,
        )
    return text.lower()


def _extend(family: Family, target: str) -> None:
    if target in family.chain:
        raise ChainError(
            f"CNAME loop: {target} is already on the chain", chain=[*family.chain, target]
        )
    if len(family.chain) > MAX_CHAIN:
        raise ChainError(f"CNAME chain longer than {MAX_CHAIN} hops", chain=[*family.chain, target])
    family.chain.append(target)


def _transport_failure(family: Family, error: BaseException) -> None:
    family.status = "failure"
    family.detail = _describe(error)


def _describe(error: BaseException) -> str:
    name = type(error).__name__
    if name == "Timeout" or isinstance(error, TimeoutError):
        return "timed out"
    text = str(error).strip()
    return f"{name}: {text}" if text else name


def lookup(candidates: Sequence[str]) -> Generator[list[Question], list[Reply], Outcome]:
    """Walk ``candidates`` in order, as glibc's ``res_search`` does, and follow each chain.

    Moves on after NXDOMAIN and NODATA (and SERVFAIL, as glibc does); stops at the first
    candidate that has addresses, and at a timeout, REFUSED or network error (a failure).
    NXDOMAIN in either address family is an answer about the name (it does not exist),
    whatever happened to the other family's query: glibc keeps the one response it got and
    moves on, and a failure must not turn a deleted name into a stale answer. When no
    candidate answers and one of them was an alias whose target does not exist, the outcome
    is ``dangling`` with that alias's chain.

    Yields:
        Batches of (name, rdtype) questions.

    Receives:
        For each question of the batch, the response or the exception raised sending it.

    Returns:
        The :class:`Outcome`.

    Raises:
        ChainError: from :func:`read_response`.
    """
    tried: list[Attempt] = []
    negative_ttls: list[int] = []
    servfail = ""
    dangling: tuple[str, ...] = ()
    for candidate in candidates:
        families = [Family(rdtype, [candidate]) for rdtype in FAMILIES]
        pending: dict[int, str] = {i: candidate for i in range(len(families))}
        while pending:
            order = sorted(pending)
            replies = yield [(pending[i], families[i].rdtype) for i in order]
            pending = {}
            for i, reply in zip(order, replies, strict=True):
                if isinstance(reply, BaseException):
                    _transport_failure(families[i], reply)
                    continue
                follow = read_response(families[i], reply)
                if follow is not None:
                    pending[i] = follow
        status = {f.status for f in families}
        answered = [f for f in families if f.status == "answer"]
        if answered:
            tried.append(Attempt(candidate, "answer", "answer"))
            return _answer(candidate, answered, tuple(tried))
        missing = next((f for f in families if f.status == "nxdomain"), None)
        if missing is None and "failure" in status:
            detail = next(f.detail for f in families if f.status == "failure")
            tried.append(Attempt(candidate, detail, "failure"))
            return Outcome("failure", detail=detail, tried=tuple(tried), chain=_longest(families))
        if missing is None and "servfail" in status:
            servfail = "SERVFAIL"
            tried.append(Attempt(candidate, "SERVFAIL", "servfail"))
            continue
        gone: Status = "nodata" if missing is None else "nxdomain"
        shown = missing or families[0]
        word = gone.upper()
        if len(shown.chain) > 1:
            word += f" at {shown.chain[-1]}"
            if missing is not None and not dangling:
                dangling = tuple(shown.chain)
        failed = [f for f in families if f.status in ("failure", "servfail")]
        if failed:
            # Say what the other family's query met, for people; code reads the status.
            other = failed[0]
            word += f" ({dns.rdatatype.to_text(other.rdtype)}: {other.detail})"
        tried.append(Attempt(candidate, word, gone))
        negative_ttls.extend(f.negative_ttl for f in families if f.negative_ttl is not None)
    if servfail:
        return Outcome("failure", detail="server failure (SERVFAIL)", tried=tuple(tried))
    ttl = min(negative_ttls, default=0)
    if dangling:
        return Outcome("dangling", chain=dangling, ttl=ttl, tried=tuple(tried))
    return Outcome("notfound", ttl=ttl, tried=tuple(tried))


class Lookup:
    """Drives :func:`lookup` for an I/O loop: ``batch`` is the next batch of questions while
    ``pending``; :meth:`feed` gives it the replies; ``outcome`` is then the :class:`Outcome`, or
    the :class:`~kubealias.ChainError` the chain ended in. A driver is three lines::

        steps = Lookup(names)
        while steps.pending:
            steps.feed(exchange(steps.batch, ...))
    """

    __slots__ = ("_steps", "batch", "outcome", "pending")

    def __init__(self, candidates: Sequence[str]) -> None:
        self._steps = lookup(candidates)
        self.outcome: Outcome | ChainError | None = None
        self.batch: list[Question] = []
        self.pending = True
        self._advance(None)

    def feed(self, replies: list[Reply]) -> None:
        """Hand over one reply (or exception) per question of ``batch``."""
        self._advance(replies)

    def _advance(self, replies: list[Reply] | None) -> None:
        try:
            self.batch = next(self._steps) if replies is None else self._steps.send(replies)
        except StopIteration as stop:
            self.outcome, self.pending = stop.value, False
        except ChainError as exc:
            self.outcome, self.pending = exc, False


def _longest(families: Sequence[Family]) -> tuple[str, ...]:
    longest: list[str] = []
    for family in families:
        if len(family.chain) > len(longest):
            longest = family.chain
    return tuple(longest)


def _answer(candidate: str, answered: list[Family], tried: tuple[Attempt, ...]) -> Outcome:
    main = answered[0]
    addresses = list(main.addresses)
    ttls = list(main.ttls)
    for other in answered[1:]:
        # Both families normally see the same chain; if a zone changed between the two
        # queries, keep the first family's view whole rather than mixing two destinations.
        if other.chain == main.chain:
            addresses.extend(other.addresses)
            ttls.extend(other.ttls)
    chain_ttls = tuple(main.ttls[: len(main.chain)])
    return Outcome(
        "answer",
        fqdn=candidate,
        chain=tuple(main.chain),
        chain_ttls=chain_ttls,
        addresses=tuple(addresses),
        ttl=min(ttls),
        tried=tried,
    )


def choose_tls_name(chain: Sequence[str], cluster_domain: str) -> str | None:
    """The TLS name of a chain (docs/design.md, "Which name is the TLS name").

    The first name after the queried one that lies outside the cluster domain (the
    ExternalName's target, not the provider's last hop); if the whole chain stays inside the
    cluster domain, the last name; ``None`` when there is no CNAME (not an alias).
    """
    if len(chain) < 2:
        return None
    for name in chain[1:]:
        if not in_domain(name, cluster_domain):
            return name
    return chain[-1]

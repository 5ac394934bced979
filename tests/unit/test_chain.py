"""What a response means and which query comes next, with canned responses (no I/O)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from kubealias import ChainError
from kubealias._chain import MAX_CHAIN, Outcome, Question, choose_tls_name, lookup

FQDN = "database.production.svc.cluster.local"
RDS = "mydb.abc123.us-east-1.rds.amazonaws.com"
EC2 = "ec2-54-23-100-55.compute-1.amazonaws.com"

Record = tuple[str, int, str, str]
#: What a canned server holds for one type: the records (or the transport error), rcode, SOA.
Entry = tuple[list[Record] | BaseException, int, bool]


def response(
    question: Question,
    answer: Sequence[Record] = (),
    rcode: int = dns.rcode.NOERROR,
    soa: bool = False,
) -> dns.message.Message:
    qname, rdtype = question
    msg = dns.message.make_response(dns.message.make_query(qname + ".", rdtype))
    for owner, ttl, rdtype_text, value in answer:
        msg.answer.append(dns.rrset.from_text(owner + ".", ttl, "IN", rdtype_text, value))
    msg.set_rcode(dns.rcode.Rcode(rcode))
    if soa:
        msg.authority.append(
            dns.rrset.from_text("cluster.local.", 7, "IN", "SOA", "ns.dns. host. 1 2 3 4 30")
        )
    # Through the wire, as a client sees it (records of one owner and type form one RRset).
    return dns.message.from_wire(msg.to_wire())


class Server:
    """A canned DNS: {name: {rdtype: (records, rcode, soa)}}; unknown names are NXDOMAIN."""

    def __init__(self, zone: dict[str, dict[str, Entry]]) -> None:
        self.zone = zone
        self.asked: list[Question] = []

    def reply(self, question: Question) -> dns.message.Message | BaseException:
        self.asked.append(question)
        qname, rdtype = question
        entry = self.zone.get(qname)
        if entry is None:
            return response(question, rcode=dns.rcode.NXDOMAIN, soa=True)
        found = entry.get(dns.rdatatype.to_text(rdtype), entry.get("*"))
        if found is None:
            return response(question, soa=True)
        records, rcode, soa = found
        if isinstance(records, BaseException):
            return records
        return response(question, records, rcode, soa)

    def run(self, names: Sequence[str]) -> Outcome:
        steps = lookup(names)
        batch = next(steps)
        try:
            while True:
                batch = steps.send([self.reply(q) for q in batch])
        except StopIteration as stop:
            outcome: Outcome = stop.value
            return outcome


FULL_CHAIN = [
    (FQDN, 5, "CNAME", RDS + "."),
    (RDS, 60, "CNAME", EC2 + "."),
    (EC2, 30, "A", "54.23.100.55"),
]


def test_whole_chain_in_one_answer_costs_one_query_per_family() -> None:
    server = Server({FQDN: {"A": (FULL_CHAIN, 0, False), "AAAA": (FULL_CHAIN[:2], 0, True)}})
    out = server.run([FQDN])
    assert out.kind == "answer"
    assert out.chain == (FQDN, RDS, EC2)
    assert out.chain_ttls == (5, 60, 30)
    assert out.addresses == ("54.23.100.55",)
    assert out.ttl == 5
    assert len(server.asked) == 2


def test_zone_edge_follow_up_queries() -> None:
    # An authoritative server that stops at the zone edge: CNAME alone, no SOA.
    server = Server(
        {
            FQDN: {"*": ([FULL_CHAIN[0]], 0, False)},
            RDS: {"*": ([FULL_CHAIN[1]], 0, False)},
            EC2: {"A": ([FULL_CHAIN[2]], 0, False), "AAAA": ([], 0, True)},
        }
    )
    out = server.run([FQDN])
    assert out.chain == (FQDN, RDS, EC2)
    assert out.addresses == ("54.23.100.55",)
    assert [q[0] for q in server.asked] == [FQDN, FQDN, RDS, RDS, EC2, EC2]


def test_both_families_in_answer_order() -> None:
    server = Server(
        {
            FQDN: {
                "A": ([(FQDN, 5, "A", "10.0.0.2"), (FQDN, 5, "A", "10.0.0.1")], 0, False),
                "AAAA": ([(FQDN, 5, "AAAA", "fd00::1")], 0, False),
            }
        }
    )
    out = server.run([FQDN])
    assert out.addresses == ("10.0.0.2", "10.0.0.1", "fd00::1")
    assert out.chain == (FQDN,)


def test_search_walk_moves_on_after_nxdomain_and_nodata() -> None:
    names = ["database.a.svc.cluster.local", "database.svc.cluster.local", FQDN]
    server = Server(
        {
            "database.svc.cluster.local": {"*": ([], 0, True)},  # NODATA
            FQDN: {"A": (FULL_CHAIN, 0, False), "AAAA": (FULL_CHAIN[:2], 0, True)},
        }
    )
    out = server.run(names)
    assert out.fqdn == FQDN
    assert [t[1] for t in out.tried] == ["NXDOMAIN", "NODATA", "answer"]


def test_not_found_everywhere_uses_soa_minimum() -> None:
    out = Server({}).run(["a.svc.cluster.local", "a.cluster.local"])
    assert out.kind == "notfound"
    assert out.ttl == 7  # min(SOA TTL 7, MINIMUM 30), RFC 2308
    assert [t[1] for t in out.tried] == ["NXDOMAIN", "NXDOMAIN"]


def test_dangling_alias_is_nxdomain_at_the_target() -> None:
    # Item 9 of issue 10: "not found" that says which alias points at which missing name.
    server = Server({FQDN: {"*": ([FULL_CHAIN[0]], dns.rcode.NXDOMAIN, True)}})
    out = server.run([FQDN])
    assert out.kind == "dangling"
    assert out.chain == (FQDN, RDS)
    assert out.ttl == 7
    assert out.tried[0][1] == f"NXDOMAIN at {RDS}"


def test_dangling_alias_then_a_later_candidate_answers_as_glibc_would() -> None:
    names = ["database.production.svc.cluster.local", "database.svc.cluster.local"]
    later = [("database.svc.cluster.local", 5, "A", "10.0.0.9")]
    server = Server(
        {
            names[0]: {"*": ([(names[0], 5, "CNAME", RDS + ".")], dns.rcode.NXDOMAIN, True)},
            names[1]: {"A": (later, 0, False), "AAAA": ([], 0, True)},
        }
    )
    out = server.run(names)
    assert out.kind == "answer" and out.fqdn == names[1]
    assert out.addresses == ("10.0.0.9",)


def test_dangling_alias_then_nothing_names_the_first_alias() -> None:
    names = [FQDN, "database.svc.cluster.local", "database.cluster.local"]
    server = Server({FQDN: {"*": ([FULL_CHAIN[0]], dns.rcode.NXDOMAIN, True)}})
    out = server.run(names)
    assert out.kind == "dangling" and out.chain == (FQDN, RDS)
    assert [a.status for a in out.tried] == ["nxdomain", "nxdomain", "nxdomain"]


@pytest.mark.parametrize(
    "failed",
    [
        (TimeoutError("timed out"), 0, False),
        ([], dns.rcode.SERVFAIL, False),
        (ConnectionRefusedError("refused"), 0, False),
    ],
    ids=["timeout", "servfail", "network"],
)
@pytest.mark.parametrize("nxdomain_in", ["A", "AAAA"])
def test_nxdomain_in_either_family_is_an_answer(failed: Entry, nxdomain_in: str) -> None:
    # Item 7 of issue 10: the other family's failure never masks NXDOMAIN; the walk moves on
    # (glibc keeps the one response it got) and ends "not found", not "failure".
    other = "AAAA" if nxdomain_in == "A" else "A"
    names = [FQDN, "database.svc.cluster.local"]
    server = Server({FQDN: {nxdomain_in: ([], dns.rcode.NXDOMAIN, True), other: failed}})
    out = server.run(names)
    assert out.kind == "notfound"
    assert out.tried[0].status == "nxdomain"
    assert out.tried[0].result.startswith(f"NXDOMAIN ({other}: ")
    assert [q[0] for q in server.asked].count("database.svc.cluster.local") == 2


def test_nxdomain_at_a_target_with_the_other_family_failing_is_dangling() -> None:
    server = Server(
        {
            FQDN: {
                "A": ([FULL_CHAIN[0]], dns.rcode.NXDOMAIN, True),
                "AAAA": (TimeoutError(), 0, False),
            }
        }
    )
    out = server.run([FQDN])
    assert out.kind == "dangling" and out.chain == (FQDN, RDS)
    assert out.tried[0].result == f"NXDOMAIN at {RDS} (AAAA: timed out)"


def test_servfail_moves_on_like_glibc_but_fails_if_nothing_answers() -> None:
    server = Server({"a.svc.cluster.local": {"*": ([], dns.rcode.SERVFAIL, False)}})
    out = server.run(["a.svc.cluster.local", "a.cluster.local"])
    assert out.kind == "failure"
    assert "SERVFAIL" in out.detail
    server.zone["a.cluster.local"] = {"A": ([("a.cluster.local", 5, "A", "10.0.0.1")], 0, False)}
    assert server.run(["a.svc.cluster.local", "a.cluster.local"]).kind == "answer"


@pytest.mark.parametrize(
    "reply, detail",
    [
        (TimeoutError("timed out"), "timed out"),
        (ConnectionRefusedError("refused"), "ConnectionRefusedError: refused"),
    ],
)
def test_transport_failure_stops_the_walk(reply: BaseException, detail: str) -> None:
    server = Server({"a.svc.cluster.local": {"*": (reply, 0, False)}})
    out = server.run(["a.svc.cluster.local", "a.cluster.local"])
    assert out.kind == "failure" and out.detail == detail
    assert {q[0] for q in server.asked} == {"a.svc.cluster.local"}


def test_refused_is_a_failure() -> None:
    server = Server({FQDN: {"*": ([], dns.rcode.REFUSED, False)}})
    out = server.run([FQDN, "database"])
    assert out.kind == "failure" and out.detail == "REFUSED"


def test_records_of_other_owners_are_ignored() -> None:
    hostile = [
        ("evil.example", 5, "A", "203.0.113.66"),
        ("other.example", 5, "CNAME", "evil.example."),
        ("other.example", 5, "CNAME", "1.2.3.4."),
        *FULL_CHAIN,
        ("evil.example", 5, "A", "203.0.113.67"),
    ]
    server = Server({FQDN: {"A": (hostile, 0, False), "AAAA": ([], 0, True)}})
    out = server.run([FQDN])
    assert out.chain == (FQDN, RDS, EC2)
    assert out.addresses == ("54.23.100.55",)


@pytest.mark.parametrize(
    "target, why",
    [
        ("1.2.3.4.", "IP address literal"),
        ("bad_name.example.", "not a valid host name"),
        ("sp\\032ace.example.", "not a valid host name"),
        ("n\\000ul.example.", "not a valid host name"),
    ],
)
def test_invalid_targets(target: str, why: str) -> None:
    server = Server({FQDN: {"*": ([(FQDN, 5, "CNAME", target)], 0, False)}})
    with pytest.raises(ChainError, match=why) as info:
        server.run([FQDN])
    assert info.value.chain == (FQDN,)


def test_loop_in_one_answer() -> None:
    loop = [(FQDN, 5, "CNAME", "b.example."), ("b.example", 5, "CNAME", FQDN + ".")]
    with pytest.raises(ChainError, match="loop"):
        Server({FQDN: {"*": (loop, 0, False)}}).run([FQDN])


def test_loop_across_queries() -> None:
    server = Server(
        {
            FQDN: {"*": ([(FQDN, 5, "CNAME", "b.example.")], 0, False)},
            "b.example": {"*": ([("b.example", 5, "CNAME", FQDN + ".")], 0, False)},
        }
    )
    with pytest.raises(ChainError, match="loop"):
        server.run([FQDN])


def test_chain_length_limit() -> None:
    hops = [f"h{i}.example" for i in range(MAX_CHAIN + 2)]
    names = [FQDN, *hops]
    records = [(a, 5, "CNAME", b + ".") for a, b in itertools.pairwise(names)]
    with pytest.raises(ChainError, match=f"longer than {MAX_CHAIN}"):
        Server({FQDN: {"*": (records, 0, False)}}).run([FQDN])
    # exactly MAX_CHAIN hops is fine
    ok = [*records[:MAX_CHAIN], (names[MAX_CHAIN], 5, "A", "10.0.0.9")]
    out = Server({FQDN: {"A": (ok, 0, False), "AAAA": ([], 0, True)}}).run([FQDN])
    assert len(out.chain) == MAX_CHAIN + 1


@pytest.mark.parametrize(
    "chain, want",
    [
        ((FQDN,), None),
        ((FQDN, RDS, EC2), RDS),
        ((FQDN, RDS), RDS),
        (
            ("shared-cache.app-team-a.svc.cluster.local", "redis.shared-infra.svc.cluster.local"),
            "redis.shared-infra.svc.cluster.local",
        ),
        ((FQDN, "x.ns.svc.cluster.local", "lb.example.com", "edge.cdn.example"), "lb.example.com"),
    ],
)
def test_tls_name_rule(chain: tuple[str, ...], want: str | None) -> None:
    assert choose_tls_name(chain, "cluster.local") == want


def test_an_answer_only_for_other_names_is_a_failure() -> None:
    # Records, none of them for the name asked: not NODATA (which would pass the name through
    # as "not an alias") but a broken or spoofed answer.
    foreign = [("other.example", 5, "CNAME", "evil.example."), ("evil.example", 5, "A", "10.9.9.9")]
    server = Server({FQDN: {"*": (foreign, 0, False)}})
    out = server.run([FQDN, "database.svc.cluster.local"])
    assert out.kind == "failure"
    assert "only records of other names ('other.example', 'evil.example')" in out.detail
    assert {q[0] for q in server.asked} == {FQDN}  # the walk stops: no other candidate

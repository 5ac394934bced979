"""ClusterDNS fault injection for hostile-DNS tests: faults for every name, a TCP answer cut in
half, answers for another name, and raw_cname's hand-written CNAMEs."""

from __future__ import annotations

import socket
import struct

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from kubealias.testing import ClusterDNS, Fault, raw_cname

DB = "database.production.svc.cluster.local"
ORDERS = "orders.production.svc.cluster.local"


def ask(
    server: ClusterDNS, name: str, rdtype: str = "A", *, tcp: bool = False
) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    if tcp:
        return dns.query.tcp(query, server.host, port=server.port, timeout=2)
    return dns.query.udp(query, server.host, port=server.port, timeout=2)


def ask_raw(server: ClusterDNS, name: str, rdtype: str = "A") -> tuple[dns.message.Message, bytes]:
    query = dns.message.make_query(name, rdtype)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.sendto(query.to_wire(), (server.host, server.port))
        return query, sock.recv(65535)


@pytest.fixture
def server(cluster_dns: ClusterDNS) -> ClusterDNS:
    cluster_dns.external_name("database", "production", "mydb.example.test")
    cluster_dns.record("mydb.example.test", "A", "127.0.0.10")
    cluster_dns.cluster_ip("orders", "production", "127.0.0.40")
    return cluster_dns


def test_fault_for_every_name_and_precedence(server: ClusterDNS) -> None:
    server.fault(None, Fault.SERVFAIL)
    assert ask(server, DB).rcode() == dns.rcode.SERVFAIL
    assert ask(server, "anything.example.test", "AAAA").rcode() == dns.rcode.SERVFAIL
    server.fault(None, "refused", "AAAA")  # every name, one type: beats every name, every type
    assert ask(server, ORDERS, "AAAA").rcode() == dns.rcode.REFUSED
    assert ask(server, ORDERS, "A").rcode() == dns.rcode.SERVFAIL
    server.fault(ORDERS, "formerr")  # one name beats every name
    assert ask(server, ORDERS, "AAAA").rcode() == dns.rcode.FORMERR
    server.clear_faults(ORDERS)  # the faults for every name stay
    assert ask(server, ORDERS, "A").rcode() == dns.rcode.SERVFAIL
    server.clear_faults()
    assert ask(server, ORDERS).rcode() == dns.rcode.NOERROR
    assert server.query_count() == 7


def test_truncate_partial_sends_half_an_answer_then_holds(server: ClusterDNS) -> None:
    server.fault(DB, "truncate_partial")
    udp = ask(server, DB)
    assert udp.flags & dns.flags.TC and udp.answer == []
    query = dns.message.make_query(DB, "A")
    wire = query.to_wire()
    with socket.create_connection((server.host, server.port), timeout=2) as sock:
        sock.sendall(struct.pack("!H", len(wire)) + wire)
        (length,) = struct.unpack("!H", sock.recv(2))
        received = b""
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            while True:
                chunk = sock.recv(65535)
                assert chunk, "the server closed the connection instead of holding it"
                received += chunk
    assert length > 0 and len(received) == length // 2
    assert server.query_count(DB, transport="tcp") == 1


def test_foreign_answers_for_another_name_only(server: ClusterDNS) -> None:
    server.fault(DB, "foreign")
    response = ask(server, DB)
    assert response.rcode() == dns.rcode.NOERROR
    assert response.authority == []
    owners = {rrset.name.to_text() for rrset in response.answer}
    assert owners == {"evil.example.", "other.example."}


def test_raw_cname_with_a_lure_address(server: ClusterDNS) -> None:
    server.raw_answer(DB, None, raw_cname("bad_name.example.test", address="127.0.0.5"))
    query, reply = ask_raw(server, DB)
    response = dns.message.from_wire(reply)
    assert query.is_response(response)
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AA
    cname, address = response.answer
    assert cname.name == dns.name.from_text(DB)
    assert cname[0].target == dns.name.from_text("bad_name.example.test")
    assert address.name == cname[0].target
    assert address.rdtype == dns.rdatatype.A and address[0].address == "127.0.0.5"


def test_raw_cname_writes_labels_byte_for_byte(server: ClusterDNS) -> None:
    server.raw_answer(DB, "A", raw_cname([b"evil.", b"ex ample"], address="::1"))
    _, reply = ask_raw(server, DB)
    cname, address = dns.message.from_wire(reply).answer
    assert cname[0].target.labels == (b"evil.", b"ex ample", b"")
    assert address.rdtype == dns.rdatatype.AAAA


@pytest.mark.parametrize(
    "target",
    [
        "evil..example",  # an empty label ends the name early: the rest is junk
        ".".join(["a" * 59] * 5),  # 300 octets: over the 255 a name may have
    ],
)
def test_raw_cname_names_no_parser_accepts(server: ClusterDNS, target: str) -> None:
    server.raw_answer(DB, None, raw_cname(target))
    _, reply = ask_raw(server, DB)
    with pytest.raises(dns.exception.DNSException):
        dns.message.from_wire(reply)


def test_raw_cname_refuses_what_cannot_be_encoded() -> None:
    with pytest.raises(ValueError, match="63 octets"):
        raw_cname("a" * 64 + ".example")
    with pytest.raises(ValueError):
        raw_cname("ok.example", address="not-an-address")

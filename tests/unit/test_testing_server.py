"""kubealias.testing.ClusterDNS, asked directly with dnspython over real loopback sockets."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

import kubealias
import kubealias.testing
from kubealias.testing import ClusterDNS, Fault, Query, add_article_services

DB = "database.production.svc.cluster.local"
RDS = "mydb.abc123.us-east-1.rds.amazonaws.com"
EC2 = "ec2-127-0-0-10.compute-1.amazonaws.com"


def ask(
    server: ClusterDNS,
    name: str,
    rdtype: str = "A",
    *,
    tcp: bool = False,
    timeout: float = 2.0,
    **make_query: Any,
) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, **make_query)
    if tcp:
        return dns.query.tcp(query, server.host, port=server.port, timeout=timeout)
    return dns.query.udp(query, server.host, port=server.port, timeout=timeout)


def ask_raw(server: ClusterDNS, wire: bytes, *, timeout: float = 2.0) -> bytes:
    """Send ``wire`` over UDP and return the raw reply (or raise socket.timeout)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(wire, (server.host, server.port))
        return sock.recv(65535)


def records(response: dns.message.Message, section: str = "answer") -> list[tuple[str, str, str]]:
    """(owner, type, data) of every record of a section, in order."""
    return [
        (rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype), rdata.to_text())
        for rrset in getattr(response, section)
        for rdata in rrset
    ]


def soa(response: dns.message.Message) -> tuple[str, int, int]:
    (rrset,) = response.authority
    assert rrset.rdtype == dns.rdatatype.SOA
    return rrset.name.to_text(), rrset.ttl, rrset[0].minimum


@pytest.fixture
def article(cluster_dns):
    cluster_dns.article_services()
    return cluster_dns


# -- the server itself and the fixture ------------------------------------------------------


def test_fixture_gives_a_started_server_for_production(cluster_dns):
    assert cluster_dns.namespace == "production"
    assert cluster_dns.host == "127.0.0.1"
    assert cluster_dns.nameserver == f"127.0.0.1:{cluster_dns.port}"
    assert cluster_dns.search == [
        "production.svc.cluster.local",
        "svc.cluster.local",
        "cluster.local",
    ]
    assert ask(cluster_dns, DB).rcode() == dns.rcode.NXDOMAIN
    assert ask(cluster_dns, DB, tcp=True).rcode() == dns.rcode.NXDOMAIN


def test_lifecycle():
    server = ClusterDNS(cluster_domain="Example.Internal.", namespace="team")
    with pytest.raises(RuntimeError):
        _ = server.port
    assert server.cluster_domain == "example.internal"
    assert server.search == [
        "team.svc.example.internal",
        "svc.example.internal",
        "example.internal",
    ]
    with server:
        with pytest.raises(RuntimeError):
            server.start()
        port = server.port
        assert "127.0.0.1" in repr(server)
    assert server.port == port  # kept after stop
    server.stop()  # idempotent
    with pytest.raises((dns.exception.Timeout, ConnectionRefusedError)):
        ask(server, "x.example.test", timeout=0.1)
    with pytest.raises(ConnectionRefusedError):
        ask(server, "x.example.test", tcp=True, timeout=0.1)
    server.start()  # a stopped server starts again
    try:
        assert ask(server, "x.example.test").rcode() == dns.rcode.NXDOMAIN
    finally:
        server.stop()


def test_stop_is_prompt_with_open_connections(cluster_dns):
    cluster_dns.fault("hang.example.test", "truncate_hang")
    cluster_dns.delay("slow.example.test", 30)
    with socket.create_connection((cluster_dns.host, cluster_dns.port)) as idle:
        hung = socket.create_connection((cluster_dns.host, cluster_dns.port))
        with hung:
            wire = dns.message.make_query("hang.example.test", "A").to_wire()
            hung.sendall(struct.pack("!H", len(wire)) + wire)
            slow = dns.message.make_query("slow.example.test", "A").to_wire()
            idle.sendall(struct.pack("!H", len(slow)) + slow)
            ask_raw_thread = threading.Thread(target=_ignore_timeout, args=(cluster_dns, slow))
            ask_raw_thread.start()
            time.sleep(0.05)
            started = time.monotonic()
            cluster_dns.stop()
            assert time.monotonic() - started < 1
            assert idle.recv(10) == b""  # closed by the server, never answered
            ask_raw_thread.join()


def _ignore_timeout(server, wire):
    with contextlib.suppress(OSError):
        ask_raw(server, wire, timeout=0.3)


def test_env_and_resolver(cluster_dns, monkeypatch):
    assert cluster_dns.env() == {
        "KUBEALIAS_NAMESERVERS": cluster_dns.nameserver,
        "KUBEALIAS_SEARCH": "production.svc.cluster.local,svc.cluster.local,cluster.local",
        "KUBEALIAS_NDOTS": "5",
        "KUBEALIAS_CLUSTER_DOMAIN": "cluster.local",
        "KUBEALIAS_NAMESPACE": "production",
    }
    seen = {}

    class FakeResolver:
        def __init__(self, **kwargs):
            seen.update(kwargs)

    monkeypatch.setattr(kubealias, "Resolver", FakeResolver)
    assert isinstance(cluster_dns.resolver(timeout=0.5, ndots=2), FakeResolver)
    assert seen == {
        "nameservers": [cluster_dns.nameserver],
        "search": cluster_dns.search,
        "ndots": 2,
        "cluster_domain": "cluster.local",
        "namespace": "production",
        "hosts_file": None,
        "timeout": 0.5,
    }


# -- answering like CoreDNS -----------------------------------------------------------------


def test_external_name_answer_holds_the_whole_chain(article):
    response = ask(article, DB, id=4242, flags=dns.flags.RD)
    assert response.id == 4242
    assert response.flags & dns.flags.AA
    assert response.flags & dns.flags.RA
    assert response.flags & dns.flags.RD
    assert response.rcode() == dns.rcode.NOERROR
    assert records(response) == [
        (f"{DB}.", "CNAME", f"{RDS}."),
        (f"{RDS}.", "CNAME", f"{EC2}."),
        (f"{EC2}.", "A", "127.0.0.10"),
    ]
    assert [rrset.ttl for rrset in response.answer] == [5, 60, 30]
    assert response.authority == []


def test_rd_is_echoed_not_set(article):
    response = ask(article, DB, flags=0)
    assert not response.flags & dns.flags.RD
    assert response.question[0].name == dns.name.from_text(DB)


def test_cross_namespace_alias_is_chased_in_the_cluster(article):
    response = ask(article, "shared-cache.app-team-a.svc.cluster.local")
    assert records(response) == [
        (
            "shared-cache.app-team-a.svc.cluster.local.",
            "CNAME",
            "redis.shared-infra.svc.cluster.local.",
        ),
        ("redis.shared-infra.svc.cluster.local.", "A", "127.0.0.30"),
    ]


def test_article_services_and_parameters(cluster_dns):
    add_article_services(cluster_dns, database_ip="127.0.0.99", orders_ip="127.0.0.98")
    assert records(ask(cluster_dns, "orders.production.svc.cluster.local")) == [
        ("orders.production.svc.cluster.local.", "A", "127.0.0.98")
    ]
    assert records(ask(cluster_dns, DB))[-1] == (
        "ec2-127-0-0-99.compute-1.amazonaws.com.",
        "A",
        "127.0.0.99",
    )
    for svc, target, ip in (
        ("payment-api", "api.payments.example.test.", "127.0.0.20"),
        ("postgres", "prod-db.abc123.us-east-1.rds.amazonaws.com.", "127.0.0.11"),
    ):
        assert records(ask(cluster_dns, f"{svc}.production.svc.cluster.local")) == [
            (f"{svc}.production.svc.cluster.local.", "CNAME", target),
            (target, "A", ip),
        ]


def test_cluster_ip_and_headless_by_family(cluster_dns):
    cluster_dns.cluster_ip("v4", "ns", "10.0.0.1")
    cluster_dns.cluster_ip("v6", "ns", "fd00::1")
    cluster_dns.headless("pods", "ns", ["10.1.0.1", "fd00::2", "10.1.0.2"])
    v4 = ask(cluster_dns, "v4.ns.svc.cluster.local")
    assert records(v4) == [("v4.ns.svc.cluster.local.", "A", "10.0.0.1")]
    assert v4.answer[0].ttl == 5
    assert records(ask(cluster_dns, "v6.ns.svc.cluster.local", "AAAA")) == [
        ("v6.ns.svc.cluster.local.", "AAAA", "fd00::1")
    ]
    assert [r[2] for r in records(ask(cluster_dns, "pods.ns.svc.cluster.local"))] == [
        "10.1.0.1",
        "10.1.0.2",
    ]
    assert [r[2] for r in records(ask(cluster_dns, "pods.ns.svc.cluster.local", "AAAA"))] == [
        "fd00::2"
    ]


def test_unknown_cname_target_is_nxdomain_with_the_cname(cluster_dns):
    cluster_dns.external_name("gone", "production", "gone.example.test")
    response = ask(cluster_dns, "gone.production.svc.cluster.local")
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert records(response) == [
        ("gone.production.svc.cluster.local.", "CNAME", "gone.example.test.")
    ]
    assert soa(response) == ("example.test.", 30, 30)  # the zone of the last name


@pytest.mark.parametrize(
    ("name", "rdtype", "rcode", "zone"),
    [
        # the name exists with other types: NODATA
        ("orders.production.svc.cluster.local", "AAAA", "NOERROR", "cluster.local."),
        ("api.payments.example.test", "TXT", "NOERROR", "example.test."),
        # empty non-terminals and the apex: NODATA
        ("svc.cluster.local", "A", "NOERROR", "cluster.local."),
        ("production.svc.cluster.local", "A", "NOERROR", "cluster.local."),
        ("cluster.local", "A", "NOERROR", "cluster.local."),
        ("payments.example.test", "A", "NOERROR", "example.test."),
        # nothing there: NXDOMAIN
        ("nothing.production.svc.cluster.local", "A", "NXDOMAIN", "cluster.local."),
        ("other.svc.cluster.local", "A", "NXDOMAIN", "cluster.local."),
        ("database", "A", "NXDOMAIN", "."),
        ("www.nowhere.test", "AAAA", "NXDOMAIN", "nowhere.test."),
    ],
)
def test_negative_answers_carry_the_soa(article, name, rdtype, rcode, zone):
    response = ask(article, name, rdtype)
    assert dns.rcode.to_text(response.rcode()) == rcode
    assert response.answer == []
    owner, ttl, minimum = soa(response)
    assert owner == zone
    assert ttl == minimum == (5 if zone == "cluster.local." else 30)


def test_nodata_at_the_end_of_a_chain(article):
    response = ask(article, DB, "AAAA")
    assert response.rcode() == dns.rcode.NOERROR
    assert [r[1] for r in records(response)] == ["CNAME", "CNAME"]
    assert soa(response)[0] == "amazonaws.com."


def test_apex_soa_and_cname_and_any_queries(article):
    assert records(ask(article, "cluster.local", "SOA"))[0][:2] == ("cluster.local.", "SOA")
    # a CNAME query gets the CNAME alone, not the chase
    assert records(ask(article, DB, "CNAME")) == [(f"{DB}.", "CNAME", f"{RDS}.")]
    assert records(ask(article, f"{EC2}", "ANY")) == [(f"{EC2}.", "A", "127.0.0.10")]


def test_names_are_case_insensitive_and_the_case_asked_is_echoed(cluster_dns):
    cluster_dns.record("Api.Example.TEST.", "A", "192.0.2.1")
    response = ask(cluster_dns, "API.example.test")
    assert records(response) == [("API.example.test.", "A", "192.0.2.1")]
    assert cluster_dns.queries == [Query("api.example.test", "A", "udp")]


def test_record_adds_and_replaces(cluster_dns):
    cluster_dns.record("multi.example.test", "A", "192.0.2.1")
    cluster_dns.record("multi.example.test", "A", ["192.0.2.2", "192.0.2.3"], ttl=7)
    response = ask(cluster_dns, "multi.example.test")
    assert [r[2] for r in records(response)] == ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
    assert response.answer[0].ttl == 7
    cluster_dns.record("multi.example.test", dns.rdatatype.A, "192.0.2.9", replace=True)
    assert [r[2] for r in records(ask(cluster_dns, "multi.example.test"))] == ["192.0.2.9"]

    cluster_dns.record("alias.example.test", "CNAME", "one.example.test")
    cluster_dns.record("alias.example.test", "CNAME", "two.example.test.")
    assert records(ask(cluster_dns, "alias.example.test", "CNAME")) == [
        ("alias.example.test.", "CNAME", "two.example.test.")
    ]

    cluster_dns.record("txt.example.test", "TXT", 'hello "world"')
    cluster_dns.record("txt.example.test", "TXT", "x" * 300)
    txt = ask(cluster_dns, "txt.example.test", "TXT").answer[0]
    assert sorted(b"".join(rdata.strings) for rdata in txt) == [b'hello "world"', b"x" * 300]


def test_bad_input_raises_value_error(cluster_dns):
    with pytest.raises(ValueError):
        cluster_dns.cluster_ip("svc", "ns", "not-an-ip")
    with pytest.raises(ValueError):
        cluster_dns.external_name("svc.with.dots", "ns", "x.example.test")
    with pytest.raises(ValueError):
        cluster_dns.external_name("svc", "ns", "bad..name")
    with pytest.raises(ValueError):
        cluster_dns.record("x.example.test", "NOPE", "1")
    with pytest.raises(ValueError):
        cluster_dns.record("x.example.test", "A", "1.2.3")
    with pytest.raises(ValueError):
        cluster_dns.record("x.example.test", "CNAME", ["a.test", "b.test"])
    with pytest.raises(ValueError):
        cluster_dns.fault("x.example.test", "explode")
    with pytest.raises(ValueError):
        cluster_dns.delay("x.example.test", -1)
    with pytest.raises(ValueError):
        cluster_dns.record("", "A", "192.0.2.1")


def test_a_service_holds_one_kind(article):
    # the article's migration: ExternalName -> ClusterIP, and back
    article.cluster_ip("database", "production", "10.0.0.5")
    assert records(ask(article, DB)) == [(f"{DB}.", "A", "10.0.0.5")]
    article.external_name("database", "production", RDS)
    assert [r[1] for r in records(ask(article, DB))] == ["CNAME", "CNAME", "A"]
    article.headless("database", "production", ["10.1.0.1"])
    assert records(ask(article, DB, "CNAME")) == []


def test_remove_remove_service_and_clear(article):
    article.remove(EC2, "A")
    assert ask(article, DB).rcode() == dns.rcode.NXDOMAIN
    article.record(EC2, "A", "127.0.0.10")
    article.record(EC2, "TXT", "note")
    article.remove(EC2)
    assert ask(article, EC2, "TXT").rcode() == dns.rcode.NXDOMAIN
    article.remove("never.example.test")  # nothing to remove: fine

    article.remove_service("orders", "production")
    assert ask(article, "orders.production.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN
    article.clear()
    assert ask(article, "payment-api.production.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN
    # only the apex is left
    assert ask(article, "production.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN
    assert ask(article, "cluster.local").rcode() == dns.rcode.NOERROR


def test_loops_and_long_chains_in_the_data_stop(cluster_dns):
    cluster_dns.record("a.example.test", "CNAME", "b.example.test")
    cluster_dns.record("b.example.test", "CNAME", "a.example.test")
    response = ask(cluster_dns, "a.example.test")
    assert response.rcode() == dns.rcode.NOERROR
    assert records(response) == [
        ("a.example.test.", "CNAME", "b.example.test."),
        ("b.example.test.", "CNAME", "a.example.test."),
    ]
    for i in range(20):
        cluster_dns.record(f"hop{i}.example.test", "CNAME", f"hop{i + 1}.example.test")
    response = ask(cluster_dns, "hop0.example.test", tcp=True)
    assert len(response.answer) == 16
    assert response.rcode() == dns.rcode.NOERROR


# -- wire details: EDNS, truncation, TCP, malformed input -----------------------------------


def test_edns_is_echoed_with_the_payload_capped(cluster_dns):
    assert ask(cluster_dns, DB).edns == -1
    assert ask(cluster_dns, DB, use_edns=0, payload=1000).payload == 1000
    assert ask(cluster_dns, DB, use_edns=0, payload=4096).payload == 1232
    response = ask(cluster_dns, DB, use_edns=1)
    assert response.rcode() == dns.rcode.BADVERS


def test_udp_truncates_to_the_client_payload_and_tcp_carries_it(cluster_dns):
    # 40 A records: ~700 bytes, over 512 but under 1232
    cluster_dns.headless("many", "ns", [f"10.0.0.{i}" for i in range(1, 41)])
    name = "many.ns.svc.cluster.local"
    classic = ask(cluster_dns, name)
    assert classic.flags & dns.flags.TC
    assert classic.answer == []
    assert classic.rcode() == dns.rcode.NOERROR
    edns = ask(cluster_dns, name, use_edns=0, payload=1232)
    assert not edns.flags & dns.flags.TC
    assert len(edns.answer[0]) == 40
    over_tcp = ask(cluster_dns, name, tcp=True)
    assert not over_tcp.flags & dns.flags.TC
    assert len(over_tcp.answer[0]) == 40


def test_several_queries_on_one_tcp_connection(article):
    with socket.create_connection((article.host, article.port), timeout=2) as sock:
        for name in (DB, "orders.production.svc.cluster.local", "nothing.example.test"):
            query = dns.message.make_query(name, "A")
            response = dns.query.tcp(query, article.host, port=article.port, sock=sock)
            assert response.id == query.id
    assert article.query_count(transport="tcp") == 3


@pytest.mark.parametrize(
    ("wire", "answered"),
    [
        (b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07bro", True),  # cut short
        (b"\x12\x34\x01\x00" + bytes(8) + b"trailing junk", True),
        (b"\x12\x34", False),  # no header
        (b"\x12\x34\x81\x80" + bytes(8), False),  # a response: never answered
    ],
)
def test_malformed_queries_do_not_hurt_the_server(cluster_dns, wire, answered):
    if answered:
        reply = ask_raw(cluster_dns, wire)
        assert reply[:2] == b"\x12\x34"
        flags = int.from_bytes(reply[2:4], "big")
        assert flags & dns.flags.QR
        assert flags & 0xF == dns.rcode.FORMERR
    else:
        with pytest.raises(socket.timeout):
            ask_raw(cluster_dns, wire, timeout=0.1)
    assert ask(cluster_dns, "still.example.test").rcode() == dns.rcode.NXDOMAIN


def test_no_question_and_other_opcodes(cluster_dns):
    empty = dns.message.Message(id=7)
    assert dns.query.udp(empty, cluster_dns.host, port=cluster_dns.port, timeout=2).rcode() == (
        dns.rcode.FORMERR
    )
    notify = dns.message.make_query("x.example.test", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    assert dns.query.udp(notify, cluster_dns.host, port=cluster_dns.port, timeout=2).rcode() == (
        dns.rcode.NOTIMP
    )
    chaos = dns.message.make_query("version.bind", "TXT", "CH")
    assert dns.query.udp(chaos, cluster_dns.host, port=cluster_dns.port, timeout=2).rcode() == (
        dns.rcode.REFUSED
    )


# -- faults ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "rcode"),
    [("servfail", "SERVFAIL"), ("refused", "REFUSED"), (Fault.FORMERR, "FORMERR")],
)
@pytest.mark.parametrize("tcp", [False, True])
def test_rcode_faults(article, kind, rcode, tcp):
    article.fault(DB, kind)
    response = ask(article, DB, tcp=tcp)
    assert dns.rcode.to_text(response.rcode()) == rcode
    assert response.answer == []
    # only that exact name
    assert ask(article, "orders.production.svc.cluster.local").rcode() == dns.rcode.NOERROR
    assert ask(article, f"x.{DB}").rcode() == dns.rcode.NXDOMAIN


def test_fault_for_one_type_only(article):
    article.fault(DB, "servfail", rdtype="AAAA")
    assert ask(article, DB).rcode() == dns.rcode.NOERROR
    assert ask(article, DB, "AAAA").rcode() == dns.rcode.SERVFAIL
    article.fault(DB, "refused")
    assert ask(article, DB, "AAAA").rcode() == dns.rcode.SERVFAIL  # the typed fault wins
    assert ask(article, DB).rcode() == dns.rcode.REFUSED


def test_clear_faults(article):
    article.fault(DB, "servfail")
    article.fault(RDS, "refused", "A")
    article.delay(DB, 5)
    article.raw_answer(DB, "A", lambda query: b"")
    article.fault("orders.production.svc.cluster.local", "refused")
    article.clear_faults(DB.upper() + ".")
    assert ask(article, DB, timeout=1).rcode() == dns.rcode.NOERROR
    assert ask(article, RDS).rcode() == dns.rcode.REFUSED
    article.clear_faults()
    assert ask(article, RDS).rcode() == dns.rcode.NOERROR
    assert ask(article, "orders.production.svc.cluster.local").rcode() == dns.rcode.NOERROR


def test_drop_times_out_but_is_counted(article):
    article.fault(DB, "drop")
    with pytest.raises(dns.exception.Timeout):
        ask(article, DB, timeout=0.3)
    assert article.query_count(DB) == 1


def test_truncate_sends_tc_over_udp_and_the_answer_over_tcp(article):
    article.fault(DB, Fault.TRUNCATE)
    udp = ask(article, DB)
    assert udp.flags & dns.flags.TC
    assert udp.answer == []
    tcp = ask(article, DB, tcp=True)
    assert not tcp.flags & dns.flags.TC
    assert len(tcp.answer) == 3


def test_truncate_hang_never_answers_over_tcp(article):
    article.fault(DB, "truncate_hang")
    udp = ask(article, DB)
    assert udp.flags & dns.flags.TC
    with pytest.raises(dns.exception.Timeout):
        ask(article, DB, tcp=True, timeout=0.3)
    assert article.query_count(DB, transport="tcp") == 1


def test_wrong_owner_records_surround_the_answer(article):
    article.fault(DB, "wrong_owner")
    query = dns.message.make_query(DB, "A")
    # one RR per RRset keeps the order and the repeats as they are on the wire
    response = dns.query.tcp(
        query, article.host, port=article.port, timeout=2, one_rr_per_rrset=True
    )
    extra = [
        ("evil.example.", "A", "203.0.113.66"),
        ("other.example.", "CNAME", "evil.example."),
    ]
    real = [
        (f"{DB}.", "CNAME", f"{RDS}."),
        (f"{RDS}.", "CNAME", f"{EC2}."),
        (f"{EC2}.", "A", "127.0.0.10"),
    ]
    assert records(response) == extra + real + extra
    assert response.rcode() == dns.rcode.NOERROR


def test_cname_loop_fault(cluster_dns):
    cluster_dns.cluster_ip("orders", "production", "10.0.0.40")
    name = "orders.production.svc.cluster.local"
    cluster_dns.fault(name, "cname_loop")
    response = ask(cluster_dns, name)
    assert response.rcode() == dns.rcode.NOERROR
    assert records(response) == [
        (f"{name}.", "CNAME", f"loop-b.{name}."),
        (f"loop-b.{name}.", "CNAME", f"{name}."),
    ]


def test_large_fault_truncates_udp_and_fills_tcp(article):
    article.fault(DB, "large")
    udp = ask(article, DB, use_edns=0, payload=1232)
    assert udp.flags & dns.flags.TC
    assert udp.answer == []
    query = dns.message.make_query(DB, "A")
    with socket.create_connection((article.host, article.port), timeout=2) as sock:
        dns.query.send_tcp(sock, query)
        response, _ = dns.query.receive_tcp(sock, expiration=time.time() + 2)
        assert len(response.to_wire()) > 60_000
    assert [r[1] for r in records(response)[:3]] == ["CNAME", "CNAME", "A"]
    padding = response.answer[-1]
    assert padding.rdtype == dns.rdatatype.TXT
    assert padding.name == dns.name.from_text(DB)


@pytest.mark.parametrize("tcp", [False, True])
def test_garbage_fault(article, tcp):
    article.fault(DB, "garbage")
    query = dns.message.make_query(DB, "A")
    if tcp:
        with socket.create_connection((article.host, article.port), timeout=2) as sock:
            wire = query.to_wire()
            sock.sendall(struct.pack("!H", len(wire)) + wire)
            length = struct.unpack("!H", sock.recv(2))[0]
            reply = sock.recv(length)
    else:
        reply = ask_raw(article, query.to_wire())
    assert len(reply) == 12
    assert reply[:2] == query.id.to_bytes(2, "big")
    with pytest.raises(dns.exception.DNSException):
        dns.message.from_wire(reply)


def test_delay_answers_late(article):
    article.delay(DB, 0.2)
    with pytest.raises(dns.exception.Timeout):
        ask(article, DB, timeout=0.05)
    started = time.monotonic()
    assert len(ask(article, DB).answer) == 3
    assert time.monotonic() - started >= 0.19
    # other names are not held up meanwhile
    assert ask(article, "orders.production.svc.cluster.local", timeout=0.15).answer


def test_raw_answer_sends_the_builders_bytes(cluster_dns):
    seen = []

    def cname_to_empty_label(query: dns.message.Message) -> bytes:
        seen.append(query)
        response = dns.message.make_response(query)
        header = response.to_wire()[:12]
        header = header[:6] + b"\x00\x01" + header[8:]  # ANCOUNT = 1
        question = query.to_wire()[12:]
        target = b"\x04evil\x00\x07example\x00"  # evil..example: an empty label
        rr = b"\xc0\x0c" + struct.pack("!HHIH", 5, 1, 5, len(target)) + target
        return header + question + rr

    cluster_dns.raw_answer("hostile.example.test", "A", cname_to_empty_label)
    query = dns.message.make_query("hostile.example.test", "A")
    reply = ask_raw(cluster_dns, query.to_wire())
    assert reply == cname_to_empty_label(query)
    assert seen[0].question[0].name == dns.name.from_text("hostile.example.test")
    # another type is answered normally
    assert ask(cluster_dns, "hostile.example.test", "AAAA").rcode() == dns.rcode.NXDOMAIN

    def broken(query):
        raise RuntimeError("builder bug")

    cluster_dns.raw_answer("broken.example.test", None, broken)
    assert ask(cluster_dns, "broken.example.test", tcp=True).rcode() == dns.rcode.SERVFAIL


# -- counting and threads -------------------------------------------------------------------


def test_query_counting(article):
    ask(article, DB)
    ask(article, DB, "AAAA")
    ask(article, DB.upper() + ".", tcp=True)
    ask(article, "orders.production.svc.cluster.local")
    assert article.queries == [
        Query(DB, "A", "udp"),
        Query(DB, "AAAA", "udp"),
        Query(DB, "A", "tcp"),
        Query("orders.production.svc.cluster.local", "A", "udp"),
    ]
    assert article.query_count() == 4
    assert article.query_count(DB) == 3
    assert article.query_count(f"{DB.upper()}.", "A") == 2
    assert article.query_count(rdtype=dns.rdatatype.AAAA) == 1
    assert article.query_count(DB, "A", "tcp") == 1
    assert article.query_count(transport="udp") == 3
    article.queries.clear()  # a copy
    assert article.query_count() == 4
    article.reset_queries()
    assert article.queries == []


def test_mutation_while_serving_from_many_threads(cluster_dns):
    name = "flip.ns.svc.cluster.local"
    cluster_dns.cluster_ip("flip", "ns", "10.0.0.1")
    stop = threading.Event()
    errors = []

    def flip():
        i = 0
        while not stop.is_set():
            if i % 2:
                cluster_dns.cluster_ip("flip", "ns", f"10.0.0.{i % 200 + 1}")
            else:
                cluster_dns.external_name("flip", "ns", "target.example.test")
                cluster_dns.record(
                    "target.example.test", "A", f"10.9.0.{i % 200 + 1}", replace=True
                )
            i += 1
            time.sleep(0.0005)  # let the server threads have the GIL too

    def query(tcp):
        for _ in range(40):
            try:
                response = ask(cluster_dns, name, tcp=tcp)
                kinds = [rrset.rdtype for rrset in response.answer]
                assert kinds in ([dns.rdatatype.A], [dns.rdatatype.CNAME, dns.rdatatype.A])
            except Exception as exc:  # collected: the assertion is in the main thread
                errors.append(exc)

    flipper = threading.Thread(target=flip)
    clients = [threading.Thread(target=query, args=(i % 2 == 1,)) for i in range(6)]
    flipper.start()
    for client in clients:
        client.start()
    for client in clients:
        client.join()
    stop.set()
    flipper.join()
    assert errors == []
    assert cluster_dns.query_count(name) == 240

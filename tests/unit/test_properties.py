"""Property tests: whatever the host string or the DNS answer, only KubeAliasError escapes, and
a TLS name is always a valid host name."""

from __future__ import annotations

from collections.abc import Callable

import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kubealias
from kubealias import ChainError, KubeAliasError
from kubealias._chain import choose_tls_name, lookup
from kubealias._names import is_valid_hostname
from kubealias.testing import ClusterDNS

FQDN = "database.production.svc.cluster.local"

# Labels of any bytes (DNS allows them on the wire), mixed with well-formed ones.
raw_label = st.binary(min_size=1, max_size=63)
ldh_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
label = st.one_of(raw_label, ldh_label, st.sampled_from([b"1", b"2", b"example", b"svc"]))
target = st.lists(label, min_size=1, max_size=6).map(
    lambda labels: [lab.encode() if isinstance(lab, str) else lab for lab in labels]
)


def _name(labels: list[bytes]) -> dns.name.Name | None:
    try:
        return dns.name.Name([*labels, b""])
    except dns.name.NameTooLong:
        return None


def _answer(targets: list[list[bytes]]) -> dns.message.Message:
    query = dns.message.make_query(FQDN + ".", "A")
    msg = dns.message.make_response(query)
    owner = dns.name.from_text(FQDN)
    for labels in targets:
        name = _name(labels)
        if name is None:
            break
        rrset = dns.rrset.RRset(owner, dns.rdataclass.IN, dns.rdatatype.CNAME)
        # From wire rather than CNAME(...), whose constructor dnspython leaves unannotated.
        wire = name.to_wire()  # bytes: no file given
        assert wire is not None
        rrset.add(
            dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.CNAME, wire, 0, len(wire)), 5
        )
        msg.answer.append(rrset)
        owner = name
    final = dns.rrset.from_text(owner, 5, "IN", "A", "127.0.0.1")
    msg.answer.append(final)
    return dns.message.from_wire(msg.to_wire())


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(target, min_size=1, max_size=10))
def test_any_cname_chain_gives_valid_names_or_chain_error(targets: list[list[bytes]]) -> None:
    try:
        response = _answer(targets)
    except Exception:  # dnspython refused to build it: not something a client can receive
        return
    steps = lookup([FQDN])
    next(steps)
    try:
        steps.send([response, response])
    except StopIteration as stop:
        outcome = stop.value
    except ChainError:
        return
    else:  # pragma: no cover - one batch always decides here or asks a follow-up
        return
    if outcome.kind == "answer":
        assert all(is_valid_hostname(n) for n in outcome.chain[1:])
        tls = choose_tls_name(outcome.chain, "cluster.local")
        assert tls is None or is_valid_hostname(tls)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=120))
def test_any_host_string_through_the_resolver(host: str) -> None:
    # A server that knows nothing: every lookup ends in a pass-through or a KubeAliasError.
    with ClusterDNS(namespace="production") as server:
        resolver = server.resolver(timeout=0.5)
        try:
            result = resolver.resolve(host)
        except KubeAliasError:
            return
        assert result.name == host
        assert result.tls_name == host or is_valid_hostname(result.tls_name)


def _hostile_server(wire_builder: Callable[[dns.message.Message], bytes]) -> ClusterDNS:
    server = ClusterDNS(namespace="production")
    server.start()
    server.raw_answer(FQDN, None, wire_builder)
    return server


@settings(max_examples=60, deadline=None)
@given(st.lists(target, min_size=1, max_size=4))
def test_hostile_wire_answers_through_the_resolver(targets: list[list[bytes]]) -> None:
    def build(query: dns.message.Message) -> bytes:
        response = _answer(targets)
        response.id = query.id
        response.question = query.question
        return response.to_wire()

    try:
        _answer(targets)
    except Exception:
        return
    server = _hostile_server(build)
    try:
        resolver = server.resolver(timeout=0.5)
        try:
            result = resolver.resolve("database")
        except KubeAliasError:
            return
        assert is_valid_hostname(result.tls_name) or result.tls_name == "database"
    finally:
        server.stop()


def test_exported_members() -> None:
    # (pytest may add "@py_builtins" and friends when it rewrites the plugin's package)
    public = {n for n in dir(kubealias) if not n.startswith("_") and n.isidentifier()}
    modules = {
        "testing",
        "httpx",
        "requests",
        "urllib3",
        "psycopg",
        "psycopg2",
        "sqlalchemy",
        "django",
        "asyncpg",
    }
    assert public - modules == set(kubealias.__all__)

"""The resolver against the in-process cluster DNS: cache, single flight, stale, faults, policy."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import kubealias
from kubealias import (
    ChainError,
    KubeAliasError,
    PolicyError,
    Resolution,
    ResolutionError,
    Resolver,
)
from kubealias.testing import ClusterDNS, FakeClock
from tests.unit.conftest import EC2, RDS, add_database, wait_for

FQDN = "database.production.svc.cluster.local"


@pytest.fixture
def dns(cluster_dns: ClusterDNS) -> ClusterDNS:
    return add_database(cluster_dns)


@pytest.fixture
def resolver(dns: ClusterDNS, clock: FakeClock) -> Resolver:
    return dns.resolver(clock=clock, timeout=1)


def queries(dns: ClusterDNS, name: str = FQDN) -> tuple[int, int]:
    return dns.query_count(name, "A"), dns.query_count(name, "AAAA")


async def in_flight(resolver: Resolver, head_start: float) -> asyncio.Future[Resolution]:
    """``aresolve("database")`` as a task, given ``head_start`` seconds to join or lead a flight."""
    task = asyncio.ensure_future(resolver.aresolve("database"))
    await asyncio.sleep(head_start)
    return task


# --- answers --------------------------------------------------------------------------------


def test_alias_resolution(resolver: Resolver, dns: ClusterDNS) -> None:
    r = resolver.resolve("database")
    assert r.name == "database"
    assert r.fqdn == FQDN
    assert r.chain == (FQDN, RDS, EC2)
    assert r.tls_name == RDS
    assert r.addresses == ("127.0.0.10",)
    assert r.is_alias and not r.stale
    assert r.ttl == 5
    assert queries(dns) == (1, 1)


@pytest.mark.parametrize(
    "form",
    ["database", "Database", "database.production", "database.production.svc", FQDN, FQDN + "."],
)
def test_every_name_form_gives_the_same_answer(resolver: Resolver, form: str) -> None:
    r = resolver.resolve(form)
    assert (r.tls_name, r.addresses, r.chain) == (RDS, ("127.0.0.10",), (FQDN, RDS, EC2))
    assert r.name == form


def test_cluster_ip_is_not_an_alias(resolver: Resolver) -> None:
    r = resolver.resolve("orders")
    assert not r.is_alias
    assert r.tls_name == "orders"
    assert r.addresses == ("127.0.0.40",)
    assert r.chain == ("orders.production.svc.cluster.local",)


def test_cross_namespace_alias_uses_last_name(resolver: Resolver, dns: ClusterDNS) -> None:
    dns.external_name("shared-cache", "app-team-a", "redis.shared-infra.svc.cluster.local")
    dns.cluster_ip("redis", "shared-infra", "127.0.0.30")
    r = resolver.resolve("shared-cache.app-team-a")
    assert r.tls_name == "redis.shared-infra.svc.cluster.local"
    assert r.addresses == ("127.0.0.30",)


def test_headless_dual_stack_answer_order(resolver: Resolver, dns: ClusterDNS) -> None:
    dns.headless("pg", "production", ["127.0.0.42", "127.0.0.41", "::1"])
    r = resolver.resolve("pg")
    assert r.addresses == ("127.0.0.42", "127.0.0.41", "::1")
    assert not r.is_alias


@pytest.mark.parametrize(
    "host",
    [
        "api.stripe.com",
        "10.0.0.1",
        "[::1]",
        "::1",
        "/var/run/postgresql",
        "localhost",
        "",
        "bad_name",
        "database.",  # a trailing dot: the root-level name alone, never a Service
    ],
)
def test_pass_through_costs_zero_queries(resolver: Resolver, dns: ClusterDNS, host: str) -> None:
    r = resolver.resolve(host)
    assert not r.is_alias and r.tls_name == host and r.addresses == () and r.chain == ()
    assert r.reason.startswith("passed through")
    assert dns.queries == []


def test_unknown_service_passes_through_and_is_cached_negatively(
    resolver: Resolver, dns: ClusterDNS, clock: FakeClock
) -> None:
    r = resolver.resolve("nope")
    assert not r.is_alias and r.tls_name == "nope"
    assert [c[1] for c in r.candidates] == ["NXDOMAIN"] * 3
    asked = len(dns.queries)
    assert asked == 6  # 3 candidates inside the cluster domain x 2 families; never "nope."
    resolver.resolve("nope")
    assert len(dns.queries) == asked
    clock.advance(5.1)  # the SOA minimum of the cluster zone
    resolver.resolve("nope")
    assert len(dns.queries) == 2 * asked


def test_hosts_file_names_pass_through(dns: ClusterDNS, tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n10.1.2.3 database # pinned\n")
    r = dns.resolver(hosts_file=hosts).resolve("Database")
    assert not r.is_alias and "hosts file" in r.reason
    assert dns.queries == []


def test_disable(dns: ClusterDNS) -> None:
    r = dns.resolver(disable=True).resolve("database")
    assert r.tls_name == "database" and not r.is_alias
    assert dns.queries == []


def test_override_changes_the_name_not_the_address(dns: ClusterDNS) -> None:
    resolver = dns.resolver(aliases={"orders": "orders.example.com"})
    r = resolver.resolve("orders.production")
    assert r.tls_name == "orders.example.com" and r.is_alias
    assert r.addresses == ("127.0.0.40",)
    assert "KUBEALIAS_ALIASES" in r.reason


def test_override_beats_dns_chain(dns: ClusterDNS) -> None:
    r = dns.resolver(aliases="database.production=db.internal.example").resolve("database")
    assert r.tls_name == "db.internal.example"
    assert r.addresses == ("127.0.0.10",)


def test_an_alias_to_a_missing_target_names_the_alias_and_the_target(dns: ClusterDNS) -> None:
    # A target the server does not hold (CNAME + NXDOMAIN) is an answer of "no such name" at
    # the target. Item 9 of issue 10: no other candidate answers either, so say which alias
    # points where, rather than pass through to the client's "Name or service not known".
    dns.external_name("edge", "production", "far.example.test")
    resolver = dns.resolver()
    with pytest.raises(ResolutionError) as info:
        resolver.resolve("edge")
    error = info.value
    assert type(error) is ResolutionError and error.name == "edge"
    assert error.chain == ("edge.production.svc.cluster.local", "far.example.test")
    assert "far.example.test, which does not exist (NXDOMAIN)" in str(error)
    assert error.tried[0] == "edge.production.svc.cluster.local (NXDOMAIN at far.example.test)"
    # Cached like the negative answer it stands for: asked again, no new query.
    asked = len(dns.queries)
    with pytest.raises(ResolutionError, match=r"far\.example\.test"):
        resolver.resolve("edge")
    assert len(dns.queries) == asked


async def test_an_alias_to_a_missing_target_async(dns: ClusterDNS) -> None:
    dns.external_name("edge", "production", "far.example.test")
    with pytest.raises(ResolutionError, match=r"points to far\.example\.test"):
        await dns.resolver().aresolve("edge")


def test_a_name_with_no_service_still_passes_through(dns: ClusterDNS) -> None:
    r = dns.resolver().resolve("nothing-here")
    assert not r.is_alias and r.tls_name == "nothing-here"
    assert [result for _, result in r.candidates] == ["NXDOMAIN"] * 3


# --- cache ----------------------------------------------------------------------------------


def test_cache_lifetime_is_smallest_ttl(
    resolver: Resolver, dns: ClusterDNS, clock: FakeClock
) -> None:
    first = resolver.resolve("database")
    clock.advance(4.9)
    assert resolver.resolve("database") is first
    assert first.ttl == pytest.approx(0.1)
    assert queries(dns) == (1, 1)
    clock.advance(0.2)
    assert resolver.resolve("database") is not first
    assert queries(dns) == (2, 2)


@pytest.mark.parametrize(
    "min_ttl, max_ttl, fresh_at, stale_at", [(0, 2, 1.9, 2.1), (8, 300, 7.9, 8.1)]
)
def test_ttl_clamp(
    dns: ClusterDNS,
    clock: FakeClock,
    min_ttl: float,
    max_ttl: float,
    fresh_at: float,
    stale_at: float,
) -> None:
    resolver = dns.resolver(clock=clock, min_ttl=min_ttl, max_ttl=max_ttl)
    resolver.resolve("database")
    clock.advance(fresh_at)
    resolver.resolve("database")
    assert queries(dns) == (1, 1)
    clock.advance(stale_at - fresh_at)
    resolver.resolve("database")
    assert queries(dns) == (2, 2)


def test_cache_is_bounded(dns: ClusterDNS) -> None:
    resolver = dns.resolver(cache_size=2)
    for name in ("database", "orders", "api.example.com"):
        resolver.resolve(name)
    stats = resolver.cache_stats()
    assert stats.size == 2 and stats.evictions == 1
    resolver.resolve("database")  # evicted: asked again
    assert queries(dns) == (2, 2)


def test_flush(resolver: Resolver, dns: ClusterDNS) -> None:
    resolver.resolve("database")
    resolver.flush("database")
    resolver.resolve("database")
    resolver.flush()
    resolver.resolve("database")
    assert queries(dns) == (3, 3)


# --- single flight --------------------------------------------------------------------------


def test_single_flight_threads(resolver: Resolver, dns: ClusterDNS) -> None:
    dns.delay(FQDN, 0.2)
    barrier = threading.Barrier(64)
    results: list[object] = []

    def call() -> None:
        barrier.wait()
        results.append(resolver.resolve("database"))

    threads = [threading.Thread(target=call) for _ in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 64 and len({id(r) for r in results}) == 1
    assert queries(dns) == (1, 1)


async def test_single_flight_tasks(resolver: Resolver, dns: ClusterDNS) -> None:
    dns.delay(FQDN, 0.2)
    results = await asyncio.gather(*(resolver.aresolve("database") for _ in range(64)))
    assert len({id(r) for r in results}) == 1
    assert queries(dns) == (1, 1)


async def test_single_flight_threads_and_tasks_share_one_lookup(
    resolver: Resolver, dns: ClusterDNS
) -> None:
    dns.delay(FQDN, 0.3)
    loop = asyncio.get_running_loop()
    threaded = [loop.run_in_executor(None, resolver.resolve, "database") for _ in range(8)]
    tasks = [resolver.aresolve("database") for _ in range(8)]
    results = await asyncio.gather(*threaded, *tasks)
    assert {r.tls_name for r in results} == {RDS}
    assert queries(dns) == (1, 1)


async def test_cancelled_leader_does_not_strand_followers(
    resolver: Resolver, dns: ClusterDNS
) -> None:
    dns.delay(FQDN, 0.3)
    leader = await in_flight(resolver, 0.05)
    follower = await in_flight(resolver, 0.05)
    leader.cancel()
    result = await asyncio.wait_for(follower, 3)
    assert result.tls_name == RDS


def test_errors_reach_every_waiter(resolver: Resolver, dns: ClusterDNS) -> None:
    dns.fault(FQDN, "servfail")
    dns.delay(FQDN, 0.2)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            resolver.resolve(FQDN)
        except KubeAliasError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 16
    assert len({id(e) for e in errors}) == 16  # each caller raises its own copy
    assert queries(dns) == (2, 2)  # one lookup (glibc retries SERVFAIL once: attempts=2)


# --- serve-stale ----------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["servfail", "refused", "drop"])
def test_serve_stale_on_server_failure(dns: ClusterDNS, clock: FakeClock, fault: str) -> None:
    resolver = dns.resolver(clock=clock, timeout=0.4, max_stale=30)
    fresh = resolver.resolve("database")
    dns.fault(FQDN, fault)
    clock.advance(6)
    started = time.monotonic()
    stale = resolver.resolve("database")
    assert time.monotonic() - started < 1.0
    assert stale.stale and stale.tls_name == fresh.tls_name and stale.addresses == fresh.addresses
    assert stale.ttl == 0
    # right after a failure the stale answer is served without asking again (RFC 8767 recheck)
    asked = len(dns.queries)
    assert resolver.resolve("database").stale
    assert len(dns.queries) == asked
    # the server comes back: after the recheck interval a caller still gets the stale answer at
    # once while a background refresh runs (RFC 8767 §5); the refreshed answer follows
    dns.clear_faults()
    clock.advance(1.5)
    started = time.monotonic()
    assert resolver.resolve("database").stale
    assert time.monotonic() - started < 0.1
    assert wait_for(lambda: not resolver.resolve("database").stale)


def test_stale_bound(dns: ClusterDNS, clock: FakeClock) -> None:
    resolver = dns.resolver(clock=clock, timeout=0.3, max_stale=10)
    resolver.resolve("database")
    dns.fault(FQDN, "servfail")
    clock.advance(5 + 9)
    assert resolver.resolve("database").stale
    clock.advance(2)  # 5 + 11 > TTL + max_stale
    with pytest.raises(ResolutionError) as info:
        resolver.resolve("database")
    assert "database" in str(info.value) and "SERVFAIL" in str(info.value)


def test_past_the_stale_bound_every_failure_names_the_answer_no_longer_served(
    dns: ClusterDNS, clock: FakeClock
) -> None:
    resolver = dns.resolver(clock=clock, timeout=0.3, max_stale=10)
    resolver.resolve("database")
    dns.fault(FQDN, "servfail")
    clock.advance(5 + 11)  # expired 11 s ago: past max_stale
    for _ in range(3):  # the first failure, and the ones after each cached failure expires
        with pytest.raises(ResolutionError) as info:
            resolver.resolve("database")
        error = info.value
        assert error.name == "database"
        assert "SERVFAIL" in error.reason and "KUBEALIAS_MAX_STALE=10 s" in error.reason
        assert f"the last answer ({FQDN} -> {RDS} -> {EC2}) expired" in str(error)
        clock.advance(1.1)  # FAILURE_TTL
    # the server is back: a fresh answer, and a later failure is a plain one again
    dns.clear_faults()
    assert not resolver.resolve("database").stale
    resolver.flush()
    dns.fault(FQDN, "servfail")
    with pytest.raises(ResolutionError) as info:
        resolver.resolve("database")
    assert "KUBEALIAS_MAX_STALE" not in str(info.value)


def test_a_failure_without_a_previous_answer_does_not_mention_the_stale_bound(
    dns: ClusterDNS, clock: FakeClock
) -> None:
    resolver = dns.resolver(clock=clock, timeout=0.3, max_stale=10)
    dns.fault(FQDN, "servfail")
    with pytest.raises(ResolutionError) as info:
        resolver.resolve("database")  # no previous answer at all
    assert "KUBEALIAS_MAX_STALE" not in str(info.value)


def test_nxdomain_is_never_masked_by_stale(dns: ClusterDNS, clock: FakeClock) -> None:
    resolver = dns.resolver(clock=clock, max_stale=300)
    assert resolver.resolve("database").is_alias
    dns.remove_service("database", "production")
    clock.advance(6)
    r = resolver.resolve("database")
    assert not r.stale and not r.is_alias and r.tls_name == "database"


@pytest.mark.parametrize("fault", ["servfail", "drop"])
@pytest.mark.parametrize("failing", ["A", "AAAA"])
def test_nxdomain_in_one_family_is_never_masked_by_the_other_failing(
    dns: ClusterDNS, clock: FakeClock, fault: str, failing: str
) -> None:
    # Item 7 of issue 10: the Service is deleted (NXDOMAIN) while the other family's query
    # fails; the old alias must not be served stale for KUBEALIAS_MAX_STALE.
    resolver = dns.resolver(clock=clock, timeout=0.4, max_stale=300)
    assert resolver.resolve("database").is_alias
    dns.remove_service("database", "production")
    dns.fault(FQDN, fault, failing)
    clock.advance(6)
    if fault == "servfail":
        r = resolver.resolve("database")
        assert not r.stale and not r.is_alias and r.tls_name == "database"
        assert r.candidates[0][1] == f"NXDOMAIN ({failing}: SERVFAIL)"
        return
    # A dropped query spends the whole KUBEALIAS_TIMEOUT (one budget for the resolution), so
    # the later candidates time out: a clear error, still never the deleted alias.
    with pytest.raises(ResolutionError) as info:
        resolver.resolve("database")
    assert info.value.tried[0] == f"{FQDN} (NXDOMAIN ({failing}: timed out))"


def test_nxdomain_in_one_family_ends_an_outage_served_stale(
    dns: ClusterDNS, clock: FakeClock
) -> None:
    # Serving stale during an outage (both families fail), then the Service is deleted and
    # only AAAA keeps failing: the background refresh replaces the stale alias.
    resolver = dns.resolver(clock=clock, timeout=0.3, max_stale=300)
    assert resolver.resolve("database").is_alias
    dns.fault(FQDN, "servfail")
    clock.advance(6)
    assert resolver.resolve("database").stale
    dns.clear_faults()
    dns.remove_service("database", "production")
    dns.fault(FQDN, "servfail", "AAAA")
    clock.advance(1.5)  # past the recheck interval: a background refresh runs
    resolver.resolve("database")
    assert wait_for(lambda: not resolver.resolve("database").is_alias)
    assert not resolver.resolve("database").stale


def test_no_stale_without_previous_answer(dns: ClusterDNS) -> None:
    dns.fault(FQDN, "servfail")
    with pytest.raises(ResolutionError, match="SERVFAIL"):
        dns.resolver(timeout=0.5).resolve(FQDN)


async def test_async_serve_stale(dns: ClusterDNS, clock: FakeClock) -> None:
    resolver = dns.resolver(clock=clock, timeout=0.3)
    await resolver.aresolve("database")
    dns.fault(FQDN, "drop")
    clock.advance(6)
    assert (await resolver.aresolve("database")).stale


def test_migration_externalname_to_clusterip(dns: ClusterDNS, clock: FakeClock) -> None:
    resolver = dns.resolver(clock=clock)
    assert resolver.resolve("database").tls_name == RDS
    dns.cluster_ip("database", "production", "127.0.0.50")
    clock.advance(5.1)
    r = resolver.resolve("database")
    assert not r.is_alias and r.addresses == ("127.0.0.50",) and r.tls_name == "database"


# --- faults ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault, error, text",
    [
        ("servfail", ResolutionError, "SERVFAIL"),
        ("refused", ResolutionError, "REFUSED"),
        ("formerr", ResolutionError, "FORMERR"),
        ("drop", ResolutionError, "timed out"),
        ("truncate_hang", ResolutionError, "timed out"),
        ("garbage", ResolutionError, "DNS failure"),
        ("cname_loop", ChainError, "loop"),
    ],
)
def test_faults(dns: ClusterDNS, fault: str, error: type[Exception], text: str) -> None:
    dns.fault(FQDN, fault)
    resolver = dns.resolver(timeout=0.5)
    started = time.monotonic()
    with pytest.raises(error, match=text) as info:
        resolver.resolve(FQDN)
    assert time.monotonic() - started < 0.5 + 0.25
    assert FQDN in str(info.value)
    assert isinstance(info.value, OSError)


async def test_async_timeout_is_bounded(dns: ClusterDNS) -> None:
    dns.fault(FQDN, "drop")
    started = time.monotonic()
    with pytest.raises(ResolutionError, match="timed out"):
        await dns.resolver(timeout=0.5).aresolve("database")
    assert time.monotonic() - started < 0.75


def test_truncation_falls_back_to_tcp(dns: ClusterDNS) -> None:
    dns.fault(FQDN, "truncate")
    r = dns.resolver().resolve(FQDN)
    assert r.tls_name == RDS
    assert dns.query_count(FQDN, transport="tcp") == 2


def test_large_answer_over_tcp(dns: ClusterDNS) -> None:
    dns.fault(FQDN, "large")
    r = dns.resolver().resolve(FQDN)
    assert r.tls_name == RDS and r.addresses == ("127.0.0.10",)


def test_wrong_owner_records_are_ignored(dns: ClusterDNS) -> None:
    from kubealias.testing._server import EVIL_ADDRESS

    dns.fault(FQDN, "wrong_owner")
    r = dns.resolver().resolve("database")
    assert r.chain == (FQDN, RDS, EC2)
    assert r.addresses == ("127.0.0.10",)
    assert EVIL_ADDRESS not in r.addresses


def test_failover_to_second_nameserver(dns: ClusterDNS) -> None:
    dead = ClusterDNS()
    dead.start()
    dead_ns = dead.nameserver
    dead.stop()  # its port is closed now: ICMP port unreachable -> next server
    resolver = dns.resolver(nameservers=[dead_ns, dns.nameserver], timeout=1)
    assert resolver.resolve("database").tls_name == RDS


def test_servfail_then_answer_in_search_walk(dns: ClusterDNS) -> None:
    dns.fault("database.production.production.svc.cluster.local", "servfail")
    r = dns.resolver().resolve("database.production")
    assert r.tls_name == RDS


# --- policy ---------------------------------------------------------------------------------


def test_allowlist_match(dns: ClusterDNS) -> None:
    r = dns.resolver(allowed_targets="*.rds.amazonaws.com").resolve("database")
    assert r.tls_name == RDS


def test_allowlist_refuses_other_targets(dns: ClusterDNS) -> None:
    resolver = dns.resolver(allowed_targets=["*.example.org", "api.stripe.com"])
    with pytest.raises(PolicyError, match="KUBEALIAS_ALLOWED_TARGETS") as info:
        resolver.resolve("database")
    assert info.value.chain == (FQDN, RDS, EC2)
    assert "database" in str(info.value)
    with pytest.raises(PolicyError):  # cached, raised again
        resolver.resolve("database")
    assert queries(dns) == (1, 1)
    # names that are not aliases are untouched by the policy
    assert resolver.resolve("orders").tls_name == "orders"


def test_strict_without_allowlist(dns: ClusterDNS) -> None:
    resolver = dns.resolver(strict=True)
    with pytest.raises(PolicyError, match="KUBEALIAS_STRICT"):
        resolver.resolve("database")
    assert resolver.resolve("orders").tls_name == "orders"
    assert dns.resolver(strict=True, allowed_targets=RDS).resolve("database").tls_name == RDS


def test_one_warning_per_process_without_allowlist(
    dns: ClusterDNS, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("kubealias._resolver._warned_no_allowlist", False)
    with caplog.at_level(logging.WARNING, logger="kubealias"):
        dns.resolver().resolve("database")
        dns.resolver().resolve("database.production")
    warnings = [r for r in caplog.records if "KUBEALIAS_ALLOWED_TARGETS" in r.getMessage()]
    assert len(warnings) == 1


# --- module functions -----------------------------------------------------------------------


@pytest.fixture
def default(dns: ClusterDNS) -> Iterator[Resolver]:
    resolver = dns.resolver()
    kubealias.set_default_resolver(resolver)
    yield resolver
    kubealias.set_default_resolver(None)


async def test_module_functions_share_the_default(default: Resolver, dns: ClusterDNS) -> None:
    assert kubealias.resolve("database").tls_name == RDS
    assert (await kubealias.aresolve("database")).tls_name == RDS
    assert kubealias.get_default_resolver() is default
    assert queries(dns) == (1, 1)


def test_default_resolver_from_environment(
    dns: ClusterDNS, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in dns.env().items():
        monkeypatch.setenv(key, value)
    kubealias.set_default_resolver(None)
    assert kubealias.resolve("database").tls_name == RDS


# --- findings of the review: each a scenario that once went wrong -------------------------


def test_stale_never_masks_nxdomain_of_the_answering_name(
    dns: ClusterDNS, clock: FakeClock
) -> None:
    resolver = dns.resolver(clock=clock, timeout=0.5)
    assert resolver.resolve("database").is_alias
    dns.remove_service("database", "production")  # the Service is deleted: NXDOMAIN ...
    dns.fault("database.svc.cluster.local", "servfail")  # ... and a later candidate flakes
    clock.advance(6)
    with pytest.raises(ResolutionError, match="SERVFAIL"):
        resolver.resolve("database")


def test_failures_are_cached_briefly(dns: ClusterDNS, clock: FakeClock) -> None:
    dns.fault(FQDN, "servfail")
    resolver = dns.resolver(clock=clock, timeout=0.5)
    for _ in range(3):
        with pytest.raises(ResolutionError):
            resolver.resolve(FQDN)
    assert queries(dns) == (2, 2)
    clock.advance(1.1)  # FAILURE_TTL
    with pytest.raises(ResolutionError):
        resolver.resolve(FQDN)
    assert queries(dns) == (4, 4)


def test_outage_costs_one_timeout_not_one_per_recheck(dns: ClusterDNS, clock: FakeClock) -> None:
    resolver = dns.resolver(clock=clock, timeout=0.4, max_stale=60)
    resolver.resolve("database")
    dns.fault(FQDN, "drop")
    clock.advance(6)
    assert resolver.resolve("database").stale  # the first failure waits out the timeout
    for _ in range(5):
        clock.advance(1.5)
        started = time.monotonic()
        assert resolver.resolve("database").stale
        assert time.monotonic() - started < 0.1  # refreshed in the background


def test_name_outside_the_cluster_domain_is_not_rewritten(dns: ClusterDNS) -> None:
    # ndots 1: "payment-api.dev" is asked as is first and is a CNAME out there. It is not a
    # Service, so its name must not change (invariant 3).
    dns.record("payment-api.dev", "CNAME", "parked.example.test")
    dns.record("parked.example.test", "A", "127.0.0.77")
    r = dns.resolver(ndots=1).resolve("payment-api.dev")
    assert not r.is_alias and r.tls_name == "payment-api.dev"
    assert "outside cluster.local" in r.reason


def test_two_cnames_at_one_owner_is_a_chain_error(cluster_dns: ClusterDNS) -> None:
    import dns.message
    import dns.rrset

    cluster = cluster_dns

    def build(query: dns.message.Message) -> bytes:
        response = dns.message.make_response(query)
        # two RRsets for one owner on the wire (one CNAME each: a CNAME RRset holds only one)
        response.answer = [
            dns.rrset.from_text(FQDN + ".", 5, "IN", "CNAME", "mydb.example.test."),
            dns.rrset.from_text(FQDN + ".", 5, "IN", "CNAME", "evil.example.test."),
            dns.rrset.from_text("mydb.example.test.", 5, "IN", "A", "127.0.0.10"),
            dns.rrset.from_text("evil.example.test.", 5, "IN", "A", "127.0.0.66"),
        ]
        return response.to_wire()

    cluster.raw_answer(FQDN, None, build)
    with pytest.raises(ChainError, match="2 CNAME records"):
        cluster.resolver().resolve("database")


def test_waiters_never_wait_past_the_timeout_for_a_stuck_leader(dns: ClusterDNS) -> None:
    # A leader whose event loop stopped running never finishes its lookup: other callers must
    # neither hang nor fail for longer than the timeout, and must then do the lookup themselves.
    resolver = dns.resolver(timeout=0.5)
    loop = asyncio.new_event_loop()
    dns.delay(FQDN, 0.2)
    task = loop.create_task(resolver.aresolve("database"))
    loop.run_until_complete(asyncio.sleep(0.01))  # the task leads, then the loop stops
    dns.delay(FQDN, 0)
    try:
        started = time.monotonic()
        r = resolver.resolve("database")
        assert r.tls_name == RDS
        assert time.monotonic() - started < 0.5 + 0.25
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            loop.run_until_complete(task)
        loop.close()


async def test_sync_call_inside_a_coroutine_while_async_lookup_runs(
    resolver: Resolver, dns: ClusterDNS
) -> None:
    dns.delay(FQDN, 0.1)
    pending = await in_flight(resolver, 0.01)
    started = time.monotonic()
    assert resolver.resolve("database").tls_name == RDS  # no deadlock on our own loop
    assert time.monotonic() - started < 1.0
    assert (await pending).tls_name == RDS


def test_the_first_stale_answer_is_logged_with_a_template(
    dns: ClusterDNS, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    # Log filters and error trackers group records by template: the arguments stay arguments.
    resolver = dns.resolver(clock=clock, timeout=0.3, max_stale=30)
    resolver.resolve("database")
    dns.fault(FQDN, "servfail")
    clock.advance(6)
    with caplog.at_level(logging.WARNING, logger="kubealias"):
        assert resolver.resolve("database").stale
        assert resolver.resolve("database").stale
    (record,) = [r for r in caplog.records if "serving the previous answer" in r.getMessage()]
    assert record.msg == "DNS failure for %s (%s): serving the previous answer for up to %g s"
    assert isinstance(record.args, tuple)
    assert record.args[:2] == ("database", "server failure (SERVFAIL)")


@pytest.mark.parametrize("path", ["sync", "async"])
def test_a_chain_error_carries_no_internal_context(dns: ClusterDNS, path: str) -> None:
    dns.fault(FQDN, "cname_loop")
    resolver = dns.resolver()
    with pytest.raises(ChainError) as info:
        if path == "sync":
            resolver.resolve("database")
        else:
            asyncio.run(resolver.aresolve("database"))
    assert info.value.name == "database"
    assert info.value.__context__ is None and info.value.__cause__ is None

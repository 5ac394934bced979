"""kubealias._http.RoutePlanner: the routes an adapter remembers, and when it forgets them."""

from __future__ import annotations

import pytest

import kubealias
from kubealias._http import RoutePlanner
from kubealias.testing import ClusterDNS, FakeClock, Fault
from tests.unit.conftest import PAYMENT


@pytest.fixture
def counted(
    dns: ClusterDNS, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> tuple[kubealias.Resolver, list[str]]:
    """A resolver on the fake clock whose resolve() calls are recorded."""
    resolver = dns.resolver(clock=clock, timeout=0.4, max_stale=30)
    calls: list[str] = []
    real = resolver.resolve

    def resolve(host: str) -> kubealias.Resolution:
        calls.append(host)
        return real(host)

    monkeypatch.setattr(resolver, "resolve", resolve)
    return resolver, calls


def test_a_route_is_remembered_until_its_answer_expires(
    counted: tuple[kubealias.Resolver, list[str]], clock: FakeClock
) -> None:
    resolver, calls = counted
    planner = RoutePlanner(resolver, rewrite_host=True)

    first = planner.plan("payment-api", 8443, "https")
    assert first is not None and first.tls_name == PAYMENT
    assert planner.plan("payment-api", 8443, "https") is first
    assert calls == ["payment-api"]  # the second time: no resolver call at all

    clock.advance(5.1)  # the cluster DNS's TTL: the answer has expired
    again = planner.plan("payment-api", 8443, "https")
    assert again is not None and again.tls_name == PAYMENT
    assert calls == ["payment-api", "payment-api"]


def test_flush_and_another_resolver_are_seen(
    counted: tuple[kubealias.Resolver, list[str]], dns: ClusterDNS
) -> None:
    resolver, calls = counted
    planner = RoutePlanner(resolver, rewrite_host=True)
    planner.plan("payment-api", None, "https")

    dns.external_name("payment-api", "production", "moved.example.test")
    dns.record("moved.example.test", "A", "127.0.0.9")
    resolver.flush("payment-api")
    route = planner.plan("payment-api", None, "https")
    assert route is not None and (route.tls_name, route.addresses) == (
        "moved.example.test",
        ("127.0.0.9",),
    )
    assert calls == ["payment-api", "payment-api"]

    # The default resolver replaced: the planner without its own resolver follows it.
    default = RoutePlanner(None, rewrite_host=True)
    kubealias.set_default_resolver(resolver)
    try:
        assert default.plan("payment-api", None, "https") == route
        other = dns.resolver(timeout=0.4)
        kubealias.set_default_resolver(other)
        replanned = default.plan("payment-api", None, "https")
        assert replanned is not None and replanned is not route  # from the other resolver
    finally:
        kubealias.set_default_resolver(None)


def test_a_stale_answer_is_never_remembered(
    counted: tuple[kubealias.Resolver, list[str]], dns: ClusterDNS, clock: FakeClock
) -> None:
    resolver, calls = counted
    planner = RoutePlanner(resolver, rewrite_host=True)
    fresh = planner.plan("payment-api", None, "https")
    assert fresh is not None

    dns.fault(None, Fault.SERVFAIL)  # the DNS server fails: stale answers are served
    clock.advance(6)
    for _ in range(3):
        stale = planner.plan("payment-api", None, "https")
        assert stale is not None and stale.tls_name == fresh.tls_name
        assert resolver.resolve("payment-api").stale
        calls.pop()
    # Every call went to the resolver, which serves stale and keeps trying to refresh.
    assert calls == ["payment-api"] * 4


def test_names_passed_through_and_errors(
    counted: tuple[kubealias.Resolver, list[str]], dns: ClusterDNS
) -> None:
    resolver, calls = counted
    planner = RoutePlanner(resolver, rewrite_host=True)
    assert planner.plan("api.example.com", None, "https") is None
    assert planner.plan("api.example.com", None, "https") is None
    assert calls == ["api.example.com"]  # passed through, remembered too

    dns.fault("broken-api.production.svc.cluster.local", Fault.REFUSED)
    for _ in range(2):
        with pytest.raises(kubealias.ResolutionError):
            planner.plan("broken-api", None, "https")
    assert calls.count("broken-api") == 2  # errors are never remembered


@pytest.mark.parametrize("host", [None, ""])
async def test_a_url_without_a_host_is_passed_through_without_a_lookup(
    counted: tuple[kubealias.Resolver, list[str]], host: str | None
) -> None:
    resolver, calls = counted
    planner = RoutePlanner(resolver, rewrite_host=True)

    assert planner.plan(host, 1, "http") is None
    assert await planner.aplan(host, 1, "https") is None
    assert calls == []  # the adapter's own client reports the URL (see the adapters' tests)

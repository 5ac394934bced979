"""kubealias.testing.FakeClock: the clock the tests (and users' tests) give resolvers."""

from __future__ import annotations

import pytest

from kubealias.testing import ClusterDNS, FakeClock

DB = "database.production.svc.cluster.local"


def test_reads_and_moves_only_when_told() -> None:
    clock = FakeClock()
    assert clock() == clock.now == 1000.0
    assert clock() == 1000.0
    clock.advance(2.5)
    clock.advance(0)
    assert clock() == 1002.5
    assert repr(clock) == "FakeClock(now=1002.5)"
    assert FakeClock(start=7.0)() == 7.0


def test_never_goes_back() -> None:
    clock = FakeClock()
    with pytest.raises(ValueError, match="never goes back"):
        clock.advance(-0.1)
    assert clock() == 1000.0


def test_drives_a_resolvers_cache(cluster_dns: ClusterDNS) -> None:
    # The example of the class docstring, and what happens once the TTL has passed.
    cluster_dns.external_name("database", "production", "mydb.example.test")
    cluster_dns.record("mydb.example.test", "A", "127.0.0.10")
    clock = FakeClock()
    resolver = cluster_dns.resolver(clock=clock)
    resolver.resolve("database")
    clock.advance(1)  # within the cluster TTL (5 s): the cached answer
    resolver.resolve("database")
    assert cluster_dns.query_count(DB, "A") == 1
    clock.advance(5)
    resolver.resolve("database")
    assert cluster_dns.query_count(DB, "A") == 2

"""A monotonic clock that a test moves by hand, for cache lifetimes without sleeping."""

from __future__ import annotations

__all__ = ["FakeClock"]


class FakeClock:
    """A monotonic clock that only moves when told to.

    Pass it as ``clock=`` to :class:`kubealias.Resolver` (or to
    :meth:`kubealias.testing.ClusterDNS.resolver`) and the resolver's cache lifetimes follow
    :meth:`advance` instead of the wall: a test sees an answer expire, be served stale or be
    refreshed in microseconds::

        from kubealias.testing import FakeClock


        def test_the_answer_is_cached_for_its_ttl(cluster_dns):
            cluster_dns.external_name("database", "production", "mydb.example.test")
            cluster_dns.record("mydb.example.test", "A", "127.0.0.10")
            clock = FakeClock()
            resolver = cluster_dns.resolver(clock=clock)
            resolver.resolve("database")
            clock.advance(1)  # within the cluster TTL (5 s): the cached answer
            resolver.resolve("database")
            assert cluster_dns.query_count("database.production.svc.cluster.local", "A") == 1

    Reading it from other threads (a resolver's background refresh) is safe: :attr:`now` is
    one float, replaced whole.

    Args:
        start: the first reading, in seconds.

    Attributes:
        now: the current reading, in seconds.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        """The current reading, in seconds (the signature of :func:`time.monotonic`)."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward.

        Args:
            seconds: how far; 0 is allowed.

        Raises:
            ValueError: ``seconds`` is negative (a monotonic clock never goes back).
        """
        if seconds < 0:
            raise ValueError(f"a monotonic clock never goes back: advance({seconds!r})")
        self.now += seconds

    def __repr__(self) -> str:
        return f"FakeClock(now={self.now!r})"

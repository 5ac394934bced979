"""The result of a resolution."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Resolution"]


@dataclass(frozen=True, slots=True)
class Resolution:
    """What kubealias learned about one host name.

    Attributes:
        name: the name exactly as the application gave it.
        fqdn: the fully qualified name that answered (lowercase, no trailing dot); for a name
            that was passed through without a query, the name itself, normalised.
        chain: every owner name from ``fqdn`` to the canonical name; ``(fqdn,)`` when there is
            no CNAME, ``()`` when nothing was queried.
        tls_name: the name to send as SNI and to verify the certificate against. For a name
            that is not an alias this is ``name``, unchanged.
        addresses: the IPv4 and IPv6 addresses of the canonical name, in answer order
            (A records first, then AAAA). Empty for names that were passed through unqueried.
        is_alias: true when the chain contains a CNAME (or a ``KUBEALIAS_ALIASES`` override
            applies) and the TLS name therefore differs from ``name``.
        stale: true when this answer is past its TTL and is served because the DNS server
            failed (RFC 8767 serve-stale), within ``KUBEALIAS_MAX_STALE``.
        reason: one line saying why the name was, or was not, rewritten.
        candidates: the names queried, in order, each with what the server said.
        chain_ttls: the TTL of the record owned by each name of ``chain`` when it was received.
    """

    name: str
    fqdn: str
    chain: tuple[str, ...]
    tls_name: str
    addresses: tuple[str, ...]
    is_alias: bool
    stale: bool = False
    reason: str = ""
    candidates: tuple[tuple[str, str], ...] = ()
    chain_ttls: tuple[int, ...] = ()
    expires: float = field(default=float("inf"), repr=False, compare=False)
    _clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)

    @property
    def ttl(self) -> float:
        """Seconds left before this answer must be refreshed (0 when stale, inf if never)."""
        left = self.expires - self._clock()
        return left if left > 0 else 0.0

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dictionary of the public fields."""
        ttl = self.ttl
        return {
            "name": self.name,
            "fqdn": self.fqdn,
            "chain": list(self.chain),
            "chain_ttls": list(self.chain_ttls),
            "tls_name": self.tls_name,
            "addresses": list(self.addresses),
            "is_alias": self.is_alias,
            "stale": self.stale,
            "ttl": None if ttl == float("inf") else round(ttl, 3),
            "reason": self.reason,
            "candidates": [{"name": n, "result": r} for n, r in self.candidates],
        }

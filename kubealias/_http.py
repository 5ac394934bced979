"""What every HTTP adapter shares: the route to an alias, and connecting to its addresses.

One place, not three copies: requests/urllib3 and httpx ask their :class:`RoutePlanner` once
per request and get an immutable :class:`Route`; nothing that varies per request is stored
anywhere shared. A ``None`` route means "nothing kubealias looked up":
the adapter then takes its base class's unchanged code path (invariant 3).

A Service that the cluster DNS answered without a CNAME (ClusterIP, headless) gets a *pinned*
route: its name stays exactly as given (SNI, certificate check, ``Host``: ``tls_name`` is the
name and ``host_header`` is None), but the connection goes to the addresses of the answer
kubealias just read, not to a second lookup by the client. Two lookups could disagree: right
after a ClusterIP Service becomes an ExternalName, the client's own lookup already sees the
CNAME while the cached answer still says "not an alias", and the client would reach the
external server with the short name and fail verification (invariant 1: the addresses the
cluster DNS gave for the name, from one answer).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

from ._models import Resolution
from ._resolver import Resolver, get_default_resolver

__all__ = ["Route", "RoutePlanner", "connect_first", "default_port", "plan_route"]


@dataclass(frozen=True, slots=True)
class Route:
    """How to reach one alias for one request.

    Attributes:
        name: the host as the application gave it.
        tls_name: SNI and certificate host name (always the same name: never separated).
        addresses: where the cluster DNS says the name is, in answer order.
        port: the port of the request.
        host_header: the ``Host`` value to send when the caller set none, or None to leave it.
        alias: False for a *pinned* route (a Service that is not an alias): only the addresses
            are kubealias's; SNI, verification and ``Host`` stay exactly the client's own (a
            ``server_hostname`` or ``sni_hostname`` the caller set is kept).
    """

    name: str
    tls_name: str
    addresses: tuple[str, ...]
    port: int
    host_header: str | None
    alias: bool = True

    pool_key: tuple[str, str, tuple[str, ...], int, str | None, bool] = field(
        init=False, repr=False, compare=False
    )
    """What makes two routes share connections: everything but the order of the addresses
    (cluster DNS may shuffle them in every answer, e.g. CoreDNS's ``loadbalance``: a new order
    must not mean new connections). Connections go to the addresses in the order of the route
    that made the pool."""

    def __post_init__(self) -> None:
        key = (
            self.name,
            self.tls_name,
            tuple(sorted(self.addresses)),
            self.port,
            self.host_header,
            self.alias,
        )
        object.__setattr__(self, "pool_key", key)  # frozen: set once, here


def default_port(scheme: str) -> int:
    """443 for https, 80 otherwise."""
    return 443 if scheme.lower() == "https" else 80


def plan_route(
    resolver: Resolver | None, host: str, port: int | None, scheme: str, *, rewrite_host: bool
) -> Route | None:
    """Resolve ``host`` and return its route, or None when kubealias passes it through.

    One-off; adapters keep a :class:`RoutePlanner`, which remembers the route.

    Raises:
        KubeAliasError: the name cannot be resolved safely (the adapter maps it to its
            client's connection error, with this error as the cause).
    """
    result = (resolver or get_default_resolver()).resolve(host)
    return _route_for(result, host, port, scheme, rewrite_host)


def _route_for(
    result: Resolution, host: str, port: int | None, scheme: str, rewrite: bool
) -> Route | None:
    """The route for an answer: None when nothing was looked up (passed through), a pinned
    route for a Service that is not an alias, else the alias's route."""
    if not result.addresses:
        return None
    port = port or default_port(scheme)
    if not result.is_alias:  # pinned: the name as given, the answer's addresses
        return Route(host, host, result.addresses, port, None, alias=False)
    tls_name = result.tls_name
    header = None
    if rewrite:
        header = tls_name if port == default_port(scheme) else f"{tls_name}:{port}"
    return Route(host, tls_name, result.addresses, port, header)


class RoutePlanner:
    """:func:`plan_route` for one adapter, remembering each route until its answer expires.

    A hit costs one dict lookup and a clock read instead of the resolver's cache lookup and a
    new route: the hot path of every keep-alive request (routes are built on a miss only, so
    requests share one route object while the answer is fresh). An entry is used only while
    the answer it came from is fresh on the resolver's clock, the resolver is the one in use
    (the default resolver can be replaced) and the resolver was not flushed since; a stale
    answer is never remembered, so serve-stale and its refresh stay the resolver's. Entries
    are immutable tuples: threads share the dict without a lock.
    """

    __slots__ = ("_memo", "_resolver", "_rewrite_host")
    _MAX = 1024

    def __init__(self, resolver: Resolver | None, *, rewrite_host: bool) -> None:
        self._resolver = resolver
        self._rewrite_host = rewrite_host
        self._memo: dict[
            tuple[str | None, int | None, str], tuple[Resolver, int, Resolution, Route | None]
        ] = {}

    def _remember(
        self,
        key: tuple[str | None, int | None, str],
        resolver: Resolver,
        generation: int,
        result: Resolution,
        route: Route | None,
    ) -> Route | None:
        if not result.stale:
            if len(self._memo) >= self._MAX:
                self._memo.clear()  # rare (that many distinct hosts): start again
            self._memo[key] = (resolver, generation, result, route)
        return route

    def _hit(
        self, key: tuple[str | None, int | None, str], resolver: Resolver
    ) -> tuple[Resolver, int, Resolution, Route | None] | None:
        hit = self._memo.get(key)
        if (
            hit is not None
            and hit[0] is resolver
            and hit[1] == resolver.generation
            and hit[2].expires > resolver._clock()
        ):
            return hit
        return None

    def plan(self, host: str | None, port: int | None, scheme: str) -> Route | None:
        """As :func:`plan_route`; a URL without a host (``None`` or empty) has nothing to
        resolve and is passed through (None), so that the adapter's own client reports it as
        without kubealias (requests' ``InvalidURL``, urllib3's ``LocationValueError``, httpx's
        ``UnsupportedProtocol``)."""
        resolver = self._resolver or get_default_resolver()
        key = (host, port, scheme)
        hit = self._hit(key, resolver)
        if hit is not None:
            return hit[3]
        if not host:  # checked on a miss only: never remembered, so never a hit
            return None
        generation = resolver.generation  # before resolving: a flush meanwhile wins
        result = resolver.resolve(host)
        route = _route_for(result, host, port, scheme, self._rewrite_host)
        return self._remember(key, resolver, generation, result, route)

    async def aplan(self, host: str | None, port: int | None, scheme: str) -> Route | None:
        """:meth:`plan` without blocking the event loop (awaits ``aresolve``)."""
        resolver = self._resolver or get_default_resolver()
        key = (host, port, scheme)
        hit = self._hit(key, resolver)
        if hit is not None:
            return hit[3]
        if not host:
            return None
        generation = resolver.generation
        result = await resolver.aresolve(host)
        route = _route_for(result, host, port, scheme, self._rewrite_host)
        return self._remember(key, resolver, generation, result, route)


def connect_first(
    addresses: Sequence[str],
    port: int,
    timeout: float | None,
    *,
    name: str,
    source_address: tuple[str, int] | None = None,
    socket_options: Sequence[tuple[int, int, int | bytes]] | None = None,
) -> socket.socket:
    """Connect to the first of ``addresses`` that accepts, in order; never look up a name.

    Each address gets the whole connect ``timeout`` (as urllib3 and the standard library give
    each address that getaddrinfo returns).

    Raises:
        TimeoutError: every address timed out.
        OSError: no address accepted; the message lists each address and its error.
    """
    errors: list[str] = []
    last: OSError | None = None
    for address in addresses:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            for level, option, value in socket_options or ():
                sock.setsockopt(level, option, value)
            if timeout is not None:
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect((address, port))
        except OSError as exc:
            sock.close()
            last = exc
            errors.append(f"{address}:{port} ({exc})")
            continue
        return sock
    detail = "; ".join(errors) or "no address"
    message = f"cannot connect to {name}: {detail}"
    if isinstance(last, TimeoutError):
        raise TimeoutError(message) from last
    raise OSError(message) from last

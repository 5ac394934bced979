"""httpx: transports that reach aliases by their TLS name, for ``Client`` and ``AsyncClient``.

    import httpx
    from kubealias.httpx import AsyncHTTPTransport, HTTPTransport

    with httpx.Client(transport=HTTPTransport()) as client:
        client.get("https://payment-api/v1/charges")   # verified as the external name

    async with httpx.AsyncClient(transport=AsyncHTTPTransport()) as client:
        await client.get("https://payment-api/v1/charges")

Both are httpx's own transports (subclasses: ``isinstance(t, httpx.HTTPTransport)`` holds) and
take every argument of theirs, in their order (``verify``, ``cert``, ``http2``, ``limits``,
``proxy``, ``retries``, ...), plus keyword-only ``resolver=`` and ``rewrite_host=``.

Give ``verify=`` (and ``cert=``) to the transport, not to the client::

    httpx.Client(transport=HTTPTransport(verify=ssl.create_default_context(cafile=CA)))

httpx's ``Client`` applies its own ``verify=``/``cert=`` only to the transport it builds itself;
once ``transport=`` (or ``mounts=``) is given they are silently ignored, and the transport, handed
none of the client's settings, cannot take them itself. So ``httpx.Client(verify=ctx,
transport=HTTPTransport())`` verifies with the default CA certificates. When an alias's
certificate then fails for want of its issuer, the ``httpx.ConnectError`` says to pass
``verify=`` to the transport (:func:`_verify_hint`; hosts kubealias passes through get httpx's
own error, unchanged).

How a request travels
---------------------
1. The host of the request URL is planned with :class:`kubealias._http.RoutePlanner` (the
   resolver's answer made a route, remembered by the transport until that answer expires or
   the resolver is flushed; the async transport awaits ``aresolve`` and never blocks the event
   loop). A host kubealias passes through goes, as the very same request object, to httpx's
   own ``handle_request`` on the transport's own pool, which httpx's ``__init__`` built from
   the caller's arguments: the unchanged httpx code path.
2. For an alias the request is sent as *new* objects (the caller's request is never touched):
   its header list with the Host below, and its extensions plus httpcore's ``sni_hostname``
   set to the TLS name, which httpcore uses as the SNI and as the name the certificate is
   verified against; verification stays exactly as the caller configured it. (Through a proxy,
   the URL host itself becomes the TLS name instead; see below.) The header list to send is
   remembered per route and reused while the client sends the same headers again.
3. The ``Host`` header becomes the TLS name (``name:port`` off the scheme's default port),
   because virtual-hosted services answer ``421``/``404`` to ``Host: payment-api``. A ``Host``
   set by the caller is kept: httpx always writes one from the URL, so a value equal to the
   URL's own authority counts as "not set", anything else as the caller's. ``rewrite_host=False``
   keeps the original header. Redirects are built by the client from *its* request, whose Host
   is the application's, so a rewritten Host never follows a redirect to another host.
4. The request goes to an inner httpx transport owned by its *route*: ``(scheme, TLS name,
   port, addresses)``. Its connection pool is httpx's own, built from the caller's arguments, but
   its network backend connects to the route's addresses, in order until one accepts, and never
   looks up a name (invariant 1). One pool per route matters: httpcore keys connections by
   scheme, host and port only, so two aliases with the same address but different TLS names
   must not share a pool, or a connection verified for one name would serve the other; and a
   new address set (the alias moved) gets new connections. The request is handed to that pool
   as httpx's transport would hand it (an ``httpcore.Request``, httpx's own exception mapping
   and response stream), without building a second ``httpx.Request``; where httpx lacks those
   helpers, a second ``httpx.Request`` goes through the inner transport instead (the fallback,
   below).

Inner transports live in a bounded LRU (32 routes), the only shared mutable state, and
it holds nothing that varies per request. A transport evicted from it is retired, and closed
once no request is inside it and its pool's connections are idle (checked on later requests, and
all closed by ``close()``): closing an httpcore pool closes its active connections too and would
cut off responses still streaming from it. All share one
``ssl.SSLContext`` (built once, by httpx's ``create_ssl_context``, from ``verify``/``cert``/
``trust_env``): certificates are loaded once, and every pool verifies as the caller asked.

Proxies
-------
With ``proxy=``, the proxy makes the TCP connection: the ``CONNECT`` (or the absolute-form request
for ``http://``) goes to ``tls_name:port`` and the proxy resolves that name; the addresses are not
pinned, only the URL host (hence SNI, verification) and the Host header change. The proxy's pool
keys connections by the TLS name, so no route pools are needed there.

httpx reads ``HTTPS_PROXY``/``NO_PROXY`` (``trust_env``) only when the client has no
``transport=``, and then mounts plain httpx transports for them, which win over a ``mounts=``
entry as broad as ``all://``. To use a proxy from the environment with kubealias, turn that off
and mount kubealias transports for the same patterns; mount patterns match the URL the
application used, as ``NO_PROXY`` does::

    proxy = os.environ["HTTPS_PROXY"]
    client = httpx.Client(
        trust_env=False,  # no plain httpx transports mounted for the proxy variables
        mounts={
            "all://": HTTPTransport(proxy=proxy),  # through the proxy, as tls_name:port
            "all://*.svc.cluster.local": HTTPTransport(),  # the NO_PROXY entries: direct
            "all://payment-api": HTTPTransport(),
        },
    )

Errors
------
A :class:`~kubealias.KubeAliasError` from resolution is raised as ``httpx.ConnectError`` with
the same message and the kubealias error as ``__cause__`` (one choke point,
:func:`_connect_error`). When no address accepts, the pool's connect fails with
``httpx.ConnectError`` (``httpx.ConnectTimeout`` when every address timed out) listing each
address and its error. With ``uds=`` every request goes to the socket: nothing is resolved.

Extension points and httpx's internals
--------------------------------------
httpcore documents its network backends as public API
(https://www.encode.io/httpcore/network-backends/), but httpx 0.28 has no argument to pass one to
its transports (https://github.com/encode/httpx/discussions/3180, PR #3749 open). So the backend
is installed on the pool that httpx built, through ``HTTPTransport._pool`` and
``ConnectionPool._network_backend``; both are checked before use, and an httpx or httpcore that
lacks them fails loudly rather than connect by name: the request raises ``RuntimeError`` naming
the httpx and httpcore versions and the attribute missing (:func:`_pin`). Not an ``OSError``
(which every ``KubeAliasError`` is): retry-on-network-error code must not take a version mismatch
for a passing network failure.

Alias requests reach that pool through httpx's own glue, ``map_httpcore_exceptions`` and
``ResponseStream``/``AsyncResponseStream`` from ``httpx._transports.default`` (the same mapping
and streams as a plain httpx transport). The fallback: an httpx without them (checked once, at
import, by :func:`_missing_glue`) sends each alias request as a second ``httpx.Request`` (built by
:func:`_forward`) through the route's inner ``httpx.HTTPTransport`` instead (``_DIRECT`` is
False): one object more per request, the same behaviour. The ``httpx`` extra is bounded to the
versions tested (``pyproject.toml``), so that a release that moves these internals is not picked
up unnoticed.
"""

from __future__ import annotations

import importlib
import inspect
import itertools
import os
import ssl
import threading
from collections.abc import AsyncIterable, Callable, Iterable
from types import TracebackType
from typing import Any, Generic, TypeAlias, TypeVar

try:
    import httpcore
    import httpx
except ImportError as exc:  # tested by hiding httpx from sys.modules
    raise ImportError("kubealias.httpx needs httpx: pip install 'kubealias[httpx]'") from exc

from ._errors import KubeAliasError
from ._http import Route, RoutePlanner
from ._resolver import Resolver

__all__ = ["AsyncHTTPTransport", "HTTPTransport"]

_GLUE = ("map_httpcore_exceptions", "ResponseStream", "AsyncResponseStream")


def _missing_glue() -> tuple[str, ...]:
    """The parts of httpx's glue between httpcore and httpx that this httpx lacks (empty: the
    direct path is available). Read at import time; tested by hiding one of them."""
    try:
        module = importlib.import_module("httpx._transports.default")
    except ImportError:
        return ("httpx._transports.default",)
    return tuple(f"httpx._transports.default.{n}" for n in _GLUE if not hasattr(module, n))


_MISSING_GLUE = _missing_glue()
#: Alias requests go to the route's pool as httpcore requests (True), or as a second
#: ``httpx.Request`` through the route's inner transport (False: another httpx, see above).
_DIRECT = not _MISSING_GLUE
if _DIRECT:  # httpx's own exception mapping and stream types (the module docstring says why)
    from httpx._transports.default import AsyncResponseStream as _AsyncResponseStream
    from httpx._transports.default import ResponseStream as _ResponseStream
    from httpx._transports.default import map_httpcore_exceptions as _map_exceptions

#: Inner transports (one per route) kept per kubealias transport; least recently used go first.
_MAX_ROUTES = 32

_CertTypes: TypeAlias = str | tuple[str, str] | tuple[str, str, str]
"""What httpx accepts as ``cert=``: a file, or (cert, key) or (cert, key, password)."""
_ProxyTypes: TypeAlias = httpx.URL | str | httpx.Proxy
"""What httpx accepts as ``proxy=``."""

_RouteKey: TypeAlias = tuple[str, tuple[str, str, tuple[str, ...], int, str | None, bool]]
"""(scheme, Route.pool_key): one inner transport per key."""
_T = TypeVar("_T")
#: httpx's own default ``limits=`` (read from its signature: httpx does not export it), so
#: that the transports' signatures are httpx's.
_DEFAULT_LIMITS: httpx.Limits = inspect.signature(httpx.HTTPTransport).parameters["limits"].default
_SCHEMES = frozenset({"http", "https"})
#: What kubealias.httpx was tested with (pyproject.toml bounds the httpx extra the same way).
_TESTED = "httpx>=0.27,<0.29 with httpcore 1.x"


# --- the one choke point for foreign exceptions ---------------------------------------------


def _connect_error(request: httpx.Request, exc: KubeAliasError) -> httpx.ConnectError:
    """A kubealias error as the error httpx users already catch for a host they can't reach
    (raised ``from`` it: the kubealias error is the ``__cause__``). A function rather than a
    context manager: it sits on every request's path."""
    return httpx.ConnectError(str(exc), request=request)


#: OpenSSL's verify codes for "the issuer is not trusted" (self-signed leaf or chain, issuer
#: not found locally or at all, leaf signature unverifiable): what a CA missing from the
#: trust store looks like, as opposed to a name mismatch or an expired certificate.
_UNTRUSTED_ISSUER = frozenset({2, 18, 19, 20, 21})
_VERIFY_HINT = (
    " (kubealias.httpx: this transport trusts the default CA certificates; httpx ignores "
    "httpx.Client(verify=...) once transport= or mounts= is given: pass verify= to the "
    "transport, HTTPTransport(verify=...))"
)


def _verify_hint(request: httpx.Request, exc: httpx.ConnectError) -> httpx.ConnectError | None:
    """``exc`` with a hint where the alias's certificate has an issuer that the transport's
    default trust store lacks, else None. Called on that error path only, for a transport
    built with ``verify=True``: a CA given to ``httpx.Client(verify=...)`` instead of the
    transport is the likely cause (httpx hands a given transport none of the client's
    settings, so the transport cannot take them itself)."""
    seen: BaseException | None = exc
    for _ in range(8):  # httpx's error, httpcore's, then ssl's: short chains, never a cycle
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError):
            if seen.verify_code not in _UNTRUSTED_ISSUER:
                return None
            return httpx.ConnectError(f"{exc}{_VERIFY_HINT}", request=request)
        seen = seen.__cause__ or seen.__context__
    return None


# --- the request for an alias ---------------------------------------------------------------


def _host_set_by_caller(request: httpx.Request, route: Route) -> bool:
    """True when the Host header differs from the one httpx writes from the URL.

    httpx's ``Request`` always adds ``Host: <url.netloc>`` when the caller gave none, so that
    value is indistinguishable from "not set"; rewriting it is then what the caller wants. The
    netloc is the route's name (the URL host, an LDH name) with the port when not the default.
    """
    value: str | None = request.headers.get("Host")
    if value is None:
        return False
    port = request.url.port
    netloc = route.name if port is None else f"{route.name}:{port}"
    return value.lower() != netloc.lower()


_RawHeaders: TypeAlias = list[tuple[bytes, bytes]]


class _HeaderMemo:
    """The header list to send for the last request of each route, reused while requests of
    that route arrive with the very same header list (a client sends the same headers again
    and again). Entries are immutable once stored, so threads share the dict without a lock.
    """

    __slots__ = ("_entries",)
    _MAX = 256

    def __init__(self) -> None:
        self._entries: dict[int, tuple[Route, _RawHeaders, _RawHeaders]] = {}

    def raw(self, request: httpx.Request, route: Route) -> _RawHeaders:
        """The request's header list, with the route's ``Host`` unless the caller set one."""
        raw = request.headers.raw  # a new list: the caller's headers are never modified
        if route.host_header is None:
            return raw
        hit = self._entries.get(id(route))
        if hit is not None and hit[0] is route and hit[1] == raw:
            return hit[2]
        out = raw
        if not _host_set_by_caller(request, route):
            host = route.host_header.encode("ascii")  # an LDH name (and port)
            out = [(k, host) if k.lower() == b"host" else (k, v) for k, v in raw]
        if len(self._entries) >= self._MAX:
            self._entries.clear()  # rare (that many routes): start again
        # The route is kept in the entry, so its id cannot be reused while the entry lives.
        self._entries[id(route)] = (route, raw, out)
        return out


def _forward(
    request: httpx.Request, route: Route, headers: _RawHeaders, *, proxied: bool
) -> httpx.Request:
    """A new request for ``route`` (through a proxy, or where httpx lacks what
    :func:`_core_request` needs); the caller's request is never touched.

    Without a proxy the URL is kept and the TLS name goes in httpcore's ``sni_hostname``
    extension, which httpcore uses both as SNI and as the name the certificate is verified
    against; the pool it goes to serves this route only, so its origin (the application's
    host) is unambiguous. Through a proxy the URL host becomes the TLS name, so that the
    CONNECT goes to ``tls_name:port``.
    """
    if proxied:
        url, extensions = request.url.copy_with(host=route.tls_name), request.extensions
    else:
        url, extensions = request.url, _extensions(request, route)
    # stream= (not content=): the body is passed on as is and httpx adds no header of its own.
    return httpx.Request(
        request.method, url, headers=headers, stream=request.stream, extensions=extensions
    )


def _extensions(request: httpx.Request, route: Route) -> dict[str, Any]:
    """The request's extensions, with the TLS name as httpcore's ``sni_hostname`` for an alias
    (for a pinned route the caller's own SNI setting, if any, is kept)."""
    if not route.alias:
        return request.extensions
    return {**request.extensions, "sni_hostname": route.tls_name}


def _core_request(request: httpx.Request, route: Route, headers: _RawHeaders) -> httpcore.Request:
    """The httpcore request for a route's own pool: what httpx's transport would build from
    :func:`_forward`'s request, built directly (one ``httpx.Request`` less per request)."""
    url = request.url
    return httpcore.Request(
        method=request.method,
        url=httpcore.URL(
            scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
        ),
        headers=headers,
        content=request.stream,
        extensions=_extensions(request, route),
    )


# --- network backends pinned to a route's addresses -----------------------------------------


def _check_origin(route: Route, host: str, port: int) -> None:
    """Fail closed if the pool asks for another origin than the route it was built for, or
    for a port no socket can use (httpx accepts any number in a URL; getaddrinfo would refuse
    it, the socket layer would raise OverflowError, which is no httpx error)."""
    if host.lower().rstrip(".") != route.name.lower().rstrip(".") or port != route.port:
        raise httpcore.ConnectError(
            f"kubealias: the connection pool of {route.name}:{route.port} was asked for "
            f"{host}:{port}; refusing to connect"
        )
    if not 0 < port < 65536:
        raise httpcore.ConnectError(f"cannot connect to {route.name}: port {port} is out of range")


def _endpoint(address: str, port: int) -> str:
    """``address:port``, with an IPv6 address in brackets (RFC 3986 authority form)."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _why(exc: BaseException) -> str:
    """The most specific reason behind a connect error: the first error of its cause chain
    that carries an errno (anyio reports "All connection attempts failed" and chains the
    ``[Errno 111] Connection refused`` behind it), else its own message."""
    seen: BaseException | None = exc
    for _ in range(8):  # causes are short chains; never loop on a cycle
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.errno is not None:
            # One wording for both transports (asyncio says "Connect call failed (...)").
            return f"[Errno {seen.errno}] {os.strerror(seen.errno)}"
        seen = seen.__cause__ or seen.__context__
    return str(exc) or type(exc).__name__


def _no_address_accepted(
    route: Route, failures: list[tuple[str, Exception]]
) -> httpcore.ConnectError | httpcore.ConnectTimeout:
    """One error naming every address tried and why it failed (as psycopg reports attempts)."""
    detail = "; ".join(f"{_endpoint(a, route.port)} ({_why(e)})" for a, e in failures)
    message = f"cannot connect to {route.tls_name}: {detail or 'no address'}"
    if failures and all(isinstance(e, httpcore.ConnectTimeout) for _, e in failures):
        return httpcore.ConnectTimeout(message)
    return httpcore.ConnectError(message)


class _Attempts:
    """What both pinned backends decide about one connect, apart from connecting: the origin
    is the route's (else fail closed), which addresses to try in which order, and the one
    error naming every address that failed (as psycopg reports attempts)."""

    __slots__ = ("failures", "options", "route")

    def __init__(
        self, route: Route, host: str, port: int, options: Iterable[httpcore.SOCKET_OPTION] | None
    ) -> None:
        _check_origin(route, host, port)
        self.route = route
        self.options = list(options or ())  # reused for each address
        self.failures: list[tuple[str, Exception]] = []

    def error(self) -> httpcore.ConnectError | httpcore.ConnectTimeout:
        """The error to raise once no address accepted, caused by the last failure."""
        error = _no_address_accepted(self.route, self.failures)
        error.__cause__ = self.failures[-1][1] if self.failures else None
        return error


#: What a pinned backend catches from one address before it tries the next one.
_CONNECT_FAILED = (httpcore.ConnectError, httpcore.ConnectTimeout)


_Backend = TypeVar("_Backend", httpcore.NetworkBackend, httpcore.AsyncNetworkBackend)


class _Pinned(Generic[_Backend]):
    """What both pinned backends hold: the route, and httpcore's own backend to delegate to."""

    def __init__(self, route: Route, backend: _Backend) -> None:
        self._route = route
        self._backend: _Backend = backend


class _PinnedBackend(_Pinned[httpcore.NetworkBackend], httpcore.NetworkBackend):
    """httpcore's own backend, asked for the route's addresses instead of the host name.

    Delegating each address to the wrapped backend keeps httpcore's socket set-up exactly
    (TCP_NODELAY, ``socket_options``, ``local_address``, timeout and error types); each address
    gets the whole connect timeout, as with httpcore's own ``create_connection``.
    """

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        attempts = _Attempts(self._route, host, port, socket_options)
        for address in self._route.addresses:
            try:
                return self._backend.connect_tcp(
                    address, port, timeout, local_address, socket_options=attempts.options
                )
            except _CONNECT_FAILED as exc:
                attempts.failures.append((address, exc))
        raise attempts.error()

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:  # pragma: no cover - route pools are never built with uds
        return self._backend.connect_unix_socket(path, timeout, socket_options)

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)  # httpcore's retry back-off


class _AsyncPinnedBackend(_Pinned[httpcore.AsyncNetworkBackend], httpcore.AsyncNetworkBackend):
    """:class:`_PinnedBackend` for asyncio and trio (httpcore's AnyIO/Trio backend underneath)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        attempts = _Attempts(self._route, host, port, socket_options)
        for address in self._route.addresses:
            try:
                return await self._backend.connect_tcp(
                    address, port, timeout, local_address, socket_options=attempts.options
                )
            except _CONNECT_FAILED as exc:
                attempts.failures.append((address, exc))
        raise attempts.error()

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:  # pragma: no cover - route pools are never built with uds
        return await self._backend.connect_unix_socket(path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


_Inner = TypeVar("_Inner", httpx.HTTPTransport, httpx.AsyncHTTPTransport)


def _pin(transport: _Inner, route: Route) -> _Inner:
    """Make ``transport``'s pool connect to ``route.addresses`` (see the module docstring).

    Raises:
        RuntimeError: This httpx/httpcore has no ``HTTPTransport._pool`` or
            ``ConnectionPool._network_backend`` of the expected types: connecting to an alias
            by its name instead would be wrong, so the request fails, naming the versions.
    """
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if isinstance(pool, httpcore.ConnectionPool) and isinstance(backend, httpcore.NetworkBackend):
        pool._network_backend = _PinnedBackend(route, backend)
    elif isinstance(pool, httpcore.AsyncConnectionPool) and isinstance(
        backend, httpcore.AsyncNetworkBackend
    ):
        pool._network_backend = _AsyncPinnedBackend(route, backend)
    else:
        missing = (
            f"{type(transport).__name__}._pool"
            if pool is None
            else f"{type(pool).__name__}._network_backend"
        )
        raise RuntimeError(
            f"kubealias.httpx cannot pin the addresses of {route.name!r}: httpx "
            f"{httpx.__version__} with httpcore {httpcore.__version__} has no usable {missing} "
            f"(kubealias.httpx was tested with {_TESTED}); refusing to connect to an alias by "
            "its name"
        )
    return transport


# --- the route-keyed LRU of inner transports ------------------------------------------------


class _Slot(Generic[_T]):
    """One inner transport, and one ``inside`` entry per request in its ``handle_request``.

    ``inside`` is a list because ``list.append`` and ``list.pop`` are atomic: requests enter
    and leave without taking the cache's lock.
    """

    __slots__ = ("inside", "retired", "tick", "transport")

    def __init__(self, transport: _T) -> None:
        self.transport = transport
        self.inside: list[None] = []
        self.retired = False  # out of the cache: closed once idle (set under the lock only)
        self.tick = 0  # when last used, for the least-recently-used eviction


class _RouteCache(Generic[_T]):
    """A bounded cache of inner transports by route, least recently used out first.

    A transport pushed out is *retired*, not closed: closing an httpcore pool closes its active
    connections too and would cut off responses still streaming from it. A retired transport
    is handed back to be closed once no request is inside it and ``idle`` says every
    connection of its pool is idle (a streaming response keeps its connection busy); the
    transports check :meth:`take_idle` on each request while some are retired, and
    :meth:`drain` hands back all. Nothing here performs I/O: the caller closes what it is
    handed, outside the lock (so the async transport can await ``aclose``).

    A request for a cached route takes no lock (:meth:`enter`): it registers itself in the
    slot, *then* checks that the slot is not retired, while :meth:`take_idle` looks for
    requests inside only in slots already retired. So either the request is seen (the
    transport stays open) or it sees the retirement and goes round again through the lock.
    """

    def __init__(self, size: int, idle: Callable[[_T], bool]) -> None:
        self._size = max(1, size)
        self._idle = idle
        self._lock = threading.Lock()
        self._slots: dict[_RouteKey, _Slot[_T]] = {}
        self._retired: list[_Slot[_T]] = []
        self._ticks = itertools.count(1)  # next() is atomic

    def __len__(self) -> int:
        with self._lock:
            return len(self._slots)

    @property
    def retiring(self) -> bool:
        """Whether some retired transports wait to be closed (read without the lock: a hint)."""
        return bool(self._retired)

    def enter(self, key: _RouteKey, factory: Callable[[Route], _T], route: Route) -> _Slot[_T]:
        """The slot for ``key`` (made by ``factory(route)`` if absent), with this request
        inside until :meth:`leave`."""
        slot = self._slots.get(key)
        if slot is not None:
            slot.inside.append(None)
            if not slot.retired:
                slot.tick = next(self._ticks)
                return slot
            slot.inside.pop()  # retired meanwhile: a new slot, under the lock
        with self._lock:
            slot = self._slots.get(key)
            if slot is None:
                # factory() builds a transport and a pool, without I/O (the SSL context is
                # shared), so holding the lock here costs microseconds.
                slot = self._slots[key] = _Slot(factory(route))
                slot.tick = next(self._ticks)  # the newest: never the one evicted
                while len(self._slots) > self._size:
                    oldest = min(self._slots, key=lambda k: self._slots[k].tick)
                    retired = self._slots.pop(oldest)
                    retired.retired = True
                    self._retired.append(retired)
            slot.inside.append(None)
            slot.tick = next(self._ticks)
            return slot

    @staticmethod
    def leave(slot: _Slot[_T]) -> None:
        """One request has left ``slot``'s ``handle_request``."""
        slot.inside.pop()

    def take_idle(self) -> list[_T]:
        """The retired transports with no request inside and an idle pool, to be closed now."""
        with self._lock:
            busy: list[_Slot[_T]] = []
            idle: list[_T] = []
            for slot in self._retired:
                if not slot.inside and self._idle(slot.transport):
                    idle.append(slot.transport)
                else:
                    busy.append(slot)
            self._retired = busy
            return idle

    def drain(self) -> list[_T]:
        """Empty the cache; every transport, cached or retired, is returned to be closed now."""
        with self._lock:
            slots = [*self._slots.values(), *self._retired]
            self._slots.clear()
            self._retired = []
            return [slot.transport for slot in slots]


def _pool_idle(transport: httpx.HTTPTransport | httpx.AsyncHTTPTransport) -> bool:
    """Whether no connection of the transport's pool is busy (its pool was checked by _pin)."""
    pool: httpcore.ConnectionPool | httpcore.AsyncConnectionPool = transport._pool
    return all(c.is_idle() or c.is_closed() for c in pool.connections)


# --- the transports ---------------------------------------------------------------------------

#: httpx's own ``handle_request``, for the hosts kubealias passes through: called as a function
#: rather than through ``super()``, which costs as much again on the path of every such request
#: (a bound method of a separate plain transport did not). Only httpx's own code handles those
#: requests, as when they went to a separate plain transport.
_httpx_send = httpx.HTTPTransport.handle_request
_httpx_asend = httpx.AsyncHTTPTransport.handle_async_request


def _httpx_options(
    verify: ssl.SSLContext | str | bool,
    cert: _CertTypes | None,
    trust_env: bool,
    http1: bool,
    http2: bool,
    limits: httpx.Limits | None,
    local_address: str | None,
    retries: int,
    socket_options: Iterable[httpcore.SOCKET_OPTION] | None,
) -> dict[str, Any]:
    """The keyword arguments every inner httpx transport gets (the caller's, SSL context once)."""
    options: dict[str, Any] = {
        # Built once, exactly as httpx builds it from these three arguments; verification is
        # whatever they say (kubealias never passes verify=False of its own).
        "verify": httpx.create_ssl_context(verify=verify, cert=cert, trust_env=trust_env),
        "trust_env": trust_env,
        "http1": http1,
        "http2": http2,
        "local_address": local_address,
        "retries": retries,
        # A list: an iterator would be used up by the first of several transports.
        "socket_options": None if socket_options is None else list(socket_options),
    }
    if limits is not None:  # None: httpx's own default limits
        options["limits"] = limits
    return options


class _Core(Generic[_Inner]):
    """What both transports share: their arguments, the route cache and every decision about
    a request; :class:`HTTPTransport` and :class:`AsyncHTTPTransport` only drive it, each with
    its own I/O (plan or ``aplan``, send or await). It comes first in their MRO, before the
    httpx transport each of them is, whose pool serves the hosts kubealias passes through."""

    _inner_cls: type[_Inner]
    """The httpx transport class of each route's inner transport (and the base class)."""

    def __init__(
        self,
        verify: ssl.SSLContext | str | bool = True,
        cert: _CertTypes | None = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits | None = _DEFAULT_LIMITS,
        proxy: _ProxyTypes | None = None,
        uds: str | None = None,
        local_address: str | None = None,
        retries: int = 0,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
        *,
        resolver: Resolver | None = None,
        rewrite_host: bool = True,
    ) -> None:
        """See :class:`HTTPTransport` for the arguments and what they raise."""
        self._uds = uds is not None
        self._proxied = proxy is not None
        self._default_trust = verify is True  # see _verify_hint
        self._options = _httpx_options(
            verify, cert, trust_env, http1, http2, limits, local_address, retries, socket_options
        )
        # httpx's own __init__ (the next class in the MRO: httpx.HTTPTransport or
        # httpx.AsyncHTTPTransport) builds the pool of the hosts kubealias passes through:
        # this transport *is* the plain httpx transport for them, one pool and not two.
        # (mypy checks _Core alone, whose next class would be object.)
        super().__init__(**self._options, proxy=proxy, uds=uds)  # type: ignore[call-arg]
        self._routes: _RouteCache[_Inner] = _RouteCache(_MAX_ROUTES, _pool_idle)
        # One bound method, not one per request.
        self._new_inner: Callable[[Route], _Inner] = self._make_inner
        self._planner = RoutePlanner(resolver, rewrite_host=rewrite_host)
        self._memo = _HeaderMemo()

    def _retire_all(self) -> list[_Inner]:
        """Every route's transport, out of the cache, to be closed now (by close/aclose)."""
        return self._routes.drain()

    def _make_inner(self, route: Route) -> _Inner:
        return _pin(self._inner_cls(**self._options), route)

    def _raise_hinted(self, request: httpx.Request, exc: httpx.ConnectError) -> None:
        """Raise ``exc`` with :func:`_verify_hint`'s hint where it applies, else return (the
        caller re-raises ``exc`` as is). On the error path only."""
        hinted = _verify_hint(request, exc) if self._default_trust else None
        if hinted is not None:
            raise hinted from exc

    def _through_proxy(self, request: httpx.Request, route: Route) -> httpx.Request:
        """With ``proxy=``: what goes to the plain transport, which the proxy connects for."""
        if not route.alias:
            # Invariant 3: the request as given (the proxy resolves the name itself; pinning
            # a non-alias Service's addresses is not possible through a proxy anyway).
            return request
        return _forward(request, route, self._memo.raw(request, route), proxied=True)


def _close_each(transports: list[httpx.HTTPTransport]) -> None:
    """Close the route transports that :class:`_RouteCache` handed back."""
    for transport in transports:
        transport.close()


async def _aclose_each(transports: list[httpx.AsyncHTTPTransport]) -> None:
    """:func:`_close_each` for the async transport."""
    for transport in transports:
        await transport.aclose()


def _response(
    answer: httpcore.Response, stream: httpx.SyncByteStream | httpx.AsyncByteStream
) -> httpx.Response:
    """httpcore's response as httpx's transport returns it, its body read through ``stream``."""
    return httpx.Response(
        status_code=answer.status,
        headers=answer.headers,
        stream=stream,
        extensions=answer.extensions,
    )


class HTTPTransport(_Core[httpx.HTTPTransport], httpx.HTTPTransport):
    """An ``httpx.HTTPTransport`` that reaches ExternalName aliases by their TLS name.

    Use it as ``httpx.Client(transport=HTTPTransport(verify=...))`` or in ``mounts=``: httpx
    ignores the client's own ``verify=`` once a transport is given. It is an
    ``httpx.HTTPTransport``, and a host that is not an alias goes through httpx's own
    ``handle_request`` unchanged. Safe to share between threads, as httpx's own transport is.

    Args:
        verify: As httpx: ``True``, ``False`` (the caller's choice; kubealias never makes it),
            an ``ssl.SSLContext`` or a CA bundle path.
        cert: As httpx: client certificate file, or (cert, key[, password]).
        trust_env: As httpx: read ``SSL_CERT_FILE``/``SSL_CERT_DIR``.
        http1: As httpx.
        http2: As httpx (needs ``httpx[http2]``).
        limits: As httpx (``None``: httpx's default). Applies to each route's pool.
        proxy: As httpx; the proxy is asked for ``tls_name:port`` (see the module docstring).
        uds: As httpx; with a Unix socket nothing is resolved or rewritten.
        local_address: As httpx.
        retries: As httpx (connect retries; each retry tries every address again).
        socket_options: As httpx.
        resolver: The resolver to use; ``None`` for the default one.
        rewrite_host: Send the TLS name as ``Host`` (unless the caller set a Host header).

    Raises:
        ImportError: A SOCKS proxy without ``socksio`` installed (from httpx).
        ValueError: An unsupported proxy scheme (from httpx).
        OSError: A CA bundle or certificate file cannot be read (from ``ssl``).
    """

    _inner_cls = httpx.HTTPTransport

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send one request; see the module docstring for what happens to an alias.

        Raises:
            httpx.ConnectError: The host cannot be resolved safely (the kubealias error is the
                cause), or no address accepted the connection.
            httpx.HTTPError: Anything httpx's own transport raises.
            RuntimeError: This httpx cannot connect to an alias's addresses (see ``_pin``).
        """
        url = request.url
        scheme = url.scheme  # each URL property decodes again: read once
        if self._uds or scheme not in _SCHEMES:  # a Unix socket, or not HTTP: nothing to resolve
            return _httpx_send(self, request)
        try:
            route = self._planner.plan(url.host, url.port, scheme)
        except KubeAliasError as exc:
            raise _connect_error(request, exc) from exc
        if route is None:  # invariant 3: the request as given, to the unchanged httpx path
            return _httpx_send(self, request)
        if self._proxied:
            return _httpx_send(self, self._through_proxy(request, route))
        headers = self._memo.raw(request, route)
        if self._routes.retiring:  # rare: some evicted transports wait to be closed
            _close_each(self._routes.take_idle())
        slot = self._routes.enter((scheme, route.pool_key), self._new_inner, route)
        try:
            if not _DIRECT:
                forwarded = _forward(request, route, headers, proxied=False)
                return slot.transport.handle_request(forwarded)
            # What httpx.HTTPTransport.handle_request does with a request, on the route's pool
            # (checked by _pin), with httpx's own exception mapping and response stream.
            assert isinstance(request.stream, httpx.SyncByteStream)
            with _map_exceptions():
                answer = slot.transport._pool.handle_request(_core_request(request, route, headers))
            assert isinstance(answer.stream, Iterable)
            return _response(answer, _ResponseStream(answer.stream))
        except httpx.ConnectError as exc:
            self._raise_hinted(request, exc)
            raise
        finally:
            self._routes.leave(slot)

    def close(self) -> None:
        """Close every inner transport and their connections."""
        try:
            _close_each(self._retire_all())
        finally:
            super().close()

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        # httpx's __exit__ closes its own pool only: the routes' pools are ours to close.
        try:
            _close_each(self._retire_all())
        finally:
            super().__exit__(exc_type, exc_value, traceback)


class AsyncHTTPTransport(_Core[httpx.AsyncHTTPTransport], httpx.AsyncHTTPTransport):
    """An ``httpx.AsyncHTTPTransport`` that reaches ExternalName aliases by their TLS name.

    Resolution awaits :meth:`kubealias.Resolver.aresolve`: the event loop is never blocked.
    Use it as ``httpx.AsyncClient(transport=AsyncHTTPTransport(verify=...))`` or in ``mounts=``
    (httpx ignores the client's own ``verify=`` once a transport is given). It is an
    ``httpx.AsyncHTTPTransport``.

    Takes the same arguments as :class:`HTTPTransport`, and raises the same errors when built.
    """

    _inner_cls = httpx.AsyncHTTPTransport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send one request; see the module docstring for what happens to an alias.

        Raises:
            httpx.ConnectError: The host cannot be resolved safely (the kubealias error is the
                cause), or no address accepted the connection.
            httpx.HTTPError: Anything httpx's own transport raises.
            RuntimeError: This httpx cannot connect to an alias's addresses (see ``_pin``).
        """
        url = request.url
        scheme = url.scheme  # as in HTTPTransport, with aplan and awaits
        if self._uds or scheme not in _SCHEMES:
            return await _httpx_asend(self, request)
        try:
            route = await self._planner.aplan(url.host, url.port, scheme)
        except KubeAliasError as exc:
            raise _connect_error(request, exc) from exc
        if route is None:
            return await _httpx_asend(self, request)
        if self._proxied:
            return await _httpx_asend(self, self._through_proxy(request, route))
        headers = self._memo.raw(request, route)
        if self._routes.retiring:
            await _aclose_each(self._routes.take_idle())
        slot = self._routes.enter((scheme, route.pool_key), self._new_inner, route)
        try:
            if not _DIRECT:
                forwarded = _forward(request, route, headers, proxied=False)
                return await slot.transport.handle_async_request(forwarded)
            assert isinstance(request.stream, httpx.AsyncByteStream)
            with _map_exceptions():
                pool = slot.transport._pool
                answer = await pool.handle_async_request(_core_request(request, route, headers))
            assert isinstance(answer.stream, AsyncIterable)
            return _response(answer, _AsyncResponseStream(answer.stream))
        except httpx.ConnectError as exc:
            self._raise_hinted(request, exc)
            raise
        finally:
            self._routes.leave(slot)

    async def aclose(self) -> None:
        """Close every inner transport and their connections."""
        try:
            await _aclose_each(self._retire_all())
        finally:
            await super().aclose()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        # As HTTPTransport.__exit__: httpx's closes its own pool only.
        try:
            await _aclose_each(self._retire_all())
        finally:
            await super().__aexit__(exc_type, exc_value, traceback)

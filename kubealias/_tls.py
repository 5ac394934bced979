"""The TLS name as a context: for every client that takes an :class:`ssl.SSLContext`.

A client that connects to an address must still send the TLS name as SNI and check the
certificate against it. Most clients take the name to verify from the host they were given, so
with ``host=<address>`` they would verify the address, and with ``host=<alias>`` they would
look the alias up a second time and verify the short name. :func:`tls_context` closes that gap
from the one place every TLS client goes through: ``SSLContext.wrap_socket`` (blocking clients)
and ``SSLContext.wrap_bio`` (asyncio, uvloop, trio's ``SSLStream``).

    r = kubealias.resolve("database")      # asyncio: r = await kubealias.aresolve("database")
    ctx = kubealias.tls_context(r, ssl.create_default_context(cafile="rds-ca.pem"))
    conn = pg8000.native.Connection("app", host=r.addresses[0], ssl_context=ctx, ...)

docs/clients-tls-context.md has the recipe for pg8000, PyMySQL/aiomysql, websockets,
pika/aio-pika and kafka-python: failover across ``r.addresses`` in order, names kubealias
passes through (no addresses: the client as usual, with the caller's own context), and a
kubealias failure raised as the client's own connection error.

The context returned *is* the caller's context, with one change: whatever ``server_hostname``
a client passes (an address, the short name, nothing), the handshake is made by the caller's
context with the TLS name instead. Everything else -- verification mode, ``check_hostname``,
CA certificates, client certificates, ciphers, protocol versions, ALPN -- is read from and
written to the caller's context, so nothing can be lost in a copy and nothing is weakened:
kubealias changes which name is verified, never whether (docs/design.md, invariant 2).

A context is not copied because it cannot be copied faithfully: Python has no API to read
back a loaded client certificate, a CA directory (``capath``, loaded lazily by OpenSSL) or
the ALPN list, so a copy would silently drop them.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Mapping
from typing import Any, cast

from ._models import Resolution

__all__ = ["tls_context"]

# The names the wrapper answers itself; every other attribute is the caller's context's.
_OWN = frozenset(
    {
        "wrap_socket",
        "wrap_bio",
        "_wrap_socket",
        "_wrap_bio",
        "tls_name",
        "base_context",
        "_kubealias",
        "_parts",
    }
)


class _NamedContext(ssl.SSLContext):
    """An :class:`ssl.SSLContext` that is another one, except for the name it verifies.

    It is a real ``SSLContext`` (clients check ``isinstance``), but its own OpenSSL state is
    never used: attribute reads and writes go to the caller's context, and both ``wrap_*``
    methods call the caller's context with the TLS name.
    """

    _kubealias: tuple[ssl.SSLContext, str]

    def __new__(cls, base: ssl.SSLContext, tls_name: str) -> _NamedContext:
        # The OpenSSL context allocated here is never configured nor used (see the class
        # docstring); PROTOCOL_TLS_CLIENT only because one must be chosen.
        return super().__new__(cls, ssl.PROTOCOL_TLS_CLIENT)

    def __init__(self, base: ssl.SSLContext, tls_name: str) -> None:
        object.__setattr__(self, "_kubealias", (base, tls_name))

    def _parts(self) -> tuple[ssl.SSLContext, str]:
        parts: tuple[ssl.SSLContext, str] = object.__getattribute__(self, "_kubealias")
        return parts

    @property
    def tls_name(self) -> str:
        """The name every connection sends as SNI and checks the certificate against."""
        return self._parts()[1]

    @property
    def base_context(self) -> ssl.SSLContext:
        """The caller's context, which makes every handshake."""
        return self._parts()[0]

    def __getattribute__(self, name: str) -> Any:
        if name in _OWN or (name.startswith("__") and name.endswith("__")):
            return object.__getattribute__(self, name)
        return getattr(object.__getattribute__(self, "_kubealias")[0], name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(object.__getattribute__(self, "_kubealias")[0], name, value)

    def __delattr__(self, name: str) -> None:
        delattr(object.__getattribute__(self, "_kubealias")[0], name)

    def __repr__(self) -> str:
        base, tls_name = self._parts()
        return f"<kubealias TLS-name context {tls_name!r} over {base!r}>"

    def __reduce__(self) -> Any:
        # As for every SSLContext: there is nothing sound to pickle.
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")

    def wrap_socket(
        self,
        sock: Any,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLSocket:
        """The caller's ``wrap_socket`` with the TLS name as ``server_hostname``.

        Raises:
            ValueError: ``server_side=True``: a TLS name is a client's notion.
        """
        _client_only(server_side)
        base = self._parts()[0]
        return base.wrap_socket(
            sock,
            server_side=False,
            do_handshake_on_connect=do_handshake_on_connect,
            suppress_ragged_eofs=suppress_ragged_eofs,
            server_hostname=type(self)._name_for(self, server_hostname),
            session=session,
        )

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        """The caller's ``wrap_bio`` with the TLS name as ``server_hostname``.

        Raises:
            ValueError: ``server_side=True``: a TLS name is a client's notion.
        """
        _client_only(server_side)
        base = self._parts()[0]
        name = type(self)._name_for(self, server_hostname)
        return base.wrap_bio(
            incoming, outgoing, server_side=False, server_hostname=name, session=session
        )

    def _name_for(self, server_hostname: str | bytes | None) -> str | bytes | None:
        # Called through the class (type(self)._name_for): instance attribute reads go to the
        # caller's context (__getattribute__).
        return self._parts()[1]

    # The two C methods under wrap_socket/wrap_bio. ssl.SSLSocket._create and
    # ssl.SSLObject._create call them on whatever context they are given, so code that builds
    # its sockets that way with this context (a client's own SSLSocket subclass, or
    # ``ssl.SSLContext.wrap_socket(ctx, ...)`` called unbound, as subclasses do with super())
    # would otherwise reach the caller's context with its own server_hostname: the handshake
    # would verify the client's host instead of the TLS name. Same arguments as CPython's
    # (Modules/_ssl.c, _ssl__SSLContext__wrap_socket_impl / _wrap_bio_impl, since 3.7).
    def _wrap_socket(
        self, sock: Any, server_side: bool, server_hostname: Any = None, **kwargs: Any
    ) -> Any:
        _client_only(server_side)
        base = self._parts()[0]
        name = type(self)._name_for(self, server_hostname)
        return base._wrap_socket(sock, False, name, **kwargs)  # type: ignore[attr-defined]

    def _wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool,
        server_hostname: Any = None,
        **kwargs: Any,
    ) -> Any:
        _client_only(server_side)
        base = self._parts()[0]
        name = type(self)._name_for(self, server_hostname)
        return base._wrap_bio(  # type: ignore[attr-defined]
            incoming, outgoing, False, name, **kwargs
        )


def _client_only(server_side: bool) -> None:
    if server_side:
        raise ValueError("a kubealias TLS-name context is for client connections only")


def tls_context(
    tls_name: str | Resolution, context: ssl.SSLContext | None = None
) -> ssl.SSLContext:
    """An ``SSLContext`` whose connections verify ``tls_name``, whatever host the client gives.

    Every connection made with the returned context sends ``tls_name`` as SNI and checks the
    server's certificate against it (when ``context`` checks host names, as the default does),
    whatever ``server_hostname`` the client passes to ``wrap_socket``/``wrap_bio``: an
    address, the alias, or none. Everything else is ``context``'s own: the returned object
    reads and writes through to it (see the module docstring), so verification is never
    weaker than ``context``'s.

    Connect the client to the addresses of the same resolution (``Resolution.addresses``, in
    order, the next one when a connection fails): the context changes the name that is
    verified, not where the client connects. For example, with websockets (asyncio clients
    resolve with :func:`kubealias.aresolve`, which does not block the loop)::

        r = await kubealias.aresolve("payment-api")
        ctx = kubealias.tls_context(r, base)
        ws = await websockets.asyncio.client.connect(
            f"wss://{r.tls_name}/v1/events", host=r.addresses[0], ssl=ctx, proxy=None
        )

    and with pika, whose ``BlockingConnection`` tries a list of parameters in order::

        r = kubealias.resolve("rabbitmq")
        options = pika.SSLOptions(kubealias.tls_context(r, base), r.tls_name)
        pika.BlockingConnection(
            [pika.ConnectionParameters(a, 5671, ssl_options=options) for a in r.addresses]
        )

    The returned context can be given to any number of connections; make one per resolution
    (it costs about what ``ssl.SSLContext()`` does, far less than loading a CA store).

    Args:
        tls_name: The name to verify: a :class:`kubealias.Resolution` (its ``tls_name``) or
            a host name.
        context: The caller's client context; None for :func:`ssl.create_default_context`
            (the system's CAs, certificate and host name checked). Given a context this
            function made, the new name replaces the old one over the same caller's context.

    Returns:
        An :class:`ssl.SSLContext` for client connections.

    Raises:
        TypeError: ``context`` is not an ``ssl.SSLContext``, or ``tls_name`` not a str or
            Resolution.
        ValueError: ``tls_name`` is empty, or ``context`` is a server-side context.
    """
    name = tls_name.tls_name if isinstance(tls_name, Resolution) else tls_name
    if not isinstance(name, str):
        raise TypeError(f"tls_name must be a str or a kubealias.Resolution, not {type(name)!r}")
    name = name.rstrip(".")
    if not name:
        raise ValueError("tls_name is empty")
    if context is None:
        context = ssl.create_default_context()
    elif not isinstance(context, ssl.SSLContext):
        raise TypeError(f"context must be an ssl.SSLContext, not {type(context)!r}")
    if isinstance(context, _NamedContext):
        context = context.base_context
    if context.protocol == ssl.PROTOCOL_TLS_SERVER:
        raise ValueError("context is a server-side context (PROTOCOL_TLS_SERVER)")
    return _NamedContext(context, name)


class _RoutedContext(_NamedContext):
    """A :class:`_NamedContext` whose TLS name depends on the host the client connects to.

    For a client that takes one context for a whole host list and passes each host as
    ``server_hostname`` (asyncpg): each host in ``routes`` (an address kubealias handed the
    client) gets its name; any other host keeps the ``server_hostname`` the client passes.
    """

    _kubealias_routes: dict[str, str]

    def __new__(cls, base: ssl.SSLContext, routes: Mapping[str, str]) -> _RoutedContext:
        return cast(_RoutedContext, super().__new__(cls, base, ""))

    def __init__(self, base: ssl.SSLContext, routes: Mapping[str, str]) -> None:
        super().__init__(base, "")
        object.__setattr__(self, "_kubealias_routes", dict(routes))

    @property
    def tls_name(self) -> str:
        """No single name: it depends on the host (``routes``); always ``""``."""
        return ""

    def __repr__(self) -> str:
        routes = object.__getattribute__(self, "_kubealias_routes")
        return f"<kubealias TLS-name context {routes!r} over {self.base_context!r}>"

    def _name_for(self, server_hostname: str | bytes | None) -> str | bytes | None:
        routes: dict[str, str] = object.__getattribute__(self, "_kubealias_routes")
        if isinstance(server_hostname, str):
            return routes.get(server_hostname, server_hostname)
        return server_hostname


def routed_context(
    routes: Mapping[str, str], context: ssl.SSLContext, *, reuse: bool = True
) -> ssl.SSLContext:
    """The caller's ``context`` verifying a name chosen by the host the client connects to.

    :func:`tls_context` for clients that take one context for a list of hosts: a connection
    whose ``server_hostname`` is a key of ``routes`` (an address kubealias gave the client as
    its host) uses the value as SNI and certificate name; any other host is verified as the
    client gives it. Everything else is ``context``'s, as with :func:`tls_context`.

    With ``reuse``, the same ``context`` with the same ``routes`` gives the same object (a small
    cache: a new ``SSLContext`` per connection would cost an OpenSSL context allocation each
    time).

    Args:
        routes: host as the client will pass it -> the name to verify.
        context: The caller's client context (a context from :func:`tls_context` counts as
            the caller's context it wraps).
        reuse: Take the wrapper from the cache; False for a context made for one connection
            only, which would merely crowd the cache (and be kept alive by it).

    Returns:
        An :class:`ssl.SSLContext` for client connections.

    Raises:
        ValueError: ``context`` is a server-side context.
    """
    if isinstance(context, _NamedContext):
        context = context.base_context
    if context.protocol == ssl.PROTOCOL_TLS_SERVER:
        raise ValueError("context is a server-side context (PROTOCOL_TLS_SERVER)")
    if not reuse:
        return _RoutedContext(context, routes)
    return _routed(context, tuple(sorted(routes.items())))


# Every SSLContext allocates an OpenSSL SSL_CTX (about 0.4 ms with OpenSSL 3), which would be
# the largest part of a client's connect overhead; the same caller's context with the same
# routes (an application reusing its context for one database) gets the same wrapper, which
# holds no state of its own. Bounded: each entry keeps its caller's context alive.
@functools.lru_cache(maxsize=32)
def _routed(context: ssl.SSLContext, routes: tuple[tuple[str, str], ...]) -> _RoutedContext:
    return _RoutedContext(context, dict(routes))

"""urllib3: a ``PoolManager`` (and ``ProxyManager``) that reaches aliases by their TLS name.

    from kubealias.urllib3 import PoolManager

    http = PoolManager(ca_certs="/etc/ssl/certs/ca-certificates.crt")
    http.request("GET", "https://payment-api/v1/charges")   # verified as the external name

For a host that is an alias, the pool key carries the :class:`~kubealias._http.Route` (TLS name
and addresses), so a new TLS name or a new address set gets a new pool, and a connection
verified for one name is never used for another. Its connections connect to the addresses the
cluster DNS gave (no second lookup), send the TLS name as SNI and verify the certificate against
it (urllib3's ``server_hostname``; ``assert_hostname`` is never touched), and send it as
``Host`` unless the caller set one or ``rewrite_host=False``. Every other host takes urllib3's
own pool classes, unchanged.

Extension points used, as urllib3 documents them: ``PoolManager.key_fn_by_scheme`` (the docstring
of ``urllib3.poolmanager._default_key_normalizer``: provide alternate callables "if you wish to
change this behaviour"), and ``PoolManager._new_pool`` ("intended to be overridden for
customization"; it hands the request context to the pool class of ``pool_classes_by_scheme``,
which kubealias sets instead of overriding the method). Two pieces still restate urllib3's own
rules: :func:`_pool_key` (urllib3's key normalisation, in one pass, plus the route) and
``_new_conn`` of the alias connections (urllib3's errors for a failed connect). Each names the
upstream function it follows, and ``tests/unit/test_urllib3_manager.py`` fails when that
function changes shape in a new urllib3.
"""

from __future__ import annotations

import ssl
import sys
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Literal

try:
    import urllib3
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
    from urllib3.exceptions import (
        ConnectTimeoutError,
        MaxRetryError,
        NameResolutionError,
        NewConnectionError,
    )
    from urllib3.poolmanager import PoolKey
    from urllib3.util import parse_url
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("kubealias.urllib3 needs urllib3: pip install 'kubealias[requests]'") from exc

from ._errors import KubeAliasError
from ._http import Route, RoutePlanner, default_port
from ._resolver import Resolver

__all__ = ["PoolManager", "ProxyManager"]

# The key of a pool kubealias built for a route: PoolKey plus one field, the route's pool key.
# (A tuple longer than any PoolKey: never equal to the key of a pool urllib3 built.)
_FIELDS = (*PoolKey._fields, "key_ka_route")
AliasPoolKey: Any = __import__("collections").namedtuple("AliasPoolKey", _FIELDS)


_EMPTY_KEY: dict[str, Any] = dict.fromkeys(PoolKey._fields)
_EMPTY_ALIAS_KEY: dict[str, Any] = dict.fromkeys(_FIELDS)
_FROZEN = frozenset({"headers", "_proxy_headers", "_socks_options"})


def _pool_key(context: dict[str, Any]) -> Any:
    """urllib3's key normalisation (RFC 3986: scheme and host are case-insensitive; dicts and
    lists made hashable): urllib3's own ``PoolKey`` for a host kubealias passes through
    (``ka_route`` None), an :data:`AliasPoolKey` with the route for the others, so that their
    pools are per TLS name and address set.

    Follows ``urllib3.poolmanager._default_key_normalizer`` (a test compares both on the same
    contexts and fails when upstream changes shape); not a call to it, which would copy the
    context twice more per request.

    Runs on every request: one pass over the context, no intermediate dicts. An unknown key
    raises TypeError, as urllib3's own normaliser does.
    """
    alias = context.get("ka_route") is not None
    fields = (_EMPTY_ALIAS_KEY if alias else _EMPTY_KEY).copy()
    for key, value in context.items():
        if value is not None:
            if key in _FROZEN:
                value = frozenset(value.items())
            elif key == "socket_options":
                value = tuple(value)
            elif key == "ka_route":
                value = value.pool_key  # the address order does not make another pool
        elif key == "ka_route":
            continue  # passed through: nothing of kubealias's in urllib3's own key
        fields["key_" + key] = value
    fields["key_scheme"] = fields["key_scheme"].lower()
    fields["key_host"] = fields["key_host"].lower()
    if fields["key_blocksize"] is None:
        fields["key_blocksize"] = 16384  # urllib3's default, as its own normaliser fills in
    return AliasPoolKey(**fields) if alias else PoolKey(**fields)


# --- connections and pools for aliases ------------------------------------------------------


class _AliasConnectionMixin:
    """Connect to the route's addresses and send its Host header; everything else is urllib3's."""

    _ka_route: Route
    host: str
    port: int
    timeout: Any
    source_address: Any
    socket_options: Any

    def __init__(self, *args: Any, ka_route: Route, **kwargs: Any) -> None:
        self._ka_route = ka_route
        super().__init__(*args, **kwargs)

    def _new_conn(self) -> Any:
        # Follows urllib3.connection.HTTPConnection._new_conn (its error types and messages and
        # the audit event) with kubealias's connect; a test fails when upstream changes shape.
        route = self._ka_route
        if not route.addresses:  # through a proxy: the proxy connects (and resolves the name)
            return super()._new_conn()  # type: ignore[misc]
        from ._http import connect_first

        try:
            sock = connect_first(
                route.addresses,
                self.port,
                self.timeout,
                name=route.name
                if route.tls_name == route.name
                else f"{route.name} ({route.tls_name})",
                source_address=self.source_address,
                socket_options=self.socket_options,
            )
        except TimeoutError as exc:
            raise ConnectTimeoutError(
                self,
                f"Connection to {route.name} timed out. (connect timeout={self.timeout})",
            ) from exc
        except OSError as exc:
            message = f"Failed to establish a new connection: {exc}"
            raise NewConnectionError(self, message) from exc  # type: ignore[arg-type]
        sys.audit("http.client.connect", self, self.host, self.port)
        return sock

    def putrequest(
        self, method: str, url: str, skip_host: bool = False, skip_accept_encoding: bool = False
    ) -> None:
        header = self._ka_route.host_header
        # skip_host is true when the caller's headers carry a Host: never overwrite theirs.
        if header is None or skip_host:
            super().putrequest(method, url, skip_host, skip_accept_encoding)  # type: ignore[misc]
            return
        super().putrequest(method, url, True, skip_accept_encoding)  # type: ignore[misc]
        self.putheader("Host", header)  # type: ignore[attr-defined]


class _AliasHTTPConnection(_AliasConnectionMixin, HTTPConnection):
    pass


class _AliasHTTPSConnection(_AliasConnectionMixin, HTTPSConnection):
    pass


class _AliasHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _AliasHTTPConnection


class _AliasHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _AliasHTTPSConnection


def _pools_for(
    plain: type[HTTPConnectionPool], alias: type[HTTPConnectionPool]
) -> Callable[..., HTTPConnectionPool]:
    """What ``pool_classes_by_scheme`` holds for one scheme: urllib3's own pool class, or ours
    when the request context carries a route (``ka_route``, from the pool key's context)."""

    def new_pool(
        host: str, port: int | None = None, *, ka_route: Route | None = None, **kw: Any
    ) -> HTTPConnectionPool:
        if ka_route is None:  # not an alias: urllib3's own pool class, unchanged
            return plain(host, port, **kw)
        return alias(host, port, ka_route=ka_route, **kw)

    return new_pool


#: The alias pool class of each scheme (see :attr:`_AliasPools.pool_classes_by_scheme`).
_ALIAS_POOLS: dict[str, type[HTTPConnectionPool]] = {
    "http": _AliasHTTPConnectionPool,
    "https": _AliasHTTPSConnectionPool,
}


def _unresolved(
    host: str, port: int | None, scheme: str, exc: KubeAliasError
) -> NameResolutionError:
    """The error urllib3 raises for a name it cannot resolve, carrying the kubealias error."""
    # For the message, as urllib3 writes it; these objects never connect.
    conn_cls = HTTPSConnection if scheme == "https" else HTTPConnection
    conn = conn_cls(host, port or default_port(scheme))
    error = NameResolutionError(host, conn, exc)  # type: ignore[arg-type]
    error.__cause__ = exc
    return error


class _AliasPools:
    """What PoolManager and ProxyManager share: resolve, key pools by route, pick pool classes."""

    resolver: Resolver | None
    rewrite_host: bool
    _ka_planner: RoutePlanner
    key_fn_by_scheme: dict[str, Any]
    _ka_pool_classes: dict[str, Callable[..., HTTPConnectionPool]]

    # urllib3's PoolManager._new_pool is documented as "intended to be overridden for
    # customization" and passes the request context "as keyword arguments to the pool class
    # used", which it takes from the manager's pool_classes_by_scheme (see the docstring of
    # urllib3.poolmanager.PoolManager._new_pool; urllib3's own SOCKSProxyManager in
    # urllib3/contrib/socks.py sets its pool classes the same way). So kubealias wraps that
    # mapping and leaves _new_pool itself to urllib3: the context (blocksize default, the keys
    # dropped, the TLS keywords dropped for http) is prepared by urllib3's own code. The
    # mapping is a property so that pool classes set on the manager (by urllib3's __init__ or
    # by the application) serve the hosts that are not aliases, and aliases still get ours.
    @property
    def pool_classes_by_scheme(self) -> dict[str, Callable[..., HTTPConnectionPool]]:
        """The pool class of each scheme: the manager's own for hosts that are not aliases."""
        return self._ka_pool_classes

    @pool_classes_by_scheme.setter
    def pool_classes_by_scheme(self, classes: dict[str, type[HTTPConnectionPool]]) -> None:
        self._ka_pool_classes = {
            scheme: _pools_for(cls, _ALIAS_POOLS.get(scheme, _AliasHTTPSConnectionPool))
            for scheme, cls in classes.items()
        }

    def _ka_setup(self, resolver: Resolver | None, rewrite_host: bool) -> None:
        self.resolver = resolver
        self.rewrite_host = rewrite_host
        # key_fn_by_scheme: urllib3 documents it as the way to change how pool keys are made
        # (the docstring of urllib3.poolmanager._default_key_normalizer).
        self.key_fn_by_scheme = {"http": _pool_key, "https": _pool_key}
        self._ka_planner = RoutePlanner(resolver, rewrite_host=rewrite_host)

    def _ka_pool_kwargs(
        self, host: str, port: int | None, scheme: str, pool_kwargs: dict[str, Any] | None
    ) -> dict[str, Any]:
        """``pool_kwargs`` with the route of ``host`` (None: not an alias)."""
        kwargs = dict(pool_kwargs or {})
        if "ka_route" in kwargs:  # already decided by the caller (the requests adapter)
            return kwargs
        try:
            route = self._ka_planner.plan(host, port, scheme)
        except KubeAliasError as exc:
            raise _unresolved(host, port, scheme, exc) from exc
        kwargs["ka_route"] = route
        if route is not None and route.alias and scheme == "https":
            kwargs["server_hostname"] = route.tls_name  # a pinned route keeps the caller's
        return kwargs

    # Installed as ``urlopen`` by both managers (same signature as urllib3.PoolManager.urlopen,
    # which itself differs from RequestMethods': mypy refuses it as a mixin method).
    def _ka_urlopen(self, method: str, url: str, redirect: bool = True, **kw: Any) -> Any:
        """As urllib3's; a resolution failure is reported as urllib3 reports an exhausted
        connection (:func:`_exhausted`)."""
        try:
            return super().urlopen(method, url, redirect, **kw)  # type: ignore[misc]
        except NameResolutionError as exc:
            error = _exhausted(exc, url, kw.get("retries"))
            if error is exc:
                raise  # as it is: "raise exc from exc" would replace its cause with itself
            raise error from exc

    def connection_from_host(
        self,
        host: str | None,
        port: int | None = None,
        scheme: str | None = "http",
        pool_kwargs: dict[str, Any] | None = None,
    ) -> HTTPConnectionPool:
        """As urllib3's, with the route of ``host`` in the pool kwargs.

        Raises:
            NameResolutionError: ``host`` is an alias that cannot be resolved safely (the
                :class:`~kubealias.KubeAliasError` is the cause).
        """
        scheme = scheme or "http"
        if host:
            pool_kwargs = self._ka_pool_kwargs(host, port, scheme, pool_kwargs)
            route = pool_kwargs["ka_route"]
            if route is not None and not route.addresses:  # through a proxy (ProxyManager)
                host = route.tls_name  # the CONNECT goes to the TLS name
        return super().connection_from_host(host, port, scheme, pool_kwargs)  # type: ignore[misc, no-any-return]


def _exhausted(exc: NameResolutionError, url: str, retries: Any) -> Exception:
    """Resolution is not retried (a second try would only wait out the timeout again): the
    error arrives as urllib3 reports an exhausted connection, unless retries are off."""
    if not isinstance(exc.__cause__, KubeAliasError) or retries is False:
        return exc
    conn = exc.conn
    pool_cls = HTTPSConnectionPool if isinstance(conn, HTTPSConnection) else HTTPConnectionPool
    pool = pool_cls(conn.host, conn.port)  # names the pool in the message; never connects
    # The request target, as urllib3's own pools report it: never the URL's userinfo.
    return MaxRetryError(pool, parse_url(url).request_uri, exc)


# The ignores below: urllib3 declares pool_classes_by_scheme as a plain attribute holding
# classes; ours is a property holding factories that take the same arguments.
class PoolManager(_AliasPools, urllib3.PoolManager):  # type: ignore[misc]
    """A :class:`urllib3.PoolManager` that verifies aliases against their external name.

    Args:
        num_pools, headers, **connection_pool_kw: as :class:`urllib3.PoolManager` (same
            positions and defaults).
        resolver: the :class:`kubealias.Resolver` to use (default: the process's default).
        rewrite_host: send the TLS name as ``Host`` (default) so that virtual-hosted services
            answer; False keeps the name the application used.

    Raises (from requests):
        urllib3.exceptions.MaxRetryError: with a ``NameResolutionError`` reason whose cause is
            the :class:`kubealias.KubeAliasError`, when an alias cannot be resolved safely
            (``NameResolutionError`` itself with ``retries=False``).
    """

    def __init__(
        self,
        num_pools: int = 10,
        headers: Mapping[str, str] | None = None,
        *,
        resolver: Resolver | None = None,
        rewrite_host: bool = True,
        **connection_pool_kw: Any,
    ) -> None:
        super().__init__(num_pools, headers, **connection_pool_kw)
        self._ka_setup(resolver, rewrite_host)

    urlopen = _AliasPools._ka_urlopen


class ProxyManager(_AliasPools, urllib3.ProxyManager):  # type: ignore[misc]
    """A :class:`urllib3.ProxyManager` for aliases: the CONNECT goes to ``tls_name:port``.

    The proxy resolves and connects; kubealias gives it the TLS name instead of the service name
    (which only the cluster DNS knows) and verifies the origin's certificate against that name.
    Plain ``http://`` requests through a forward proxy are left unchanged.

    Args:
        proxy_url, num_pools, headers, proxy_headers, proxy_ssl_context,
            use_forwarding_for_https, proxy_assert_hostname, proxy_assert_fingerprint,
            **connection_pool_kw: as :class:`urllib3.ProxyManager` (same positions and
            defaults).
        resolver: as :class:`PoolManager`.
        rewrite_host: as :class:`PoolManager`.
    """

    def __init__(
        self,
        proxy_url: str,
        num_pools: int = 10,
        headers: Mapping[str, str] | None = None,
        proxy_headers: Mapping[str, str] | None = None,
        proxy_ssl_context: ssl.SSLContext | None = None,
        use_forwarding_for_https: bool = False,
        proxy_assert_hostname: str | Literal[False] | None = None,
        proxy_assert_fingerprint: str | None = None,
        *,
        resolver: Resolver | None = None,
        rewrite_host: bool = True,
        **connection_pool_kw: Any,
    ) -> None:
        super().__init__(
            proxy_url,
            num_pools,
            headers,
            proxy_headers,
            proxy_ssl_context,
            use_forwarding_for_https,
            proxy_assert_hostname,
            proxy_assert_fingerprint,
            **connection_pool_kw,
        )
        self._ka_setup(resolver, rewrite_host)

    urlopen = _AliasPools._ka_urlopen

    def _ka_pool_kwargs(
        self, host: str, port: int | None, scheme: str, pool_kwargs: dict[str, Any] | None
    ) -> dict[str, Any]:
        """The route for a tunnel: no addresses (the proxy connects), the TLS name as the host
        to ask the proxy for (see :meth:`connection_from_host`)."""
        if scheme != "https":  # a forward proxy for http://: the request is left unchanged
            kwargs = dict(pool_kwargs or {})
            kwargs["ka_route"] = None
            return kwargs
        kwargs = super()._ka_pool_kwargs(host, port, scheme, pool_kwargs)
        route: Route | None = kwargs["ka_route"]
        if route is not None and not route.alias:
            # A Service that is not an alias: the proxy resolves the name itself, as without
            # kubealias (pinning its addresses is not possible through a proxy).
            kwargs["ka_route"] = None
        elif route is not None:
            # The tunnel goes to the TLS name; Host is the TLS name unless rewrite_host=False.
            header = route.host_header or (
                host if route.port == default_port(scheme) else f"{host}:{route.port}"
            )
            kwargs["ka_route"] = replace(route, addresses=(), host_header=header)
        return kwargs

"""requests: a transport adapter that verifies aliases against their external name.

    import requests
    from kubealias.requests import KubeAliasAdapter

    session = requests.Session()
    session.mount("https://", KubeAliasAdapter())
    session.get("https://payment-api/v1/charges")     # SNI, certificate and Host: the TLS name

or ``kubealias.requests.Session()``, which mounts it on ``http://`` and ``https://``.

The adapter resolves the request's host in requests' public hook
``build_connection_pool_key_attributes`` (requests >= 2.32.5) and hands the route to
:class:`kubealias.urllib3.PoolManager`, which keys pools by it and connects to its addresses.
``verify``, ``cert``, timeouts, retries and ``stream`` are requests' own; kubealias never turns
verification off. With ``HTTPS_PROXY`` the CONNECT goes to ``tls_name:port`` and ``NO_PROXY``
still matches the name the application used (requests evaluates it on the unchanged URL).
"""

from __future__ import annotations

from typing import Any, cast

try:
    import requests
    from requests.adapters import DEFAULT_POOLBLOCK, HTTPAdapter
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "kubealias.requests needs requests: pip install 'kubealias[requests]'"
    ) from exc

from ._errors import KubeAliasError
from ._resolver import Resolver
from .urllib3 import PoolManager, ProxyManager

__all__ = ["KubeAliasAdapter", "Session"]


class KubeAliasAdapter(HTTPAdapter):
    """An :class:`requests.adapters.HTTPAdapter` for Kubernetes alias names.

    Args:
        *args, **kwargs: as :class:`requests.adapters.HTTPAdapter` (``pool_connections``,
            ``pool_maxsize``, ``max_retries``, ``pool_block``).
        resolver: the :class:`kubealias.Resolver` to use (default: the process's default).
        rewrite_host: send the TLS name as ``Host`` (default); False keeps the application's
            name. A ``Host`` header set by the caller is never overwritten.

    Raises (from ``send``):
        requests.ConnectionError: an alias cannot be resolved safely; ``__cause__`` is the
            :class:`kubealias.KubeAliasError`, whose message is in the error's text.
    """

    # requests pickles the attributes listed here (its own declaration is a plain list).
    __attrs__ = [*HTTPAdapter.__attrs__, "_ka_resolver", "_ka_rewrite_host"]  # noqa: RUF012

    def __init__(
        self, *args: Any, resolver: Resolver | None = None, rewrite_host: bool = True, **kwargs: Any
    ) -> None:
        self._ka_resolver = resolver
        self._ka_rewrite_host = rewrite_host
        super().__init__(*args, **kwargs)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = DEFAULT_POOLBLOCK, **pool_kwargs: Any
    ) -> None:
        # As HTTPAdapter.init_poolmanager, with kubealias's PoolManager.
        self._pool_connections = connections
        self._pool_maxsize = maxsize
        self._pool_block = block
        self.poolmanager = PoolManager(
            num_pools=connections,
            maxsize=maxsize,
            block=block,
            resolver=self._ka_resolver,
            rewrite_host=self._ka_rewrite_host,
            **pool_kwargs,
        )

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        if proxy in self.proxy_manager or proxy.lower().startswith("socks"):
            manager = super().proxy_manager_for(proxy, **proxy_kwargs)
            if proxy.lower().startswith("socks"):
                return _WithoutRoute(manager)
            return manager
        manager = self.proxy_manager[proxy] = ProxyManager(
            proxy,
            proxy_headers=self.proxy_headers(proxy),
            num_pools=self._pool_connections,
            maxsize=self._pool_maxsize,
            block=self._pool_block,
            resolver=self._ka_resolver,
            rewrite_host=self._ka_rewrite_host,
            **proxy_kwargs,
        )
        return manager

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert
        )
        scheme, host = host_params["scheme"], host_params["host"]
        try:
            # The pool manager's planner: same resolver and rewrite_host as this adapter, and
            # rebuilt with the manager when requests unpickles an adapter.
            manager = cast(PoolManager, self.poolmanager)
            route = manager._ka_planner.plan(host, host_params.get("port"), scheme)
        except KubeAliasError as exc:
            # The one place resolution errors become requests' connection error. (Raised here,
            # not as a ValueError, which requests would turn into InvalidURL.)
            raise requests.ConnectionError(str(exc), request=request) from exc
        pool_kwargs["ka_route"] = route
        if route is not None and route.alias and scheme == "https":
            pool_kwargs["server_hostname"] = route.tls_name  # a pinned route keeps the caller's
        return host_params, pool_kwargs


class _WithoutRoute:
    """A SOCKS proxy manager, given requests unchanged: the proxy resolves the name itself."""

    def __init__(self, manager: Any) -> None:
        self._manager = manager

    def connection_from_host(self, *args: Any, pool_kwargs: Any = None, **kwargs: Any) -> Any:
        pool_kwargs = dict(pool_kwargs or {})
        pool_kwargs.pop("ka_route", None)
        pool_kwargs.pop("server_hostname", None)
        return self._manager.connection_from_host(*args, pool_kwargs=pool_kwargs, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._manager, name)


class Session(requests.Session):
    """A :class:`requests.Session` with :class:`KubeAliasAdapter` on ``http://`` and ``https://``.

    Args:
        resolver: the :class:`kubealias.Resolver` to use (default: the process's default).
        rewrite_host: see :class:`KubeAliasAdapter`.
        **adapter_kwargs: passed to :class:`KubeAliasAdapter` (``max_retries``, pool sizes).
    """

    def __init__(
        self, *, resolver: Resolver | None = None, rewrite_host: bool = True, **adapter_kwargs: Any
    ) -> None:
        super().__init__()
        for prefix in ("https://", "http://"):
            self.mount(
                prefix,
                KubeAliasAdapter(resolver=resolver, rewrite_host=rewrite_host, **adapter_kwargs),
            )

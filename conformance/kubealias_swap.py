"""pytest plugin for the swapped run of ``make conformance``: kubealias as every client's default.

Loaded with ``-p kubealias_swap`` before the suite's conftest files and test modules are
imported, so that names they bind at import (``from urllib3 import PoolManager``) are already
kubealias's:

- requests: the adapter a ``requests.Session`` mounts on ``http://`` and ``https://``
  (``requests.sessions.HTTPAdapter``) is :class:`kubealias.requests.KubeAliasAdapter`.
- urllib3: ``PoolManager`` and ``ProxyManager`` (in ``urllib3`` and ``urllib3.poolmanager``, so
  ``proxy_from_url`` too) and the pool behind ``urllib3.request()`` are kubealias's.
- httpx: the transports a ``Client``/``AsyncClient`` builds for itself, and for the proxies it
  mounts, are :class:`kubealias.httpx.HTTPTransport`/``AsyncHTTPTransport``.

A transport, adapter or manager the suite builds itself from httpx's or requests' own class
(``httpx.HTTPTransport(...)``, ``requests.adapters.HTTPAdapter()``) stays the original: the
swap replaces the defaults, so that the suites' ``isinstance`` checks still compare against the
real classes.

Every swapped-in object gets an explicit :class:`kubealias.Resolver` (as an application that
configures one would), asking an in-process cluster DNS (:class:`kubealias.testing.ClusterDNS`)
that holds no Service: the suites use loopback names only (``localhost``, ``127.0.0.1``,
``::1``, which kubealias passes through without a query) and a few single-label names, which
are looked up as a pod would (search list, ``ndots:5``), get NXDOMAIN, and pass through. So
every request takes kubealias's "no alias, no change" path, and any difference from the plain
run is kubealias's.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import requests.sessions
import urllib3
import urllib3.poolmanager

import kubealias
import kubealias.httpx
import kubealias.requests
import kubealias.urllib3
from kubealias.testing import ClusterDNS

DNS = ClusterDNS(namespace="default")
DNS.start()
RESOLVER = DNS.resolver()
kubealias.set_default_resolver(RESOLVER)


class _ConformanceResolver:
    """Mixed in before a kubealias class: the conformance resolver unless one is given."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("resolver", RESOLVER)
        super().__init__(*args, **kwargs)


class KubeAliasAdapter(_ConformanceResolver, kubealias.requests.KubeAliasAdapter):
    """kubealias's adapter with the conformance resolver unless one is given."""


# The ignores: mypy repeats for any subclass with two bases the pool_classes_by_scheme
# mismatch that kubealias/urllib3.py explains (and ignores) on its own PoolManager.
class PoolManager(_ConformanceResolver, kubealias.urllib3.PoolManager):  # type: ignore[misc]
    """kubealias's PoolManager with the conformance resolver unless one is given."""


class ProxyManager(_ConformanceResolver, kubealias.urllib3.ProxyManager):  # type: ignore[misc]
    """kubealias's ProxyManager with the conformance resolver unless one is given."""


class HTTPTransport(_ConformanceResolver, kubealias.httpx.HTTPTransport):
    """kubealias's sync transport with the conformance resolver unless one is given."""


class AsyncHTTPTransport(_ConformanceResolver, kubealias.httpx.AsyncHTTPTransport):
    """kubealias's async transport with the conformance resolver unless one is given."""


def _replace(module: object, name: str, value: object) -> None:
    """Set ``module.name``, which must exist: a client that renamed it fails the run loudly."""
    if not hasattr(module, name):
        raise RuntimeError(f"kubealias_swap: {module!r} has no {name}; update the swap")
    setattr(module, name, value)


_replace(requests.sessions, "HTTPAdapter", KubeAliasAdapter)
for module in (urllib3, urllib3.poolmanager):
    _replace(module, "PoolManager", PoolManager)
    _replace(module, "ProxyManager", ProxyManager)
_replace(urllib3, "_DEFAULT_POOL", PoolManager())
_replace(httpx._client, "HTTPTransport", HTTPTransport)
_replace(httpx._client, "AsyncHTTPTransport", AsyncHTTPTransport)


def pytest_report_header() -> str:
    return f"kubealias swapped in; cluster DNS (no Service) at {DNS.nameserver}"


@pytest.hookimpl(trylast=True)
def pytest_unconfigure() -> None:
    DNS.stop()

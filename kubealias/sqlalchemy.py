"""SQLAlchemy: engines on psycopg 3 or psycopg2 reach aliases with ``verify-full`` still verifying.

    from sqlalchemy import create_engine
    from sqlalchemy.ext.asyncio import create_async_engine
    import kubealias.sqlalchemy

    engine = kubealias.sqlalchemy.install(
        create_engine("postgresql+psycopg://app:secret@database/app?sslmode=verify-full")
    )
    aengine = kubealias.sqlalchemy.install(
        create_async_engine("postgresql+psycopg://app:secret@database/app?sslmode=verify-full")
    )

:func:`install` hooks SQLAlchemy's documented ``do_connect`` event (Core Events,
``DialectEvents.do_connect``: "Receive connection arguments before a connection is made [...]
``cparams`` a Python dictionary that may also be mutated"; see also "Modifying the DBAPI
connection arguments" in the engine documentation). It fires for every new DBAPI connection the
engine's pool makes, so pooled engines resolve again whenever they open a connection:

* **sync engines** (``postgresql+psycopg``, ``postgresql+psycopg2``, and ``postgresql://``,
  which is psycopg2 in SQLAlchemy 2.0 and psycopg 3 from 2.1: the engine's dialect decides, not
  the URL's text): the keyword arguments SQLAlchemy is about to pass to the driver's
  ``connect`` are rewritten in place with the libpq rules of :class:`kubealias.psycopg.Connection`
  and :class:`kubealias.psycopg2.Connection` (``hostaddr`` becomes the addresses, and ``host``
  the TLS name under ``sslmode=verify-full`` only, since libpq picks the ``.pgpass`` password by
  ``host``; an in-cluster Service keeps its name, pinned to the answer's addresses; a host that
  cannot be resolved is left to libpq, which fails over to the next).
* **async engines** (``create_async_engine``, ``postgresql+psycopg`` or
  ``postgresql+psycopg_async``): the event runs synchronously on the event loop's thread
  (inside SQLAlchemy's greenlet adapter), where a DNS query on a cache miss would stall every
  task, up to ``KUBEALIAS_TIMEOUT`` during a DNS outage. So nothing is resolved there: the
  handler only chooses the connect function, :meth:`kubealias.psycopg.AsyncConnection.connect`,
  which psycopg then awaits on the loop; its ``_get_connection_params`` hook resolves with
  ``aresolve`` (the same path as ``AsyncConnectionPool(connection_class=...)``). The function is
  handed over as ``async_creator_fn``, the argument through which SQLAlchemy's documented
  ``create_async_engine(async_creator=...)`` reaches the psycopg dialect's ``connect()``
  (SQLAlchemy >= 2.0.16); it is not itself a documented name, which is why a test pins it.
* **asyncpg engines** (``create_async_engine("postgresql+asyncpg://...")``): the same
  ``async_creator_fn`` (SQLAlchemy's asyncpg dialect awaits it with the URL's arguments, as it
  would ``asyncpg.connect``) becomes :func:`kubealias.asyncpg.connect`, which resolves with
  ``aresolve``; a failure is its :class:`ConnectionError`, as SQLAlchemy passes it on.

Not covered: engines made with ``creator=`` or ``async_creator=`` never fire ``do_connect``
(SQLAlchemy calls your function instead) — call :func:`kubealias.psycopg.connect`,
``kubealias.psycopg.AsyncConnection.connect`` or :func:`kubealias.psycopg2.connect` in that
function. A host that only a
``service=`` entry of ``pg_service.conf`` names is read by libpq after the rewrite, so it is not
rewritten.

A resolution failure is raised as the driver's ``OperationalError`` (psycopg's or psycopg2's)
with the :class:`kubealias.KubeAliasError` chained; SQLAlchemy wraps it as
:class:`sqlalchemy.exc.OperationalError` (``.orig`` is the driver's).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

try:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "kubealias.sqlalchemy needs SQLAlchemy 2: pip install 'kubealias[sqlalchemy]'"
    ) from exc

from . import _libpq
from ._resolver import Resolver

if TYPE_CHECKING:
    from sqlalchemy.engine.interfaces import Dialect
    from sqlalchemy.ext.asyncio import AsyncEngine
    from sqlalchemy.pool import ConnectionPoolEntry

    from .psycopg import AsyncConnection

__all__ = ["install"]

_E = TypeVar("_E", "Engine", "AsyncEngine")


class _Binding(NamedTuple):
    """What :func:`install` chose for one engine."""

    resolver: Resolver | None
    """The resolver of the sync path (None: the default one, looked up at each connect)."""
    async_connection: type[AsyncConnection[Any]] | None
    """The connection class of the async path, bound to the same resolver (psycopg 3 only)."""


def _async_connection(resolver: Resolver | None) -> type[AsyncConnection[Any]]:
    """psycopg 3's async connection class bound to ``resolver``.

    Imported here, for psycopg 3 engines only: a psycopg2-only install has no psycopg 3.
    """
    from .psycopg import AsyncConnection

    return AsyncConnection if resolver is None else AsyncConnection.using(resolver)


#: The libpq binding of each sync dialect install() hooks, by ``dialect.driver``: their DBAPI
#: ``connect`` takes libpq's parameters as keywords, so one rewrite of ``cparams`` serves both.
_LIBPQ_DRIVERS: dict[str, Callable[[], _libpq.Binding]] = {
    "psycopg": _libpq.psycopg3,
    "psycopg2": _libpq.psycopg2,
}

#: Keyed by dialect because that is what SQLAlchemy hands the listener; an engine's
#: execution_options() copies share their parent's dialect and pool.
_bindings: weakref.WeakKeyDictionary[Dialect, _Binding] = weakref.WeakKeyDictionary()


def install(engine: _E, *, resolver: Resolver | None = None) -> _E:
    """Make ``engine`` resolve aliases on every new connection (see the module docstring).

    Installing twice on one engine registers one listener; the last ``resolver`` given wins.

    Args:
        engine: A :class:`sqlalchemy.engine.Engine` or
            :class:`sqlalchemy.ext.asyncio.AsyncEngine` on the ``postgresql+psycopg`` (or
            ``postgresql+psycopg_async``) dialect, an Engine on ``postgresql+psycopg2``
            (``postgresql://`` where SQLAlchemy means psycopg2 by it), or an AsyncEngine on
            ``postgresql+asyncpg``.
        resolver: The resolver to use; None for the default one, looked up at each connect.

    Returns:
        ``engine`` itself, for ``engine = install(create_engine(...))``.

    Raises:
        TypeError: ``engine`` is not an engine, or its dialect is not psycopg 3's, psycopg2's
            or asyncpg's.
    """
    # AsyncEngine is a proxy: its events are the ones of the Engine it wraps (SQLAlchemy
    # asyncio docs, "Using events with the asyncio extension").
    sync_engine = getattr(engine, "sync_engine", engine)
    if not isinstance(sync_engine, Engine):
        raise TypeError(f"expected a SQLAlchemy Engine or AsyncEngine, not {type(engine).__name__}")
    dialect = sync_engine.dialect
    if (dialect.name, dialect.driver) == ("postgresql", "asyncpg"):
        return _install_asyncpg(engine, sync_engine, resolver)
    # By the dialect, not the URL: postgresql:// is psycopg2 in SQLAlchemy 2.0, psycopg in 2.1.
    if dialect.name != "postgresql" or dialect.driver not in _LIBPQ_DRIVERS:
        raise TypeError(
            "kubealias.sqlalchemy supports the psycopg 3, psycopg2 and asyncpg dialects only "
            "(postgresql+psycopg, postgresql+psycopg2, postgresql+asyncpg), not "
            f"{dialect.name}+{dialect.driver}; for other drivers resolve with "
            "kubealias.resolve() and pass host and hostaddr yourself"
        )
    _bindings[dialect] = _Binding(
        resolver, _async_connection(resolver) if dialect.driver == "psycopg" else None
    )
    if not event.contains(sync_engine, "do_connect", _do_connect):
        event.listen(sync_engine, "do_connect", _do_connect)
    return engine


def _do_connect(
    dialect: Dialect,
    conn_rec: ConnectionPoolEntry,
    cargs: list[Any],
    cparams: dict[str, Any],
) -> None:
    """The ``do_connect`` listener: mutate the arguments, never connect (return None)."""
    binding = _bindings.get(dialect) or _Binding(None, None)
    if dialect.is_async:
        connection = binding.async_connection or _async_connection(None)
        cparams["async_creator_fn"] = connection.connect
        return
    # cargs is [] or [""] from the dialect (create_connect_args); another listener may have
    # put a conninfo string there. Keyword arguments override it in the driver's connect, so
    # the rewritten host keys go into cparams and cargs stays as it is.
    conninfo = cargs[0] if cargs and isinstance(cargs[0], str) else ""
    libpq = _LIBPQ_DRIVERS[dialect.driver]()
    # Only the string is parsed: cparams may hold the driver's own keywords (psycopg's
    # ``context``, psycopg2's ``connection_factory``), which psycopg2's parser refuses. They
    # override the string, None dropped, as both drivers' connect do.
    given = {k: v for k, v in cparams.items() if v is not None}
    merged = {**_libpq.parse(libpq, conninfo, {}), **given} if conninfo else dict(cparams)
    rewritten = _libpq.resolve_params(libpq, merged, binding.resolver, pin=True)
    for key in _libpq.HOST_KEYS:
        if key in rewritten and rewritten[key] != merged.get(key):
            cparams[key] = rewritten[key]


# --- postgresql+asyncpg -------------------------------------------------------------------------

#: The connect function of each asyncpg engine (keyed as :data:`_bindings`).
_asyncpg_connects: weakref.WeakKeyDictionary[Dialect, Callable[..., Any]] = (
    weakref.WeakKeyDictionary()
)


def _install_asyncpg(engine: _E, sync_engine: Engine, resolver: Resolver | None) -> _E:
    """:func:`install` for ``postgresql+asyncpg``: SQLAlchemy's asyncpg dialect awaits
    ``async_creator_fn`` (default ``asyncpg.connect``) with the URL's arguments; the
    ``do_connect`` listener hands it :func:`kubealias.asyncpg.connect`, which resolves with
    ``aresolve`` on the event loop (as for psycopg's async engines, nothing is resolved in the
    listener itself, which runs synchronously on the loop's thread)."""
    from . import asyncpg as kubealias_asyncpg  # only engines on asyncpg need asyncpg

    connect = kubealias_asyncpg.connect
    _asyncpg_connects[sync_engine.dialect] = (
        connect if resolver is None else functools.partial(connect, resolver=resolver)
    )
    if not event.contains(sync_engine, "do_connect", _do_connect_asyncpg):
        event.listen(sync_engine, "do_connect", _do_connect_asyncpg)
    return engine


def _do_connect_asyncpg(
    dialect: Dialect,
    conn_rec: ConnectionPoolEntry,
    cargs: list[Any],
    cparams: dict[str, Any],
) -> None:
    """The asyncpg engines' ``do_connect`` listener: choose the connect function only."""
    cparams["async_creator_fn"] = _asyncpg_connects[dialect]

"""psycopg2: connect to aliases with ``sslmode=verify-full`` still verifying.

    import kubealias.psycopg2 as psycopg2          # the one changed import

    conn = psycopg2.connect(host="database", dbname="app", sslmode="verify-full")

The rules are libpq's, the same as :mod:`kubealias.psycopg`'s: for every host of the
(comma-separated) host list that is an alias, ``hostaddr`` becomes the addresses the cluster
DNS gave, one host/hostaddr/port entry per address so that libpq fails over across them.
Under ``sslmode=verify-full`` (from the parameters, a URL or ``PGSSLMODE``) ``host`` becomes the
TLS name, which libpq sends as SNI and verifies the certificate against; under every other
sslmode ``host`` stays exactly as the application gave it, because libpq also picks the
``.pgpass``/``passfile`` password by ``host`` and a name nothing verifies must not come from a
DNS answer. When connecting, a Service answered without a CNAME (ClusterIP, headless) keeps its
name and is pinned to the answer's addresses (no second lookup); :func:`rewrite_dsn` leaves it
as given. Unix sockets, IP literals and hosts that already have a ``hostaddr`` are never looked
up. A host kubealias cannot resolve is handed to libpq as given (so ``host=database,backup``
still fails over to ``backup``); the failure is raised only when no host is left, and an
allowlist refusal (:class:`kubealias.PolicyError`) at once.

Errors are psycopg2's own: a malformed DSN is :class:`psycopg2.ProgrammingError` (libpq's reason,
without the tokens it quotes, which could be a password); a resolution failure is
:class:`psycopg2.OperationalError` with the :class:`kubealias.KubeAliasError` as ``__cause__``.

Pools: ``psycopg2.pool.SimpleConnectionPool`` and ``ThreadedConnectionPool`` open every new
connection with ``psycopg2.connect(*args, **kwargs)`` of their own arguments, and
``psycopg2.connect`` builds it with ``connection_factory(dsn)`` (psycopg2 docs, ``connect()``:
"a different class or connections factory can be specified"). :class:`Connection` is such a
class, so every new pooled connection resolves again::

    from psycopg2.pool import ThreadedConnectionPool
    import kubealias.psycopg2

    pool = ThreadedConnectionPool(
        1, 10, "host=database dbname=app sslmode=verify-full",
        connection_factory=kubealias.psycopg2.Connection,
    )

With a connection class of your own (``psycopg2.extras.LoggingConnection``,
``RealDictConnection``...) put :class:`Connection` first among its bases:
``class AppConnection(kubealias.psycopg2.Connection, RealDictConnection): pass``. These pools
keep an idle connection open for good; one put back with ``putconn(conn, close=True)`` (or
found closed) is replaced, and the replacement resolves again.

psycopg2 has no asyncio API: :func:`connect` and :class:`Connection` resolve synchronously
(within ``KUBEALIAS_TIMEOUT`` on a cache miss), also for ``async_=True`` (psycopg2's polling
mode, for select loops and green threads). From an asyncio loop, call them in a thread
(``await asyncio.to_thread(kubealias.psycopg2.connect, ...)``), or use :mod:`kubealias.psycopg`,
whose async connection resolves with ``aresolve``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

try:
    import psycopg2
    import psycopg2.extensions
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "kubealias.psycopg2 needs psycopg2: pip install 'kubealias[psycopg2]'"
    ) from exc

from . import _libpq
from ._resolver import Resolver

__all__ = ["Connection", "connect", "rewrite_dsn"]

#: The keywords psycopg2.connect takes for itself rather than for libpq.
_ASYNC_KEYWORDS = ("async", "async_")


def rewrite_dsn(dsn: str | None = None, *, resolver: Resolver | None = None, **kwargs: Any) -> str:
    """The DSN with aliases rewritten, for anything else that hands a DSN to libpq.

    Accepts what :func:`psycopg2.extensions.make_dsn` accepts: a ``key=value`` string, a
    ``postgresql://`` URL, keyword arguments (``database`` for ``dbname``), or a mix. Hosts
    that are not aliases stay as given (no pinning). ``host`` is the TLS name only when the
    sslmode is ``verify-full``; when that comes from ``PGSSLMODE`` rather than the string, use
    the result under the same ``PGSSLMODE``.

    Args:
        dsn: The connection string (None: keywords only).
        resolver: The resolver to use; None for the default one.
        **kwargs: libpq parameters overriding the string's.

    Returns:
        A ``key=value`` string; when nothing is an alias, what ``make_dsn(dsn, **kwargs)``
        gives (the DSN itself when no keyword is given).

    Raises:
        psycopg2.ProgrammingError: the DSN is malformed (libpq's reason, with the tokens it
            quotes removed), a value in it is not valid UTF-8, or a keyword is unknown.
        psycopg2.OperationalError: a host is refused by policy, or no host of the list can be
            resolved; the :class:`kubealias.KubeAliasError` is chained as ``__cause__``.
    """
    return _libpq.rewrite_conninfo(_libpq.psycopg2(), dsn or "", kwargs, resolver)


def _resolved(
    dsn: str, kwargs: dict[str, Any], resolver: Resolver | None
) -> tuple[str, dict[str, Any]]:
    """``(dsn, kwargs)`` for libpq: as given when nothing changes, else one rewritten DSN.

    Raises:
        psycopg2.ProgrammingError: the DSN or a keyword is malformed (no token in the message).
        psycopg2.OperationalError: a host is refused by policy or none can be resolved.
    """
    binding = _libpq.psycopg2()
    params = _libpq.parse(binding, dsn, kwargs)
    rewritten = _libpq.resolve_params(binding, params, resolver, pin=True)
    if rewritten == params:
        return dsn, kwargs  # invariant 3: psycopg2 gets exactly what it was given
    return binding.make("", **rewritten), {}


class Connection(psycopg2.extensions.connection):  # type: ignore[misc]  # psycopg2 is untyped
    """A :class:`psycopg2.extensions.connection` that resolves aliases on every connect.

    Give it as ``connection_factory`` to ``psycopg2.connect`` or to a ``psycopg2.pool`` pool.
    ``resolver`` is a class attribute (None: the default resolver); make a subclass with
    :meth:`using` to pin another one.
    """

    resolver: Resolver | None = None

    @classmethod
    def using(cls, resolver: Resolver) -> type[Connection]:
        """A subclass bound to ``resolver`` (for pools: ``connection_factory=...``)."""
        return type(cls.__name__, (cls,), {"resolver": resolver})

    def __init__(self, dsn: str, *args: Any, **kwargs: Any) -> None:
        """Resolve the hosts of ``dsn``, then connect as psycopg2's connection does.

        ``psycopg2.connect`` calls the factory with the DSN it built (and ``async`` for an
        asynchronous connection, passed on untouched).

        Raises:
            psycopg2.ProgrammingError: the DSN is malformed.
            psycopg2.OperationalError: an alias cannot be resolved safely (the
                :class:`kubealias.KubeAliasError` chained), or the connection failed.
        """
        dsn, _ = _resolved(dsn, {}, type(self).resolver)
        super().__init__(dsn, *args, **kwargs)


def connect(
    dsn: str | None = None,
    connection_factory: Callable[..., Any] | None = None,
    cursor_factory: Callable[..., Any] | None = None,
    *,
    resolver: Resolver | None = None,
    **kwargs: Any,
) -> Any:
    """:func:`psycopg2.connect`, with aliases rewritten. Same arguments and return value.

    ``connection_factory``, ``cursor_factory`` and ``async``/``async_`` go to
    :func:`psycopg2.connect` as given; the factory receives the rewritten DSN.

    Args:
        dsn: A ``key=value`` string or a ``postgresql://`` URL (None: keywords only).
        connection_factory: psycopg2's: the connection class or factory to call with the DSN.
        cursor_factory: psycopg2's: the connection's default cursor class.
        resolver: The resolver to use; None for the default one.
        **kwargs: libpq parameters (``database`` for ``dbname``), and ``async``/``async_``.

    Returns:
        What :func:`psycopg2.connect` returns.

    Raises:
        psycopg2.OperationalError: the connection failed, or an alias cannot be resolved
            safely (the :class:`kubealias.KubeAliasError` chained as ``__cause__``).
        psycopg2.ProgrammingError: the DSN is malformed.
    """
    options = {key: kwargs.pop(key) for key in _ASYNC_KEYWORDS if key in kwargs}
    dsn, kwargs = _resolved(dsn or "", kwargs, resolver)
    return psycopg2.connect(
        dsn,
        connection_factory=connection_factory,
        cursor_factory=cursor_factory,
        **options,
        **kwargs,
    )


def __getattr__(name: str) -> Any:
    """Everything else is psycopg2's, so ``import kubealias.psycopg2 as psycopg2`` is a drop-in
    (``psycopg2.OperationalError``, ``psycopg2.Error``, ``psycopg2.extensions``...)."""
    try:
        return getattr(psycopg2, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None

"""psycopg 3: connect to aliases with ``sslmode=verify-full`` still verifying.

    import kubealias.psycopg as psycopg          # the one changed import

    conn = psycopg.connect(host="database", dbname="app", sslmode="verify-full")

For every host of the (comma-separated) host list that is an alias, ``hostaddr`` becomes the
addresses the cluster DNS gave, one host/hostaddr/port entry per address so that libpq (and
psycopg's own attempts) fail over across them. Under ``sslmode=verify-full`` (from the
parameters, a URL or ``PGSSLMODE``) ``host`` becomes the TLS name: libpq sends it as SNI and
verifies the certificate against it. Under every other sslmode (``disable``, ``allow``,
``prefer`` -- libpq's default --, ``require``, ``verify-ca``) ``host`` stays exactly as the
application gave it, because libpq also picks the ``.pgpass``/``passfile`` password by
``host``: a name that nothing verifies must not come from a DNS answer, or a forged CNAME would
choose which stored password is sent.

Hosts that are not aliases, Unix sockets, IP literals and hosts that already have a
``hostaddr`` are left exactly as given by :func:`rewrite_conninfo` and :func:`rewrite_params`.
When connecting (``connect``, the connection classes, SQLAlchemy, Django), a Service the cluster
DNS answered without a CNAME (ClusterIP, headless) keeps its ``host`` and gets the answer's
addresses as ``hostaddr``: libpq verifies the name as given but does not look it up a second
time (a second lookup right after a ClusterIP -> ExternalName change could already reach the
external server).

A host kubealias cannot resolve (:class:`kubealias.ResolutionError`: timeout, server failure, a
broken CNAME chain) is handed to libpq as given, so ``host=database,backup`` still fails over to
``backup``; the failure is raised only when no host is left. An allowlist refusal
(:class:`kubealias.PolicyError`) is raised at once, whatever hosts follow.

Pools resolve again on every new or replacement connection through psycopg's documented hook,
the classmethod ``_get_connection_params`` ("Manipulate connection parameters before
connecting", psycopg docs, *Connection classes*)::

    from psycopg_pool import ConnectionPool
    from kubealias.psycopg import Connection

    pool = ConnectionPool("host=database sslmode=verify-full", connection_class=Connection)

``.pgpass`` entries are matched by libpq on the application's host, or under ``verify-full`` on
the TLS name (which the server has proven it holds).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

try:
    import psycopg
    from psycopg.rows import Row, TupleRow
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "kubealias.psycopg needs psycopg 3: pip install 'kubealias[psycopg]'"
    ) from exc

from . import _libpq
from ._resolver import Resolver

__all__ = [
    "AsyncConnection",
    "Connection",
    "connect",
    "rewrite_conninfo",
    "rewrite_params",
]


def rewrite_params(
    params: Mapping[str, Any],
    *,
    resolver: Resolver | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Rewrite a psycopg connection-parameter dict (see the module docstring).

    Args:
        params: psycopg connection parameters (as :func:`psycopg.conninfo.conninfo_to_dict`
            gives them); not modified.
        resolver: The resolver to use; None for the default one.
        environ: Where ``PGHOST``/``PGHOSTADDR``/``PGPORT``/``PGSSLMODE``/``PGSERVICE`` are
            read (None: ``os.environ``).

    Returns:
        A new dict: the parameters with aliases rewritten, or equal to ``params``.

    Raises:
        psycopg.OperationalError: a host is refused by policy, or no host of the list can be
            resolved; the :class:`kubealias.KubeAliasError` is chained as ``__cause__``.
    """
    return _libpq.resolve_params(_libpq.psycopg3(), params, resolver, environ)


def rewrite_conninfo(conninfo: str = "", *, resolver: Resolver | None = None, **kwargs: Any) -> str:
    """The connection string with aliases rewritten, for anything else built on libpq.

    Accepts what :func:`psycopg.connect` accepts: a ``key=value`` string, a
    ``postgresql://`` URL, keyword arguments, or a mix. Returns a ``key=value`` string.
    ``host`` is the TLS name only when the sslmode is ``verify-full``; when that comes from
    ``PGSSLMODE`` rather than the string, use the result under the same ``PGSSLMODE``.

    Raises:
        psycopg.ProgrammingError: the connection string is malformed (libpq's reason, with
            the tokens it quotes removed, since they could be a password), or a value in it
            is not valid UTF-8.
        psycopg.OperationalError: a host is refused by policy, or no host of the list can
            be resolved.
    """
    return _libpq.rewrite_conninfo(_libpq.psycopg3(), conninfo, kwargs, resolver)


def __getattr__(name: str) -> Any:
    """Everything else is psycopg's, so ``import kubealias.psycopg as psycopg`` is a drop-in
    (``psycopg.OperationalError``, ``psycopg.sql``, ``psycopg.Cursor``...)."""
    try:
        return getattr(psycopg, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


class Connection(psycopg.Connection[Row]):
    """A :class:`psycopg.Connection` that resolves aliases on every connect (pool-ready).

    ``resolver`` is a class attribute (None: the default resolver); make a subclass with
    :meth:`using` to pin another one.
    """

    resolver: Resolver | None = None

    @classmethod
    def using(cls, resolver: Resolver) -> type[Connection[Row]]:
        """A subclass bound to ``resolver`` (for pools: ``connection_class=...``)."""
        return type(cls.__name__, (cls,), {"resolver": resolver})

    @classmethod
    def _get_connection_params(cls, conninfo: str, **kwargs: Any) -> dict[str, Any]:
        # psycopg's documented hook: "Manipulate connection parameters before connecting".
        binding = _libpq.psycopg3()
        try:
            params = super()._get_connection_params(conninfo, **kwargs)
        except (psycopg.ProgrammingError, UnicodeDecodeError) as exc:
            error = _libpq.parse_error(binding, exc)
        else:
            return _libpq.resolve_params(binding, params, cls.resolver, pin=True)
        raise error  # outside the except: libpq's own error (with the token) is not chained


class AsyncConnection(psycopg.AsyncConnection[Row]):
    """The asyncio twin of :class:`Connection`; resolves with ``aresolve``."""

    resolver: Resolver | None = None

    @classmethod
    def using(cls, resolver: Resolver) -> type[AsyncConnection[Row]]:
        """A subclass bound to ``resolver``."""
        return type(cls.__name__, (cls,), {"resolver": resolver})

    @classmethod
    async def _get_connection_params(cls, conninfo: str, **kwargs: Any) -> dict[str, Any]:
        # The same rules as the sync hook; the hosts are resolved with aresolve, so a DNS
        # query never blocks the event loop.
        binding = _libpq.psycopg3()
        try:
            params = await super()._get_connection_params(conninfo, **kwargs)
        except (psycopg.ProgrammingError, UnicodeDecodeError) as exc:
            error = _libpq.parse_error(binding, exc)
        else:
            return await _libpq.aresolve_params(binding, params, cls.resolver, pin=True)
        raise error  # outside the except: libpq's own error (with the token) is not chained


def connect(
    conninfo: str = "", *, resolver: Resolver | None = None, **kwargs: Any
) -> Connection[TupleRow]:
    """:func:`psycopg.connect`, with aliases rewritten. Same arguments and return type.

    Raises:
        psycopg.OperationalError: the connection failed, or an alias cannot be resolved
            safely (the :class:`kubealias.KubeAliasError` chained as ``__cause__``).
        psycopg.ProgrammingError: the connection string is malformed.
    """
    cls: type[Connection[Any]] = Connection if resolver is None else Connection.using(resolver)
    return cls.connect(conninfo, **kwargs)

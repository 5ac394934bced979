"""asyncpg: connect to aliases with ``ssl="verify-full"`` (or an ``SSLContext``) still verifying.

    import kubealias.asyncpg as asyncpg          # the one changed import

    conn = await asyncpg.connect(host="database", user="app", ssl="verify-full")
    pool = await asyncpg.create_pool("postgresql://app@database/app?sslmode=verify-full")

:func:`connect` and :func:`create_pool` take asyncpg's own arguments (a DSN, ``host``/``port``
lists, ``ssl``, ``direct_tls``, ``connection_class``...) and read them as asyncpg does: the
DSN, the keywords, ``PGHOST``/``PGPORT``/``PGSSLMODE``/``PGSSLROOTCERT``... and the service
file. Every host of the list that the cluster DNS answers for is resolved with
:func:`kubealias.aresolve` (the event loop never waits on DNS), and asyncpg is handed the
answer's addresses as its host list, in order, each with its host's port: asyncpg tries them
in turn, with its own failover and ``target_session_attrs``, and never looks a name up again.
Hosts that are not cluster names (external names, IP literals, Unix sockets) stay exactly as
given; when no host is a Service, asyncpg is called with the caller's arguments unchanged.

The name each connection verifies follows libpq's rule (``kubealias._libpq``, shared with
psycopg):

* when the TLS context checks host names (``ssl="verify-full"``, ``ssl=True``, an
  ``SSLContext`` with ``check_hostname``), an alias's connections send the **TLS name** as SNI
  and verify the certificate against it; the caller's context makes the handshake, wrapped by
  the same mechanism as :func:`kubealias.tls_context`, never copied nor weakened. The password
  asyncpg looks up in ``.pgpass``/``passfile`` is then the one stored for the TLS name (the
  server proved it holds that name), as libpq does under ``verify-full``;
* under ``disable``, ``allow``, ``prefer`` (asyncpg's default), ``require`` and ``verify-ca``
  nothing checks the name: the ``.pgpass`` password is the one stored for the application's
  host, never for a name taken from a DNS answer (docs/design.md, Trust), and ``require`` and
  ``verify-ca`` send the application's name as SNI, as plain asyncpg does. ``allow`` and
  ``prefer`` keep their fallback to a connection without TLS, which needs asyncpg's own handling
  of the sslmode: asyncpg then connects to the address with its own context, which verifies
  nothing and sends no SNI for an address.

A Service the cluster DNS answered without a CNAME (ClusterIP) keeps its name for SNI,
verification and ``.pgpass``, and is connected to the answer's addresses (a second lookup right
after a ClusterIP -> ExternalName change could already reach the external server).

A host kubealias cannot resolve is handed to asyncpg as given, so a host list still fails over
to the next host; when no host is left the failure is raised as :class:`ConnectionError` (what
asyncpg raises when it cannot reach a server: an :class:`OSError`) with the
:class:`kubealias.KubeAliasError` as ``__cause__``. An allowlist refusal
(:class:`kubealias.PolicyError`) is raised at once, whatever hosts follow. No message holds a
password. Malformed arguments raise asyncpg's own errors, as without kubealias.

Cost: with an ``SSLContext`` the application reuses, a connect costs about what plain asyncpg's
costs (``make bench``, row 9). With an sslmode string (or ``ssl=True``) asyncpg builds a new
context for every connection, and kubealias adds a wrapper to it, one more OpenSSL context
allocation (about 0.4 ms with OpenSSL 3): pass a context you reuse to save both.

Pools resolve again for every new connection: :func:`create_pool` hands :func:`connect` to
asyncpg's documented ``create_pool(connect=...)`` hook (asyncpg >= 0.30), so a pool follows an
ExternalName -> ClusterIP switch as its connections are replaced. SQLAlchemy's
``postgresql+asyncpg`` engines: :func:`kubealias.sqlalchemy.install`.

How asyncpg reads its arguments (DSN, keywords, environment, service file, ``.pgpass``, the TLS
context it builds from ``sslmode``/``sslrootcert``/``sslcert``...) has no public API, so this
module asks asyncpg's own reader, ``asyncpg.connect_utils._parse_connect_dsn_and_args``, rather
than copying its rules; the version range in ``pyproject.toml`` is the one tested, and
``tests/unit/test_asyncpg_adapter.py`` pins what is used. Without it the import fails loudly.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import ssl
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

try:
    import asyncpg
    from asyncpg import connect_utils
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("kubealias.asyncpg needs asyncpg: pip install 'kubealias[asyncpg]'") from exc

from . import _libpq, _tls
from ._resolver import Resolver

__all__ = ["connect", "create_pool"]

# asyncpg's reader of its connection arguments (see the module docstring). Its keyword
# parameters are asyncpg.connect's names for the same arguments.
_READER: Callable[..., tuple[list[Any], Any]] | None = getattr(
    connect_utils, "_parse_connect_dsn_and_args", None
)
if _READER is None or not hasattr(connect_utils, "SSLMode"):  # pragma: no cover - version
    raise ImportError(
        f"kubealias.asyncpg does not support asyncpg {asyncpg.__version__}: "
        "pip install 'kubealias[asyncpg]' for a tested version"
    )
_READER_KEYS = tuple(inspect.signature(_READER).parameters)
_SSLMode = connect_utils.SSLMode

#: asyncpg's default ``timeout`` of ``connect`` (seconds), which the resolution counts against.
_DEFAULT_TIMEOUT = 60.0


def _no_conninfo(*args: Any, **kwargs: Any) -> Any:
    raise TypeError("asyncpg takes no libpq connection string")


#: libpq's host rule with asyncpg's error for a failed connection; asyncpg has no conninfo
#: strings, so the parse/make half of the binding never runs.
_BINDING = _libpq.Binding(
    parse=_no_conninfo,
    make=_no_conninfo,
    programming_error=asyncpg.exceptions.ClientConfigurationError,
    operational_error=ConnectionError,
)


def __getattr__(name: str) -> Any:
    """Everything else is asyncpg's, so ``import kubealias.asyncpg as asyncpg`` is a drop-in
    (``asyncpg.Connection``, ``asyncpg.exceptions``, ``asyncpg.PostgresError``...)."""
    try:
        return getattr(asyncpg, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


# --- the plan (pure): asyncpg's addresses through libpq's host rule -----------------------------


class _Plan(NamedTuple):
    """What asyncpg is handed instead of the caller's host list."""

    hosts: list[str]
    """Where asyncpg connects, in order: the answer's addresses, or a host as given."""
    ports: list[int]
    """The port of each entry of ``hosts``."""
    names: list[str]
    """libpq's ``host`` of each entry: the name verified (SNI) and looked up in ``.pgpass``."""
    routes: dict[str, str]
    """address -> the name its connections send as SNI and verify (the TLS context's map)."""


def _libpq_view(addrs: Sequence[str | tuple[str, int]], verifying: bool) -> dict[str, str] | None:
    """asyncpg's address list as libpq parameters, so that ``_libpq``'s host rule applies.

    Args:
        addrs: asyncpg's addresses: ``(host, port)`` for TCP, a socket path for Unix sockets.
        verifying: Whether the TLS context checks host names (libpq's ``verify-full``).

    Returns:
        ``host``, ``port`` (comma-separated, one entry per address) and ``sslmode``; None when
        a host holds a comma (asyncpg splits only a DSN's host list, so ``host="a,b"`` is one
        host to asyncpg, which no host name is: it gets the caller's arguments unchanged).
    """
    hosts = [a if isinstance(a, str) else a[0] for a in addrs]
    if any("," in host for host in hosts):
        return None
    # A Unix socket's port is the end of its path (asyncpg: <dir>/.s.PGSQL.<port>); it counts
    # for .pgpass.
    ports = [a.rpartition(".")[2] if isinstance(a, str) else str(a[1]) for a in addrs]
    return {
        "host": ",".join(hosts),
        "port": ",".join(ports),
        "sslmode": "verify-full" if verifying else "require",
    }


def _plan(view: Mapping[str, str], rewritten: Mapping[str, str], verifying: bool) -> _Plan | None:
    """What to hand asyncpg, from the libpq view of its addresses and that view rewritten.

    Args:
        view: :func:`_libpq_view` of asyncpg's addresses.
        rewritten: ``view`` after ``_libpq.rewrite`` (with ``pin``): ``hostaddr`` per entry.
        verifying: Whether the TLS context checks host names.

    Returns:
        None when nothing changed (asyncpg gets the caller's arguments as they are), else the
        :class:`_Plan`.

    Raises:
        ConnectionError: while verifying, one address is to be verified as two names (two
            hosts of the list resolve to the same server, or an alias resolves to an IP
            literal of the list): asyncpg takes one TLS context for the whole list, and a
            connection is known by its address only.
    """
    if rewritten == view:
        return None
    names = rewritten["host"].split(",")
    addrs = rewritten.get("hostaddr", "").split(",")
    ports = rewritten["port"].split(",")
    hosts: list[str] = []
    routes: dict[str, str] = {}
    for name, addr in zip(names, addrs, strict=True):
        target = addr or name
        hosts.append(target)
        if target.startswith("/"):  # a Unix socket (asyncpg's test): never verified
            continue
        seen = routes.setdefault(target, name)
        if seen != name and verifying:
            raise ConnectionError(
                f"cannot verify {target} as both {seen!r} and {name!r}: asyncpg takes one TLS "
                "context for the whole host list; connect to these hosts separately"
            )
    routes = {target: name for target, name in routes.items() if target != name}
    return _Plan(hosts, [int(p) if p.isdigit() else 5432 for p in ports], names, routes)


# --- connecting ---------------------------------------------------------------------------------


def _read(dsn: str | None, kwargs: Mapping[str, Any], **overrides: Any) -> tuple[list[Any], Any]:
    """asyncpg's own reading of ``connect(dsn, **kwargs)``, ``overrides`` replacing keywords.

    Raises:
        asyncpg.exceptions.ClientConfigurationError: (and asyncpg's other errors) malformed
            arguments, as ``asyncpg.connect`` raises them.
    """
    assert _READER is not None  # checked at import
    args = {key: kwargs.get(key) for key in _READER_KEYS}
    args["dsn"] = dsn
    args.update(overrides)
    return _READER(**args)


def _verifying(params: Any) -> bool:
    """Whether asyncpg's connection will check the server's host name."""
    if params.sslmode in (_SSLMode.allow, _SSLMode.prefer):
        return False  # asyncpg's contexts for these verify nothing
    return isinstance(params.ssl, ssl.SSLContext) and params.ssl.check_hostname


def _no_password() -> None:
    """A password that is no password: keeps asyncpg from reading ``.pgpass`` by address."""
    return None


async def connect(
    dsn: str | None = None, *, resolver: Resolver | None = None, **kwargs: Any
) -> asyncpg.Connection:
    """:func:`asyncpg.connect`, with aliases resolved. Same arguments and return type.

    Args:
        dsn: asyncpg's connection URI.
        resolver: The resolver to use; None for the default one.
        kwargs: asyncpg's keyword arguments (``host``, ``port``, ``ssl``, ``direct_tls``,
            ``timeout``, ``connection_class``...); ``timeout`` covers the resolution too.

    Returns:
        The connection asyncpg returns (of ``connection_class``).

    Raises:
        ConnectionError: an alias cannot be resolved safely (no host of the list left, or a
            :class:`kubealias.PolicyError`; the :class:`kubealias.KubeAliasError` chained as
            ``__cause__``), or one address would have to be verified as two names.
        OSError: asyncpg could not connect (refused, timeout, certificate verification...).
        asyncpg.exceptions.ClientConfigurationError: malformed arguments (asyncpg's check).
        asyncpg.PostgresError: the server refused the connection (authentication...).
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    # No password is looked up here (a callable is never called while reading): .pgpass is
    # read below, by the names libpq's rule gives, when no password is given.
    addrs, params = _read(dsn, kwargs, password=_no_password)
    verifying = _verifying(params)
    view = _libpq_view(addrs, verifying)
    route = None
    if view is not None:
        rewritten = await _libpq.aresolve_params(_BINDING, view, resolver, {}, pin=True)
        route = _plan(view, rewritten, verifying)
    if route is None:
        return await asyncpg.connect(dsn, **kwargs)
    password = kwargs.get("password")  # given: asyncpg looks nothing up
    if password is None:
        # .pgpass by the names of libpq's rule, read as asyncpg reads it (ssl=False: only
        # the password is wanted, so no TLS context is built a second time).
        password = _read(
            dsn, kwargs, host=route.names, port=route.ports, ssl=False, direct_tls=False
        )[1].password
    if isinstance(params.ssl, ssl.SSLContext) and params.sslmode not in (
        _SSLMode.allow,
        _SSLMode.prefer,
    ):
        # The caller's own context is reused across connections: so is its wrapper. A
        # context asyncpg built from an sslmode is new for this connection alone.
        reuse = params.ssl is kwargs.get("ssl")
        tls: Any = _tls.routed_context(route.routes, params.ssl, reuse=reuse)
    else:  # disable, or allow/prefer: asyncpg's fallback needs the mode itself
        tls = params.sslmode.name.replace("_", "-")
    timeout = kwargs.get("timeout", _DEFAULT_TIMEOUT)
    return await asyncpg.connect(
        dsn,
        **{
            **kwargs,
            "host": route.hosts,
            "port": route.ports,
            "password": _no_password if password is None else password,
            "ssl": tls,
            "timeout": None if timeout is None else timeout - (loop.time() - started),
        },
    )


def create_pool(
    dsn: str | None = None, *, resolver: Resolver | None = None, **kwargs: Any
) -> asyncpg.Pool:
    """:func:`asyncpg.create_pool` whose every new connection is made by :func:`connect`.

    Args:
        dsn: asyncpg's connection URI.
        resolver: The resolver to use; None for the default one.
        kwargs: asyncpg's arguments of ``create_pool`` and ``connect`` (``min_size``,
            ``max_size``, ``setup``, ``init``, ``connection_class``, ``ssl``...).

    Returns:
        The :class:`asyncpg.Pool` (``await`` it, or ``async with`` it, as asyncpg's).

    Raises:
        TypeError: ``connect=`` is given: call :func:`connect` in your own function instead.
    """
    if kwargs.get("connect") is not None:
        raise TypeError(
            "kubealias.asyncpg.create_pool makes its connections itself; with your own "
            "connect=, call kubealias.asyncpg.connect in it and use asyncpg.create_pool"
        )
    kwargs.pop("connect", None)
    opener = connect if resolver is None else functools.partial(connect, resolver=resolver)
    return asyncpg.create_pool(dsn, connect=opener, **kwargs)

"""psycopg 3: connect to aliases with ``sslmode=verify-full`` still verifying.

    import kubealias.psycopg as psycopg          # the one changed import

    conn = psycopg.connect(host="database", dbname="app", sslmode="verify-full")

For every host of the (comma-separated) host list that is an alias, ``host`` becomes the TLS
name (libpq sends it as SNI and verifies the certificate against it) and ``hostaddr`` the
addresses the cluster DNS gave, one host/hostaddr/port entry per address so that libpq (and
psycopg's own attempts) fail over across them. Hosts that are not aliases, Unix sockets, IP
literals and hosts that already have a ``hostaddr`` are left exactly as given by
:func:`rewrite_conninfo` and :func:`rewrite_params`. When connecting (``connect``, the
connection classes, SQLAlchemy, Django), a Service the cluster DNS answered without a CNAME
(ClusterIP, headless) keeps its ``host`` and gets the answer's addresses as ``hostaddr``: libpq
verifies the name as given but does not look it up a second time (a second lookup right after a
ClusterIP -> ExternalName change could already reach the external server).

Pools resolve again on every new or replacement connection through psycopg's documented hook,
the classmethod ``_get_connection_params`` ("Manipulate connection parameters before
connecting", psycopg docs, *Connection classes*)::

    from psycopg_pool import ConnectionPool
    from kubealias.psycopg import Connection

    pool = ConnectionPool("host=database sslmode=verify-full", connection_class=Connection)

``.pgpass`` entries are matched by libpq on the *rewritten* host (the TLS name).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

try:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo
    from psycopg.rows import Row, TupleRow
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "kubealias.psycopg needs psycopg 3: pip install 'kubealias[psycopg]'"
    ) from exc

from ._errors import KubeAliasError
from ._models import Resolution
from ._names import is_ip_literal
from ._resolver import Resolver, get_default_resolver

__all__ = [
    "AsyncConnection",
    "Connection",
    "connect",
    "rewrite_conninfo",
    "rewrite_params",
]

# libpq's own wording that contains a quote before the quoted token (fe-connect.c:
# conninfo_parse, conninfo_uri_parse_params); kept so that the reason stays readable.
_LITERAL_PREFIX = re.compile(r'(missing "=" after |missing key/value separator "=" in )')
_Conn = TypeVar("_Conn", bound="psycopg.Connection[Any]")


def _split(value: str | None) -> list[str]:
    return value.split(",") if value else []


def _is_local(host: str) -> bool:
    # libpq: an absolute path (or '@' abstract socket on Linux) is a Unix-domain socket
    # directory; Windows paths like C:\\... too.
    return host.startswith(("/", "@")) or (host[1:2] == ":" and not is_ip_literal(host))


def _hosts(params: Mapping[str, Any], environ: Mapping[str, str]) -> tuple[list[str], ...]:
    """host, hostaddr and port lists, taken from the parameters or, as libpq does, PG*."""

    def value(key: str, var: str) -> str | None:
        if key in params and params[key] is not None:
            return str(params[key])
        return environ.get(var)

    return (
        _split(value("host", "PGHOST")),
        _split(value("hostaddr", "PGHOSTADDR")),
        _split(value("port", "PGPORT")),
    )


def _entries(
    params: Mapping[str, Any], environ: Mapping[str, str]
) -> list[tuple[str, str, str]] | None:
    """(host, hostaddr, port) for each entry of the host list; None when there is nothing to do.

    Shared by the sync and async paths so that both look up exactly the same hosts.
    """
    hosts, hostaddrs, ports = _hosts(params, environ)
    if not hosts:
        return None  # libpq's default (the local socket): nothing to do
    if hostaddrs and len(hostaddrs) != len(hosts):
        return None  # libpq will report the mismatch in its own words
    if len(ports) > 1 and len(ports) != len(hosts):
        return None
    return [
        (
            host,
            hostaddrs[i] if hostaddrs else "",
            ports[i] if len(ports) > 1 else (ports[0] if ports else ""),
        )
        for i, host in enumerate(hosts)
    ]


def _needs_lookup(host: str, addr: str) -> bool:
    return bool(host) and not addr and not _is_local(host) and not is_ip_literal(host)


def _rewrite(
    params: dict[str, Any],
    resolve: Callable[[str], Resolution],
    environ: Mapping[str, str],
    *,
    pin: bool = False,
) -> dict[str, Any]:
    """The parameters with each alias of the host list rewritten (see the module docstring).

    With ``pin`` (the connection hooks), a Service answered without a CNAME (ClusterIP,
    headless) keeps its ``host`` but gets the answer's addresses as ``hostaddr``: libpq then
    connects where kubealias's answer says and verifies the name as given, instead of looking
    the name up a second time, which right after a ClusterIP -> ExternalName change could
    already see the CNAME and reach the external server with the short name.
    """
    entries = _entries(params, environ)
    if entries is None:
        return params
    ports = _hosts(params, environ)[2]
    new_hosts: list[str] = []
    new_addrs: list[str] = []
    new_ports: list[str] = []
    changed = False
    for host, addr, port in entries:
        result = resolve(host) if _needs_lookup(host, addr) else None
        if result is None or not result.addresses or not (result.is_alias or pin):
            new_hosts.append(host)
            new_addrs.append(addr)
            new_ports.append(port)
            continue
        changed = True
        for address in result.addresses:
            new_hosts.append(result.tls_name)  # the name as given when not an alias
            new_addrs.append(address)
            new_ports.append(port)
    if not changed:
        return params  # invariant 3: byte for byte what was given
    out = dict(params)
    out["host"] = ",".join(new_hosts)
    out["hostaddr"] = ",".join(new_addrs)
    if ports:
        out["port"] = ",".join(new_ports)
    return out


def rewrite_params(
    params: Mapping[str, Any],
    *,
    resolver: Resolver | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Rewrite a psycopg connection-parameter dict (see the module docstring).

    Raises:
        psycopg.OperationalError: an alias cannot be resolved safely; the
            :class:`kubealias.KubeAliasError` is chained as ``__cause__``.
    """
    resolve = (resolver or get_default_resolver()).resolve
    env = os.environ if environ is None else environ
    with _as_operational_error():
        return _rewrite(dict(params), resolve, env)


def _connection_params(
    params: Mapping[str, Any], resolver: Resolver | None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """What the connection paths (Connection, SQLAlchemy, Django) give libpq: the rewrite,
    with in-cluster Services that are not aliases pinned to their addresses (see _rewrite)."""
    resolve = (resolver or get_default_resolver()).resolve
    env = os.environ if environ is None else environ
    with _as_operational_error():
        return _rewrite(dict(params), resolve, env, pin=True)


def rewrite_conninfo(conninfo: str = "", *, resolver: Resolver | None = None, **kwargs: Any) -> str:
    """The connection string with aliases rewritten, for anything else built on libpq.

    Accepts what :func:`psycopg.connect` accepts: a ``key=value`` string, a
    ``postgresql://`` URL, keyword arguments, or a mix. Returns a ``key=value`` string.

    Raises:
        psycopg.ProgrammingError: the connection string is malformed (libpq's reason, with
            the tokens it quotes removed, since they could be a password), or a value in it
            is not valid UTF-8.
        psycopg.OperationalError: an alias cannot be resolved safely.
    """
    params = _parse(conninfo, **kwargs)
    rewritten = rewrite_params(params, resolver=resolver)
    try:
        if rewritten == params:
            # Invariant 3: nothing to rewrite, so exactly what psycopg itself would build
            # from the input (a conninfo without keywords comes back as given, URL or not).
            return make_conninfo(conninfo, **kwargs)
        return make_conninfo("", **rewritten)
    except psycopg.ProgrammingError as exc:  # an unknown keyword argument
        error = _redacted(exc)
    raise error  # outside the except: libpq's own error must not ride along as __context__


def _parse(conninfo: str, **kwargs: Any) -> dict[str, Any]:
    try:
        return conninfo_to_dict(conninfo, **kwargs)
    except psycopg.ProgrammingError as exc:
        error = _redacted(exc)
    except UnicodeDecodeError:
        error = _not_utf8()
    raise error  # outside the except: libpq's own error must not ride along as __context__


def _not_utf8() -> psycopg.ProgrammingError:
    """psycopg decodes libpq's parsed values as UTF-8 and lets UnicodeDecodeError out, whose
    repr holds the undecodable bytes: the value, which may be the password (``%80secret`` in a
    URI). The reason only, as a ProgrammingError like every other malformed string."""
    return psycopg.ProgrammingError(
        "invalid connection string: a value is not valid UTF-8 (a percent-encoded byte sequence?)"
    )


def _redacted(exc: psycopg.ProgrammingError) -> psycopg.ProgrammingError:
    """libpq quotes the token it choked on, which may be a password: keep the reason only.

    The token may itself contain double quotes, so pairing quotes is not safe (``a"pw"b``
    would leave ``pw`` outside every pair): everything from the first quote after libpq's own
    fixed wording to the last quote of the message goes, whatever it holds.
    """
    text = str(exc).strip()
    prefix = _LITERAL_PREFIX.match(text)
    head = prefix.group(0) if prefix else ""
    rest = text[len(head) :]
    first = rest.find('"')
    if first >= 0:
        last = rest.rfind('"')
        tail = rest[last + 1 :] if last > first else ""
        rest = f'{rest[:first]}"…"{tail}'
    return psycopg.ProgrammingError(f"invalid connection string: {head}{rest}")


def __getattr__(name: str) -> Any:
    """Everything else is psycopg's, so ``import kubealias.psycopg as psycopg`` is a drop-in
    (``psycopg.OperationalError``, ``psycopg.sql``, ``psycopg.Cursor``...)."""
    try:
        return getattr(psycopg, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


class _as_operational_error:
    """The one place a kubealias error becomes psycopg's connection error."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        if isinstance(exc, KubeAliasError):
            raise psycopg.OperationalError(str(exc)) from exc


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
        try:
            params = dict(super()._get_connection_params(conninfo, **kwargs))
        except psycopg.ProgrammingError as exc:
            error = _redacted(exc)
        except UnicodeDecodeError:
            error = _not_utf8()
        else:
            return _connection_params(params, cls.resolver)
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
        failure = None
        try:
            params = dict(await super()._get_connection_params(conninfo, **kwargs))
        except psycopg.ProgrammingError as exc:
            failure = _redacted(exc)
        except UnicodeDecodeError:
            failure = _not_utf8()
        if failure is not None:
            raise failure  # outside the except: libpq's own error (with the token) is not chained
        resolver = cls.resolver or get_default_resolver()
        env = os.environ
        # Resolve every host the sync rewrite would look up (the same _entries and
        # _needs_lookup), without blocking the loop; the rewrite then only reads the answers.
        results: dict[str, Resolution] = {}
        with _as_operational_error():
            for host, addr, _ in _entries(params, env) or ():
                if _needs_lookup(host, addr) and host not in results:
                    results[host] = await resolver.aresolve(host)
            return _rewrite(params, results.__getitem__, env, pin=True)


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

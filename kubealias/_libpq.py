"""libpq's rules, shared by every adapter built on libpq (psycopg 3, SQLAlchemy, Django, psycopg2).

Four rules live here, each in one place:

* **The host list rewrite** (:func:`rewrite`): every host of libpq's comma-separated host list
  that is an alias gets the addresses of kubealias's answer as ``hostaddr``, one
  host/hostaddr/port entry per address so that libpq fails over across them. Its ``host``
  becomes the TLS name **only under** ``sslmode=verify-full``: libpq also picks the
  ``.pgpass``/``passfile`` password by ``host``, and under every other sslmode nothing verifies
  that name, so a forged CNAME would choose which stored password is sent to the address it
  chose (docs/design.md, Trust: "a DNS answer never chooses a credential"). There ``host``
  stays exactly as the application gave it. The lists and the sslmode come from the parameters
  or, as libpq reads them, from ``PGHOST``/``PGHOSTADDR``/``PGPORT``/``PGSSLMODE``.
  Unix sockets, IP literals and hosts that already have a ``hostaddr`` are never looked up;
  when nothing is an alias the parameters come back as given (the same object, so a caller can
  return its input byte for byte). With ``pin`` (the connection paths), a host the cluster DNS
  answered without a CNAME keeps its name and gets the answer's addresses as ``hostaddr``.
* **Failover** (:func:`unresolved`): a host kubealias could not resolve (a
  :class:`~kubealias.ResolutionError`: timeout, server failure, a broken chain) is handed to
  libpq as given, which then fails or succeeds on it as it would without kubealias and moves on
  to the next host; only when no host of the list is left is the failure raised. A
  :class:`~kubealias.PolicyError` is a refusal, not a failure: it is raised at once.
* **Redaction** (:func:`redact`): libpq quotes the token it could not parse, which may be a
  password; the message keeps libpq's reason only.
* **Errors** (:func:`parse_error`, and the resolving drivers): a malformed connection string
  becomes the binding's ``ProgrammingError`` with no token of the input in it and no libpq
  error chained; a :class:`kubealias.KubeAliasError` becomes the binding's
  ``OperationalError`` with the kubealias error chained as ``__cause__``.

Decide without I/O, then drive: :func:`lookups` says which hosts to resolve, :func:`unresolved`
whether the failures leave nothing to try, and :func:`rewrite` is a pure function from
(parameters, outcomes) to the new parameters; :func:`resolve_params` and :func:`aresolve_params`
only resolve those hosts (``resolve`` or ``aresolve``) into a :class:`_Resolutions`, which
chooses the resolver and calls them, so the sync and async paths cannot drift apart.

This module does not import psycopg: a psycopg2-only install imports it too. What depends on
the binding (parsing a conninfo string, building one, its error classes) comes in as a
:class:`Binding`; :func:`psycopg3` and :func:`psycopg2` make psycopg 3's and psycopg2's,
importing the binding only when called.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from ._errors import KubeAliasError, ResolutionError
from ._models import Resolution
from ._names import is_ip_literal
from ._resolver import Resolver, get_default_resolver

#: The keys of libpq's host list: the only ones :func:`rewrite` changes.
HOST_KEYS = ("host", "hostaddr", "port")

#: The reason given for a value that is not valid UTF-8 (see :func:`parse_error`).
NOT_UTF8 = (
    "invalid connection string: a value is not valid UTF-8 (a percent-encoded byte sequence?)"
)

# libpq's own wording that contains a quote before the quoted token (fe-connect.c:
# conninfo_parse, conninfo_uri_parse_params); kept so that the reason stays readable.
_LITERAL_PREFIX = re.compile(r'(missing "=" after |missing key/value separator "=" in )')


@dataclass(frozen=True)
class Binding:
    """What the rules need from one Python binding of libpq.

    A seam rather than an import so that this module works with whichever binding is
    installed: :func:`psycopg3` and :func:`psycopg2` make the two there are.
    """

    parse: Callable[..., dict[str, Any]]
    """``(conninfo, **kwargs)`` to a parameter dict, keywords overriding the string; raises
    ``programming_error`` for a malformed string (psycopg's ``conninfo_to_dict``)."""
    make: Callable[..., str]
    """``(conninfo, **kwargs)`` to a ``key=value`` string, or the conninfo unchanged when no
    keyword is given (psycopg's ``make_conninfo``)."""
    programming_error: type[Exception]
    """The binding's error for a malformed connection string."""
    operational_error: type[Exception]
    """The binding's error for a failed connection, raised for a failed resolution."""
    reason: Callable[[Exception], str] = str
    """libpq's own message (``PQconninfoParse``'s error text) from a ``programming_error``
    raised by ``parse`` or ``make``; :func:`redact` then takes the quoted tokens out."""


@functools.cache
def psycopg3() -> Binding:
    """psycopg 3's :class:`Binding`.

    Raises:
        ImportError: psycopg 3 is not installed.
    """
    # Imported here, not at the top of the module: psycopg2-only installs import this module.
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    return Binding(
        conninfo_to_dict, make_conninfo, psycopg.ProgrammingError, psycopg.OperationalError
    )


#: What psycopg2 puts before libpq's parse error (psycopg/utils.c, ``psyco_parse_dsn``:
#: "invalid dsn: %s").
_PSYCOPG2_PREFIX = "invalid dsn: "


@functools.cache
def psycopg2() -> Binding:
    """psycopg2's :class:`Binding`: ``psycopg2.extensions.parse_dsn``/``make_dsn``.

    ``make_dsn(dsn, **kwargs)`` has the shape of psycopg's ``make_conninfo`` (the string
    unchanged, only checked, when no keyword is given; keywords override the string, ``None``
    dropped, ``database`` spelt ``dbname``); parsing is ``parse_dsn`` of what it makes, so the
    parameters are the ones psycopg2.connect would hand libpq.

    Raises:
        ImportError: psycopg2 is not installed.
    """
    # Imported here, not at the top of the module: psycopg-only installs import this module.
    import psycopg2
    from psycopg2.extensions import make_dsn, parse_dsn

    def parse(conninfo: str, **kwargs: Any) -> dict[str, Any]:
        params: dict[str, Any] = parse_dsn(make_dsn(conninfo, **kwargs) if kwargs else conninfo)
        return params

    def reason(exc: Exception) -> str:
        return str(exc).removeprefix(_PSYCOPG2_PREFIX)

    return Binding(
        parse, make_dsn, psycopg2.ProgrammingError, psycopg2.OperationalError, reason=reason
    )


# --- the host list rewrite (pure) ---------------------------------------------------------------


def _split(value: str | None) -> list[str]:
    return value.split(",") if value else []


def _is_local(host: str) -> bool:
    # libpq: an absolute path (or '@' abstract socket on Linux) is a Unix-domain socket
    # directory; Windows paths like C:\\... too.
    return host.startswith(("/", "@")) or (host[1:2] == ":" and not is_ip_literal(host))


def _value(params: Mapping[str, Any], environ: Mapping[str, str], key: str, var: str) -> str | None:
    """A parameter as libpq reads it: the given value, else its environment variable."""
    if key in params and params[key] is not None:
        return str(params[key])
    return environ.get(var)


def _lists(params: Mapping[str, Any], environ: Mapping[str, str]) -> tuple[list[str], ...]:
    """host, hostaddr and port lists, taken from the parameters or, as libpq does, PG*."""
    return (
        _split(_value(params, environ, "host", "PGHOST")),
        _split(_value(params, environ, "hostaddr", "PGHOSTADDR")),
        _split(_value(params, environ, "port", "PGPORT")),
    )


def verifies_host_name(params: Mapping[str, Any], environ: Mapping[str, str]) -> bool:
    """Whether libpq will verify the server's certificate against ``host`` (``verify-full``).

    Only then may ``host`` carry the TLS name: libpq also looks the ``.pgpass``/``passfile``
    password up by ``host`` (libpq docs, *The Password File*: "matched to the host connection
    parameter if that is specified, otherwise to the hostaddr parameter"), so the name that
    chooses the password must be one the server proves it holds. Every other mode (``disable``,
    ``allow``, ``prefer`` -- libpq's default --, ``require``, ``verify-ca``, a misspelt one)
    answers False. A ``service`` (``pg_service.conf``) named without an sslmode in the
    parameters also answers False: libpq takes the sslmode from the service file then, before
    ``PGSSLMODE``, and kubealias does not read that file; keeping ``host`` can only make
    ``verify-full`` fail, never send a password by a name nothing verified.

    Args:
        params: libpq connection parameters (``None`` means absent).
        environ: The environment libpq would read ``PGSSLMODE``/``PGSERVICE`` from.

    Returns:
        True for ``sslmode=verify-full`` from the parameters, or from ``PGSSLMODE`` when no
        service is named.
    """
    if params.get("sslmode") is None and _value(params, environ, "service", "PGSERVICE"):
        return False
    return _value(params, environ, "sslmode", "PGSSLMODE") == "verify-full"


def _entries(
    params: Mapping[str, Any], environ: Mapping[str, str]
) -> list[tuple[str, str, str]] | None:
    """(host, hostaddr, port) for each entry of the host list; None when there is nothing to do."""
    hosts, hostaddrs, ports = _lists(params, environ)
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


def lookups(params: Mapping[str, Any], environ: Mapping[str, str]) -> list[str]:
    """The hosts :func:`rewrite` needs a resolution for, in host-list order, each once.

    Args:
        params: libpq connection parameters (values of any type; ``None`` means absent).
        environ: The environment libpq would read ``PGHOST``/``PGHOSTADDR``/``PGPORT`` from.

    Returns:
        The host names that are neither sockets nor IP literals and have no ``hostaddr``;
        empty when the host list is absent or its counts disagree (libpq reports that).
    """
    hosts: list[str] = []
    for host, addr, _ in _entries(params, environ) or ():
        if _needs_lookup(host, addr) and host not in hosts:
            hosts.append(host)
    return hosts


#: What resolving one host of :func:`lookups` gave: its answer, or why there is none.
Outcome = Resolution | ResolutionError


def unresolved(
    params: Mapping[str, Any], outcomes: Mapping[str, Outcome], environ: Mapping[str, str]
) -> list[ResolutionError]:
    """The failures to raise: every one of them when they leave no host to try, else none.

    A host kubealias could not resolve goes to libpq as given (:func:`rewrite`), as it would
    without kubealias, and libpq moves on to the next host when it fails there too. Only a
    host list whose every entry failed leaves nothing to hand over: then libpq would merely
    repeat the failed lookups (with no word of the chain seen), so kubealias's own errors are
    the answer. Sockets, IP literals, hosts with a ``hostaddr`` and empty entries (libpq's
    default host) never fail here: each is a host left to try.

    Args:
        params: libpq connection parameters.
        outcomes: An :data:`Outcome` for every host of :func:`lookups` ``(params, environ)``.
        environ: The environment libpq would read ``PGHOST``/``PGHOSTADDR``/``PGPORT`` from.

    Returns:
        The failures in host-list order, each once, when no entry is left; else ``[]``.
    """
    failed: list[ResolutionError] = []
    for host, addr, _ in _entries(params, environ) or ():
        outcome = outcomes.get(host) if _needs_lookup(host, addr) else None
        if not isinstance(outcome, ResolutionError):
            return []  # this entry is left for libpq to try
        if outcome not in failed:
            failed.append(outcome)
    return failed


def rewrite(
    params: Mapping[str, Any],
    resolutions: Mapping[str, Outcome],
    environ: Mapping[str, str],
    *,
    pin: bool = False,
) -> Mapping[str, Any]:
    """The parameters with each alias of the host list rewritten (see the module docstring).

    An alias gets the answer's addresses as ``hostaddr``; its ``host`` becomes the TLS name
    under ``sslmode=verify-full`` and stays as given under any other sslmode
    (:func:`verifies_host_name`: libpq picks the stored password by ``host``). A host whose
    outcome is a failure stays exactly as given (libpq tries it itself; see :func:`unresolved`).

    With ``pin`` (the connection paths), a Service answered without a CNAME (ClusterIP,
    headless) keeps its ``host`` but gets the answer's addresses as ``hostaddr``: libpq then
    connects where kubealias's answer says and verifies the name as given, instead of looking
    the name up a second time, which right after a ClusterIP -> ExternalName change could
    already see the CNAME and reach the external server with the short name.

    Args:
        params: libpq connection parameters; not modified.
        resolutions: An :data:`Outcome` for every host of :func:`lookups` ``(params, environ)``.
        environ: The environment libpq would read ``PGHOST``/``PGHOSTADDR``/``PGPORT``/
            ``PGSSLMODE`` from.
        pin: Give non-alias hosts the answer's addresses as ``hostaddr``.

    Returns:
        ``params`` itself when nothing changes (invariant 3: byte for byte what was given),
        else a new dict with ``host``, ``hostaddr`` (and ``port`` when one was given) rewritten.

    Raises:
        KeyError: ``resolutions`` lacks a host that :func:`lookups` names (a caller's bug).
    """
    entries = _entries(params, environ)
    if entries is None:
        return params
    ports = _lists(params, environ)[2]
    tls_host = verifies_host_name(params, environ)
    new_hosts: list[str] = []
    new_addrs: list[str] = []
    new_ports: list[str] = []
    changed = False
    for host, addr, port in entries:
        result = resolutions[host] if _needs_lookup(host, addr) else None
        if (
            not isinstance(result, Resolution)
            or not result.addresses
            or not (result.is_alias or pin)
        ):
            new_hosts.append(host)
            new_addrs.append(addr)
            new_ports.append(port)
            continue
        changed = True
        for address in result.addresses:
            # Only a name libpq verifies may choose the stored password (see above).
            new_hosts.append(result.tls_name if tls_host else host)
            new_addrs.append(address)
            new_ports.append(port)
    if not changed:
        return params
    out = dict(params)
    out["host"] = ",".join(new_hosts)
    out["hostaddr"] = ",".join(new_addrs)
    if ports:
        out["port"] = ",".join(new_ports)
    return out


# --- redaction and errors -----------------------------------------------------------------------


def redact(message: str) -> str:
    """libpq's parse error without the token it quotes, which may be a password.

    The token may itself contain double quotes, so pairing quotes is not safe (``a"pw"b``
    would leave ``pw`` outside every pair): everything from the first quote after libpq's own
    fixed wording to the last quote of the message goes, whatever it holds.

    Args:
        message: libpq's message (``PQconninfoParse``'s error text).

    Returns:
        ``invalid connection string: `` and the reason, every quoted token replaced by ``"…"``.
    """
    text = message.strip()
    prefix = _LITERAL_PREFIX.match(text)
    head = prefix.group(0) if prefix else ""
    rest = text[len(head) :]
    first = rest.find('"')
    if first >= 0:
        last = rest.rfind('"')
        tail = rest[last + 1 :] if last > first else ""
        rest = f'{rest[:first]}"…"{tail}'
    return f"invalid connection string: {head}{rest}"


def parse_error(binding: Binding, exc: Exception) -> Exception:
    """The error to raise for a connection string that ``binding`` failed to parse.

    psycopg decodes libpq's parsed values as UTF-8 and lets UnicodeDecodeError out, whose repr
    holds the undecodable bytes: the value, which may be the password (``%80secret`` in a
    URI). That becomes the reason only, as a ProgrammingError like every other malformed string.
    The caller raises the result *outside* its ``except`` block, so that libpq's own error
    (with the token) does not ride along as ``__context__``.

    Args:
        binding: The binding whose parser failed.
        exc: Its ``programming_error`` or a :class:`UnicodeDecodeError`.

    Returns:
        A new ``binding.programming_error`` whose text holds no token of the input.
    """
    if isinstance(exc, UnicodeDecodeError):
        return binding.programming_error(NOT_UTF8)
    return binding.programming_error(redact(binding.reason(exc)))


def parse(binding: Binding, conninfo: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``binding.parse(conninfo, **kwargs)``, a malformed string reported without its tokens.

    Args:
        binding: The libpq binding.
        conninfo: A ``key=value`` string or a ``postgresql://`` URL.
        kwargs: Parameters overriding the string's.

    Returns:
        The merged parameters.

    Raises:
        Exception: ``binding.programming_error`` for a malformed string or a value that is not
            valid UTF-8 (see :func:`parse_error`).
    """
    try:
        return binding.parse(conninfo, **kwargs)
    except (binding.programming_error, UnicodeDecodeError) as exc:
        error = parse_error(binding, exc)
    raise error  # outside the except: libpq's own error must not ride along as __context__


class _client_errors:
    """The one place a kubealias error becomes the binding's connection error."""

    def __init__(self, binding: Binding) -> None:
        self._binding = binding

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if isinstance(exc, KubeAliasError):
            raise self._binding.operational_error(str(exc)) from exc


class _Resolutions:
    """All that :func:`resolve_params` and :func:`aresolve_params` share but the lookups: the
    resolver and environment chosen, the hosts to look up, the outcomes each driver records,
    and what they come to (:meth:`settle`). No I/O: a driver only resolves."""

    __slots__ = ("binding", "env", "outcomes", "params", "resolver")

    def __init__(
        self,
        binding: Binding,
        params: Mapping[str, Any],
        resolver: Resolver | None,
        environ: Mapping[str, str] | None,
    ) -> None:
        """Raises ConfigError: no resolver was given and ``KUBEALIAS_*`` is malformed."""
        self.binding = binding
        self.params = params
        self.resolver = resolver or get_default_resolver()
        self.env: Mapping[str, str] = os.environ if environ is None else environ
        self.outcomes: dict[str, Outcome] = {}

    def hosts(self) -> list[str]:
        """The hosts to resolve (:func:`lookups`); raises PolicyError for a refused host."""
        return lookups(self.params, self.env)

    def settle(self, pin: bool) -> dict[str, Any]:
        """:func:`rewrite`, unless the failures leave no host (:func:`unresolved`): then raise.

        Raises:
            Exception: ``binding.operational_error`` listing every failure, one a line, with
                the first :class:`kubealias.ResolutionError` chained as ``__cause__``.
        """
        failures = unresolved(self.params, self.outcomes, self.env)
        if failures:
            message = "\n".join(str(failure) for failure in failures)
            raise self.binding.operational_error(message) from failures[0]
        return dict(rewrite(self.params, self.outcomes, self.env, pin=pin))


# --- drivers: resolve, then rewrite -------------------------------------------------------------


def resolve_params(
    binding: Binding,
    params: Mapping[str, Any],
    resolver: Resolver | None,
    environ: Mapping[str, str] | None = None,
    *,
    pin: bool = False,
) -> dict[str, Any]:
    """Resolve the hosts of :func:`lookups` with ``resolve`` and :func:`rewrite` the params.

    Args:
        binding: The libpq binding whose errors to raise.
        params: libpq connection parameters; not modified.
        resolver: The resolver; None for the default one.
        environ: The environment for ``PG*`` (None: ``os.environ``).
        pin: See :func:`rewrite` (True on the connection paths).

    Returns:
        A new dict: the rewritten parameters, or a copy of ``params``.

    Raises:
        Exception: ``binding.operational_error`` when the lookups refused a host
            (:class:`kubealias.PolicyError`) or left none to try (:func:`unresolved`); the
            :class:`kubealias.KubeAliasError` is chained as ``__cause__``.
        ConfigError: no resolver was given and ``KUBEALIAS_*`` is malformed.
    """
    job = _Resolutions(binding, params, resolver, environ)
    with _client_errors(binding):  # a PolicyError (a refusal) is raised at once
        for host in job.hosts():
            try:
                job.outcomes[host] = job.resolver.resolve(host)
            except ResolutionError as exc:  # libpq may still try it, or the next host
                job.outcomes[host] = exc
    return job.settle(pin)


async def aresolve_params(
    binding: Binding,
    params: Mapping[str, Any],
    resolver: Resolver | None,
    environ: Mapping[str, str] | None = None,
    *,
    pin: bool = False,
) -> dict[str, Any]:
    """:func:`resolve_params` resolving with ``aresolve``: the event loop is never blocked.

    The same arguments, result and errors as :func:`resolve_params`; the same hosts are
    looked up (:func:`lookups`) and the same :func:`rewrite` decides.
    """
    job = _Resolutions(binding, params, resolver, environ)
    with _client_errors(binding):  # as in resolve_params
        for host in job.hosts():
            try:
                job.outcomes[host] = await job.resolver.aresolve(host)
            except ResolutionError as exc:  # libpq may still try it, or the next host
                job.outcomes[host] = exc
    return job.settle(pin)


def rewrite_conninfo(
    binding: Binding,
    conninfo: str,
    kwargs: Mapping[str, Any],
    resolver: Resolver | None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """The connection string with aliases rewritten (no pinning: non-aliases stay as given).

    Args:
        binding: The libpq binding that parses and builds the strings.
        conninfo: A ``key=value`` string or a ``postgresql://`` URL ("" for keywords only).
        kwargs: Parameters overriding the string's.
        resolver: The resolver; None for the default one.
        environ: The environment for ``PG*`` (None: ``os.environ``).

    Returns:
        A ``key=value`` string; when nothing is an alias, exactly what ``binding.make`` builds
        from the input (a conninfo without keywords comes back as given, URL or not).

    Raises:
        Exception: ``binding.programming_error`` for a malformed string, a value that is not
            valid UTF-8 or an unknown keyword (no token of the input in the message);
            ``binding.operational_error`` when a host is refused by policy or no host of the
            list can be resolved (see :func:`resolve_params`).
    """
    params = parse(binding, conninfo, kwargs)
    rewritten = resolve_params(binding, params, resolver, environ)
    try:
        if rewritten == params:
            return binding.make(conninfo, **kwargs)
        return binding.make("", **rewritten)
    except binding.programming_error as exc:  # an unknown keyword argument
        error = parse_error(binding, exc)
    raise error  # outside the except: libpq's own error must not ride along as __context__

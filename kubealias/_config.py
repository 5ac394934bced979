"""Configuration: the ``KUBEALIAS_*`` variables, ``/etc/resolv.conf`` and the service account.

Reading is apart from querying: :meth:`Config.from_env` takes the environment as a mapping and
resolv.conf as a path or a file object, so every rule is tested without touching the machine.
Every value remembers where it came from, for ``kubealias env``.
"""

from __future__ import annotations

import difflib
import fnmatch
import ipaddress
import logging
import math
import os
import re
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import IO, Any

from ._errors import ConfigError
from ._models import Resolution
from ._names import classify, is_valid_hostname, normalize
from ._warnings import UNKNOWN_VARIABLE_NOTICE, UNPINNED_NOTICE, UnknownVariableWarning

__all__ = [
    "KNOWN_VARIABLES",
    "SETTINGS",
    "Config",
    "Fallback",
    "Reading",
    "ResolvConf",
    "Setting",
    "UnknownVariable",
    "parse_resolv_conf",
    "unknown_variables",
    "unpinned_notice",
]

log = logging.getLogger("kubealias")

RESOLV_CONF = "/etc/resolv.conf"
NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
HOSTS_FILE = "/etc/hosts"

# glibc's limits (resolv/resolv.h): MAXNS, RES_MAXNDOTS, RES_MAXRETRANS, RES_MAXRETRY.
_MAXNS = 3
_MAX_NDOTS = 15
_MAX_RESOLV_TIMEOUT = 30
_MAX_ATTEMPTS = 5

_NAMESPACE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
_GLOB = re.compile(r"[a-z0-9.*?\[\]!-]+\Z")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class ResolvConf:
    """What glibc takes from ``/etc/resolv.conf`` (and ``LOCALDOMAIN``/``RES_OPTIONS``)."""

    nameservers: tuple[tuple[str, int], ...] = ()
    search: tuple[str, ...] = ()
    ndots: int | None = None
    timeout: int | None = None
    attempts: int | None = None
    found: bool = False


def parse_resolv_conf(
    source: str | os.PathLike[str] | IO[str], environ: Mapping[str, str] | None = None
) -> ResolvConf:
    """Parse resolv.conf as glibc's ``res_init`` does.

    ``nameserver`` lines accumulate (at most 3), the last ``search`` or ``domain`` line wins,
    ``options`` accumulate; unknown or malformed options are ignored, as glibc ignores them.
    ``LOCALDOMAIN`` replaces the search list and ``RES_OPTIONS`` adds options, as in glibc.
    A missing file gives an empty result (glibc then uses 127.0.0.1).

    Args:
        source: a path or an open text file.
        environ: the environment for ``LOCALDOMAIN`` and ``RES_OPTIONS`` (default: none).

    Returns:
        The parsed :class:`ResolvConf`.
    """
    if hasattr(source, "read"):
        text = source.read()
        found = True
    else:
        try:
            with open(source, encoding="utf-8", errors="replace") as f:
                text = f.read()
            found = True
        except OSError:
            text, found = "", False
    nameservers: list[tuple[str, int]] = []
    search: list[str] = []
    options: list[str] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        keyword, *args = line.split()
        if keyword == "nameserver" and args and len(nameservers) < _MAXNS:
            try:
                ip = ipaddress.ip_address(args[0].split("%", 1)[0])
            except ValueError:
                continue
            nameservers.append((str(ip), 53))
        elif keyword == "domain" and args:
            search = [args[0]]
        elif keyword == "search" and args:  # glibc ignores a search line with no domain
            search = list(args)
        elif keyword == "options":
            options.extend(args)
    environ = environ or {}
    if "LOCALDOMAIN" in environ:  # even empty: glibc then searches nothing
        search = environ["LOCALDOMAIN"].split()
    if environ.get("RES_OPTIONS"):
        options.extend(environ["RES_OPTIONS"].split())
    ndots = timeout = attempts = None
    for option in options:
        key, _, value = option.partition(":")
        if key not in ("ndots", "timeout", "attempts") or not value.isdigit():
            continue
        number = int(value)
        if key == "ndots":
            ndots = min(number, _MAX_NDOTS)
        elif key == "timeout":
            timeout = min(number, _MAX_RESOLV_TIMEOUT)
        else:
            attempts = min(number, _MAX_ATTEMPTS)
    return ResolvConf(
        nameservers=tuple(nameservers),
        search=tuple(normalize(d) for d in search if d not in (".",) and normalize(d)),
        ndots=ndots,
        timeout=timeout,
        attempts=attempts,
        found=found,
    )


# --- parsers: (variable or keyword, value) -> typed value, or a ConfigError naming both --


def _nameservers(var: str, value: Any) -> tuple[tuple[str, int], ...]:
    """Name servers: ``ip[:port]`` items (space or comma), or (ip, port) tuples."""
    items = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    if not items:
        raise ConfigError(var, value, "no name server given")
    out = []
    for item in items:
        if isinstance(item, tuple):
            host, port = str(item[0]), item[1]
        else:
            host, port = _split_host_port(var, value, str(item))
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise ConfigError(var, value, f"{host!r} is not an IP address") from None
        if not isinstance(port, int) or not 0 < port < 65536:
            raise ConfigError(var, value, f"port {port!r} is out of range 1..65535")
        out.append((str(ip), port))
    return tuple(out)


def _split_host_port(var: str, whole: Any, item: str) -> tuple[str, int]:
    if item.startswith("["):
        host, sep, rest = item[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ConfigError(var, whole, f"{item!r} is not ip[:port]")
        port_text = rest[1:] if rest else "53"
    elif item.count(":") == 1:
        host, port_text = item.split(":")
    else:  # IPv4 without port, or bare IPv6
        host, port_text = item, "53"
    if not port_text.isdigit():
        raise ConfigError(var, whole, f"port {port_text!r} is not a number")
    return host, int(port_text)


def _domains(var: str, value: Any) -> tuple[str, ...]:
    """A list of domain names (space or comma), normalised."""
    items = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    out = []
    for item in items:
        if not isinstance(item, str) or not is_valid_hostname(item):
            raise ConfigError(var, value, f"{item!r} is not a valid domain name")
        out.append(normalize(item))
    return tuple(out)


def _domain(var: str, value: Any) -> str:
    """One domain name, normalised."""
    if not isinstance(value, str) or not is_valid_hostname(value):
        raise ConfigError(var, value, "not a valid domain name")
    return normalize(value)


def _namespace(var: str, value: Any) -> str:
    """A Kubernetes namespace (an RFC 1123 label)."""
    if not isinstance(value, str) or not _NAMESPACE.match(value):
        raise ConfigError(var, value, "not a valid Kubernetes namespace (RFC 1123 label)")
    return value


def _int(var: str, value: Any, low: int, high: int) -> int:
    """A whole number in ``low..high``."""
    try:
        number = int(value.strip()) if isinstance(value, str) else value
    except ValueError:
        raise ConfigError(var, value, "not a whole number") from None
    if isinstance(number, bool) or not isinstance(number, int):
        raise ConfigError(var, value, "not a whole number")
    if not low <= number <= high:
        raise ConfigError(var, value, f"out of range {low}..{high}")
    return number


def _seconds(var: str, value: Any, *, positive: bool) -> float:
    """A finite number of seconds, >= 0 (> 0 when ``positive``)."""
    try:
        number = float(value.strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise ConfigError(var, value, "not a number of seconds") from None
    if isinstance(value, bool) or not math.isfinite(number) or number < 0:
        raise ConfigError(var, value, "must be a finite number of seconds >= 0")
    if positive and number == 0:
        raise ConfigError(var, value, "must be greater than 0")
    return number


def _flag(var: str, value: Any) -> bool:
    """A switch: 1/0, true/false, yes/no, on/off (empty is off)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(var, value, "expected 1/0, true/false, yes/no or on/off")


def _patterns(var: str, value: Any) -> tuple[str, ...]:
    """Host name glob patterns (space or comma): at least one.

    An allowlist that is given but names no pattern (``","``, ``[]``) is an error, never "no
    allowlist": that would allow every target, the opposite of what was asked (fail closed).
    """
    items = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    if not items:
        raise ConfigError(
            var, value, "names no pattern: give at least one glob pattern, or leave it unset"
        )
    out = []
    for item in items:
        if not isinstance(item, str) or not _GLOB.match(normalize(item)) or item.strip(".") == "":
            raise ConfigError(var, value, f"{item!r} is not a host name glob pattern")
        out.append(normalize(item))
    return tuple(out)


def _aliases(var: str, value: Any) -> tuple[tuple[str, str], ...]:
    """``name=target`` pairs (space or comma), or a mapping; targets normalised."""
    if isinstance(value, Mapping):
        pairs = list(value.items())
    else:
        pairs = []
        for item in str(value).replace(",", " ").split():
            key, sep, target = item.partition("=")
            if not sep:
                raise ConfigError(var, value, f"{item!r} is not name=target")
            pairs.append((key, target))
    out = []
    for key, target in pairs:
        if not isinstance(key, str) or not isinstance(target, str):
            raise ConfigError(var, value, "names and targets must be strings")
        if not is_valid_hostname(target):
            raise ConfigError(var, value, f"target {target!r} is not a valid host name")
        out.append((key, normalize(target)))
    return tuple(out)


# --- showing values (``kubealias env``) ----------------------------------------------------


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return " ".join(value)
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:g}"
    return "" if value is None else str(value)


def _show_nameservers(value: tuple[tuple[str, int], ...]) -> str:
    return ", ".join(f"{h}:{p}" if ":" not in h else f"[{h}]:{p}" for h, p in value)


def _show_aliases(value: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in value.items())


# --- fallbacks: where a value comes from when no keyword or variable gives it --------------


@dataclass
class Reading:
    """What a fallback may consult: resolv.conf, the namespace file and the settings read so far."""

    resolv: ResolvConf
    conf_label: str
    namespace_file: str | os.PathLike[str] | None
    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Fallback:
    """The value of a setting that nobody gave, and its source, derived from a ``Reading``."""

    #: How the value is found, for the README (Markdown).
    doc: str
    derive: Callable[[Reading], tuple[Any, str]]


def _default_source(note: str) -> str:
    return f"default ({note})" if note else "default"


def _default(value: Any, doc: str | None = None, note: str = "") -> Fallback:
    """A fixed default value."""
    return Fallback(
        doc if doc is not None else _show(value), lambda _: (value, _default_source(note))
    )


def _from_resolv_conf(
    attr: str,
    default: Any,
    doc: str,
    *,
    note: str = "",
    zero_is_unset: bool = False,
    convert: Callable[[Any], Any] = lambda value: value,
) -> Fallback:
    """What resolv.conf (with ``LOCALDOMAIN``/``RES_OPTIONS``) says, else ``default``."""

    def derive(reading: Reading) -> tuple[Any, str]:
        value = getattr(reading.resolv, attr)
        if value is None or value == () or (zero_is_unset and value == 0):
            return default, _default_source(note)
        return convert(value), reading.conf_label

    return Fallback(doc, derive)


def _cluster_domain_from_search(reading: Reading) -> tuple[Any, str]:
    # The kubelet writes "<ns>.svc.<domain> svc.<domain> <domain>": the svc. entry names it.
    for domain in reading.values["search"]:
        if domain.startswith("svc."):
            return domain[len("svc.") :], f"search list ({reading.sources['search']})"
    return "cluster.local", "default"


def _namespace_of_pod(reading: Reading) -> tuple[Any, str]:
    from_file = _read_namespace(reading.namespace_file)
    if from_file:
        return from_file, f"service-account file {reading.namespace_file}"
    suffix = ".svc." + reading.values["cluster_domain"]
    for domain in reading.values["search"]:
        if domain.endswith(suffix) and "." not in domain[: -len(suffix)]:
            return domain[: -len(suffix)], f"search list ({reading.sources['search']})"
    return None, "unknown (no service account, no search entry)"


# --- the table ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One setting: the :class:`Config` field, its variable, its parser, its fallback, its doc.

    Precedence: the keyword argument named ``field``, then the environment variable (empty
    counts as unset), then the fallback.
    """

    #: The :class:`Config` attribute, which is also the keyword argument.
    field: str
    #: The ``KUBEALIAS_*`` variable, or None when only a keyword or resolv.conf sets it.
    variable: str | None
    #: (name of the variable or keyword, value) -> typed value; raises ConfigError.
    parse: Callable[[str, Any], Any]
    fallback: Fallback
    #: What it means, one line (Markdown), for the README.
    doc: str
    #: Typed value -> text, for ``kubealias env``.
    show: Callable[[Any], str] = _show
    #: (name, given value, parsed value, settings read so far) -> the field's value: for a
    #: setting whose meaning depends on the settings before it in the table.
    finish: Callable[[str, Any, Any, Mapping[str, Any]], Any] | None = None

    def read(
        self, keywords: Mapping[str, Any], environ: Mapping[str, str], reading: Reading
    ) -> tuple[Any, str]:
        """The typed value of this setting and where it came from.

        Args:
            keywords: the keyword arguments given (None already dropped).
            environ: the environment.
            reading: resolv.conf, the namespace file and the settings read so far.

        Returns:
            (value, source).

        Raises:
            ConfigError: the given value is malformed.
        """
        if self.field in keywords:
            name, value, source = self.field, keywords[self.field], "keyword argument"
        elif self.variable is not None and environ.get(self.variable, "").strip():
            name, value = self.variable, environ[self.variable]
            source = f"environment {self.variable}"
        else:
            return self.fallback.derive(reading)
        typed = self.parse(name, value)
        if self.finish is not None:
            typed = self.finish(name, value, typed, reading.values)
        return typed, source


_FROM_OPTIONS = "`options {}:` in `/etc/resolv.conf` (`RES_OPTIONS` honoured), else {}"

#: Every setting, in the order they are read and shown: a fallback may use the ones above it.
SETTINGS: tuple[Setting, ...] = (
    Setting(
        "nameservers",
        "KUBEALIAS_NAMESERVERS",
        _nameservers,
        _from_resolv_conf(
            "nameservers",
            (("127.0.0.1", 53),),
            "from `/etc/resolv.conf`, else `127.0.0.1`",
            note="no nameserver in resolv.conf",
        ),
        "`ip[:port]`, space- or comma-separated",
        show=_show_nameservers,
    ),
    Setting(
        "search",
        "KUBEALIAS_SEARCH",
        _domains,
        _from_resolv_conf("search", (), "from `/etc/resolv.conf` (`LOCALDOMAIN` honoured)"),
        "search domains, space- or comma-separated",
    ),
    Setting(
        "ndots",
        "KUBEALIAS_NDOTS",
        partial(_int, low=0, high=_MAX_NDOTS),
        _from_resolv_conf("ndots", 1, _FROM_OPTIONS.format("ndots", 1)),
        f"ndots: names with fewer dots try the search list first (0..{_MAX_NDOTS})",
    ),
    Setting(
        "cluster_domain",
        "KUBEALIAS_CLUSTER_DOMAIN",
        _domain,
        Fallback(
            "the `svc.<domain>` search entry, else `cluster.local`", _cluster_domain_from_search
        ),
        "cluster DNS domain",
    ),
    Setting(
        "namespace",
        "KUBEALIAS_NAMESPACE",
        _namespace,
        Fallback(
            "service-account file, else the `<ns>.svc.<domain>` search entry", _namespace_of_pod
        ),
        "the pod's namespace",
    ),
    Setting(
        "timeout",
        "KUBEALIAS_TIMEOUT",
        partial(_seconds, positive=True),
        _default(2.0),
        "seconds for one whole resolution",
    ),
    Setting(
        "aliases",
        "KUBEALIAS_ALIASES",
        _aliases,
        # A fresh dict each time: a shared default would be shared by every Config.
        Fallback("none", lambda _: ({}, "default (none)")),
        "static `service=target` pairs, comma-separated"
        " (TLS name override; addresses still from DNS)",
        show=_show_aliases,
        finish=lambda name, value, pairs, read: _alias_table(
            name, value, pairs, read["cluster_domain"], read["namespace"]
        ),
    ),
    Setting(
        "allowed_targets",
        "KUBEALIAS_ALLOWED_TARGETS",
        _patterns,
        _default((), "none (no restriction)", note="no restriction"),
        "glob patterns a TLS name must match",
    ),
    Setting(
        "strict",
        "KUBEALIAS_STRICT",
        _flag,
        _default(False, "off"),
        "`1`: no rewrite without an allowlist",
    ),
    Setting(
        "max_stale",
        "KUBEALIAS_MAX_STALE",
        partial(_seconds, positive=False),
        _default(300.0),
        "seconds a stale answer may be served on DNS failure",
    ),
    Setting(
        "min_ttl",
        "KUBEALIAS_MIN_TTL",
        partial(_seconds, positive=False),
        _default(0.0),
        "shortest cache lifetime, seconds (TTL clamp)",
    ),
    Setting(
        "max_ttl",
        "KUBEALIAS_MAX_TTL",
        partial(_seconds, positive=False),
        _default(300.0),
        "longest cache lifetime, seconds (TTL clamp)",
    ),
    Setting(
        "disable",
        "KUBEALIAS_DISABLE",
        _flag,
        _default(False, "off"),
        "`1`: pass everything through",
    ),
    # resolv.conf's own retry knobs: kubealias follows them and has no variable of its own.
    Setting(
        "attempts",
        None,
        partial(_int, low=1, high=_MAX_ATTEMPTS),
        # "attempts:0" would never send a query: keep the default then, as before.
        _from_resolv_conf("attempts", 2, _FROM_OPTIONS.format("attempts", 2), zero_is_unset=True),
        f"rounds over the name servers (1..{_MAX_ATTEMPTS})",
    ),
    Setting(
        "resolv_timeout",
        None,
        partial(_seconds, positive=True),
        _from_resolv_conf(
            "timeout", 5.0, _FROM_OPTIONS.format("timeout", 5), zero_is_unset=True, convert=float
        ),
        "most seconds one query waits for its reply (within the whole `timeout`)",
    ),
)

#: Every ``KUBEALIAS_*`` variable kubealias reads (for the unknown-variable check).
KNOWN_VARIABLES: frozenset[str] = frozenset(s.variable for s in SETTINGS if s.variable)

_PREFIX = "KUBEALIAS_"


@dataclass(frozen=True)
class UnknownVariable:
    """A ``KUBEALIAS_*`` variable that kubealias does not read: most likely a typo."""

    #: The variable as set.
    name: str
    #: The known variable closest to it, or None when none is close.
    closest: str | None

    @property
    def hint(self) -> str:
        """``did you mean KUBEALIAS_STRICT?``, or where the known names are listed."""
        if self.closest:
            return f"did you mean {self.closest}?"
        return "`kubealias env` lists the known ones"

    def __str__(self) -> str:
        return UNKNOWN_VARIABLE_NOTICE % (self.name, self.hint)


def unknown_variables(environ: Mapping[str, str]) -> list[UnknownVariable]:
    """The ``KUBEALIAS_*`` variables of ``environ`` that kubealias does not know, sorted.

    A misspelt variable is otherwise silently ignored, security ones included
    (``KUBEALIAS_ALLOWED_TARGET``, ``KUBEALIAS_STIRCT``). The prefix is matched in any case
    (``kubealias_strict`` is a typo too); set but empty counts, since an empty value may be the
    one that was meant. The closest known name is found by :mod:`difflib` on the part after
    the prefix, which every name shares.

    Args:
        environ: the environment.

    Returns:
        One :class:`UnknownVariable` per unknown name.
    """
    suffixes = {v[len(_PREFIX) :]: v for v in KNOWN_VARIABLES}
    out = []
    for name in sorted(environ):
        if not name.upper().startswith(_PREFIX) or name in KNOWN_VARIABLES:
            continue
        close = difflib.get_close_matches(name[len(_PREFIX) :].upper(), suffixes, n=1)
        out.append(UnknownVariable(name, suffixes[close[0]] if close else None))
    return out


def _check_variables(environ: Mapping[str, str], strict: bool) -> None:
    """Warn about each unknown ``KUBEALIAS_*`` variable; under strict mode, refuse the first.

    Raises:
        ConfigError: ``strict`` and an unknown variable is set.
    """
    for unknown in unknown_variables(environ):
        if strict:
            raise ConfigError(
                unknown.name,
                environ[unknown.name],
                f"not a kubealias variable ({unknown.hint}); KUBEALIAS_STRICT refuses "
                "unknown KUBEALIAS_* variables",
            )
        log.warning(UNKNOWN_VARIABLE_NOTICE, unknown.name, unknown.hint)
        # stacklevel 1: the warning is about the environment, not about the caller's line.
        warnings.warn(str(unknown), UnknownVariableWarning, stacklevel=1)


@dataclass(frozen=True)
class Config:
    """The effective configuration of a :class:`~kubealias.Resolver`.

    Build it with :meth:`from_env`; ``Config()`` alone is not meant to be called. ``sources``
    says, for every field, where its value came from. Every field but ``sources`` has its row
    in :data:`SETTINGS`.
    """

    nameservers: tuple[tuple[str, int], ...]
    search: tuple[str, ...]
    ndots: int
    cluster_domain: str
    namespace: str | None
    timeout: float
    aliases: Mapping[str, str]
    allowed_targets: tuple[str, ...]
    strict: bool
    max_stale: float
    min_ttl: float
    max_ttl: float
    disable: bool
    attempts: int
    resolv_timeout: float
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        resolv_conf: str | os.PathLike[str] | IO[str] = RESOLV_CONF,
        namespace_file: str | os.PathLike[str] | None = NAMESPACE_FILE,
        **overrides: Any,
    ) -> Config:
        """Read the configuration the way the pod's resolver and the environment give it.

        Precedence for each value: keyword argument, then ``KUBEALIAS_*`` variable, then
        resolv.conf (or the service-account namespace file), then the default; each row of
        :data:`SETTINGS` says which.

        Args:
            environ: the environment (default ``os.environ``).
            resolv_conf: path or text file of resolv.conf.
            namespace_file: the service-account namespace file, or None to skip it.
            **overrides: any field of :data:`SETTINGS` by name (``nameservers``, ``search``,
                ``ndots``, ``cluster_domain``, ``namespace``, ``timeout``, ``aliases``,
                ``allowed_targets``, ``strict``, ``max_stale``, ``min_ttl``, ``max_ttl``,
                ``disable``, ``attempts``, ``resolv_timeout``), as a typed value or as the
                string the variable would hold; None counts as not given.

        Returns:
            The effective :class:`Config`.

        Raises:
            ConfigError: a value is malformed; the message names the variable and the value.
                Also an unknown ``KUBEALIAS_*`` variable under strict mode.
            TypeError: an unknown keyword.

        Warns:
            UnknownVariableWarning: a ``KUBEALIAS_*`` variable that kubealias does not read
                (also logged), naming the closest known one.
        """
        unknown = set(overrides) - {s.field for s in SETTINGS}
        if unknown:
            raise TypeError(f"unknown configuration keyword(s): {', '.join(sorted(unknown))}")
        environ = os.environ if environ is None else environ
        keywords = {k: v for k, v in overrides.items() if v is not None}
        reading = Reading(
            resolv=parse_resolv_conf(resolv_conf, environ),
            conf_label=str(resolv_conf) if not hasattr(resolv_conf, "read") else "resolv.conf",
            namespace_file=namespace_file,
        )
        for setting in SETTINGS:
            value, source = setting.read(keywords, environ, reading)
            reading.values[setting.field] = value
            reading.sources[setting.field] = source
        min_ttl, max_ttl = reading.values["min_ttl"], reading.values["max_ttl"]
        if min_ttl > max_ttl:
            raise ConfigError(
                "KUBEALIAS_MIN_TTL", min_ttl, f"greater than KUBEALIAS_MAX_TTL={max_ttl:g}"
            )
        _check_variables(environ, reading.values["strict"])
        return cls(**reading.values, sources=reading.sources)

    def allows(self, tls_name: str) -> bool:
        """True when ``tls_name`` matches one of ``allowed_targets`` (case-insensitive)."""
        return any(fnmatch.fnmatchcase(tls_name, pattern) for pattern in self.allowed_targets)

    @property
    def pinned(self) -> bool:
        """True when an allowlist pins the TLS names that aliases may get."""
        return bool(self.allowed_targets)

    def describe(self) -> list[tuple[str, str, str]]:
        """Rows of (variable or keyword, value, where it came from), for ``kubealias env``."""
        return [
            (s.variable or s.field, s.show(getattr(self, s.field)), self.sources.get(s.field, ""))
            for s in SETTINGS
        ]


def unpinned_notice(config: Config, result: Resolution | None = None) -> str | None:
    """The "no allowlist" notice that ``kubealias env`` and ``kubealias resolve`` show.

    Args:
        config: the effective configuration.
        result: a resolution just made; None for the configuration alone.

    Returns:
        For the configuration: what happens to aliases while no allowlist is set. For a
        result: the notice of :class:`~kubealias.UnpinnedTargetWarning` when it is an alias
        rewritten without an allowlist. None when the targets are pinned, or the result is not
        an alias.
    """
    if config.pinned:
        return None
    if result is not None:
        return UNPINNED_NOTICE % (result.tls_name, result.name) if result.is_alias else None
    if config.strict:
        return "no KUBEALIAS_ALLOWED_TARGETS and KUBEALIAS_STRICT is set: every alias is refused"
    return (
        "no KUBEALIAS_ALLOWED_TARGETS: aliases get whatever TLS name DNS gives (warned once per "
        "process as UnpinnedTargetWarning); set it to the external names you expect"
    )


def _read_namespace(path: str | os.PathLike[str] | None) -> str | None:
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read().strip()
    except OSError:
        return None
    return text if _NAMESPACE.match(text) else None


def _alias_table(
    var: str,
    value: Any,
    pairs: Iterable[tuple[str, str]],
    domain: str,
    namespace: str | None,
) -> dict[str, str]:
    """Key every override by the FQDN of the Service it names."""
    table = {}
    for key, target in pairs:
        verdict = classify(key, domain)
        if not verdict.cluster:
            raise ConfigError(var, value, f"{key!r} is not a Service name ({verdict.reason})")
        ns = verdict.namespace or namespace
        if ns is None:
            raise ConfigError(
                var, value, f"{key!r} has no namespace and the pod's namespace is unknown"
            )
        table[f"{verdict.service}.{ns}.svc.{domain}"] = target
    return table

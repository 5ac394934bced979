"""Configuration: the ``KUBEALIAS_*`` variables, ``/etc/resolv.conf`` and the service account.

Reading is apart from querying: :meth:`Config.from_env` takes the environment as a mapping and
resolv.conf as a path or a file object, so every rule is tested without touching the machine.
Every value remembers where it came from, for ``kubealias env``.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from ._errors import ConfigError
from ._names import classify, is_valid_hostname, normalize

__all__ = ["Config", "ResolvConf", "parse_resolv_conf"]

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


# --- parsing of single values -------------------------------------------------------------


def _nameservers(var: str, value: Any) -> tuple[tuple[str, int], ...]:
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
    items = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    out = []
    for item in items:
        if not isinstance(item, str) or not is_valid_hostname(item):
            raise ConfigError(var, value, f"{item!r} is not a valid domain name")
        out.append(normalize(item))
    return tuple(out)


def _domain(var: str, value: Any) -> str:
    if not isinstance(value, str) or not is_valid_hostname(value):
        raise ConfigError(var, value, "not a valid domain name")
    return normalize(value)


def _namespace(var: str, value: Any) -> str:
    if not isinstance(value, str) or not _NAMESPACE.match(value):
        raise ConfigError(var, value, "not a valid Kubernetes namespace (RFC 1123 label)")
    return value


def _int(var: str, value: Any, low: int, high: int) -> int:
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
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(var, value, "expected 1/0, true/false, yes/no or on/off")


def _patterns(var: str, value: Any) -> tuple[str, ...]:
    items = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    out = []
    for item in items:
        if not isinstance(item, str) or not _GLOB.match(item.lower()) or item.strip(".") == "":
            raise ConfigError(var, value, f"{item!r} is not a host name glob pattern")
        out.append(normalize(item))
    return tuple(out)


def _aliases(var: str, value: Any) -> tuple[tuple[str, str], ...]:
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


# --- the configuration --------------------------------------------------------------------

_ENV = {
    "nameservers": "KUBEALIAS_NAMESERVERS",
    "search": "KUBEALIAS_SEARCH",
    "ndots": "KUBEALIAS_NDOTS",
    "cluster_domain": "KUBEALIAS_CLUSTER_DOMAIN",
    "namespace": "KUBEALIAS_NAMESPACE",
    "timeout": "KUBEALIAS_TIMEOUT",
    "aliases": "KUBEALIAS_ALIASES",
    "allowed_targets": "KUBEALIAS_ALLOWED_TARGETS",
    "strict": "KUBEALIAS_STRICT",
    "max_stale": "KUBEALIAS_MAX_STALE",
    "min_ttl": "KUBEALIAS_MIN_TTL",
    "max_ttl": "KUBEALIAS_MAX_TTL",
    "disable": "KUBEALIAS_DISABLE",
}
# Values that resolv.conf supplies but that have no KUBEALIAS_* variable of their own.
_KEYWORD_ONLY = ("attempts", "resolv_timeout")


@dataclass(frozen=True)
class Config:
    """The effective configuration of a :class:`~kubealias.Resolver`.

    Build it with :meth:`from_env`; ``Config()`` alone is not meant to be called. ``sources``
    says, for every field, where its value came from.
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
        resolv.conf (or the service-account namespace file), then the default.

        Args:
            environ: the environment (default ``os.environ``).
            resolv_conf: path or text file of resolv.conf.
            namespace_file: the service-account namespace file, or None to skip it.
            **overrides: any field by name (``nameservers``, ``search``, ``ndots``,
                ``cluster_domain``, ``namespace``, ``timeout``, ``aliases``,
                ``allowed_targets``, ``strict``, ``max_stale``, ``min_ttl``, ``max_ttl``,
                ``disable``, ``attempts``, ``resolv_timeout``), as a typed value or as the
                string the variable would hold.

        Returns:
            The effective :class:`Config`.

        Raises:
            ConfigError: a value is malformed; the message names the variable and the value.
            TypeError: an unknown keyword.
        """
        unknown = set(overrides) - set(_ENV) - set(_KEYWORD_ONLY)
        if unknown:
            raise TypeError(f"unknown configuration keyword(s): {', '.join(sorted(unknown))}")
        environ = os.environ if environ is None else environ
        overrides = {k: v for k, v in overrides.items() if v is not None}
        conf_label = str(resolv_conf) if not hasattr(resolv_conf, "read") else "resolv.conf"
        resolv = parse_resolv_conf(resolv_conf, environ)
        sources: dict[str, str] = {}

        def raw(key: str) -> tuple[Any, str] | None:
            if key in overrides:
                return overrides[key], "keyword argument"
            var = _ENV.get(key)
            if var is not None and environ.get(var, "").strip():
                return environ[var], f"environment {var}"
            return None

        def pick(key: str, parse: Any, fallback: tuple[Any, str]) -> Any:
            given = raw(key)
            if given is None:
                value, sources[key] = fallback
                return value
            value, sources[key] = given
            label = _ENV.get(key, key) if not sources[key].startswith("keyword") else key
            return parse(label, value)

        nameservers = pick(
            "nameservers",
            _nameservers,
            (resolv.nameservers, conf_label)
            if resolv.nameservers
            else ((("127.0.0.1", 53),), "default (no nameserver in resolv.conf)"),
        )
        search = pick(
            "search", _domains, (resolv.search, conf_label) if resolv.search else ((), "default")
        )
        ndots = pick(
            "ndots",
            lambda v, x: _int(v, x, 0, _MAX_NDOTS),
            (resolv.ndots, conf_label) if resolv.ndots is not None else (1, "default"),
        )
        domain_from_search = next(
            (d[len("svc.") :] for d in search if d.startswith("svc.") and d.count(".") >= 1), None
        )
        cluster_domain = pick(
            "cluster_domain",
            _domain,
            (domain_from_search, f"search list ({sources['search']})")
            if domain_from_search
            else ("cluster.local", "default"),
        )
        ns_fallback: tuple[Any, str] = (None, "unknown (no service account, no search entry)")
        ns_from_file = _read_namespace(namespace_file)
        suffix = ".svc." + cluster_domain
        ns_from_search = next(
            (
                d[: -len(suffix)]
                for d in search
                if d.endswith(suffix) and "." not in d[: -len(suffix)]
            ),
            None,
        )
        if ns_from_file:
            ns_fallback = (ns_from_file, f"service-account file {namespace_file}")
        elif ns_from_search:
            ns_fallback = (ns_from_search, f"search list ({sources['search']})")
        namespace = pick("namespace", _namespace, ns_fallback)
        timeout = pick("timeout", lambda v, x: _seconds(v, x, positive=True), (2.0, "default"))
        allowed = pick("allowed_targets", _patterns, ((), "default (no restriction)"))
        strict = pick("strict", _flag, (False, "default"))
        max_stale = pick(
            "max_stale", lambda v, x: _seconds(v, x, positive=False), (300.0, "default")
        )
        min_ttl = pick("min_ttl", lambda v, x: _seconds(v, x, positive=False), (0.0, "default"))
        max_ttl = pick("max_ttl", lambda v, x: _seconds(v, x, positive=False), (300.0, "default"))
        if min_ttl > max_ttl:
            var = _ENV["min_ttl"]
            raise ConfigError(var, min_ttl, f"greater than KUBEALIAS_MAX_TTL={max_ttl:g}")
        disable = pick("disable", _flag, (False, "default"))
        attempts = pick(
            "attempts",
            lambda v, x: _int(v, x, 1, _MAX_ATTEMPTS),
            (resolv.attempts, conf_label) if resolv.attempts else (2, "default"),
        )
        resolv_timeout = pick(
            "resolv_timeout",
            lambda v, x: _seconds(v, x, positive=True),
            (float(resolv.timeout), conf_label) if resolv.timeout else (5.0, "default"),
        )
        aliases = pick(
            "aliases",
            lambda v, x: _alias_table(v, x, _aliases(v, x), cluster_domain, namespace),
            ({}, "default (none)"),
        )
        return cls(
            nameservers=nameservers,
            search=search,
            ndots=ndots,
            cluster_domain=cluster_domain,
            namespace=namespace,
            timeout=timeout,
            aliases=aliases,
            allowed_targets=allowed,
            strict=strict,
            max_stale=max_stale,
            min_ttl=min_ttl,
            max_ttl=max_ttl,
            disable=disable,
            attempts=attempts,
            resolv_timeout=resolv_timeout,
            sources=sources,
        )

    def allows(self, tls_name: str) -> bool:
        """True when ``tls_name`` matches one of ``allowed_targets`` (case-insensitive)."""
        return any(fnmatch.fnmatchcase(tls_name, pattern) for pattern in self.allowed_targets)

    def describe(self) -> list[tuple[str, str, str]]:
        """Rows of (setting, value, where it came from), for ``kubealias env``."""
        rows = []
        for key in (*_ENV, *_KEYWORD_ONLY):
            value = getattr(self, key)
            if key == "nameservers":
                text = ", ".join(f"{h}:{p}" if ":" not in h else f"[{h}]:{p}" for h, p in value)
            elif key == "aliases":
                text = ", ".join(f"{k}={v}" for k, v in value.items())
            elif isinstance(value, tuple):
                text = " ".join(value)
            elif isinstance(value, bool):
                text = "1" if value else "0"
            elif isinstance(value, float):
                text = f"{value:g}"
            else:
                text = "" if value is None else str(value)
            rows.append((_ENV.get(key, key), text, self.sources.get(key, "")))
        return rows


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

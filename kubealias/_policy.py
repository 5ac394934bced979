"""Decide, without I/O, what a lookup means for the caller: the policy on top of the wire.

:func:`plan` says which names to query (or that none is needed); :func:`decide` turns the
:class:`~kubealias._chain.Outcome` of a lookup into a :class:`Decision`: the TLS name (the chain
rule, ``KUBEALIAS_ALIASES`` overrides), the allowlist and strict mode, cache lifetimes, and
serve-stale (RFC 8767). Every function here is pure: it reads the configuration, the previous
cache entry and the time it is given, and returns what to do. The resolver
(``kubealias._resolver``) carries the decision out: it writes the cache, logs and raises. So every
rule is tested with canned outcomes, as :func:`kubealias._chain.lookup` is with canned replies.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from typing import Literal

from ._cache import Entry
from ._chain import Attempt, Outcome, choose_tls_name
from ._config import Config
from ._errors import ChainError, KubeAliasError, PolicyError, ResolutionError
from ._models import Resolution
from ._names import candidates, classify, in_domain, normalize

__all__ = [
    "FAILURE_TTL",
    "STALE_NOTICE",
    "STALE_RECHECK",
    "Decision",
    "chain_failure",
    "decide",
    "gave_up",
    "plan",
    "recheck_due",
    "stale_now",
]

#: After a failed refresh, serve the stale answer for this long before asking the server again
#: (RFC 8767 §4 "failure recheck"; kept short so recovery is seen within one cluster TTL).
STALE_RECHECK = 1.0
#: Seconds a resolution failure is cached, so that a failing name is not asked again on every
#: call (RFC 9520 §3.2: at least 1 second).
FAILURE_TTL = 1.0

Verdict = Literal["answer", "stale", "refused", "failed"]
#: The warning of the first stale answer of an outage (a logging template: its arguments are
#: :attr:`Decision.notice`, so that log filters and error trackers group on the template).
STALE_NOTICE = "DNS failure for %s (%s): serving the previous answer for up to %g s"


@dataclass(frozen=True, slots=True)
class Decision:
    """What the resolver does with the outcome of a lookup.

    Attributes:
        verdict: ``answer``: cache ``value`` until ``expires`` and return it (an alias, a name
            that is not one, or a pass-through); ``stale``: return ``value``, the previous
            answer marked stale, and note the failure on the previous entry; ``refused``
            (a :class:`PolicyError`) and ``failed`` (a :class:`ResolutionError` or
            :class:`ChainError`): cache ``value`` until ``expires`` and raise it.
        value: the :class:`Resolution` or the error.
        expires: clock value until which the cached value is served (unused for ``stale``).
        last: for ``failed``, the answer it replaces, kept with the cached failure.
        notice: the arguments of :data:`STALE_NOTICE` for the first stale answer of an outage
            (the operator is warned once per outage), else empty.
        unpinned: an alias rewritten while no allowlist is set (the resolver warns once).
    """

    verdict: Verdict
    value: Resolution | KubeAliasError
    expires: float = 0.0
    last: Resolution | None = None
    notice: tuple[object, ...] = ()
    unpinned: bool = False


def passed(
    host: str,
    reason: str,
    clock: Callable[[], float],
    *,
    expires: float = float("inf"),
    tried: tuple[Attempt, ...] = (),
) -> Resolution:
    """The Resolution of a name that is not an alias: the name as given is the TLS name."""
    fqdn = normalize(host) if host and not host.startswith("/") else host
    return Resolution(
        name=host,
        fqdn=fqdn,
        chain=(),
        tls_name=host,
        addresses=(),
        is_alias=False,
        reason=reason,
        candidates=_shown(tried),
        expires=expires,
        _clock=clock,
    )


def plan(
    host: str, config: Config, hosts: Collection[str], clock: Callable[[], float]
) -> Resolution | list[str]:
    """A pass-through Resolution (no query needed), or the names to query in order.

    Args:
        host: the name exactly as the application gave it.
        config: the resolver's settings.
        hosts: the names of the hosts file, which glibc answers before DNS.
        clock: stamped into the Resolution (its ``ttl`` reads it).

    Raises:
        TypeError: ``host`` is not a str.
    """
    if not isinstance(host, str):
        raise TypeError(f"host must be a str, not {type(host).__name__}")
    if config.disable:
        return passed(host, "KUBEALIAS_DISABLE is set: every name passes through", clock)
    verdict = classify(host, config.cluster_domain)
    if not verdict.cluster:
        return passed(host, f"passed through: {verdict.reason}", clock)
    if normalize(host) in hosts:
        return passed(host, "passed through: listed in the hosts file, answered before DNS", clock)
    names = candidates(host, config.search, config.ndots)
    # Only names inside the cluster domain can be Services: drop the candidates after the
    # last of them. If none of those answers, the name is not a Service and the client
    # resolves it as it always did.
    last = max((i for i, n in enumerate(names) if in_domain(n, config.cluster_domain)), default=-1)
    if last < 0:
        return passed(
            host,
            f"passed through: no name the resolver would try is in {config.cluster_domain}",
            clock,
        )
    return names[: last + 1]


def decide(
    host: str,
    outcome: Outcome,
    config: Config,
    previous: Entry | None,
    now: float,
    clock: Callable[[], float],
) -> Decision:
    """What the outcome of a lookup of ``host`` means for the caller.

    Args:
        host: the name exactly as the application gave it.
        outcome: what :func:`kubealias._chain.lookup` established.
        config: the resolver's settings.
        previous: the cache entry the lookup was to replace (serve-stale reads it).
        now: the resolver clock's value now.
        clock: stamped into the Resolution (its ``ttl`` reads it).
    """
    if outcome.kind == "failure":
        return _failure(host, outcome, config, previous, now)
    ttl = min(max(outcome.ttl, config.min_ttl), config.max_ttl)
    expires = now + ttl
    domain = config.cluster_domain
    if outcome.kind == "dangling":
        return _dangling(host, outcome, expires)
    if outcome.kind == "notfound":
        reason = f"passed through: no Service answers in {domain} (NXDOMAIN/NODATA)"
        return Decision(
            "answer", passed(host, reason, clock, expires=expires, tried=outcome.tried), expires
        )
    if not in_domain(outcome.fqdn, domain):
        # The resolver reached a name outside the cluster before any Service answered
        # (ndots, or a non-cluster search domain first): not a Service, not our business.
        reason = f"passed through: answered by {outcome.fqdn}, outside {domain}"
        return Decision(
            "answer", passed(host, reason, clock, expires=expires, tried=outcome.tried), expires
        )
    override = config.aliases.get(outcome.fqdn)
    tls_name = override or choose_tls_name(outcome.chain, domain)
    if tls_name is None:
        reason = "not an alias: no CNAME (a ClusterIP or headless Service), name unchanged"
    elif override:
        reason = f"TLS name set by KUBEALIAS_ALIASES ({outcome.fqdn}={override})"
    elif in_domain(tls_name, domain):
        reason = "the chain stays in the cluster domain: the TLS name is its last name"
    else:
        reason = "the TLS name is the first name of the chain outside the cluster domain"
    result = Resolution(
        name=host,
        fqdn=outcome.fqdn,
        chain=outcome.chain,
        tls_name=tls_name or host,
        addresses=outcome.addresses,
        is_alias=tls_name is not None,
        reason=reason,
        candidates=_shown(outcome.tried),
        chain_ttls=outcome.chain_ttls,
        expires=expires,
        _clock=clock,
    )
    if not result.is_alias:
        return Decision("answer", result, expires)
    refused = _refusal(result, config)
    if refused is not None:
        return Decision("refused", refused, expires)
    return Decision("answer", result, expires, unpinned=not config.allowed_targets)


def chain_failure(host: str, error: ChainError, now: float) -> Decision:
    """A broken chain (loop, too many hops, invalid name), with the name asked, cached like
    any failure."""
    return Decision(
        "failed", ChainError(error.reason, name=host, chain=error.chain), now + FAILURE_TTL
    )


def stale_now(entry: Entry | None, config: Config, now: float) -> Resolution | None:
    """The stale answer to serve at once, without waiting on DNS: a refresh of this entry
    already failed (we are in an outage) and the answer is still within max_stale."""
    if entry is None or entry.failed_at is None or not isinstance(entry.value, Resolution):
        return None
    if now > entry.expires + config.max_stale:
        return None
    return _stale(entry.value, "the DNS server failed at the last refresh")


def recheck_due(entry: Entry, now: float) -> bool:
    """RFC 8767 §5: while serving stale, ask the server again at most once per
    :data:`STALE_RECHECK`."""
    return entry.failed_at is None or now - entry.failed_at >= STALE_RECHECK


def gave_up(host: str, config: Config) -> ResolutionError:
    """The error of a caller whose wait on a concurrent lookup of the same name ran out."""
    return ResolutionError(
        f"no answer within KUBEALIAS_TIMEOUT={config.timeout:g} s "
        "(a concurrent lookup of the same name did not finish)",
        name=host,
    )


def _dangling(host: str, outcome: Outcome, expires: float) -> Decision:
    """An alias whose target does not exist, and no other candidate answered: the client
    would fail with "Name or service not known" for ``host``, not a word of the target, so
    say it here. Cached as the negative answer it stands for (the SOA minimum), never served
    stale: NXDOMAIN is an answer."""
    alias, target = outcome.chain[-2], outcome.chain[-1]
    error = ResolutionError(
        f"the alias {alias} points to {target}, which does not exist (NXDOMAIN)",
        name=host,
        chain=outcome.chain,
        tried=[f"{a.name} ({a.result})" for a in outcome.tried],
    )
    return Decision("failed", error, expires)


def _failure(
    host: str, outcome: Outcome, config: Config, previous: Entry | None, now: float
) -> Decision:
    stale = _serve_stale(outcome, config, previous, now)
    if stale is not None:
        return stale
    reason = f"DNS failure: {outcome.detail}"
    last = _last_answer(previous)
    if last is not None and last.chain and now > last.expires + config.max_stale:
        # Past the serve-stale bound: say which answer is no longer served, and why.
        reason += (
            f"; the last answer ({' -> '.join(last.chain)}) expired "
            f"{now - last.expires:.0f} s ago, beyond KUBEALIAS_MAX_STALE="
            f"{config.max_stale:g} s"
        )
    else:
        last = None
    error = ResolutionError(
        reason,
        name=host,
        chain=outcome.chain,
        tried=[f"{a.name} ({a.result})" for a in outcome.tried],
    )
    return Decision("failed", error, now + FAILURE_TTL, last=last)


def _serve_stale(
    outcome: Outcome, config: Config, previous: Entry | None, now: float
) -> Decision | None:
    """RFC 8767: the previous answer, marked stale, while within KUBEALIAS_MAX_STALE.

    Only for a server failure: if the name that answered before now gets NXDOMAIN or NODATA
    (a later search candidate failing does not change that), the answer is gone and is never
    served again.
    """
    if previous is None or not isinstance(previous.value, Resolution):
        return None
    value = previous.value
    if not value.chain or now > previous.expires + config.max_stale:
        return None
    if any(a.name == value.fqdn and a.status in ("nxdomain", "nodata") for a in outcome.tried):
        return None
    notice: tuple[object, ...] = ()
    if previous.failed_at is None:
        notice = (value.name, outcome.detail, previous.expires + config.max_stale - now)
    stale = _stale(value, f"DNS failure ({outcome.detail})", outcome.tried)
    return Decision("stale", stale, notice=notice)


def _stale(value: Resolution, why: str, tried: tuple[Attempt, ...] | None = None) -> Resolution:
    return replace(
        value,
        stale=True,
        reason=f"stale: {why}; serving the previous answer ({value.reason})",
        candidates=value.candidates if tried is None else _shown(tried),
    )


def _refusal(result: Resolution, config: Config) -> PolicyError | None:
    """The allowlist (fail closed) and strict mode, checked last, on the final TLS name."""
    if config.allowed_targets:
        if config.allows(result.tls_name):
            return None
        return PolicyError(
            f"TLS name {result.tls_name} matches none of KUBEALIAS_ALLOWED_TARGETS "
            f"({' '.join(config.allowed_targets)})",
            name=result.name,
            chain=result.chain,
        )
    if config.strict:
        return PolicyError(
            "KUBEALIAS_STRICT is set and KUBEALIAS_ALLOWED_TARGETS is empty: "
            f"refusing to verify {result.tls_name}",
            name=result.name,
            chain=result.chain,
        )
    return None


def _last_answer(entry: Entry | None) -> Resolution | None:
    """The last good answer behind a cache entry: its own value, or what a failure replaced."""
    if entry is None:
        return None
    return entry.value if isinstance(entry.value, Resolution) else entry.last


def _shown(tried: tuple[Attempt, ...]) -> tuple[tuple[str, str], ...]:
    return tuple((a.name, a.result) for a in tried)

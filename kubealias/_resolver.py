"""The resolver: search expansion, chain following, cache, single flight and serve-stale.

The rules live in :mod:`kubealias._names` (which names to query) and :mod:`kubealias._chain`
(what a response means); this module runs them with dnspython's sync or async I/O, and owns
the policy on top: TLS name, overrides, allowlist, cache lifetimes and serve-stale (RFC 8767).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import IO, Any

from ._cache import Cache, CacheStats, Entry
from ._chain import Outcome, choose_tls_name, lookup
from ._config import HOSTS_FILE, NAMESPACE_FILE, RESOLV_CONF, Config
from ._errors import ChainError, KubeAliasError, PolicyError, ResolutionError
from ._models import Resolution
from ._names import candidates, classify, in_domain, normalize
from ._transport import exchange, exchange_async

__all__ = [
    "Resolver",
    "aresolve",
    "get_default_resolver",
    "resolve",
    "set_default_resolver",
]

log = logging.getLogger("kubealias")
# Library etiquette (logging HOWTO): the application decides where records go.
log.addHandler(logging.NullHandler())

#: After a failed refresh, serve the stale answer for this long before asking the server again
#: (RFC 8767 §4 "failure recheck"; kept short so recovery is seen within one cluster TTL).
STALE_RECHECK = 1.0
#: Seconds a resolution failure is cached, so that a failing name is not asked again on every
#: call (RFC 9520 §3.2: at least 1 second).
FAILURE_TTL = 1.0
#: Grace a waiter gives a concurrent lookup past that lookup's own deadline.
_WAIT_GRACE = 0.05

_warned_no_allowlist = False
_warn_lock = threading.Lock()


class _Abandoned(Exception):
    """The lookup a caller was waiting for ended without a result (its leader was cancelled)."""


class _Flight:
    """One lookup in progress, shared by every caller that misses on the same name."""

    __slots__ = ("deadline", "future", "thread")

    def __init__(self, deadline: float, thread: int) -> None:
        self.future: concurrent.futures.Future[Resolution] = concurrent.futures.Future()
        #: time.monotonic() by which the leader gives up: no waiter waits longer than this.
        self.deadline = deadline
        #: The thread running the lookup (0 for a background refresh).
        self.thread = thread


class _Failed(Entry):
    """A cached resolution failure that remembers the last good answer it replaced, so that
    every failure past ``KUBEALIAS_MAX_STALE`` (not only the first) can say which answer was no
    longer served."""

    __slots__ = ("last",)

    def __init__(self, value: KubeAliasError, expires: float, last: Resolution | None) -> None:
        super().__init__(value, expires)
        self.last = last


def _last_answer(entry: Entry | None) -> Resolution | None:
    """The last good answer behind a cache entry: its own value, or what a failure replaced."""
    if entry is None:
        return None
    if isinstance(entry.value, Resolution):
        return entry.value
    return entry.last if isinstance(entry, _Failed) else None


def _read_hosts(path: str | os.PathLike[str] | None) -> frozenset[str]:
    """The names of /etc/hosts: glibc answers them from the file, before DNS (nsswitch)."""
    if path is None:
        return frozenset()
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return frozenset()
    names: set[str] = set()
    for line in lines:
        fields = line.split("#", 1)[0].split()
        names.update(normalize(name) for name in fields[1:])
    return frozenset(names)


class Resolver:
    """Resolves host names through their CNAME chain the way the pod's resolver would.

    ``Resolver()`` reads the environment, ``/etc/resolv.conf`` and the service-account
    namespace exactly as the default resolver does; keywords override single values. One
    instance is safe to share between threads and asyncio tasks, and has one cache for both.

    Args:
        config: a ready :class:`Config`; exclusive with the keyword settings.
        clock: monotonic clock for cache lifetimes (tests inject a fake one).
        cache_size: most names kept in the cache.
        environ: environment to read instead of ``os.environ``.
        resolv_conf: resolv.conf path or file.
        namespace_file: service-account namespace file (None: do not read one).
        hosts_file: the hosts file whose names glibc answers before DNS (None: none).
        **settings: any :class:`Config` field (``nameservers``, ``search``, ``ndots``,
            ``timeout``, ``aliases``, ``allowed_targets``, ...).

    Raises:
        ConfigError: a malformed setting.
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        cache_size: int = 10_000,
        environ: dict[str, str] | None = None,
        resolv_conf: str | os.PathLike[str] | IO[str] = RESOLV_CONF,
        namespace_file: str | os.PathLike[str] | None = NAMESPACE_FILE,
        hosts_file: str | os.PathLike[str] | None = HOSTS_FILE,
        **settings: Any,
    ) -> None:
        if config is not None and settings:
            raise TypeError("pass either config= or keyword settings, not both")
        self.config = config or Config.from_env(
            environ, resolv_conf=resolv_conf, namespace_file=namespace_file, **settings
        )
        self._clock = clock
        self._cache = Cache(cache_size)
        self._hosts = _read_hosts(hosts_file)
        self._lock = threading.Lock()
        self._flights: dict[str, _Flight] = {}
        #: Incremented by :meth:`flush`: adapters that remember routes built from this
        #: resolver's answers (kubealias._http.RoutePlanner) drop them when it changes.
        self.generation = 0

    def __repr__(self) -> str:
        servers = ",".join(f"{h}:{p}" for h, p in self.config.nameservers)
        return f"<kubealias.Resolver nameservers={servers} domain={self.config.cluster_domain}>"

    # --- public API -------------------------------------------------------------------

    def resolve(self, host: str) -> Resolution:
        """Resolve ``host`` (blocking), from the cache when fresh.

        Args:
            host: the host exactly as the application gave it.

        Returns:
            The :class:`Resolution`; for a name that is not an alias, ``tls_name == host``.

        Raises:
            ResolutionError: no usable answer within ``timeout`` and nothing stale to serve.
            ChainError: the chain has a loop, too many hops or an invalid name.
            PolicyError: the TLS name is refused by the allowlist or strict mode.
        """
        entry = self._cache.get(host)
        if entry is not None and entry.expires > self._clock():
            if isinstance(entry.value, Resolution):
                return entry.value
            raise copy.copy(entry.value)
        return self._resolve_slow(host, entry)

    async def aresolve(self, host: str) -> Resolution:
        """Resolve ``host`` without blocking the event loop; same cache and rules as resolve().

        Raises:
            ResolutionError, ChainError, PolicyError: as :meth:`resolve`.
        """
        entry = self._cache.get(host)
        if entry is not None and entry.expires > self._clock():
            if isinstance(entry.value, Resolution):
                return entry.value
            raise copy.copy(entry.value)
        return await self._aresolve_slow(host, entry)

    def flush(self, host: str | None = None) -> None:
        """Forget the cached answer for ``host``, or every answer."""
        if host is None:
            self._cache.flush()
        else:
            self._cache.discard(host)
        # After the cache: an adapter that reads the new generation can only have resolved
        # against the flushed cache (kubealias._http.RoutePlanner).
        with self._lock:
            self.generation += 1

    def cache_stats(self) -> CacheStats:
        """Hits, misses, size and evictions of this resolver's cache."""
        return self._cache.stats()

    # --- deciding what to do without I/O -----------------------------------------------

    def _plan(self, host: str) -> Resolution | list[str]:
        """A pass-through Resolution (no query needed), or the names to query in order."""
        cfg = self.config
        if not isinstance(host, str):
            raise TypeError(f"host must be a str, not {type(host).__name__}")
        if cfg.disable:
            return self._pass(host, "KUBEALIAS_DISABLE is set: every name passes through")
        verdict = classify(host, cfg.cluster_domain)
        if not verdict.cluster:
            return self._pass(host, f"passed through: {verdict.reason}")
        if normalize(host) in self._hosts:
            return self._pass(host, "passed through: listed in the hosts file, answered before DNS")
        names = candidates(host, cfg.search, cfg.ndots)
        # Only names inside the cluster domain can be Services: drop the candidates after the
        # last of them. If none of those answers, the name is not a Service and the client
        # resolves it as it always did.
        last = max((i for i, n in enumerate(names) if in_domain(n, cfg.cluster_domain)), default=-1)
        if last < 0:
            return self._pass(
                host, f"passed through: no name the resolver would try is in {cfg.cluster_domain}"
            )
        return names[: last + 1]

    def _pass(
        self, host: str, reason: str, *, ttl: float | None = None, tried: Any = ()
    ) -> Resolution:
        now = self._clock()
        expires = float("inf") if ttl is None else now + ttl
        fqdn = normalize(host) if host and not host.startswith("/") else host
        result = Resolution(
            name=host,
            fqdn=fqdn,
            chain=(),
            tls_name=host,
            addresses=(),
            is_alias=False,
            reason=reason,
            candidates=tuple(tried),
            expires=expires,
            _clock=self._clock,
        )
        self._cache.put(host, Entry(result, expires))
        return result

    def _finish(self, host: str, outcome: Outcome, entry: Entry | None) -> Resolution:
        """Turn the outcome of a lookup into the Resolution (or error) the caller gets."""
        cfg = self.config
        now = self._clock()
        if outcome.kind == "failure":
            stale = self._serve_stale(entry, now, outcome)
            if stale is not None:
                return stale
            reason = f"DNS failure: {outcome.detail}"
            last = _last_answer(entry)
            if last is not None and last.chain and now > last.expires + cfg.max_stale:
                # Past the serve-stale bound: say which answer is no longer served, and why.
                reason += (
                    f"; the last answer ({' -> '.join(last.chain)}) expired "
                    f"{now - last.expires:.0f} s ago, beyond KUBEALIAS_MAX_STALE="
                    f"{cfg.max_stale:g} s"
                )
            else:
                last = None
            error = ResolutionError(
                reason,
                name=host,
                chain=outcome.chain,
                tried=[f"{n} ({r})" for n, r in outcome.tried],
            )
            self._cache.put(host, _Failed(error, now + FAILURE_TTL, last))
            raise error
        if outcome.kind == "notfound":
            ttl = min(max(outcome.ttl, cfg.min_ttl), cfg.max_ttl)
            return self._pass(
                host,
                f"passed through: no Service answers in {cfg.cluster_domain} (NXDOMAIN/NODATA)",
                ttl=ttl,
                tried=outcome.tried,
            )
        ttl = min(max(outcome.ttl, cfg.min_ttl), cfg.max_ttl)
        if not in_domain(outcome.fqdn, cfg.cluster_domain):
            # The resolver reached a name outside the cluster before any Service answered
            # (ndots, or a non-cluster search domain first): not a Service, not our business.
            return self._pass(
                host,
                f"passed through: answered by {outcome.fqdn}, outside {cfg.cluster_domain}",
                ttl=ttl,
                tried=outcome.tried,
            )
        expires = now + ttl
        override = cfg.aliases.get(outcome.fqdn)
        tls_name = override or choose_tls_name(outcome.chain, cfg.cluster_domain)
        if tls_name is None:
            reason = "not an alias: no CNAME (a ClusterIP or headless Service), name unchanged"
        elif override:
            reason = f"TLS name set by KUBEALIAS_ALIASES ({outcome.fqdn}={override})"
        elif in_domain(tls_name, cfg.cluster_domain):
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
            candidates=outcome.tried,
            chain_ttls=outcome.chain_ttls,
            expires=expires,
            _clock=self._clock,
        )
        if result.is_alias:
            refused = self._policy(result)
            if refused is not None:
                self._cache.put(host, Entry(refused, expires))
                raise copy.copy(refused)
        self._cache.put(host, Entry(result, expires))
        log.debug("resolved %s -> %s via %s", host, result.tls_name, " -> ".join(result.chain))
        return result

    def _policy(self, result: Resolution) -> PolicyError | None:
        cfg = self.config
        if cfg.allowed_targets:
            if cfg.allows(result.tls_name):
                return None
            return PolicyError(
                f"TLS name {result.tls_name} matches none of KUBEALIAS_ALLOWED_TARGETS "
                f"({' '.join(cfg.allowed_targets)})",
                name=result.name,
                chain=result.chain,
            )
        if cfg.strict:
            return PolicyError(
                "KUBEALIAS_STRICT is set and KUBEALIAS_ALLOWED_TARGETS is empty: "
                f"refusing to verify {result.tls_name}",
                name=result.name,
                chain=result.chain,
            )
        global _warned_no_allowlist
        with _warn_lock:
            if not _warned_no_allowlist:
                _warned_no_allowlist = True
                log.warning(
                    "kubealias verifies TLS against names learned from DNS (%s for %s); set "
                    "KUBEALIAS_ALLOWED_TARGETS to the external names you expect to pin them",
                    result.tls_name,
                    result.name,
                )
        return None

    def _serve_stale(self, entry: Entry | None, now: float, outcome: Outcome) -> Resolution | None:
        """RFC 8767: the previous answer, marked stale, while within KUBEALIAS_MAX_STALE.

        Only for a server failure: if the name that answered before now gets NXDOMAIN or
        NODATA (a later search candidate failing does not change that), the answer is gone and
        is never served again.
        """
        if entry is None or not isinstance(entry.value, Resolution) or not entry.value.chain:
            return None
        if now > entry.expires + self.config.max_stale:
            return None
        gone = {n for n, r in outcome.tried if r.startswith(("NXDOMAIN", "NODATA"))}
        if entry.value.fqdn in gone:
            return None
        if entry.failed_at is None:
            log.warning(
                "DNS failure for %s (%s): serving the previous answer for up to %g s",
                entry.value.name,
                outcome.detail,
                entry.expires + self.config.max_stale - now,
            )
        entry.failed_at = now
        return self._stale(entry, f"DNS failure ({outcome.detail})", outcome.tried)

    @staticmethod
    def _stale(entry: Entry, why: str, tried: Any = None) -> Resolution:
        value = entry.value
        assert isinstance(value, Resolution)
        return replace(
            value,
            stale=True,
            reason=f"stale: {why}; serving the previous answer ({value.reason})",
            candidates=value.candidates if tried is None else tuple(tried),
        )

    def _stale_ready(self, entry: Entry | None) -> Resolution | None:
        """The stale answer to serve at once: a refresh of this entry already failed (we are
        in an outage) and the answer is still within max_stale."""
        if entry is None or entry.failed_at is None or not isinstance(entry.value, Resolution):
            return None
        if self._clock() > entry.expires + self.config.max_stale:
            return None
        return self._stale(entry, "the DNS server failed at the last refresh")

    def _refresh_later(self, host: str, names: list[str], entry: Entry) -> None:
        """RFC 8767 §5: while serving stale, refresh in the background, at most once per
        STALE_RECHECK, so no caller waits out the timeout during an outage."""
        if entry.failed_at is not None and self._clock() - entry.failed_at < STALE_RECHECK:
            return
        deadline = time.monotonic() + self.config.timeout
        flight, leader = self._join(host, deadline, background=True)
        if not leader:
            return

        def refresh() -> None:
            outcome: Resolution | BaseException = _Abandoned()
            try:
                outcome = self._lookup_sync(host, names, entry, deadline)
            except BaseException as exc:  # the waiters get it; nobody else is listening
                outcome = exc
            finally:
                self._land(host, flight, outcome)

        threading.Thread(target=refresh, name=f"kubealias-refresh-{host}", daemon=True).start()

    # --- single flight ------------------------------------------------------------------

    def _join(self, host: str, deadline: float, background: bool = False) -> tuple[_Flight, bool]:
        with self._lock:
            flight = self._flights.get(host)
            if flight is not None:
                return flight, False
            thread = 0 if background else threading.get_ident()
            flight = self._flights[host] = _Flight(deadline, thread)
            return flight, True

    def _drop(self, host: str, flight: _Flight) -> None:
        with self._lock:
            if self._flights.get(host) is flight:
                del self._flights[host]

    def _land(self, host: str, flight: _Flight, result: Resolution | BaseException) -> None:
        self._drop(host, flight)
        if flight.future.done():  # pragma: no cover - dropped as stuck, then finished anyway
            return
        if isinstance(result, Resolution):
            flight.future.set_result(result)
        elif isinstance(result, KubeAliasError):
            flight.future.set_exception(result)
        else:
            flight.future.set_exception(_Abandoned())

    def _fresh(self, host: str) -> Resolution | None:
        """The cached answer if it is still fresh (a leader checks again: another leader may
        have just finished); a cached error is raised again."""
        entry = self._cache.get(host)
        if entry is None or entry.expires <= self._clock():
            return None
        if isinstance(entry.value, Resolution):
            return entry.value
        raise copy.copy(entry.value)

    def _without_lookup(self, host: str, entry: Entry | None) -> Resolution | list[str]:
        """What the slow path can answer without waiting on DNS: a pass-through, or a stale
        answer during an outage (refreshed in the background); else the names to query."""
        plan = self._plan(host)
        if isinstance(plan, Resolution):
            return plan
        stale = self._stale_ready(entry)
        if stale is not None and entry is not None:
            self._refresh_later(host, plan, entry)
            return stale
        return plan

    def _gave_up(self, host: str) -> ResolutionError:
        return ResolutionError(
            f"no answer within KUBEALIAS_TIMEOUT={self.config.timeout:g} s "
            "(a concurrent lookup of the same name did not finish)",
            name=host,
        )

    def _resolve_slow(self, host: str, entry: Entry | None) -> Resolution:
        plan = self._without_lookup(host, entry)
        if isinstance(plan, Resolution):
            return plan
        deadline = time.monotonic() + self.config.timeout
        while True:
            flight, leader = self._join(host, deadline)
            if not leader:
                if flight.thread == threading.get_ident():
                    # An async lookup of this name is running on this thread's event loop and
                    # this synchronous call blocks that loop: waiting would deadlock.
                    return self._lookup_sync(host, plan, entry, deadline)
                wait = min(deadline, flight.deadline) + _WAIT_GRACE - time.monotonic()
                try:
                    return flight.future.result(max(wait, 0.0))
                except _Abandoned:
                    continue
                except concurrent.futures.TimeoutError:
                    self._drop(host, flight)  # stuck past its deadline: nobody joins it again
                    if time.monotonic() < deadline:
                        continue
                    raise self._gave_up(host) from None
                except KubeAliasError as exc:
                    raise copy.copy(exc) from None
            outcome: Resolution | BaseException = _Abandoned()
            try:
                outcome = self._fresh(host) or self._lookup_sync(host, plan, entry, deadline)
                return outcome
            except BaseException as exc:
                outcome = exc
                raise
            finally:
                self._land(host, flight, outcome)

    async def _aresolve_slow(self, host: str, entry: Entry | None) -> Resolution:
        plan = self._without_lookup(host, entry)
        if isinstance(plan, Resolution):
            return plan
        deadline = time.monotonic() + self.config.timeout
        while True:
            flight, leader = self._join(host, deadline)
            if not leader:
                wait = min(deadline, flight.deadline) + _WAIT_GRACE - time.monotonic()
                # shield: a waiter that is cancelled or times out must not cancel the shared
                # future the other waiters are on.
                waiter = asyncio.shield(asyncio.wrap_future(flight.future))
                try:
                    return await asyncio.wait_for(waiter, max(wait, 0.0))
                except _Abandoned:
                    continue
                except asyncio.TimeoutError:
                    self._drop(host, flight)
                    if time.monotonic() < deadline:
                        continue
                    raise self._gave_up(host) from None
                except KubeAliasError as exc:
                    raise copy.copy(exc) from None
            outcome: Resolution | BaseException = _Abandoned()
            try:
                outcome = self._fresh(host) or await self._lookup_async(host, plan, entry, deadline)
                return outcome
            except BaseException as exc:
                outcome = exc
                raise
            finally:
                self._land(host, flight, outcome)

    # --- running the lookup with I/O ---------------------------------------------------

    def _lookup_sync(
        self, host: str, names: list[str], entry: Entry | None, deadline: float
    ) -> Resolution:
        steps = lookup(names)
        try:
            batch = next(steps)
            while True:
                batch = steps.send(exchange(batch, lambda: self._tries(deadline), deadline))
        except StopIteration as stop:
            return self._finish(host, stop.value, entry)
        except ChainError as exc:
            raise self._chain_error(host, exc) from None

    async def _lookup_async(
        self, host: str, names: list[str], entry: Entry | None, deadline: float
    ) -> Resolution:
        steps = lookup(names)
        try:
            batch = next(steps)
            while True:
                replies = await exchange_async(batch, lambda: self._tries(deadline), deadline)
                batch = steps.send(replies)
        except StopIteration as stop:
            return self._finish(host, stop.value, entry)
        except ChainError as exc:
            raise self._chain_error(host, exc) from None

    def _chain_error(self, host: str, exc: ChainError) -> ChainError:
        """The chain error with the name asked, cached like any failure (FAILURE_TTL)."""
        error = ChainError(exc.reason, name=host, chain=exc.chain)
        self._cache.put(host, Entry(error, self._clock() + FAILURE_TTL))
        return error

    def _tries(self, deadline: float) -> Iterator[tuple[str, int, float]]:
        """(server, port, timeout) for each try, as glibc's res_send: every server, then again,
        ``attempts`` rounds; each try gets a share of what is left of the deadline."""
        cfg = self.config
        per_try = min(cfg.resolv_timeout, max(0.1, cfg.timeout / cfg.attempts))
        for _ in range(cfg.attempts):
            for host, port in cfg.nameservers:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                yield host, port, min(per_try, left)


# --- the default resolver -----------------------------------------------------------------

_default: Resolver | None = None
_default_lock = threading.Lock()


def get_default_resolver() -> Resolver:
    """The process-wide resolver that :func:`resolve` and the adapters use by default.

    Made on first use from the environment and ``/etc/resolv.conf``.

    Raises:
        ConfigError: a malformed ``KUBEALIAS_*`` variable.
    """
    global _default
    resolver = _default
    if resolver is None:
        with _default_lock:
            if _default is None:
                _default = Resolver()
            resolver = _default
    return resolver


def set_default_resolver(resolver: Resolver | None) -> None:
    """Replace the default resolver (None: make a new one from the environment on next use)."""
    global _default
    with _default_lock:
        _default = resolver


def resolve(host: str) -> Resolution:
    """Resolve ``host`` with the default resolver. See :meth:`Resolver.resolve`."""
    return (_default or get_default_resolver()).resolve(host)


async def aresolve(host: str) -> Resolution:
    """Resolve ``host`` with the default resolver, without blocking the event loop."""
    return await (_default or get_default_resolver()).aresolve(host)

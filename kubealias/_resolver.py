"""The resolver: cache hit, then plan, single flight, lookup on the wire, policy, cache.

It only drives. The rules live elsewhere, each in one place, and are tested without I/O:
:mod:`kubealias._names` (which names to query), :mod:`kubealias._chain` (what a response
means), :mod:`kubealias._policy` (what an outcome means for the caller: TLS name, overrides,
allowlist, lifetimes, serve-stale), :mod:`kubealias._flight` (one lookup per name at a time) and
:mod:`kubealias._transport` (which server gets which try, which datagram is an answer).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import os
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from . import _policy
from ._cache import Cache, CacheStats, Entry
from ._chain import Lookup, Outcome
from ._config import HOSTS_FILE, NAMESPACE_FILE, RESOLV_CONF, Config
from ._errors import ChainError
from ._flight import Flights, TimedOut
from ._models import Resolution
from ._names import normalize
from ._transport import exchange, exchange_async, schedule
from ._warnings import UNPINNED_NOTICE, UnpinnedTargetWarning

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

_warned_no_allowlist = False
_warn_lock = threading.Lock()


def _warn_unpinned(result: Resolution) -> None:
    """Once per process: TLS is verified against names learned from DNS, with no allowlist.

    Logged, and emitted as :class:`~kubealias.UnpinnedTargetWarning`: the library's
    NullHandler hides the log record from an application that configures no logging, while
    Python shows a warning by default and lets it be filtered (as urllib3's
    ``InsecureRequestWarning``). A filter that turns it into an error makes this first
    unpinned resolution raise it, as the filter asks.
    """
    global _warned_no_allowlist
    with _warn_lock:
        if _warned_no_allowlist:
            return
        _warned_no_allowlist = True
    log.warning(UNPINNED_NOTICE, result.tls_name, result.name)
    # stacklevel 1: the notice is about the process's configuration, not about the caller's
    # line (and the caller is often a client library or an event loop).
    warnings.warn(
        UNPINNED_NOTICE % (result.tls_name, result.name), UnpinnedTargetWarning, stacklevel=1
    )


@dataclass(frozen=True, slots=True)
class _Job:
    """One lookup to run: the name as given, the candidates to query, the cache entry it is
    to replace, and the ``time.monotonic()`` deadline of the whole resolution."""

    host: str
    names: list[str]
    entry: Entry | None
    deadline: float


def _quietly(
    run: Callable[[Callable[[], Resolution]], Resolution], work: Callable[[], Resolution]
) -> None:
    """Run a background lookup whose outcome only its flight's waiters read."""
    with contextlib.suppress(BaseException):
        run(work)


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
        self._flights: Flights[Resolution] = Flights()
        #: Incremented by :meth:`flush`: adapters that remember routes built from this
        #: resolver's answers (kubealias._http.RoutePlanner) drop them when it changes.
        self.generation = 0
        _live.add(self)

    def __reduce__(self) -> tuple[Callable[..., Resolver], tuple[Any, ...]]:
        """Pickle (and copy) the configuration, not the state: the copy has the same config,
        clock, cache size and hosts-file names, and its own empty cache, locks and flights,
        as a new resolver has (a ``requests.Session`` whose adapter holds one can be pickled).

        The clock is pickled as it is: one that cannot be (a lambda, a local function) makes
        pickling fail with pickle's own error; ``time.monotonic`` and module-level functions
        can.
        """
        return (_unpickle, (type(self), self.config, self._clock, self._cache.maxsize, self._hosts))

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
        if entry is not None and entry.expires > self._clock():  # the hot path, kept inline
            if isinstance(entry.value, Resolution):
                return entry.value
            raise copy.copy(entry.value)
        job = self._without_lookup(host, entry)
        if isinstance(job, Resolution):
            return job
        while True:
            flight, leader = self._flights.join(host, job.deadline)
            if leader:
                return flight.lead(functools.partial(self._fresh_lookup, job))
            if flight.thread == threading.get_ident():
                # An async lookup of this name is running on this thread's event loop and
                # this synchronous call blocks that loop: waiting would deadlock.
                return self._lookup(job)
            with self._waiting(host):
                answer = flight.wait(job.deadline)
            if answer is not None:
                return answer

    async def aresolve(self, host: str) -> Resolution:
        """Resolve ``host`` without blocking the event loop; same cache and rules as resolve().

        Runs under asyncio or trio; one lookup per name is shared with the threads and the
        tasks of other event loops that miss on it at the same time.

        Raises:
            ResolutionError, ChainError, PolicyError: as :meth:`resolve`.
            RuntimeError: neither asyncio nor trio runs the caller.
        """
        job = self._without_lookup(host, self._cache.get(host), fresh_first=True)
        if isinstance(job, Resolution):
            return job
        answer: Resolution | None = None
        while answer is None:
            flight, leader = self._flights.join(host, job.deadline)
            if leader:
                return await flight.alead(functools.partial(self._afresh_lookup, job))
            with self._waiting(host):
                answer = await flight.wait_async(job.deadline)
        return answer

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

    def _reset_after_fork(self) -> None:
        """In a child process just forked: new locks, no flight, the cache kept (see
        :func:`_after_fork_in_child`)."""
        self._lock = threading.Lock()
        self._flights.reset_after_fork()
        self._cache.reset_after_fork()

    # --- the slow path ------------------------------------------------------------------

    def _without_lookup(
        self, host: str, entry: Entry | None, *, fresh_first: bool = False
    ) -> Resolution | _Job:
        """What can be answered without waiting on DNS: the fresh cached answer (when
        ``fresh_first``: the sync path checks it inline), a pass-through, or a stale answer
        during an outage (refreshed in the background); else the lookup to run."""
        if fresh_first and entry is not None and entry.expires > self._clock():
            if isinstance(entry.value, Resolution):
                return entry.value
            raise copy.copy(entry.value)
        plan = _policy.plan(host, self.config, self._hosts, self._clock)
        if isinstance(plan, Resolution):
            self._cache.put(host, Entry(plan, plan.expires))
            return plan
        job = _Job(host, plan, entry, time.monotonic() + self.config.timeout)
        stale = _policy.stale_now(entry, self.config, self._clock())
        if stale is not None and entry is not None:
            self._refresh_later(job, entry)
            return stale
        return job

    def _fresh(self, job: _Job) -> Resolution | None:
        """The cached answer if it is still fresh (a leader checks again: another leader may
        have just finished); a cached error is raised again."""
        entry = self._cache.get(job.host)
        if entry is None or entry.expires <= self._clock():
            return None
        if isinstance(entry.value, Resolution):
            return entry.value
        raise copy.copy(entry.value)

    def _fresh_lookup(self, job: _Job) -> Resolution:
        return self._fresh(job) or self._lookup(job)

    async def _afresh_lookup(self, job: _Job) -> Resolution:
        return self._fresh(job) or await self._alookup(job)

    @contextlib.contextmanager
    def _waiting(self, host: str) -> Iterator[None]:
        """Waiting on another caller's lookup: past the deadline, say so."""
        try:
            yield
        except TimedOut:
            raise _policy.gave_up(host, self.config) from None

    def _refresh_later(self, job: _Job, entry: Entry) -> None:
        """RFC 8767 §5: while serving stale, refresh in the background, at most once per
        STALE_RECHECK, so no caller waits out the timeout during an outage."""
        if not _policy.recheck_due(entry, self._clock()):
            return
        flight, leader = self._flights.join(job.host, job.deadline, background=True)
        if leader:
            # The waiters get the outcome (or the error); nobody else is listening.
            refresh = functools.partial(_quietly, flight.lead, functools.partial(self._lookup, job))
            thread = threading.Thread(target=refresh, name=f"kubealias-refresh-{job.host}")
            thread.daemon = True
            thread.start()

    # --- the lookup on the wire, and what it means -------------------------------------

    def _lookup(self, job: _Job) -> Resolution:
        tries = functools.partial(schedule, self.config, job.deadline)
        steps = Lookup(job.names)
        while steps.pending:
            steps.feed(exchange(steps.batch, tries, job.deadline))
        return self._settle(job, steps.outcome)

    async def _alookup(self, job: _Job) -> Resolution:
        tries = functools.partial(schedule, self.config, job.deadline)
        steps = Lookup(job.names)
        while steps.pending:
            steps.feed(await exchange_async(steps.batch, tries, job.deadline))
        return self._settle(job, steps.outcome)

    def _settle(self, job: _Job, outcome: Outcome | ChainError | None) -> Resolution:
        """Decide what the lookup means (policy), then carry it out. Called outside any
        exception handler: the error raised carries no internal context."""
        assert outcome is not None  # the lookup has ended
        now = self._clock()
        if isinstance(outcome, ChainError):
            decision = _policy.chain_failure(job.host, outcome, now)
        else:
            decision = _policy.decide(job.host, outcome, self.config, job.entry, now, self._clock)
        return self._carry_out(job.host, decision, job.entry)

    def _carry_out(self, host: str, decision: _policy.Decision, entry: Entry | None) -> Resolution:
        """Write the cache, log and return or raise, as ``decision`` says."""
        value = decision.value
        if decision.verdict == "stale":
            assert isinstance(value, Resolution) and entry is not None
            if decision.notice:
                log.warning(_policy.STALE_NOTICE, *decision.notice)
            entry.failed_at = self._clock()
            return value
        self._cache.put(host, Entry(value, decision.expires, decision.last))
        if not isinstance(value, Resolution):
            raise copy.copy(value) if decision.verdict == "refused" else value
        if decision.unpinned:
            _warn_unpinned(value)
        if value.chain:
            log.debug("resolved %s -> %s via %s", host, value.tls_name, " -> ".join(value.chain))
        return value


def _unpickle(
    cls: type[Resolver],
    config: Config,
    clock: Callable[[], float],
    cache_size: int,
    hosts: frozenset[str],
) -> Resolver:
    """A resolver pickled by :meth:`Resolver.__reduce__`, made by its own ``__init__`` (so it
    has every lock and table a new one has); the hosts-file names as read then, not again."""
    resolver = cls(config, clock=clock, cache_size=cache_size, hosts_file=None)
    resolver._hosts = hosts
    return resolver


# --- the default resolver -----------------------------------------------------------------

_default: Resolver | None = None
_default_lock = threading.Lock()


# --- fork ---------------------------------------------------------------------------------

#: Every Resolver alive, so that a forked child can reset them; weak, so that this does not keep
#: a resolver alive.
_live: weakref.WeakSet[Resolver] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """Reset what a forked child cannot inherit (gunicorn ``--preload``, celery prefork,
    multiprocessing's fork start method).

    Only the forking thread lives on in the child: a lookup another thread was running, or a
    background refresh, never finishes there, and a lock such a thread held is never released.
    So every lock is new, and the flights are dropped (the child's callers lead their own
    lookups rather than wait out the timeout on one nobody runs); a refresh is started again by
    the next caller that needs it. The cache is kept: the child starts warm.
    """
    global _warn_lock, _default_lock
    _warn_lock = threading.Lock()
    _default_lock = threading.Lock()
    for resolver in list(_live):
        resolver._reset_after_fork()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)


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
    """Resolve ``host`` with the default resolver, without blocking the event loop (asyncio or
    trio). See :meth:`Resolver.aresolve`."""
    return await (_default or get_default_resolver()).aresolve(host)

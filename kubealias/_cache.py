"""A bounded LRU cache of resolutions, shared by threads and asyncio tasks.

The lock lives here and nowhere else; the policy (lifetimes, serve-stale) lives in the
resolver. ``get`` is the hot path of every request: one lock, one dict lookup, one move.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from ._errors import KubeAliasError
from ._models import Resolution

__all__ = ["Cache", "CacheStats", "Entry"]


class Entry:
    """One cached outcome: a :class:`Resolution`, or an error to raise again (policy).

    Args:
        value: the answer, or the error every caller gets until ``expires``.
        expires: ``clock()`` value past which the entry is not served fresh.
        last: for a cached failure, the last good answer it replaced, so that every failure
            past ``KUBEALIAS_MAX_STALE`` (not only the first) can say which answer was no
            longer served.
    """

    __slots__ = ("expires", "failed_at", "last", "value")

    def __init__(
        self, value: Resolution | KubeAliasError, expires: float, last: Resolution | None = None
    ) -> None:
        self.value = value
        self.expires = expires
        self.last = last
        #: When the last refresh of this (expired) entry failed; drives serve-stale.
        self.failed_at: float | None = None


@dataclass(frozen=True)
class CacheStats:
    """Counters since the cache was made or flushed."""

    size: int
    maxsize: int
    hits: int
    misses: int
    evictions: int


class Cache:
    """LRU mapping of the name as given to its :class:`Entry`.

    Args:
        maxsize: most names kept; the least recently used one is dropped beyond it.
    """

    def __init__(self, maxsize: int = 10_000) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self._data: OrderedDict[str, Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = self._misses = self._evictions = 0

    def get(self, key: str) -> Entry | None:
        """The entry for ``key`` whatever its age (the caller judges freshness), or None.

        No lock on this path: ``OrderedDict.get`` and ``move_to_end`` are each atomic (they
        are C methods under the GIL, and lock the object on free-threaded builds), and a key
        evicted between the two is simply not moved. Taking the lock here tripled the cost of
        a warm lookup. The hit counter may miss an increment under contention.
        """
        entry = self._data.get(key)
        if entry is None:
            with self._lock:
                self._misses += 1
            return None
        try:  # noqa: SIM105 - contextlib.suppress costs a context manager on the hot path
            self._data.move_to_end(key)
        except KeyError:
            pass
        self._hits += 1
        return entry

    def put(self, key: str, entry: Entry) -> None:
        """Store ``entry`` for ``key``, evicting the least recently used beyond ``maxsize``."""
        with self._lock:
            self._data[key] = entry
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                try:
                    self._data.popitem(last=False)
                except KeyError:  # pragma: no cover - emptied concurrently by flush()
                    break
                self._evictions += 1

    def discard(self, key: str) -> None:
        """Forget ``key`` if present."""
        with self._lock:
            self._data.pop(key, None)

    def flush(self) -> None:
        """Forget every entry and reset the counters."""
        with self._lock:
            self._data.clear()
            self._hits = self._misses = self._evictions = 0

    def stats(self) -> CacheStats:
        """A snapshot of the counters."""
        with self._lock:
            return CacheStats(
                len(self._data), self.maxsize, self._hits, self._misses, self._evictions
            )

    def reset_after_fork(self) -> None:
        """In a child process just forked: a new lock, the entries kept.

        A thread of the parent may have held the lock at the fork; it does not exist in the
        child, so the lock would never be released. The entries are consistent (every change
        is made under the GIL, which the forking thread held) and stay: the child starts warm.
        """
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._data)

"""Single flight: concurrent misses on one name share one lookup, in threads, asyncio and trio.

The first caller to miss becomes the leader: it runs the lookup (:meth:`Flight.lead`,
:meth:`Flight.alead`) and lands the result (or the error) on the flight; every other caller
joins the flight and waits, the blocking way (:meth:`Flight.wait`) or the async way
(:meth:`Flight.wait_async`, on asyncio or trio), never past the leader's own deadline. Leader and
waiters may be in different threads and event loops: the flight is a
``concurrent.futures.Future``. A leader that dies without a
result (cancelled, interrupted) abandons the flight and its waiters join again; a flight stuck
past its deadline is dropped so that nobody joins it again.

Nothing here knows what a lookup is: the resolver drives it (``kubealias._resolver``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import copy
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Generic, TypeVar

from . import _aio
from ._errors import KubeAliasError

__all__ = ["Flight", "Flights", "TimedOut"]

T = TypeVar("T")

#: Grace a waiter gives a concurrent lookup past that lookup's own deadline.
WAIT_GRACE = 0.05


class Retry(Exception):
    """The flight ended without a result (its leader was cancelled): join again."""


class TimedOut(Exception):
    """The waiter's deadline passed before the flight landed."""


class Flight(Generic[T]):
    """One lookup in progress, shared by every caller that misses on the same key."""

    __slots__ = ("_flights", "deadline", "future", "key", "thread")

    def __init__(self, flights: Flights[T], key: str, deadline: float, thread: int) -> None:
        self._flights = flights
        self.key = key
        self.future: concurrent.futures.Future[T] = concurrent.futures.Future()
        #: time.monotonic() by which the leader gives up: no waiter waits longer than this.
        self.deadline = deadline
        #: The thread running the lookup (0 for a background refresh).
        self.thread = thread

    def lead(self, work: Callable[[], T]) -> T:
        """Run ``work`` as the flight's leader and land what it returns or raises."""
        with self._landing_errors():
            return self._landed(work())

    async def alead(self, work: Callable[[], Awaitable[T]]) -> T:
        """The async form of :meth:`lead` (asyncio or trio: a cancelled leader abandons the
        flight, as an interrupted one does)."""
        with self._landing_errors():
            return self._landed(await work())

    def land(self, result: T | BaseException) -> None:
        """Leave the registry and hand ``result`` to the waiters.

        A :class:`KubeAliasError` reaches every waiter; any other exception (cancellation,
        interruption, a bug) abandons the flight, and the waiters retry with a lookup of
        their own rather than inherit an error that was not about the name.
        """
        self._flights.drop(self)
        if self.future.done():  # pragma: no cover - dropped as stuck, then finished anyway
            return
        if isinstance(result, KubeAliasError):
            self.future.set_exception(result)
        elif isinstance(result, BaseException):
            self.future.set_exception(Retry())
        else:
            self.future.set_result(result)

    def wait(self, deadline: float) -> T | None:
        """Block until the flight lands, at most until ``deadline`` (or the flight's own).

        Returns:
            The leader's result, or None when the caller should join again: the flight was
            abandoned, or got stuck while the caller still has time.

        Raises:
            KubeAliasError: a copy of the leader's error (each waiter gets its own traceback).
            TimedOut: ``deadline`` passed.
        """
        try:
            with self._judging(deadline):
                return self.future.result(self._left(deadline))
        except Retry:
            return None

    async def wait_async(self, deadline: float) -> T | None:
        """The async form of :meth:`wait` (asyncio or trio), with the same results and errors.

        A waiter that is cancelled or times out leaves the shared future to the others.
        """
        try:
            with self._judging(deadline):
                return await _aio.wait_future(self.future, self._left(deadline))
        except Retry:
            return None

    def _landed(self, result: T) -> T:
        self.land(result)
        return result

    @contextlib.contextmanager
    def _landing_errors(self) -> Iterator[None]:
        try:
            yield
        except BaseException as exc:
            self.land(exc)
            raise

    def _left(self, deadline: float) -> float:
        return max(min(deadline, self.deadline) + WAIT_GRACE - time.monotonic(), 0.0)

    @contextlib.contextmanager
    def _judging(self, deadline: float) -> Iterator[None]:
        """How a wait ended: the leader's error (a copy: each waiter gets its own traceback),
        or no result in time; then the flight is stuck past its deadline and dropped, so that
        nobody joins it again, and the waiter joins again (:class:`Retry`) while it has time."""
        try:
            yield
        except (concurrent.futures.TimeoutError, asyncio.TimeoutError):
            self._flights.drop(self)
            raise (Retry() if time.monotonic() < deadline else TimedOut()) from None
        except KubeAliasError as exc:
            raise copy.copy(exc) from None


class Flights(Generic[T]):
    """The flights in progress, by key; the one lock of single flight lives here."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[str, Flight[T]] = {}

    def join(
        self, key: str, deadline: float, *, background: bool = False
    ) -> tuple[Flight[T], bool]:
        """The flight for ``key`` and whether the caller leads it (a new flight) or waits.

        Args:
            key: what the lookup is for (the name as given).
            deadline: ``time.monotonic()`` value by which a new leader gives up.
            background: the lookup runs on a thread of its own (a refresh), not the caller's.
        """
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                return flight, False
            thread = 0 if background else threading.get_ident()
            flight = self._flights[key] = Flight(self, key, deadline, thread)
            return flight, True

    def drop(self, flight: Flight[T]) -> None:
        """Forget ``flight`` if it is still the one registered for its key."""
        with self._lock:
            if self._flights.get(flight.key) is flight:
                del self._flights[flight.key]

    def reset_after_fork(self) -> None:
        """In a child process just forked: forget every flight, and make a new lock.

        Only the thread that forked lives on in the child. A flight that another thread was
        leading would never land there, and every caller of the child joining it would wait
        out the whole timeout; the lock may have been held by such a thread at the fork and
        would never be released. Dropped, not landed: landing takes the future's own lock,
        which may be held for the same reason. The child's callers lead their own lookups; a
        waiter left on a dropped flight (an asyncio task of the forking thread) joins again
        when its wait runs out, as for any flight stuck past its deadline.
        """
        self._lock = threading.Lock()
        self._flights = {}

"""The event loops the async API runs on: asyncio, and trio (httpx's ``AsyncClient`` runs on both).

Three things differ between them, and only these live here: running coroutines side by side
(:func:`gather`), waiting for a datagram on a connected socket (:func:`recv`), and waiting on a
``concurrent.futures.Future`` that another thread or event loop completes (:func:`wait_future`).
Everything else (which datagram is an answer, who leads a lookup, how a wait ends) is one rule
for both, in :mod:`kubealias._transport` and :mod:`kubealias._flight`.

asyncio keeps the path it always had, the fast path for its users. trio is imported only when
:func:`running` finds the caller inside ``trio.run``: kubealias depends on neither trio nor anyio
(nor sniffio, which anyio no longer needs). A running asyncio loop wins, so code under
trio-asyncio's loop takes the asyncio path, as sniffio would say.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal, TypeVar

__all__ = ["Library", "gather", "recv", "running", "wait_future"]

T = TypeVar("T")

Library = Literal["asyncio", "trio"]

#: Largest DNS message over UDP (RFC 1035 §2.3.4 is 512; EDNS may ask for up to 64 KiB).
_DATAGRAM = 65535


def running() -> Library:
    """The event loop running the caller.

    Raises:
        RuntimeError: Neither an asyncio loop nor ``trio.run`` runs the caller.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return "asyncio"
    trio = sys.modules.get("trio")  # never imported here: under trio.run it is imported already
    if trio is not None:
        try:
            trio.lowlevel.current_trio_token()
        except RuntimeError:
            pass
        else:
            return "trio"
    raise RuntimeError("kubealias's async API runs under asyncio or trio: neither is running")


async def gather(calls: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
    """Run every call concurrently; their results in order.

    Raises:
        BaseException: What a call raises (the callers here catch their own errors).
    """
    if running() == "asyncio":
        return list(await asyncio.gather(*(call() for call in calls)))
    import trio

    results: dict[int, T] = {}

    async def one(i: int) -> None:
        results[i] = await calls[i]()

    async with trio.open_nursery() as nursery:
        for i in range(len(calls)):
            nursery.start_soon(one, i)
    return [results[i] for i in range(len(calls))]


async def recv(sock: socket.socket, end: float) -> bytes:
    """The next datagram on ``sock`` (connected, non-blocking), by ``end`` at the latest.

    Args:
        sock: a connected, non-blocking UDP socket; it stays the caller's to close.
        end: ``time.monotonic()`` value by which a datagram must have come.

    Raises:
        TimeoutError: nothing came by ``end``.
        OSError: the network said no (ICMP "port unreachable" is ``ConnectionRefusedError``).
    """
    left = end - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    if running() == "asyncio":
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.sock_recv(sock, _DATAGRAM), left)
        except asyncio.TimeoutError:
            raise TimeoutError("timed out") from None
    import trio

    # trio's clock is not time.monotonic(): the deadline travels as seconds left.
    with trio.move_on_after(left):
        while True:
            await trio.lowlevel.wait_readable(sock)
            # A wake-up with nothing to read (a datagram dropped for a bad checksum) waits on.
            with contextlib.suppress(BlockingIOError):
                return sock.recv(_DATAGRAM)
    raise TimeoutError("timed out")


async def wait_future(future: concurrent.futures.Future[T], timeout: float) -> T:
    """What ``future`` holds, waiting at most ``timeout`` seconds; never cancels it.

    Waiters come and go (cancelled, timed out) while the future stays shared by the others; it
    may be completed by a thread or by a task of another event loop.

    Raises:
        concurrent.futures.TimeoutError: not done in time (on asyncio, asyncio's
            ``TimeoutError``; the same class as the builtin one from Python 3.11).
        BaseException: the exception the future holds.
    """
    if running() == "asyncio":
        # shield: cancelling the wrapper (timeout, a cancelled waiter) would cancel the future.
        return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), timeout)
    import trio

    # The future may complete in any thread: it wakes this run through its token, which is
    # safe from any thread (and from this one, when the leader is a task of this run).
    token = trio.lowlevel.current_trio_token()
    done = trio.Event()

    def wake(_: object) -> None:
        with contextlib.suppress(trio.RunFinishedError):  # this waiter's run already ended
            token.run_sync_soon(done.set)

    future.add_done_callback(wake)
    with trio.move_on_after(timeout):
        await done.wait()
    if not future.done():
        raise concurrent.futures.TimeoutError
    return future.result()

"""Single flight on its own: join, land, wait, in threads, in asyncio and in trio."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable

import pytest
import trio

from kubealias import ResolutionError
from kubealias._flight import Flights, TimedOut


def test_first_caller_leads_and_later_ones_join() -> None:
    flights: Flights[str] = Flights()
    deadline = time.monotonic() + 1
    first, leader = flights.join("db", deadline)
    second, follower = flights.join("db", deadline)
    assert leader and not follower and first is second
    other, leads_other = flights.join("cache", deadline)
    assert leads_other and other is not first


def test_landing_hands_the_result_to_waiters_and_frees_the_key() -> None:
    flights: Flights[str] = Flights()
    flight, _ = flights.join("db", time.monotonic() + 1)
    got: list[str | None] = []
    waiter = threading.Thread(target=lambda: got.append(flight.wait(time.monotonic() + 1)))
    waiter.start()
    flight.land("answer")
    waiter.join(2)
    assert got == ["answer"]
    assert flights.join("db", time.monotonic() + 1)[1]  # a new flight: the key was freed


def test_each_waiter_gets_its_own_copy_of_the_error() -> None:
    flights: Flights[str] = Flights()
    flight, _ = flights.join("db", time.monotonic() + 1)
    error = ResolutionError("timed out", name="db")
    flight.land(error)
    with pytest.raises(ResolutionError) as one:
        flight.wait(time.monotonic() + 1)
    with pytest.raises(ResolutionError) as two:
        flight.wait(time.monotonic() + 1)
    assert one.value is not error and two.value is not one.value
    assert str(one.value) == str(error)


def test_a_leader_that_dies_abandons_the_flight() -> None:
    flights: Flights[str] = Flights()
    flight, _ = flights.join("db", time.monotonic() + 1)

    def interrupted() -> str:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        flight.lead(interrupted)
    assert flight.wait(time.monotonic() + 1) is None  # join again
    assert flights.join("db", time.monotonic() + 1)[1]


def test_the_leader_lands_what_its_work_returns_or_raises() -> None:
    flights: Flights[str] = Flights()
    flight, _ = flights.join("db", time.monotonic() + 1)
    assert flight.lead(lambda: "answer") == "answer"
    assert flight.wait(time.monotonic() + 1) == "answer"
    failing, _ = flights.join("db", time.monotonic() + 1)

    def refused() -> str:
        raise ResolutionError("refused", name="db")

    with pytest.raises(ResolutionError):
        failing.lead(refused)
    with pytest.raises(ResolutionError, match="refused"):
        failing.wait(time.monotonic() + 1)


def test_a_stuck_flight_is_dropped_and_the_waiter_retries_or_times_out() -> None:
    flights: Flights[str] = Flights()
    flight, _ = flights.join("db", time.monotonic() + 0.05)  # a leader that will never land
    assert flight.wait(time.monotonic() + 5) is None  # the waiter has time left: join again
    assert flights.join("db", time.monotonic() + 1)[1]  # dropped: the next caller leads
    stuck, _ = flights.join("cache", time.monotonic() + 5)
    start = time.monotonic()
    with pytest.raises(TimedOut):
        stuck.wait(time.monotonic() + 0.1)
    assert time.monotonic() - start < 1


def test_background_flights_name_no_thread() -> None:
    flights: Flights[str] = Flights()
    flight, _ = flights.join("db", time.monotonic() + 1, background=True)
    assert flight.thread == 0
    mine, _ = flights.join("cache", time.monotonic() + 1)
    assert mine.thread == threading.get_ident()


async def test_async_waiters_share_the_result_and_a_cancelled_one_does_not_cancel_it() -> None:
    flights: Flights[str] = Flights()
    flight, _ = flights.join("db", time.monotonic() + 1)
    deadline = time.monotonic() + 1
    patient = asyncio.ensure_future(flight.wait_async(deadline))
    impatient = asyncio.ensure_future(flight.wait_async(deadline))
    await asyncio.sleep(0.01)
    impatient.cancel()
    flight.land("answer")
    assert await patient == "answer"
    with pytest.raises(asyncio.CancelledError):
        await impatient


async def test_async_leader_lands_its_result() -> None:
    flights: Flights[str] = Flights()
    flight, _ = flights.join("db", time.monotonic() + 1)
    waiter = asyncio.ensure_future(flight.wait_async(time.monotonic() + 1))

    async def work() -> str:
        await asyncio.sleep(0.01)
        return "answer"

    assert await flight.alead(work) == "answer"
    assert await waiter == "answer"


async def test_async_waiter_times_out() -> None:
    flights: Flights[str] = Flights()
    flight, _ = flights.join("db", time.monotonic() + 5)
    with pytest.raises(TimedOut):
        await flight.wait_async(time.monotonic() + 0.05)


# --- trio: the same rules (trio.run: pytest-asyncio runs every async test on asyncio) -------


def test_trio_waiters_share_the_result_and_a_cancelled_one_does_not_cancel_it() -> None:
    flights: Flights[str] = Flights()
    flight, _ = flights.join("db", time.monotonic() + 1)
    got: list[str | None] = []

    async def patient() -> None:
        got.append(await flight.wait_async(time.monotonic() + 1))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(patient)
            with trio.move_on_after(0.01) as impatient:
                await flight.wait_async(time.monotonic() + 1)
            assert impatient.cancelled_caught
            assert not flight.future.done()
            flight.land("answer")

    trio.run(main)
    assert got == ["answer"]


def test_trio_leader_lands_its_result() -> None:
    flights: Flights[str] = Flights()
    flight, _ = flights.join("db", time.monotonic() + 1)
    got: list[str | None] = []

    async def work() -> str:
        await trio.sleep(0.01)
        return "answer"

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: _append(got, flight.wait_async(time.monotonic() + 1)))
            got.append(await flight.alead(work))

    trio.run(main)
    assert got == ["answer", "answer"]


async def _append(got: list[str | None], waiting: Awaitable[str | None]) -> None:
    got.append(await waiting)


def test_a_cancelled_trio_leader_abandons_the_flight() -> None:
    flights: Flights[str] = Flights()
    flight, _ = flights.join("db", time.monotonic() + 1)

    async def main() -> None:
        with trio.move_on_after(0.01):
            await flight.alead(trio.sleep_forever)

    trio.run(main)
    assert flight.wait(time.monotonic() + 1) is None  # the waiters join again
    assert flights.join("db", time.monotonic() + 1)[1]


def test_a_trio_waiter_never_waits_past_the_leaders_deadline() -> None:
    flights: Flights[str] = Flights()
    flight, _ = flights.join("db", time.monotonic() + 0.05)  # a leader that will never land
    start = time.monotonic()
    assert trio.run(flight.wait_async, time.monotonic() + 5) is None  # time left: join again
    assert time.monotonic() - start < 1
    assert flights.join("db", time.monotonic() + 1)[1]  # dropped: the next caller leads
    stuck, _ = flights.join("cache", time.monotonic() + 5)
    with pytest.raises(TimedOut):
        trio.run(stuck.wait_async, time.monotonic() + 0.05)


def test_a_trio_waiter_gets_a_copy_of_the_error_landed_by_a_thread() -> None:
    flights: Flights[str] = Flights()
    flight, _ = flights.join("db", time.monotonic() + 1)
    error = ResolutionError("refused", name="db")
    timer = threading.Timer(0.05, flight.land, [error])
    timer.start()
    with pytest.raises(ResolutionError, match="refused") as info:
        trio.run(flight.wait_async, time.monotonic() + 1)
    timer.join()
    assert info.value is not error


def test_a_trio_waiter_on_a_flight_led_by_asyncio_in_another_thread() -> None:
    flights: Flights[str] = Flights()
    flight, _ = flights.join("db", time.monotonic() + 1)

    async def work() -> str:
        await asyncio.sleep(0.1)
        return "answer"

    leader = threading.Thread(target=lambda: asyncio.run(flight.alead(work)))
    leader.start()
    try:
        assert trio.run(flight.wait_async, time.monotonic() + 1) == "answer"
    finally:
        leader.join(5)


def test_reset_after_fork_forgets_the_flights_and_the_lock() -> None:
    # In a forked child the leader of a flight does not exist and the lock may be held by a
    # thread that does not exist either (issue 10, item 6): the child's callers lead anew.
    flights: Flights[str] = Flights()
    stranded, _ = flights.join("db", time.monotonic() + 5)
    flights._lock.acquire()  # as if held by a thread of the parent at the fork
    flights.reset_after_fork()
    flight, leader = flights.join("db", time.monotonic() + 5)  # does not block
    assert leader and flight is not stranded
    stranded.land("late")  # a flight of before the reset lands without touching the new one
    assert flights.join("db", time.monotonic() + 5) == (flight, False)

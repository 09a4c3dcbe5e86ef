"""Pacing under Discord's global limit: no more than `limit` requests in any window,
each counted from its start until a window after its end; a request over the limit waits
exactly until the oldest leaves the window (or, all being in flight, until one ends and
its window passes), first come first served. On a stepped clock: no real waiting."""

from __future__ import annotations

import asyncio

import pytest

from notifier.pacing import SlidingWindowLimit
from tests.infra import SteppedClock


class Sleeper:
    """asyncio.sleep on the stepped clock: moves it instead of waiting."""

    def __init__(self, clock: SteppedClock) -> None:
        self.clock = clock
        self.slept: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.clock.advance(seconds)
        await asyncio.sleep(0)


async def test_a_request_waits_until_the_oldest_is_a_window_past_its_answer():
    clock = SteppedClock(start=100.0)
    sleep = Sleeper(clock)
    limit = SlidingWindowLimit(3, 1.0, clock=clock, sleep=sleep)
    starts = []
    # Requests taking 0.2 s each (their round trip), one right after the other.
    for _ in range(5):
        async with limit.slot():
            starts.append(round(clock.now - 100.0, 6))
            clock.advance(0.2)
    # Three go at once; the fourth waits until the first is a window past its answer
    # (0.2 + 1.0); by the time the fourth has its answer, the second is a window past.
    assert starts == [0.0, 0.2, 0.4, 1.2, 1.4]
    assert sleep.slept == [0.6]


async def test_with_every_place_in_flight_a_request_waits_for_one_to_end():
    clock = SteppedClock()
    sleep = Sleeper(clock)
    limit = SlidingWindowLimit(1, 1.0, clock=clock, sleep=sleep)
    first_running, release = asyncio.Event(), asyncio.Event()
    second_started: list[float] = []

    async def first() -> None:
        async with limit.slot():
            first_running.set()
            await release.wait()

    async def second() -> None:
        await first_running.wait()
        async with limit.slot():
            second_started.append(clock.now)

    tasks = [asyncio.create_task(first()), asyncio.create_task(second())]
    await first_running.wait()
    for _ in range(5):
        await asyncio.sleep(0)
    assert second_started == []  # however long the first takes
    clock.advance(3.0)
    release.set()
    await asyncio.gather(*tasks)
    assert second_started == [clock.now] and sleep.slept == [1.0]


async def test_waiting_requests_go_first_come_first_served():
    clock = SteppedClock()
    limit = SlidingWindowLimit(1, 1.0, clock=clock, sleep=Sleeper(clock))
    order: list[int] = []

    async def request(n: int) -> None:
        async with limit.slot():
            order.append(n)

    await asyncio.gather(*(request(n) for n in range(5)))
    assert order == [0, 1, 2, 3, 4]


async def test_a_failed_request_gives_its_place_back_a_window_later():
    clock = SteppedClock()
    limit = SlidingWindowLimit(1, 1.0, clock=clock, sleep=Sleeper(clock))
    with pytest.raises(ConnectionError):
        async with limit.slot():
            raise ConnectionError("Discord unreachable")
    async with limit.slot():
        assert clock.now == 1001.0


def test_a_limit_needs_room_for_a_request():
    with pytest.raises(ValueError, match="at least one request"):
        SlidingWindowLimit(0)


async def test_a_filled_window_waits_one_window_before_the_next_request():
    clock = SteppedClock(start=100.0)
    sleep = Sleeper(clock)
    limit = SlidingWindowLimit(3, 1.0, clock=clock, sleep=sleep)
    limit.fill()
    async with limit.slot():
        assert clock.now == pytest.approx(101.0)  # what a killed predecessor sent has left
    assert sleep.slept == [1.0]

"""Fan-out of price ticks: latest price per pair, every subscriber gets every tick, and a
slow subscriber loses its oldest ticks (never the latest price, never the range)
without holding up anyone else."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime

import pytest

from common.market import Timeframe
from signal_svc.market import PriceHub
from signal_svc.ports import PriceTick

EURUSD = "EUR/USD"


def real_ticks(bundled, start: int, count: int, pair: str = EURUSD) -> list[PriceTick]:
    """Ticks of consecutive real hour bars (as the replay makes them)."""
    hours = bundled.series[(EURUSD, Timeframe.H1)]
    return [
        PriceTick(
            pair,
            float(hours.close[i]),
            float(hours.high[i]),
            float(hours.low[i]),
            datetime.fromtimestamp(int(hours.times[i]) + 3600, UTC),
            "replay",
        )
        for i in range(start, start + count)
    ]


async def test_every_subscriber_gets_every_tick_and_the_latest_is_kept(bundled):
    hub = PriceHub(buffer=64)
    ticks = real_ticks(bundled, 300, 20)
    with hub.subscribe([EURUSD]) as a, hub.subscribe(None) as b, hub.subscribe(["GBP/USD"]) as c:
        assert len(hub) == 3
        for tick in ticks:
            hub.publish(tick)
        assert [await a.next(1) for _ in ticks] == ticks
        assert b.drain() == ticks
        assert await c.next(0.01) is None  # timed out: nothing for GBP/USD
    assert len(hub) == 0
    assert hub.latest(EURUSD) == ticks[-1] and hub.latest("GBP/USD") is None
    # A new subscriber starts from the latest price, not from history.
    with hub.subscribe([EURUSD]) as late:
        assert late.snapshot == [ticks[-1]] and late.pending == 0


async def test_slow_subscriber_loses_its_oldest_ticks_only(bundled):
    hub = PriceHub(buffer=4)
    ticks = real_ticks(bundled, 300, 10)
    received_fast: list[PriceTick] = []

    async def fast(subscription):
        while len(received_fast) < len(ticks):
            received_fast.append(await subscription.next(1))

    with hub.subscribe([EURUSD]) as slow, hub.subscribe([EURUSD]) as quick:
        reader = asyncio.create_task(fast(quick))
        for tick in ticks:
            hub.publish(tick)  # never waits for anyone
            await asyncio.sleep(0)
        await asyncio.wait_for(reader, 1)
        assert received_fast == ticks and quick.dropped == 0  # unaffected by the slow one

        assert slow.dropped == 6
        late = slow.drain()
        assert [t.time for t in late] == [t.time for t in ticks[6:]]  # the newest four
        assert late[-1].price == ticks[-1].price  # latest wins
        # The first delivered tick carries the range of the six it replaced.
        assert late[0].high == max(t.high for t in ticks[:7])
        assert late[0].low == min(t.low for t in ticks[:7])
        assert late[1:] == ticks[7:]


async def test_a_dropped_range_is_never_carried_into_the_next_replay_lap(bundled):
    """The last ticks of a lap are dropped, then the replay starts again: the first tick
    of the new lap is from years earlier and carries only its own range; within the new
    lap, dropped ranges are carried as before."""
    hub = PriceHub(buffer=2)
    end_of_lap = real_ticks(bundled, 300, 4)
    next_lap = [dataclasses.replace(t, lap=1) for t in real_ticks(bundled, 0, 3)]
    with hub.subscribe([EURUSD]) as slow:
        for tick in end_of_lap + next_lap:
            hub.publish(tick)
        assert slow.dropped == 5
        got = slow.drain()
    assert [t.lap for t in got] == [1, 1]
    assert got[0].time == next_lap[1].time
    assert got[0].high == max(next_lap[0].high, next_lap[1].high)
    assert got[0].low == min(next_lap[0].low, next_lap[1].low)
    assert got[1] == next_lap[2]


async def test_overflow_keeps_the_latest_price_of_every_pair(bundled):
    """Dropping the oldest tick would lose the only GBP/USD price in the queue: the
    oldest tick that a newer one of its pair supersedes goes instead."""
    hub = PriceHub(buffer=3)
    eur = real_ticks(bundled, 300, 3)
    gbp = real_ticks(bundled, 400, 1, pair="GBP/USD")  # real bars, relabelled for the test
    with hub.subscribe(None) as slow:
        hub.publish(gbp[0])
        for tick in eur:
            hub.publish(tick)
        assert slow.dropped == 1
        got = slow.drain()
    assert [t.pair for t in got] == ["GBP/USD", EURUSD, EURUSD]
    assert got[0] == gbp[0] and got[-1] == eur[-1]
    assert got[1].time == eur[1].time and got[1].high == max(eur[0].high, eur[1].high)


async def test_waiting_subscriber_wakes_on_publish(bundled):
    hub = PriceHub()
    tick = real_ticks(bundled, 300, 1)[0]
    with hub.subscribe([EURUSD]) as subscription:
        waiting = asyncio.create_task(subscription.next(5))
        await asyncio.sleep(0)  # the task runs until it waits for a tick
        assert not waiting.done()
        hub.publish(tick)
        assert await asyncio.wait_for(waiting, 1) == tick


def test_buffer_must_hold_a_tick():
    with pytest.raises(ValueError, match="at least one"):
        PriceHub(buffer=0)

"""The live provider, with Yahoo replaced by a loader that answers with the real bundled
bars Yahoo would have had at the test's clock (the real yfinance path is covered by
tests/market_data/test_yfinance_standin.py): closed bars only, new closes per poll,
ticks, work off the event loop's thread, and a clean MarketDataUnavailable offline."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from common.candles import TIMEFRAME_SECONDS
from common.errors import Unavailable
from common.market import Timeframe
from common.market_data import MarketDataUnavailable
from signal_svc.market import CandleStore, LiveFeed, Market, PriceHub
from tests.infra import eventually

EURUSD = "EUR/USD"
H1, H4 = Timeframe.H1, Timeframe.H4


class FakeYahoo:
    """Answers like load_yahoo_history: the real bars opened by `now` (the newest may
    still be forming), or MarketDataUnavailable while `down`."""

    def __init__(self, bundled, now: float) -> None:
        self.bundled = bundled
        self.now = now
        self.down = False
        self.calls: list[tuple[str, Timeframe, str | None]] = []
        self.threads: set[int] = set()

    def clock(self) -> float:
        return self.now

    def __call__(self, pair: str, timeframe: Timeframe, period: str | None = None):
        self.calls.append((pair, timeframe, period))
        self.threads.add(threading.get_ident())
        if self.down:
            raise MarketDataUnavailable("Yahoo Finance is unreachable (test)")
        candles = self.bundled.series[(pair, timeframe)]
        return candles.slice(0, int(np.searchsorted(candles.times, self.now, side="right")))


@pytest.fixture
def hours(bundled):
    return bundled.series[(EURUSD, H1)]


@pytest.fixture
def yahoo(bundled, hours):
    # Half an hour into a bar, with the next several hours consecutive.
    gaps = np.diff(hours.times)
    i = next(i for i in range(400, 5000) if (gaps[i : i + 6] == 3600).all())
    return FakeYahoo(bundled, float(hours.times[i] + 1800)), i


def live_feed(fake, poll_seconds: float = 60.0) -> LiveFeed:
    return LiveFeed(
        {EURUSD: list(Timeframe)},
        [(EURUSD, H1), (EURUSD, H4)],
        poll_seconds=poll_seconds,
        loader=fake,
        clock=fake.clock,
    )


async def test_history_is_closed_bars_fetched_off_the_event_loop(yahoo, hours):
    fake, forming = yahoo
    feed = live_feed(fake)
    got = await feed.history(EURUSD, H1, 100)
    np.testing.assert_array_equal(got.times, hours.times[forming - 100 : forming])
    assert threading.get_ident() not in fake.threads  # yfinance ran in a worker thread
    await feed.history(EURUSD, H1, 10)
    assert len(fake.calls) == 1  # fresher than a poll interval: no second fetch
    assert feed.online == {EURUSD: True}
    assert feed.offered()[EURUSD] == [Timeframe.M15, H1, H4, Timeframe.D1]


async def test_polls_emit_only_bars_closed_since_the_previous_poll(yahoo, hours):
    fake, forming = yahoo
    feed = live_feed(fake)
    closes = asyncio.Queue()
    ticks = asyncio.Queue()
    feed._close_queues.add(closes)
    feed._tick_queues.add(ticks)

    await feed.poll_once()  # where things stand: no closes, the latest quote
    assert closes.empty()
    tick = ticks.get_nowait()
    assert tick.price == hours.close[forming] and tick.time.timestamp() == fake.now

    fake.now += 2 * 3600  # two hour bars close
    await feed.poll_once()
    events = [closes.get_nowait() for _ in range(closes.qsize())]
    got = [(e.timeframe, int(e.candles.times[-1])) for e in events if e.timeframe == H1]
    assert got == [(H1, int(hours.times[forming])), (H1, int(hours.times[forming + 1]))]
    assert [call[2] for call in fake.calls[2:]] == ["5d", "1mo"]  # short polls after the first
    for event in events:  # every bar emitted has closed, and carries its history
        assert event.candles.times[-1] + TIMEFRAME_SECONDS[event.timeframe] <= fake.now
        assert event.source == "live" and len(event.candles) == 300
    tick = ticks.get_nowait()
    assert tick.price == hours.close[forming + 2]
    assert tick.high == hours.high[forming : forming + 3].max()  # range since the last tick


async def test_closes_iterator_runs_the_poller(yahoo, hours):
    fake, forming = yahoo
    feed = live_feed(fake, poll_seconds=0.01)
    closes = feed.closes()
    polled = len(fake.calls)
    first = asyncio.create_task(anext(closes))
    await eventually(lambda: len(fake.calls) > polled, "the baseline poll")
    fake.now += 3600
    event = await asyncio.wait_for(first, 2)
    assert event.candles.times[-1] == hours.times[forming]
    await closes.aclose()
    await feed.close()


async def test_offline_surfaces_market_data_unavailable(yahoo, sessions):
    fake, _ = yahoo
    fake.down = True
    feed = live_feed(fake)
    with pytest.raises(MarketDataUnavailable, match="unreachable"):
        await feed.history(EURUSD, H1, 10)
    assert feed.online == {EURUSD: False}
    await feed.poll_once()  # logged, not raised: the poller keeps going

    market = Market(
        feed,
        CandleStore(sessions),
        PriceHub(),
        mode="live",
        signal_pairs=[EURUSD],
        signal_timeframes=[H1],
    )
    with pytest.raises(Unavailable, match="unreachable"):
        await market.candles(EURUSD, H1, 10)
    with pytest.raises(Unavailable):
        await market.price(EURUSD)
    assert [p.online for p in market.pairs()] == [False]
    # What was stored before Yahoo went away is still served.
    await market.store.upsert(fake.bundled.series[(EURUSD, H1)].slice(0, 50), "live")
    stored = await market.candles(EURUSD, H1, 10)
    assert len(stored) == 10 and stored.source == "live"


async def test_no_bar_is_skipped_between_the_warm_start_and_the_first_poll(yahoo, hours):
    """The scheduler's warm start reads history (and signals its last bar) before the
    poller's first poll; bars that close in between are emitted by that poll, not taken
    for where the series stood."""
    fake, forming = yahoo
    feed = live_feed(fake)
    closes = asyncio.Queue()
    feed._close_queues.add(closes)
    warm = await feed.history(EURUSD, H1, 300)
    assert int(warm.times[-1]) == int(hours.times[forming - 1])
    fake.now += 2 * 3600  # the machine is slow: two bars close before the first poll
    await feed.poll_once()
    got = [
        int(e.candles.times[-1])
        for e in (closes.get_nowait() for _ in range(closes.qsize()))
        if e.timeframe == H1
    ]
    assert got == [int(hours.times[forming]), int(hours.times[forming + 1])]


async def test_a_late_answer_with_an_older_view_drops_no_newer_bar(yahoo, hours):
    """The poller and a history() call fetch at once; the one that answers last may have
    asked first. The bars the other brought stay, so no close is skipped."""
    fake, forming = yahoo
    feed = live_feed(fake)
    closes = asyncio.Queue()
    feed._close_queues.add(closes)
    older = fake(EURUSD, H1)  # what a slow fetch asked for before the clock moved on
    fake.now += 2 * 3600
    await feed.poll_once()  # the baseline: two bars further
    feed._loader = lambda *args, **kwargs: older
    feed._fetched_at.clear()
    seen = await feed.history(EURUSD, H1, 300)  # answers late, with the older view
    assert int(seen.times[-1]) == int(hours.times[forming + 1])
    feed._loader = fake
    fake.now += 3600
    await feed.poll_once()
    got = [
        int(e.candles.times[-1])
        for e in (closes.get_nowait() for _ in range(closes.qsize()))
        if e.timeframe == H1
    ]
    assert got == [int(hours.times[forming + 2])]

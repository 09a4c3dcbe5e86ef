"""The replay of the real bundled history (and of a user's CSV) on a clock with a speed
factor: timing, no bar from the future, every close once and in order, price ticks."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from common.candles import TIMEFRAME_SECONDS, Candles, make_candles
from common.market import Timeframe
from common.market_data import CsvFormatError, MarketDataError, aggregate_hourly, frame_to_candles
from common.shutdown import stop_tasks
from signal_svc.market import ReplayClock, ReplayFeed, csv_history
from signal_svc.market.series import close_times, complete_bars
from tests.infra import eventually, heavy_imports_after

EURUSD = "EUR/USD"
H1, H4, D1 = Timeframe.H1, Timeframe.H4, Timeframe.D1


def test_clock_runs_speed_times_faster(stepped):
    clock = ReplayClock(3600, datetime(2017, 5, 1, tzinfo=UTC), monotonic=stepped)
    start = clock.now()
    assert clock.now_datetime() == datetime(2017, 5, 1, tzinfo=UTC)
    stepped.advance(2.5)
    assert clock.now() == start + 2.5 * 3600
    assert clock.real_seconds_until(start + 3 * 3600) == pytest.approx(0.5)
    assert clock.real_seconds_until(start) == 0
    with pytest.raises(ValueError, match="positive"):
        ReplayClock(0, 0.0)


async def test_clock_sleeps_in_real_time_scaled_by_speed():
    clock = ReplayClock(36_000, 1_500_000_000.0)  # an hour of market time in 0.1 s
    t0 = time.monotonic()
    await clock.sleep_until(clock.start + 1800)  # half an hour: 0.05 s
    elapsed = time.monotonic() - t0
    assert clock.now() >= clock.start + 1800
    # Not a timing target: the lower bound is behaviour (never early); the upper one only
    # tells a scaled sleep (0.05 s) from an unscaled one (1,800 s) on a busy machine.
    assert 0.045 <= elapsed < 5.0


def test_starts_after_warmup_bars_of_the_first_series(bundled, stepped):
    feed = ReplayFeed(bundled.series, speed=3600, monotonic=stepped)
    hours = bundled.series[(EURUSD, H1)]
    assert feed.start == hours.times[299] + 3600  # the 300th bar has just closed
    assert feed.offered() == {EURUSD: [H1, H4, D1]}
    assert feed.source == "replay"


async def test_history_never_holds_a_bar_closed_after_market_time(bundled, stepped):
    feed = ReplayFeed(bundled.series, speed=3600, monotonic=stepped)
    rng = np.random.default_rng(7)
    for _ in range(200):
        now = feed.now()
        for (pair, timeframe), candles in bundled.series.items():
            got = await feed.history(pair, timeframe, 50)
            closes = close_times(candles)
            closed = int(np.searchsorted(closes, now, side="right"))
            # The newest bar closed by now, and the 49 before it, from the real series.
            np.testing.assert_array_equal(got.times, candles.times[max(0, closed - 50) : closed])
            np.testing.assert_array_equal(got.close, candles.close[max(0, closed - 50) : closed])
            assert not len(got) or got.times[-1] + TIMEFRAME_SECONDS[timeframe] <= now
        stepped.advance(float(rng.uniform(0, 30)))  # up to 30 market hours per step
    assert len(await feed.history(EURUSD, H1, 300)) == 300
    with pytest.raises(MarketDataError, match="offered: EUR/USD 1h, 4h, 1d"):
        await feed.history("GBP/USD", H1, 10)


async def test_every_close_once_in_time_order_then_replay_finishes(bundled):
    """From 4,800 bars in, at 20,000 market hours a second: every remaining real bar of
    every series closes exactly once, in close-time order, and the replay ends."""
    feed = ReplayFeed(bundled.series, speed=3600 * 20_000, warmup_bars=4800, history_bars=120)
    events = []
    async for event in feed.closes():
        now = feed.now()
        bar_close = event.candles.times[-1] + TIMEFRAME_SECONDS[event.timeframe]
        assert bar_close <= now  # never delivered before it closed
        assert len(event.candles) == 120 and event.source == "replay"
        events.append((bar_close, TIMEFRAME_SECONDS[event.timeframe], event))
    assert feed.finished

    assert [e[:2] for e in events] == sorted(e[:2] for e in events)
    for key, candles in bundled.series.items():
        expected = np.flatnonzero(close_times(candles) > feed.start)
        delivered = [e for *_, e in events if (e.pair, e.timeframe) == key]
        got = np.array([e.candles.times[-1] for e in delivered])
        np.testing.assert_array_equal(got, candles.times[expected])  # no gap, no duplicate
        last = delivered[-1].candles
        np.testing.assert_array_equal(
            last.close, candles.close[expected[-1] - 119 : expected[-1] + 1]
        )
    # The unfinished last daily bar of the bundled hours is not a close.
    assert bundled.series[(EURUSD, D1)].times[-1] < bundled.series[(EURUSD, H1)].times[-1]
    assert max(e[0] for e in events) == feed.end == bundled.series[(EURUSD, H1)].times[-1] + 3600


async def test_closes_arrive_when_market_time_reaches_them(bundled):
    speed = 3600 * 40  # an hour bar every 25 ms
    hours = bundled.series[(EURUSD, H1)]
    # Start where the next hours are consecutive (no weekend to wait through).
    gaps = np.diff(hours.times)
    warmup = next(i for i in range(300, 5000) if (gaps[i - 1 : i + 7] == 3600).all())
    feed = ReplayFeed(bundled.series, speed=speed, warmup_bars=warmup)
    lateness = []
    async for event in feed.closes():
        # Real seconds since market time reached the bar's close, on the feed's own clock.
        close = event.candles.times[-1] + TIMEFRAME_SECONDS[event.timeframe]
        lateness.append((feed.now() - close) / speed)
        if len(lateness) == 6:
            break
    assert min(lateness) >= -0.002  # never early
    assert max(lateness) < 0.5  # and on time (generous: CI machines are busy)


async def test_each_consumer_gets_every_close_even_when_starting_late(bundled, stepped):
    feed = ReplayFeed(bundled.series, speed=3600, monotonic=stepped)
    hours = bundled.series[(EURUSD, H1)]
    # Five more hour bars close before anyone listens.
    stepped.advance((hours.times[304] + 3600 - feed.start) / 3600)
    for _ in range(2):  # two consumers, both from the start
        closes = feed.closes()
        got = []
        while len(got) < 5:
            event = await asyncio.wait_for(anext(closes), 1)
            if event.timeframe == H1:
                got.append(event.candles.times[-1])
        assert got == list(hours.times[300:305])
        await closes.aclose()
    # A consumer may also start from a market time (e.g. resubscribing).
    resumed = feed.closes(after=hours.times[302] + 3600)
    assert (await anext(resumed)).candles.times[-1] >= hours.times[303]
    await resumed.aclose()


async def test_ticks_are_the_closes_of_the_shortest_timeframe(bundled):
    feed = ReplayFeed(bundled.series, speed=3600 * 2000)
    hours = bundled.series[(EURUSD, H1)]
    ticks = []
    async for tick in feed.ticks():
        ticks.append(tick)
        if len(ticks) == 10:
            break
    for i, tick in enumerate(ticks, start=300):
        assert tick.pair == EURUSD and tick.source == "replay"
        assert (tick.price, tick.high, tick.low) == (hours.close[i], hours.high[i], hours.low[i])
        assert tick.time == datetime.fromtimestamp(hours.times[i] + 3600, UTC)
    latest = feed.latest_tick(EURUSD)
    assert latest is not None and latest.time >= ticks[-1].time
    assert feed.latest_tick("GBP/USD") is None


def _write_csv(path, candles, start, stop, *, epoch=False):
    lines = ["time,open,high,low,close,volume"]
    for i in range(start, stop):
        when = (
            str(int(candles.times[i]))
            if epoch
            else datetime.fromtimestamp(int(candles.times[i]), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        )
        lines.append(
            f"{when},{float(candles.open[i])!r},{float(candles.high[i])!r},"
            f"{float(candles.low[i])!r},{float(candles.close[i])!r},{float(candles.volume[i])!r}"
        )
    path.write_text("\n".join(lines) + "\n")


async def test_csv_replay_of_real_bars(tmp_path, bundled, stepped):
    """A user's CSV (here: 400 real EUR/USD hours written out) replays like the bundled
    history, with 4h and 1d bars built from its hours; source "csv"."""
    hours = bundled.series[(EURUSD, H1)]
    path = tmp_path / "eurusd_1h.csv"
    _write_csv(path, hours, 1000, 1400)

    history = csv_history(path)
    assert history.source == "csv"
    assert history.offered() == {EURUSD: [H1, H4, D1]}
    np.testing.assert_array_equal(history.series[(EURUSD, H1)].close, hours.close[1000:1400])

    feed = ReplayFeed(history.series, speed=3600, source="csv", warmup_bars=350, monotonic=stepped)
    assert (await feed.history(EURUSD, H1, 1000)).times[-1] == hours.times[1349]
    closes = feed.closes()
    stepped.advance(100)  # far past the end of the file
    events = [event async for event in closes]
    assert [e.candles.times[-1] for e in events if e.timeframe == H1] == list(
        hours.times[1350:1400]
    )
    assert all(e.source == "csv" for e in events)
    # 4h bars built from the CSV's hours are the bundled 4h bars of the same span.
    built = history.series[(EURUSD, H4)]
    bundled_4h = bundled.series[(EURUSD, H4)]
    inside = np.flatnonzero(
        (bundled_4h.times >= hours.times[1000])
        & (close_times(bundled_4h) <= hours.times[1399] + 3600)
    )
    first_full = np.flatnonzero(built.times >= bundled_4h.times[inside[1]])[0]
    np.testing.assert_array_equal(built.times[first_full:], bundled_4h.times[inside[1:]])
    np.testing.assert_array_equal(built.high[first_full:], bundled_4h.high[inside[1:]])


def test_csv_aggregates_are_pandas_resample_of_the_same_bars(tmp_path, bundled):
    """4h and 1d bars built (with numpy) from a CSV's real hours, starting and ending
    inside buckets, are what pandas' resample builds from them, without the last bucket
    if it would close after the file's last hour."""
    hours = bundled.series[(EURUSD, H1)]
    path = tmp_path / "eurusd_1h.csv"
    _write_csv(path, hours, 1003, 1398)
    history = csv_history(path)
    base = history.series[(EURUSD, H1)]
    frame = pd.DataFrame(
        {
            "Open": base.open,
            "High": base.high,
            "Low": base.low,
            "Close": base.close,
            "Volume": base.volume,
        },
        index=pd.to_datetime(base.times, unit="s"),
    )
    for timeframe in (H4, D1):
        expected = complete_bars(
            frame_to_candles(aggregate_hourly(frame, timeframe), EURUSD, timeframe), base
        )
        built = history.series[(EURUSD, timeframe)]
        assert 0 < len(built) < len(aggregate_hourly(frame, timeframe))  # one dropped
        np.testing.assert_array_equal(built.times, expected.times)
        np.testing.assert_array_equal(built.ohlc(), expected.ohlc())
        np.testing.assert_array_equal(built.volume, expected.volume)


def test_the_service_replays_without_pandas_backtesting_or_yfinance():
    """signal_svc's whole import graph plus the bundled history it replays leave pandas,
    backtesting (bokeh), yfinance and tenacity (with the tornado it imports) out of the
    process (about 57 MB of resident memory in a service that must stay under 150 MB);
    they are imported in live mode only."""
    code = (
        "import signal_svc.server\n"
        "from signal_svc.market import bundled_history\n"
        "assert len(bundled_history().series) == 3\n"
    )
    heavy = ("pandas", "backtesting", "bokeh", "yfinance", "tenacity", "tornado")
    assert heavy_imports_after(code, heavy) == []


def test_csv_pair_and_timeframe_from_the_name_or_the_bars(tmp_path, bundled):
    days = bundled.series[(EURUSD, D1)]
    named = tmp_path / "named"
    named.mkdir()
    _write_csv(named / "GBP-USD.1d.csv", days, 0, 30)  # real EUR/USD days, filed as GBP/USD
    assert csv_history(named).offered() == {"GBP/USD": [D1]}

    unnamed = tmp_path / "prices.csv"
    _write_csv(unnamed, days, 0, 30, epoch=True)
    history = csv_history(unnamed, default_pair=EURUSD)
    assert history.offered() == {EURUSD: [D1]}  # most bars are a day apart


def test_bad_csv_is_refused_with_line_and_column(tmp_path, bundled):
    hours = bundled.series[(EURUSD, H1)]
    path = tmp_path / "EURUSD_1h.csv"
    _write_csv(path, hours, 0, 5)
    path.write_text(path.read_text().replace(repr(float(hours.close[2])), "abc", 1))
    with pytest.raises(CsvFormatError, match="line 4, column close"):
        csv_history(path)
    with pytest.raises(MarketDataError, match="no such file"):
        csv_history(tmp_path / "missing.csv")


async def test_a_finished_replay_stops_and_keeps_its_last_prices(bundled, stepped):
    feed = ReplayFeed(bundled.series, speed=3600, warmup_bars=5000, monotonic=stepped)
    stepped.advance(10_000)
    assert feed.finished
    assert [e async for e in feed.ticks()] == []  # the last bar closed at the start
    hours = bundled.series[(EURUSD, H1)]
    assert feed.latest_tick(EURUSD).price == hours.close[-1]
    assert (await feed.history(EURUSD, H1, 2)).times[-1] == hours.times[-1]
    await asyncio.sleep(0)


async def test_a_resumed_replay_continues_where_an_earlier_run_stopped(bundled, stepped):
    hours = bundled.series[(EURUSD, H1)]
    closes_at = close_times(hours)
    first = ReplayFeed(bundled.series, speed=3600, monotonic=stepped)
    stepped.advance((closes_at[349] + 1800 - first.start) / 3600)  # half past bar 349
    stopped_at = first.now()
    # The service restarts: a new feed, told where the last one was.
    again = ReplayFeed(bundled.series, speed=3600, monotonic=stepped)
    again.resume(stopped_at)
    assert again.now() == stopped_at and again.lap == 0 and again.start == first.start
    closes = again.closes()
    stepped.advance((closes_at[350] - stopped_at) / 3600)
    event = await asyncio.wait_for(anext(closes), 1)
    # The first close after the resume point: nothing replayed twice, nothing skipped.
    assert event.timeframe == H1 and event.candles.times[-1] == hours.times[350]
    assert again.latest_tick(EURUSD).price == hours.close[350]
    await closes.aclose()
    # A position past the end is the end: the replay is finished.
    done = ReplayFeed(bundled.series, speed=3600, monotonic=stepped)
    done.resume(done.end + 10 * 86_400)
    assert done.finished and [e async for e in done.closes()] == []


async def test_a_looping_replay_starts_again_with_every_close_of_every_lap(bundled, stepped):
    """From 4,990 hours in, looping: each consumer gets the last bars of lap 0, then the
    same bars again as lap 1 (prices back at the start's), in order, nothing lost."""
    feed = ReplayFeed(bundled.series, speed=3600, warmup_bars=4990, monotonic=stepped, loop=True)
    hours = bundled.series[(EURUSD, H1)]
    events: list[tuple[int, int]] = []
    prices: list[tuple[int, float]] = []

    async def read_closes() -> None:
        async for event in feed.closes():
            if event.timeframe == H1:
                events.append((event.lap, int(event.candles.times[-1])))

    async def read_ticks() -> None:
        async for tick in feed.ticks():
            prices.append((tick.lap, tick.price))

    readers = [asyncio.create_task(read_closes()), asyncio.create_task(read_ticks())]
    lap_hours = (feed.end - feed.start) / 3600
    try:
        await asyncio.sleep(0)
        stepped.advance(lap_hours)  # lap 0 runs out...
        await eventually(lambda: len(events) == len(prices) == 10, "the rest of lap 0")
        await eventually(lambda: feed.lap == 1, "lap 1 to start")
        assert not feed.finished
        stepped.advance(lap_hours)  # ...and lap 1 replays the same hours
        await eventually(lambda: len(events) == len(prices) == 20, "lap 1")
    finally:
        await stop_tasks(*readers)
    last_ten = [int(t) for t in hours.times[4990:5000]]
    assert events == [(0, t) for t in last_ten] + [(1, t) for t in last_ten]
    last_closes = [float(p) for p in hours.close[4990:5000]]
    assert prices == [(0, p) for p in last_closes] + [(1, p) for p in last_closes]
    assert feed.latest_tick(EURUSD).lap == feed.lap  # type: ignore[union-attr]


def test_a_pairs_price_comes_from_its_shortest_series_with_bars(bundled, stepped):
    """EUR/USD's hours end in February 2018, its daily fixings run on: after the hours,
    the pair's price is the fixing."""
    hours = bundled.series[(EURUSD, H1)]
    days = hours.times[-1] - hours.times[-1] % 86_400
    fixings = make_candles(
        EURUSD,
        D1,
        [days - 86_400, days, days + 86_400, days + 2 * 86_400],
        *([1.1, 1.2, 1.3, 1.4],) * 4,
    )
    fixings = Candles(**{**fixings.__dict__, "closes_only": True})
    feed = ReplayFeed({(EURUSD, H1): hours, (EURUSD, D1): fixings}, speed=3600, monotonic=stepped)
    stepped.advance((hours.times[-1] + 3600 - feed.start) / 3600)
    assert feed.latest_tick(EURUSD).price == hours.close[-1]  # the last hour
    stepped.advance(3 * 24)  # two more days: only the fixings have bars
    tick = feed.latest_tick(EURUSD)
    assert tick.price == tick.high == tick.low == 1.4
    ticks_of = feed._tick_rows
    daily = feed._timeline[:, 1] == 86_400
    after_hours = feed._timeline[:, 0] > hours.times[-1] + 3600
    assert ticks_of[daily & after_hours].all() and not ticks_of[daily & ~after_hours].any()

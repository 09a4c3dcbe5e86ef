"""The scheduler on real bars: a signal per configured series at each close, stored once
and published once, even with two schedulers on one database; failures stay local."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from sqlalchemy import func, select

from common.candles import Candles
from common.db import create_engine, session_factory
from common.market import Timeframe
from signal_svc import scheduler as scheduler_module
from signal_svc.engine import SignalEngine
from signal_svc.models import SignalRow
from signal_svc.repository import SignalRepository
from signal_svc.scheduler import Scheduler, configured_series
from signal_svc.signal_cache import SignalCache
from signal_svc.signals import Source
from tests.infra import eventually, make_settings
from tests.signal_engine.helpers import RecordingPublisher, ReplayFeed, closed

H1 = ("EUR/USD", Timeframe.H1)
H4 = ("EUR/USD", Timeframe.H4)


def replay(
    hours: Candles, four_hours: Candles, days: Candles, count: int = 24, **timing: float
) -> ReplayFeed:
    """`count` real hourly closes from bar 4000 with the 4h (and, unconfigured, 1d)
    closes that fall among them, in time order; history ends just before them."""
    events = []
    four = {int(t) + 4 * 3600: i for i, t in enumerate(four_hours.times)}
    day = {int(t) + 24 * 3600: i for i, t in enumerate(days.times)}
    for end in range(4000, 4000 + count):
        events.append(closed(hours, end))
        close_time = int(hours.times[end - 1]) + 3600
        if close_time in four:
            events.append(closed(four_hours, four[close_time] + 1))
        if close_time in day:
            events.append(closed(days, day[close_time] + 1))
    first_close = int(hours.times[3999])
    history = {
        H1: hours.slice(0, 3999),
        H4: four_hours.slice(0, int((four_hours.times < first_close - 4 * 3600).sum())),
    }
    return ReplayFeed(history, events, **timing)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def days() -> Candles:
    from common.market_data import load_bundled_history

    return load_bundled_history("EUR/USD", Timeframe.D1)


async def row_count(sessions) -> int:
    async with sessions() as session:
        return (await session.execute(select(func.count()).select_from(SignalRow))).scalar_one()


def expected_candles(feed: ReplayFeed, warm: bool = True) -> set[tuple[str, Timeframe, int]]:
    wanted = {H1, H4}
    keys = {
        (e.pair, e.timeframe, int(e.candles.times[-1]))
        for e in feed._closes
        if (e.pair, e.timeframe) in wanted
    }
    if warm:
        keys |= {(p, tf, int(c.times[-1])) for (p, tf), c in feed._series.items()}
    return keys


async def test_a_signal_per_configured_close_stored_cached_and_published(
    signal_db, kv_store, hours, four_hours, days
) -> None:
    feed = replay(hours, four_hours, days)
    publisher = RecordingPublisher()
    cache = SignalCache(kv_store, signal_db.repository)
    engine = SignalEngine(signal_db.settings.strategy, None)
    scheduler = Scheduler(feed, engine, signal_db.repository, publisher, [H1, H4], cache=cache)
    await asyncio.wait_for(scheduler.run(), 10)  # returns when the replay ends

    wanted = expected_candles(feed)
    assert await row_count(signal_db.sessions) == len(wanted) == scheduler.stored
    assert len(publisher.published) == len(wanted)
    assert len({s.id for s in publisher.published}) == len(wanted)
    assert all(s.id > 0 and s.source is Source.TECHNICAL_FALLBACK for s in publisher.published)
    assert {s.timeframe for s in publisher.published} == {Timeframe.H1, Timeframe.H4}  # no 1d
    # The warm start came first: the candles just before the replayed closes.
    assert [(s.pair, s.timeframe) for s in publisher.published[:2]] == [H1, H4]
    for series in (H1, H4):
        latest = await signal_db.repository.latest(*series)
        assert await cache.latest(*series) == latest
        assert latest == [s for s in publisher.published if (s.pair, s.timeframe) == series][-1]


async def test_a_close_seen_twice_is_stored_and_published_once(signal_db, hours) -> None:
    event = closed(hours, 4100)
    feed = ReplayFeed({H1: hours.slice(0, 4100)}, [event, event, closed(hours, 4101), event])
    publisher = RecordingPublisher()
    engine = SignalEngine(signal_db.settings.strategy, None)
    scheduler = Scheduler(feed, engine, signal_db.repository, publisher, [H1])
    await asyncio.wait_for(scheduler.run(), 10)
    assert await row_count(signal_db.sessions) == 2
    assert len(publisher.published) == 2
    # The warm start stored the candle; its close (repeated, merged in one batch) did not.
    assert scheduler.duplicates == 1


class BrokenOnFourHours(SignalEngine):
    """An engine whose 4h signals cannot be computed (a bug in one series)."""

    def _signal(self, event, *args):
        if event.timeframe is Timeframe.H4:
            raise RuntimeError("4h is broken")
        return super()._signal(event, *args)


async def test_a_failing_series_never_stops_the_others(signal_db, hours, four_hours, days) -> None:
    feed = replay(hours, four_hours, days)
    engine = BrokenOnFourHours(signal_db.settings.strategy, None)
    scheduler = Scheduler(feed, engine, signal_db.repository, RecordingPublisher(), [H1, H4])
    await asyncio.wait_for(scheduler.run(), 10)
    one_hour = {k for k in expected_candles(feed) if k[1] is Timeframe.H1}
    assert await row_count(signal_db.sessions) == len(one_hour) == scheduler.stored
    assert scheduler.failures >= 2


async def test_a_failing_publish_keeps_the_signal_and_the_loop(
    signal_db, hours, four_hours, days
) -> None:
    feed = replay(hours, four_hours, days)
    publisher = RecordingPublisher(fail_for={H4})
    engine = SignalEngine(signal_db.settings.strategy, None)
    scheduler = Scheduler(feed, engine, signal_db.repository, publisher, [H1, H4])
    await asyncio.wait_for(scheduler.run(), 10)
    wanted = expected_candles(feed)
    assert await row_count(signal_db.sessions) == len(wanted)
    assert {(s.pair, s.timeframe) for s in publisher.published} == {H1}


class FlakyFeed(ReplayFeed):
    """Fails once after two closes, then (subscribed again) delivers everything."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.subscriptions = 0

    async def closes(self):
        self.subscriptions += 1
        for index, event in enumerate(self._closes):
            if self.subscriptions == 1 and index == 2:
                raise ConnectionError("feed dropped")
            yield event


async def test_a_failing_feed_is_subscribed_again(signal_db, hours, monkeypatch) -> None:
    monkeypatch.setattr(scheduler_module, "RESUBSCRIBE_MIN_SECONDS", 0.01)
    events = [closed(hours, end) for end in range(4200, 4206)]
    feed = FlakyFeed({H1: hours.slice(0, 4199)}, events)
    scheduler = Scheduler(
        feed, SignalEngine(signal_db.settings.strategy, None), signal_db.repository,
        RecordingPublisher(), [H1], warm_start=False,
    )  # fmt: skip
    await asyncio.wait_for(scheduler.run(), 10)
    assert feed.subscriptions == 2
    assert await row_count(signal_db.sessions) == 6


async def test_two_schedulers_on_one_database_store_and_publish_each_candle_once(
    signal_db, hours, four_hours, days
) -> None:
    """Two replicas: own database pools, own engines, the same closes at the same time."""
    publishers, schedulers, engines = [], [], []
    feeds = [
        replay(hours, four_hours, days, count=30, interval=0.015, jitter=0.01, seed=seed)
        for seed in range(2)
    ]
    for feed in feeds:
        feed.release.clear()
        db = create_engine(signal_db.settings)
        engines.append(db)
        publisher = RecordingPublisher()
        publishers.append(publisher)
        schedulers.append(
            Scheduler(
                feed,
                SignalEngine(signal_db.settings.strategy, None),
                SignalRepository(session_factory(db)),
                publisher,
                configured_series(
                    make_settings(
                        signal_db.settings.general.var_dir, signal_timeframes=["1h", "4h"]
                    ).market
                ),
            )
        )
    try:
        runs = [asyncio.create_task(s.run()) for s in schedulers]
        await eventually(
            lambda: all(feed.waiting for feed in feeds), "both schedulers to read closes"
        )
        for feed in feeds:
            feed.release.set()
        await asyncio.wait_for(asyncio.gather(*runs), 20)
    finally:
        for db in engines:
            await db.dispose()

    wanted = expected_candles(feeds[0])
    async with signal_db.sessions() as session:
        rows = (await session.execute(select(SignalRow))).scalars().all()
    per_candle = Counter((r.pair, r.timeframe, r.candle_time) for r in rows)
    assert len(rows) == len(per_candle) == len(wanted)
    published = [s.id for p in publishers for s in p.published]
    assert sorted(published) == sorted(r.id for r in rows)  # each exactly once overall
    assert sum(s.stored for s in schedulers) == len(wanted)
    assert sum(s.duplicates for s in schedulers) == len(wanted)
    # Which replica wins each candle is up to the scheduler's timing, so it is not
    # asserted: the property is exactly one row and one publication per candle.


def test_configured_series_are_normalised(tmp_path) -> None:
    settings = make_settings(
        tmp_path, signal_pairs=["eurusd", "GBP/USD"], signal_timeframes=["1h", "4H"]
    )
    assert configured_series(settings.market) == [
        ("EUR/USD", Timeframe.H1),
        ("EUR/USD", Timeframe.H4),
        ("GBP/USD", Timeframe.H1),
        ("GBP/USD", Timeframe.H4),
    ]
    with pytest.raises(ValueError, match="supported"):
        configured_series(make_settings(tmp_path, signal_pairs=["XXX/YYY"]).market)


class RepositoryWithOutage(SignalRepository):
    """The real repository, whose database is "down" (asyncpg's raw connection
    refusal) for its first `down_for` stores."""

    def __init__(self, sessions, down_for: int) -> None:
        super().__init__(sessions)
        self.down_for = down_for
        self.refused = 0

    async def store(self, signal):
        if self.refused < self.down_for:
            self.refused += 1
            raise ConnectionRefusedError(111, "Connect call failed")
        return await super().store(signal)


async def test_a_database_outage_holds_signals_back_and_loses_none(
    signal_db, hours, four_hours, days, monkeypatch
) -> None:
    monkeypatch.setattr(scheduler_module, "STORE_RETRY_MIN_SECONDS", 0.01)
    monkeypatch.setattr(scheduler_module, "STORE_RETRY_MAX_SECONDS", 0.02)
    feed = replay(hours, four_hours, days)
    publisher = RecordingPublisher()
    repository = RepositoryWithOutage(signal_db.sessions, down_for=5)
    engine = SignalEngine(signal_db.settings.strategy, None)
    scheduler = Scheduler(feed, engine, repository, publisher, [H1, H4])
    await asyncio.wait_for(scheduler.run(), 10)
    wanted = expected_candles(feed)
    assert repository.refused == 5
    assert await row_count(signal_db.sessions) == len(wanted) == scheduler.stored
    assert sorted(s.id for s in publisher.published) == sorted({s.id for s in publisher.published})
    assert len(publisher.published) == len(wanted)
    assert scheduler.failures == 0


class RepositoryWithBug(SignalRepository):
    async def store(self, signal):
        raise ValueError("a bug, not an outage")


async def test_a_store_bug_is_not_retried(signal_db, hours) -> None:
    feed = ReplayFeed({H1: hours.slice(0, 4100)}, [closed(hours, 4101)])
    engine = SignalEngine(signal_db.settings.strategy, None)
    publisher = RecordingPublisher()
    scheduler = Scheduler(feed, engine, RepositoryWithBug(signal_db.sessions), publisher, [H1])
    await asyncio.wait_for(scheduler.run(), 10)
    assert scheduler.failures == 2 and scheduler.stored == 0 and not publisher.published

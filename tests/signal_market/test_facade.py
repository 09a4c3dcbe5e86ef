"""build_market from settings: the replay of the bundled hours and the ECB's daily
fixings by default, a user's
CSV when configured, the live provider in live mode; a bad CSV fails at startup. And
`Market.run` stops even when a child loses its cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from common.db import create_engine, session_factory
from common.kv import MemoryStore
from common.market import Timeframe
from common.market_data import CsvFormatError
from common.market_data.ecb import ECB_PAIRS
from common.shutdown import stop_tasks
from signal_svc.market import LiveFeed, ReplayFeed, build_market
from signal_svc.market.candle_store import CandleStore
from signal_svc.market.facade import Market
from signal_svc.market.prices import PriceHub
from signal_svc.ports import CandleClosed, PriceTick
from tests.infra import make_settings

EURUSD = "EUR/USD"


@pytest.fixture
async def build(tmp_path):
    engines = []

    def make(**overrides):
        settings = make_settings(tmp_path, **overrides)
        engine = create_engine(settings)
        engines.append(engine)
        return build_market(settings, session_factory(engine))

    yield make
    for engine in engines:
        await engine.dispose()


async def test_default_replays_the_bundled_hours_and_the_ecb_fixings(build, bundled):
    market = build(replay_speed=7200, stream_heartbeat_seconds=3, subscriber_buffer=9)
    assert isinstance(market.feed, ReplayFeed) and market.feed.clock.speed == 7200
    offered = market.offered()
    assert offered[EURUSD] == [Timeframe.H1, Timeframe.H4, Timeframe.D1]
    assert set(offered) == set(ECB_PAIRS)
    assert all(offered[pair] == [Timeframe.D1] for pair in offered if pair != EURUSD)
    assert (market.heartbeat_seconds, market.prices.buffer) == (3, 9)
    # The replay starts 300 hours into the bundled history; the price at market time is
    # known before the first tick.
    hours = bundled.series[(EURUSD, Timeframe.H1)]
    assert (await market.price(EURUSD)).price == hours.close[299]
    # Hours are traded bars; the daily series are ECB fixings, closes only.
    assert not market.closes_only(EURUSD, Timeframe.H1)
    assert market.closes_only(EURUSD, Timeframe.D1) and market.closes_only("GBP/JPY", Timeframe.D1)
    by_pair = {info.pair: info for info in market.pairs()}
    eur, gbp_jpy = by_pair[EURUSD], by_pair["GBP/JPY"]
    assert [s.timeframe for s in eur.series] == [Timeframe.H1, Timeframe.H4, Timeframe.D1]
    assert "backtesting" in eur.series[0].origin and "ECB" in eur.series[2].origin
    assert gbp_jpy.series[0].origin.endswith("the JPY rate divided by the GBP rate of the same day")
    assert gbp_jpy.series[0].closes_only and gbp_jpy.series[0].signals
    # Signals by default: the ten majors and crosses daily, EUR/USD also 1h and 4h.
    assert eur.timeframes == [Timeframe.H1, Timeframe.H4, Timeframe.D1]
    assert by_pair["EUR/CHF"].timeframes == []  # offered, no signals by default
    state = market.replay_state()
    assert state is not None and not state.finished and state.speed == 7200
    await market.close()


async def test_csv_replaces_the_bundled_history(build, bundled, tmp_path):
    hours = bundled.series[(EURUSD, Timeframe.H1)]
    path = tmp_path / "my-bars.csv"  # no pair in the name: the first signal pair
    rows = ["time,open,high,low,close"] + [
        f"{datetime.fromtimestamp(int(hours.times[i]), UTC).isoformat()},{float(hours.open[i])!r},"
        f"{float(hours.high[i])!r},{float(hours.low[i])!r},{float(hours.close[i])!r}"
        for i in range(2000, 2400)
    ]
    path.write_text("\n".join(rows) + "\n")
    market = build(market_data_csv=path, signal_pairs="GBPUSD,EURUSD")
    assert market.feed.source == "csv"
    assert set(market.offered()) == {"GBP/USD"}
    (info,) = market.pairs()
    assert info.pair == "GBP/USD" and info.sources == ["csv"] and info.offline
    assert info.timeframes == [Timeframe.H1, Timeframe.H4, Timeframe.D1]
    assert (await market.price("GBP/USD")).price == hours.close[2299]
    await market.close()

    path.write_text(path.read_text().replace(repr(float(hours.high[2010])), "-1", 1))
    with pytest.raises(CsvFormatError, match="line 12, column high"):
        build(market_data_csv=path)


async def test_live_mode_offers_the_signal_pairs_and_fetches_nothing_at_startup(build):
    market = build(market_data_mode="live", signal_pairs="EURUSD,USDJPY", signal_timeframes="1h,4h")
    assert isinstance(market.feed, LiveFeed) and market.feed.poll_seconds == 60
    assert set(market.offered()) == {EURUSD, "USD/JPY"}
    assert market.feed.tick_pairs() == [EURUSD, "USD/JPY"]
    infos = {info.pair: info for info in market.pairs()}
    assert infos["USD/JPY"].pip_size == 0.01
    # Offline history exists for both (hours, ECB fixings), though live serves them.
    assert infos[EURUSD].offline and infos["USD/JPY"].offline
    assert not any(series.closes_only for series in infos["USD/JPY"].series)  # Yahoo bars
    assert infos[EURUSD].timeframes == [Timeframe.H1, Timeframe.H4]
    assert market.feed.online == {}
    await market.close()


# --- stopping ------------------------------------------------------------------------------

# Generous: stopping takes one re-cancel (0.5 s); this only turns a hang into a failure.
STOP_WITHIN = 10.0


class StubbornFeed:
    """A feed offering nothing whose `closes()` loses its first cancellation, as the
    recorder's Redis writes can on Python 3.11 (asyncio.wait_for, CPython gh-86296), and
    runs on until cancelled again."""

    source = "stubborn"

    def __init__(self) -> None:
        self.cancellations = 0
        self.closes_ended = False

    def offered(self) -> dict[str, list[Timeframe]]:
        return {}

    def now(self) -> float:
        return 0.0

    def tick_pairs(self) -> list[str]:
        return []

    def latest_tick(self, pair: str) -> PriceTick | None:
        return None

    async def history(self, pair: str, timeframe: Timeframe, limit: int):  # pragma: no cover
        raise AssertionError("nothing is offered")

    async def closes(self) -> AsyncIterator[CandleClosed]:
        try:
            while True:
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    self.cancellations += 1
                    if self.cancellations > 1:
                        raise
                    # The first one is lost: the feed goes on.
            yield  # pragma: no cover (makes this an async generator)
        finally:
            self.closes_ended = True

    async def ticks(self) -> AsyncIterator[PriceTick]:
        await asyncio.Event().wait()
        yield  # pragma: no cover


async def test_the_market_stops_although_a_child_loses_its_cancellation() -> None:
    feed = StubbornFeed()
    market = Market(feed=feed, store=CandleStore(None, MemoryStore()), prices=PriceHub(8))  # type: ignore[arg-type]
    runner = asyncio.create_task(market.run())
    await market.ready.wait()
    await asyncio.sleep(0)  # the children start
    # As the server stops it; re-cancelling `run` more often than `run` re-cancels its
    # children, so the parent is cancelled again while still stopping them.
    stopping = asyncio.create_task(stop_tasks(runner, recancel_seconds=0.05))
    await asyncio.wait({stopping}, timeout=STOP_WITHIN)
    assert stopping.done(), "Market.run did not stop"
    assert runner.cancelled()
    assert feed.cancellations == 2
    assert feed.closes_ended  # the child ended before its parent did: no orphan writer
    await market.close()


async def test_a_failing_child_stops_the_other_and_is_raised() -> None:
    class Failing(StubbornFeed):
        async def ticks(self) -> AsyncIterator[PriceTick]:
            raise RuntimeError("the price source broke")
            yield  # pragma: no cover

    feed = Failing()
    market = Market(feed=feed, store=CandleStore(None, MemoryStore()), prices=PriceHub(8))  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="the price source broke"):
        await asyncio.wait_for(market.run(), STOP_WITHIN)
    assert feed.closes_ended and feed.cancellations == 2
    await market.close()

"""Live mode end to end: signal_svc with AIFX_MARKET_DATA_MODE=live polls "Yahoo
Finance" through the real yfinance code, pointed (AIFX_YAHOO_BASE_URL) at the local
stand-in of tests/yahoo_standin.py, which answers real bars in Yahoo's JSON shape and
advances a market clock, so new bars close while the test runs.

- Every configured pair: the ten pairs on daily bars — the ECB's fixings, the only
  real daily prices bundled for all of them (the stand-in sends each fixing as a daily
  bar with open = high = low = close, which Yahoo's real daily bars are not). Candles
  arrive, signals are produced for every pair, and the prices tick position_svc's
  watcher.
- Yahoo failing: EUR/USD on its real hourly bars; Yahoo rate limiting (429), failing
  (500) or answering garbage is retried with backoff, then the "market_data" health
  check says NOT_SERVING and what only Yahoo has is a clear UNAVAILABLE (stored candles
  are still served); no made-up bar, no crash — and the bars missed meanwhile once Yahoo
  is back.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pandas as pd
import pytest
from grpc_health.v1 import health_pb2

from aifx.common.v1 import market_pb2
from aifx.position.v1 import position_pb2, position_pb2_grpc
from aifx.signal.v1 import signal_pb2
from common.candles import TIMEFRAME_SECONDS, Candles
from common.market import Timeframe
from common.market_data import load_bundled_history, yahoo_symbol
from common.market_data.ecb import load_ecb_history
from common.server import start_server
from common.settings import Settings
from position_svc.price_source import decimal_price
from tests.infra import eventually
from tests.signal_e2e.conftest import SignalEdge
from tests.signal_e2e.own_service import SignalService, own_database, own_settings, serving
from tests.yahoo_standin import YahooStandin, fresh_yfinance_fixture, running_standin  # noqa: F401

PAIRS = [
    "EUR/USD", "GBP/USD", "USD/JPY", "USD/CHF", "AUD/USD",
    "USD/CAD", "NZD/USD", "EUR/GBP", "EUR/JPY", "GBP/JPY",
]  # fmt: skip
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class MarketClock:
    """Market time for the stand-in: from `start`, `speed` market seconds per second."""

    def __init__(self, start: float, speed: float) -> None:
        self.start, self.speed, self._t0 = start, speed, time.monotonic()

    def __call__(self) -> float:
        return self.start + (time.monotonic() - self._t0) * self.speed


def yahoo_frame(candles: Candles) -> pd.DataFrame:
    """Bars as the stand-in serves them: open times (naive UTC) and Yahoo's columns."""
    return pd.DataFrame(
        {
            "Open": candles.open,
            "High": candles.high,
            "Low": candles.low,
            "Close": candles.close,
            "Volume": candles.volume,
        },
        index=pd.to_datetime(candles.times, unit="s"),
    )


@contextlib.contextmanager
def standin_for(
    series: dict[tuple[str, str], pd.DataFrame], clock: MarketClock
) -> Iterator[YahooStandin]:
    with running_standin(YahooStandin(series=series, market_clock=clock)) as standin:
        yield standin


def live_settings(settings: Settings, standin: YahooStandin, **overrides: object) -> Settings:
    return settings.replace(
        market_data_mode="live",
        yahoo_base_url=standin.base_url,
        market_data_poll_seconds=0.3,
        **overrides,
    )


async def signals_of(service: SignalService, timeframe: int) -> list[signal_pb2.Signal]:
    request = signal_pb2.ListSignalsRequest(timeframe=timeframe, page_size=500)
    return list((await service.stub.ListSignals(request, metadata=service.bearer)).signals)


async def candles_of(service: SignalService, pair: str, timeframe: int, limit: int):  # type: ignore[no-untyped-def]
    request = signal_pb2.GetCandlesRequest(pair=pair, timeframe=timeframe, limit=limit)
    return await service.stub.GetCandles(request, metadata=service.bearer)


@contextlib.asynccontextmanager
async def watching_positions(
    edge: SignalEdge, directory: Path, service: SignalService
) -> AsyncIterator[position_pb2_grpc.PositionServiceStub]:
    """position_svc on a database of its own, watching `service`'s prices."""
    from position_svc.server import build

    async with own_database(edge, directory, "position_svc") as url:
        settings = edge.settings.replace(
            database_url=url,
            redis_prefix=f"{edge.settings.storage.redis_prefix}live-positions-{directory.name}:",
            signal_target=f"127.0.0.1:{service.port}",
            position_metrics_port=0,
        )
        running = await start_server(build(settings), "127.0.0.1", 0)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
        try:
            yield position_pb2_grpc.PositionServiceStub(channel)
        finally:
            await channel.close()
            await running.stop(grace=0.5)


@pytest.fixture
def fixings() -> dict[str, Candles]:
    return load_ecb_history(PAIRS)


async def test_every_configured_pair_gets_candles_signals_and_ticks(
    signal_edge: SignalEdge, tmp_path: Path, fixings: dict[str, Candles], fresh_yfinance: None
) -> None:
    series = {(yahoo_symbol(pair), "1d"): yahoo_frame(fixings[pair]) for pair in PAIRS}
    # From the first days of 2024, half a market day per second.
    clock = MarketClock(datetime(2024, 1, 3, tzinfo=UTC).timestamp(), speed=43_200)
    with standin_for(series, clock) as standin:
        async with own_settings(signal_edge, tmp_path) as settings:
            settings = live_settings(
                settings, standin, signal_pairs=PAIRS, signal_timeframes=["1d"]
            )
            async with serving(settings, signal_edge) as service:
                # Signals for every pair, from daily bars that closed while it ran.
                async def every_pair_signalled() -> bool:
                    daily = await signals_of(service, market_pb2.TIMEFRAME_D1)
                    return {s.pair for s in daily} == set(PAIRS)

                await eventually(every_pair_signalled, "a daily signal of every pair", within=60)
                assert {r.path.rsplit("/", 1)[1] for r in standin.history_requests()} == {
                    yahoo_symbol(pair) for pair in PAIRS
                }
                assert await service.health_of("market_data") == SERVING
                for signal in await signals_of(service, market_pb2.TIMEFRAME_D1):
                    fixing = fixings[signal.pair]
                    index = list(fixing.times).index(
                        signal.candle_time.ToSeconds() - TIMEFRAME_SECONDS[Timeframe.D1]
                    )
                    assert signal.entry_price == pytest.approx(fixing.close[index])

                # GetCandles serves Yahoo's bars as they are: the real fixings of the days.
                answer = await candles_of(service, "GBP/JPY", market_pb2.TIMEFRAME_D1, 5)
                assert answer.source == signal_pb2.MARKET_DATA_SOURCE_LIVE
                gbpjpy = fixings["GBP/JPY"]
                for candle in answer.candles:
                    index = list(gbpjpy.times).index(candle.open_time.ToSeconds())
                    assert candle.close == pytest.approx(gbpjpy.close[index])

                # A USD/JPY position opened at market follows the live price.
                async with watching_positions(signal_edge, tmp_path, service) as positions:
                    opened = await positions.OpenPosition(
                        position_pb2.OpenPositionRequest(
                            pair="USD/JPY", side=market_pb2.TRADE_ACTION_BUY, lot_size="0.10"
                        ),
                        metadata=signal_edge.bearer,
                    )
                    entry = opened.position.entry_price
                    usdjpy = {str(decimal_price(float(c))) for c in fixings["USD/JPY"].close}
                    assert entry in usdjpy

                    async def moved() -> str | None:
                        got = await positions.GetPosition(
                            position_pb2.GetPositionRequest(id=opened.position.id),
                            metadata=signal_edge.bearer,
                        )
                        price = got.position.current_price
                        return price if price and price != entry else None

                    price = await eventually(moved, "the watcher to see a later fixing", within=30)
                    assert price in usdjpy


@pytest.fixture
def hours() -> Candles:
    return load_bundled_history("EUR/USD", Timeframe.H1)


async def test_yahoo_failing_is_unavailable_then_caught_up(
    signal_edge: SignalEdge, tmp_path: Path, hours: Candles, fresh_yfinance: None
) -> None:
    series = {("EURUSD=X", "1h"): yahoo_frame(hours)}
    # 1,000 real hours in (June 2017), four market hours per second.
    clock = MarketClock(float(hours.times[1000]), speed=4 * 3600)
    with standin_for(series, clock) as standin:
        async with own_settings(signal_edge, tmp_path) as settings:
            settings = live_settings(
                settings, standin, signal_pairs=["EUR/USD"], signal_timeframes=["1h"]
            )
            async with serving(settings, signal_edge) as service:
                await eventually(
                    lambda: _signal_count(service, at_least=2), "hourly signals", within=30
                )
                for failure in ("http429", "http500", "garbage"):
                    await _outage(service, standin, clock, failure)
                signalled = {s.candle_time.ToSeconds() for s in await signals_of(service, 0)}
    # Every signal is on a real hour of the bundled history (nothing made up), and every
    # hour that closed since the first signal has one, outages included.
    real_closes = {int(t) + 3600 for t in hours.times}
    assert signalled <= real_closes
    since_first = {t for t in real_closes if min(signalled) <= t <= max(signalled)}
    assert since_first == signalled, "an hour that closed during an outage got no signal"


async def _outage(
    service: SignalService, standin: YahooStandin, clock: MarketClock, failure: str
) -> None:
    """Yahoo answers `failure` until the service notices; then Yahoo is back, until a
    bar that closed during the outage has its signal."""
    standin.mode = failure

    async def not_serving() -> bool:
        return await service.health_of("market_data") == NOT_SERVING

    await eventually(not_serving, f"market_data NOT_SERVING on {failure}", within=30)
    # What is stored is still served; what only Yahoo has (15-minute bars, offered on
    # demand, never polled) is clearly unavailable.
    stored = await candles_of(service, "EUR/USD", market_pb2.TIMEFRAME_H1, 5)
    assert len(stored.candles) == 5
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await candles_of(service, "EUR/USD", market_pb2.TIMEFRAME_M15, 5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, failure
    assert "Yahoo Finance is unreachable" in (refused.value.details() or ""), failure
    during = clock()
    standin.mode = "bars"

    async def serving_again() -> bool:
        return await service.health_of("market_data") == SERVING

    await eventually(serving_again, f"market_data SERVING again after {failure}", within=30)

    async def caught_up() -> bool:
        signals = await signals_of(service, 0)
        return max(s.candle_time.ToSeconds() for s in signals) > during

    await eventually(caught_up, f"signals after the {failure} outage", within=30)


async def _signal_count(service: SignalService, at_least: int) -> bool:
    return len(await signals_of(service, 0)) >= at_least

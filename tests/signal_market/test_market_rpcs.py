"""The market RPCs through the real servicers on a real grpc.aio server (the bootstrap's
interceptor maps errors): GetCandles, GetPrice, ListPairs, StreamPrices and the internal
price RPCs, every error path, on the real bundled history replayed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from aifx.common.v1 import market_pb2
from aifx.signal.v1 import signal_pb2, signal_pb2_grpc
from common.db import create_engine, session_factory
from common.grpc_metadata import SERVICE_TOKEN_HEADER
from common.kv import MemoryStore
from common.market import Timeframe
from common.migrations import upgrade
from common.server import ServiceSpec, start_server
from signal_svc.market import Market, PriceHub, ReplayFeed, build_market
from signal_svc.market_rpcs import MarketRpcs
from signal_svc.service import SignalInternalService, SignalService
from signal_svc.signal_rpcs import SignalRpcs
from signal_svc.stream_rpcs import StreamRpcs
from tests.infra import SteppedClock, eventually, make_settings
from tests.servicer_parts import SERVICE, USER, FixedGate, not_exercised

EURUSD = "EUR/USD"
SERVICE_NAMES = [
    signal_pb2.DESCRIPTOR.services_by_name["SignalService"].full_name,
    signal_pb2.DESCRIPTOR.services_by_name["SignalInternalService"].full_name,
]


class Stack:
    def __init__(self, market, channel, clock=None) -> None:
        self.market = market
        self.clock = clock
        self.stub = signal_pb2_grpc.SignalServiceStub(channel)
        self.internal = signal_pb2_grpc.SignalInternalServiceStub(channel)


@contextlib.asynccontextmanager
async def serving(market: Market) -> AsyncIterator[grpc.aio.Channel]:
    gate, handlers = FixedGate(), MarketRpcs(market)
    streams = not_exercised(StreamRpcs)
    public = SignalService(gate, handlers, not_exercised(SignalRpcs), streams)
    internal = SignalInternalService(gate, handlers, streams)

    def register(server: grpc.aio.Server) -> None:
        signal_pb2_grpc.add_SignalServiceServicer_to_server(public, server)
        signal_pb2_grpc.add_SignalInternalServiceServicer_to_server(internal, server)

    running = await start_server(
        ServiceSpec("market-test", register, SERVICE_NAMES), "127.0.0.1", 0
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        yield channel
    finally:
        await channel.close()
        await running.stop(grace=0.1)


@pytest.fixture(scope="module")
async def db(tmp_path_factory):
    settings = make_settings(tmp_path_factory.mktemp("market-rpcs"), stream_heartbeat_seconds=0.1)
    await asyncio.to_thread(upgrade, "signal_svc", settings)
    engine = create_engine(settings)
    yield settings, session_factory(engine)
    await engine.dispose()


@pytest.fixture(scope="module")
async def stack(db, bundled):
    """A market frozen 300 bars into the bundled history, with storage backfilled."""
    settings, sessions = db
    clock = SteppedClock()
    feed = ReplayFeed(
        bundled.series,
        speed=settings.market.replay_speed,
        monotonic=clock,
        origins=bundled.origins,
    )
    market = build_market(settings, sessions, feed=feed, cache=MemoryStore())
    await market.backfill()
    async with serving(market) as channel:
        yield Stack(market, channel, clock)
    await market.close()


@pytest.fixture
def prices(stack):
    """A fresh price hub for one test (seeded with the price at market time)."""
    original = stack.market.prices
    stack.market.prices = PriceHub(buffer=8)
    stack.market.prices.seed(stack.market.feed.latest_tick(EURUSD))
    yield stack.market.prices
    stack.market.prices = original


async def rpc_error(awaitable) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await awaitable
    return caught.value


async def stream_error(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    return caught.value


def violated_fields(error: grpc.aio.AioRpcError) -> list[str]:
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    bad = error_details_pb2.BadRequest()
    for packed in rpc_status.from_call(error).details:
        if packed.Unpack(bad):
            return [v.field for v in bad.field_violations]
    raise AssertionError("no BadRequest details")


def real_tick(bundled, i: int):
    from signal_svc.ports import PriceTick

    hours = bundled.series[(EURUSD, Timeframe.H1)]
    return PriceTick(
        EURUSD,
        float(hours.close[i]),
        float(hours.high[i]),
        float(hours.low[i]),
        datetime.fromtimestamp(int(hours.times[i]) + 3600, UTC),
        "replay",
    )


# --- GetCandles -------------------------------------------------------------------------


async def test_get_candles_returns_the_latest_closed_real_bars(stack, bundled):
    hours = bundled.series[(EURUSD, Timeframe.H1)]
    reply = await stack.stub.GetCandles(signal_pb2.GetCandlesRequest(pair="eurusd"), metadata=USER)
    assert reply.pair == EURUSD and reply.timeframe == market_pb2.TIMEFRAME_H1
    assert reply.source == signal_pb2.MARKET_DATA_SOURCE_REPLAY
    assert len(reply.candles) == 100  # the default
    np.testing.assert_array_equal(
        [c.open_time.seconds for c in reply.candles], hours.times[200:300]
    )
    np.testing.assert_array_equal([c.close for c in reply.candles], hours.close[200:300])
    np.testing.assert_array_equal([c.volume for c in reply.candles], hours.volume[200:300])


async def test_get_candles_limits_and_timeframes(stack, bundled):
    request = signal_pb2.GetCandlesRequest
    everything = await stack.stub.GetCandles(request(pair="EUR/USD", limit=5000), metadata=USER)
    assert len(everything.candles) == 300  # capped at 1000; only 300 bars have closed
    one = await stack.stub.GetCandles(request(pair="EUR/USD", limit=1), metadata=USER)
    assert one.candles[0] == everything.candles[-1]

    days = bundled.series[(EURUSD, Timeframe.D1)]
    now = stack.market.feed.now()
    closed_days = days.times[days.times + 86400 <= now]
    reply = await stack.stub.GetCandles(
        request(pair="EURUSD", timeframe=market_pb2.TIMEFRAME_D1, limit=1000), metadata=USER
    )
    assert [c.open_time.seconds for c in reply.candles] == list(closed_days)


async def test_get_candles_bad_input_names_every_field(stack):
    error = await rpc_error(
        stack.stub.GetCandles(
            signal_pb2.GetCandlesRequest(pair="XYZABC", timeframe=99, limit=-1), metadata=USER
        )
    )
    assert violated_fields(error) == ["pair", "timeframe", "limit"]
    error = await rpc_error(stack.stub.GetCandles(signal_pb2.GetCandlesRequest(), metadata=USER))
    assert violated_fields(error) == ["pair"]


async def test_get_candles_without_data_is_not_found_naming_what_is_offered(stack):
    error = await rpc_error(
        stack.stub.GetCandles(signal_pb2.GetCandlesRequest(pair="GBPUSD"), metadata=USER)
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "GBP/USD" in error.details() and "offered: EUR/USD (1h, 4h, 1d)" in error.details()
    error = await rpc_error(
        stack.stub.GetCandles(
            signal_pb2.GetCandlesRequest(pair="EURUSD", timeframe=market_pb2.TIMEFRAME_M15),
            metadata=USER,
        )
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND and "15m" in error.details()


async def test_every_rpc_needs_authentication(stack):
    bad = (("authorization", "Bearer nope"),)
    calls = [
        stack.stub.GetCandles(signal_pb2.GetCandlesRequest(pair="EURUSD")),
        stack.stub.GetPrice(signal_pb2.GetPriceRequest(pair="EURUSD"), metadata=bad),
        stack.stub.ListPairs(signal_pb2.ListPairsRequest()),
        stack.internal.GetPriceInternal(signal_pb2.GetPriceInternalRequest(pair="EURUSD")),
        # The internal RPCs take the service credential, not a user's token.
        stack.internal.GetPriceInternal(
            signal_pb2.GetPriceInternalRequest(pair="EURUSD"), metadata=USER
        ),
        stack.internal.GetPriceInternal(
            signal_pb2.GetPriceInternalRequest(pair="EURUSD"),
            metadata=((SERVICE_TOKEN_HEADER, "wrong"),),
        ),
    ]
    for call in calls:
        assert (await rpc_error(call)).code() == grpc.StatusCode.UNAUTHENTICATED
    streams = [
        stack.stub.StreamPrices(signal_pb2.StreamPricesRequest(pairs=["EURUSD"]), metadata=bad),
        stack.internal.StreamPricesInternal(
            signal_pb2.StreamPricesInternalRequest(), metadata=USER
        ),
    ]
    for call in streams:
        assert (await stream_error(call)).code() == grpc.StatusCode.UNAUTHENTICATED


# --- GetPrice ---------------------------------------------------------------------------


async def test_get_price_is_the_close_at_market_time(stack, bundled, prices):
    hours = bundled.series[(EURUSD, Timeframe.H1)]
    for spelling in ("EUR/USD", "eur-usd", "EURUSD"):
        reply = await stack.stub.GetPrice(signal_pb2.GetPriceRequest(pair=spelling), metadata=USER)
        price = reply.price
        assert price.pair == EURUSD and price.price == hours.close[299]
        assert price.time.seconds == hours.times[299] + 3600
        assert price.source == signal_pb2.MARKET_DATA_SOURCE_REPLAY
        assert not price.HasField("bid") and not price.HasField("ask")
    internal = await stack.internal.GetPriceInternal(
        signal_pb2.GetPriceInternalRequest(pair="eurusd"), metadata=SERVICE
    )
    assert internal.price == reply.price


async def test_get_price_errors(stack):
    error = await rpc_error(
        stack.stub.GetPrice(signal_pb2.GetPriceRequest(pair="EU"), metadata=USER)
    )
    assert violated_fields(error) == ["pair"]
    error = await rpc_error(
        stack.stub.GetPrice(signal_pb2.GetPriceRequest(pair="USD/JPY"), metadata=USER)
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND and "offered: EUR/USD" in error.details()
    error = await rpc_error(
        stack.internal.GetPriceInternal(
            signal_pb2.GetPriceInternalRequest(pair="?"), metadata=SERVICE
        )
    )
    assert violated_fields(error) == ["pair"]


# --- ListPairs --------------------------------------------------------------------------


async def test_list_pairs_offers_only_pairs_with_real_data(stack, bundled):
    reply = await stack.stub.ListPairs(signal_pb2.ListPairsRequest(), metadata=USER)
    hours = bundled.series[(EURUSD, Timeframe.H1)]
    (info,) = reply.pairs
    assert (info.pair, info.base_currency, info.quote_currency) == (EURUSD, "EUR", "USD")
    assert info.pip_size == 0.0001
    assert (info.online, info.offline) == (False, True)
    assert list(info.sources) == [signal_pb2.MARKET_DATA_SOURCE_REPLAY]
    # settings.market.signal_timeframes (1h, 4h, 1d) that have data.
    hours_4_1 = [market_pb2.TIMEFRAME_H1, market_pb2.TIMEFRAME_H4, market_pb2.TIMEFRAME_D1]
    assert list(info.timeframes) == hours_4_1
    assert info.offline_start_time.seconds == hours.times[0]
    assert info.offline_end_time.seconds == hours.times[-1]
    assert [s.timeframe for s in info.series] == hours_4_1
    assert {s.price_kind for s in info.series} == {market_pb2.PRICE_KIND_OHLC}
    assert all("backtesting" in s.origin and s.signals for s in info.series)
    assert info.series[0].first_bar_time.seconds == hours.times[0]
    assert reply.replay.speed == stack.market.feed.clock.speed and not reply.replay.finished
    assert reply.next_page_token == ""
    one = await stack.stub.ListPairs(signal_pb2.ListPairsRequest(page_size=1), metadata=USER)
    assert list(one.pairs) == list(reply.pairs) and one.next_page_token == ""


async def test_list_pairs_bad_paging(stack):
    error = await rpc_error(
        stack.stub.ListPairs(signal_pb2.ListPairsRequest(page_size=-1), metadata=USER)
    )
    assert violated_fields(error) == ["page_size"]
    error = await rpc_error(
        stack.stub.ListPairs(signal_pb2.ListPairsRequest(page_token="garbage"), metadata=USER)
    )
    assert violated_fields(error) == ["page_token"]


def test_pip_size_of_jpy_quotes():
    from signal_svc.market import pip_size

    assert pip_size("USD/JPY") == 0.01 and pip_size("EUR/GBP") == 0.0001


# --- StreamPrices -----------------------------------------------------------------------


async def test_stream_prices_latest_first_then_updates_then_heartbeats(stack, bundled, prices):
    call = stack.stub.StreamPrices(
        signal_pb2.StreamPricesRequest(pairs=["EURUSD", "eur/usd"]), metadata=USER
    )
    first = await call.read()
    hours = bundled.series[(EURUSD, Timeframe.H1)]
    assert first.WhichOneof("event") == "price" and first.price.price == hours.close[299]
    for i in (300, 301, 302):
        prices.publish(real_tick(bundled, i))
    for i in (300, 301, 302):
        update = await asyncio.wait_for(call.read(), 2)
        assert update.price.price == hours.close[i]
        assert update.price.time.seconds == hours.times[i] + 3600
    idle = await asyncio.wait_for(call.read(), 2)  # heartbeat after 0.1 s of nothing
    assert idle.WhichOneof("event") == "heartbeat"
    assert abs(idle.heartbeat.time.seconds - datetime.now(UTC).timestamp()) < 5
    call.cancel()

    async def unsubscribed() -> bool:  # the subscription goes away with the stream
        return len(prices) == 0

    await eventually(unsubscribed, "the price subscription to go away", within=5)


async def test_stream_prices_errors(stack):
    cases = [
        ([], ["pairs"]),
        (["EURUSD", "nope"], ["pairs[1]"]),
        (["x", "EURUSD", "y"], ["pairs[0]", "pairs[2]"]),
    ]
    for pairs, fields in cases:
        call = stack.stub.StreamPrices(signal_pb2.StreamPricesRequest(pairs=pairs), metadata=USER)
        assert violated_fields(await stream_error(call)) == fields
    call = stack.stub.StreamPrices(
        signal_pb2.StreamPricesRequest(pairs=["EURUSD", "GBPJPY"]), metadata=USER
    )
    error = await stream_error(call)
    assert error.code() == grpc.StatusCode.NOT_FOUND and "GBP/JPY" in error.details()


async def test_stream_prices_internal_carries_the_range(stack, bundled, prices):
    call = stack.internal.StreamPricesInternal(
        signal_pb2.StreamPricesInternalRequest(),
        metadata=SERVICE,  # empty: every pair
    )
    hours = bundled.series[(EURUSD, Timeframe.H1)]
    first = (await call.read()).update
    assert (first.price.price, first.high, first.low) == (
        hours.close[299],
        hours.high[299],
        hours.low[299],
    )
    prices.publish(real_tick(bundled, 300))
    update = (await asyncio.wait_for(call.read(), 2)).update
    assert (update.price.price, update.high, update.low) == (
        hours.close[300],
        hours.high[300],
        hours.low[300],
    )
    assert (await asyncio.wait_for(call.read(), 2)).WhichOneof("event") == "heartbeat"
    call.cancel()
    error = await stream_error(
        stack.internal.StreamPricesInternal(
            signal_pb2.StreamPricesInternalRequest(pairs=["AUDUSD"]), metadata=SERVICE
        )
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND


# --- the whole market running -------------------------------------------------------------


async def test_running_market_streams_prices_and_stores_closes(db, bundled):
    """market.run() on a fast clock: prices stream as the replay's hours close, and
    GetCandles sees the bars the recorder stored."""
    settings, sessions = db
    hours = bundled.series[(EURUSD, Timeframe.H1)]
    gaps = np.diff(hours.times)
    warmup = next(i for i in range(600, 5000) if (gaps[i - 1 : i + 10] == 3600).all())
    feed = ReplayFeed(bundled.series, speed=3600 * 40, warmup_bars=warmup)
    market = build_market(settings, sessions, feed=feed, cache=MemoryStore())
    async with serving(market) as channel:
        stub = signal_pb2_grpc.SignalServiceStub(channel)
        call = stub.StreamPrices(signal_pb2.StreamPricesRequest(pairs=["EURUSD"]), metadata=USER)
        runner = asyncio.create_task(market.run())
        seen = []
        while len(seen) < 6:
            message = await asyncio.wait_for(call.read(), 2)
            if message.WhichOneof("event") == "price":
                seen.append((message.price.time.seconds, message.price.price))
        call.cancel()
        # The latest price, then each hour as it closed: consecutive real bars (the
        # first is the price at market time when the stream opened).
        first = int(np.searchsorted(hours.times, seen[0][0] - 3600))
        assert first >= warmup - 1
        assert seen == [
            (int(hours.times[i]) + 3600, float(hours.close[i])) for i in range(first, first + 6)
        ]

        request = signal_pb2.GetCandlesRequest(pair="EURUSD", limit=3)

        async def recorded() -> signal_pb2.GetCandlesResponse | None:
            """The stored candles once the sixth bar is among them (the recorder stores
            each bar right after it closes)."""
            reply = await stub.GetCandles(request, metadata=USER)
            return reply if reply.candles[-1].open_time.seconds >= hours.times[first + 5] else None

        reply = await eventually(recorded, "the sixth bar to be stored")
        got = [c.open_time.seconds for c in reply.candles]
        oldest = int(np.searchsorted(hours.times, got[0]))
        assert got == list(hours.times[oldest : oldest + 3])  # stored real bars, consecutive
        assert got[-1] >= hours.times[first + 5]  # recorded as they closed
        assert got[-1] + 3600 <= market.feed.now()
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
    await market.close()

"""The market-data RPCs of SignalService (GetCandles, GetPrice, StreamPrices, ListPairs)
and SignalInternalService (GetPriceInternal, StreamPricesInternal), for the servicers to
delegate to once they have admitted the caller.

Proto ⇄ domain translation only; what is offered, stored and priced is `Market`'s.
Streams write their responses (`context.write`), like the signal streams.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any

import grpc

from aifx.common.v1 import market_pb2
from aifx.signal.v1 import signal_pb2
from common import pagination, request_fields
from common.errors import FieldViolation, InvalidArgument, ViolationCollector
from common.market import Timeframe
from common.proto_convert import TIMEFRAME_TO_PROTO, timestamp, timestamp_from_epoch
from common.time import utcnow
from signal_svc.market import DEFAULT_CANDLES, MAX_CANDLES, Market, PairInfo, StoredCandles
from signal_svc.market.facade import ReplayState, SeriesInfo
from signal_svc.ports import PriceTick

SOURCE_TO_PROTO: dict[str, signal_pb2.MarketDataSource.ValueType] = {
    "live": signal_pb2.MARKET_DATA_SOURCE_LIVE,
    "replay": signal_pb2.MARKET_DATA_SOURCE_REPLAY,
    "csv": signal_pb2.MARKET_DATA_SOURCE_CSV,
}
# ListPairs pages carry no filters: every token is issued for the same (empty) ones.
_PAIRS_FILTERS = pagination.fingerprint({"list": "pairs"})


# --- requests → domain ------------------------------------------------------------------


def parse_limit(value: int, violations: ViolationCollector) -> int:
    """0 means DEFAULT_CANDLES; more than MAX_CANDLES is capped; negative is refused."""
    if value < 0:
        violations.add("limit", f"must be 1 to {MAX_CANDLES} (0 means {DEFAULT_CANDLES})")
        return DEFAULT_CANDLES
    return min(value or DEFAULT_CANDLES, MAX_CANDLES)


def page_offset(token: str, total: int) -> int:
    """Where the page of `token` starts (0 without one); InvalidArgument when the token
    was not issued by ListPairs or points past the list."""
    if not token:
        return 0
    offset = pagination.decode_page_token(token, _PAIRS_FILTERS, "request")
    if not isinstance(offset, int) or isinstance(offset, bool) or not 0 < offset <= total:
        raise InvalidArgument([FieldViolation("page_token", "is not a token this service issued")])
    return offset


# --- domain → responses -----------------------------------------------------------------


def source_message(source: str | None) -> signal_pb2.MarketDataSource.ValueType:
    return SOURCE_TO_PROTO.get(source or "", signal_pb2.MARKET_DATA_SOURCE_UNSPECIFIED)


def candles_response(
    pair: str, timeframe: Timeframe, stored: StoredCandles, closes_only: bool
) -> signal_pb2.GetCandlesResponse:
    c = stored.candles
    return signal_pb2.GetCandlesResponse(
        pair=pair,
        timeframe=TIMEFRAME_TO_PROTO[timeframe],
        candles=[
            market_pb2.Candle(
                open_time=timestamp_from_epoch(int(c.times[i])),
                open=float(c.open[i]),
                high=float(c.high[i]),
                low=float(c.low[i]),
                close=float(c.close[i]),
                volume=float(c.volume[i]),
            )
            for i in range(len(c))
        ],
        source=source_message(stored.source),
        price_kind=price_kind_message(closes_only),
    )


def price_kind_message(closes_only: bool) -> market_pb2.PriceKind.ValueType:
    return market_pb2.PRICE_KIND_CLOSES_ONLY if closes_only else market_pb2.PRICE_KIND_OHLC


def series_message(info: SeriesInfo) -> signal_pb2.SeriesInfo:
    message = signal_pb2.SeriesInfo(
        timeframe=TIMEFRAME_TO_PROTO[info.timeframe],
        price_kind=price_kind_message(info.closes_only),
        source=source_message(info.source),
        origin=info.origin,
        signals=info.signals,
    )
    if info.first_bar is not None and info.last_bar is not None:
        message.first_bar_time.CopyFrom(timestamp_from_epoch(info.first_bar))
        message.last_bar_time.CopyFrom(timestamp_from_epoch(info.last_bar))
    return message


def replay_message(state: ReplayState) -> signal_pb2.ReplayState:
    return signal_pb2.ReplayState(
        market_time=timestamp_from_epoch(int(state.market_time)),
        start_time=timestamp_from_epoch(int(state.start_time)),
        end_time=timestamp_from_epoch(int(state.end_time)),
        speed=state.speed,
        finished=state.finished,
        loops=state.loops,
        lap=state.lap,
    )


def price_message(tick: PriceTick) -> signal_pb2.Price:
    # bid/ask stay unset: no source AIFX uses quotes both sides.
    return signal_pb2.Price(
        pair=tick.pair,
        price=tick.price,
        time=timestamp(tick.time),
        source=source_message(tick.source),
    )


def price_update(tick: PriceTick) -> signal_pb2.PriceUpdate:
    return signal_pb2.PriceUpdate(
        price=price_message(tick),
        high=max(tick.high, tick.price),
        low=min(tick.low, tick.price),
        replay_lap=tick.lap,
    )


def pair_message(info: PairInfo) -> signal_pb2.PairInfo:
    message = signal_pb2.PairInfo(
        pair=info.pair,
        base_currency=info.base_currency,
        quote_currency=info.quote_currency,
        pip_size=info.pip_size,
        online=info.online,
        offline=info.offline,
        sources=[source_message(s) for s in info.sources],
        timeframes=[TIMEFRAME_TO_PROTO[tf] for tf in info.timeframes],
        series=[series_message(series) for series in info.series],
    )
    if info.offline and info.offline_start is not None and info.offline_end is not None:
        message.offline_start_time.CopyFrom(timestamp_from_epoch(info.offline_start))
        message.offline_end_time.CopyFrom(timestamp_from_epoch(info.offline_end))
    return message


def heartbeat() -> signal_pb2.Heartbeat:
    return signal_pb2.Heartbeat(time=timestamp(utcnow()))


class MarketRpcs:
    def __init__(self, market: Market) -> None:
        self._market = market

    async def get_candles(
        self, request: signal_pb2.GetCandlesRequest
    ) -> signal_pb2.GetCandlesResponse:
        violations = ViolationCollector()
        series = request_fields.series(request.pair, request.timeframe, violations)
        limit = parse_limit(request.limit, violations)
        violations.raise_if_any()
        assert series is not None
        pair, timeframe = series
        stored = await self._market.candles(pair, timeframe, limit)
        return candles_response(pair, timeframe, stored, self._market.closes_only(pair, timeframe))

    async def get_price(self, request: signal_pb2.GetPriceRequest) -> signal_pb2.GetPriceResponse:
        return signal_pb2.GetPriceResponse(price=await self._price(request.pair))

    async def get_price_internal(
        self, request: signal_pb2.GetPriceInternalRequest
    ) -> signal_pb2.GetPriceInternalResponse:
        return signal_pb2.GetPriceInternalResponse(price=await self._price(request.pair))

    async def _price(self, raw_pair: str) -> signal_pb2.Price:
        violations = ViolationCollector()
        pair = request_fields.pair(raw_pair, "pair", violations, required=True)
        violations.raise_if_any()
        assert pair is not None
        return price_message(await self._market.price(pair))

    async def list_pairs(
        self, request: signal_pb2.ListPairsRequest
    ) -> signal_pb2.ListPairsResponse:
        size = pagination.effective_page_size(request.page_size)
        infos = self._market.pairs()
        offset = page_offset(request.page_token, len(infos))
        following = offset + size
        response = signal_pb2.ListPairsResponse(
            pairs=[pair_message(info) for info in infos[offset:following]],
            next_page_token=(
                pagination.encode_page_token(following, _PAIRS_FILTERS)
                if following < len(infos)
                else ""
            ),
        )
        replay = self._market.replay_state()
        if replay is not None:
            response.replay.CopyFrom(replay_message(replay))
        return response

    # Like the signal streams: the request is checked at once, and the writing
    # coroutine returned for the servicer to await (one frame less per stream).

    def stream_prices(
        self, request: signal_pb2.StreamPricesRequest, context: grpc.aio.ServicerContext
    ) -> Coroutine[Any, Any, None]:
        """Writes StreamPricesResponse messages: at least one pair is required."""
        pairs = self._stream_pairs(request.pairs, required=True)
        return self._write_prices(
            context,
            self._price_stream(pairs),
            lambda tick: signal_pb2.StreamPricesResponse(price=price_message(tick)),
            lambda: signal_pb2.StreamPricesResponse(heartbeat=heartbeat()),
        )

    def stream_prices_internal(
        self, request: signal_pb2.StreamPricesInternalRequest, context: grpc.aio.ServicerContext
    ) -> Coroutine[Any, Any, None]:
        """Writes StreamPricesInternalResponse messages (every pair when none is named),
        each update with the range traded since the previous one."""
        pairs = self._stream_pairs(request.pairs, required=False)
        return self._write_prices(
            context,
            self._price_stream(pairs or None),
            lambda tick: signal_pb2.StreamPricesInternalResponse(update=price_update(tick)),
            lambda: signal_pb2.StreamPricesInternalResponse(heartbeat=heartbeat()),
        )

    def _stream_pairs(self, raw: Sequence[str], *, required: bool) -> list[str]:
        violations = ViolationCollector()
        pairs = request_fields.pairs(raw, "pairs", violations, required=required)
        violations.raise_if_any()
        for pair in pairs:
            self._market.require_pair(pair)
        return pairs

    @staticmethod
    async def _write_prices(
        context: grpc.aio.ServicerContext,
        ticks: AsyncIterator[PriceTick | None],
        update: Callable[[PriceTick], object],
        beat: Callable[[], object],
    ) -> None:
        async for tick in ticks:
            await context.write(beat() if tick is None else update(tick))

    async def _price_stream(self, pairs: list[str] | None) -> AsyncIterator[PriceTick | None]:
        """The latest known price of each pair, then every update; None when a heartbeat
        is due (nothing sent for market.heartbeat_seconds)."""
        with self._market.prices.subscribe(pairs) as subscription:
            known = {tick.pair for tick in subscription.snapshot}
            for tick in subscription.snapshot:
                yield tick
            # Pairs with no tick yet: the price at the feed's current time, if any.
            for pair in pairs or []:
                current = None if pair in known else self._market.feed.latest_tick(pair)
                if current is not None:
                    yield current
            while True:
                yield await subscription.next(timeout=self._market.heartbeat_seconds)

"""The market-data RPCs of SignalService and SignalInternalService, as mixins.

The lead composes them into the servicers, e.g.

    class SignalService(MarketRpcs, SignalRpcs, StreamRpcs, SignalServiceServicer): ...
    class SignalInternalService(MarketInternalRpcs, ..., SignalInternalServiceServicer): ...

and the composed class provides:

- `self.market`: a `signal_svc.market.Market`;
- `async def authenticate(self, context) -> Caller`: the caller, or raises
  (Unauthenticated, ...). Every RPC here calls it first. The internal RPCs also require
  the caller to be a service (`caller.is_service`).

Proto ⇄ domain translation only; what is offered, stored and priced is `Market`'s.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc

from aifx.common.v1 import market_pb2
from aifx.signal.v1 import signal_pb2
from common.errors import FieldViolation, InvalidArgument, Unauthenticated, ViolationCollector
from common.market import Timeframe, normalize_pair
from common.proto_convert import (
    TIMEFRAME_FROM_PROTO,
    TIMEFRAME_TO_PROTO,
    timestamp,
    timestamp_from_epoch,
)
from common.time import utcnow
from signal_svc.market import DEFAULT_CANDLES, MAX_CANDLES, Market, PairInfo, StoredCandles
from signal_svc.ports import PriceTick

SOURCE_TO_PROTO: dict[str, signal_pb2.MarketDataSource.ValueType] = {
    "live": signal_pb2.MARKET_DATA_SOURCE_LIVE,
    "replay": signal_pb2.MARKET_DATA_SOURCE_REPLAY,
    "csv": signal_pb2.MARKET_DATA_SOURCE_CSV,
}
DEFAULT_PAIRS_PAGE = 100
MAX_PAIRS_PAGE = 500
_PAGE_TOKEN_PREFIX = "pairs:"  # noqa: S105 (not a secret)


# --- requests → domain ------------------------------------------------------------------


def parse_pair(raw: str, field: str, violations: ViolationCollector) -> str | None:
    """A normalised pair, or None with a violation naming `field`."""
    if not raw.strip():
        violations.add(field, "a currency pair is required, e.g. EUR/USD or EURUSD")
        return None
    try:
        return normalize_pair(raw)
    except ValueError as exc:
        violations.add(field, str(exc))
        return None


def parse_timeframe(
    value: market_pb2.Timeframe.ValueType, field: str, violations: ViolationCollector
) -> Timeframe | None:
    """TIMEFRAME_UNSPECIFIED means 1h; an unknown number is a violation."""
    if value == market_pb2.TIMEFRAME_UNSPECIFIED:
        return Timeframe.H1
    timeframe = TIMEFRAME_FROM_PROTO.get(value)
    if timeframe is None:
        names = ", ".join(market_pb2.Timeframe.Name(v) for v in TIMEFRAME_TO_PROTO.values())
        violations.add(field, f"{value} is not a timeframe; use one of {names}")
    return timeframe


def parse_limit(value: int, violations: ViolationCollector) -> int:
    """0 means DEFAULT_CANDLES; more than MAX_CANDLES is capped; negative is refused."""
    if value < 0:
        violations.add("limit", f"must be 1 to {MAX_CANDLES} (0 means {DEFAULT_CANDLES})")
        return DEFAULT_CANDLES
    return min(value or DEFAULT_CANDLES, MAX_CANDLES)


def parse_pairs(raw: list[str], violations: ViolationCollector, *, required: bool) -> list[str]:
    """Normalised pairs, each once, in request order; `pairs[i]` names a bad one."""
    if required and not raw:
        violations.add("pairs", "at least one currency pair is required, e.g. EUR/USD")
    pairs = (parse_pair(value, f"pairs[{i}]", violations) for i, value in enumerate(raw))
    return list(dict.fromkeys(p for p in pairs if p is not None))


def page_token_offset(token: str, total: int) -> int:
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4)).decode()
        if not text.startswith(_PAGE_TOKEN_PREFIX):
            raise ValueError(text)
        offset = int(text.removeprefix(_PAGE_TOKEN_PREFIX))
        if not 0 < offset <= total:
            raise ValueError(offset)
    except ValueError:
        raise InvalidArgument(
            [FieldViolation("page_token", "not a page token this server issued for ListPairs")]
        ) from None
    return offset


def _page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"{_PAGE_TOKEN_PREFIX}{offset}".encode()).decode().rstrip("=")


# --- domain → responses -----------------------------------------------------------------


def source_message(source: str | None) -> signal_pb2.MarketDataSource.ValueType:
    return SOURCE_TO_PROTO.get(source or "", signal_pb2.MARKET_DATA_SOURCE_UNSPECIFIED)


def candles_response(
    pair: str, timeframe: Timeframe, stored: StoredCandles
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
    )
    if info.offline and info.offline_start is not None and info.offline_end is not None:
        message.offline_start_time.CopyFrom(timestamp_from_epoch(info.offline_start))
        message.offline_end_time.CopyFrom(timestamp_from_epoch(info.offline_end))
    return message


def heartbeat() -> signal_pb2.Heartbeat:
    return signal_pb2.Heartbeat(time=timestamp(utcnow()))


# --- the mixins -------------------------------------------------------------------------


class _MarketBase:
    # Set by the composed servicer. `authenticate` is declared for type checkers only: a
    # real method here would shadow the composed class's own when it comes from a base
    # later in the MRO.
    market: Market

    if TYPE_CHECKING:

        async def authenticate(self, context: grpc.aio.ServicerContext) -> Any: ...

    async def _authenticate_service(self, context: grpc.aio.ServicerContext) -> Any:
        caller = await self.authenticate(context)
        if not getattr(caller, "is_service", False):
            raise Unauthenticated(
                "this RPC is service-to-service: it needs the service credential",
                reason="SERVICE_TOKEN",
            )
        return caller

    def _pairs_with_data(self, pairs: list[str]) -> None:
        for pair in pairs:
            self.market.require_pair(pair)

    async def _price_stream(self, pairs: list[str] | None) -> AsyncIterator[PriceTick | None]:
        """The latest known price of each pair, then every update; None when a heartbeat
        is due (nothing sent for market.heartbeat_seconds)."""
        with self.market.prices.subscribe(pairs) as subscription:
            known = {tick.pair for tick in subscription.snapshot}
            for tick in subscription.snapshot:
                yield tick
            # Pairs with no tick yet: the price at the feed's current time, if any.
            for pair in pairs or []:
                current = None if pair in known else self.market.feed.latest_tick(pair)
                if current is not None:
                    yield current
            while True:
                yield await subscription.next(timeout=self.market.heartbeat_seconds)


class MarketRpcs(_MarketBase):
    """GetCandles, GetPrice, StreamPrices, ListPairs of SignalService."""

    async def GetCandles(self, request, context):  # noqa: N802
        await self.authenticate(context)
        violations = ViolationCollector()
        pair = parse_pair(request.pair, "pair", violations)
        timeframe = parse_timeframe(request.timeframe, "timeframe", violations)
        limit = parse_limit(request.limit, violations)
        violations.raise_if_any()
        assert pair is not None and timeframe is not None
        stored = await self.market.candles(pair, timeframe, limit)
        return candles_response(pair, timeframe, stored)

    async def GetPrice(self, request, context):  # noqa: N802
        await self.authenticate(context)
        violations = ViolationCollector()
        pair = parse_pair(request.pair, "pair", violations)
        violations.raise_if_any()
        assert pair is not None
        return signal_pb2.GetPriceResponse(price=price_message(await self.market.price(pair)))

    async def StreamPrices(self, request, context):  # noqa: N802
        await self.authenticate(context)
        violations = ViolationCollector()
        pairs = parse_pairs(list(request.pairs), violations, required=True)
        violations.raise_if_any()
        self._pairs_with_data(pairs)
        async for tick in self._price_stream(pairs):
            if tick is None:
                yield signal_pb2.StreamPricesResponse(heartbeat=heartbeat())
            else:
                yield signal_pb2.StreamPricesResponse(price=price_message(tick))

    async def ListPairs(self, request, context):  # noqa: N802
        await self.authenticate(context)
        if request.page_size < 0:
            raise InvalidArgument(
                [
                    FieldViolation(
                        "page_size",
                        f"must be 1 to {MAX_PAIRS_PAGE} (0 means {DEFAULT_PAIRS_PAGE})",
                    )
                ]
            )
        size = min(request.page_size or DEFAULT_PAIRS_PAGE, MAX_PAIRS_PAGE)
        infos = self.market.pairs()
        offset = page_token_offset(request.page_token, len(infos))
        page = infos[offset : offset + size]
        following = offset + size
        return signal_pb2.ListPairsResponse(
            pairs=[pair_message(info) for info in page],
            next_page_token=_page_token(following) if following < len(infos) else "",
        )


class MarketInternalRpcs(_MarketBase):
    """GetPriceInternal, StreamPricesInternal of SignalInternalService (service
    credential required)."""

    async def GetPriceInternal(self, request, context):  # noqa: N802
        await self._authenticate_service(context)
        violations = ViolationCollector()
        pair = parse_pair(request.pair, "pair", violations)
        violations.raise_if_any()
        assert pair is not None
        price = price_message(await self.market.price(pair))
        return signal_pb2.GetPriceInternalResponse(price=price)

    async def StreamPricesInternal(self, request, context):  # noqa: N802
        await self._authenticate_service(context)
        violations = ViolationCollector()
        pairs = parse_pairs(list(request.pairs), violations, required=False)
        violations.raise_if_any()
        self._pairs_with_data(pairs)
        async for tick in self._price_stream(pairs or None):
            if tick is None:
                yield signal_pb2.StreamPricesInternalResponse(heartbeat=heartbeat())
            else:
                yield signal_pb2.StreamPricesInternalResponse(update=price_update(tick))

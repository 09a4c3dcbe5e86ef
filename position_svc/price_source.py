"""Prices from signal_svc, over its internal gRPC API with the service credential.

`current(pair)` is the market price for an open or close at market (GetPriceInternal);
`ticks(pairs)` is the live feed the watcher reacts to (StreamPricesInternal): every
update carries the range traded since the previous one, so a level touched between two
updates is not missed.

The channel is created on first use, inside the running event loop (a grpc.aio channel
is bound to the loop it was created in).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from decimal import Decimal

import grpc

from aifx.signal.v1 import signal_pb2, signal_pb2_grpc
from common.errors import FieldViolation, InvalidArgument, Unavailable
from common.grpc_metadata import SERVICE_TOKEN_HEADER
from common.time import as_utc
from position_svc.pnl import Tick

# A quote has at most 6 decimals on every source AIFX reads; rounding the double there
# turns 1.0834500000000001 back into the 1.08345 the source sent.
PRICE_DECIMALS = 6


def decimal_price(value: float) -> Decimal:
    return Decimal(repr(round(value, PRICE_DECIMALS)))


def tick_from_update(update: signal_pb2.PriceUpdate) -> Tick:
    return Tick(
        pair=update.price.pair,
        price=decimal_price(update.price.price),
        high=decimal_price(update.high),
        low=decimal_price(update.low),
        time=as_utc(update.price.time.ToDatetime()),
    )


class PriceSource:
    def __init__(self, target: str, service_token: str, timeout_seconds: float = 2.0) -> None:
        self.target = target
        self._metadata = ((SERVICE_TOKEN_HEADER, service_token),)
        self._timeout = timeout_seconds
        self._channel: grpc.aio.Channel | None = None
        self._stub: signal_pb2_grpc.SignalInternalServiceStub | None = None

    def _client(self) -> signal_pb2_grpc.SignalInternalServiceStub:
        if self._stub is None:
            self._channel = grpc.aio.insecure_channel(self.target)
            self._stub = signal_pb2_grpc.SignalInternalServiceStub(self._channel)
        return self._stub

    async def current(self, pair: str, field: str) -> Decimal:
        """The latest price of `pair`. INVALID_ARGUMENT on `field` when the signal
        service has no market data for the pair; UNAVAILABLE when it cannot be asked."""
        try:
            response = await self._client().GetPriceInternal(
                signal_pb2.GetPriceInternalRequest(pair=pair),
                timeout=self._timeout,
                metadata=self._metadata,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                raise InvalidArgument(
                    [
                        FieldViolation(
                            field,
                            f"no market price is available for {pair}; give the price explicitly",
                        )
                    ]
                ) from None
            raise Unavailable(
                f"no current price for {pair}: the price service is unavailable "
                f"({error.code().name}); retry, or give the price explicitly",
                reason="PRICE_UNAVAILABLE",
            ) from None
        return decimal_price(response.price.price)

    async def ticks(self, pairs: Sequence[str] = ()) -> AsyncIterator[Tick]:
        """Live price updates of `pairs` (all pairs with data when empty); heartbeats
        are skipped. Raises grpc.aio.AioRpcError when the stream breaks.

        The first update of each pair on a new stream is the latest quote, whose range
        may reach back before the stream opened (a replayed bar's whole high/low), that
        is before positions opened since were watched: only its price is used. What
        happened while no stream was open is the reconnect sweep's business."""
        stream = self._client().StreamPricesInternal(
            signal_pb2.StreamPricesInternalRequest(pairs=list(pairs)), metadata=self._metadata
        )
        seen: set[str] = set()
        async for message in stream:
            if message.WhichOneof("event") != "update":
                continue
            tick = tick_from_update(message.update)
            if tick.pair not in seen:
                seen.add(tick.pair)
                tick = Tick(tick.pair, tick.price, tick.price, tick.price, tick.time)
            yield tick

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
            self._stub = None

"""The `Prices` port over signal_svc's internal gRPC API (service credential).

`current(pair)` is the market price for an open or close at market (GetPriceInternal);
`ticks(pairs)` is the live feed the watcher reacts to (StreamPricesInternal): every
update carries the range traded since the previous one, so a level touched between two
updates is not missed. Calls go through the shared client helper (common.grpc_client),
so failures arrive here as domain errors and leave as the ones `Prices` promises.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from decimal import Decimal

from aifx.signal.v1 import signal_pb2, signal_pb2_grpc
from common.errors import DomainError, FieldViolation, InvalidArgument, NotFound, Unavailable
from common.grpc_client import GrpcClient
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
        lap=update.replay_lap,
    )


class PriceSource:
    def __init__(self, target: str, service_token: str, timeout_seconds: float = 2.0) -> None:
        self._client = GrpcClient(
            "signal_svc", target, service_token=service_token, timeout_seconds=timeout_seconds
        )

    @property
    def source_name(self) -> str:
        return f"signal_svc at {self._client.target}"

    def _stub(self) -> signal_pb2_grpc.SignalInternalServiceStub:
        return self._client.stub(signal_pb2_grpc.SignalInternalServiceStub)

    async def current(self, pair: str, field: str) -> Decimal:
        """The latest price of `pair`. InvalidArgument on `field` when the signal
        service has no market data for the pair; Unavailable when it cannot be asked."""
        try:
            response = await self._client.unary(
                self._stub().GetPriceInternal, signal_pb2.GetPriceInternalRequest(pair=pair)
            )
        except NotFound:
            raise InvalidArgument(
                [
                    FieldViolation(
                        field,
                        f"no market price is available for {pair}; give the price explicitly",
                    )
                ]
            ) from None
        except DomainError as error:
            # Whatever else went wrong (down, slow, our credential refused) is the price
            # service's problem, not the user's request's.
            raise Unavailable(
                f"no current price for {pair}: the price service is unavailable "
                f"({error.message}); retry, or give the price explicitly",
                reason="PRICE_UNAVAILABLE",
            ) from None
        return decimal_price(response.price.price)

    async def ticks(self, pairs: Sequence[str] = ()) -> AsyncIterator[Tick]:
        """Live price updates of `pairs` (all pairs with data when empty); heartbeats
        are skipped. Unavailable (or another domain error) when the stream breaks.

        The first update of each pair on a new stream is the latest quote, whose range
        may reach back before the stream opened (a replayed bar's whole high/low), that
        is before positions opened since were watched: only its price is used. What
        happened while no stream was open is the reconnect sweep's business."""
        request = signal_pb2.StreamPricesInternalRequest(pairs=list(pairs))
        seen: set[str] = set()
        async for message in self._client.stream(self._stub().StreamPricesInternal, request):
            if message.WhichOneof("event") != "update":
                continue
            tick = tick_from_update(message.update)
            if tick.pair not in seen:
                seen.add(tick.pair)
                tick = Tick(tick.pair, tick.price, tick.price, tick.price, tick.time)
            yield tick

    async def close(self) -> None:
        await self._client.close()

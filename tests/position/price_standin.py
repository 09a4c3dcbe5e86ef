"""An in-process stand-in for signal_svc's SignalInternalService price RPCs, the only
part of signal_svc that position_svc talks to (GetPriceInternal, StreamPricesInternal).

The test feeds it REAL bars of the bundled EUR/USD history: `push(index)` makes bar
`index` the current price (price = the bar's close, high/low = the bar's high/low,
time = the bar's open time) and sends it to every open price stream; `set(index)` only
changes the current price (what GetPriceInternal answers) without streaming it, e.g.
while the streams are down. `drop()` ends every open stream with UNAVAILABLE, as a
signal_svc restart would. Like the real service, both RPCs need the service credential
(`x-aifx-service-token`), and a pair without market data is NOT_FOUND.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal

import grpc

from aifx.signal.v1 import signal_pb2, signal_pb2_grpc
from common.candles import Candles
from common.grpc_metadata import SERVICE_TOKEN_HEADER, metadata_value
from common.market import normalize_pair
from common.server import RunningServer, ServiceSpec, start_server
from position_svc.price_source import decimal_price

_DROP = None


@dataclass
class PriceStandIn(signal_pb2_grpc.SignalInternalServiceServicer):
    bars: Candles
    service_token: str
    current: dict[str, signal_pb2.PriceUpdate] = field(default_factory=dict)
    # Streams opened so far (a reconnect increments it) and streams open now.
    connects: int = 0
    price_calls: int = 0
    _streams: set[asyncio.Queue[signal_pb2.PriceUpdate | None]] = field(default_factory=set)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    server: RunningServer | None = None

    # --- what the test does ----------------------------------------------------------

    @property
    def address(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.port}"

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    def update(self, index: int, lap: int = 0) -> signal_pb2.PriceUpdate:
        """The PriceUpdate of real bar `index` (in replay lap `lap`)."""
        bars = self.bars
        update = signal_pb2.PriceUpdate(
            price=signal_pb2.Price(
                pair=bars.pair,
                price=float(bars.close[index]),
                source=signal_pb2.MARKET_DATA_SOURCE_REPLAY,
            ),
            high=float(bars.high[index]),
            low=float(bars.low[index]),
            replay_lap=lap,
        )
        update.price.time.FromSeconds(int(bars.times[index]))
        return update

    def close_of(self, index: int) -> Decimal:
        """Bar `index`'s close as position_svc reads it."""
        return decimal_price(float(self.bars.close[index]))

    @staticmethod
    def close_of_update(update: signal_pb2.PriceUpdate) -> Decimal:
        return decimal_price(update.price.price)

    def set(self, index: int, lap: int = 0) -> signal_pb2.PriceUpdate:
        """Make bar `index` the current price without streaming it."""
        update = self.update(index, lap)
        self.current[update.price.pair] = update
        return update

    def push(self, index: int, lap: int = 0) -> signal_pb2.PriceUpdate:
        """Make bar `index` the current price and send it to every open stream."""
        update = self.set(index, lap)
        for queue in self._streams:
            queue.put_nowait(update)
        return update

    def drop(self) -> None:
        """End every open price stream with UNAVAILABLE."""
        for queue in self._streams:
            queue.put_nowait(_DROP)

    async def wait_streams(
        self, count: int = 1, *, connects: int = 0, within: float = 10.0
    ) -> None:
        """Until exactly `count` streams are open and at least `connects` were ever
        opened (a stream whose client went away closes a moment later)."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(
                lambda: len(self._streams) == count and self.connects >= connects
            )

    # --- the RPCs -------------------------------------------------------------------

    async def _check(self, context: grpc.aio.ServicerContext) -> None:
        if metadata_value(context, SERVICE_TOKEN_HEADER) != self.service_token:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "service credential missing")

    async def GetPriceInternal(self, request, context):  # noqa: N802 (gRPC method name)
        await self._check(context)
        self.price_calls += 1
        try:
            pair = normalize_pair(request.pair)
        except ValueError as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        if pair not in self.current:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no market data for {pair}")
        return signal_pb2.GetPriceInternalResponse(price=self.current[pair].price)

    async def StreamPricesInternal(self, request, context):  # noqa: N802
        await self._check(context)
        pairs = {normalize_pair(pair) for pair in request.pairs}
        queue: asyncio.Queue[signal_pb2.PriceUpdate | None] = asyncio.Queue()
        async with self._changed:
            self._streams.add(queue)
            self.connects += 1
            self._changed.notify_all()
        try:
            while True:
                update = await queue.get()
                if update is _DROP:
                    self._streams.discard(queue)  # no more pushes to a dropped stream
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "price stream dropped")
                    return
                if not pairs or update.price.pair in pairs:
                    yield signal_pb2.StreamPricesInternalResponse(update=update)
        finally:
            self._streams.discard(queue)
            async with self._changed:
                self._changed.notify_all()

    # --- serving --------------------------------------------------------------------

    async def start(self) -> PriceStandIn:
        def register(server: grpc.aio.Server) -> None:
            signal_pb2_grpc.add_SignalInternalServiceServicer_to_server(self, server)

        name = signal_pb2.DESCRIPTOR.services_by_name["SignalInternalService"].full_name
        self.server = await start_server(
            ServiceSpec("price-standin", register, [name]), "127.0.0.1", 0
        )
        return self

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(grace=0.2)


@contextlib.asynccontextmanager
async def price_standin(bars: Candles, service_token: str) -> AsyncIterator[PriceStandIn]:
    standin = await PriceStandIn(bars, service_token).start()
    try:
        yield standin
    finally:
        await standin.stop()

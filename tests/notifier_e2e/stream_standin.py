"""A protocol stand-in for the internal streams the notifier and the edge follow:
signal_svc's SignalInternalService.StreamAllSignals and StreamPricesInternal and
position_svc's PositionInternalService.StreamAllPositionEvents, served over real gRPC so
that a process reads them exactly as it reads the real services.

Signals, quotes and position events are the ones the test publishes, kept in order. A
request with `resume_after_id` gets every item after that id replayed, then a heartbeat
(as the services send when their replay is done), then live ones; without it, live ones
only (prices are live only, as the real stream). All refuse callers without the service
credential, as the real services do. Every StreamAllSignals request is recorded, so a
test can see where a restarted notifier resumed.

Also runnable by the benchmarks (bench/notifier_fanout.py) in their own event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import partial

import grpc

from aifx.common.v1 import market_pb2
from aifx.position.v1 import position_pb2, position_pb2_grpc
from aifx.signal.v1 import signal_pb2, signal_pb2_grpc
from common.grpc_metadata import SERVICE_TOKEN_HEADER
from common.market import Timeframe
from common.proto_convert import TIMEFRAME_TO_PROTO


def signal_message(
    signal_id: str, pair: str, timeframe: str, *, confidence: float, entry: float
) -> signal_pb2.Signal:
    """A model BUY signal as signal_svc streams it; `entry` tells signals apart in the
    DMs they become (the embed shows it)."""
    message = signal_pb2.Signal(
        id=signal_id,
        pair=pair,
        timeframe=TIMEFRAME_TO_PROTO[Timeframe(timeframe)],
        action=market_pb2.TRADE_ACTION_BUY,
        confidence=confidence,
        strength=signal_pb2.SIGNAL_STRENGTH_STRONG,
        entry_price=entry,
        stop_loss=entry * 0.99,
        take_profit=entry * 1.02,
        risk_reward_ratio=2.0,
        source=signal_pb2.SIGNAL_SOURCE_MODEL,
        model_name="lstm",
        model_version="1",
    )
    message.candle_time.FromDatetime(datetime(2024, 3, 1, 12, tzinfo=UTC))
    message.create_time.GetCurrentTime()
    return message


class StreamStandin(
    signal_pb2_grpc.SignalInternalServiceServicer,
    position_pb2_grpc.PositionInternalServiceServicer,
):
    """Both internal streams on one gRPC server (`start`, then `target`)."""

    def __init__(self, service_token: str) -> None:
        self.service_token = service_token
        self.signals: list[signal_pb2.Signal] = []
        self.resumed_after: list[str] = []  # resume_after_id of each StreamAllSignals
        self.open_signal_streams = 0
        self.prices: list[signal_pb2.PriceUpdate] = []
        self.position_events: list[position_pb2.PositionEvent] = []
        self.open_price_streams = 0
        self.open_position_streams = 0
        self._published = asyncio.Condition()
        self._server: grpc.aio.Server | None = None
        self.port = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = grpc.aio.server()
        signal_pb2_grpc.add_SignalInternalServiceServicer_to_server(self, self._server)
        position_pb2_grpc.add_PositionInternalServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=None)

    async def publish(self, signal: signal_pb2.Signal) -> None:
        """A new signal: kept for replays and sent to every open stream."""
        async with self._published:
            self.signals.append(signal)
            self._published.notify_all()

    async def publish_price(self, update: signal_pb2.PriceUpdate) -> None:
        async with self._published:
            self.prices.append(update)
            self._published.notify_all()

    async def publish_position_event(self, event: position_pb2.PositionEvent) -> None:
        async with self._published:
            self.position_events.append(event)
            self._published.notify_all()

    async def _live(self, items: list, sent: int) -> AsyncIterator:
        """What is appended to `items` after the first `sent`, as it comes."""
        while True:
            async with self._published:
                await self._published.wait_for(partial(lambda n: len(items) > n, sent))
                fresh = items[sent:]
                sent = len(items)
            for item in fresh:
                yield item

    async def _admit(self, context: grpc.aio.ServicerContext) -> None:
        metadata = dict(context.invocation_metadata() or ())
        if metadata.get(SERVICE_TOKEN_HEADER) != self.service_token:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "service credential required")

    async def StreamAllSignals(  # noqa: N802 (the gRPC method's name)
        self, request: signal_pb2.StreamAllSignalsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[signal_pb2.StreamAllSignalsResponse]:
        await self._admit(context)
        self.resumed_after.append(request.resume_after_id)
        ids = [s.id for s in self.signals]
        if request.resume_after_id:
            if request.resume_after_id not in ids:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "unknown resume_after_id")
            sent = ids.index(request.resume_after_id) + 1
        else:
            sent = len(ids)  # live only
        self.open_signal_streams += 1
        try:
            for signal in self.signals[sent:]:
                yield signal_pb2.StreamAllSignalsResponse(signal=signal)
            sent = len(self.signals)
            heartbeat = signal_pb2.Heartbeat()
            heartbeat.time.GetCurrentTime()
            yield signal_pb2.StreamAllSignalsResponse(heartbeat=heartbeat)
            async for signal in self._live(self.signals, sent):
                yield signal_pb2.StreamAllSignalsResponse(signal=signal)
        finally:
            self.open_signal_streams -= 1

    async def StreamPricesInternal(  # noqa: N802 (the gRPC method's name)
        self, request: signal_pb2.StreamPricesInternalRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[signal_pb2.StreamPricesInternalResponse]:
        await self._admit(context)
        self.open_price_streams += 1
        try:
            async for update in self._live(self.prices, len(self.prices)):
                if not request.pairs or update.price.pair in request.pairs:
                    yield signal_pb2.StreamPricesInternalResponse(update=update)
        finally:
            self.open_price_streams -= 1

    async def StreamAllPositionEvents(  # noqa: N802 (the gRPC method's name)
        self,
        request: position_pb2.StreamAllPositionEventsRequest,
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[position_pb2.StreamAllPositionEventsResponse]:
        await self._admit(context)
        sent = len(self.position_events)
        self.open_position_streams += 1
        try:
            if request.HasField("resume_after_id"):
                for event in self.position_events[:sent]:
                    if event.id > request.resume_after_id:
                        yield position_pb2.StreamAllPositionEventsResponse(event=event)
            heartbeat = position_pb2.Heartbeat()
            heartbeat.time.GetCurrentTime()
            yield position_pb2.StreamAllPositionEventsResponse(heartbeat=heartbeat)
            async for event in self._live(self.position_events, sent):
                yield position_pb2.StreamAllPositionEventsResponse(event=event)
        finally:
            self.open_position_streams -= 1

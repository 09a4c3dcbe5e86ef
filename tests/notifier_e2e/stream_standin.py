"""A protocol stand-in for the two streams the notifier follows: signal_svc's
SignalInternalService.StreamAllSignals and position_svc's
PositionInternalService.StreamAllPositionEvents, served over real gRPC so that a
notifier started as its own process reads them exactly as it reads the real services.

Signals are the ones the test `publish`es, kept in order. A request with
`resume_after_id` gets every signal after that id replayed, then a heartbeat (as
signal_svc sends when its replay is done), then live ones; without it, live ones only.
The position-event stream stays open and quiet. Both refuse callers without the service
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

    def _beyond(self, count: int) -> bool:
        return len(self.signals) > count

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
            while True:
                async with self._published:
                    await self._published.wait_for(partial(self._beyond, sent))
                    fresh = self.signals[sent:]
                    sent = len(self.signals)
                for signal in fresh:
                    yield signal_pb2.StreamAllSignalsResponse(signal=signal)
        finally:
            self.open_signal_streams -= 1

    async def StreamAllPositionEvents(  # noqa: N802 (the gRPC method's name)
        self,
        request: position_pb2.StreamAllPositionEventsRequest,
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[position_pb2.StreamAllPositionEventsResponse]:
        await self._admit(context)
        await asyncio.Event().wait()  # no position events in these tests
        yield position_pb2.StreamAllPositionEventsResponse()  # pragma: no cover

"""The notifier's gRPC clients of signal_svc, position_svc and inference, and of every
service's standard health check — the domain's Market, Trading and Services ports —
and the two streams it follows (every signal, every position event)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime

from grpc_health.v1 import health_pb2, health_pb2_grpc

from aifx.inference.v1 import inference_pb2, inference_pb2_grpc
from aifx.position.v1 import position_pb2, position_pb2_grpc
from aifx.signal.v1 import signal_pb2, signal_pb2_grpc
from common.errors import DomainError
from common.grpc_client import GrpcClient
from common.market import Timeframe
from common.proto_convert import TIMEFRAME_TO_PROTO
from notifier.clients import bearer
from notifier.convert import (
    PERIODS,
    performance_view,
    position_event_view,
    position_view,
    signal_view,
)
from notifier.messages import SignalView
from notifier.views import Account, PerformanceView, PositionEventView, PositionView

OPEN_POSITIONS_PAGE = 500


class MarketClient:
    """Market over signal_svc (with the service credential: signals and market data are
    not per user) and inference (the model served)."""

    def __init__(self, signal: GrpcClient, inference: GrpcClient) -> None:
        self._signal = signal
        self._inference = inference

    def _stub(self) -> signal_pb2_grpc.SignalServiceStub:
        return self._signal.stub(signal_pb2_grpc.SignalServiceStub)

    async def latest_signal(self, pair: str, timeframe: str) -> SignalView:
        reply = await self._signal.unary(
            self._stub().GetSignal,
            signal_pb2.GetSignalRequest(
                pair=pair, timeframe=TIMEFRAME_TO_PROTO[Timeframe(timeframe)]
            ),
        )
        return signal_view(reply.signal)

    async def pairs(self) -> list[str]:
        reply = await self._signal.unary(
            self._stub().ListPairs, signal_pb2.ListPairsRequest(page_size=500)
        )
        return sorted(p.pair for p in reply.pairs)

    async def model(self) -> str:
        stub = self._inference.stub(inference_pb2_grpc.InferenceServiceStub)
        reply = await self._inference.unary(stub.GetModelInfo, inference_pb2.GetModelInfoRequest())
        trained = reply.train_time.ToDatetime(tzinfo=UTC)
        return f"{reply.model_name} v{reply.model_version} (trained {trained:%Y-%m-%d})"

    async def market_time(self) -> tuple[datetime | None, bool]:
        reply = await self._signal.unary(
            self._stub().ListPairs, signal_pb2.ListPairsRequest(page_size=500)
        )
        if reply.HasField("replay"):
            return reply.replay.market_time.ToDatetime(tzinfo=UTC), True
        return datetime.now(UTC), False


class TradingClient:
    """Trading over position_svc, as the user (their token; no service credential)."""

    def __init__(self, client: GrpcClient) -> None:
        self._client = client

    def _stub(self) -> position_pb2_grpc.PositionServiceStub:
        return self._client.stub(position_pb2_grpc.PositionServiceStub)

    async def open_positions(self, account: Account) -> list[PositionView]:
        positions: list[PositionView] = []
        token = ""
        while True:
            reply = await self._client.unary(
                self._stub().ListPositions,
                position_pb2.ListPositionsRequest(
                    status=position_pb2.POSITION_STATUS_OPEN,
                    page_size=OPEN_POSITIONS_PAGE,
                    page_token=token,
                ),
                metadata=bearer(account),
            )
            positions += [position_view(p) for p in reply.positions]
            token = reply.next_page_token
            if not token:
                return positions

    async def performance(self, account: Account, period: str) -> PerformanceView:
        reply = await self._client.unary(
            self._stub().GetPerformance,
            position_pb2.GetPerformanceRequest(period=PERIODS[period]),
            metadata=bearer(account),
        )
        return performance_view(period, reply)


class HealthClient:
    """Services: the standard gRPC health check of each service."""

    def __init__(self, services: Mapping[str, GrpcClient]) -> None:
        self._services = services

    async def health(self) -> dict[str, bool]:
        result = {}
        for name, client in self._services.items():
            stub = client.stub(health_pb2_grpc.HealthStub)
            try:
                reply = await client.unary(
                    stub.Check, health_pb2.HealthCheckRequest(), deadline_seconds=1.0
                )
                result[name] = reply.status == health_pb2.HealthCheckResponse.SERVING
            except DomainError:
                result[name] = False
        return result


class SignalStream:
    """Every signal after `resume_after_id`, from SignalInternalService.StreamAllSignals
    (replayed, then live); heartbeats are skipped."""

    def __init__(self, client: GrpcClient) -> None:
        self._client = client

    async def signals(self, resume_after_id: str | None) -> AsyncIterator[SignalView]:
        stub = self._client.stub(signal_pb2_grpc.SignalInternalServiceStub)
        request = signal_pb2.StreamAllSignalsRequest(resume_after_id=resume_after_id or "")
        async for message in self._client.stream(stub.StreamAllSignals, request):
            if message.HasField("signal"):
                yield signal_view(message.signal)


class PositionEventStream:
    """Every position event after `resume_after_id`, from
    PositionInternalService.StreamAllPositionEvents (replayed, then live); heartbeats
    and events no DM is sent for (levels updated) are skipped."""

    def __init__(self, client: GrpcClient) -> None:
        self._client = client

    async def events(self, resume_after_id: int | None) -> AsyncIterator[PositionEventView]:
        stub = self._client.stub(position_pb2_grpc.PositionInternalServiceStub)
        request = position_pb2.StreamAllPositionEventsRequest()
        if resume_after_id is not None:
            request.resume_after_id = resume_after_id
        async for message in self._client.stream(stub.StreamAllPositionEvents, request):
            if message.HasField("event"):
                view = position_event_view(message.event)
                if view is not None:
                    yield view

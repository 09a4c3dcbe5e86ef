"""The edge's gRPC client of signal_svc (through the shared client helper): every
signal after a cursor, as the old system's `trading:signal` events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aifx.signal.v1 import signal_pb2, signal_pb2_grpc
from common.grpc_client import GrpcClient
from edge.convert import price_event, trading_signal


class SignalEvents:
    """SignalInternalService.StreamAllSignals (replayed after the cursor, then live),
    heartbeats skipped."""

    def __init__(self, client: GrpcClient) -> None:
        self._client = client

    async def after(self, resume_after_id: str | None) -> AsyncIterator[dict[str, Any]]:
        stub = self._client.stub(signal_pb2_grpc.SignalInternalServiceStub)
        request = signal_pb2.StreamAllSignalsRequest(resume_after_id=resume_after_id or "")
        async for message in self._client.stream(stub.StreamAllSignals, request):
            if message.HasField("signal"):
                yield trading_signal(message.signal)


class PriceEvents:
    """SignalInternalService.StreamPricesInternal for every pair, as `price:<PAIR>`
    payloads (prices are not resumed: the next quote supersedes a missed one)."""

    def __init__(self, client: GrpcClient) -> None:
        self._client = client

    async def after(self, _: str | None) -> AsyncIterator[dict[str, Any]]:
        stub = self._client.stub(signal_pb2_grpc.SignalInternalServiceStub)
        request = signal_pb2.StreamPricesInternalRequest()
        async for message in self._client.stream(stub.StreamPricesInternal, request):
            if message.HasField("update"):
                yield price_event(message.update)

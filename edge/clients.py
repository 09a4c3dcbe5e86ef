"""The edge's gRPC clients (through the shared client helper): the signal, price and
position-event streams as the old system's Socket.IO events, and the calls behind the
dashboard's session and model page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aifx.auth.v1 import auth_pb2, auth_pb2_grpc
from aifx.inference.v1 import inference_pb2, inference_pb2_grpc
from aifx.position.v1 import position_pb2, position_pb2_grpc
from aifx.signal.v1 import signal_pb2, signal_pb2_grpc
from common.grpc_client import GrpcClient
from common.market import Timeframe
from common.proto_convert import TIMEFRAME_TO_PROTO
from edge.convert import (
    SessionTokens,
    model_card,
    notification,
    price_event,
    session_tokens,
    trading_signal,
)


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

    async def missed(self, after_id: str, limit: int = 1000) -> list[dict[str, Any]] | None:
        """The signals stored after `after_id`, oldest first: the stream's replay, up to
        the heartbeat that marks the start of live delivery. None when there are more
        than `limit` (a client that far behind reads them with REST)."""
        stub = self._client.stub(signal_pb2_grpc.SignalInternalServiceStub)
        request = signal_pb2.StreamAllSignalsRequest(resume_after_id=after_id)
        replayed: list[dict[str, Any]] = []
        async for message in self._client.stream(stub.StreamAllSignals, request):
            if not message.HasField("signal"):
                return replayed
            if len(replayed) == limit:
                return None
            replayed.append(trading_signal(message.signal))
        return replayed


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


class PositionEvents:
    """PositionInternalService.StreamAllPositionEvents (replayed after the cursor, then
    live) as `notification` payloads, heartbeats skipped."""

    def __init__(self, client: GrpcClient) -> None:
        self._client = client

    async def after(self, resume_after_id: str | None) -> AsyncIterator[dict[str, Any]]:
        stub = self._client.stub(position_pb2_grpc.PositionInternalServiceStub)
        request = position_pb2.StreamAllPositionEventsRequest()
        if resume_after_id:
            request.resume_after_id = int(resume_after_id)
        async for message in self._client.stream(stub.StreamAllPositionEvents, request):
            if message.HasField("event"):
                payload = notification(message.event)
                if payload is not None:
                    yield payload


def _client_address(forwarded_for: str | None) -> tuple[tuple[str, str], ...]:
    """Envoy's X-Forwarded-For, passed on so auth_svc rate-limits the browser's address
    (it believes the header from the edge, a loopback peer, as it does from Envoy)."""
    return (("x-forwarded-for", forwarded_for),) if forwarded_for else ()


class AuthSessions:
    """AuthService's sign-up, sign-in, refresh and sign-out, for the dashboard's cookie
    session: the refresh token stays in the edge's HttpOnly cookie, never in scripts."""

    def __init__(self, client: GrpcClient) -> None:
        self._client = client

    def _stub(self) -> auth_pb2_grpc.AuthServiceStub:
        return self._client.stub(auth_pb2_grpc.AuthServiceStub)

    async def register(
        self, email: str, username: str, password: str, forwarded_for: str | None
    ) -> SessionTokens:
        request = auth_pb2.RegisterRequest(email=email, username=username, password=password)
        reply = await self._client.unary(
            self._stub().Register, request, metadata=_client_address(forwarded_for)
        )
        return session_tokens(reply.tokens, reply.user)

    async def login(
        self, identifier: str, password: str, forwarded_for: str | None
    ) -> SessionTokens:
        request = auth_pb2.LoginRequest(identifier=identifier, password=password)
        reply = await self._client.unary(
            self._stub().Login, request, metadata=_client_address(forwarded_for)
        )
        return session_tokens(reply.tokens, reply.user)

    async def refresh(self, refresh_token: str) -> SessionTokens:
        request = auth_pb2.RefreshRequest(refresh_token=refresh_token)
        reply = await self._client.unary(self._stub().Refresh, request)
        access = reply.tokens.access_token
        me = await self._client.unary(
            self._stub().GetMe,
            auth_pb2.GetMeRequest(),
            metadata=(("authorization", f"Bearer {access}"),),
        )
        return session_tokens(reply.tokens, me.user)

    async def logout(self, refresh_token: str) -> None:
        request = auth_pb2.LogoutRequest(refresh_token=refresh_token)
        await self._client.unary(self._stub().Logout, request)


class ModelCards:
    """InferenceService.GetModelInfo with the model card and reliability plot."""

    def __init__(self, client: GrpcClient) -> None:
        self._client = client

    async def describe(self, timeframe: Timeframe) -> dict[str, Any]:
        stub = self._client.stub(inference_pb2_grpc.InferenceServiceStub)
        request = inference_pb2.GetModelInfoRequest(
            timeframe=TIMEFRAME_TO_PROTO[timeframe], include_documents=True
        )
        return model_card(await self._client.unary(stub.GetModelInfo, request))

"""The notifier's gRPC clients of auth_svc and signal_svc (through the shared client
helper: service credential, request ids), implementing the domain's ports."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aifx.auth.v1 import auth_pb2, auth_pb2_grpc
from aifx.signal.v1 import signal_pb2, signal_pb2_grpc
from common.grpc_client import GrpcClient
from common.market import Timeframe
from common.proto_convert import TIMEFRAME_TO_PROTO
from notifier.convert import signal_view
from notifier.messages import SignalView

RECIPIENTS_PAGE = 1000


class AuthClient:
    """SignalRecipients and Reachability over AuthInternalService."""

    def __init__(self, client: GrpcClient) -> None:
        self._client = client

    def _stub(self) -> auth_pb2_grpc.AuthInternalServiceStub:
        return self._client.stub(auth_pb2_grpc.AuthInternalServiceStub)

    async def for_signal(self, signal: SignalView) -> list[tuple[str, str]]:
        people: list[tuple[str, str]] = []
        token = ""
        while True:
            reply = await self._client.unary(
                self._stub().ListSignalRecipients,
                auth_pb2.ListSignalRecipientsRequest(
                    pair=signal.pair,
                    timeframe=TIMEFRAME_TO_PROTO[Timeframe(signal.timeframe)],
                    confidence=signal.confidence,
                    page_size=RECIPIENTS_PAGE,
                    page_token=token,
                ),
            )
            people += [(r.user_id, r.discord_user_id) for r in reply.recipients]
            token = reply.next_page_token
            if not token:
                return people

    async def dms_closed(self, discord_user_id: str) -> None:
        await self._client.unary(
            self._stub().SetDiscordDmReachable,
            auth_pb2.SetDiscordDmReachableRequest(
                discord_user_id=discord_user_id, dm_reachable=False
            ),
        )


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

"""signal_svc's streams over gRPC, directly (not through Envoy): SubscribeSignals with a
user's bearer token, StreamAllSignals with the service credential only, and the
internal service not reachable through Envoy. Runs on both backends."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from aifx.common.v1 import market_pb2
from aifx.signal.v1 import signal_pb2, signal_pb2_grpc
from common.grpc_metadata import SERVICE_TOKEN_HEADER
from tests.infra import sign_access_token
from tests.signal_e2e.conftest import SignalEdge, stored_signals

pytestmark = pytest.mark.e2e


async def first_messages(call: Any, count: int, within: float = 10.0) -> list[Any]:
    """The first `count` messages of a server stream, then cancel it."""
    messages = []
    try:
        async with asyncio.timeout(within):
            async for message in call:
                messages.append(message)
                if len(messages) >= count:
                    break
    finally:
        call.cancel()
    return messages


async def refused(call: Any) -> grpc.aio.AioRpcError:
    """The error a server stream fails with before its first message."""
    try:
        async with asyncio.timeout(5):
            async for _ in call:
                pytest.fail("a message was sent to a caller that should be refused")
    except grpc.aio.AioRpcError as error:
        return error
    pytest.fail("the stream ended without an error")


async def test_subscribe_signals_with_a_bearer_token(signal_edge: SignalEdge):
    request = signal_pb2.SubscribeSignalsRequest(
        pairs=["eurusd"], timeframes=[market_pb2.TIMEFRAME_H1]
    )
    call = signal_edge.stub.SubscribeSignals(request, metadata=signal_edge.bearer)

    messages = await first_messages(call, 4)

    assert messages[0].WhichOneof("event") == "heartbeat"
    signals = [m.signal for m in messages if m.WhichOneof("event") == "signal"]
    assert signals
    for signal in signals:
        assert signal.pair == "EUR/USD"
        assert signal.timeframe == market_pb2.TIMEFRAME_H1
        assert signal.HasField("candle_time") and signal.entry_price > 0
    ids = [int(s.id) for s in signals]
    assert ids == sorted(set(ids))


async def test_subscribe_signals_resumes_after_an_id(signal_edge: SignalEdge):
    newest = await stored_signals(signal_edge, 5)
    oldest = newest[-1].id
    request = signal_pb2.SubscribeSignalsRequest(resume_after_id=oldest)
    call = signal_edge.stub.SubscribeSignals(request, metadata=signal_edge.bearer)

    messages = await first_messages(call, 4)

    # Replayed first, oldest first: the four signals that came after `oldest`.
    assert [m.signal.id for m in messages] == [s.id for s in reversed(newest[:-1])]


@pytest.mark.parametrize("credential", ["none", "forged", "service token as bearer"])
async def test_subscribe_signals_needs_a_valid_token(signal_edge: SignalEdge, credential: str):
    kid = jwt.get_unverified_header(signal_edge.access_token)["kid"]
    forged = sign_access_token(Ed25519PrivateKey.generate(), kid, signal_edge.settings.tokens)
    metadata = {
        "none": (),
        "forged": (("authorization", f"Bearer {forged}"),),
        "service token as bearer": (("authorization", f"Bearer {signal_edge.service_token}"),),
    }[credential]
    call = signal_edge.stub.SubscribeSignals(
        signal_pb2.SubscribeSignalsRequest(), metadata=metadata
    )

    error = await refused(call)

    assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error


async def test_get_signal_with_an_unknown_timeframe_number_names_the_field(
    signal_edge: SignalEdge,
):
    """What Envoy's transcoder refuses by itself over REST, signal_svc refuses too."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await signal_edge.stub.GetSignal(
            signal_pb2.GetSignalRequest(pair="EUR/USD", timeframe=99), metadata=signal_edge.bearer
        )

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(caught.value)
    assert status is not None
    fields = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            fields += [v.field for v in bad_request.field_violations]
    assert fields == ["timeframe"]


async def test_stream_all_signals_with_the_service_credential(signal_edge: SignalEdge):
    call = signal_edge.internal_stub.StreamAllSignals(
        signal_pb2.StreamAllSignalsRequest(), metadata=signal_edge.service_credential
    )

    messages = await first_messages(call, 3)

    assert messages[0].WhichOneof("event") == "heartbeat"
    assert any(m.WhichOneof("event") == "signal" for m in messages)


@pytest.mark.parametrize("credential", ["none", "user token", "wrong service token"])
async def test_stream_all_signals_needs_the_service_credential(
    signal_edge: SignalEdge, credential: str
):
    metadata = {
        "none": (),
        "user token": signal_edge.bearer,
        "wrong service token": ((SERVICE_TOKEN_HEADER, "not-the-credential"),),
    }[credential]
    call = signal_edge.internal_stub.StreamAllSignals(
        signal_pb2.StreamAllSignalsRequest(), metadata=metadata
    )

    error = await refused(call)

    assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error


async def test_the_internal_service_is_not_routed_by_envoy(signal_edge: SignalEdge):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{signal_edge.envoy.port}") as channel:
        stub = signal_pb2_grpc.SignalInternalServiceStub(channel)
        call = stub.StreamAllSignals(
            signal_pb2.StreamAllSignalsRequest(), metadata=signal_edge.service_credential
        )

        error = await refused(call)

    assert error.code() == grpc.StatusCode.UNIMPLEMENTED, error

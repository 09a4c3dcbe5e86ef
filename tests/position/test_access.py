"""Who may call what: a user touches only their own positions (anyone else's id is
NOT_FOUND), every public RPC needs a user's access token, and the internal event stream
needs the service credential."""

from __future__ import annotations

import asyncio

import grpc
from google.protobuf import field_mask_pb2

from aifx.position.v1 import position_pb2
from common.grpc_metadata import SERVICE_TOKEN_HEADER
from tests.position.conftest import SERVICE, PositionEnv, fails


async def test_someone_elses_position_is_not_found(env: PositionEnv) -> None:
    owner, intruder = await env.user(), await env.user()
    mine = await env.open(owner, entry_price="1.08628", stop_loss="1.08", take_profit="1.09")
    theirs = await env.open(intruder, entry_price="1.08628")
    calls = [
        env.stub.GetPosition(position_pb2.GetPositionRequest(id=mine.id), metadata=intruder.auth),
        env.stub.UpdatePosition(
            position_pb2.UpdatePositionRequest(
                position=position_pb2.Position(id=mine.id, stop_loss="1.081"),
                update_mask=field_mask_pb2.FieldMask(paths=["stop_loss"]),
            ),
            metadata=intruder.auth,
        ),
        env.stub.ClosePosition(
            position_pb2.ClosePositionRequest(id=mine.id, exit_price="1.09"),
            metadata=intruder.auth,
        ),
        env.stub.ClosePosition(
            position_pb2.ClosePositionRequest(id=mine.id), metadata=intruder.auth
        ),
    ]
    for call in calls:
        error = await fails(call, grpc.StatusCode.NOT_FOUND)
        # The same answer as for an id that does not exist: nothing confirms it exists.
        assert error.details() == f"position {mine.id} not found"
    assert await env.get(owner, mine.id) == mine  # untouched
    listed = await env.stub.ListPositions(
        position_pb2.ListPositionsRequest(), metadata=intruder.auth
    )
    assert [p.id for p in listed.positions] == [theirs.id]
    listed = await env.stub.ListPositions(position_pb2.ListPositionsRequest(), metadata=owner.auth)
    assert [p.id for p in listed.positions] == [mine.id]
    performance = await env.stub.GetPerformance(
        position_pb2.GetPerformanceRequest(), metadata=intruder.auth
    )
    assert performance.performance.trades == 0


async def _public_calls(env: PositionEnv, metadata) -> list:  # type: ignore[no-untyped-def]
    position = "00000000-0000-0000-0000-000000000000"
    stub = env.stub
    return [
        stub.OpenPosition(
            position_pb2.OpenPositionRequest(
                pair="EUR/USD", side=1, lot_size="0.1", entry_price="1.08628"
            ),
            metadata=metadata,
        ),
        stub.GetPosition(position_pb2.GetPositionRequest(id=position), metadata=metadata),
        stub.ListPositions(position_pb2.ListPositionsRequest(), metadata=metadata),
        stub.UpdatePosition(
            position_pb2.UpdatePositionRequest(position=position_pb2.Position(id=position)),
            metadata=metadata,
        ),
        stub.ClosePosition(position_pb2.ClosePositionRequest(id=position), metadata=metadata),
        stub.GetPerformance(position_pb2.GetPerformanceRequest(), metadata=metadata),
        _first(
            stub.WatchPositionEvents(
                position_pb2.WatchPositionEventsRequest(resume_after_id=0), metadata=metadata
            )
        ),
    ]


async def _first(call):  # type: ignore[no-untyped-def]
    return await call.read()


async def test_public_rpcs_need_a_users_access_token(env: PositionEnv) -> None:
    user = await env.user()
    refusals = [
        (),  # no token
        (("authorization", "Bearer not-a-token"),),
        (("authorization", f"Bearer {user.token}x"),),  # a forged signature
        (("authorization", user.token),),  # no scheme
        SERVICE,  # a service is no user: positions belong to users
        ((SERVICE_TOKEN_HEADER, "wrong-service-token"),),
        (*SERVICE, *user.auth),  # a service credential next to a token is still a service
    ]
    for metadata in refusals:
        for call in await _public_calls(env, metadata):
            await fails(call, grpc.StatusCode.UNAUTHENTICATED)
    assert await env.positions_of(user) == 0


async def test_the_internal_stream_needs_the_service_credential(env: PositionEnv) -> None:
    user = await env.user()
    request = position_pb2.StreamAllPositionEventsRequest(resume_after_id=0)
    for metadata in ((), user.auth, ((SERVICE_TOKEN_HEADER, "wrong-service-token"),)):
        call = env.main.internal.StreamAllPositionEvents(request, metadata=metadata)
        error = await fails(_first(call), grpc.StatusCode.UNAUTHENTICATED)
        assert error.details() == "service credential missing or wrong"
    # The right credential is served (everyone's events, then a heartbeat).
    call = env.main.internal.StreamAllPositionEvents(
        position_pb2.StreamAllPositionEventsRequest(resume_after_id=await env.last_event_id()),
        metadata=SERVICE,
    )
    async with asyncio.timeout(5):
        first = await call.read()
    assert first.WhichOneof("kind") == "heartbeat"
    call.cancel()

"""WatchPositionEvents and StreamAllPositionEvents: live delivery, resume after the last
id received with no loss and no duplicate, the heartbeat marking the switch to live,
and users' streams kept apart."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from google.protobuf import field_mask_pb2

from aifx.position.v1 import position_pb2, position_pb2_grpc
from common.server import start_server
from position_svc.server import build
from tests.position.conftest import SELL, SERVICE, PositionEnv, User, fails, violations

OPENED = position_pb2.POSITION_EVENT_TYPE_OPENED
UPDATED = position_pb2.POSITION_EVENT_TYPE_UPDATED
CLOSED = position_pb2.POSITION_EVENT_TYPE_CLOSED
TP_HIT = position_pb2.POSITION_EVENT_TYPE_TAKE_PROFIT_HIT


def watch(env: PositionEnv, user: User, resume_after_id: int | None = None):  # type: ignore[no-untyped-def]
    request = position_pb2.WatchPositionEventsRequest()
    if resume_after_id is not None:
        request.resume_after_id = resume_after_id
    return env.stub.WatchPositionEvents(request, metadata=user.auth)


def watch_all(env: PositionEnv, resume_after_id: int):  # type: ignore[no-untyped-def]
    request = position_pb2.StreamAllPositionEventsRequest(resume_after_id=resume_after_id)
    return env.main.internal.StreamAllPositionEvents(request, metadata=SERVICE)


async def messages_until_heartbeat(call, within: float = 5.0) -> list[Any]:  # type: ignore[no-untyped-def]
    """The events before the next heartbeat."""
    events = []
    async with asyncio.timeout(within):
        while True:
            message = await call.read()
            assert message is not grpc.aio.EOF
            if message.WhichOneof("kind") == "heartbeat":
                return events
            events.append(message.event)


async def next_events(call, count: int, within: float = 5.0, users: set[str] | None = None):  # type: ignore[no-untyped-def]
    """The next `count` events (of `users` only, when given), skipping heartbeats."""
    events: list[position_pb2.PositionEvent] = []
    async with asyncio.timeout(within):
        while len(events) < count:
            message = await call.read()
            assert message is not grpc.aio.EOF
            if message.WhichOneof("kind") == "event" and (
                users is None or message.event.position.user_id in users
            ):
                events.append(message.event)
    return events


def summary(events) -> list[tuple[int, str]]:  # type: ignore[no-untyped-def]
    return [(event.type, event.position.id) for event in events]


async def close(env: PositionEnv, user: User, position_id: str, price: str = "1.088"):  # type: ignore[no-untyped-def]
    response = await env.stub.ClosePosition(
        position_pb2.ClosePositionRequest(id=position_id, exit_price=price), metadata=user.auth
    )
    return response.position


async def test_live_events_of_a_users_positions(env: PositionEnv) -> None:
    user = await env.user()
    await env.tick(164)  # 1.08628
    call = watch(env, user)  # live only
    first = await call.read()  # nothing happened yet: the idle heartbeat
    assert first.WhichOneof("kind") == "heartbeat" and first.heartbeat.time.seconds > 0
    opened = await env.open(user, side=SELL, entry_price="1.08628", stop_loss="1.09")
    updated = (
        await env.stub.UpdatePosition(
            position_pb2.UpdatePositionRequest(
                position=position_pb2.Position(id=opened.id, take_profit="1.08"),
                update_mask=field_mask_pb2.FieldMask(paths=["take_profit"]),
            ),
            metadata=user.auth,
        )
    ).position
    closed = await close(env, user, opened.id)
    events = await next_events(call, 3)
    assert [event.type for event in events] == [OPENED, UPDATED, CLOSED]
    assert events[0].id < events[1].id < events[2].id
    # Each event carries the position right after the change (without a live price).
    opened.ClearField("current_price")
    opened.ClearField("pips")
    opened.ClearField("unrealized_pnl")
    updated.ClearField("current_price")
    updated.ClearField("pips")
    updated.ClearField("unrealized_pnl")
    assert [event.position for event in events] == [opened, updated, closed]
    assert [event.time for event in events] == [p.update_time for p in (opened, updated, closed)]
    assert (events[2].position.realized_pnl, events[2].position.pips) == ("-17.20", "-17.2")
    call.cancel()


async def test_resume_after_the_last_id_gets_exactly_the_missed_events(env: PositionEnv) -> None:
    user, other = await env.user(), await env.user()
    call = watch(env, user, resume_after_id=0)
    assert await messages_until_heartbeat(call) == []  # no history yet
    first = await env.open(user, entry_price="1.08628")
    await env.stub.UpdatePosition(
        position_pb2.UpdatePositionRequest(
            position=position_pb2.Position(id=first.id, stop_loss="1.08")
        ),
        metadata=user.auth,
    )
    received = await next_events(call, 2)
    assert summary(received) == [(OPENED, first.id), (UPDATED, first.id)]
    last_id = received[-1].id
    call.cancel()
    # Missed while disconnected: two of the user's events, with someone else's between.
    await close(env, user, first.id)
    await env.open(other, entry_price="1.08628")
    second = await env.open(user, entry_price="1.08628")

    # Reconnecting right away: everything committed before the call is replayed before
    # the heartbeat, even what the server's event feed has not read yet.
    call = watch(env, user, resume_after_id=last_id)
    missed = await messages_until_heartbeat(call)
    assert summary(missed) == [(CLOSED, first.id), (OPENED, second.id)]
    assert last_id < missed[0].id < missed[1].id
    # Then live, with no repeat of the replay.
    third = await env.open(user, entry_price="1.08628")
    (live,) = await next_events(call, 1)
    assert summary([live]) == [(OPENED, third.id)] and live.id > missed[1].id
    call.cancel()

    # Resuming from the newest id replays nothing; from 0, the whole history once.
    call = watch(env, user, resume_after_id=live.id)
    assert await messages_until_heartbeat(call) == []
    call.cancel()
    call = watch(env, user, resume_after_id=0)
    history = await messages_until_heartbeat(call)
    assert [event.id for event in history] == [
        *(e.id for e in received),
        missed[0].id,
        missed[1].id,
        live.id,
    ]
    call.cancel()


async def test_the_internal_stream_sees_everyone_and_users_only_themselves(
    env: PositionEnv,
) -> None:
    alice, bob = await env.user(), await env.user()
    everyone = watch_all(env, await env.last_event_id())
    assert await messages_until_heartbeat(everyone) == []
    alices, bobs = watch(env, alice, 0), watch(env, bob, 0)
    assert await messages_until_heartbeat(alices) == []
    assert await messages_until_heartbeat(bobs) == []

    await env.tick(164)  # 1.08628
    a1 = await env.open(alice, entry_price="1.08628")
    b1 = await env.open(bob, take_profit="1.0884")
    await close(env, alice, a1.id)
    b2 = await env.open(bob, entry_price="1.08628")
    await env.tick(165)  # the high reaches Bob's take-profit
    await env.closed(bob, b1.id)
    a2 = await env.open(alice, entry_price="1.08628")

    seen = await next_events(everyone, 6, users={alice.id, bob.id})
    assert summary(seen) == [
        (OPENED, a1.id),
        (OPENED, b1.id),
        (CLOSED, a1.id),
        (OPENED, b2.id),
        (TP_HIT, b1.id),
        (OPENED, a2.id),
    ]
    assert [event.id for event in seen] == sorted({event.id for event in seen})
    assert seen[4].position.exit_price == "1.0884" and seen[4].position.realized_pnl == "21.20"
    # Each user's stream holds exactly their events, in the same order.
    assert await next_events(alices, 3) == [seen[0], seen[2], seen[5]]
    assert await next_events(bobs, 3) == [seen[1], seen[3], seen[4]]
    for call in (everyone, alices, bobs):
        call.cancel()


async def test_resume_after_id_must_not_be_negative(env: PositionEnv) -> None:
    user = await env.user()
    for call in (watch(env, user, -1), watch_all(env, -1)):
        error = await fails(call.read(), grpc.StatusCode.INVALID_ARGUMENT)
        assert set(violations(error)) == {"resume_after_id"}


async def test_a_stopping_server_ends_streams_naming_the_id_to_resume_from(
    env: PositionEnv,
) -> None:
    user = await env.user()
    running = await start_server(build(env.settings_for()), "127.0.0.1", 0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        stub = position_pb2_grpc.PositionServiceStub(channel)
        call = stub.WatchPositionEvents(
            position_pb2.WatchPositionEventsRequest(resume_after_id=0), metadata=user.auth
        )
        assert await messages_until_heartbeat(call) == []
        opened = await env.open(user, stub, entry_price="1.08628")
        (event,) = await next_events(call, 1)
        assert event.position.id == opened.id
        await running.stop(grace=1.0)
        error = await fails(next_events(call, 1), grpc.StatusCode.UNAVAILABLE)
        assert f"resume_after_id={event.id}" in error.details()
    finally:
        await channel.close()
    # Resuming elsewhere from there loses nothing and repeats nothing.
    later = await env.open(user, entry_price="1.08628")
    call = watch(env, user, resume_after_id=event.id)
    assert summary(await messages_until_heartbeat(call)) == [(OPENED, later.id)]
    call.cancel()

"""Idempotent OpenPosition: a retried request never opens a second position."""

from __future__ import annotations

import asyncio
import uuid

import grpc

from aifx.position.v1 import position_pb2
from position_svc.positions import EventType
from tests.position.conftest import BUY, PAIR, SELL, PositionEnv, fails


def _request(key: str = "", **fields: object) -> position_pb2.OpenPositionRequest:
    values: dict[str, object] = {
        "pair": PAIR,
        "side": BUY,
        "lot_size": "0.30",
        "entry_price": "1.08628",
        "stop_loss": "1.08",
        "take_profit": "1.09",
        "idempotency_key": key,
    }
    values.update(fields)
    return position_pb2.OpenPositionRequest(**values)  # type: ignore[arg-type]


async def test_concurrent_duplicates_open_exactly_one_position(env: PositionEnv) -> None:
    user = await env.user()
    key = str(uuid.uuid4())
    responses = await asyncio.gather(
        *(env.stub.OpenPosition(_request(key), metadata=user.auth) for _ in range(20))
    )
    ids = {response.position.id for response in responses}
    assert len(ids) == 1
    (position_id,) = ids
    assert await env.positions_of(user) == 1
    events = await env.events_of(position_id)
    assert [event.type for event in events] == [EventType.OPENED]
    # Every caller got the same position, as stored.
    stored = await env.get(user, position_id)
    for response in responses:
        assert response.position.id == stored.id
        assert response.position.entry_price == stored.entry_price == "1.08628"
        assert response.position.open_time == stored.open_time
    # A later retry too.
    again = await env.stub.OpenPosition(_request(key), metadata=user.auth)
    assert again.position.id == position_id and await env.positions_of(user) == 1


async def test_same_key_with_other_parameters_is_already_exists(env: PositionEnv) -> None:
    user = await env.user()
    key = "retry-" + uuid.uuid4().hex
    first = (await env.stub.OpenPosition(_request(key), metadata=user.auth)).position
    for changed in (
        {"lot_size": "0.31"},
        {"side": SELL, "stop_loss": "1.09", "take_profit": "1.08"},
        {"entry_price": "1.08629"},
        {"take_profit": ""},
        {"signal_id": "another-signal"},
    ):
        error = await fails(
            env.stub.OpenPosition(_request(key, **changed), metadata=user.auth),
            grpc.StatusCode.ALREADY_EXISTS,
        )
        assert first.id in error.details(), changed
    # Spelling the same request differently is the same request.
    same = await env.stub.OpenPosition(
        _request(key, pair="eurusd", lot_size="0.3", stop_loss="1.080"), metadata=user.auth
    )
    assert same.position.id == first.id
    assert await env.positions_of(user) == 1


async def test_the_key_can_come_as_a_header(env: PositionEnv) -> None:
    user = await env.user()
    key = uuid.uuid4().hex
    with_header = (*user.auth, ("idempotency-key", key))
    first = (await env.stub.OpenPosition(_request(), metadata=with_header)).position
    second = (await env.stub.OpenPosition(_request(), metadata=with_header)).position
    assert second.id == first.id
    # The same key in the field names the same position.
    third = (await env.stub.OpenPosition(_request(key), metadata=user.auth)).position
    assert third.id == first.id
    await fails(
        env.stub.OpenPosition(_request(lot_size="2"), metadata=with_header),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    # Without a key there is no deduplication.
    plain = [
        (await env.stub.OpenPosition(_request(), metadata=user.auth)).position.id for _ in range(2)
    ]
    assert len({first.id, *plain}) == 3
    assert await env.positions_of(user) == 3


async def test_the_same_key_of_two_users_opens_two_positions(env: PositionEnv) -> None:
    alice, bob = await env.user(), await env.user()
    key = "shared-" + uuid.uuid4().hex
    opened = await asyncio.gather(
        env.stub.OpenPosition(_request(key), metadata=alice.auth),
        env.stub.OpenPosition(_request(key, lot_size="5"), metadata=bob.auth),
    )
    alices, bobs = (response.position for response in opened)
    assert alices.id != bobs.id
    assert (alices.user_id, bobs.user_id) == (alice.id, bob.id)
    assert (alices.lot_size, bobs.lot_size) == ("0.30", "5.00")
    assert await env.positions_of(alice) == await env.positions_of(bob) == 1


async def test_a_retry_at_market_after_the_price_moved_is_the_same_position(
    env: PositionEnv,
) -> None:
    user = await env.user()
    key = uuid.uuid4().hex
    request = position_pb2.OpenPositionRequest(
        pair=PAIR, side=BUY, lot_size="0.10", stop_loss="1.0850", idempotency_key=key
    )
    await env.tick(164)  # 1.08628
    first = (await env.stub.OpenPosition(request, metadata=user.auth)).position
    await env.tick(165)  # 1.088
    retry = (await env.stub.OpenPosition(request, metadata=user.auth)).position
    assert retry.id == first.id
    assert retry.entry_price == first.entry_price == "1.08628"
    assert await env.positions_of(user) == 1

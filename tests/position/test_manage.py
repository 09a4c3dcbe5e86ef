"""UpdatePosition, ClosePosition, GetPosition and ListPositions over gRPC."""

from __future__ import annotations

import grpc
from google.protobuf import field_mask_pb2

from aifx.position.v1 import position_pb2
from position_svc.positions import EventType
from tests.position.conftest import BUY, SELL, PositionEnv, fails, violations

# Real bars: 164 closes at 1.08628; 165 closes at 1.088 with a high of 1.0885.
BAR_164, BAR_165 = 164, 165


def _update(
    position_id: str, paths: list[str] | None = None, **levels: str
) -> position_pb2.UpdatePositionRequest:
    return position_pb2.UpdatePositionRequest(
        position=position_pb2.Position(id=position_id, **levels),
        update_mask=field_mask_pb2.FieldMask(paths=paths or []),
    )


async def test_update_changes_the_levels_named_by_the_mask(env: PositionEnv) -> None:
    user = await env.user()
    await env.tick(BAR_164)
    opened = await env.open(user, stop_loss="1.085", take_profit="1.0884")
    stub = env.stub

    async def update(paths: list[str] | None, **levels: str) -> position_pb2.Position:
        request = _update(opened.id, paths, **levels)
        return (await stub.UpdatePosition(request, metadata=user.auth)).position

    moved = await update(["stop_loss"], stop_loss="1.0855", take_profit="1.2")
    assert (moved.stop_loss, moved.take_profit) == ("1.0855", "1.0884")  # TP not in the mask
    moved = await update(["takeProfit"], take_profit="1.08900")  # proto3 JSON name
    assert (moved.stop_loss, moved.take_profit) == ("1.0855", "1.089")
    moved = await update(["stopLoss", "take_profit"], stop_loss="1.0856", take_profit="1.0891")
    assert (moved.stop_loss, moved.take_profit) == ("1.0856", "1.0891")
    moved = await update(["take_profit"], take_profit="")  # an empty value removes it
    assert (moved.stop_loss, moved.take_profit) == ("1.0856", "")
    moved = await update(None, stop_loss="1.0857", take_profit="1.0895")  # empty mask: both
    assert (moved.stop_loss, moved.take_profit) == ("1.0857", "1.0895")
    moved = await update([], stop_loss="1.0850")  # both, and the TP left empty goes
    assert (moved.stop_loss, moved.take_profit) == ("1.085", "")
    assert moved.update_time.ToDatetime() > opened.update_time.ToDatetime()
    assert moved.open_time == opened.open_time and moved.entry_price == opened.entry_price
    assert await env.get(user, opened.id) == moved
    events = await env.events_of(opened.id)
    assert [event.type for event in events] == [EventType.OPENED] + [EventType.UPDATED] * 6
    assert [event.position.version for event in events] == list(range(1, 8))
    assert events[-1].position.take_profit is None


async def test_update_refuses_bad_input(env: PositionEnv) -> None:
    user = await env.user()
    await env.tick(BAR_164)
    opened = await env.open(user, stop_loss="1.085", take_profit="1.0884")
    cases = [
        (_update(opened.id, ["lot_size"], stop_loss="1.0855"), {"update_mask"}),
        (_update(opened.id, ["stop_loss", "entry_price"], stop_loss="1.0855"), {"update_mask"}),
        (_update(opened.id, ["stop_loss"], stop_loss="1.08x"), {"position.stop_loss"}),
        # A BUY's stop-loss at or above the current price would close it at once.
        (_update(opened.id, ["stop_loss"], stop_loss="1.08628"), {"position.stop_loss"}),
        (_update(opened.id, ["take_profit"], take_profit="1.0860"), {"position.take_profit"}),
        (_update("", ["stop_loss"], stop_loss="1.0855"), {"position.id"}),
    ]
    for request, fields in cases:
        error = await fails(
            env.stub.UpdatePosition(request, metadata=user.auth), grpc.StatusCode.INVALID_ARGUMENT
        )
        assert set(violations(error)) == fields, request
    unknown = violations(
        await fails(
            env.stub.UpdatePosition(_update(opened.id, ["lot_size"]), metadata=user.auth),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
    )
    assert unknown == {
        "update_mask": "unknown path 'lot_size'; only stop_loss and take_profit can change"
    }
    assert await env.get(user, opened.id) == opened
    assert [e.type for e in await env.events_of(opened.id)] == [EventType.OPENED]


async def test_moved_levels_are_what_the_watcher_uses(env: PositionEnv) -> None:
    user = await env.user()
    await env.tick(BAR_164)
    opened = await env.open(user, lot_size="0.40", stop_loss="1.085", take_profit="1.0884")
    request = _update(opened.id, ["take_profit"], take_profit="1.0886")
    await env.stub.UpdatePosition(request, metadata=user.auth)
    await env.tick(BAR_165)  # high 1.0885: past the old take-profit, short of the new one
    assert (await env.get(user, opened.id)).status == position_pb2.POSITION_STATUS_OPEN


async def test_close_at_market(env: PositionEnv) -> None:
    user = await env.user()
    await env.tick(BAR_164)
    opened = await env.open(user, lot_size="0.25")
    await env.tick(BAR_165)
    closed = (
        await env.stub.ClosePosition(
            position_pb2.ClosePositionRequest(id=opened.id), metadata=user.auth
        )
    ).position
    # 1.08628 → 1.088: 17.2 pips; 0.00172 x 0.25 lots x 100,000 = 43 USD.
    assert closed.status == position_pb2.POSITION_STATUS_CLOSED
    assert closed.close_reason == position_pb2.CLOSE_REASON_MANUAL
    assert closed.result == position_pb2.POSITION_RESULT_WIN
    assert (closed.exit_price, closed.pips, closed.realized_pnl) == ("1.088", "17.2", "43.00")
    assert (closed.current_price, closed.unrealized_pnl) == ("", "")
    assert closed.HasField("close_time") and closed.close_time == closed.update_time
    assert await env.get(user, opened.id) == closed
    # Closing twice is refused, and leaves the close as it was.
    for exit_price in ("", "1.09"):
        error = await fails(
            env.stub.ClosePosition(
                position_pb2.ClosePositionRequest(id=opened.id, exit_price=exit_price),
                metadata=user.auth,
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        assert "already closed" in error.details()
    await fails(
        env.stub.UpdatePosition(
            _update(opened.id, ["stop_loss"], stop_loss="1.08"), metadata=user.auth
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert await env.get(user, opened.id) == closed
    events = await env.events_of(opened.id)
    assert [event.type for event in events] == [EventType.OPENED, EventType.CLOSED]


async def test_close_at_a_given_price_is_exact(env: PositionEnv) -> None:
    user = await env.user()
    cases = [
        # side, lots, entry, exit → pips, PnL, result
        (SELL, "0.50", "1.09091", "1.09015", "7.6", "38.00", position_pb2.POSITION_RESULT_WIN),
        (BUY, "2", "1.19478", "1.19149", "-32.9", "-658.00", position_pb2.POSITION_RESULT_LOSS),
        (SELL, "0.1", "1.07268", "1.0898", "-171.2", "-171.20", position_pb2.POSITION_RESULT_LOSS),
        (BUY, "0.2", "1.19738", "1.19738", "0", "0.00", position_pb2.POSITION_RESULT_BREAKEVEN),
        # A fraction of a pip and of a cent stays exact.
        (BUY, "0.01", "1.08628", "1.086281", "0.01", "0.001", position_pb2.POSITION_RESULT_WIN),
        (SELL, "0.03", "1.08628", "1.08633", "-0.5", "-0.15", position_pb2.POSITION_RESULT_LOSS),
    ]
    for side, lots, entry, exit_price, pips, pnl, result in cases:
        opened = await env.open(user, side=side, lot_size=lots, entry_price=entry)
        closed = (
            await env.stub.ClosePosition(
                position_pb2.ClosePositionRequest(id=opened.id, exit_price=exit_price),
                metadata=user.auth,
            )
        ).position
        assert (closed.exit_price, closed.pips, closed.realized_pnl, closed.result) == (
            exit_price,
            pips,
            pnl,
            result,
        ), (side, entry, exit_price)
        assert closed.close_reason == position_pb2.CLOSE_REASON_MANUAL
        assert await env.get(user, opened.id) == closed


async def test_close_and_get_refuse_bad_input(env: PositionEnv) -> None:
    user = await env.user()
    opened = await env.open(user, entry_price="1.08628")
    for exit_price in ("abc", "0", "-1.08", "1e0"):
        error = await fails(
            env.stub.ClosePosition(
                position_pb2.ClosePositionRequest(id=opened.id, exit_price=exit_price),
                metadata=user.auth,
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert set(violations(error)) == {"exit_price"}, exit_price
    error = await fails(
        env.stub.ClosePosition(position_pb2.ClosePositionRequest(), metadata=user.auth),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert set(violations(error)) == {"id"}
    error = await fails(
        env.stub.GetPosition(position_pb2.GetPositionRequest(), metadata=user.auth),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert set(violations(error)) == {"id"}
    for call in (
        env.stub.GetPosition(position_pb2.GetPositionRequest(id="nope"), metadata=user.auth),
        env.stub.ClosePosition(
            position_pb2.ClosePositionRequest(id="00000000-0000-0000-0000-000000000000"),
            metadata=user.auth,
        ),
    ):
        await fails(call, grpc.StatusCode.NOT_FOUND)
    assert (await env.get(user, opened.id)).status == position_pb2.POSITION_STATUS_OPEN


async def _list(env: PositionEnv, user, **fields) -> position_pb2.ListPositionsResponse:  # type: ignore[no-untyped-def]
    return await env.stub.ListPositions(
        position_pb2.ListPositionsRequest(**fields), metadata=user.auth
    )


async def _all_pages(env: PositionEnv, user, size: int, **filters) -> list[list[str]]:  # type: ignore[no-untyped-def]
    pages: list[list[str]] = []
    token = ""
    while True:
        response = await _list(env, user, page_size=size, page_token=token, **filters)
        pages.append([position.id for position in response.positions])
        token = response.next_page_token
        if not token:
            return pages


async def test_list_filters_and_pages_newest_first(env: PositionEnv) -> None:
    user, other = await env.user(), await env.user()
    opened = [
        (await env.open(user, entry_price="1.08628", lot_size=f"0.{index + 1}")).id
        for index in range(7)
    ]
    await env.open(other, entry_price="1.08628")
    for position_id in (opened[1], opened[4]):
        await env.stub.ClosePosition(
            position_pb2.ClosePositionRequest(id=position_id, exit_price="1.088"),
            metadata=user.auth,
        )
    newest_first = opened[::-1]
    pages = await _all_pages(env, user, 3)
    assert [len(page) for page in pages] == [3, 3, 1]
    assert [pid for page in pages for pid in page] == newest_first
    assert await _all_pages(env, user, 7) == [newest_first]  # an exact fit: no empty page
    everything = await _list(env, user)
    assert [p.id for p in everything.positions] == newest_first
    assert everything.next_page_token == ""
    assert {p.user_id for p in everything.positions} == {user.id}
    open_status = position_pb2.POSITION_STATUS_OPEN
    closed_status = position_pb2.POSITION_STATUS_CLOSED
    still_open = [pid for pid in newest_first if pid not in (opened[1], opened[4])]
    assert await _all_pages(env, user, 2, status=open_status) == [
        still_open[0:2],
        still_open[2:4],
        still_open[4:],
    ]
    assert await _all_pages(env, user, 5, status=closed_status) == [[opened[4], opened[1]]]
    assert await _all_pages(env, user, 50, pair="eurusd") == [newest_first]
    assert await _all_pages(env, user, 50, pair="GBP/USD", status=open_status) == [[]]


async def test_list_refuses_bad_input(env: PositionEnv) -> None:
    user = await env.user()
    for _ in range(3):
        await env.open(user, entry_price="1.08628")
    first = await _list(env, user, page_size=1, status=position_pb2.POSITION_STATUS_OPEN)
    assert first.next_page_token
    cases = [
        ({"pair": "XXX/YYY"}, {"pair"}),
        ({"status": 7}, {"status"}),
        ({"page_size": -1}, {"page_size"}),
        ({"page_token": "not-a-token"}, {"page_token"}),
        # The token with other filters than it was issued for.
        ({"page_token": first.next_page_token}, {"page_token"}),
        ({"page_token": first.next_page_token, "pair": "EUR/USD"}, {"page_token"}),
    ]
    for fields, expected in cases:
        error = await fails(_list(env, user, **fields), grpc.StatusCode.INVALID_ARGUMENT)
        assert set(violations(error)) == expected, fields
    following = await _list(
        env,
        user,
        page_size=1,
        status=position_pb2.POSITION_STATUS_OPEN,
        page_token=first.next_page_token,
    )
    assert len(following.positions) == 1
    assert following.positions[0].id != first.positions[0].id

"""Watching positions on the ECB's daily USD/JPY fixings (a closes-only series: a tick
is one price, high = low = the fixing), and on a replay that starts its history again.

Each test runs its own position server on its own price stand-in, so that the laps and
pairs it pushes never reach the shared server's watcher."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from aifx.position.v1 import position_pb2
from common.candles import Candles
from common.market_data.ecb import load_ecb_history
from position_svc.positions import EventType
from tests.infra import eventually
from tests.position.conftest import (
    BUY,
    SERVICE_TOKEN,
    PositionEnv,
    PositionServer,
    User,
    serve_positions,
)
from tests.position.price_standin import PriceStandIn, price_standin

USD_JPY = "USD/JPY"
# Fixings of January 2024: 6402 is 2024-01-02 (142.096), 6403 143.017, 6404 144.171,
# 6405 145.197, 6406 144.519, 6407 144.086, 6408 145.286, 6409 145.363, 6413 147.697.
JAN_2 = 6402


@pytest.fixture(scope="module")
def fixings() -> Candles:
    return load_ecb_history([USD_JPY])[USD_JPY]


@asynccontextmanager
async def fixings_server(
    env: PositionEnv, fixings: Candles
) -> AsyncIterator[tuple[PriceStandIn, PositionServer]]:
    async with price_standin(fixings, SERVICE_TOKEN) as prices:
        prices.set(JAN_2)
        async with serve_positions(env.settings_for(prices)) as server:
            await prices.wait_streams(1)
            yield prices, server


async def push_and_wait(
    env: PositionEnv,
    prices: PriceStandIn,
    server: PositionServer,
    watched: tuple[User, str],
    index: int,
    lap: int = 0,
) -> None:
    """Push fixing `index` and wait until the watcher has taken it (the `watched`
    position shows it as its current price, or was closed by it)."""
    prices.push(index, lap)
    fixing = str(prices.close_of(index))
    user, position_id = watched

    async def taken() -> bool:
        position = await env.get(user, position_id, server.stub)
        return position.current_price == fixing or not position.current_price

    await eventually(taken, f"the watcher to take the fixing {fixing}")


async def usd_pnl(env: PositionEnv, position_id: str) -> str:
    """The realized PnL in USD recorded with the close (what performance sums)."""
    events = await env.events_of(position_id)
    return str(events[-1].position.realized_pnl_usd)


async def test_levels_trigger_only_when_a_fixing_crosses_them(
    env: PositionEnv, fixings: Candles
) -> None:
    user = await env.user()
    async with fixings_server(env, fixings) as (prices, server):
        near = await env.open(user, server.stub, pair=USD_JPY, side=BUY, take_profit="144.000")
        far = await env.open(user, server.stub, pair=USD_JPY, side=BUY, take_profit="145.300")
        assert near.entry_price == far.entry_price == "142.096"
        watched = (user, far.id)
        await push_and_wait(env, prices, server, watched, JAN_2 + 1)  # 143.017
        assert (
            await env.get(user, near.id, server.stub)
        ).status == position_pb2.POSITION_STATUS_OPEN
        await push_and_wait(env, prices, server, watched, JAN_2 + 2)  # 144.171 crosses 144
        closed = await env.closed(user, near.id, server.stub)
        assert closed.close_reason == position_pb2.CLOSE_REASON_TAKE_PROFIT
        assert (closed.exit_price, closed.pips, closed.realized_pnl, closed.pnl_currency) == (
            "144",
            "190.4",
            "19040.00",
            "JPY",
        )
        assert await usd_pnl(env, near.id) == "132.22"
        # 145.197 and 145.286 are a hair short of 145.300: a fixing is the only price
        # known that day, so the take-profit waits for one that reaches it.
        for index in (JAN_2 + 3, JAN_2 + 6):
            await push_and_wait(env, prices, server, watched, index)
            assert (
                await env.get(user, far.id, server.stub)
            ).status == position_pb2.POSITION_STATUS_OPEN
        prices.push(JAN_2 + 7)  # 145.363
        closed = await env.closed(user, far.id, server.stub)
        assert (closed.exit_price, closed.pips, closed.realized_pnl) == (
            "145.3",
            "320.4",
            "32040.00",
        )
        assert await usd_pnl(env, far.id) == "220.51"


async def test_a_replay_starting_again_closes_positions_at_the_last_price_of_their_lap(
    env: PositionEnv, fixings: Candles
) -> None:
    """The replay's history runs out and starts again (lap 1): the price goes back
    years, so the open position is closed at the last fixing of lap 0, and a late lap-0
    price arriving afterwards (another replica lagging) is ignored."""
    user = await env.user()
    async with fixings_server(env, fixings) as (prices, server):
        opened = await env.open(user, server.stub, pair=USD_JPY, stop_loss="130", take_profit="150")
        await push_and_wait(env, prices, server, (user, opened.id), JAN_2 + 11)  # 147.697
        assert (
            await env.get(user, opened.id, server.stub)
        ).status == position_pb2.POSITION_STATUS_OPEN
        prices.push(0, lap=1)  # 1999-01-04 again

        closed = await env.closed(user, opened.id, server.stub)
        assert closed.close_reason == position_pb2.CLOSE_REASON_REPLAY_RESTARTED
        assert (closed.exit_price, closed.pips, closed.realized_pnl) == (
            "147.697",
            "560.1",
            "56010.00",
        )
        assert await usd_pnl(env, opened.id) == "379.22"
        assert closed.result == position_pb2.POSITION_RESULT_WIN
        events = await env.events_of(opened.id)
        assert [event.type for event in events] == [EventType.OPENED, EventType.CLOSED]

        # Opened in lap 1 at the 1999 fixing: lap 0's 147.697 would reach its take-profit,
        # but that price is from the lap already left.
        fresh = await env.open(user, server.stub, pair=USD_JPY, take_profit="140")
        prices.push(JAN_2 + 11, lap=0)
        await push_and_wait(env, prices, server, (user, fresh.id), 1, lap=1)  # after it
        after = await env.get(user, fresh.id, server.stub)
        assert after.status == position_pb2.POSITION_STATUS_OPEN
        assert after.current_price == str(prices.close_of(1))

"""The watcher survives the price stream dropping (it reconnects and catches up with a
sweep) and a restart (open positions are reloaded from the database); the periodic
sweep records monitoring snapshots; a second replica watches what the first one opened.
Each test runs servers of its own, on the shared
database, against a price stand-in of its own (so dropping its streams touches no other
server)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from google.protobuf import field_mask_pb2

from aifx.position.v1 import position_pb2
from position_svc.positions import EventType
from position_svc.repository import Snapshot
from tests.infra import eventually
from tests.position.conftest import (
    SERVICE_TOKEN,
    START_BAR,
    PositionEnv,
    serve_positions,
)
from tests.position.price_standin import price_standin


async def test_a_level_crossed_while_the_stream_was_down_closes_on_reconnect(
    env: PositionEnv,
) -> None:
    user = await env.user()
    async with price_standin(env.bars, SERVICE_TOKEN) as prices:
        prices.set(START_BAR)
        async with serve_positions(env.settings_for(prices)) as server:
            await prices.wait_streams(1)
            await env.tick(164, server, prices=prices)  # 1.08628
            opened = await env.open(
                user, server.stub, lot_size="0.25", stop_loss="1.085", take_profit="1.0884"
            )
            asked, connects = prices.price_calls, prices.connects
            prices.drop()
            # While the stream is down the market moves past the take-profit: bar 166
            # closes at 1.08854. No tick carries it; only the current price shows it.
            prices.set(166)
            await prices.wait_streams(1, connects=connects + 1)  # reconnected
            closed = await env.closed(user, opened.id, server.stub)
            assert closed.close_reason == position_pb2.CLOSE_REASON_TAKE_PROFIT
            assert (closed.exit_price, closed.pips, closed.realized_pnl) == (
                "1.0884",
                "21.2",
                "53.00",
            )
            assert prices.price_calls > asked  # the catch-up sweep asked for the price
            events = await env.events_of(opened.id)
            assert [event.type for event in events] == [
                EventType.OPENED,
                EventType.TAKE_PROFIT_HIT,
            ]
            # And ticks flow again on the new stream.
            await env.tick(167, server, prices=prices)


async def test_a_restarted_server_reloads_open_positions(env: PositionEnv) -> None:
    user = await env.user()
    async with price_standin(env.bars, SERVICE_TOKEN) as prices:
        prices.set(START_BAR)
        settings = env.settings_for(prices)
        async with serve_positions(settings) as before:
            await prices.wait_streams(1)
            await env.tick(2699, before, prices=prices)  # Friday's close, 1.19478
            opened = await env.open(user, before.stub, stop_loss="1.193", take_profit="1.197")
        await prices.wait_streams(0)  # the stopped server's stream is gone
        async with serve_positions(settings) as after:
            await prices.wait_streams(1)  # started: it loaded the open positions first
            # Monday's first bar gaps below the stop-loss.
            await env.tick(2700, after, prices=prices)
            closed = await env.closed(user, opened.id, after.stub)
    assert closed.close_reason == position_pb2.CLOSE_REASON_STOP_LOSS
    assert (closed.exit_price, closed.pips, closed.realized_pnl) == ("1.193", "-17.8", "-17.80")
    events = await env.events_of(opened.id)
    assert [event.type for event in events] == [EventType.OPENED, EventType.STOP_LOSS_HIT]


async def test_the_sweep_records_monitoring_snapshots(env: PositionEnv) -> None:
    user = await env.user()
    async with price_standin(env.bars, SERVICE_TOKEN) as prices:
        prices.set(START_BAR)
        settings = env.settings_for(prices, position_sweep_seconds=0.2)
        async with serve_positions(settings) as server:
            await prices.wait_streams(1)
            await env.tick(164, server, prices=prices)  # 1.08628
            buy = await env.open(user, server.stub, lot_size="0.25")
            sell = await env.open(user, server.stub, side=2, lot_size="0.10", stop_loss="1.09")
            await env.tick(165, server, prices=prices)  # 1.088

            async def snapshots_at(position_id: str, price: Decimal) -> list:  # type: ignore[type-arg]
                return [
                    s for s in await env.repository.snapshots_of(position_id) if s.price == price
                ]

            async def swept() -> bool:
                return bool(await snapshots_at(buy.id, Decimal("1.088"))) and bool(
                    await snapshots_at(sell.id, Decimal("1.088"))
                )

            await eventually(swept, "a sweep at 1.088")
            (buy_snapshot, *_) = await snapshots_at(buy.id, Decimal("1.088"))
            assert (buy_snapshot.pips, buy_snapshot.unrealized_pnl) == (
                Decimal("17.2"),
                Decimal("43"),
            )
            (sell_snapshot, *_) = await snapshots_at(sell.id, Decimal("1.088"))
            assert (sell_snapshot.pips, sell_snapshot.unrealized_pnl) == (
                Decimal("-17.2"),
                Decimal("-17.2"),
            )
            # Snapshots do not close anything; a closed position gets no more of them.
            await server.stub.ClosePosition(
                position_pb2.ClosePositionRequest(id=buy.id), metadata=user.auth
            )

            async def sweeps_after(count: int) -> int:
                """Waits for `count` more sweeps (witnessed by the open position's
                snapshots); the number of snapshots of the closed one then."""
                witness = len(await env.repository.snapshots_of(sell.id))

                async def swept() -> bool:
                    return len(await env.repository.snapshots_of(sell.id)) >= witness + count

                await eventually(swept, f"{count} more sweeps")
                return len(await env.repository.snapshots_of(buy.id))

            # A sweep that was under way at the close may still snapshot it; one that
            # starts after that sweep has finished must not.
            taken = await sweeps_after(1)
            assert await sweeps_after(2) == taken
            assert (await env.get(user, sell.id, server.stub)).status == (
                position_pb2.POSITION_STATUS_OPEN
            )
            times = [s.time for s in await env.repository.snapshots_of(sell.id)]
            assert times == sorted(times) and len(set(times)) == len(times)


async def test_another_replica_watches_what_this_one_opened_and_moved(env: PositionEnv) -> None:
    """A position opened and moved through the main server is watched by a second
    server, which learns of both through the shared event table (it was running before
    the open, so no reload put it in its index)."""
    user = await env.user()
    async with price_standin(env.bars, SERVICE_TOKEN) as prices:
        prices.set(START_BAR)
        async with serve_positions(env.settings_for(prices)) as replica:
            await prices.wait_streams(1)
            await env.tick(164, replica, prices=prices)  # 1.08628 on the replica's feed
            stream = replica.stub.WatchPositionEvents(
                position_pb2.WatchPositionEventsRequest(resume_after_id=0), metadata=user.auth
            )
            assert (await stream.read()).WhichOneof("kind") == "heartbeat"
            await env.tick(164)  # and on the main server's
            opened = await env.open(user, stop_loss="1.085", take_profit="1.0884")
            await env.stub.UpdatePosition(
                position_pb2.UpdatePositionRequest(
                    position=position_pb2.Position(id=opened.id, take_profit="1.0886"),
                    update_mask=field_mask_pb2.FieldMask(paths=["take_profit"]),
                ),
                metadata=user.auth,
            )
            # The replica's feed hands events to its watcher before its streams.
            async with asyncio.timeout(5):
                kinds = [(await stream.read()).event.type for _ in range(2)]
            assert kinds == [
                position_pb2.POSITION_EVENT_TYPE_OPENED,
                position_pb2.POSITION_EVENT_TYPE_UPDATED,
            ]
            # Bar 165's high (1.0885) passes the old take-profit, not the moved one.
            await env.tick(165, replica, prices=prices)
            assert (await env.get(user, opened.id)).status == position_pb2.POSITION_STATUS_OPEN
            await env.tick(166, replica, prices=prices)  # high 1.08898: past 1.0886
            closed = await env.closed(user, opened.id)
            stream.cancel()
    assert (closed.close_reason, closed.exit_price, closed.realized_pnl) == (
        position_pb2.CLOSE_REASON_TAKE_PROFIT,
        "1.0886",
        "23.20",
    )
    events = await env.events_of(opened.id)
    assert [event.type for event in events] == [
        EventType.OPENED,
        EventType.UPDATED,
        EventType.TAKE_PROFIT_HIT,
    ]


async def test_the_first_tick_of_a_new_stream_counts_only_its_price(env: PositionEnv) -> None:
    """The first update of a pair on a new stream is the latest quote, whose range can
    reach back before the stream (and positions opened since) existed: a level inside
    that range but beyond its price does not close the position; the next tick's range
    does."""
    bars = env.bars
    user = await env.user()
    first = next(
        i for i in range(START_BAR + 1, len(bars)) if bars.high[i] - bars.close[i] > 0.0004
    )
    entry = Decimal(repr(round(float(bars.close[first]), 5)))
    take_profit = entry + Decimal("0.0002")  # inside bar `first`'s range, above its close
    later = next(i for i in range(first + 1, len(bars)) if bars.high[i] >= float(take_profit))
    stop_loss = Decimal(repr(round(float(bars.low[first : later + 1].min()) - 0.001, 5)))
    async with price_standin(env.bars, SERVICE_TOKEN) as prices:
        prices.set(first)  # the market is at the entry: the reconnect sweep closes nothing
        async with serve_positions(env.settings_for(prices)) as server:
            await prices.wait_streams(1)
            opened = await env.open(
                user,
                server.stub,
                entry_price=str(entry),
                stop_loss=str(stop_loss),
                take_profit=str(take_profit),
            )
            connects = prices.connects
            prices.drop()
            await prices.wait_streams(1, connects=connects + 1)
            prices.push(first)  # its high reaches the take-profit, its close does not
            await eventually(
                lambda: _priced_at(env, user, opened.id, server, prices.close_of(first)),
                "the first tick to be evaluated",
            )
            assert (await env.get(user, opened.id, server.stub)).status == (
                position_pb2.POSITION_STATUS_OPEN
            )
            prices.push(later)
            closed = await env.closed(user, opened.id, server.stub)
            assert closed.close_reason == position_pb2.CLOSE_REASON_TAKE_PROFIT
            assert closed.exit_price == str(take_profit)


async def _priced_at(
    env: PositionEnv, user: object, position_id: str, server: object, close: Decimal
) -> bool:
    position = await env.get(user, position_id, server.stub)  # type: ignore[arg-type, attr-defined]
    return position.current_price == str(close)


async def test_old_monitoring_snapshots_are_forgotten(env: PositionEnv) -> None:
    """A sweep stores its snapshots and deletes those older than the retention."""
    position_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    old, recent = now - timedelta(days=8), now - timedelta(days=6)
    one = Decimal("1.08")
    await env.repository.record_snapshots(
        [Snapshot(position_id, moment, one, Decimal(0), Decimal(0)) for moment in (old, recent)]
    )
    await env.repository.record_snapshots(
        [Snapshot(position_id, now, one, Decimal(0), Decimal(0))],
        forget_before=now - timedelta(days=7),
    )
    kept = await env.repository.snapshots_of(position_id)
    assert [snapshot.time for snapshot in kept] == [recent, now]

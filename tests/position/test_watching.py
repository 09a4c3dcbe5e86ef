"""Stop-loss / take-profit watching on real EUR/USD bars pushed through the price
stream: the fill policy (the level, even through a gap; stop-loss first when one tick
spans both), exact pips and PnL, and exactly one close when several watchers and a
manual close race for the same position."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass

import grpc
import pytest

from aifx.position.v1 import position_pb2
from common.db import create_engine, session_factory
from position_svc.event_feed import EventFeed
from position_svc.positions import EventType
from position_svc.price_source import PriceSource, tick_from_update
from position_svc.repository import PositionRepository
from position_svc.watcher import Watcher
from tests.position.conftest import BUY, SELL, PositionEnv

TP = position_pb2.CLOSE_REASON_TAKE_PROFIT
SL = position_pb2.CLOSE_REASON_STOP_LOSS
WIN = position_pb2.POSITION_RESULT_WIN
LOSS = position_pb2.POSITION_RESULT_LOSS


@dataclass(frozen=True)
class Case:
    side: int
    lots: str
    stop_loss: str
    take_profit: str
    # None: stays open.
    reason: int | None = None
    exit_price: str = ""
    pips: str = ""
    pnl: str = ""
    result: int = position_pb2.POSITION_RESULT_UNSPECIFIED


# (bar opened at, bar pushed next) → positions opened at the first bar's close.
SCENARIOS = {
    # Bar 165 closes at 1.088 below the take-profit, but its high (1.0885) reaches it.
    "buy take-profit on the high": (
        (164, 165),
        [
            Case(BUY, "0.25", "1.085", "1.0884", TP, "1.0884", "21.2", "53.00", WIN),
            Case(BUY, "0.25", "1.085", "1.0886"),  # a pip short: stays open
            Case(SELL, "0.10", "1.0886", "1.0850"),  # stop 0.1 pip above the high
        ],
    ),
    # Bar 221's low (1.08884) reaches a SELL's take-profit; it closes at 1.09015.
    "sell take-profit on the low": (
        (220, 221),
        [
            Case(SELL, "0.50", "1.092", "1.089", TP, "1.089", "19.1", "95.50", WIN),
            Case(SELL, "0.50", "1.092", "1.0888"),
        ],
    ),
    # Friday 2017-09-22 closes at 1.19478; Monday's first hour trades 1.18963..1.19152,
    # wholly below a 1.193 stop: the gap fills at the stop.
    "buy stop-loss through a weekend gap": (
        (2699, 2700),
        [Case(BUY, "0.10", "1.193", "1.197", SL, "1.193", "-17.8", "-17.80", LOSS)],
    ),
    # Friday 2017-04-21 closes at 1.07268; Monday opens at 1.0893 (1.08803..1.09063).
    "sell stop-loss and buy take-profit through a gap up": (
        (59, 60),
        [
            Case(SELL, "1", "1.08", "1.07", SL, "1.08", "-73.2", "-732.00", LOSS),
            # The take-profit fills at its level, not at the better price after the gap.
            Case(BUY, "0.5", "1.07", "1.08", TP, "1.08", "73.2", "366.00", WIN),
        ],
    ),
    # Bar 2427 trades 1.19302..1.20534 from 1.19738: both levels inside one tick.
    "one tick spanning both levels is a stop-loss": (
        (2426, 2427),
        [
            Case(BUY, "0.30", "1.195", "1.2", SL, "1.195", "-23.8", "-71.40", LOSS),
            Case(SELL, "0.30", "1.2", "1.195", SL, "1.2", "-26.2", "-78.60", LOSS),
        ],
    ),
}
EVENT_OF = {TP: EventType.TAKE_PROFIT_HIT, SL: EventType.STOP_LOSS_HIT}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_a_pushed_bar_closes_positions_on_their_levels(
    env: PositionEnv, scenario: str
) -> None:
    (opened_at, pushed), cases = SCENARIOS[scenario]
    user = await env.user()
    entry = await env.tick(opened_at)
    opened = [
        await env.open(
            user,
            side=case.side,
            lot_size=case.lots,
            stop_loss=case.stop_loss,
            take_profit=case.take_profit,
        )
        for case in cases
    ]
    assert {position.entry_price for position in opened} == {str(entry)}
    await env.tick(pushed)
    for case, position in zip(cases, opened, strict=True):
        if case.reason is None:
            after = await env.get(user, position.id)
            assert after.status == position_pb2.POSITION_STATUS_OPEN, case
            assert after.current_price == str(env.prices.close_of(pushed))
            continue
        closed = await env.closed(user, position.id)
        assert closed.close_reason == case.reason, case
        assert (closed.exit_price, closed.pips, closed.realized_pnl) == (
            case.exit_price,
            case.pips,
            case.pnl,
        ), case
        assert closed.result == case.result, case
        assert closed.HasField("close_time") and not closed.current_price
        events = await env.events_of(position.id)
        assert [event.type for event in events] == [EventType.OPENED, EVENT_OF[case.reason]]
        assert str(events[-1].position.exit_price) == case.exit_price


async def _manual_close(env: PositionEnv, user, position_id: str):  # type: ignore[no-untyped-def]
    """The manual close's result, or its status code when it lost the race."""
    try:
        return await env.stub.ClosePosition(
            position_pb2.ClosePositionRequest(id=position_id, exit_price="1.087"),
            metadata=user.auth,
        )
    except grpc.aio.AioRpcError as error:
        return error.code()


async def test_racing_watchers_and_a_manual_close_close_exactly_once(env: PositionEnv) -> None:
    """Two more watchers (as other replicas would run them, each with its own connection
    pool), the server's own watcher and the owner's ClosePosition all act on the same
    position at once, 20 times over: one close, one close event, one final state."""
    user = await env.user()
    engines = [create_engine(env.settings) for _ in range(2)]
    watchers = []
    for engine in engines:
        repository = PositionRepository(session_factory(engine))
        feed = EventFeed(repository, 60.0, 16)
        prices = PriceSource(env.prices.address, "unused")
        watchers.append((repository, Watcher(repository, feed, prices, 600.0)))
    # Bar 165's high (1.0885) reaches the take-profit of a BUY from 1.08628.
    update = env.prices.update(165)
    tick = tick_from_update(update)
    outcomes: Counter[str] = Counter()

    async def server_tick(delay: float) -> None:
        await asyncio.sleep(delay)
        env.prices.push(165)

    async def watcher_tick(watcher: Watcher, delay: float) -> list:  # type: ignore[type-arg]
        # Staggered over the rounds, so that each contender sometimes gets there first.
        await asyncio.sleep(delay)
        return await watcher.on_tick(tick)

    try:
        for round_ in range(20):
            delay, server_delay = (round_ % 5) * 0.002, ((round_ + 2) % 5) * 0.002
            await env.tick(164)
            position = await env.open(user, entry_price="1.08628", take_profit="1.0884")
            for repository, watcher in watchers:
                watcher.track(await repository.get(user.id, position.id))
            first, second, manual, _ = await asyncio.gather(
                watcher_tick(watchers[0][1], delay),
                watcher_tick(watchers[1][1], delay),
                _manual_close(env, user, position.id),
                server_tick(server_delay),
            )
            await env.tick(164)  # the server's watcher has evaluated the racing tick
            events = await env.events_of(position.id)
            assert [event.type for event in events[:1]] == [EventType.OPENED]
            (close_event,) = events[1:]
            final = await env.get(user, position.id)
            assert final.status == position_pb2.POSITION_STATUS_CLOSED
            if close_event.type is EventType.CLOSED:
                outcomes["manual"] += 1
                assert isinstance(manual, position_pb2.ClosePositionResponse)
                assert manual.position == final
                assert (final.exit_price, final.pips, final.realized_pnl) == (
                    "1.087",
                    "7.2",
                    "7.20",
                )
                assert first == second == []
            else:
                outcomes["watcher" if first or second else "server"] += 1
                assert close_event.type is EventType.TAKE_PROFIT_HIT
                assert manual == grpc.StatusCode.FAILED_PRECONDITION
                assert (final.exit_price, final.pips, final.realized_pnl) == (
                    "1.0884",
                    "21.2",
                    "21.20",
                )
                assert len(first) + len(second) <= 1  # the server's watcher may have won
            assert final.close_reason == (
                position_pb2.CLOSE_REASON_MANUAL
                if close_event.type is EventType.CLOSED
                else position_pb2.CLOSE_REASON_TAKE_PROFIT
            )
            # As written, on PostgreSQL's NUMERIC too (no 1.0884000000).
            assert str(close_event.position.exit_price) == final.exit_price
            assert close_event.position.version == 2
    finally:
        for engine in engines:
            await engine.dispose()
    assert sum(outcomes.values()) == 20

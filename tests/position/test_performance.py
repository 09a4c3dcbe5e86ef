"""GetPerformance over gRPC on a user's closed positions: trades, win rate, pips, PnL,
profit factor, risk/reward, drawdown, the per-pair breakdown and the equity curve."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from google.protobuf import timestamp_pb2

from aifx.position.v1 import position_pb2
from tests.position.conftest import BUY, SELL, PositionEnv, User, fails, violations

# Entries and exits are closes of real bars (164→165, 220→221, 2699→2700, 59→60,
# 2426→2427); the last trade is closed at its entry.
TRADES = [
    # side, lots, entry, exit, stop-loss, take-profit → pips, PnL
    (BUY, "1", "1.08628", "1.088", "1.084", "1.09", "17.2", "172.00"),
    (SELL, "0.50", "1.09091", "1.09015", "", "", "7.6", "38.00"),
    (BUY, "2", "1.19478", "1.19149", "", "1.2", "-32.9", "-658.00"),
    (SELL, "0.10", "1.07268", "1.0898", "1.1", "", "-171.2", "-171.20"),
    (BUY, "1", "1.19738", "1.20422", "1.195", "1.202", "68.4", "684.00"),
    (BUY, "0.20", "1.19738", "1.19738", "", "", "0", "0.00"),
]
CUMULATIVE = [
    ("172.00", "17.2"),
    ("210.00", "24.8"),
    ("-448.00", "-8.1"),
    ("-619.20", "-179.3"),
    ("64.80", "-110.9"),
    ("64.80", "-110.9"),
]


async def _trade(env: PositionEnv, user: User) -> list[position_pb2.Position]:
    closed = []
    for side, lots, entry, exit_price, stop, target, pips, pnl in TRADES:
        opened = await env.open(
            user,
            side=side,
            lot_size=lots,
            entry_price=entry,
            stop_loss=stop,
            take_profit=target,
        )
        position = (
            await env.stub.ClosePosition(
                position_pb2.ClosePositionRequest(id=opened.id, exit_price=exit_price),
                metadata=user.auth,
            )
        ).position
        assert (position.pips, position.realized_pnl) == (pips, pnl)
        closed.append(position)
    return closed


async def _performance(
    env: PositionEnv, user: User, **fields
) -> position_pb2.GetPerformanceResponse:  # type: ignore[no-untyped-def]
    return await env.stub.GetPerformance(
        position_pb2.GetPerformanceRequest(**fields), metadata=user.auth
    )


def _stamp(moment) -> timestamp_pb2.Timestamp:  # type: ignore[no-untyped-def]
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


async def test_performance_of_closed_positions(env: PositionEnv) -> None:
    user = await env.user()
    closed = await _trade(env, user)
    still_open = await env.open(user, entry_price="1.08628")  # not counted
    response = await _performance(env, user)
    figures = response.performance
    assert (figures.trades, figures.wins, figures.losses, figures.breakevens) == (6, 3, 2, 1)
    assert figures.win_rate == 0.5
    assert (figures.total_pips, figures.total_pnl, figures.currency) == ("-110.9", "64.80", "USD")
    # Gross profit 894.00 over gross loss 829.20.
    assert figures.profit_factor == pytest.approx(894 / 829.2, rel=1e-12)
    # Planned reward/risk of the two trades with both levels: 0.00372 / 0.00228 and
    # 0.00462 / 0.00238.
    assert figures.average_risk_reward == pytest.approx((0.00372 / 0.00228 + 0.00462 / 0.00238) / 2)
    # From the 210.00 peak down to -619.20.
    assert figures.max_drawdown == "829.20"
    assert figures.unconverted_trades == 0
    assert [
        (point.position_id, point.cumulative_pnl, point.cumulative_pips)
        for point in figures.equity_curve
    ] == [(position.id, *totals) for position, totals in zip(closed, CUMULATIVE, strict=True)]
    assert [point.time for point in figures.equity_curve] == [p.close_time for p in closed]
    assert still_open.id not in {point.position_id for point in figures.equity_curve}
    (pair,) = figures.pairs
    assert (pair.pair, pair.trades, pair.wins, pair.losses, pair.breakevens) == (
        "EUR/USD",
        6,
        3,
        2,
        1,
    )
    assert (pair.win_rate, pair.total_pips, pair.total_pnl) == (0.5, "-110.9", "64.80")
    assert not response.HasField("since")  # all time
    # The same through a period and a pair filter; nothing on another pair.
    day = await _performance(env, user, period=position_pb2.PERFORMANCE_PERIOD_DAY, pair="eurusd")
    assert day.performance == figures
    assert day.until.ToDatetime() - day.since.ToDatetime() == timedelta(days=1)
    other_pair = (await _performance(env, user, pair="GBP/USD")).performance
    assert (other_pair.trades, other_pair.total_pnl, list(other_pair.pairs)) == (0, "0.00", [])


async def test_performance_of_a_window(env: PositionEnv) -> None:
    user = await env.user()
    closed = await _trade(env, user)
    since = closed[2].close_time  # inclusive
    until = closed[4].close_time  # exclusive
    response = await _performance(env, user, since=since, until=until)
    assert (response.since, response.until) == (since, until)
    figures = response.performance
    assert (figures.trades, figures.wins, figures.losses) == (2, 0, 2)
    assert (figures.total_pips, figures.total_pnl, figures.max_drawdown) == (
        "-204.1",
        "-829.20",
        "829.20",
    )
    assert figures.profit_factor == 0.0  # no gross profit, some loss
    assert not figures.HasField("average_risk_reward")  # neither had both levels
    assert [(p.position_id, p.cumulative_pnl) for p in figures.equity_curve] == [
        (closed[2].id, "-658.00"),
        (closed[3].id, "-829.20"),
    ]
    # Winners only: no loss, so no profit factor, and a curve that never fell.
    winners = await _performance(env, user, until=closed[2].close_time)
    assert (winners.performance.trades, winners.performance.total_pnl) == (2, "210.00")
    assert not winners.performance.HasField("profit_factor")
    # The contract says "0"; the service writes money with cents ("0.00"): both are zero.
    assert winners.performance.max_drawdown in ("0", "0.00")


async def test_a_user_without_trades(env: PositionEnv) -> None:
    user = await env.user()
    figures = (await _performance(env, user)).performance
    assert (figures.trades, figures.win_rate, figures.total_pips, figures.total_pnl) == (
        0,
        0.0,
        "0",
        "0.00",
    )
    assert not figures.HasField("profit_factor") and not figures.HasField("average_risk_reward")
    assert list(figures.equity_curve) == [] and list(figures.pairs) == []


async def test_performance_refuses_bad_input(env: PositionEnv) -> None:
    user = await env.user()
    now = timestamp_pb2.Timestamp()
    now.GetCurrentTime()
    earlier = timestamp_pb2.Timestamp(seconds=now.seconds - 3600)
    cases = [
        ({"period": position_pb2.PERFORMANCE_PERIOD_WEEK, "since": earlier}, {"period"}),
        ({"period": position_pb2.PERFORMANCE_PERIOD_ALL_TIME, "until": now}, {"period"}),
        ({"since": now, "until": earlier}, {"since"}),
        ({"period": 42}, {"period"}),
        ({"pair": "XXX/YYY"}, {"pair"}),
    ]
    for fields, expected in cases:
        error = await fails(_performance(env, user, **fields), grpc.StatusCode.INVALID_ARGUMENT)
        assert set(violations(error)) == expected, fields

"""Domain ⇄ proto for position_svc: enums, decimal strings and messages.

Decimals go on the wire as plain strings (no exponent): prices and pips without
trailing zeros ("1.08345", "15.5"), lot sizes with two decimals ("0.10"), money with
at least two ("15.50", "-0.125").
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from aifx.common.v1 import market_pb2
from aifx.position.v1 import position_pb2
from common.proto_convert import timestamp
from position_svc.performance import PairPerformance, Performance, PerformancePeriod
from position_svc.pnl import CENT, plain_decimal, quote_currency, unrealized
from position_svc.positions import (
    CloseReason,
    EventType,
    Position,
    PositionEvent,
    Result,
    Side,
    Status,
)

SIDE_FROM_PROTO = {market_pb2.TRADE_ACTION_BUY: Side.BUY, market_pb2.TRADE_ACTION_SELL: Side.SELL}
SIDE_TO_PROTO = {side: value for value, side in SIDE_FROM_PROTO.items()}
STATUS_TO_PROTO = {
    Status.OPEN: position_pb2.POSITION_STATUS_OPEN,
    Status.CLOSED: position_pb2.POSITION_STATUS_CLOSED,
}
STATUS_FROM_PROTO = {value: status for status, value in STATUS_TO_PROTO.items()}
REASON_TO_PROTO = {
    CloseReason.TAKE_PROFIT: position_pb2.CLOSE_REASON_TAKE_PROFIT,
    CloseReason.STOP_LOSS: position_pb2.CLOSE_REASON_STOP_LOSS,
    CloseReason.MANUAL: position_pb2.CLOSE_REASON_MANUAL,
    CloseReason.REPLAY_RESTARTED: position_pb2.CLOSE_REASON_REPLAY_RESTARTED,
}
RESULT_TO_PROTO = {
    Result.WIN: position_pb2.POSITION_RESULT_WIN,
    Result.LOSS: position_pb2.POSITION_RESULT_LOSS,
    Result.BREAKEVEN: position_pb2.POSITION_RESULT_BREAKEVEN,
}
EVENT_TO_PROTO = {
    EventType.OPENED: position_pb2.POSITION_EVENT_TYPE_OPENED,
    EventType.UPDATED: position_pb2.POSITION_EVENT_TYPE_UPDATED,
    EventType.TAKE_PROFIT_HIT: position_pb2.POSITION_EVENT_TYPE_TAKE_PROFIT_HIT,
    EventType.STOP_LOSS_HIT: position_pb2.POSITION_EVENT_TYPE_STOP_LOSS_HIT,
    EventType.CLOSED: position_pb2.POSITION_EVENT_TYPE_CLOSED,
}
PERIOD_FROM_PROTO = {
    position_pb2.PERFORMANCE_PERIOD_ALL_TIME: PerformancePeriod.ALL_TIME,
    position_pb2.PERFORMANCE_PERIOD_DAY: PerformancePeriod.DAY,
    position_pb2.PERFORMANCE_PERIOD_WEEK: PerformancePeriod.WEEK,
    position_pb2.PERFORMANCE_PERIOD_MONTH: PerformancePeriod.MONTH,
    position_pb2.PERFORMANCE_PERIOD_YEAR: PerformancePeriod.YEAR,
}
LOT = Decimal("0.01")


def decimal_text(value: Decimal | None) -> str:
    return "" if value is None else format(plain_decimal(value), "f")


def money_text(value: Decimal | None) -> str:
    if value is None:
        return ""
    plain = plain_decimal(value)
    exponent = plain.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -2:
        plain = plain.quantize(CENT)
    return format(plain, "f")


def position_message(position: Position, price: Decimal | None) -> position_pb2.Position:
    """The message of `position`; while open and `price` is known, with the current
    price, pips and unrealized PnL at it."""
    message = position_pb2.Position(
        id=position.id,
        user_id=position.user_id,
        pair=position.pair,
        side=SIDE_TO_PROTO[position.side],
        lot_size=format(position.lot_size.quantize(LOT), "f"),
        entry_price=decimal_text(position.entry_price),
        stop_loss=decimal_text(position.stop_loss),
        take_profit=decimal_text(position.take_profit),
        status=STATUS_TO_PROTO[position.status],
        exit_price=decimal_text(position.exit_price),
        pips=decimal_text(position.pips),
        realized_pnl=money_text(position.realized_pnl),
        pnl_currency=quote_currency(position.pair),
        signal_id=position.signal_id or "",
        open_time=timestamp(position.open_time),
        update_time=timestamp(position.update_time),
    )
    if position.close_reason is not None:
        message.close_reason = REASON_TO_PROTO[position.close_reason]
    if position.result is not None:
        message.result = RESULT_TO_PROTO[position.result]
    if position.close_time is not None:
        message.close_time.CopyFrom(timestamp(position.close_time))
    if position.is_open and price is not None:
        pips, pnl = unrealized(position, price)
        message.current_price = decimal_text(price)
        message.pips = decimal_text(pips)
        message.unrealized_pnl = money_text(pnl)
    return message


def event_message(event: PositionEvent) -> position_pb2.PositionEvent:
    """The event as it happened: an event's position carries no live price."""
    return position_pb2.PositionEvent(
        id=event.id,
        type=EVENT_TO_PROTO[event.type],
        position=position_message(event.position, None),
        time=timestamp(event.time),
    )


def _summary_fields(summary: Performance | PairPerformance) -> dict[str, Any]:
    """The fields the Performance message and its per-pair entries share."""
    return {
        "trades": summary.trades,
        "wins": summary.wins,
        "losses": summary.losses,
        "breakevens": summary.breakevens,
        "win_rate": summary.win_rate,
        "total_pips": decimal_text(summary.total_pips),
        "total_pnl": money_text(summary.total_pnl),
    }


def performance_message(performance: Performance) -> position_pb2.Performance:
    message = position_pb2.Performance(
        **_summary_fields(performance),
        max_drawdown=money_text(performance.max_drawdown),
        currency=performance.currency,
        unconverted_trades=performance.unconverted_trades,
    )
    if performance.profit_factor is not None:
        message.profit_factor = performance.profit_factor
    if performance.average_risk_reward is not None:
        message.average_risk_reward = performance.average_risk_reward
    for pair in performance.pairs:
        message.pairs.add(pair=pair.pair, **_summary_fields(pair))
    for point in performance.equity_curve:
        message.equity_curve.add(
            time=timestamp(point.time),
            position_id=point.position_id,
            cumulative_pnl=money_text(point.cumulative_pnl),
            cumulative_pips=decimal_text(point.cumulative_pips),
        )
    return message

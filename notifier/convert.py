"""Protos of the other services ⇄ the notifier's views."""

from __future__ import annotations

from datetime import UTC

from aifx.auth.v1 import auth_pb2
from aifx.common.v1 import market_pb2
from aifx.position.v1 import position_pb2
from aifx.signal.v1 import signal_pb2
from common.market import Timeframe
from common.proto_convert import TIMEFRAME_FROM_PROTO, TIMEFRAME_TO_PROTO, TRADE_ACTION_NAMES
from notifier.commands import PERIODS as PERIOD_NAMES
from notifier.messages import SignalView
from notifier.ports import PreferencesUpdate
from notifier.views import PerformanceView, PositionEventView, PositionView, PreferencesView

_STRENGTHS = {
    signal_pb2.SIGNAL_STRENGTH_WEAK: "weak",
    signal_pb2.SIGNAL_STRENGTH_MODERATE: "moderate",
    signal_pb2.SIGNAL_STRENGTH_STRONG: "strong",
    signal_pb2.SIGNAL_STRENGTH_VERY_STRONG: "very strong",
}


def signal_view(signal: signal_pb2.Signal) -> SignalView:
    timeframe = TIMEFRAME_FROM_PROTO.get(signal.timeframe)
    return SignalView(
        id=signal.id,
        pair=signal.pair,
        timeframe=timeframe.value if timeframe else "?",
        action=TRADE_ACTION_NAMES.get(signal.action, "hold"),
        confidence=signal.confidence,
        strength=_STRENGTHS.get(signal.strength, "weak"),
        entry=signal.entry_price,
        stop_loss=signal.stop_loss if signal.HasField("stop_loss") else None,
        take_profit=signal.take_profit if signal.HasField("take_profit") else None,
        risk_reward=signal.risk_reward_ratio if signal.HasField("risk_reward_ratio") else None,
        from_model=signal.source == signal_pb2.SIGNAL_SOURCE_MODEL,
        model=f"{signal.model_name} v{signal.model_version}",
        candle_time=signal.candle_time.ToDatetime(tzinfo=UTC),
    )


_SIDES = {market_pb2.TRADE_ACTION_BUY: "buy", market_pb2.TRADE_ACTION_SELL: "sell"}
EVENT_KINDS = {
    position_pb2.POSITION_EVENT_TYPE_OPENED: "position_opened",
    position_pb2.POSITION_EVENT_TYPE_TAKE_PROFIT_HIT: "take_profit_hit",
    position_pb2.POSITION_EVENT_TYPE_STOP_LOSS_HIT: "stop_loss_hit",
    position_pb2.POSITION_EVENT_TYPE_CLOSED: "position_closed",
}  # an UPDATED event (levels moved) is no news worth a DM
MODE_NAMES = {
    auth_pb2.NOTIFICATION_MODE_ON: "on",
    auth_pb2.NOTIFICATION_MODE_SILENT: "silent",
    auth_pb2.NOTIFICATION_MODE_OFF: "off",
}
MODE_NUMBERS = {name: number for number, name in MODE_NAMES.items()}
NOTIFICATION_KINDS = (
    "signal",
    "take_profit_hit",
    "stop_loss_hit",
    "position_opened",
    "position_closed",
)
PERIODS = {
    "all": position_pb2.PERFORMANCE_PERIOD_ALL_TIME,
    "day": position_pb2.PERFORMANCE_PERIOD_DAY,
    "week": position_pb2.PERFORMANCE_PERIOD_WEEK,
    "month": position_pb2.PERFORMANCE_PERIOD_MONTH,
    "year": position_pb2.PERFORMANCE_PERIOD_YEAR,
}


def position_view(position: position_pb2.Position) -> PositionView:
    is_open = position.status == position_pb2.POSITION_STATUS_OPEN
    return PositionView(
        id=position.id,
        pair=position.pair,
        side=_SIDES.get(position.side, "?"),
        lots=position.lot_size,
        entry=position.entry_price,
        stop_loss=position.stop_loss,
        take_profit=position.take_profit,
        status="open" if is_open else "closed",
        pips=position.pips,
        pnl=position.unrealized_pnl if is_open else position.realized_pnl,
        currency=position.pnl_currency,
        current_price=position.current_price,
        exit_price=position.exit_price,
        opened_at=position.open_time.ToDatetime(tzinfo=UTC),
    )


def position_event_view(event: position_pb2.PositionEvent) -> PositionEventView | None:
    """The event as a DM's subject; None for a kind no DM is sent for."""
    kind = EVENT_KINDS.get(event.type)
    if kind is None:
        return None
    return PositionEventView(
        id=event.id,
        kind=kind,
        position=position_view(event.position),
        time=event.time.ToDatetime(tzinfo=UTC),
        position_user_id=event.position.user_id,
    )


def performance_view(period: str, reply: position_pb2.GetPerformanceResponse) -> PerformanceView:
    p = reply.performance
    return PerformanceView(
        period=PERIOD_NAMES[period],
        trades=p.trades,
        wins=p.wins,
        losses=p.losses,
        win_rate=p.win_rate,
        total_pips=p.total_pips,
        total_pnl=p.total_pnl,
        profit_factor=p.profit_factor if p.HasField("profit_factor") else None,
        max_drawdown=p.max_drawdown,
        currency=p.currency,
        equity=[
            (point.time.ToDatetime(tzinfo=UTC), float(point.cumulative_pnl))
            for point in p.equity_curve
        ],
    )


def preferences_view(preferences: auth_pb2.Preferences) -> PreferencesView:
    modes = preferences.discord_notifications
    return PreferencesView(
        pairs=list(preferences.pairs),
        timeframes=[
            tf.value for n in preferences.timeframes if (tf := TIMEFRAME_FROM_PROTO.get(n))
        ],
        min_confidence=preferences.min_confidence,
        notify_discord=preferences.notify_discord,
        modes={kind: MODE_NAMES.get(getattr(modes, kind), "on") for kind in NOTIFICATION_KINDS},
    )


def preferences_update(update: PreferencesUpdate) -> tuple[auth_pb2.Preferences, list[str]]:
    """The message and update mask of the fields `update` changes."""
    message = auth_pb2.Preferences()
    mask = []
    if update.pairs is not None:
        message.pairs.extend(update.pairs)
        mask.append("pairs")
    if update.timeframes is not None:
        message.timeframes.extend(TIMEFRAME_TO_PROTO[Timeframe(tf)] for tf in update.timeframes)
        mask.append("timeframes")
    if update.min_confidence is not None:
        message.min_confidence = update.min_confidence
        mask.append("min_confidence")
    if update.notify_discord is not None:
        message.notify_discord = update.notify_discord
        mask.append("notify_discord")
    if update.modes:
        for kind, mode in update.modes.items():
            setattr(message.discord_notifications, kind, MODE_NUMBERS[mode])
        mask.append("discord_notifications")
    return message, mask

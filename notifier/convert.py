"""Protos of the other services ⇄ the notifier's views."""

from __future__ import annotations

from datetime import UTC

from aifx.common.v1 import market_pb2
from aifx.signal.v1 import signal_pb2
from common.proto_convert import TIMEFRAME_FROM_PROTO
from notifier.messages import SignalView

_ACTIONS = {
    market_pb2.TRADE_ACTION_BUY: "buy",
    market_pb2.TRADE_ACTION_SELL: "sell",
    market_pb2.TRADE_ACTION_HOLD: "hold",
}
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
        action=_ACTIONS.get(signal.action, "hold"),
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

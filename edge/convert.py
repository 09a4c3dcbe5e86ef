"""Protos of the other services → the events the old system's Socket.IO clients read.

The seed's React app and its bots read `trading:signal` with these field names (the old
system's Redis message, in the architecture report): `pair`, `timeframe` ("1h"),
`signal` ("buy" | "sell" | "hold"), `confidence` (0 to 1), `entryPrice`, `stopLoss`,
`takeProfit`, `riskRewardRatio`, `signalStrength` ("very_strong", ...), `technicalData`
(snake_case indicator names: `sma_20`, `rsi_14`, `macd`, ...) and `timestamp` (ISO 8601,
when the signal was made). AIFX adds `id` (what a reconnecting client sends back to
resume), `candleTime`, `source` ("model" | "technical") and `model`; old clients ignore
fields they do not know.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from aifx.signal.v1 import signal_pb2
from common.proto_convert import TIMEFRAME_FROM_PROTO, TRADE_ACTION_NAMES

_STRENGTHS = {
    signal_pb2.SIGNAL_STRENGTH_WEAK: "weak",
    signal_pb2.SIGNAL_STRENGTH_MODERATE: "moderate",
    signal_pb2.SIGNAL_STRENGTH_STRONG: "strong",
    signal_pb2.SIGNAL_STRENGTH_VERY_STRONG: "very_strong",
}


def _iso(stamp: Timestamp) -> str:
    """RFC 3339 in UTC with a Z, as JavaScript's toISOString writes it."""
    moment = stamp.ToDatetime(tzinfo=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _optional(message: Any, name: str) -> float | None:
    return getattr(message, name) if message.HasField(name) else None


def trading_signal(signal: signal_pb2.Signal) -> dict[str, Any]:
    """The `trading:signal` payload of `signal`."""
    timeframe = TIMEFRAME_FROM_PROTO.get(signal.timeframe)
    indicators = signal.indicators
    return {
        "id": signal.id,
        "pair": signal.pair,
        "timeframe": timeframe.value if timeframe else None,
        "signal": TRADE_ACTION_NAMES.get(signal.action, "hold"),
        "confidence": signal.confidence,
        "entryPrice": signal.entry_price,
        "stopLoss": _optional(signal, "stop_loss"),
        "takeProfit": _optional(signal, "take_profit"),
        "riskRewardRatio": _optional(signal, "risk_reward_ratio"),
        "signalStrength": _STRENGTHS.get(signal.strength, "weak"),
        "technicalData": {field.name: value for field, value in indicators.ListFields()},
        "timestamp": _iso(signal.create_time),
        "candleTime": _iso(signal.candle_time),
        "source": "model" if signal.source == signal_pb2.SIGNAL_SOURCE_MODEL else "technical",
        "model": f"{signal.model_name} v{signal.model_version}",
    }


def price_event(update: signal_pb2.PriceUpdate) -> dict[str, Any]:
    """The `price:<PAIR>` payload of a quote: `{pair, price, timestamp}` as the old
    system sent it, with the bar's `high` and `low` (what a stop-loss or take-profit is
    checked against)."""
    price = update.price
    return {
        "pair": price.pair,
        "price": price.price,
        "high": update.high,
        "low": update.low,
        "timestamp": _iso(price.time),
    }

"""Signal ⇄ proto, shared by the signal RPCs and the streams (the plain and JSON forms
are in `signal_codec.py`).

Signal ids travel as decimal strings ("42"): opaque to clients, which only compare them
for equality and pass one back as `resume_after_id`; `parse_signal_id` reads one back.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

from aifx.common.v1 import market_pb2
from aifx.signal.v1 import signal_pb2
from common.proto_convert import TIMEFRAME_TO_PROTO, timestamp
from signal_svc.signals import INDICATOR_NAMES, Action, Signal, Source, Strength

ResponseT = TypeVar("ResponseT")

ACTION_TO_PROTO = {
    Action.BUY: market_pb2.TRADE_ACTION_BUY,
    Action.SELL: market_pb2.TRADE_ACTION_SELL,
    Action.HOLD: market_pb2.TRADE_ACTION_HOLD,
}
# TRADE_ACTION_UNSPECIFIED and unknown numbers map to nothing: callers treat that as "any".
ACTION_FROM_PROTO = {value: key for key, value in ACTION_TO_PROTO.items()}

STRENGTH_TO_PROTO = {
    Strength.WEAK: signal_pb2.SIGNAL_STRENGTH_WEAK,
    Strength.MODERATE: signal_pb2.SIGNAL_STRENGTH_MODERATE,
    Strength.STRONG: signal_pb2.SIGNAL_STRENGTH_STRONG,
    Strength.VERY_STRONG: signal_pb2.SIGNAL_STRENGTH_VERY_STRONG,
}
SOURCE_TO_PROTO = {
    Source.MODEL: signal_pb2.SIGNAL_SOURCE_MODEL,
    Source.TECHNICAL_FALLBACK: signal_pb2.SIGNAL_SOURCE_TECHNICAL_FALLBACK,
}


def signal_id_text(signal_id: int) -> str:
    return str(signal_id)


def parse_signal_id(text: str) -> int:
    """The id of a `Signal.id` / `resume_after_id` string. ValueError when it is not one
    the server could have issued (not a positive decimal integer)."""
    stripped = text.strip()
    if not stripped.isdigit() or len(stripped) > 19:
        raise ValueError(f"'{text}' is not a signal id")
    value = int(stripped)
    if value <= 0:
        raise ValueError(f"'{text}' is not a signal id")
    return value


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def signal_message(signal: Signal) -> signal_pb2.Signal:
    """The wire form of a (stored) signal. Unset optionals stay unset: SL/TP/RR for HOLD,
    probabilities for fallback signals, indicators that could not be computed."""
    message = signal_pb2.Signal(
        id=signal_id_text(signal.id) if signal.id else "",
        pair=signal.pair,
        timeframe=TIMEFRAME_TO_PROTO[signal.timeframe],
        action=ACTION_TO_PROTO[signal.action],
        confidence=signal.confidence,
        strength=STRENGTH_TO_PROTO[signal.strength],
        entry_price=signal.entry_price,
        source=SOURCE_TO_PROTO[signal.source],
        model_name=signal.model_name,
        model_version=signal.model_version,
        candle_time=timestamp(signal.candle_time),
        create_time=timestamp(signal.created_at),
        replay_lap=signal.replay_lap,
    )
    if signal.stop_loss is not None:
        message.stop_loss = signal.stop_loss
    if signal.take_profit is not None:
        message.take_profit = signal.take_profit
    if signal.risk_reward_ratio is not None:
        message.risk_reward_ratio = signal.risk_reward_ratio
    if signal.probabilities is not None:
        p = signal.probabilities
        message.probabilities.buy = p.get("buy", 0.0)
        message.probabilities.hold = p.get("hold", 0.0)
        message.probabilities.sell = p.get("sell", 0.0)
    snapshot = message.indicators
    for name in INDICATOR_NAMES:
        value = _finite(signal.indicators.get(name))
        if value is not None:
            setattr(snapshot, name, value)
    # Present even when every indicator is unset, so clients always find the object.
    message.indicators.SetInParent()
    return message


# Response messages kept, so a live signal going to N subscribers (or read by GetSignal
# until the next one) is converted to proto once, not N times.
MESSAGE_CACHE = 512


class ResponseCache:
    """Proto responses of recent signals, keyed by the Signal object (held, so its id()
    cannot be reused while cached) and the response type: a live signal is one object
    for every subscriber, and the signal cache hands GetSignal the same object until
    its series' next one. gRPC only reads a response (to serialise it), so concurrent
    calls can share one."""

    def __init__(self, size: int = MESSAGE_CACHE) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[int, object], tuple[Signal, Any]] = OrderedDict()

    def response(self, signal: Signal, response_type: Callable[..., ResponseT]) -> ResponseT:
        """The `response_type(signal=...)` message of `signal`, made once."""
        key = (id(signal), response_type)
        entry = self._entries.get(key)
        if entry is not None and entry[0] is signal:
            return entry[1]
        response = response_type(signal=signal_message(signal))
        self._entries[key] = (signal, response)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return response

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

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.timestamp_pb2 import Timestamp

from aifx.auth.v1 import auth_pb2
from aifx.inference.v1 import inference_pb2
from aifx.position.v1 import position_pb2
from aifx.signal.v1 import signal_pb2
from common.proto_convert import TIMEFRAME_FROM_PROTO, TRADE_ACTION_NAMES
from edge.model_page import bottom_line

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


NOTIFICATION_TYPES = {
    position_pb2.POSITION_EVENT_TYPE_OPENED: "position_opened",
    position_pb2.POSITION_EVENT_TYPE_UPDATED: "position_updated",
    position_pb2.POSITION_EVENT_TYPE_TAKE_PROFIT_HIT: "take_profit_hit",
    position_pb2.POSITION_EVENT_TYPE_STOP_LOSS_HIT: "stop_loss_hit",
    position_pb2.POSITION_EVENT_TYPE_CLOSED: "position_closed",
}


def _headline(kind: str, position: position_pb2.Position) -> str:
    """The sentence a toast shows: "EUR/USD buy 0.10 closed on its take-profit at
    1.09000: +45.0 pips, +45.00 USD"."""
    side = TRADE_ACTION_NAMES.get(position.side, "?")
    what = f"{position.pair} {side} {position.lot_size}"
    result = (
        f": {_signed(position.pips)} pips, {_signed(position.realized_pnl)} {position.pnl_currency}"
    )
    if kind == "position_opened":
        return f"{what} opened at {position.entry_price}"
    if kind == "position_updated":
        stop, target = position.stop_loss or "none", position.take_profit or "none"
        return f"{what} now has stop-loss {stop}, take-profit {target}"
    if kind == "take_profit_hit":
        return f"{what} closed on its take-profit at {position.exit_price}{result}"
    if kind == "stop_loss_hit":
        return f"{what} closed on its stop-loss at {position.exit_price}{result}"
    return f"{what} closed at {position.exit_price}{result}"


def _signed(decimal: str) -> str:
    return decimal if decimal.startswith("-") else f"+{decimal}"


def notification(event: position_pb2.PositionEvent) -> dict[str, Any] | None:
    """The `notification` payload of a position event, `{type, message, timestamp}` as
    the old system sent it, with the event's `id` (to resume after) and the `position`
    in the REST API's JSON; None for an event of a kind this edge does not know."""
    kind = NOTIFICATION_TYPES.get(event.type)
    if kind is None:
        return None
    return {
        "id": str(event.id),
        "type": kind,
        "message": _headline(kind, event.position),
        "timestamp": _iso(event.time),
        "position": MessageToDict(event.position),
    }


@dataclass(frozen=True)
class SessionTokens:
    """A signed-in session: what the browser's script gets (`public`) and the refresh
    token the edge keeps in an HttpOnly cookie until `refresh_expires`."""

    public: dict[str, Any]
    refresh_token: str
    refresh_expires: datetime


def session_tokens(tokens: auth_pb2.TokenPair, user: auth_pb2.User) -> SessionTokens:
    return SessionTokens(
        public={
            "accessToken": tokens.access_token,
            "tokenType": tokens.token_type,
            "expiresIn": tokens.expires_in,
            "user": MessageToDict(user),
        },
        refresh_token=tokens.refresh_token,
        refresh_expires=tokens.refresh_expire_time.ToDatetime(tzinfo=UTC),
    )


def model_card(reply: inference_pb2.GetModelInfoResponse) -> dict[str, Any]:
    """The model page's JSON: GetModelInfo in the REST API's field names, the card's
    bottom line as `edge`, and the reliability plot as a data URL (an <img> cannot send
    the bearer token a plot route would ask for)."""
    info = MessageToDict(reply)
    plot = info.pop("reliabilityPng", None)
    info["modelCard"] = reply.model_card
    info["versions"] = list(reply.versions)
    info["edge"] = bottom_line(reply.model_card)
    info["reliabilityUrl"] = f"data:image/png;base64,{plot}" if plot else None
    return info

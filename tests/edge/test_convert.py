"""A signal as the old system's Socket.IO clients read it: the seed's field names and
values, AIFX's additions alongside."""

from __future__ import annotations

from google.protobuf import timestamp_pb2

from aifx.common.v1 import market_pb2
from aifx.position.v1 import position_pb2
from aifx.signal.v1 import signal_pb2
from edge.convert import notification, trading_signal


def test_a_signal_in_the_seeds_field_names():
    message = signal_pb2.Signal(
        id="42",
        pair="EUR/USD",
        timeframe=market_pb2.TIMEFRAME_H1,
        action=market_pb2.TRADE_ACTION_BUY,
        confidence=0.85,
        strength=signal_pb2.SIGNAL_STRENGTH_VERY_STRONG,
        entry_price=1.1234,
        stop_loss=1.11,
        take_profit=1.15,
        risk_reward_ratio=1.99,
        indicators=signal_pb2.IndicatorSnapshot(sma_20=1.12, rsi_14=45.2, macd=0.0012),
        source=signal_pb2.SIGNAL_SOURCE_MODEL,
        model_name="lstm",
        model_version="1",
        candle_time=timestamp_pb2.Timestamp(seconds=1762855200),
        create_time=timestamp_pb2.Timestamp(seconds=1762857000, nanos=250_000_000),
    )
    assert trading_signal(message) == {
        "id": "42",
        "pair": "EUR/USD",
        "timeframe": "1h",
        "signal": "buy",
        "confidence": 0.85,
        "entryPrice": 1.1234,
        "stopLoss": 1.11,
        "takeProfit": 1.15,
        "riskRewardRatio": 1.99,
        "signalStrength": "very_strong",
        "technicalData": {"sma_20": 1.12, "rsi_14": 45.2, "macd": 0.0012},
        "timestamp": "2025-11-11T10:30:00.250Z",
        "candleTime": "2025-11-11T10:00:00.000Z",
        "source": "model",
        "model": "lstm v1",
    }


def test_a_hold_without_levels_has_nulls_not_zeros():
    message = signal_pb2.Signal(
        id="7",
        pair="USD/JPY",
        timeframe=market_pb2.TIMEFRAME_D1,
        action=market_pb2.TRADE_ACTION_HOLD,
        source=signal_pb2.SIGNAL_SOURCE_TECHNICAL_FALLBACK,
    )
    event = trading_signal(message)
    assert (event["stopLoss"], event["takeProfit"], event["riskRewardRatio"]) == (None,) * 3
    assert event["signal"] == "hold" and event["source"] == "technical"
    assert event["technicalData"] == {}


def test_a_quote_as_the_old_price_event():
    from edge.convert import price_event

    update = signal_pb2.PriceUpdate(
        price=signal_pb2.Price(
            pair="EUR/USD", price=1.0841, time=timestamp_pb2.Timestamp(seconds=1762855200)
        ),
        high=1.0850,
        low=1.0830,
    )
    assert price_event(update) == {
        "pair": "EUR/USD",
        "price": 1.0841,
        "high": 1.085,
        "low": 1.083,
        "timestamp": "2025-11-11T10:00:00.000Z",
    }


def closed_position(**fields) -> position_pb2.Position:
    return position_pb2.Position(
        id="p-1",
        user_id="u-1",
        pair="EUR/USD",
        side=market_pb2.TRADE_ACTION_BUY,
        lot_size="0.10",
        entry_price="1.08500",
        **fields,
    )


def test_position_events_as_notifications_with_the_old_systems_fields():
    hit = position_pb2.PositionEvent(
        id=42,
        type=position_pb2.POSITION_EVENT_TYPE_TAKE_PROFIT_HIT,
        position=closed_position(
            exit_price="1.09000", pips="50.0", realized_pnl="50.00", pnl_currency="USD"
        ),
        time=timestamp_pb2.Timestamp(seconds=1762857000),
    )
    payload = notification(hit)
    assert payload is not None
    assert payload["id"] == "42" and payload["type"] == "take_profit_hit"
    assert payload["message"] == (
        "EUR/USD buy 0.10 closed on its take-profit at 1.09000: +50.0 pips, +50.00 USD"
    )
    assert payload["timestamp"] == "2025-11-11T10:30:00.000Z"
    assert payload["position"]["userId"] == "u-1" and payload["position"]["pips"] == "50.0"
    loss = position_pb2.PositionEvent(
        id=43,
        type=position_pb2.POSITION_EVENT_TYPE_STOP_LOSS_HIT,
        position=closed_position(
            exit_price="1.08000", pips="-50.0", realized_pnl="-50.00", pnl_currency="USD"
        ),
    )
    assert notification(loss)["message"].endswith("1.08000: -50.0 pips, -50.00 USD")
    opened = position_pb2.PositionEvent(
        id=44, type=position_pb2.POSITION_EVENT_TYPE_OPENED, position=closed_position()
    )
    assert notification(opened)["message"] == "EUR/USD buy 0.10 opened at 1.08500"
    moved = position_pb2.PositionEvent(
        id=45,
        type=position_pb2.POSITION_EVENT_TYPE_UPDATED,
        position=closed_position(stop_loss="1.08000"),
    )
    assert notification(moved)["message"] == (
        "EUR/USD buy 0.10 now has stop-loss 1.08000, take-profit none"
    )
    unknown = position_pb2.PositionEvent(id=46)
    assert notification(unknown) is None

"""The backtest: the offline Predictions port and the simulator on small hand-made
close series, driven through the real SignalEngine.

The series are hand-made on purpose (they are test fixtures, not market data): a
zigzag of 1.1000 / 1.1010 gives an ATR(14) of about 0.0010 and technical rules that
confirm a buy at its last up day, so the engine's levels are known: entry 1.10100,
stop-loss 1.09950, take-profit 1.10399 (1.5 and 3 ATR, rounded to 5 places).
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from backtest.predictions import RecordedPredictions, load_recorded
from backtest.simulate import buy_and_hold, simulate_engine
from common.candles import closes_only_candles
from common.market import Timeframe
from common.settings import StrategySettings
from position_svc.positions import CloseReason, Result, Side
from signal_svc.engine import SignalEngine
from signal_svc.ports import ModelPrediction, SeriesNotCovered
from signal_svc.signals import Action

DAY = 86_400
T0 = 1_577_836_800  # 2020-01-01T00:00:00Z
DECISION = 59  # index of the day the recorded prediction says buy
BUY_PROBABILITIES = {"sell": 0.1, "hold": 0.2, "buy": 0.7}


def _series(tail: list[float], pair: str = "EUR/USD"):
    zigzag = [1.1000 if i % 2 == 0 else 1.1010 for i in range(DECISION + 1)]
    close = np.array(zigzag + tail)
    times = T0 + DAY * np.arange(len(close))
    return closes_only_candles(pair, Timeframe.D1, times, close)


def _run(tail: list[float], threshold: float = 0.5):
    candles = _series(tail)
    decision_time = int(candles.times[DECISION])
    port = RecordedPredictions({("EUR/USD", decision_time): BUY_PROBABILITIES}, "lstm_daily", "1")
    engine = SignalEngine(StrategySettings(), port)
    end = int(candles.times[-1]) + DAY
    return asyncio.run(
        simulate_engine(
            engine, {"EUR/USD": candles}, decision_time, end, threshold, model_only=True
        )
    )


def test_take_profit_hit_closes_at_the_level():
    result = _run([1.1020, 1.1045, 1.1100])
    (position,) = result.positions
    assert position.side is Side.BUY
    assert position.entry_price == Decimal("1.10100")
    assert position.stop_loss == Decimal("1.09950")
    assert position.take_profit == Decimal("1.10399")
    assert position.close_reason is CloseReason.TAKE_PROFIT
    assert position.exit_price == Decimal("1.10399")  # the level, not the 1.1045 fixing
    assert position.pips == Decimal("29.9")
    assert position.realized_pnl_usd == Decimal("299.00")  # 0.00299 x 100,000
    assert position.close_time is not None and position.close_time.day == 2  # 2020-03-02
    assert result.ended_open == 0


def test_stop_loss_hit_closes_at_the_level_and_counts_a_loss():
    result = _run([1.1005, 1.0990, 1.1200])
    (position,) = result.positions
    assert position.close_reason is CloseReason.STOP_LOSS
    assert position.exit_price == Decimal("1.09950")
    assert position.pips == Decimal("-15")
    assert position.result is Result.LOSS
    performance = result.performance
    assert (performance.trades, performance.losses, performance.profit_factor) == (1, 1, 0.0)
    assert performance.max_drawdown == Decimal("150.00")


def test_position_open_at_the_end_closes_at_the_last_fixing():
    result = _run([1.1015, 1.1020, 1.1015])
    (position,) = result.positions
    assert position.close_reason is CloseReason.MANUAL
    assert position.exit_price == Decimal("1.10150")
    assert position.pips == Decimal("5")
    assert result.ended_open == 1


def test_confidence_below_the_threshold_is_not_traded():
    assert _run([1.1020, 1.1045], threshold=0.75).positions == []


def test_days_without_a_recorded_prediction_are_not_traded_as_the_model():
    """Only the decision day has a prediction; on the other days the engine falls back
    to its rules, which the model's backtest never trades."""
    result = _run([1.1015] * 30)
    assert len(result.positions) == 1
    assert result.positions[0].open_time.day == 29  # 2020-02-29, the decision day


def test_buy_and_hold_by_hand():
    """EUR/USD 1.1000 → 1.1200: +200 pips, +2,000 USD on one lot. USD/JPY 110.000 →
    109.000: -100 pips, -100,000 JPY = -917.43 USD at the exit rate 1/109."""
    times = T0 + DAY * np.arange(3)
    series = {
        "EUR/USD": closes_only_candles("EUR/USD", Timeframe.D1, times, [1.1, 1.15, 1.12]),
        "USD/JPY": closes_only_candles("USD/JPY", Timeframe.D1, times, [110.0, 111.0, 109.0]),
    }
    result = buy_and_hold(series, T0, T0 + 3 * DAY)
    by_pair = {p.pair: p for p in result.positions}
    assert by_pair["EUR/USD"].pips == Decimal("200")
    assert by_pair["EUR/USD"].realized_pnl_usd == Decimal("2000.00")
    assert by_pair["USD/JPY"].pips == Decimal("-100")
    assert by_pair["USD/JPY"].realized_pnl_usd == Decimal("-917.43")
    performance = result.performance
    assert performance.trades == 2 and performance.win_rate == 0.5
    assert performance.total_pips == Decimal("100")
    assert performance.total_pnl == Decimal("1082.57")
    assert performance.profit_factor == pytest.approx(2000 / 917.43)
    assert performance.max_drawdown == Decimal("917.43")  # EUR/USD closes first (by id)


def test_recorded_predictions_answer_the_decision_day_only():
    candles = _series([1.1020])
    recorded = {("EUR/USD", int(candles.times[DECISION])): BUY_PROBABILITIES}
    port = RecordedPredictions(recorded, "lstm_daily", "1")
    hit, miss = asyncio.run(port.predict([candles.slice(0, DECISION + 1), candles]))
    assert isinstance(hit, ModelPrediction)
    assert (hit.action, hit.confidence, hit.probabilities) == (Action.BUY, 0.7, BUY_PROBABILITIES)
    assert (hit.model_name, hit.model_version) == ("lstm_daily", "1")
    assert isinstance(miss, SeriesNotCovered)


def test_recorded_predictions_file_round_trip_and_refuses_a_repeat(tmp_path: Path):
    path = tmp_path / "heldout_predictions.csv"
    header = "pair,candle_time,test_year,sell,hold,buy,label\n"
    row = "EUR/USD,2020-02-29T00:00:00Z,2020,0.1,0.2,0.7,buy\n"
    path.write_text(header + row)
    recorded, years = load_recorded(path)
    key = ("EUR/USD", T0 + DECISION * DAY)
    assert recorded == {key: BUY_PROBABILITIES} and years == {key: 2020}
    path.write_text(header + row + row)
    with pytest.raises(ValueError, match="repeats"):
        load_recorded(path)

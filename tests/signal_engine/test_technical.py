"""The indicator snapshot and the technical rules on the real bundled EUR/USD hours."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest
import ta

from common.candles import Candles
from signal_svc import technical
from signal_svc.signals import INDICATOR_NAMES, Action

ENDS = (60, 300, 1234, 2500, 4999, 5000)


@pytest.fixture(scope="module")
def views(hours: Candles) -> list[tuple[int, dict, technical.TechnicalView]]:
    """(index, snapshot, view) at every candle from 300 on, from indicators computed
    once over the whole history (the same values as per-candle snapshots, checked
    below)."""
    columns = technical.series(hours)
    out = []
    for index in range(300, len(hours)):
        snap = technical.snapshot_at(columns, index)
        out.append((index, snap, technical.evaluate(float(hours.close[index]), snap)))
    return out


def reference(candles: Candles) -> dict[str, float]:
    """Every snapshot indicator at the last bar, computed by the `ta` library."""
    close, high, low = (pd.Series(x) for x in (candles.close, candles.high, candles.low))
    macd = ta.trend.MACD(close, window_slow=26, window_fast=12, window_sign=9)
    bands = ta.volatility.BollingerBands(close, window=20, window_dev=2)
    values = {
        "sma_20": ta.trend.SMAIndicator(close, 20).sma_indicator(),
        "sma_50": ta.trend.SMAIndicator(close, 50).sma_indicator(),
        "ema_12": ta.trend.EMAIndicator(close, 12).ema_indicator(),
        "ema_26": ta.trend.EMAIndicator(close, 26).ema_indicator(),
        "rsi_14": ta.momentum.RSIIndicator(close, 14).rsi(),
        "macd": macd.macd(),
        "macd_signal": macd.macd_signal(),
        "macd_histogram": macd.macd_diff(),
        "atr_14": ta.volatility.AverageTrueRange(high, low, close, 14).average_true_range(),
        "bollinger_upper": bands.bollinger_hband(),
        "bollinger_middle": bands.bollinger_mavg(),
        "bollinger_lower": bands.bollinger_lband(),
    }
    return {name: float(series.iloc[-1]) for name, series in values.items()}


@pytest.mark.parametrize("end", ENDS)
def test_snapshot_matches_ta_on_real_bars(hours: Candles, end: int) -> None:
    candles = hours.slice(0, end)
    snap = technical.snapshot(candles)
    assert tuple(snap) == INDICATOR_NAMES
    expected = reference(candles)
    for name in INDICATOR_NAMES:
        assert snap[name] is not None, name
        assert snap[name] == pytest.approx(expected[name], rel=1e-9, abs=1e-12), name


def test_snapshot_of_a_short_history_leaves_undefined_indicators_unset(hours: Candles) -> None:
    snap = technical.snapshot(hours.slice(0, 30))
    assert snap["sma_20"] is not None and snap["ema_26"] is not None
    assert snap["rsi_14"] is not None and snap["atr_14"] is not None
    # SMA(50) needs 50 bars, the MACD signal line 26 + 9 - 1.
    assert snap["sma_50"] is None
    assert snap["macd_signal"] is None and snap["macd_histogram"] is None
    assert technical.snapshot(hours.slice(0, 0)) == dict.fromkeys(INDICATOR_NAMES)


def test_whole_history_series_equal_per_candle_snapshots(hours: Candles, views) -> None:
    for index, snap, view in views[::701]:
        own_snap, own_view = technical.analyse(hours.slice(0, index + 1))
        assert own_view == view
        for name in INDICATOR_NAMES:
            assert own_snap[name] == pytest.approx(snap[name], rel=1e-9), name


def test_votes_and_rule_follow_the_documented_definition(hours: Candles, views) -> None:
    for index, snap, view in views[::7]:
        close = float(hours.close[index])
        assert view.votes == {
            "momentum": int(np.sign(snap["macd_histogram"])),
            "trend": int(np.sign(close - snap["sma_50"])),
            "crossover": int(np.sign(snap["ema_12"] - snap["ema_26"])),
            "rsi_side": int(np.sign(snap["rsi_14"] - 50)),
        }
        assert view.score == sum(view.votes.values())
        stretched_up = snap["rsi_14"] > 70 or close > snap["bollinger_upper"]
        stretched_down = snap["rsi_14"] < 30 or close < snap["bollinger_lower"]
        if view.action is Action.BUY:
            assert view.score >= 3 and not stretched_up
            assert view.confidence == pytest.approx(0.45 + 0.075 * view.score)
        elif view.action is Action.SELL:
            assert view.score <= -3 and not stretched_down
            assert view.confidence == pytest.approx(0.45 + 0.075 * -view.score)
        else:
            assert (
                abs(view.score) < 3
                or (view.score >= 3 and stretched_up)
                or (view.score <= -3 and stretched_down)
            )
            assert view.confidence == pytest.approx(0.55 - 0.05 * abs(view.score))


def test_rules_call_buys_sells_and_holds_on_real_history(views) -> None:
    seen = Counter(view.action for _, _, view in views)
    total = sum(seen.values())
    # Not degenerate: every action, trades at roughly 40% of candles, balanced directions.
    assert set(seen) == {Action.BUY, Action.SELL, Action.HOLD}
    assert 0.25 < (seen[Action.BUY] + seen[Action.SELL]) / total < 0.55
    assert 0.6 < seen[Action.BUY] / seen[Action.SELL] < 1.6


def test_a_stretched_trend_is_not_chased(hours: Candles, views) -> None:
    """Real candles where every vote is bullish (bearish) but RSI or Bollinger say the
    move is stretched: the rules hold there instead of trading."""
    vetoed = Counter()
    for index, snap, view in views:
        close = float(hours.close[index])
        if view.score == 4 and technical.overbought(close, snap):
            assert view.action is Action.HOLD
            vetoed["up"] += 1
        if view.score == -4 and technical.oversold(close, snap):
            assert view.action is Action.HOLD
            vetoed["down"] += 1
    assert vetoed["up"] > 10 and vetoed["down"] > 10


def test_contradiction_is_only_the_opposite_trade() -> None:
    buy = technical.TechnicalView({}, 4, Action.BUY, 0.75)
    hold = technical.TechnicalView({}, 0, Action.HOLD, 0.55)
    assert buy.contradicts(Action.SELL) and not buy.contradicts(Action.BUY)
    assert not buy.contradicts(Action.HOLD)
    assert not hold.contradicts(Action.BUY) and not hold.contradicts(Action.SELL)


def test_a_batch_is_analysed_as_each_series_alone(hours):
    """analyse_many (the engine's scan) equals analyse one by one, whatever the mix of
    lengths: a batch of equal lengths, a lone length, and one too short for MACD."""
    many = [
        hours.slice(0, 300),
        hours.slice(700, 1000),
        hours.slice(2000, 2300),
        hours.slice(0, 120),
        hours.slice(4000, 4020),
        hours.slice(0, 3000),  # longer than the snapshot's tail: cut like analyse does
    ]
    assert technical.analyse_many(many) == [technical.analyse(c) for c in many]

"""Indicators against the `ta` library on the real EUR/USD history, and the feature
module's train/serve parity: the same candles give the same tensor."""

import numpy as np
import pytest
import ta
from backtesting.test import EURUSD

from common import indicators
from common.market_data import load_bundled_history
from inference.features import (
    FEATURE_NAMES,
    Scaler,
    WindowSpec,
    last_window,
    model_input,
    sliding_windows,
    window_features,
)

CLOSE, HIGH, LOW = EURUSD.Close, EURUSD.High, EURUSD.Low


def same(ours: np.ndarray, reference, tolerance: float = 1e-9) -> None:
    expected = np.asarray(reference, dtype=float)
    defined = ~np.isnan(expected) & ~np.isnan(ours)
    assert defined.sum() > 4000
    np.testing.assert_allclose(ours[defined], expected[defined], rtol=0, atol=tolerance)


def test_moving_averages_match_ta():
    same(indicators.sma(CLOSE.to_numpy(), 20), ta.trend.SMAIndicator(CLOSE, 20).sma_indicator())
    same(indicators.ema(CLOSE.to_numpy(), 12), ta.trend.EMAIndicator(CLOSE, 12).ema_indicator())


def test_rsi_matches_ta_including_where_it_starts():
    ours = indicators.rsi(CLOSE.to_numpy(), 14)
    reference = ta.momentum.RSIIndicator(CLOSE, 14).rsi().to_numpy()
    assert np.array_equal(np.isnan(ours), np.isnan(reference))
    same(ours, reference)


def test_macd_matches_ta():
    line, signal, histogram = indicators.macd(CLOSE.to_numpy())
    reference = ta.trend.MACD(CLOSE)
    same(line, reference.macd())
    same(signal, reference.macd_signal())
    same(histogram, reference.macd_diff())


def test_atr_and_bollinger_match_ta():
    same(
        indicators.atr(HIGH.to_numpy(), LOW.to_numpy(), CLOSE.to_numpy(), 14),
        ta.volatility.AverageTrueRange(HIGH, LOW, CLOSE, 14).average_true_range(),
    )
    upper, middle, lower = indicators.bollinger(CLOSE.to_numpy(), 20, 2.0)
    bands = ta.volatility.BollingerBands(CLOSE, 20, 2)
    same(upper, bands.bollinger_hband(), 1e-8)
    same(lower, bands.bollinger_lband(), 1e-8)
    same(middle, bands.bollinger_mavg(), 1e-9)


def test_short_series_are_undefined_not_errors():
    short = CLOSE.to_numpy()[:10]
    assert np.isnan(indicators.macd(short)[0]).all()
    assert np.isnan(indicators.atr(short, short, short, 14)).all()


def test_a_batch_of_windows_equals_each_window_alone():
    close = CLOSE.to_numpy()
    windows = np.lib.stride_tricks.sliding_window_view(close, 300)[::500]
    batched = indicators.rsi(windows)
    for row, start in zip(batched, range(0, len(close) - 299, 500), strict=True):
        np.testing.assert_array_equal(row, indicators.rsi(close[start : start + 300]))


@pytest.fixture(scope="module")
def hours():
    return load_bundled_history()


def test_features_are_defined_and_shaped(hours):
    spec = WindowSpec()
    ohlc, times = sliding_windows(hours, spec)
    features = window_features(ohlc, times, spec)
    assert features.shape == (len(hours) - spec.history + 1, spec.lookback, len(FEATURE_NAMES))
    assert np.isfinite(features).all()


def test_train_serve_parity_same_candles_same_tensor(hours):
    """The training path (all sliding windows at once) and the serving path (the last
    window of what a caller sends) give identical tensors for the same candles."""
    spec = WindowSpec()
    ohlc, times = sliding_windows(hours, spec)
    training = window_features(ohlc, times, spec)
    scaler = Scaler.fit(training[:1000])
    for end in (spec.history, 2500, len(hours)):
        sent = hours.slice(max(0, end - spec.history - 40), end)  # older extras are ignored
        served = model_input(sent, spec, scaler)
        expected = scaler.transform(training[end - spec.history : end - spec.history + 1])
        np.testing.assert_array_equal(served, expected)


def test_too_few_candles_are_refused(hours):
    with pytest.raises(ValueError, match="at least 260"):
        last_window(hours.slice(0, 100), WindowSpec())


def test_scaler_round_trips_through_its_saved_form(hours):
    spec = WindowSpec()
    features = window_features(*sliding_windows(hours.slice(0, 600), spec), spec)
    scaler = Scaler.fit(features)
    again = Scaler.from_dict(scaler.to_dict())
    np.testing.assert_array_equal(scaler.transform(features), again.transform(features))

"""The model's input features: one module for training and serving, free of TensorFlow,
so the two cannot drift.

Features are computed per window of candles: a window is the `lookback` bars the model
sees plus `warmup` bars before them so every indicator is defined and its smoothing has
settled. Training builds its samples by running `window_features` on every sliding window
of the history; the inference service runs the very same function on the last window a
caller sends. Same candles in, same tensor out, by construction.

Two feature sets exist, named in each model's metadata (`WindowSpec.feature_set`):
`hourly_ohlc` (version 1 of the hourly model: traded bars, bar ranges and the hour of
day) and `daily_closes` (the daily model: closes only, so ECB fixings, which have no
open/high/low, and daily bars aggregated from hours give the same kind of input). Every
daily feature is a return or a ratio, so one model can be pooled across pairs whose
prices differ by orders of magnitude (EUR/GBP 0.8, USD/JPY 150).

Scaling (standardisation per feature) is fitted on the training split only and saved with
the model (`Scaler.to_dict`), then applied identically at serving time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common import indicators
from common.candles import Candles

FEATURE_NAMES = (
    "log_return_1",
    "log_return_4",
    "log_return_12",
    "log_return_24",
    "rsi_14",
    "macd_line",
    "macd_signal",
    "macd_histogram",
    "close_vs_sma_20",
    "close_vs_sma_50",
    "atr_14_relative",
    "bar_range_relative",
    "hour_sin",
    "hour_cos",
)
DAILY_FEATURE_NAMES = (
    "log_return_1",
    "log_return_5",
    "log_return_10",
    "log_return_20",
    "rsi_14",
    "macd_line",
    "macd_signal",
    "macd_histogram",
    "close_vs_sma_20",
    "close_vs_sma_50",
    # ATR on closes alone is the mean absolute close-to-close change (Wilder-smoothed):
    # the documented substitute for a true range on series without highs and lows.
    "close_change_atr_14_relative",
)
HOURLY_OHLC = "hourly_ohlc"
DAILY_CLOSES = "daily_closes"
DEFAULT_LOOKBACK = 60
# Longest smoothing memory: Wilder's RSI/ATR (alpha 1/14) decay below 1e-7 after ~220
# bars; 200 also covers SMA(50) and the 24-bar return with room to spare.
DEFAULT_WARMUP = 200


@dataclass(frozen=True)
class WindowSpec:
    lookback: int = DEFAULT_LOOKBACK
    warmup: int = DEFAULT_WARMUP
    feature_set: str = HOURLY_OHLC

    def __post_init__(self) -> None:
        if self.feature_set not in FEATURE_SETS:
            known = ", ".join(FEATURE_SETS)
            raise ValueError(f"feature set {self.feature_set!r}: use one of {known}")

    @property
    def feature_names(self) -> tuple[str, ...]:
        return FEATURE_SETS[self.feature_set]

    @property
    def history(self) -> int:
        """Candles needed to compute one model input."""
        return self.lookback + self.warmup


def _log_return(close: np.ndarray, bars: int) -> np.ndarray:
    out = np.full(close.shape, np.nan)
    out[..., bars:] = np.log(close[..., bars:] / close[..., :-bars])
    return out


def window_features(ohlc: np.ndarray, times: np.ndarray, spec: WindowSpec) -> np.ndarray:
    """Unscaled features of a batch of windows, in `spec.feature_set`.

    `ohlc` is [batch, history, 4] (open, high, low, close), `times` [batch, history]
    bar open times in UTC epoch seconds. Returns float64 [batch, lookback, features].
    """
    if ohlc.shape[-2] != spec.history:
        raise ValueError(f"a window is {spec.history} candles, got {ohlc.shape[-2]}")
    if spec.feature_set == DAILY_CLOSES:
        columns = _daily_close_columns(ohlc[..., 3])
    else:
        columns = _hourly_ohlc_columns(ohlc, times)
    features = np.stack(columns, axis=-1)[..., -spec.lookback :, :]
    if np.isnan(features).any():
        raise ValueError("warm-up too short: a feature is undefined inside the lookback")
    return features


def _trend_columns(close: np.ndarray) -> list[np.ndarray]:
    """RSI, MACD and the distance to two moving averages, relative to price: the middle
    columns of both feature sets."""
    line, signal, histogram = indicators.macd(close)
    return [
        indicators.rsi(close, 14) / 100.0,
        line / close,
        signal / close,
        histogram / close,
        close / indicators.sma(close, 20) - 1.0,
        close / indicators.sma(close, 50) - 1.0,
    ]


def _hourly_ohlc_columns(ohlc: np.ndarray, times: np.ndarray) -> list[np.ndarray]:
    high, low, close = ohlc[..., 1], ohlc[..., 2], ohlc[..., 3]
    hours = (times % 86_400) / 3600.0
    return [
        *(_log_return(close, bars) for bars in (1, 4, 12, 24)),
        *_trend_columns(close),
        indicators.atr(high, low, close, 14) / close,
        (high - low) / close,
        np.sin(2 * np.pi * hours / 24.0),
        np.cos(2 * np.pi * hours / 24.0),
    ]


def _daily_close_columns(close: np.ndarray) -> list[np.ndarray]:
    """DAILY_FEATURE_NAMES, from closes alone (highs and lows are never read)."""
    return [
        *(_log_return(close, bars) for bars in (1, 5, 10, 20)),
        *_trend_columns(close),
        indicators.atr(close, close, close, 14) / close,
    ]


FEATURE_SETS: dict[str, tuple[str, ...]] = {
    HOURLY_OHLC: FEATURE_NAMES,
    DAILY_CLOSES: DAILY_FEATURE_NAMES,
}


def sliding_windows(candles: Candles, spec: WindowSpec) -> tuple[np.ndarray, np.ndarray]:
    """Every window of a series: ohlc [n_windows, history, 4] and times
    [n_windows, history]; window i ends at candle i + history - 1."""
    view = np.lib.stride_tricks.sliding_window_view
    ohlc = view(candles.ohlc(), spec.history, axis=0).transpose(0, 2, 1)
    return ohlc, view(candles.times, spec.history)


def last_window(candles: Candles, spec: WindowSpec) -> tuple[np.ndarray, np.ndarray]:
    """The window ending at the last candle, as a batch of one."""
    if len(candles) < spec.history:
        raise ValueError(f"need at least {spec.history} candles, got {len(candles)}")
    recent = candles.tail(spec.history)
    return recent.ohlc()[None, ...], recent.times[None, ...]


@dataclass(frozen=True)
class Scaler:
    """Per-feature standardisation fitted on the training split."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, features: np.ndarray) -> Scaler:
        flat = features.reshape(-1, features.shape[-1])
        std = flat.std(axis=0)
        return cls(mean=flat.mean(axis=0), std=np.where(std > 0, std, 1.0))

    def transform(self, features: np.ndarray) -> np.ndarray:
        """float32, as the model takes it."""
        return ((features - self.mean) / self.std).astype(np.float32)

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, list[float]]) -> Scaler:
        return cls(mean=np.asarray(data["mean"]), std=np.asarray(data["std"]))


def model_input(candles: Candles, spec: WindowSpec, scaler: Scaler) -> np.ndarray:
    """The scaled [1, lookback, features] float32 tensor for the latest candle: what the
    inference service sends the model server."""
    ohlc, times = last_window(candles, spec)
    return scaler.transform(window_features(ohlc, times, spec))

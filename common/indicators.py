"""Technical indicators in numpy, computed along the last axis.

Every function takes arrays shaped [..., n] (one series, or a batch of windows) and
returns the same shape, NaN where the indicator is not yet defined. The definitions
follow the `ta` library's (pandas `ewm(adjust=False)` smoothing, Wilder's smoothing for
RSI and ATR, population standard deviation for Bollinger bands), and the tests check
them against `ta` on the real EUR/USD history. Batches matter: training computes
features for thousands of windows at once with the same code that serves one request.
"""

from __future__ import annotations

import numpy as np


def _recurrence(values: np.ndarray, alpha: float, start: int = 0) -> np.ndarray:
    """s[start] = x[start]; s[t] = alpha*x[t] + (1-alpha)*s[t-1]; NaN before start."""
    out = np.full(values.shape, np.nan)
    state = values[..., start]
    out[..., start] = state
    for t in range(start + 1, values.shape[-1]):
        state = alpha * values[..., t] + (1.0 - alpha) * state
        out[..., t] = state
    return out


def sma(values: np.ndarray, period: int) -> np.ndarray:
    """Simple moving average over `period` bars."""
    out = np.full(values.shape, np.nan)
    if values.shape[-1] < period:
        return out
    cumulative = np.cumsum(values, axis=-1)
    out[..., period - 1] = cumulative[..., period - 1]
    out[..., period:] = cumulative[..., period:] - cumulative[..., :-period]
    out[..., period - 1 :] /= period
    return out


def ema(values: np.ndarray, period: int) -> np.ndarray:
    """Exponential moving average, alpha = 2/(period+1), seeded with the first value;
    NaN for the first period-1 bars (as `ta` reports it)."""
    out = _recurrence(values, 2.0 / (period + 1))
    out[..., : period - 1] = np.nan
    return out


def rsi(close: np.ndarray, period: int = 14) -> np.ndarray:
    """Relative strength index (0-100) with Wilder's smoothing."""
    # The first bar has no change; it counts as zero, as in `ta`.
    change = np.diff(close, axis=-1, prepend=close[..., :1])
    alpha = 1.0 / period
    average_up = _recurrence(np.clip(change, 0.0, None), alpha)
    average_down = _recurrence(np.clip(-change, 0.0, None), alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = 100.0 - 100.0 / (1.0 + average_up / average_down)
    out = np.where(average_down == 0.0, 100.0, value)
    out[..., : period - 1] = np.nan
    return out


def macd(
    close: np.ndarray, fast: int = 12, slow: int = 26, signal: int = 9
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MACD line, signal line and histogram."""
    if close.shape[-1] < slow:
        undefined = np.full(close.shape, np.nan)
        return undefined, undefined.copy(), undefined.copy()
    line = _recurrence(close, 2.0 / (fast + 1)) - _recurrence(close, 2.0 / (slow + 1))
    line[..., : slow - 1] = np.nan
    # The signal line starts where the MACD line is first defined.
    signal_line = _recurrence(line, 2.0 / (signal + 1), start=slow - 1)
    signal_line[..., : slow + signal - 2] = np.nan
    return line, signal_line, line - signal_line


def true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    previous = np.concatenate([close[..., :1], close[..., :-1]], axis=-1)
    return np.maximum(high, previous) - np.minimum(low, previous)


def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = 14) -> np.ndarray:
    """Average true range: the mean of the first `period` true ranges, then Wilder's
    smoothing (atr[t] = (atr[t-1]*(period-1) + tr[t]) / period)."""
    ranges = true_range(high, low, close)
    out = np.full(close.shape, np.nan)
    if close.shape[-1] < period:
        return out
    state = ranges[..., :period].mean(axis=-1)
    out[..., period - 1] = state
    for t in range(period, close.shape[-1]):
        state = (state * (period - 1) + ranges[..., t]) / period
        out[..., t] = state
    return out


def bollinger(
    close: np.ndarray, period: int = 20, deviations: float = 2.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Upper band, middle band (SMA) and lower band; population standard deviation."""
    middle = sma(close, period)
    squares = sma(close * close, period)
    spread = np.sqrt(np.clip(squares - middle * middle, 0.0, None))
    return middle + deviations * spread, middle, middle - deviations * spread

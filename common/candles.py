"""A series of OHLCV candles for one pair and timeframe, as plain numpy arrays.

The one representation market data, features, the inference service and (later) the
signal engine share. Arrays rather than a DataFrame: feature code runs on batches of
windows, and the serving path must not pay pandas' overhead per request.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common.market import Timeframe

TIMEFRAME_SECONDS = {
    Timeframe.M15: 15 * 60,
    Timeframe.H1: 3600,
    Timeframe.H4: 4 * 3600,
    Timeframe.D1: 24 * 3600,
}


class CandleError(ValueError):
    """Candles that cannot be used; the message names the first offending candle."""


@dataclass(frozen=True)
class Candles:
    """`times` are bar open times in UTC epoch seconds, strictly increasing.

    `closes_only` marks a series of single prices rather than traded bars: the ECB's
    daily reference rates are one fixing a day, with no open, high or low. Such a
    series is stored with open = high = low = close (the one price known), and code that
    needs a bar's range uses a close-to-close substitute instead (see
    common.indicators and inference.features), so no bar is ever made up.
    """

    pair: str
    timeframe: Timeframe
    times: np.ndarray  # int64 [n]
    open: np.ndarray  # float64 [n]
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    closes_only: bool = False

    def __len__(self) -> int:
        return int(self.times.shape[0])

    def ohlc(self) -> np.ndarray:
        """[n, 4] float64 array of open, high, low, close."""
        return np.stack([self.open, self.high, self.low, self.close], axis=1)

    def tail(self, count: int) -> Candles:
        """The last `count` candles."""
        return self.slice(max(0, len(self) - count), len(self))

    def slice(self, start: int, stop: int) -> Candles:
        return Candles(
            self.pair,
            self.timeframe,
            self.times[start:stop],
            self.open[start:stop],
            self.high[start:stop],
            self.low[start:stop],
            self.close[start:stop],
            self.volume[start:stop],
            self.closes_only,
        )


def closes_only_candles(
    pair: str, timeframe: Timeframe, times: np.ndarray | list[int], close: np.ndarray | list[float]
) -> Candles:
    """A closes-only series (see Candles): one price per bar."""
    price = np.asarray(close, dtype=np.float64)
    return make_candles(pair, timeframe, times, price, price, price, price, closes_only=True)


def make_candles(
    pair: str,
    timeframe: Timeframe,
    times: np.ndarray | list[int],
    open_: np.ndarray | list[float],
    high: np.ndarray | list[float],
    low: np.ndarray | list[float],
    close: np.ndarray | list[float],
    volume: np.ndarray | list[float] | None = None,
    *,
    closes_only: bool = False,
) -> Candles:
    """Candles from columns, validated (see `validate`)."""
    close_array = np.asarray(close, dtype=np.float64)
    candles = Candles(
        pair=pair,
        timeframe=timeframe,
        times=np.asarray(times, dtype=np.int64),
        open=np.asarray(open_, dtype=np.float64),
        high=np.asarray(high, dtype=np.float64),
        low=np.asarray(low, dtype=np.float64),
        close=close_array,
        volume=(np.zeros_like(close_array) if volume is None else np.asarray(volume, np.float64)),
        closes_only=closes_only,
    )
    validate(candles)
    return candles


def validate(candles: Candles) -> None:
    """Refuse candles no indicator can be computed on: lengths that differ, NaN or
    infinite values, non-positive prices, a high below the low or not bracketing the
    open/close, negative volume, and times that are not strictly increasing."""
    n = len(candles)
    columns = {
        "open": candles.open,
        "high": candles.high,
        "low": candles.low,
        "close": candles.close,
        "volume": candles.volume,
    }
    for name, column in columns.items():
        if column.shape != (n,):
            raise CandleError(f"{name} has {column.shape[0]} values for {n} candles")
        bad = np.flatnonzero(~np.isfinite(column))
        if bad.size:
            raise CandleError(f"candle {bad[0]}: {name} is not a finite number")
    for name in ("open", "high", "low", "close"):
        bad = np.flatnonzero(columns[name] <= 0)
        if bad.size:
            raise CandleError(f"candle {bad[0]}: {name} must be positive")
    bad = np.flatnonzero(candles.volume < 0)
    if bad.size:
        raise CandleError(f"candle {bad[0]}: volume must not be negative")
    top = np.maximum(candles.open, candles.close)
    bottom = np.minimum(candles.open, candles.close)
    bad = np.flatnonzero((candles.high < top) | (candles.low > bottom))
    if bad.size:
        raise CandleError(f"candle {bad[0]}: high/low do not bracket open and close")
    if candles.closes_only:
        bad = np.flatnonzero(
            (candles.open != candles.close)
            | (candles.high != candles.close)
            | (candles.low != candles.close)
        )
        if bad.size:
            raise CandleError(f"candle {bad[0]}: a closes-only series has one price per bar")
    if n > 1:
        bad = np.flatnonzero(np.diff(candles.times) <= 0)
        if bad.size:
            raise CandleError(
                f"candle {bad[0] + 1}: times must be strictly increasing "
                "(oldest first, no duplicates)"
            )

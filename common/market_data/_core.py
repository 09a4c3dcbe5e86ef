"""What every loader shares: the errors, argument checks, frame → Candles, and building
longer bars (4h, 1d) from shorter ones.

pandas is imported only by the functions that take a DataFrame (`aggregate_hourly`,
`frame_to_candles`: the Yahoo path, whose yfinance needs pandas anyway). The offline
paths (bundled history, CSV files) work on numpy arrays, so a long-running service
replaying them never loads pandas (about 42 MB of resident memory)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from common.candles import TIMEFRAME_SECONDS, Candles, make_candles
from common.market import Timeframe, normalize_pair

if TYPE_CHECKING:
    import pandas as pd

# Pandas resampling rules for the timeframes that are built from hourly bars. Buckets
# start at 00:00 UTC, so 4h bars open at 00, 04, ... 20 UTC and daily bars at midnight UTC.
AGGREGATE_RULES = {Timeframe.H4: "4h", Timeframe.D1: "1D"}
_AGGREGATION = {"Open": "first", "High": "max", "Low": "min", "Close": "last", "Volume": "sum"}


class MarketDataError(Exception):
    """Market data could not be had; the message says why and what to do."""


class MarketDataUnavailable(MarketDataError):
    """The data source could not be reached or sent nothing, even after retrying: a
    temporary condition (gRPC UNAVAILABLE), unlike a wrong argument or a bad file."""


def as_pair(pair: str) -> str:
    """`eurusd` → `EUR/USD`, or MarketDataError."""
    try:
        return normalize_pair(pair)
    except ValueError as exc:
        raise MarketDataError(str(exc)) from None


def as_timeframe(timeframe: Timeframe | str) -> Timeframe:
    """A Timeframe from itself or its value (`"4h"`), or MarketDataError."""
    try:
        return Timeframe(timeframe)
    except ValueError:
        offered = ", ".join(t.value for t in Timeframe)
        raise MarketDataError(f"'{timeframe}' is not a timeframe; use one of {offered}") from None


def aggregate_candles(candles: Candles, timeframe: Timeframe) -> Candles:
    """Shorter bars as bars of `timeframe` (longer), with numpy: first open, highest
    high, lowest low, last close, summed volume of the bars in each bucket; buckets
    without bars (weekends) are absent. Buckets start at 00:00 UTC (every timeframe
    divides a day), so 4h bars open at 00, 04, ... 20 UTC and daily bars at midnight UTC —
    the buckets of `aggregate_hourly` (pandas' resample), with the same values (volumes
    are summed left to right, where pandas compensates rounding: fractional volumes may
    differ in the last binary digit). A last bucket may be incomplete: the caller decides
    whether a bar that closes after the last bar it is built from is kept."""
    width = TIMEFRAME_SECONDS[timeframe]
    if width <= TIMEFRAME_SECONDS[candles.timeframe]:
        raise MarketDataError(
            f"{timeframe.value} bars cannot be built from {candles.timeframe.value} bars"
        )
    if not len(candles):
        return make_candles(candles.pair, timeframe, [], [], [], [], [], [])
    buckets = candles.times - candles.times % width  # times increase: so do buckets
    starts = np.flatnonzero(np.diff(buckets, prepend=buckets[0] - 1))
    lasts = np.append(starts[1:], len(candles)) - 1
    return make_candles(
        candles.pair,
        timeframe,
        buckets[starts],
        candles.open[starts],
        np.maximum.reduceat(candles.high, starts),
        np.minimum.reduceat(candles.low, starts),
        candles.close[lasts],
        np.add.reduceat(candles.volume, starts),
    )


def aggregate_hourly(frame: pd.DataFrame, timeframe: Timeframe) -> pd.DataFrame:
    """Hourly Open/High/Low/Close/Volume bars (UTC or naive-UTC index) as 4h or 1d bars:
    first open, highest high, lowest low, last close, summed volume of the hours in each
    bucket; buckets without hours (weekends) are dropped."""
    return (
        frame[list(_AGGREGATION)]
        .resample(AGGREGATE_RULES[timeframe], label="left", closed="left")
        .agg(_AGGREGATION)
        .dropna()
    )


def frame_to_candles(frame: pd.DataFrame, pair: str, timeframe: Timeframe) -> Candles:
    """A frame with Open/High/Low/Close[/Volume] columns and a datetime index (UTC, or
    naive meaning UTC) as Candles."""
    import pandas as pd  # only callers that already have a DataFrame get here

    index = pd.DatetimeIndex(frame.index)
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    times = index.as_unit("s").asi8
    volume = frame["Volume"].to_numpy(np.float64) if "Volume" in frame else None
    return make_candles(
        pair,
        timeframe,
        times,
        frame["Open"].to_numpy(np.float64),
        frame["High"].to_numpy(np.float64),
        frame["Low"].to_numpy(np.float64),
        frame["Close"].to_numpy(np.float64),
        volume,
    )

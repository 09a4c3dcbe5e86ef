"""The real history the replay offers offline. Never synthetic prices.

- The default (`default_history`): the hourly EUR/USD bars bundled with the
  `backtesting` package (1h, and 4h aggregated from them; 2017-04 to 2018-02), and a
  daily series of every supported pair from the ECB's euro reference rates (1999 to
  2026, `common.market_data.ecb`): one fixing a day, closes only. EUR/USD's daily series
  is the ECB's too, so all the daily series are the same kind and span the same years
  (ten months of hours would give a daily EUR/USD that stops in 2018 while the others
  run on, with a different kind of bar than the daily model learnt from).
- `bundled_history`: the bundled hours alone (1h, 4h and 1d).
- `csv_history`: a user's CSV file(s).

Longer timeframes are aggregated from the shortest one available for a pair (4h and 1d
from the bundled hours, as `common.market_data` does, with numpy: this module, run by the
long-lived signal service, does not import pandas), and an aggregated bar that would
close after the last real bar of the series it is built from is dropped: it would be an
unfinished bar presented as closed.

CSV files (settings.market.market_data_csv: one file, or a directory of `*.csv` files) follow the
format of `common.market_data.csv_file`. A file's name says which series it holds,
e.g. `EURUSD_1h.csv`, `gbp-usd.4h.csv`, `USDJPY 1d.csv`:

- the pair is the first `AAA[/-_ ]BBB` in the name that is a supported pair; a name
  without one means the first of settings.market.signal_pairs;
- the timeframe is a `15m`, `1h`, `4h` or `1d` token in the name; a name without one
  means the most common spacing of the file's bars (the file is then validated for that
  timeframe).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from common.candles import TIMEFRAME_SECONDS, Candles
from common.market import Timeframe, normalize_pair
from common.market_data import (
    MarketDataError,
    aggregate_candles,
    bundled_pairs,
    load_bundled_history,
    load_csv_history,
)
from common.market_data.ecb import ECB_PAIRS, EURO, load_ecb_history

SeriesKey = tuple[str, Timeframe]

# Timeframes ordered from shortest to longest.
TIMEFRAMES_BY_LENGTH: tuple[Timeframe, ...] = tuple(
    sorted(Timeframe, key=lambda tf: TIMEFRAME_SECONDS[tf])
)
_PAIR_IN_NAME = re.compile(r"(?<![A-Za-z])([A-Za-z]{3})[/\-_ ]?([A-Za-z]{3})(?![A-Za-z])")
_TIMEFRAME_IN_NAME = re.compile(r"(?<![0-9A-Za-z])(15m|1h|4h|1d)(?![0-9A-Za-z])", re.I)


@dataclass(frozen=True)
class OfflineHistory:
    """Every series of real bars available without a network, where they came from
    ("replay" for the history installed with AIFX, "csv" for a user's files), and each
    series' origin in words (ListPairs shows it)."""

    series: Mapping[SeriesKey, Candles]
    source: str
    origins: Mapping[SeriesKey, str] = field(default_factory=dict)

    def offered(self) -> dict[str, list[Timeframe]]:
        """Pair → its timeframes, shortest first."""
        offered: dict[str, list[Timeframe]] = {}
        for pair, timeframe in self.series:
            offered.setdefault(pair, []).append(timeframe)
        for timeframes in offered.values():
            timeframes.sort(key=lambda tf: TIMEFRAME_SECONDS[tf])
        return offered


def close_times(candles: Candles) -> np.ndarray:
    """Close time (epoch seconds) of every bar: its open time plus the timeframe."""
    return candles.times + TIMEFRAME_SECONDS[candles.timeframe]


def ordered(series: Mapping[SeriesKey, Candles], first_pairs: Iterable[str] = ()) -> dict:
    """`series` ordered by pair (`first_pairs` first, in their order, then the others
    alphabetically), then by timeframe length."""
    rank = {pair: i for i, pair in enumerate(first_pairs)}

    def key(item: SeriesKey) -> tuple[int, str, int]:
        pair, timeframe = item
        return (rank.get(pair, len(rank)), pair, TIMEFRAME_SECONDS[timeframe])

    return {k: series[k] for k in sorted(series, key=key)}


def aggregate(candles: Candles, timeframe: Timeframe) -> Candles:
    """Bars of `timeframe` built from shorter real bars (first open, highest high,
    lowest low, last close, summed volume per bucket starting at 00:00 UTC; empty
    buckets dropped), without a last bar that would close after the last bar it is
    built from."""
    return complete_bars(aggregate_candles(candles, timeframe), candles)


def complete_bars(built: Candles, base: Candles) -> Candles:
    """`built` without the bars that would close after the last bar of `base`."""
    end = int(close_times(base)[-1]) if len(base) else 0
    keep = int(np.searchsorted(close_times(built), end, side="right"))
    return built.slice(0, keep)


@lru_cache(maxsize=1)
def bundled_history() -> OfflineHistory:
    """The bundled real EUR/USD history: 1h bars and 4h/1d bars aggregated from them
    (read once per process; Candles are immutable)."""
    series: dict[SeriesKey, Candles] = {}
    for pair, timeframes in bundled_pairs().items():
        shortest = min(timeframes, key=lambda tf: TIMEFRAME_SECONDS[tf])
        base = load_bundled_history(pair, shortest)
        for timeframe in timeframes:
            candles = base if timeframe == shortest else load_bundled_history(pair, timeframe)
            series[(pair, timeframe)] = complete_bars(candles, base)
    origins = {key: BUNDLED_ORIGIN for key in series}
    return OfflineHistory(ordered(series), "replay", origins)


BUNDLED_ORIGIN = (
    "hourly EUR/USD bars shipped with the backtesting package (4h and 1d built from them)"
)


def ecb_origin(pair: str) -> str:
    """How a pair's daily series is derived from the ECB's rates, in words."""
    base, quote = pair.split("/")
    if base == EURO:
        how = f"the {quote} rate itself"
    elif quote == EURO:
        how = f"1 divided by the {base} rate"
    else:
        how = f"the {quote} rate divided by the {base} rate of the same day"
    return f"ECB euro reference rates (one fixing a day, closes only): {how}"


@lru_cache(maxsize=1)
def default_history() -> OfflineHistory:
    """The default offline history (see the module docstring): EUR/USD 1h and 4h from
    the bundled hours, and a daily closes-only series of every supported pair from the
    ECB's reference rates. EUR/USD 1h comes first: the replay starts in it."""
    hours = load_bundled_history("EUR/USD", Timeframe.H1)
    series: dict[SeriesKey, Candles] = {
        ("EUR/USD", Timeframe.H1): hours,
        ("EUR/USD", Timeframe.H4): aggregate(hours, Timeframe.H4),
    }
    origins = dict.fromkeys(series, BUNDLED_ORIGIN)
    for pair, candles in load_ecb_history(ECB_PAIRS).items():
        series[(pair, Timeframe.D1)] = candles
        origins[(pair, Timeframe.D1)] = ecb_origin(pair)
    return OfflineHistory(ordered(series, ["EUR/USD"]), "replay", origins)


def csv_history(path: str | Path, default_pair: str = "EUR/USD") -> OfflineHistory:
    """The series of a CSV file, or of every `*.csv` file of a directory (see the module
    docstring for how a file's pair and timeframe are found). Raises MarketDataError
    (CsvFormatError naming line and column) for a file that cannot be used."""
    root = Path(path)
    if root.is_dir():
        files = sorted(p for p in root.iterdir() if p.suffix.lower() == ".csv" and p.is_file())
        if not files:
            raise MarketDataError(f"{root}: no .csv files in this directory")
    elif root.is_file():
        files = [root]
    else:
        raise MarketDataError(f"{root}: no such file or directory")

    loaded: dict[SeriesKey, Candles] = {}
    origin: dict[SeriesKey, Path] = {}
    for file in files:
        pair = _pair_in_name(file.stem) or normalize_pair(default_pair)
        timeframe = _timeframe_in_name(file.stem) or _infer_timeframe(file, pair)
        key = (pair, timeframe)
        if key in loaded:
            raise MarketDataError(
                f"{file} and {origin[key]} both hold {pair} {timeframe.value} bars"
            )
        loaded[key] = load_csv_history(file, pair, timeframe)
        origin[key] = file

    series = dict(loaded)
    for pair in {pair for pair, _ in loaded}:
        shortest = min((tf for p, tf in loaded if p == pair), key=lambda tf: TIMEFRAME_SECONDS[tf])
        base = loaded[(pair, shortest)]
        for timeframe in TIMEFRAMES_BY_LENGTH:
            longer = TIMEFRAME_SECONDS[timeframe] > TIMEFRAME_SECONDS[shortest]
            if longer and (pair, timeframe) not in series:
                built = aggregate(base, timeframe)
                if len(built):
                    series[(pair, timeframe)] = built
    origins = {key: f"CSV file {origin[key].name}" for key in loaded}
    origins.update({key: f"built from {key[0]} CSV bars" for key in series if key not in origins})
    return OfflineHistory(ordered(series, [default_pair]), "csv", origins)


def _pair_in_name(stem: str) -> str | None:
    for match in _PAIR_IN_NAME.finditer(stem):
        try:
            return normalize_pair(match.group(1) + match.group(2))
        except ValueError:
            continue
    return None


def _timeframe_in_name(stem: str) -> Timeframe | None:
    match = _TIMEFRAME_IN_NAME.search(stem)
    return Timeframe(match.group(1).lower()) if match else None


def _infer_timeframe(file: Path, pair: str) -> Timeframe:
    """The timeframe whose length is the most common spacing of the file's bars."""
    # 15m is the shortest timeframe, so reading as 15m accepts any valid spacing.
    times = load_csv_history(file, pair, Timeframe.M15).times
    gaps = np.diff(times)
    counts = {tf: int(np.count_nonzero(gaps == TIMEFRAME_SECONDS[tf])) for tf in Timeframe}
    best = max(counts, key=lambda tf: counts[tf])
    if counts[best] == 0:
        names = ", ".join(tf.value for tf in Timeframe)
        raise MarketDataError(
            f"{file}: cannot tell the timeframe (no two bars are exactly 15m, 1h, 4h or 1d "
            f"apart); put one of {names} in the file name, e.g. EURUSD_1h.csv"
        )
    return best

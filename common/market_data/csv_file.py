"""A user's bars from a CSV file, checked completely before anything is returned.

The format
----------
- UTF-8 text (a byte-order mark is allowed), fields separated by commas, optionally
  double-quoted as spreadsheets write them.
- Line 1 is a header naming the columns ``time,open,high,low,close`` and optionally
  ``volume``: in any order, case-insensitive, spaces around names ignored, no other
  columns and none twice.
- Every following line is one bar with exactly as many fields as the header, oldest bar
  first. Blank lines are skipped (and still counted for line numbers).
- ``time`` is the bar's open time, either
  - ISO 8601: ``2017-04-19T09:00:00Z``, ``2017-04-19 11:00:00+02:00``,
    ``2017-04-19T09:00`` (no zone means UTC), ``2017-04-19`` (midnight UTC); or
  - Unix epoch seconds, a bare integer: ``1492592400``.

  Whole seconds only. Times must increase from line to line, and consecutive bars must be
  at least one bar apart (15m, 1h; 4h and 1d bars may be an hour closer, for a broker's
  daylight-saving shift) — a 15-minute file loaded as 1h is refused, not misread.
- ``open``, ``high``, ``low``, ``close`` are positive decimal numbers (``1.07219``,
  ``1.07e0``), with ``high`` >= ``low`` and both bracketing ``open`` and ``close``.
- ``volume`` is a non-negative decimal number; without the column, volume is 0.

Example::

    time,open,high,low,close,volume
    2017-04-19T09:00:00Z,1.07160,1.07220,1.07083,1.07219,1413
    2017-04-19T10:00:00Z,1.07214,1.07296,1.07214,1.07260,1241

A file that breaks any rule is refused as a whole with `CsvFormatError`, whose message
names the line (1-based as in an editor; the header is line 1) and, when the problem is
one field, the column, e.g. ``prices.csv: line 17, column close: 'abc' is not a
number``. Nothing is ever half-loaded.
"""

from __future__ import annotations

import csv
import io
import os
import re
from datetime import UTC, datetime
from typing import Protocol

from common.candles import TIMEFRAME_SECONDS, CandleError, Candles, make_candles
from common.market import Timeframe
from common.market_data._core import MarketDataError, as_pair, as_timeframe

CSV_COLUMNS = ("time", "open", "high", "low", "close", "volume")
_REQUIRED = CSV_COLUMNS[:5]
_PRICES = ("open", "high", "low", "close")
_EXPECTED = "time,open,high,low,close[,volume]"
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_EPOCH = re.compile(r"\d+")
# Epoch seconds beyond 2100-01-01 are almost certainly milliseconds.
_MAX_EPOCH = 4_102_444_800
# 4h and 1d bars of brokers that follow New York or European daylight-saving time move
# by an hour twice a year.
_SLACK = {Timeframe.H4: 3600, Timeframe.D1: 3600}


class CsvFormatError(MarketDataError):
    """A CSV file that does not follow the documented format. `line` is 1-based (the
    header is line 1) or None for the file as a whole; `column` is the column's name when
    the problem is one field."""

    def __init__(self, path: str, problem: str, line: int | None = None, column: str | None = None):
        where = (
            ""
            if line is None
            else f"line {line}" + ("" if column is None else f", column {column}")
        )
        super().__init__(f"{path}: {where}: {problem}" if where else f"{path}: {problem}")
        self.path = path
        self.problem = problem
        self.line = line
        self.column = column


class _Fail(Protocol):
    """How the checks below build the error they raise: `_parse`'s `fail`, which knows
    the file's name so the checks need not carry it."""

    def __call__(
        self, problem: str, line: int | None = None, column: str | None = None
    ) -> CsvFormatError: ...


def load_csv_history(
    path: str | os.PathLike[str], pair: str, timeframe: Timeframe | str
) -> Candles:
    """The bars of a CSV file in the format of this module's docstring, as Candles for
    `pair` and `timeframe`. Raises CsvFormatError naming line and column for a bad file,
    MarketDataError for an unreadable file or an unknown pair or timeframe."""
    pair = as_pair(pair)
    timeframe = as_timeframe(timeframe)
    name = os.fspath(path)
    try:
        with open(path, "rb") as file:
            raw = file.read()
    except OSError as exc:
        raise MarketDataError(f"cannot read {name}: {exc.strerror or exc}") from None
    return _parse(name, raw, pair, timeframe)


def _parse(name: str, raw: bytes, pair: str, timeframe: Timeframe) -> Candles:
    def fail(problem: str, line: int | None = None, column: str | None = None) -> CsvFormatError:
        return CsvFormatError(name, problem, line, column)

    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise fail(f"not UTF-8 text (byte 0x{raw[exc.start]:02x})", line) from None

    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    columns: list[str] | None = None
    values: dict[str, list[float]] = {}
    times: list[int] = []
    previous_line = 0
    min_gap = TIMEFRAME_SECONDS[timeframe] - _SLACK.get(timeframe, 0)

    while True:
        line = reader.line_num + 1  # where the next record starts
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise fail(f"not valid CSV ({exc})", reader.line_num) from None
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # a blank line
        if columns is None:
            columns = _header(row, line, fail)
            values = {column: [] for column in columns if column != "time"}
            continue
        if len(row) != len(columns):
            raise fail(
                f"{len(row)} field{'s' if len(row) != 1 else ''}, expected {len(columns)} "
                f"({','.join(columns)})",
                line,
            )
        cells = {column: cell.strip() for column, cell in zip(columns, row, strict=True)}
        for column in columns:
            if not cells[column]:
                raise fail("empty", line, column)
        time = _time(cells["time"], line, fail)
        numbers = {column: _number(cells[column], line, column, fail) for column in values}
        _check_bar(numbers, cells, line, fail)
        if times:
            gap = time - times[-1]
            if gap <= 0:
                raise fail(
                    f"'{cells['time']}' is not after the previous row's time "
                    f"({_iso(times[-1])}, line {previous_line})",
                    line,
                    "time",
                )
            if gap < min_gap:
                raise fail(
                    f"'{cells['time']}' is only {_duration(gap)} after the previous row "
                    f"(line {previous_line}); {timeframe.value} bars are at least "
                    f"{_duration(min_gap)} apart — is this the right timeframe?",
                    line,
                    "time",
                )
        times.append(time)
        for column, number in numbers.items():
            values[column].append(number)
        previous_line = line

    if columns is None:
        raise fail(f"the file is empty; it needs a header line {_EXPECTED} and bars")
    if not times:
        raise fail("no bars after the header (line 1)")
    try:
        return make_candles(
            pair,
            timeframe,
            times,
            values["open"],
            values["high"],
            values["low"],
            values["close"],
            values.get("volume"),
        )
    except CandleError as exc:  # not reached when the checks above are complete
        raise fail(str(exc)) from None


def _header(row: list[str], line: int, fail: _Fail) -> list[str]:
    columns = [cell.strip().lower() for cell in row]
    hint = ""
    if len(row) == 1 and any(sep in row[0] for sep in ";\t|"):
        hint = "; fields must be separated by commas"
    seen: set[str] = set()
    for column in columns:
        if column not in CSV_COLUMNS:
            shown = column or "(empty)"
            raise fail(f"unknown column '{shown}'; the columns are {_EXPECTED}{hint}", line)
        if column in seen:
            raise fail(f"column '{column}' appears twice", line)
        seen.add(column)
    missing = [column for column in _REQUIRED if column not in seen]
    if missing:
        raise fail(f"missing column {', '.join(missing)}; the columns are {_EXPECTED}", line)
    return columns


def _time(cell: str, line: int, fail: _Fail) -> int:
    if _EPOCH.fullmatch(cell):
        epoch = int(cell)
        if epoch >= _MAX_EPOCH:
            raise fail(f"{cell} is too large for epoch seconds (milliseconds?)", line, "time")
        return epoch
    try:
        moment = datetime.fromisoformat(cell)
    except ValueError:
        raise fail(
            f"'{cell}' is not an ISO 8601 time (2017-04-19T09:00:00Z) or epoch seconds",
            line,
            "time",
        ) from None
    if moment.microsecond:
        raise fail(f"'{cell}' has a fraction of a second; use whole seconds", line, "time")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def _number(cell: str, line: int, column: str, fail: _Fail) -> float:
    if not _DECIMAL.fullmatch(cell):
        raise fail(f"'{cell}' is not a number", line, column)
    number = float(cell)
    if number == float("inf") or number == float("-inf"):
        raise fail(f"'{cell}' is out of range", line, column)
    if column in _PRICES and number <= 0:
        raise fail(f"{cell} is not a positive price", line, column)
    if number < 0:
        raise fail(f"{cell} is negative", line, column)
    return number


def _check_bar(numbers: dict[str, float], cells: dict[str, str], line: int, fail: _Fail) -> None:
    high, low = numbers["high"], numbers["low"]
    if high < low:
        raise fail(f"high {cells['high']} is below low {cells['low']}", line)
    for column in ("open", "close"):
        if numbers[column] > high:
            raise fail(f"{column} {cells[column]} is above high {cells['high']}", line)
        if numbers[column] < low:
            raise fail(f"{column} {cells[column]} is below low {cells['low']}", line)


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"

"""The market-data loaders on real EUR/USD bars (those `backtesting` ships): the bundled
history, CSV files made from its rows, and yfinance without a network."""

from __future__ import annotations

import importlib.util
import socket
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yfinance as yf  # imported here: on import it adds a warnings filter of its own
from backtesting.test import EURUSD

from common.candles import Candles
from common.market import Timeframe
from common.market_data import (
    CsvFormatError,
    MarketDataError,
    MarketDataUnavailable,
    aggregate_candles,
    aggregate_hourly,
    bundled_csv_path,
    bundled_pairs,
    frame_to_candles,
    load_bundled_history,
    load_csv_history,
    load_yahoo_history,
    yahoo_symbol,
)
from common.market_data import yahoo as yahoo_module
from tests.infra import heavy_imports_after
from tests.yahoo_standin import fresh_yfinance_fixture  # noqa: F401

# yfinance 1.7 itself still uses pandas' deprecated `inplace=`; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword:DeprecationWarning")

HOUR = 3600


def _epoch(text: str) -> int:
    return int(pd.Timestamp(text, tz="UTC").timestamp())


# --- the bundled history ------------------------------------------------------------


def test_bundled_hours_are_the_5000_real_bars() -> None:
    candles = load_bundled_history()
    assert (candles.pair, candles.timeframe, len(candles)) == ("EUR/USD", Timeframe.H1, 5000)
    assert candles.times[0] == _epoch("2017-04-19 09:00")
    assert candles.times[-1] == _epoch("2018-02-07 15:00")
    np.testing.assert_array_equal(candles.close, EURUSD["Close"].to_numpy())
    np.testing.assert_array_equal(candles.volume, EURUSD["Volume"].to_numpy(np.float64))
    assert np.all(np.diff(candles.times) >= HOUR)


@pytest.mark.parametrize("timeframe", [Timeframe.H4, Timeframe.D1])
def test_bundled_aggregates_agree_with_the_hours(timeframe: Timeframe) -> None:
    """Each 4h/1d bar is exactly the hours inside it: first open, highest high, lowest
    low, last close, summed volume (checked here with numpy, not pandas' resample)."""
    hours = load_bundled_history()
    bars = load_bundled_history("EUR/USD", timeframe)
    width = {Timeframe.H4: 4 * HOUR, Timeframe.D1: 24 * HOUR}[timeframe]
    buckets = hours.times // width * width
    starts = np.unique(buckets)
    np.testing.assert_array_equal(bars.times, starts)
    for i, start in enumerate(starts):
        inside = buckets == start
        assert bars.open[i] == hours.open[inside][0]
        assert bars.high[i] == hours.high[inside].max()
        assert bars.low[i] == hours.low[inside].min()
        assert bars.close[i] == hours.close[inside][-1]
        assert bars.volume[i] == hours.volume[inside].sum()
    assert bars.volume.sum() == hours.volume.sum()


def test_bundled_refuses_what_it_does_not_have() -> None:
    with pytest.raises(MarketDataError, match=r"no bundled history for EUR/USD 15m") as caught:
        load_bundled_history("EUR/USD", Timeframe.M15)
    assert "hourly" in str(caught.value) and "EUR/USD 1h, 4h, 1d" in str(caught.value)
    with pytest.raises(MarketDataError, match="no bundled history for GBP/USD 1h"):
        load_bundled_history("GBP/USD", Timeframe.H1)
    assert bundled_pairs() == {"EUR/USD": [Timeframe.H1, Timeframe.H4, Timeframe.D1]}


@pytest.mark.parametrize("timeframe", [Timeframe.H1, Timeframe.H4, Timeframe.D1])
def test_bundled_bars_are_pandas_reading_of_the_same_file(timeframe: Timeframe) -> None:
    """The loader parses backtesting's EURUSD.csv itself (csv module, numpy); what pandas
    reads from that file (as `backtesting.test.EURUSD` does), and resamples for 4h/1d,
    is the same, bar for bar, to the bit."""
    path = bundled_csv_path()
    assert path.parts[-3:] == ("backtesting", "test", "EURUSD.csv")
    frame = pd.read_csv(path, index_col=0, parse_dates=True)
    pd.testing.assert_frame_equal(frame, EURUSD)  # the file backtesting.test reads
    if timeframe != Timeframe.H1:
        frame = aggregate_hourly(frame, timeframe)
    expected = frame_to_candles(frame, "EUR/USD", timeframe)
    candles = load_bundled_history("EUR/USD", timeframe)
    assert (candles.pair, candles.timeframe, len(candles)) == ("EUR/USD", timeframe, len(frame))
    for column in ("times", "open", "high", "low", "close", "volume"):
        actual, wanted = getattr(candles, column), getattr(expected, column)
        assert actual.dtype == wanted.dtype, column
        np.testing.assert_array_equal(actual, wanted, err_msg=column, strict=True)


def test_bundled_history_loads_without_pandas_backtesting_or_yfinance() -> None:
    """Importing the loaders and reading the bundled history (every timeframe) leaves
    pandas, backtesting (and its bokeh) and yfinance out of the process: a fresh one."""
    code = (
        "from common.market_data import load_bundled_history\n"
        "for tf in ('1h', '4h', '1d'):\n"
        "    load_bundled_history('EUR/USD', tf)\n"
    )
    assert heavy_imports_after(code, ("pandas", "backtesting", "bokeh", "yfinance")) == []


def test_bundled_history_without_backtesting_installed(monkeypatch) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: object):
        return None if name == "backtesting" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(MarketDataError, match=r"'backtesting' package's test/EURUSD\.csv"):
        load_bundled_history()


def test_aggregate_candles_is_pandas_resample() -> None:
    """The numpy aggregation (offline paths) builds the bars pandas' resample builds,
    also from a span that starts and ends inside buckets."""
    hours = load_bundled_history().slice(7, 1500)
    frame = EURUSD.iloc[7:1500]
    for timeframe in (Timeframe.H4, Timeframe.D1):
        built = aggregate_candles(hours, timeframe)
        expected = frame_to_candles(aggregate_hourly(frame, timeframe), "EUR/USD", timeframe)
        np.testing.assert_array_equal(built.times, expected.times)
        np.testing.assert_array_equal(built.ohlc(), expected.ohlc())
        np.testing.assert_array_equal(built.volume, expected.volume)
    assert len(aggregate_candles(hours.slice(0, 0), Timeframe.D1)) == 0
    with pytest.raises(MarketDataError, match="1h bars cannot be built from 4h bars"):
        aggregate_candles(aggregate_candles(hours, Timeframe.H4), Timeframe.H1)


# --- CSV files made from real bars ----------------------------------------------------

ROWS = EURUSD.iloc[:30]  # 2017-04-19 09:00 → 2017-04-20 14:00, hourly


def _iso_z(t: pd.Timestamp) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _lines(
    frame: pd.DataFrame = ROWS, *, volume: bool = True, when=_iso_z, sep: str = ","
) -> list[str]:
    header = ["time", "open", "high", "low", "close"] + (["volume"] if volume else [])
    lines = [sep.join(header)]
    for t, row in frame.iterrows():
        fields = [when(t)] + [repr(float(row[c])) for c in ("Open", "High", "Low", "Close")]
        if volume:
            fields.append(str(int(row["Volume"])))
        lines.append(sep.join(fields))
    return lines


def _write(tmp_path: Path, lines: list[str], newline: str = "\n", name: str = "bars.csv") -> Path:
    path = tmp_path / name
    path.write_text(newline.join(lines) + newline, encoding="utf-8", newline="")
    return path


def _expected(frame: pd.DataFrame = ROWS) -> Candles:
    hours = load_bundled_history()
    first = int(np.searchsorted(hours.times, _epoch(str(frame.index[0]))))
    return hours.slice(first, first + len(frame))


def _assert_same(actual: Candles, expected: Candles, volume: bool = True) -> None:
    np.testing.assert_array_equal(actual.times, expected.times)
    np.testing.assert_array_equal(actual.ohlc(), expected.ohlc())
    if volume:
        np.testing.assert_array_equal(actual.volume, expected.volume)
    else:
        assert not actual.volume.any()


def test_csv_with_volume_and_utc_zone(tmp_path: Path) -> None:
    candles = load_csv_history(_write(tmp_path, _lines()), "EUR/USD", Timeframe.H1)
    assert (candles.pair, candles.timeframe) == ("EUR/USD", Timeframe.H1)
    _assert_same(candles, _expected())


def test_csv_without_volume_and_without_zone(tmp_path: Path) -> None:
    lines = _lines(volume=False, when=lambda t: t.strftime("%Y-%m-%d %H:%M"))
    candles = load_csv_history(_write(tmp_path, lines), "eurusd", "1h")
    _assert_same(candles, _expected(), volume=False)


@pytest.mark.parametrize(
    "when",
    [
        lambda t: (t.tz_localize("UTC").tz_convert(timezone(timedelta(hours=2)))).isoformat(),
        lambda t: t.tz_localize("UTC").tz_convert("America/New_York").isoformat(),
        lambda t: str(int(t.tz_localize("UTC").timestamp())),  # epoch seconds
        lambda t: t.strftime("%Y%m%dT%H%M%SZ"),  # ISO 8601 basic format
    ],
    ids=["offset", "new-york", "epoch", "basic"],
)
def test_csv_time_forms(tmp_path: Path, when) -> None:
    candles = load_csv_history(_write(tmp_path, _lines(when=when)), "EUR/USD", Timeframe.H1)
    _assert_same(candles, _expected())


def test_csv_header_case_order_spacing_bom_crlf_quotes_and_blank_lines(tmp_path: Path) -> None:
    lines = _lines()
    # Columns reordered (close, time, ...), header in capitals with spaces.
    order = [4, 0, 1, 2, 3, 5]
    rows = [[line.split(",")[i] for i in order] for line in lines]
    text = [" CLOSE , Time,Open,HIGH,low,Volume"] + [",".join(r) for r in rows[1:]]
    text[3] = ",".join(f'"{cell}"' for cell in rows[3])  # quoted fields
    text.insert(5, "")  # a blank line
    path = tmp_path / "bars.csv"
    path.write_bytes(b"\xef\xbb\xbf" + ("\r\n".join(text) + "\r\n\r\n").encode())
    _assert_same(load_csv_history(path, "EUR/USD", Timeframe.H1), _expected())


def test_csv_daily_dates(tmp_path: Path) -> None:
    daily = load_bundled_history("EUR/USD", Timeframe.D1)
    frame = pd.DataFrame(
        {
            "Open": daily.open[:10],
            "High": daily.high[:10],
            "Low": daily.low[:10],
            "Close": daily.close[:10],
            "Volume": daily.volume[:10],
        },
        index=pd.to_datetime(daily.times[:10], unit="s"),
    )
    lines = _lines(frame, when=lambda t: t.strftime("%Y-%m-%d"))
    candles = load_csv_history(_write(tmp_path, lines), "EUR/USD", Timeframe.D1)
    _assert_same(candles, daily.slice(0, 10))


def _replace(lines: list[str], line: int, column: int, value: str) -> list[str]:
    """`lines` with the field `column` (0-based) of editor line `line` set to `value`."""
    out = list(lines)
    fields = out[line - 1].split(",")
    fields[column] = value
    out[line - 1] = ",".join(fields)
    return out


def _swap_high_low(lines: list[str], line: int) -> list[str]:
    out = list(lines)
    f = out[line - 1].split(",")
    f[2], f[3] = f[3], f[2]
    out[line - 1] = ",".join(f)
    return out


GOOD = _lines()
FIELDS = GOOD[3].split(",")  # line 4: 2017-04-19T11:00:00Z,1.07256,1.07299,1.0717,1.07192,1025

BAD_FILES = {
    "not a number": (
        _replace(GOOD, 17, 4, "abc"),
        "line 17, column close: 'abc' is not a number",
    ),
    "nan": (_replace(GOOD, 12, 2, "nan"), "line 12, column high: 'nan' is not a number"),
    "underscore number": (
        _replace(GOOD, 5, 5, "1_413"),
        "line 5, column volume: '1_413' is not a number",
    ),
    "same time": (
        _replace(GOOD, 9, 0, GOOD[7].split(",")[0]),
        "line 9, column time: '2017-04-19T15:00:00Z' is not after the previous row's time "
        "(2017-04-19T15:00:00Z, line 8)",
    ),
    "earlier time": (
        _replace(GOOD, 20, 0, "2017-04-19T09:00:00Z"),
        "line 20, column time: '2017-04-19T09:00:00Z' is not after the previous row's time",
    ),
    "high below low": (
        _swap_high_low(GOOD, 4),
        f"line 4: high {FIELDS[3]} is below low {FIELDS[2]}",
    ),
    "open above high": (
        _replace(GOOD, 4, 1, "1.0731"),
        f"line 4: open 1.0731 is above high {FIELDS[2]}",
    ),
    "close below low": (
        _replace(GOOD, 4, 4, "1.0716"),
        f"line 4: close 1.0716 is below low {FIELDS[3]}",
    ),
    "zero price": (_replace(GOOD, 6, 3, "0"), "line 6, column low: 0 is not a positive price"),
    "negative volume": (_replace(GOOD, 6, 5, "-5"), "line 6, column volume: -5 is negative"),
    "empty cell": (_replace(GOOD, 5, 5, ""), "line 5, column volume: empty"),
    "too few fields": (
        [*GOOD[:6], ",".join(GOOD[6].split(",")[:5]), *GOOD[7:]],
        "line 7: 5 fields, expected 6 (time,open,high,low,close,volume)",
    ),
    "too many fields": (
        [*GOOD[:10], GOOD[10] + ",", *GOOD[11:]],
        "line 11: 7 fields, expected 6",
    ),
    "bad time": (
        _replace(GOOD, 3, 0, "yesterday"),
        "line 3, column time: 'yesterday' is not an ISO 8601 time",
    ),
    "milliseconds": (
        _replace(GOOD, 2, 0, "1492592400000"),
        "line 2, column time: 1492592400000 is too large for epoch seconds (milliseconds?)",
    ),
    "fraction of a second": (
        _replace(GOOD, 2, 0, "2017-04-19T09:00:00.5Z"),
        "line 2, column time: '2017-04-19T09:00:00.5Z' has a fraction of a second",
    ),
    "missing column": (
        [
            "time,open,high,low,volume",
            *(",".join(r.split(",")[:4] + r.split(",")[5:]) for r in GOOD[1:]),
        ],
        "line 1: missing column close",
    ),
    "unknown column": (
        ["time,open,high,low,close,vol", *GOOD[1:]],
        "line 1: unknown column 'vol'; the columns are time,open,high,low,close[,volume]",
    ),
    "column twice": (
        ["time,open,high,low,close,Close", *GOOD[1:]],
        "line 1: column 'close' appears twice",
    ),
    "semicolons": (
        _lines(sep=";"),
        "line 1: unknown column 'time;open;high;low;close;volume'; the columns are "
        "time,open,high,low,close[,volume]; fields must be separated by commas",
    ),
    "header only": (GOOD[:1], "no bars after the header (line 1)"),
    "blank lines count": (
        [*GOOD[:2], "", "", *_replace(GOOD, 5, 1, "x")[2:]],
        "line 7, column open: 'x' is not a number",
    ),
}


@pytest.mark.parametrize(("lines", "message"), BAD_FILES.values(), ids=BAD_FILES.keys())
def test_csv_bad_file_names_line_and_column(tmp_path: Path, lines: list[str], message: str) -> None:
    path = _write(tmp_path, lines)
    with pytest.raises(CsvFormatError) as caught:
        load_csv_history(path, "EUR/USD", Timeframe.H1)
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"{path}: ")


def test_csv_error_carries_line_and_column(tmp_path: Path) -> None:
    with pytest.raises(CsvFormatError) as caught:
        load_csv_history(_write(tmp_path, _replace(GOOD, 17, 4, "abc")), "EUR/USD", "1h")
    assert (caught.value.line, caught.value.column) == (17, "close")
    assert caught.value.problem == "'abc' is not a number"
    assert isinstance(caught.value, MarketDataError)


def test_csv_line_numbers_with_crlf_blank_lines_and_multiline_quotes(tmp_path: Path) -> None:
    # A quoted field running over two lines: the record's first line is named.
    lines = list(GOOD)
    lines[2] = lines[2].replace("2017-04-19T10:00:00Z", '"2017-04-19\nT10:00:00Z"')
    path = _write(tmp_path, lines, newline="\r\n")
    with pytest.raises(CsvFormatError, match=r"line 3, column time: '2017-04-19\nT10"):
        load_csv_history(path, "EUR/USD", Timeframe.H1)
    # CRLF endings and blank lines: numbers still match an editor's.
    lines = [*GOOD[:3], "", *GOOD[3:5], "", *_replace(GOOD, 6, 4, "oops")[5:]]
    assert lines[7].split(",")[4] == "oops"  # editor line 8
    with pytest.raises(CsvFormatError, match="line 8, column close: 'oops'"):
        load_csv_history(_write(tmp_path, lines, newline="\r\n"), "EUR/USD", Timeframe.H1)


def test_csv_wrong_timeframe_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, _lines())
    with pytest.raises(CsvFormatError) as caught:
        load_csv_history(path, "EUR/USD", Timeframe.H4)
    assert "line 3, column time: '2017-04-19T10:00:00Z' is only 1h after the previous row " in str(
        caught.value
    )
    assert "4h bars are at least 3h apart" in str(caught.value)


def test_csv_empty_undecodable_missing(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(CsvFormatError, match="the file is empty; it needs a header line"):
        load_csv_history(empty, "EUR/USD", Timeframe.H1)
    blank = _write(tmp_path, ["", "  "], name="blank.csv")
    with pytest.raises(CsvFormatError, match="the file is empty"):
        load_csv_history(blank, "EUR/USD", Timeframe.H1)
    latin = tmp_path / "latin.csv"
    latin.write_bytes(("\n".join(GOOD[:5]) + "\n").encode() + b"2017-04-19T13:00:00Z,1.07\xe9\n")
    with pytest.raises(CsvFormatError, match=r"line 6: not UTF-8 text \(byte 0xe9\)"):
        load_csv_history(latin, "EUR/USD", Timeframe.H1)
    with pytest.raises(MarketDataError, match=r"cannot read .*missing\.csv"):
        load_csv_history(tmp_path / "missing.csv", "EUR/USD", Timeframe.H1)


def test_csv_refuses_unknown_pair_and_timeframe(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    with pytest.raises(MarketDataError, match="XXX/YYY is not a supported pair"):
        load_csv_history(path, "XXX/YYY", Timeframe.H1)
    with pytest.raises(MarketDataError, match="'2h' is not a timeframe; use one of 15m, 1h"):
        load_csv_history(path, "EUR/USD", "2h")


# --- yfinance: arguments, and no network ------------------------------------------------


def test_yahoo_symbols() -> None:
    assert yahoo_symbol("EUR/USD") == "EURUSD=X"
    assert yahoo_symbol("usdjpy") == "USDJPY=X"
    with pytest.raises(MarketDataError, match="not a currency pair"):
        yahoo_symbol("euro")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"period": "1mo", "start": "2024-01-01"}, "either period or start/end, not both"),
        ({"period": "4 weeks"}, "'4 weeks' is not a Yahoo period"),
        ({"start": "2024-02-01", "end": "2024-01-01"}, "is not before end"),
        ({"start": "last tuesday"}, "start 'last tuesday' is not a date or time"),
        ({"start": "2024-01-05T01:00", "end": "2024-01-05T20:00", "timeframe": "1d"}, "one day"),
        ({"attempts": 0}, "attempts must be at least 1"),
        ({"backoff": -1}, "backoff not negative"),
    ],
)
def test_yahoo_bad_arguments_fail_before_any_request(kwargs, message, monkeypatch) -> None:
    monkeypatch.setattr(yahoo_module, "_fetch", lambda *a: pytest.fail("fetched"))
    with pytest.raises(MarketDataError, match=message) as caught:
        load_yahoo_history("EUR/USD", kwargs.pop("timeframe", Timeframe.H1), **kwargs)
    assert not isinstance(caught.value, MarketDataUnavailable)


def _resolves(host: str) -> bool:
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return False
    return True


offline = pytest.mark.skipif(
    _resolves("query2.finance.yahoo.com"),
    reason="Yahoo's host resolves: this machine is online, the offline path cannot be seen",
)


@offline
def test_offline_yfinance_behaves_as_the_field_notes_say(fresh_yfinance) -> None:
    """What the loader has to turn into one error: `Ticker.history` raises an OSError
    subclass (curl_cffi's DNSError) at once, and returns an empty frame once yfinance has
    given up on its `.info` fallback; `yf.download` returns an empty frame."""
    from curl_cffi.requests.exceptions import DNSError

    with pytest.raises(DNSError) as caught:
        yf.Ticker("EURUSD=X").history(period="5d", interval="1h")
    assert isinstance(caught.value, OSError)
    yf.base._tz_info_fetch_ctr = 2  # the fallback's budget spent (fixture restores it)
    assert yf.Ticker("EURUSD=X").history(period="5d", interval="1h").empty
    assert yf.download("EURUSD=X", period="5d", interval="1h", progress=False).empty


@offline
@pytest.mark.parametrize("fallbacks_spent", [0, 2], ids=["raises", "empty-frame"])
def test_offline_yahoo_is_one_quick_error(fresh_yfinance, monkeypatch, fallbacks_spent) -> None:
    monkeypatch.setattr(yf.base, "_tz_info_fetch_ctr", fallbacks_spent)
    began = time.monotonic()
    with pytest.raises(MarketDataUnavailable) as caught:
        load_yahoo_history("EUR/USD", Timeframe.H1, period="5d", attempts=2, backoff=0.05)
    assert time.monotonic() - began < 3
    message = str(caught.value)
    assert message.startswith(
        "Yahoo Finance is unreachable or sent no bars for EURUSD=X 1h period 5d (2 attempts): "
    )
    assert "Could not resolve host: query2.finance.yahoo.com" in message
    assert "curl.se" not in message  # curl's boilerplate advice is trimmed


def test_no_route_to_yahoo_is_one_quick_error(fresh_yfinance) -> None:
    """Runs online too: a session whose proxy is a closed local port reaches nothing."""
    from curl_cffi import requests as curl_requests

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    session = curl_requests.Session(proxy=f"http://127.0.0.1:{port}", trust_env=False)
    began = time.monotonic()
    with pytest.raises(
        MarketDataUnavailable,
        match=r"EURUSD=X 1h \(for 4h bars\) 2024-01-01T00:00Z → now \(2 attempts\): .*127\.0\.0\.1",
    ):
        load_yahoo_history(
            "EUR/USD", "4h", start=datetime(2024, 1, 1, tzinfo=UTC), attempts=2, backoff=0.05,
            session=session,
        )  # fmt: skip
    assert time.monotonic() - began < 3

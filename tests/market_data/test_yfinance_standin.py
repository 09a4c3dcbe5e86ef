"""load_yahoo_history through the real yfinance code, against a local Yahoo stand-in
serving real EUR/USD bars (see tests/yahoo_standin.py for how yfinance is pointed at it)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from backtesting.test import EURUSD

from common.candles import Candles
from common.market import Timeframe
from common.market_data import (
    MarketDataUnavailable,
    aggregate_hourly,
    load_bundled_history,
    load_yahoo_history,
)
from common.market_data import yahoo as yahoo_module
from tests.yahoo_standin import (  # noqa: F401 - fixtures
    CRUMB,
    LONDON,
    fresh_yfinance_fixture,
    yahoo_standin_fixture,
)

# yfinance 1.7 itself still uses pandas' deprecated `inplace=`; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword:DeprecationWarning")

START, END = "2017-05-01", "2017-05-20"  # bars of three weeks, weekends included


def _between(candles: Candles, start: str, end: str) -> Candles:
    lo, hi = (int(pd.Timestamp(t, tz="UTC").timestamp()) for t in (start, end))
    keep = np.flatnonzero((candles.times >= lo) & (candles.times < hi))
    return candles.slice(int(keep[0]), int(keep[-1]) + 1)


def _assert_same(actual: Candles, expected: Candles) -> None:
    assert (actual.pair, actual.timeframe) == (expected.pair, expected.timeframe)
    np.testing.assert_array_equal(actual.times, expected.times)
    for column in ("open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(actual, column), getattr(expected, column))


def test_hourly_bars_come_back_exactly(yahoo_standin) -> None:
    standin, session = yahoo_standin
    standin.bars, standin.interval = EURUSD, "1h"

    candles = load_yahoo_history("EUR/USD", "1h", start=START, end=END, session=session)

    expected = _between(load_bundled_history("EUR/USD", Timeframe.H1), START, END)
    assert len(candles) == len(expected) > 200
    _assert_same(candles, expected)
    # yfinance really talked to the stand-in: cookie, crumb, time zone, then the bars
    # for the requested range, with the crumb.
    paths = [(r.host, r.path) for r in standin.requests]
    assert paths[:3] == [
        ("fc.yahoo.com", "/"),  # yfinance asks twice: the cookie is not for a yahoo domain
        ("fc.yahoo.com", "/"),
        ("query1.finance.yahoo.com", "/v1/test/getcrumb"),
    ]
    assert {host for host, _ in paths} == {
        "fc.yahoo.com",
        "query1.finance.yahoo.com",
        "query2.finance.yahoo.com",
    }
    (bars,) = standin.history_requests()
    assert bars.path == "/v8/finance/chart/EURUSD=X"
    assert bars.query["interval"] == "1h" and bars.query["crumb"] == CRUMB
    assert int(bars.query["period1"]) == int(pd.Timestamp(START, tz="UTC").timestamp())


def test_four_hour_bars_are_aggregated_from_yahoo_hours(yahoo_standin) -> None:
    standin, session = yahoo_standin
    standin.bars, standin.interval = EURUSD, "1h"

    candles = load_yahoo_history("EUR/USD", Timeframe.H4, start=START, end=END, session=session)

    expected = _between(load_bundled_history("EUR/USD", Timeframe.H4), START, END)
    _assert_same(candles, expected)
    assert standin.history_requests()[0].query["interval"] == "1h"
    assert np.all(candles.times % (4 * 3600) == 0)


def test_daily_bars_keep_yahoos_trading_day(yahoo_standin) -> None:
    standin, session = yahoo_standin
    # Yahoo stamps a currency's daily bar at midnight London time (23:00 UTC in summer).
    daily = aggregate_hourly(EURUSD, Timeframe.D1)
    stamps = daily.index.tz_localize(LONDON).tz_convert("UTC").tz_localize(None)
    standin.bars, standin.interval = daily.set_axis(stamps), "1d"

    candles = load_yahoo_history("EUR/USD", "1d", start="2017-05-01", end=END, session=session)

    expected = _between(load_bundled_history("EUR/USD", Timeframe.D1), "2017-05-01", END)
    _assert_same(candles, expected)


def test_period_requests_pass_the_range(yahoo_standin) -> None:
    standin, session = yahoo_standin
    standin.bars, standin.interval = EURUSD.iloc[:300], "1h"

    candles = load_yahoo_history("eurusd", "1h", period="1mo", session=session)

    assert len(candles) == 300
    (bars,) = standin.history_requests()
    assert bars.query["range"] == "1mo" and "period1" not in bars.query


# What each failure of Yahoo's looks like in the error: its cause, in yfinance's words.
CAUSES = {
    "empty": "no price data found",
    "http500": "no price data found",
    "http429": "YFRateLimitError: Too Many Requests",
    "garbage": "no price data found",
    "malformed": "an answer yfinance could not read",
}


@pytest.mark.parametrize("mode", list(CAUSES))
def test_no_bars_is_retried_then_unavailable(yahoo_standin, monkeypatch, mode) -> None:
    standin, session = yahoo_standin
    standin.bars, standin.mode = EURUSD, mode
    waits: list[float] = []
    monkeypatch.setattr(yahoo_module, "_sleep", waits.append)

    began = time.monotonic()
    with pytest.raises(MarketDataUnavailable) as caught:
        load_yahoo_history("EUR/USD", "1h", start=START, end=END, attempts=3, session=session)

    assert time.monotonic() - began < 5
    message = str(caught.value)
    assert message.startswith("Yahoo Finance is unreachable or sent no bars for EURUSD=X 1h")
    assert "2017-05-01T00:00Z → 2017-05-20T00:00Z (3 attempts)" in message
    assert CAUSES[mode] in message, message
    # Exponential backoff: 0.5 s, then 1 s (recorded, not slept).
    assert waits == [0.5, 1.0]
    # Every attempt reached the stand-in: the memo of past ranges was cleared between
    # them. On an HTTP error yfinance itself asks once more with its other cookie method.
    per_attempt = 2 if mode in ("http500", "http429") else 1
    assert len(standin.history_requests()) == 3 * per_attempt


def test_a_retry_that_succeeds_returns_the_bars(yahoo_standin, monkeypatch) -> None:
    standin, session = yahoo_standin
    standin.bars, standin.mode = EURUSD, "empty"
    answer = standin.answer

    def flaky(request):  # empty twice, then the bars
        if request.is_history and len(standin.history_requests()) == 2:
            standin.mode = "bars"
        return answer(request)

    monkeypatch.setattr(standin, "answer", flaky)
    monkeypatch.setattr(yahoo_module, "_sleep", lambda seconds: None)

    candles = load_yahoo_history("EUR/USD", "1h", start=START, end=END, session=session)

    _assert_same(candles, _between(load_bundled_history(), START, END))
    assert len(standin.history_requests()) == 3

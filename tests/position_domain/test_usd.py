"""Converting quote-currency PnL into USD at the close."""

from decimal import Decimal

import pytest

from common.market import SUPPORTED_PAIRS
from position_svc.pnl import USD_PAIR_FOR, pnl, quote_currency, to_usd, usd_pair_for, usd_rate
from position_svc.positions import Side

PRICES = {
    "GBP/USD": Decimal("1.27000"),
    "USD/JPY": Decimal("150.000"),
    "USD/CHF": Decimal("0.88000"),
    "AUD/USD": Decimal("0.65000"),
}


def test_usd_quote_rate_is_one():
    assert usd_rate("EUR/USD", Decimal("1.08500"), {}) == 1
    assert to_usd(Decimal("15.5"), Decimal(1)) == Decimal("15.50")


def test_usd_base_uses_the_positions_own_exit_price():
    # USD/JPY sell 1 lot 151.250 → 150.750: 50000 JPY at 150.750 JPY per USD.
    rate = usd_rate("USD/JPY", Decimal("150.750"), PRICES)  # PRICES' USD/JPY is ignored
    assert rate == 1 / Decimal("150.750")
    assert str(to_usd(Decimal(50000), rate)) == "331.67"


def test_cross_with_usd_as_the_rate_pairs_quote():
    # EUR/GBP buy 1 lot 0.85000 → 0.85250 = 250 GBP; GBP/USD 1.27000.
    rate = usd_rate("EUR/GBP", Decimal("0.85250"), PRICES)
    assert rate == Decimal("1.27000")
    amount = pnl(Side.BUY, Decimal("0.85000"), Decimal("0.85250"), Decimal(1))
    assert str(to_usd(amount, rate)) == "317.50"


def test_cross_with_usd_as_the_rate_pairs_base():
    # EUR/JPY sell 0.5 lot 162.40 → 162.90 = -25000 JPY; USD/JPY 150.000.
    rate = usd_rate("EUR/JPY", Decimal("162.90"), PRICES)
    assert rate == 1 / Decimal("150.000")
    amount = pnl(Side.SELL, Decimal("162.40"), Decimal("162.90"), Decimal("0.5"))
    assert str(to_usd(amount, rate)) == "-166.67"


@pytest.mark.parametrize(
    ("pair", "expected"),
    [("EUR/AUD", Decimal("0.65000")), ("GBP/CHF", 1 / Decimal("0.88000"))],
)
def test_other_crosses(pair, expected):
    assert usd_rate(pair, Decimal(1), PRICES) == expected


@pytest.mark.parametrize("pair", ["EUR/GBP", "EUR/JPY", "GBP/CHF"])
def test_missing_price_gives_no_rate(pair):
    assert usd_rate(pair, Decimal("1.2"), {"EUR/USD": Decimal("1.08")}) is None


def test_usd_pair_for():
    assert usd_pair_for("USD") is None
    assert usd_pair_for("JPY") == "USD/JPY"
    assert usd_pair_for("GBP") == "GBP/USD"
    assert {usd_pair_for(c) for c in ("EUR", "AUD", "NZD", "CHF", "CAD")} == {
        "EUR/USD",
        "AUD/USD",
        "NZD/USD",
        "USD/CHF",
        "USD/CAD",
    }


def test_every_supported_quote_currency_has_a_usd_pair():
    for pair in SUPPORTED_PAIRS:
        quote = quote_currency(pair)
        assert quote == "USD" or USD_PAIR_FOR[quote] in SUPPORTED_PAIRS, pair


@pytest.mark.parametrize(
    ("amount", "rate", "usd"),
    [
        ("0.125", "1", "0.12"),  # half-even: down to the even cent
        ("0.135", "1", "0.14"),  # half-even: up to the even cent
        ("-0.004", "1", "0.00"),  # no negative zero
        ("-345", "1", "-345.00"),
        ("1000", "0.5", "500.00"),
    ],
)
def test_to_usd_rounds_half_even_to_cents(amount, rate, usd):
    assert str(to_usd(Decimal(amount), Decimal(rate))) == usd

"""Pips, PnL and results: exact decimals, JPY and non-JPY quotes, buy and sell."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from position_svc.pnl import (
    UNITS_PER_LOT,
    pip_size,
    pips,
    plain_decimal,
    pnl,
    quote_currency,
    result_of,
    settle,
    unrealized,
)
from position_svc.positions import CloseReason, Position, Result, Side, Status

OPENED = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
CLOSED = datetime(2024, 3, 1, 15, 30, tzinfo=UTC)


def open_position(pair="EUR/USD", side=Side.BUY, lot="0.10", entry="1.08345") -> Position:
    return Position(
        id="p-1",
        user_id="u-1",
        pair=pair,
        side=side,
        lot_size=Decimal(lot),
        entry_price=Decimal(entry),
        stop_loss=None,
        take_profit=None,
        status=Status.OPEN,
        open_time=OPENED,
        update_time=OPENED,
    )


@pytest.mark.parametrize(
    ("pair", "size", "quote"),
    [
        ("EUR/USD", "0.0001", "USD"),
        ("GBP/USD", "0.0001", "USD"),
        ("EUR/GBP", "0.0001", "GBP"),
        ("USD/CHF", "0.0001", "CHF"),
        ("USD/JPY", "0.01", "JPY"),
        ("EUR/JPY", "0.01", "JPY"),
        ("GBP/JPY", "0.01", "JPY"),
    ],
)
def test_pip_size_and_quote_currency(pair, size, quote):
    assert str(pip_size(pair)) == size
    assert quote_currency(pair) == quote


# pair, side, lot, entry, exit, pips, pnl (quote currency), result
TRADES = [
    ("EUR/USD", Side.BUY, "0.10", "1.08345", "1.08500", "15.5", "15.5", Result.WIN),
    ("EUR/USD", Side.BUY, "1", "1.08345", "1.08000", "-34.5", "-345", Result.LOSS),
    ("EUR/USD", Side.SELL, "0.25", "1.08000", "1.08123", "-12.3", "-30.75", Result.LOSS),
    ("GBP/USD", Side.SELL, "2", "1.27000", "1.26500", "50", "1000", Result.WIN),
    ("EUR/USD", Side.BUY, "1", "1.1", "1.10000", "0", "0", Result.BREAKEVEN),
    ("EUR/USD", Side.SELL, "0.50", "1.08345", "1.08345", "0", "0", Result.BREAKEVEN),
    ("USD/JPY", Side.SELL, "1", "151.250", "150.750", "50", "50000", Result.WIN),
    ("USD/JPY", Side.BUY, "0.01", "150.000", "149.875", "-12.5", "-125", Result.LOSS),
    ("USD/JPY", Side.BUY, "0.03", "150.001", "150.002", "0.1", "3", Result.WIN),
    ("EUR/JPY", Side.SELL, "0.5", "162.40", "162.90", "-50", "-25000", Result.LOSS),
    ("GBP/JPY", Side.BUY, "0.01", "191.234", "191.234", "0", "0", Result.BREAKEVEN),
    ("EUR/GBP", Side.BUY, "1", "0.85000", "0.85250", "25", "250", Result.WIN),
    ("EUR/USD", Side.BUY, "0.01", "1.083451", "1.083452", "0.01", "0.001", Result.WIN),
]


@pytest.mark.parametrize(
    ("pair", "side", "lot", "entry", "exit_", "want_pips", "want_pnl", "want_result"), TRADES
)
def test_pips_pnl_and_result_are_exact(
    pair, side, lot, entry, exit_, want_pips, want_pnl, want_result
):
    got_pips = pips(pair, side, Decimal(entry), Decimal(exit_))
    got_pnl = pnl(side, Decimal(entry), Decimal(exit_), Decimal(lot))
    # str() comparisons: the value and its plain wire form ("0", never "0E-4" or "5E+4").
    assert str(got_pips) == want_pips
    assert str(got_pnl) == want_pnl
    assert result_of(got_pips) is want_result


def test_a_lot_is_one_hundred_thousand_units():
    assert UNITS_PER_LOT == 100_000
    assert pnl(Side.BUY, Decimal("1.0000"), Decimal("1.0001"), Decimal(1)) == 10


@pytest.mark.parametrize(
    ("value", "plain"),
    [
        ("15.500000", "15.5"),
        ("5E+4", "50000"),
        ("-0E-4", "0"),
        ("0.00", "0"),
        ("-12.30", "-12.3"),
        ("100", "100"),
        ("0.000100", "0.0001"),
    ],
)
def test_plain_decimal(value, plain):
    assert str(plain_decimal(Decimal(value))) == plain


def test_settle_records_the_close():
    position = open_position()
    closed = settle(position, CloseReason.TAKE_PROFIT, Decimal("1.08500"), CLOSED, Decimal(1))
    assert closed.status is Status.CLOSED
    assert closed.close_reason is CloseReason.TAKE_PROFIT
    assert closed.exit_price == Decimal("1.08500")
    assert closed.close_time == CLOSED and closed.update_time == CLOSED
    assert closed.open_time == OPENED
    assert closed.result is Result.WIN
    assert str(closed.pips) == "15.5"
    assert str(closed.realized_pnl) == "15.5"
    assert str(closed.realized_pnl_usd) == "15.50"
    assert position.is_open  # the original is untouched


def test_settle_converts_jpy_at_the_exit_price():
    position = open_position("USD/JPY", Side.SELL, "1", "151.250")
    exit_price = Decimal("150.750")
    closed = settle(position, CloseReason.MANUAL, exit_price, CLOSED, 1 / exit_price)
    assert str(closed.pips) == "50"
    assert str(closed.realized_pnl) == "50000"
    assert str(closed.realized_pnl_usd) == "331.67"


def test_settle_without_a_rate_leaves_usd_unset():
    position = open_position("EUR/GBP", Side.BUY, "1", "0.85000")
    closed = settle(position, CloseReason.STOP_LOSS, Decimal("0.84900"), CLOSED, None)
    assert closed.result is Result.LOSS
    assert str(closed.realized_pnl) == "-100"
    assert closed.realized_pnl_usd is None


def test_settle_refuses_a_closed_position():
    closed = settle(open_position(), CloseReason.MANUAL, Decimal("1.08"), CLOSED, Decimal(1))
    with pytest.raises(ValueError, match="already closed"):
        settle(closed, CloseReason.STOP_LOSS, Decimal("1.07"), CLOSED, Decimal(1))


@pytest.mark.parametrize(
    ("side", "price", "want"),
    [
        (Side.BUY, "1.08400", ("5.5", "5.5")),
        (Side.SELL, "1.08400", ("-5.5", "-5.5")),
        (Side.BUY, "1.08345", ("0", "0")),
    ],
)
def test_unrealized(side, price, want):
    position = open_position(side=side)
    got = unrealized(position, Decimal(price))
    assert (str(got[0]), str(got[1])) == want

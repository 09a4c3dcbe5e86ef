"""Pips, PnL, results, USD conversion and the fill policy: what a price does to a position.

Everything is exact `Decimal` arithmetic. Results are returned in plain decimal form
(`plain_decimal`), so their `str()` is what the wire carries ("15.5", "-50000", "0"),
never "1.55E+1" or "0E-4".

Fill policy (stop-loss / take-profit)
-------------------------------------
A tick carries the range traded since the previous update (`Tick.low` .. `Tick.high`,
including `Tick.price`). A BUY's stop-loss is hit when `low <= stop_loss` and its
take-profit when `high >= take_profit`; a SELL's stop-loss when `high >= stop_loss` and
its take-profit when `low <= take_profit`.

The exit price is the level itself, even when the tick gapped past it (a BUY with a
stop at 1.0800 and a tick whose low is 1.0790 closes at 1.0800). AIFX records trades, it
does not execute them: the level is where the user's broker order would have been set,
and the contract defines a hit position's `exit_price` as that level. Slippage is not
modelled, so a gap reads better here than a real fill would have.

When one tick's range crosses both levels the stop-loss wins: the order of prices inside
the range is unknown, and assuming the worse outcome keeps recorded results honest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from position_svc.positions import CloseReason, Position, Result, Side, Status

UNITS_PER_LOT = Decimal(100000)
CENT = Decimal("0.01")
_PIP = Decimal("0.0001")
_JPY_PIP = Decimal("0.01")

# The supported pair that quotes each currency against USD (see common.market).
USD_PAIR_FOR: dict[str, str] = {
    "EUR": "EUR/USD",
    "GBP": "GBP/USD",
    "AUD": "AUD/USD",
    "NZD": "NZD/USD",
    "JPY": "USD/JPY",
    "CHF": "USD/CHF",
    "CAD": "USD/CAD",
}


def plain_decimal(value: Decimal) -> Decimal:
    """`value` without trailing fractional zeros or a positive exponent, so `str()` is a
    plain decimal: 15.500000 → 15.5, 5E+4 → 50000, -0E-4 → 0.

    Built from the digit tuple rather than `normalize()`, which rounds to the context
    precision and turns 50000 into 5E+4.
    """
    if value.is_zero():
        return Decimal(0)
    sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):  # NaN or Infinity: nothing to tidy
        return value
    kept = list(digits)
    while exponent < 0 and kept[-1] == 0:
        kept.pop()
        exponent += 1
    if exponent > 0:
        kept.extend([0] * exponent)
        exponent = 0
    return Decimal((sign, tuple(kept), exponent))


def base_currency(pair: str) -> str:
    """ "EUR" for "EUR/USD" (pairs are normalised, see common.market.normalize_pair)."""
    return pair.partition("/")[0]


def quote_currency(pair: str) -> str:
    """ "USD" for "EUR/USD": the currency PnL on the pair is made in."""
    return pair.partition("/")[2]


def pip_size(pair: str) -> Decimal:
    """0.01 for JPY-quoted pairs, whose prices have two fewer decimals; 0.0001 otherwise."""
    return _JPY_PIP if quote_currency(pair) == "JPY" else _PIP


def _gain(side: Side, move: Decimal) -> Decimal:
    """A price move seen from the position: a rise gains a BUY and costs a SELL."""
    return move if side is Side.BUY else -move


def pips(pair: str, side: Side, entry: Decimal, exit: Decimal) -> Decimal:
    """Pips gained from `entry` to `exit`, negative for a loss."""
    return plain_decimal(_gain(side, exit - entry) / pip_size(pair))


def pnl(side: Side, entry: Decimal, exit: Decimal, lot_size: Decimal) -> Decimal:
    """Profit in the pair's quote currency: (exit - entry) x lots x 100,000 units, negated
    for a SELL. Exact; not rounded to the currency's minor unit, so sums stay exact."""
    return plain_decimal(_gain(side, exit - entry) * lot_size * UNITS_PER_LOT)


def result_of(pips: Decimal) -> Result:
    """Breakeven only when the exit is exactly the entry, e.g. a stop moved to the entry."""
    if pips > 0:
        return Result.WIN
    if pips < 0:
        return Result.LOSS
    return Result.BREAKEVEN


@dataclass(frozen=True)
class Tick:
    """One price update for `pair`: `price` now, and `low` .. `high`, the range traded
    since the previous update (including `price`), so a spike between two updates still
    triggers a level. `lap` counts the times an offline replay has started its history
    again (0 for live data)."""

    pair: str
    price: Decimal
    high: Decimal
    low: Decimal
    time: datetime
    lap: int = 0

    def __post_init__(self) -> None:
        # A range that excludes the price would let a level be crossed unnoticed.
        if not self.low <= self.price <= self.high:
            raise ValueError(
                f"tick range {self.low}..{self.high} does not contain its price {self.price}"
            )


def level_hit(
    side: Side, stop_loss: Decimal | None, take_profit: Decimal | None, tick: Tick
) -> tuple[CloseReason, Decimal] | None:
    """The level `tick` hits and the exit price (the level itself), stop-loss first; None
    when neither is reached. See the module docstring for the fill policy."""
    buy = side is Side.BUY
    if stop_loss is not None and (tick.low <= stop_loss if buy else tick.high >= stop_loss):
        return CloseReason.STOP_LOSS, stop_loss
    if take_profit is not None and (tick.high >= take_profit if buy else tick.low <= take_profit):
        return CloseReason.TAKE_PROFIT, take_profit
    return None


def usd_pair_for(currency: str) -> str | None:
    """The supported pair giving `currency`'s USD rate; None for USD itself (and for a
    currency no supported pair quotes against USD)."""
    return USD_PAIR_FOR.get(currency)


def usd_rate(pair: str, exit_price: Decimal, prices: Mapping[str, Decimal]) -> Decimal | None:
    """Factor turning an amount in `pair`'s quote currency into USD at the close.

    1 for a USD quote. When USD is the base (USD/JPY), the position's own exit price is
    the rate at exactly the closing moment. Otherwise the rate comes from `prices` (latest
    price per pair) through the quote currency's USD pair; None when that price is
    missing, so the caller records the PnL unconverted rather than guess.
    """
    quote = quote_currency(pair)
    if quote == "USD":
        return Decimal(1)
    if base_currency(pair) == "USD":
        return 1 / exit_price
    via = usd_pair_for(quote)
    price = None if via is None else prices.get(via)
    if via is None or price is None:
        return None
    return price if quote_currency(via) == "USD" else 1 / price


def to_usd(amount: Decimal, rate: Decimal) -> Decimal:
    """`amount` x `rate` in cents, rounded half-even (no bias across many trades)."""
    usd = (amount * rate).quantize(CENT, rounding=ROUND_HALF_EVEN)
    return usd.copy_abs() if usd.is_zero() else usd  # "0.00", not "-0.00"


def settle(
    position: Position,
    reason: CloseReason,
    exit_price: Decimal,
    time: datetime,
    usd_rate: Decimal | None,
) -> Position:
    """The closed copy of an open `position`, with its final result and PnL.

    `usd_rate` None leaves `realized_pnl_usd` unset (see `usd_rate`). Refuses a position
    that is already closed: its result is final and must not be recomputed.
    """
    if not position.is_open:
        raise ValueError(f"position {position.id} is already closed")
    gained = pips(position.pair, position.side, position.entry_price, exit_price)
    money = pnl(position.side, position.entry_price, exit_price, position.lot_size)
    return replace(
        position,
        status=Status.CLOSED,
        close_reason=reason,
        exit_price=exit_price,
        close_time=time,
        update_time=time,
        result=result_of(gained),
        pips=gained,
        realized_pnl=money,
        realized_pnl_usd=None if usd_rate is None else to_usd(money, usd_rate),
    )


def unrealized(position: Position, price: Decimal) -> tuple[Decimal, Decimal]:
    """(pips, PnL in the quote currency) if `position` were closed at `price`."""
    return (
        pips(position.pair, position.side, position.entry_price, price),
        pnl(position.side, position.entry_price, price, position.lot_size),
    )

"""What a user's closed positions add up to: win rate, PnL, profit factor, risk/reward,
drawdown, the per-pair breakdown and the equity curve (aifx.position.v1.Performance).

Money is in USD, from each position's `realized_pnl_usd` (its quote-currency PnL converted
at the close, see pnl.usd_rate), because sums across EUR/USD and USD/JPY trades mean
nothing in mixed currencies. A position whose PnL could not be converted still counts as
a trade, a win or a loss and in pips, but adds nothing to the money figures;
`unconverted_trades` says how many did so the client can flag the figures as partial.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from common.errors import FieldViolation, InvalidArgument
from position_svc.pnl import plain_decimal
from position_svc.positions import Position, Result

CURRENCY = "USD"
# USD figures are cents; an empty sum reads "0.00" like any other amount.
_NO_MONEY = Decimal("0.00")


@dataclass(frozen=True)
class PairPerformance:
    pair: str
    trades: int
    wins: int
    losses: int
    breakevens: int
    win_rate: float
    total_pips: Decimal
    total_pnl: Decimal


@dataclass(frozen=True)
class EquityPoint:
    """The running totals right after `position_id` closed at `time`."""

    time: datetime
    position_id: str
    cumulative_pnl: Decimal
    cumulative_pips: Decimal


@dataclass(frozen=True)
class Performance:
    trades: int
    wins: int
    losses: int
    breakevens: int
    win_rate: float
    total_pips: Decimal
    total_pnl: Decimal
    profit_factor: float | None
    average_risk_reward: float | None
    max_drawdown: Decimal
    currency: str
    pairs: list[PairPerformance]
    equity_curve: list[EquityPoint]
    unconverted_trades: int


@dataclass
class _Tally:
    """Running counts for one group of positions (all of them, or one pair)."""

    trades: int = 0
    wins: int = 0
    losses: int = 0
    breakevens: int = 0
    pips: Decimal = Decimal(0)
    pnl: Decimal = _NO_MONEY

    def add(self, result: Result, pips: Decimal, usd: Decimal | None) -> None:
        self.trades += 1
        if result is Result.WIN:
            self.wins += 1
        elif result is Result.LOSS:
            self.losses += 1
        else:
            self.breakevens += 1
        self.pips += pips
        if usd is not None:
            self.pnl += usd

    @property
    def win_rate(self) -> float:
        """Breakevens are trades that did not win; 0.0 with no trades."""
        return self.wins / self.trades if self.trades else 0.0

    def summary(self) -> dict[str, Any]:
        """The counts Performance and PairPerformance share, by their field names."""
        return {
            "trades": self.trades,
            "wins": self.wins,
            "losses": self.losses,
            "breakevens": self.breakevens,
            "win_rate": self.win_rate,
            "total_pips": plain_decimal(self.pips),
            "total_pnl": self.pnl,
        }


def _close_facts(position: Position) -> tuple[datetime, Result, Decimal]:
    """Close time, result and pips of a closed position; an open one is a caller bug."""
    if position.close_time is None or position.result is None or position.pips is None:
        raise ValueError(f"position {position.id} is not closed")
    return position.close_time, position.result, position.pips


def _risk_reward(position: Position) -> Decimal | None:
    """|take_profit - entry| / |entry - stop_loss| as planned by the final levels; None
    without both levels, or with the stop at the entry (no risk, ratio undefined)."""
    stop, target = position.stop_loss, position.take_profit
    if stop is None or target is None or stop == position.entry_price:
        return None
    return abs(target - position.entry_price) / abs(position.entry_price - stop)


def compute(closed: Sequence[Position]) -> Performance:
    """The performance of `closed` (closed positions only), in close-time order (ties by
    id, so the equity curve is the same on every call)."""
    ordered = sorted(closed, key=lambda p: (_close_facts(p)[0], p.id))
    total = _Tally()
    by_pair: dict[str, _Tally] = {}
    gross_profit = gross_loss = _NO_MONEY
    peak = drawdown = Decimal(0)
    curve: list[EquityPoint] = []
    ratios: list[Decimal] = []
    unconverted = 0
    for position in ordered:
        time, result, pips = _close_facts(position)
        usd = position.realized_pnl_usd
        total.add(result, pips, usd)
        by_pair.setdefault(position.pair, _Tally()).add(result, pips, usd)
        if usd is None:
            unconverted += 1
        elif usd > 0:
            gross_profit += usd
        else:
            gross_loss -= usd
        peak = max(peak, total.pnl)
        if peak - total.pnl > drawdown:
            drawdown = peak - total.pnl
        curve.append(EquityPoint(time, position.id, total.pnl, plain_decimal(total.pips)))
        ratio = _risk_reward(position)
        if ratio is not None:
            ratios.append(ratio)
    return Performance(
        **total.summary(),
        # Unset rather than infinite without a loss; a loss rounding to 0.00 USD is none.
        profit_factor=float(gross_profit / gross_loss) if gross_loss else None,
        average_risk_reward=float(sum(ratios) / len(ratios)) if ratios else None,
        max_drawdown=drawdown,
        currency=CURRENCY,
        pairs=[PairPerformance(pair=p, **tally.summary()) for p, tally in sorted(by_pair.items())],
        equity_curve=curve,
        unconverted_trades=unconverted,
    )


class PerformancePeriod(StrEnum):
    """Rolling windows ending at the time of the call (PerformancePeriod in the proto)."""

    ALL_TIME = "all_time"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"


PERIOD_LENGTH: dict[PerformancePeriod, timedelta | None] = {
    PerformancePeriod.ALL_TIME: None,
    PerformancePeriod.DAY: timedelta(days=1),
    PerformancePeriod.WEEK: timedelta(days=7),
    PerformancePeriod.MONTH: timedelta(days=30),
    PerformancePeriod.YEAR: timedelta(days=365),
}


def window(
    period: PerformancePeriod | None,
    since: datetime | None,
    until: datetime | None,
    now: datetime,
) -> tuple[datetime | None, datetime]:
    """The [since, until) close-time window to count: since None means from the start.

    `period` None is the proto's PERIOD_UNSPECIFIED. A period and since/until together
    are refused rather than one silently ignored.
    """
    if period is not None and (since is not None or until is not None):
        raise InvalidArgument(
            [FieldViolation("period", "give either a period or since/until, not both")]
        )
    if period is not None:
        length = PERIOD_LENGTH[period]
        return (None if length is None else now - length), now
    end = now if until is None else until
    if since is not None and since >= end:
        raise InvalidArgument(
            [FieldViolation("since", f"must be before until ({end.isoformat()})")]
        )
    return since, end

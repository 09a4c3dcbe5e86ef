"""Day-by-day simulation of the signal engine's trades on daily closes-only series.

Each day of a period, for every pair with a fixing that day, in this order:

1. exit: an open position is closed when the fixing crosses its stop-loss or
   take-profit (`position_svc.pnl.level_hit` on a tick whose range is the fixing
   alone: close-only semantics, as the position watcher does with a series that has
   only closes), at the level itself, stop-loss first (the watcher's fill policy);
2. signal: the engine evaluates the series up to and including that fixing
   (`SignalEngine.evaluate_many`, all pairs of the day in one call);
3. entry: with no open position on the pair, a BUY or SELL signal whose confidence is
   at least the threshold opens one at the signal's entry (the fixing) with the
   signal's own stop-loss and take-profit, rounded to the pair's quote precision. A
   pair closed in step 1 may open again in step 3 on the same fixing. With
   `model_only`, a signal the engine made from its rules because no prediction was
   recorded for that day (source TECHNICAL_FALLBACK) is not traded.

A position still open after the period's last fixing is closed at that fixing
(CloseReason.MANUAL) and counted as a trade like any other; `ended_open` says how many.

Buy-and-hold: per pair, one BUY at the period's first fixing, closed at its last.
Every trade is 1 lot (100,000 units of the base currency); PnL is converted to USD
with `position_svc.pnl.usd_rate` at the day's fixings, and the figures are
`position_svc.performance.compute`'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from common.candles import Candles
from common.market import Timeframe
from common.market_data.ecb import quote_places
from position_svc import pnl
from position_svc.performance import Performance, compute
from position_svc.positions import CloseReason, Position, Side, Status
from signal_svc.engine import HISTORY_BARS, SignalEngine
from signal_svc.ports import CandleClosed
from signal_svc.signals import Action, Signal, Source

LOT = Decimal(1)
SOURCE = "backtest"


def price(pair: str, value: float) -> Decimal:
    """A float price as the pair is quoted (5 decimals, 3 for JPY quotes)."""
    return Decimal(str(round(value, quote_places(pair))))


def _moment(epoch_seconds: int) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, UTC)


@dataclass
class PeriodResult:
    """The closed positions of one period and how many of them the period end closed."""

    positions: list[Position] = field(default_factory=list)
    ended_open: int = 0
    fallback_days_skipped: int = 0

    @property
    def performance(self) -> Performance:
        return compute(self.positions)


class _Book:
    """Open positions (one per pair) and the closed ones, with the latest fixings for
    the USD conversion."""

    def __init__(self) -> None:
        self.open: dict[str, Position] = {}
        self.result = PeriodResult()
        self.prices: dict[str, Decimal] = {}
        self._count = 0

    def enter(
        self, pair: str, side: Side, entry: Decimal, time: int, signal: Signal | None
    ) -> None:
        self._count += 1
        levels = (None, None) if signal is None else (signal.stop_loss, signal.take_profit)
        self.open[pair] = Position(
            id=f"{pair}-{time}-{self._count}",
            user_id=SOURCE,
            pair=pair,
            side=side,
            lot_size=LOT,
            entry_price=entry,
            stop_loss=None if levels[0] is None else price(pair, levels[0]),
            take_profit=None if levels[1] is None else price(pair, levels[1]),
            status=Status.OPEN,
            open_time=_moment(time),
            update_time=_moment(time),
        )

    def close(self, pair: str, reason: CloseReason, exit_price: Decimal, time: int) -> None:
        position = self.open.pop(pair)
        rate = pnl.usd_rate(pair, exit_price, self.prices)
        self.result.positions.append(pnl.settle(position, reason, exit_price, _moment(time), rate))

    def check_exit(self, pair: str, fixing: Decimal, time: int) -> None:
        position = self.open.get(pair)
        if position is None:
            return
        tick = pnl.Tick(pair=pair, price=fixing, high=fixing, low=fixing, time=_moment(time))
        hit = pnl.level_hit(position.side, position.stop_loss, position.take_profit, tick)
        if hit is not None:
            self.close(pair, hit[0], hit[1], time)


def _period_days(series: Mapping[str, Candles], start: int, end: int) -> list[int]:
    days: set[int] = set()
    for candles in series.values():
        times = candles.times
        days.update(int(t) for t in times[(times >= start) & (times < end)])
    return sorted(days)


async def simulate_engine(
    engine: SignalEngine,
    series: Mapping[str, Candles],
    start: int,
    end: int,
    threshold: float,
    *,
    model_only: bool = False,
) -> PeriodResult:
    """The engine's trades over the fixings in [start, end) (epoch seconds); see the
    module docstring for the order of exits, signals and entries."""
    book = _Book()
    index = {pair: {int(t): i for i, t in enumerate(c.times)} for pair, c in series.items()}
    last_seen: dict[str, tuple[Decimal, int]] = {}
    for day in _period_days(series, start, end):
        events: list[CandleClosed] = []
        for pair, candles in series.items():
            i = index[pair].get(day)
            if i is None:
                continue
            fixing = price(pair, float(candles.close[i]))
            book.prices[pair] = fixing
            last_seen[pair] = (fixing, day)
            book.check_exit(pair, fixing, day)
            window = candles.slice(max(0, i + 1 - HISTORY_BARS), i + 1)
            events.append(CandleClosed(pair, Timeframe.D1, window, SOURCE))
        for result in await engine.evaluate_many(events):
            if not isinstance(result, Signal) or result.action is Action.HOLD:
                continue
            if model_only and result.source is not Source.MODEL:
                book.result.fallback_days_skipped += 1
                continue
            if result.pair in book.open or result.confidence < threshold:
                continue
            side = Side.BUY if result.action is Action.BUY else Side.SELL
            book.enter(result.pair, side, price(result.pair, result.entry_price), day, result)
    for pair in list(book.open):
        fixing, day = last_seen[pair]
        book.close(pair, CloseReason.MANUAL, fixing, day)
        book.result.ended_open += 1
    return book.result


def buy_and_hold(series: Mapping[str, Candles], start: int, end: int) -> PeriodResult:
    """Per pair: BUY at the first fixing in [start, end), closed at the last one."""
    book = _Book()
    ordered: Sequence[tuple[str, Candles]] = sorted(series.items())
    for pair, candles in ordered:
        inside = (candles.times >= start) & (candles.times < end)
        if inside.sum() < 2:
            continue
        first = int(inside.argmax())
        book.prices[pair] = price(pair, float(candles.close[first]))
        book.enter(pair, Side.BUY, book.prices[pair], int(candles.times[first]), None)
    for pair, candles in ordered:
        if pair not in book.open:
            continue
        inside = (candles.times >= start) & (candles.times < end)
        last = int(len(inside) - 1 - inside[::-1].argmax())
        for other, other_candles in series.items():  # fixings of that day, for USD rates
            j = int((other_candles.times <= candles.times[last]).sum()) - 1
            if j >= 0:
                book.prices[other] = price(other, float(other_candles.close[j]))
        book.close(pair, CloseReason.MANUAL, book.prices[pair], int(candles.times[last]))
    return book.result

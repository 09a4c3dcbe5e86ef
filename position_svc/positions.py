"""What a position is, in plain Python; shared by the repository, the watcher, the event
stream and the servicer.

Prices, lot sizes, pips and money are `Decimal` everywhere in this service: PnL must be
exact (a 0.1-lot EUR/USD trade from 1.08345 to 1.08500 earns exactly 15.50 USD), and
floats would make "closed exactly at the entry" (breakeven) depend on rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


class Status(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class CloseReason(StrEnum):
    TAKE_PROFIT = "take_profit"
    STOP_LOSS = "stop_loss"
    MANUAL = "manual"
    # An offline replay started its history again: the price went back in time, so the
    # position is closed at the last price of the history it was opened in.
    REPLAY_RESTARTED = "replay_restarted"


class Result(StrEnum):
    WIN = "win"
    LOSS = "loss"
    BREAKEVEN = "breakeven"


class EventType(StrEnum):
    """Every close produces exactly one event: a *_HIT for stop-loss / take-profit,
    CLOSED for any other close (by hand, or a replay starting again)."""

    OPENED = "opened"
    UPDATED = "updated"
    TAKE_PROFIT_HIT = "take_profit_hit"
    STOP_LOSS_HIT = "stop_loss_hit"
    CLOSED = "closed"


CLOSE_EVENT: dict[CloseReason, EventType] = {
    CloseReason.TAKE_PROFIT: EventType.TAKE_PROFIT_HIT,
    CloseReason.STOP_LOSS: EventType.STOP_LOSS_HIT,
    CloseReason.MANUAL: EventType.CLOSED,
    CloseReason.REPLAY_RESTARTED: EventType.CLOSED,
}


@dataclass(frozen=True)
class Position:
    """A user's recorded trade. `exit_price`, `close_*`, `result`, `pips` and
    `realized_pnl` are set once closed; `realized_pnl_usd` is None when the quote
    currency could not be converted (see pnl.usd_rate)."""

    id: str
    user_id: str
    pair: str
    side: Side
    lot_size: Decimal
    entry_price: Decimal
    stop_loss: Decimal | None
    take_profit: Decimal | None
    status: Status
    open_time: datetime
    update_time: datetime
    signal_id: str | None = None
    close_reason: CloseReason | None = None
    exit_price: Decimal | None = None
    close_time: datetime | None = None
    result: Result | None = None
    pips: Decimal | None = None
    realized_pnl: Decimal | None = None
    realized_pnl_usd: Decimal | None = None
    # Bumped by every change; closes and updates are conditional on it, so a watcher
    # never closes on levels the user has just moved.
    version: int = 1

    @property
    def is_open(self) -> bool:
        return self.status is Status.OPEN


@dataclass(frozen=True)
class PositionEvent:
    """A change to a position. `id` increases in commit order across all users."""

    id: int
    type: EventType
    position: Position
    time: datetime

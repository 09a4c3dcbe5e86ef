"""What the bot shows besides signals, as plain values: the adapters translate protos
into these, the message builders turn them into embeds. Money, prices and pips stay
the decimal strings the services send, so nothing is rounded on the way."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Account:
    """A linked Discord user, as the bot acts for them during one command."""

    user_id: str
    username: str
    access_token: str
    dm_reachable: bool


@dataclass(frozen=True)
class PositionView:
    id: str
    pair: str
    side: str  # "buy" | "sell"
    lots: str
    entry: str
    stop_loss: str  # "" when none
    take_profit: str
    status: str  # "open" | "closed"
    pips: str
    pnl: str  # unrealized while open, realized once closed
    currency: str
    current_price: str  # "" once closed
    exit_price: str  # "" while open
    opened_at: datetime


@dataclass(frozen=True)
class PositionEventView:
    """A change to a position, for its owner's DM."""

    id: int
    kind: str  # "position_opened" | "take_profit_hit" | "stop_loss_hit" | "position_closed"
    position: PositionView
    time: datetime
    position_user_id: str  # the owner (AIFX user id)


@dataclass(frozen=True)
class PerformanceView:
    period: str  # "all time", "the last 7 days", ...
    trades: int
    wins: int
    losses: int
    win_rate: float
    total_pips: str
    total_pnl: str
    profit_factor: float | None
    max_drawdown: str
    currency: str
    # (close time, cumulative PnL) after each closed position
    equity: list[tuple[datetime, float]] = field(default_factory=list)


@dataclass(frozen=True)
class PreferencesView:
    pairs: list[str]
    timeframes: list[str]
    min_confidence: float
    notify_discord: bool
    # kind of DM → "on" | "silent" | "off"
    modes: dict[str, str]


@dataclass(frozen=True)
class StatusView:
    # service name → serving
    services: dict[str, bool]
    model: str  # "lstm v1 (trained 2026-10-31)", or why it is not known
    market_time: datetime | None  # where the data stands (the replay clock or live)
    replay: bool
    # the asking user's link: None when unlinked
    account: Account | None

"""The position book: what a trader can do with their positions — open, move the
levels, close, read, list, follow the events, see the performance — as plain use cases
the gRPC servicer calls after translating the request (as auth_svc/accounts.py serves
auth). No gRPC here.

Ownership is enforced here: every read and change is scoped to the caller's user id,
and someone else's position is NOT_FOUND (never PERMISSION_DENIED, which would confirm
that the id exists).

A change this process commits is handed to the watcher at once (so a new stop-loss is
watched from the next tick) and wakes the event feed (so streams get its event without
waiting for the feed's poll).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from common.errors import DomainError, FailedPrecondition, FieldViolation, InvalidArgument
from common.time import utcnow
from position_svc.event_feed import EventFeed, Heartbeat, stream_events
from position_svc.metrics import count_closed, count_opened
from position_svc.performance import Performance, PerformancePeriod, compute, window
from position_svc.pnl import plain_decimal, quote_currency, settle, usd_pair_for, usd_rate
from position_svc.ports import Prices
from position_svc.positions import CloseReason, Position, PositionEvent, Status
from position_svc.repository import Close, PositionRepository
from position_svc.validation import OpenDraft, check_entry, check_levels
from position_svc.watcher import Watcher

# A manual close retries this often when the position's levels change under it.
CLOSE_ATTEMPTS = 3


def request_fingerprint(draft: OpenDraft) -> str:
    """What must match for a retry with the same idempotency key to be "the same
    request" (the key itself aside). Decimals by value: "0.3" and "0.30" lots, or
    "1.08" and "1.080" stops, are the same request."""
    canonical = {
        name: None
        if value is None
        else str(plain_decimal(value) if isinstance(value, Decimal) else value)
        for name, value in draft.__dict__.items()
        if name != "idempotency_key"
    }
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class PerformanceReport:
    """Performance over the close-time window [since, until); since None means from the
    first trade."""

    performance: Performance
    since: datetime | None
    until: datetime


class PositionBook:
    def __init__(
        self,
        repository: PositionRepository,
        prices: Prices,
        watcher: Watcher,
        feed: EventFeed,
        *,
        heartbeat_seconds: float,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._repository = repository
        self._prices = prices
        self._watcher = watcher
        self._feed = feed
        self._heartbeat_seconds = heartbeat_seconds
        self._clock = clock

    def current_price(self, pair: str) -> Decimal | None:
        """The latest known price of `pair` (what open positions are valued at)."""
        return self._watcher.latest_price(pair)

    async def open(self, user_id: str, draft: OpenDraft) -> Position:
        """Open `draft` for the user, at the market price unless it gives an entry. With
        an idempotency key, a retry of the same request returns the position the first
        one opened (ALREADY_EXISTS when the key was used for another request)."""
        market = await self._market_price(draft)
        entry = draft.entry_price if draft.entry_price is not None else market
        assert entry is not None  # without a given entry, _market_price has a price or raises
        violations = check_levels(draft.side, entry, draft.stop_loss, draft.take_profit)
        if draft.entry_price is not None and market is not None:
            violations += check_entry(draft.entry_price, market)
        if violations:
            raise InvalidArgument(violations)
        now = self._clock()
        position = Position(
            id=str(uuid.uuid4()),
            user_id=user_id,
            pair=draft.pair,
            side=draft.side,
            lot_size=draft.lot_size,
            entry_price=entry,
            stop_loss=draft.stop_loss,
            take_profit=draft.take_profit,
            status=Status.OPEN,
            open_time=now,
            update_time=now,
            signal_id=draft.signal_id,
        )
        if market is not None:
            self._watcher.price_seen(draft.pair, market)
        stored, event = await self._repository.open(
            position, draft.idempotency_key, request_fingerprint(draft)
        )
        if event is not None:
            count_opened(stored)
            self._published(stored)
        return stored

    async def _market_price(self, draft: OpenDraft) -> Decimal | None:
        """The current price, required to open at market. With a given entry it only
        sanity-checks the entry, so it is skipped (None) when the price service is down
        or has no price for the pair: the error messages tell the user to give the price
        explicitly, and that must then work."""
        if draft.entry_price is None:
            return await self._prices.current(draft.pair, "pair")
        try:
            return await self._prices.current(draft.pair, "pair")
        except DomainError:
            return None

    async def update_levels(
        self, user_id: str, position_id: str, levels: dict[str, Decimal | None]
    ) -> Position:
        """Set the stop-loss and/or take-profit named in `levels` (None removes one),
        checked against the current price (so a stop may trail past the entry)."""
        current = await self._open_position(user_id, position_id, "position.id")
        updated = replace(
            current,
            stop_loss=levels.get("stop_loss", current.stop_loss),
            take_profit=levels.get("take_profit", current.take_profit),
            update_time=self._clock(),
        )
        price = self._watcher.latest_price(current.pair)
        violations = check_levels(
            current.side,
            price if price is not None else current.entry_price,
            updated.stop_loss,
            updated.take_profit,
            prefix="position.",
            reference_name="current price" if price is not None else "entry price",
        )
        if violations:
            raise InvalidArgument(violations)
        event = await self._repository.update_levels(current, updated)
        self._published(event.position)
        return event.position

    async def close(self, user_id: str, position_id: str, exit_price: Decimal | None) -> Position:
        """Close at `exit_price`, or at the market price when None. Retried when the
        levels change under it; FAILED_PRECONDITION when they keep changing."""
        for _ in range(CLOSE_ATTEMPTS):
            current = await self._open_position(user_id, position_id, "id")
            price = exit_price or await self._prices.current(current.pair, "exit_price")
            rate = await self._usd_rate(current.pair, price)
            closed = settle(current, CloseReason.MANUAL, price, self._clock(), rate)
            events = await self._repository.close([Close(current, closed)])
            count_closed(events)
            if events:
                self._published(events[0].position)
                return events[0].position
        raise FailedPrecondition(
            f"position {position_id} kept changing while closing it; read it and try again",
            reason="POSITION_CHANGED",
        )

    async def get(self, user_id: str, position_id: str) -> Position:
        if not position_id:
            raise InvalidArgument([FieldViolation("id", "is required")])
        return await self._repository.get(user_id, position_id)

    async def list(
        self, user_id: str, status: Status | None, pair: str | None, size: int, page_token: str
    ) -> tuple[list[Position], str]:
        """A page of the user's positions, newest first, and the next page's token."""
        return await self._repository.list(user_id, status, pair, size, page_token)

    async def performance(
        self,
        user_id: str,
        period: PerformancePeriod | None,
        since: datetime | None,
        until: datetime | None,
        pair: str | None,
    ) -> PerformanceReport:
        """The user's performance over a period, or between since and until."""
        start, end = window(period, since, until, self._clock())
        closed = await self._repository.closed_between(user_id, start, end, pair)
        return PerformanceReport(compute(closed), start, end)

    def events(
        self, user_id: str | None, resume_after_id: int | None
    ) -> AsyncIterator[PositionEvent | Heartbeat]:
        """The user's events (everyone's for user_id None): those after
        `resume_after_id` first when given, a Heartbeat, then live ones."""
        if resume_after_id is not None and resume_after_id < 0:
            raise InvalidArgument(
                [FieldViolation("resume_after_id", "must be 0 (everything) or an event id")]
            )
        return stream_events(
            self._feed, self._repository, user_id, resume_after_id, self._heartbeat_seconds
        )

    async def _open_position(self, user_id: str, position_id: str, field: str) -> Position:
        if not position_id:
            raise InvalidArgument([FieldViolation(field, "is required")])
        position = await self._repository.get(user_id, position_id)
        if not position.is_open:
            raise FailedPrecondition(
                f"position {position_id} is already closed "
                f"({position.close_reason and position.close_reason.value})",
                reason="POSITION_CLOSED",
            )
        return position

    async def _usd_rate(self, pair: str, exit_price: Decimal) -> Decimal | None:
        """The quote currency's USD rate now; a price not at hand is asked for once."""
        prices = dict(self._watcher.latest_prices())
        via = usd_pair_for(quote_currency(pair))
        if via is not None and via != pair and via not in prices:
            # No rate at all: the PnL is recorded unconverted.
            with contextlib.suppress(DomainError):
                prices[via] = await self._prices.current(via, "pair")
        return usd_rate(pair, exit_price, prices)

    def _published(self, position: Position) -> None:
        """A change this process committed: watch it now and wake the event feed."""
        self._watcher.track(position)
        self._feed.notify()

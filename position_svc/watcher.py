"""Stop-loss / take-profit watching.

The watcher keeps every open position in memory, indexed by pair, and evaluates each
price tick from signal_svc against the positions of its pair (pnl.level_hit: the fill
policy). Those hit are closed in one transaction by the repository's compare-and-set,
so a position closes exactly once even when two replicas watch the same ticks or the
user closes it by hand at the same instant: whoever loses the race writes nothing.

The index follows the event feed, so positions opened, moved or closed through any
replica are seen within the feed's poll interval, and it is reloaded from the database
on start and at every sweep (the database is the truth; memory is a cache of it).

Every `sweep_seconds` the sweep records a monitoring snapshot (price, pips, unrealized
PnL) of each open position and re-checks its levels against the latest price. When the
price stream drops, the watcher reconnects with backoff and runs a sweep at once on
fresh prices, so a level crossed while it was disconnected is caught.

Close time is the wall-clock time the close was recorded (market time of a replay can
be years old); the exit price is the level (see pnl).

An offline replay set to loop starts its history again when it runs out: the prices of
its next lap come from years earlier. A position must not go on watching a price that
went back in time, so when a pair's ticks move to a later lap its open positions are
closed at the last price of the lap they were watched in (CloseReason.REPLAY_RESTARTED,
event CLOSED), and late ticks of a lap already left (another replica lagging behind)
are ignored. The lap seen last is kept in memory: a position_svc that is down while the
replay starts again learns the new lap as its first, and positions opened before keep
watching (the replay's history is months long; documented in the README).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from types import MappingProxyType

import structlog

from common.errors import DomainError
from common.shutdown import run_together
from common.time import utcnow
from position_svc.event_feed import EventFeed
from position_svc.metrics import count_closed, set_open
from position_svc.pnl import (
    Tick,
    level_hit,
    quote_currency,
    settle,
    unrealized,
    usd_pair_for,
    usd_rate,
)
from position_svc.ports import Prices
from position_svc.positions import CloseReason, EventType, Position, PositionEvent
from position_svc.repository import Close, PositionRepository, Snapshot

log = structlog.get_logger(__name__)

RECONNECT_BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0)


class Watcher:
    def __init__(
        self,
        repository: PositionRepository,
        feed: EventFeed,
        prices: Prices,
        sweep_seconds: float,
        clock: Callable[[], datetime] = utcnow,
        snapshot_retention: timedelta = timedelta(days=7),
    ) -> None:
        self._repository = repository
        self._feed = feed
        self._prices = prices
        self._sweep_seconds = sweep_seconds
        self._clock = clock
        self._snapshot_retention = snapshot_retention
        self._open: dict[str, dict[str, Position]] = defaultdict(dict)
        self._latest: dict[str, Decimal] = {}
        # The replay lap of each pair's latest tick.
        self._laps: dict[str, int] = {}
        feed.add_listener(self.on_event)

    # --- prices ---------------------------------------------------------------------

    def latest_price(self, pair: str) -> Decimal | None:
        """The latest price of `pair` this watcher knows, or None."""
        return self._latest.get(pair)

    def latest_prices(self) -> Mapping[str, Decimal]:
        """Every latest price known (a read-only view)."""
        return MappingProxyType(self._latest)

    def price_seen(self, pair: str, price: Decimal) -> None:
        """A price learnt elsewhere (an open at market): used until the price stream
        brings one for the pair, never over one it brought."""
        self._latest.setdefault(pair, price)

    # --- the index ------------------------------------------------------------------

    def track(self, position: Position) -> None:
        """Watch `position` as it is now (or stop watching it once closed), unless the
        index already holds a newer version."""
        watched = self._open[position.pair]
        known = watched.get(position.id)
        if known is not None and known.version > position.version:
            return
        if position.is_open:
            watched[position.id] = position
        else:
            watched.pop(position.id, None)
        set_open(self._open)

    def on_event(self, event: PositionEvent) -> None:
        if event.type in (EventType.OPENED, EventType.UPDATED) or not event.position.is_open:
            self.track(event.position)

    def open_count(self) -> int:
        return sum(len(positions) for positions in self._open.values())

    async def reload(self) -> None:
        """Replace the index with the open positions in the database."""
        fresh: dict[str, dict[str, Position]] = defaultdict(dict)
        for position in await self._repository.open_positions():
            fresh[position.pair][position.id] = position
        self._open = fresh
        set_open(self._open)

    # --- ticks ----------------------------------------------------------------------

    async def on_tick(self, tick: Tick) -> list[PositionEvent]:
        """Close every open position of the tick's pair whose level the tick reached, or
        all of them when the replay has started again; the events of the closes this
        call made."""
        lap = self._laps.setdefault(tick.pair, tick.lap)
        if tick.lap < lap:
            return []  # a late price of a lap already left: from another market time
        events: list[PositionEvent] = []
        if tick.lap > lap:
            self._laps[tick.pair] = tick.lap
            events += await self._close_replay_restarted(tick.pair)
        self._latest[tick.pair] = tick.price
        return events + await self._close_on_levels(tick)

    async def _close_on_levels(self, tick: Tick) -> list[PositionEvent]:
        """Close the positions of the tick's pair whose level it reached."""
        now = self._clock()
        closes = []
        for position in self._open.get(tick.pair, {}).values():
            hit = level_hit(position.side, position.stop_loss, position.take_profit, tick)
            if hit is not None:
                reason, exit_price = hit
                rate = usd_rate(position.pair, exit_price, self._latest)
                closes.append(Close(position, settle(position, reason, exit_price, now, rate)))
        return await self._close(tick.pair, closes, "positions closed on a level")

    async def _close_replay_restarted(self, pair: str) -> list[PositionEvent]:
        """Close every open position of `pair` at its last price before the replay
        started again."""
        last = self._latest.get(pair)
        if last is None:
            return []
        now, rate = self._clock(), usd_rate(pair, last, self._latest)
        closes = [
            Close(position, settle(position, CloseReason.REPLAY_RESTARTED, last, now, rate))
            for position in self._open.get(pair, {}).values()
        ]
        return await self._close(pair, closes, "positions closed: the replay started again")

    async def _close(self, pair: str, closes: list[Close], why: str) -> list[PositionEvent]:
        """Record `closes` (those someone else closed or moved first are skipped)."""
        if not closes:
            return []
        watched = self._open[pair]
        events = await self._repository.close(closes)
        count_closed(events)
        # Those we lost were closed or moved by someone else: their event re-tracks them.
        for event in events:
            if watched.get(event.position.id, event.position).version < event.position.version:
                watched.pop(event.position.id, None)
        set_open(self._open)
        if events:
            self._feed.notify()
            log.info(why, pair=pair, closed=len(events))
        return events

    # --- sweeps ---------------------------------------------------------------------

    async def _refresh_prices(self) -> None:
        """Current prices of every pair with open positions (and of the pairs that
        convert their quote currency to USD)."""
        wanted = set(self._open)
        for pair in list(wanted):
            conversion = usd_pair_for(quote_currency(pair))
            if conversion is not None:
                wanted.add(conversion)
        for pair in sorted(wanted):
            try:
                self._latest[pair] = await self._prices.current(pair, "pair")
            except DomainError as error:
                log.warning("no current price for the sweep", pair=pair, error=error.message)

    async def sweep(self, refresh_prices: bool = False) -> list[PositionEvent]:
        """Reload open positions, close those whose level the latest price reached, and
        record a snapshot of the rest; the close events."""
        await self.reload()
        if refresh_prices:
            await self._refresh_prices()
        events: list[PositionEvent] = []
        for pair in list(self._open):
            price = self._latest.get(pair)
            if price is not None:
                tick = Tick(pair, price, price, price, self._clock())
                events += await self._close_on_levels(tick)
        now = self._clock()
        snapshots = []
        for pair, positions in self._open.items():
            price = self._latest.get(pair)
            if price is None:
                continue
            for position in positions.values():
                pips, pnl = unrealized(position, price)
                snapshots.append(Snapshot(position.id, now, price, pips, pnl))
        await self._repository.record_snapshots(snapshots, now - self._snapshot_retention)
        return events

    # --- running --------------------------------------------------------------------

    async def run(self) -> None:
        """Watch until cancelled: the price stream (reconnecting) and the periodic
        sweep."""
        await self.reload()
        await run_together(
            {"watcher-prices": self._follow_prices(), "watcher-sweeps": self._sweep_periodically()}
        )

    async def _sweep_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_seconds)
            try:
                await self.sweep()
            except Exception:  # a failed sweep must not stop the watching
                log.exception("position sweep failed")

    async def _follow_prices(self) -> None:
        failures = 0
        while True:
            try:
                if failures:
                    await self.sweep(refresh_prices=True)  # catch up on what was missed
                async for tick in self._prices.ticks():
                    failures = 0
                    await self.on_tick(tick)
                log.warning("price stream ended; reconnecting")
            except DomainError as error:
                log.warning(
                    "price stream failed; reconnecting",
                    reason=error.reason,
                    error=error.message,
                    source=self._prices.source_name,
                )
            except Exception:  # a database hiccup must not stop the watching
                log.exception("evaluating prices failed; reconnecting")
            await asyncio.sleep(RECONNECT_BACKOFF[min(failures, len(RECONNECT_BACKOFF) - 1)])
            failures += 1

"""position_svc's business metrics (its RPC metrics are common.interceptors'): positions
opened, and closed by result and reason — counted where the database decided it
happened, once, however many watchers or requests raced for it — and the positions open
now, by pair, as the watcher's index holds them (every replica's watcher indexes every
open position, so a dashboard takes `max by (pair)` over replicas, not a sum)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sized

from prometheus_client import Counter, Gauge

from position_svc.positions import Position, PositionEvent

OPENED = Counter("aifx_positions_opened_total", "Positions opened, by pair", ["pair"])
CLOSED = Counter(
    "aifx_positions_closed_total",
    "Positions closed, by result (win/loss/breakeven) and reason (take_profit, stop_loss, "
    "manual, replay_restarted)",
    ["result", "reason"],
)
OPEN = Gauge("aifx_positions_open", "Positions open now, by pair", ["pair"])
# Pairs that have had a value: they are set to 0 when their last position closes rather
# than dropped, so a graph goes to zero instead of stopping at the last count.
_open_pairs: set[str] = set()


def count_opened(position: Position) -> None:
    OPENED.labels(position.pair).inc()


def count_closed(events: Iterable[PositionEvent]) -> None:
    for event in events:
        position = event.position
        CLOSED.labels(str(position.result or ""), str(position.close_reason or "")).inc()


def set_open(open_by_pair: Mapping[str, Sized]) -> None:
    """Recount the open positions gauge from the watcher's index (pair → its open
    positions): a recount rather than inc/dec keeps it true whatever way the index
    changed (an event, a close, a reload from the database). A process runs one
    watcher, whose index this is."""
    counts = {pair: len(positions) for pair, positions in open_by_pair.items() if positions}
    _open_pairs.update(counts)
    for pair in _open_pairs:
        OPEN.labels(pair).set(counts.get(pair, 0))

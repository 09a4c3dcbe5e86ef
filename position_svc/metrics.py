"""position_svc's business metrics (its RPC metrics are common.interceptors'): positions
opened, and closed by result and reason — counted where the database decided it
happened, once, however many watchers or requests raced for it."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter

from position_svc.positions import Position, PositionEvent

OPENED = Counter("aifx_positions_opened_total", "Positions opened, by pair", ["pair"])
CLOSED = Counter(
    "aifx_positions_closed_total",
    "Positions closed, by result (win/loss/breakeven) and reason (take_profit, stop_loss, "
    "manual, replay_restarted)",
    ["result", "reason"],
)


def count_opened(position: Position) -> None:
    OPENED.labels(position.pair).inc()


def count_closed(events: Iterable[PositionEvent]) -> None:
    for event in events:
        position = event.position
        CLOSED.labels(str(position.result or ""), str(position.close_reason or "")).inc()

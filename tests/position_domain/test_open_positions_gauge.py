"""`aifx_positions_open{pair}` follows the watcher's index of open positions: opened,
closed (by an event or by the watcher on a level) and reloaded from the database — and a
pair whose last position closed reads 0, not its last count."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from decimal import Decimal

from prometheus_client import REGISTRY

from position_svc.pnl import Tick, settle
from position_svc.positions import CloseReason, EventType, Position, PositionEvent
from position_svc.repository import Close
from position_svc.watcher import Watcher
from tests.position_domain.test_pnl import CLOSED, open_position


def open_now(pair: str) -> float | None:
    return REGISTRY.get_sample_value("aifx_positions_open", {"pair": pair})


class Feed:
    """The event feed's surface the watcher uses."""

    def __init__(self) -> None:
        self.listeners: list[Callable[[PositionEvent], None]] = []

    def add_listener(self, listener: Callable[[PositionEvent], None]) -> None:
        self.listeners.append(listener)

    def notify(self) -> None:
        pass


class Repository:
    """The database's open positions, and closes that always win the race (the stored
    copy's version goes up, as the real repository's compare-and-set does)."""

    def __init__(self) -> None:
        self.open: list[Position] = []

    async def open_positions(self) -> Sequence[Position]:
        return list(self.open)

    async def close(self, closes: list[Close]) -> list[PositionEvent]:
        return [
            PositionEvent(
                n,
                EventType.STOP_LOSS_HIT,
                dataclasses.replace(c.closed, version=c.position.version + 1),
                CLOSED,
            )
            for n, c in enumerate(closes, 1)
        ]


def position(id: str, pair: str, **fields: object) -> Position:
    return dataclasses.replace(open_position(pair=pair), id=id, **fields)  # type: ignore[arg-type]


async def test_the_gauge_follows_opens_closes_and_reloads() -> None:
    repository = Repository()
    watcher = Watcher(repository, Feed(), prices=None, sweep_seconds=60)  # type: ignore[arg-type]
    a = position("g-1", "AUD/NZD", stop_loss=Decimal("1.05"))
    b = position("g-2", "AUD/NZD")
    c = position("g-3", "NZD/CHF")
    for p in (a, b, c):
        watcher.on_event(PositionEvent(1, EventType.OPENED, p, CLOSED))
    assert (open_now("AUD/NZD"), open_now("NZD/CHF")) == (2, 1)

    # Closed elsewhere (manual close through another replica): its event.
    manual = settle(c, CloseReason.MANUAL, Decimal("0.55"), CLOSED, Decimal(1))
    watcher.on_event(
        PositionEvent(2, EventType.CLOSED, dataclasses.replace(manual, version=2), CLOSED)
    )
    assert open_now("NZD/CHF") == 0  # dropped to zero, still exported

    # Closed by this watcher on its stop-loss.
    price = Decimal("1.04")
    await watcher.on_tick(Tick("AUD/NZD", price, price, price, CLOSED))
    assert open_now("AUD/NZD") == 1

    # Reloaded from the database, which is the truth.
    repository.open = [position("g-4", "NZD/CHF"), position("g-5", "NZD/CHF")]
    await watcher.reload()
    assert (open_now("AUD/NZD"), open_now("NZD/CHF")) == (0, 2)
    assert watcher.open_count() == 2

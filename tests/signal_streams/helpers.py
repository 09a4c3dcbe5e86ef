"""Building blocks of the stream tests: signals priced from real bundled EUR/USD bars,
an in-memory SignalReader (where the database is not the point), and stream readers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from functools import lru_cache

from common.candles import Candles
from common.market import Timeframe
from common.market_data import load_bundled_history
from signal_svc.ports import SignalFilter
from signal_svc.signals import Action, Signal, Source, Strength
from signal_svc.subscriptions import Heartbeat


@lru_cache(maxsize=1)
def hours() -> Candles:
    return load_bundled_history("EUR/USD", Timeframe.H1)


def make_signal(
    index: int,
    *,
    pair: str = "EUR/USD",
    timeframe: Timeframe = Timeframe.H1,
    action: Action = Action.BUY,
    confidence: float = 0.7,
    signal_id: int = 0,
) -> Signal:
    """A signal at the close of real bar `index` (entry = that bar's close; SL/TP at
    fixed distances: these are signal objects, not market data)."""
    bars = hours()
    bar = index % len(bars)
    entry = float(bars.close[bar])
    candle_time = datetime.fromtimestamp(int(bars.times[bar]) + 3600, UTC)
    # Distinct candle times per index even past the end of the history (uniqueness).
    candle_time = candle_time.replace(year=candle_time.year + index // len(bars))
    direction = 1 if action is Action.BUY else -1
    hold = action is Action.HOLD
    return Signal(
        pair=pair,
        timeframe=timeframe,
        candle_time=candle_time,
        action=action,
        confidence=confidence,
        strength=Strength.STRONG,
        entry_price=entry,
        stop_loss=None if hold else entry - direction * 0.0015,
        take_profit=None if hold else entry + direction * 0.003,
        risk_reward_ratio=None if hold else 2.0,
        probabilities={"buy": 0.7, "hold": 0.2, "sell": 0.1},
        indicators={"rsi_14": 55.0, "atr_14": 0.001},
        source=Source.MODEL,
        model_name="lstm",
        model_version="1",
        created_at=datetime.now(UTC),
        id=signal_id,
    )


class MemoryReader:
    """A SignalReader over a list. `store` assigns the next id (or keeps a given one, to
    play a transaction that committed out of order). `before_read`, when set, runs before
    each read (to store and publish signals while a replay is in progress)."""

    def __init__(self) -> None:
        self.signals: dict[int, Signal] = {}
        self.next_id = 1
        self.reads = 0
        self.before_read: Callable[[], Awaitable[None]] | None = None

    def store(self, signal: Signal, signal_id: int | None = None) -> Signal:
        if signal_id is None:
            signal_id = self.next_id
        self.next_id = max(self.next_id, signal_id + 1)
        stored = replace(signal, id=signal_id)
        self.signals[signal_id] = stored
        return stored

    def reserve_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    async def signals_after(self, after_id: int, wanted: SignalFilter, limit: int) -> list[Signal]:
        self.reads += 1
        if self.before_read is not None:
            await self.before_read()
        await asyncio.sleep(0)
        found = [s for i, s in sorted(self.signals.items()) if i > after_id and wanted.matches(s)]
        return found[:limit]


async def take(
    stream: AsyncIterator[Signal | Heartbeat], count: int, within: float = 5.0
) -> list[Signal | Heartbeat]:
    """The next `count` events of a stream."""
    events: list[Signal | Heartbeat] = []
    async with asyncio.timeout(within):
        while len(events) < count:
            events.append(await anext(stream))
    return events


def ids(events: list) -> list[int]:  # type: ignore[type-arg]
    return [event.id for event in events if isinstance(event, Signal)]

"""Fan-out of price ticks to many subscribers, and the latest price of every pair.

One producer (the market feed) publishes; any number of StreamPrices /
StreamPricesInternal streams subscribe. `publish` never waits for a subscriber.

Overflow policy — prices are a "latest wins" stream. Each subscriber has a bounded
queue (`buffer` ticks). When a subscriber falls behind and its queue is full, it loses
its OLDEST ticks, never the newest: the tick dropped is the oldest one that a newer
queued tick of the same pair supersedes (so the latest price of every pair still gets
through), or, when no queued tick is superseded (a buffer smaller than the number of
pairs), simply the oldest. A dropped tick's high/low range is folded into the next tick
of that pair the subscriber receives, so "the range traded since the previous update"
stays true and a stop-loss touched in between is not missed — within a replay lap: the
range of a lap that is over is never folded into a price of the next (it is from another
stretch of market time). Other subscribers are never
affected by a slow one; each subscription counts what it dropped (`dropped`).

Ticks are per replica: each signal_svc replica runs its own feed on the same data, so
prices need no cross-replica fan-out.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import deque
from collections.abc import Iterable

from signal_svc.ports import PriceTick


def widen(tick: PriceTick, high: float, low: float) -> PriceTick:
    """`tick` with its range widened to include [low, high]."""
    if high <= tick.high and low >= tick.low:
        return tick
    return dataclasses.replace(tick, high=max(tick.high, high), low=min(tick.low, low))


class PriceSubscription:
    """One subscriber's view: `snapshot` (the latest price of each wanted pair when it
    subscribed), then `next()` for every later tick. Use as a context manager (or call
    `close()`) so the hub forgets it."""

    def __init__(self, hub: PriceHub, pairs: frozenset[str] | None, buffer: int) -> None:
        self._hub = hub
        self.pairs = pairs
        self.buffer = buffer
        self._queue: deque[PriceTick] = deque()
        self._ready = asyncio.Event()
        # Ranges (high, low, lap) of dropped ticks, per pair, to fold into the next
        # delivered tick of the same lap.
        self._carry: dict[str, tuple[float, float, int]] = {}
        self.dropped = 0
        self.closed = False
        self.snapshot: list[PriceTick] = []

    def wants(self, pair: str) -> bool:
        return self.pairs is None or pair in self.pairs

    @property
    def pending(self) -> int:
        return len(self._queue)

    def _offer(self, tick: PriceTick) -> None:
        if len(self._queue) >= self.buffer:
            self._drop_one(tick)
        self._queue.append(tick)
        self._ready.set()

    def _drop_one(self, incoming: PriceTick) -> None:
        newest: dict[str, int] = {}
        for index, queued in enumerate(self._queue):
            newest[queued.pair] = index
        newest[incoming.pair] = len(self._queue)
        victim = next((i for i, queued in enumerate(self._queue) if newest[queued.pair] != i), 0)
        dropped = self._queue[victim]
        del self._queue[victim]
        high, low, lap = self._carry.get(dropped.pair, (dropped.high, dropped.low, dropped.lap))
        if lap != dropped.lap:  # what was carried is from a lap that is over
            high, low = dropped.high, dropped.low
        self._carry[dropped.pair] = (max(high, dropped.high), min(low, dropped.low), dropped.lap)
        self.dropped += 1

    def _deliver(self, tick: PriceTick) -> PriceTick:
        carried = self._carry.pop(tick.pair, None)
        if carried is None or carried[2] != tick.lap:
            return tick
        return widen(tick, carried[0], carried[1])

    def drain(self) -> list[PriceTick]:
        """Every queued tick, without waiting."""
        ticks = [self._deliver(tick) for tick in self._queue]
        self._queue.clear()
        self._ready.clear()
        return ticks

    async def next(self, timeout: float | None = None) -> PriceTick | None:  # noqa: ASYNC109
        """The next tick, or None when `timeout` seconds pass without one."""
        while not self._queue:
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except TimeoutError:
                return None
        tick = self._queue.popleft()
        if not self._queue:
            self._ready.clear()
        return self._deliver(tick)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._hub._subscribers.discard(self)

    def __enter__(self) -> PriceSubscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class PriceHub:
    """The latest tick per pair, and fan-out of every new tick to subscribers."""

    def __init__(self, buffer: int = 256) -> None:
        if buffer < 1:
            raise ValueError("a subscriber buffer holds at least one tick")
        self.buffer = buffer
        self._latest: dict[str, PriceTick] = {}
        self._subscribers: set[PriceSubscription] = set()

    def __len__(self) -> int:
        """Live subscriptions."""
        return len(self._subscribers)

    def latest(self, pair: str) -> PriceTick | None:
        return self._latest.get(pair)

    def latest_all(self) -> dict[str, PriceTick]:
        return dict(self._latest)

    def seed(self, tick: PriceTick) -> None:
        """Set a pair's latest price without notifying anyone (e.g. at startup), unless a
        newer one is known."""
        current = self._latest.get(tick.pair)
        if current is None or current.time < tick.time:
            self._latest[tick.pair] = tick

    def publish(self, tick: PriceTick) -> None:
        """Record `tick` as its pair's latest and queue it for every subscriber that
        wants the pair. Never blocks."""
        self._latest[tick.pair] = tick
        for subscription in self._subscribers:
            if subscription.wants(tick.pair):
                subscription._offer(tick)

    def subscribe(
        self, pairs: Iterable[str] | None = None, buffer: int | None = None
    ) -> PriceSubscription:
        """A subscription to `pairs` (None: every pair). Its `snapshot` holds the latest
        price of each wanted pair known now; every tick published afterwards is queued,
        so nothing falls between the snapshot and the updates, and nothing is sent
        twice."""
        wanted = None if pairs is None else frozenset(pairs)
        subscription = PriceSubscription(self, wanted, buffer or self.buffer)
        subscription.snapshot = sorted(
            (tick for pair, tick in self._latest.items() if subscription.wants(pair)),
            key=lambda tick: tick.pair,
        )
        self._subscribers.add(subscription)
        return subscription

    def close(self) -> None:
        for subscription in list(self._subscribers):
            subscription.close()

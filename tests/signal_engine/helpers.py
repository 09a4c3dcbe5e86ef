"""Building blocks of the signal engine tests: closes of real bundled bars."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence

from common.candles import Candles
from common.market import Timeframe
from signal_svc import technical
from signal_svc.engine import HISTORY_BARS
from signal_svc.ports import CandleClosed, ModelPrediction, Outcome
from signal_svc.signals import Action, Signal


def closed(candles: Candles, end: int, bars: int = HISTORY_BARS) -> CandleClosed:
    """The close of bar `end - 1` of a real series, with the history before it."""
    return CandleClosed(
        candles.pair, candles.timeframe, candles.slice(max(0, end - bars), end), "replay"
    )


class FixedModel:
    """Stands in for the inference client where a test needs a given model answer
    (the real model path is tested against the real inference service)."""

    def __init__(self, buy: float, hold: float, sell: float) -> None:
        self.probabilities = {"buy": buy, "hold": hold, "sell": sell}
        self.calls = 0

    async def predict(self, series: Sequence[Candles]) -> list[Outcome]:
        self.calls += 1
        best = max(self.probabilities, key=self.probabilities.__getitem__)
        return [
            ModelPrediction(
                dict(self.probabilities), Action(best), self.probabilities[best], "lstm", "7"
            )
            for _ in series
        ]


class ReplayFeed:
    """A MarketData of recorded closes of real bars: `closes()` yields them (to every
    subscriber), `history()` answers from the series. With `interval`, close i is
    delivered at i x interval after `release` plus a random delay below `jitter` (as two
    replicas see the same market closes a little apart)."""

    def __init__(
        self,
        series: dict[tuple[str, Timeframe], Candles],
        closes: list[CandleClosed],
        *,
        interval: float = 0.0,
        jitter: float = 0.0,
        seed: int = 0,
    ) -> None:
        self._series = series
        self._closes = closes
        self._interval = interval
        self._jitter = jitter
        self._random = random.Random(seed)
        self.release = asyncio.Event()
        self.release.set()
        self.waiting = 0  # readers of closes() waiting for `release`

    async def history(self, pair: str, timeframe: Timeframe, count: int) -> Candles:
        return self._series[(pair, timeframe)].tail(count)

    async def closes(self) -> AsyncIterator[CandleClosed]:
        self.waiting += 1
        await self.release.wait()
        self.waiting -= 1
        loop = asyncio.get_running_loop()
        start = loop.time()
        for index, event in enumerate(self._closes):
            if self._interval:
                due = start + index * self._interval + self._random.uniform(0, self._jitter)
                await asyncio.sleep(max(0.0, due - loop.time()))
            yield event
            await asyncio.sleep(0)


class RecordingPublisher:
    def __init__(self, fail_for: set[tuple[str, Timeframe]] | None = None) -> None:
        self.published: list[Signal] = []
        self._fail_for = fail_for or set()

    async def publish(self, signal: Signal) -> None:
        if (signal.pair, signal.timeframe) in self._fail_for:
            raise ConnectionError("fan-out down")
        self.published.append(signal)


def rule_ends(hours: Candles, action: Action, count: int = 3) -> list[int]:
    """Ends of real bars where the technical rules call `action`."""
    columns = technical.series(hours)
    found = []
    for index in range(HISTORY_BARS, len(hours)):
        view = technical.evaluate(float(hours.close[index]), technical.snapshot_at(columns, index))
        if view.action is action:
            found.append(index + 1)
            if len(found) == count:
                break
    return found

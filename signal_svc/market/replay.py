"""A replay of real history on a clock with a speed factor.

`ReplayClock(speed, start)`: market time = start + (monotonic now - t0) * speed, so at
speed 3600 an hour of market time passes every real second (an hour bar closes each
second in a demo) and at speed 1 the replay runs in real time.

`ReplayFeed` implements `signal_svc.ports.MarketData` over real `Candles` (the bundled
history or a user's CSV, see `series.py`):

- it starts `warmup_bars` bars into its first series (default 300), so the engine has
  history at the first close;
- `history()` returns only bars closed at the current market time (a bar is closed once
  market time reaches its open time plus its timeframe);
- `closes()` yields a `CandleClosed` for every bar close after the start, of every series,
  in time order (at equal close times the shorter timeframe first, then by pair), as
  market time passes; each call is an independent iterator from the replay's start (or
  from `after=<market time>`), so every consumer (scheduler, recorder) sees every close
  even if it starts late (it then catches up at once). It ends, logging "replay
  finished", when the history runs out;
- `ticks()` yields a `PriceTick` per pair at each close of the pair's shortest
  timeframe: price = that bar's close, high/low = that bar's high/low (the range traded
  since the previous tick), time = the bar's close time (historical).

Nothing is ever made up: every event is a bar of the loaded history.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime

import numpy as np
import structlog

from common.candles import TIMEFRAME_SECONDS, Candles
from common.market import Timeframe
from common.market_data import MarketDataError
from signal_svc.market.series import SeriesKey, close_times
from signal_svc.ports import CandleClosed, PriceTick

log = structlog.get_logger(__name__)

DEFAULT_WARMUP_BARS = 300
DEFAULT_HISTORY_BARS = 300


def epoch_of(moment: datetime | float | int) -> float:
    if isinstance(moment, datetime):
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    return float(moment)


def as_datetime(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


class ReplayClock:
    """Market time that runs `speed` times faster than real time from `start`.

    `monotonic` is the real clock (injectable so tests can freeze or step it)."""

    def __init__(
        self,
        speed: float,
        start: datetime | float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not speed > 0:
            raise ValueError(f"replay speed must be positive, not {speed}")
        self.speed = float(speed)
        self.start = epoch_of(start)
        self._monotonic = monotonic
        self._t0 = monotonic()

    def now(self) -> float:
        """Market time, epoch seconds."""
        return self.start + (self._monotonic() - self._t0) * self.speed

    def now_datetime(self) -> datetime:
        return as_datetime(self.now())

    def real_seconds_until(self, market_time: float) -> float:
        """Real seconds until market time reaches `market_time` (0 if it has)."""
        return max(0.0, (market_time - self.now()) / self.speed)

    async def sleep_until(self, market_time: float) -> None:
        """Return once market time has reached `market_time`."""
        # A float-rounded sleep may wake a hair early: loop until really there.
        while (delay := self.real_seconds_until(market_time)) > 0:  # noqa: ASYNC110
            await asyncio.sleep(delay)


class ReplayFeed:
    """`MarketData` (plus price ticks) over real history replayed on a `ReplayClock`."""

    def __init__(
        self,
        series: Mapping[SeriesKey, Candles],
        *,
        speed: float,
        source: str = "replay",
        warmup_bars: int = DEFAULT_WARMUP_BARS,
        history_bars: int = DEFAULT_HISTORY_BARS,
        start: datetime | float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`series` in order of preference: the first one sets the start (`warmup_bars`
        bars in, or `start` when given). `history_bars` is how much history each
        CandleClosed carries (ending with the bar that closed)."""
        series = {key: c for key, c in series.items() if len(c)}
        if not series:
            raise MarketDataError("nothing to replay: no series has bars")
        if warmup_bars < 1 or history_bars < 1:
            raise ValueError("warmup_bars and history_bars must be at least 1")
        self.source = source
        self.history_bars = history_bars
        self._keys: list[SeriesKey] = list(series)
        self._series: dict[SeriesKey, Candles] = dict(series)
        self._closes = {key: close_times(c) for key, c in series.items()}

        first = self._closes[self._keys[0]]
        if start is None:
            start = float(first[min(warmup_bars, len(first)) - 1])
        self.clock = ReplayClock(speed, start, monotonic)
        self.start = self.clock.start
        self.end = float(max(int(c[-1]) for c in self._closes.values()))

        # The pair's shortest series gives its price ticks.
        self._tick_series: dict[str, SeriesKey] = {}
        for key in self._keys:
            current = self._tick_series.get(key[0])
            if current is None or TIMEFRAME_SECONDS[key[1]] < TIMEFRAME_SECONDS[current[1]]:
                self._tick_series[key[0]] = key

        # One timeline of every close after the start, in (close time, timeframe length,
        # series order) order.
        pair_rank = {pair: i for i, pair in enumerate(dict.fromkeys(p for p, _ in self._keys))}
        parts = []
        for index, key in enumerate(self._keys):
            closes = self._closes[key]
            bars = np.flatnonzero(closes > self.start)
            parts.append(
                np.stack(
                    [
                        closes[bars],
                        np.full(bars.size, TIMEFRAME_SECONDS[key[1]]),
                        np.full(bars.size, pair_rank[key[0]]),
                        np.full(bars.size, index),
                        bars,
                    ],
                    axis=1,
                )
            )
        timeline = np.concatenate(parts).astype(np.int64)
        order = np.lexsort((timeline[:, 2], timeline[:, 1], timeline[:, 0]))
        self._timeline = timeline[order]

    # --- what is offered ---------------------------------------------------------------

    def offered(self) -> dict[str, list[Timeframe]]:
        """Pair → timeframes with data, shortest first."""
        offered: dict[str, list[Timeframe]] = {}
        for pair, timeframe in self._keys:
            offered.setdefault(pair, []).append(timeframe)
        for timeframes in offered.values():
            timeframes.sort(key=lambda tf: TIMEFRAME_SECONDS[tf])
        return offered

    def all_series(self) -> dict[SeriesKey, Candles]:
        return dict(self._series)

    def series(self, pair: str, timeframe: Timeframe) -> Candles:
        """All bars of a series, also those the replay has not reached."""
        try:
            return self._series[(pair, timeframe)]
        except KeyError:
            offered = "; ".join(
                f"{p} {', '.join(t.value for t in tfs)}" for p, tfs in self.offered().items()
            )
            raise MarketDataError(
                f"no {self.source} data for {pair} {timeframe.value}; offered: {offered}"
            ) from None

    def now(self) -> float:
        """Market time, epoch seconds."""
        return self.clock.now()

    @property
    def finished(self) -> bool:
        return self.clock.now() >= self.end

    # --- MarketData --------------------------------------------------------------------

    def closed_count(self, pair: str, timeframe: Timeframe, at: float | None = None) -> int:
        """How many bars of the series have closed at market time `at` (default now)."""
        self.series(pair, timeframe)
        moment = self.clock.now() if at is None else at
        return int(np.searchsorted(self._closes[(pair, timeframe)], moment, side="right"))

    def history_now(self, pair: str, timeframe: Timeframe, count: int) -> Candles:
        candles = self.series(pair, timeframe)
        stop = self.closed_count(pair, timeframe)
        return candles.slice(max(0, stop - max(0, count)), stop)

    async def history(self, pair: str, timeframe: Timeframe, count: int) -> Candles:
        """The latest `count` bars closed at the current market time (fewer if there
        are not that many). Raises MarketDataError for a series not offered."""
        return self.history_now(pair, timeframe, count)

    def _first_after(self, after: datetime | float | None) -> int:
        if after is None:
            return 0
        return int(np.searchsorted(self._timeline[:, 0], epoch_of(after), side="right"))

    async def closes(self, after: datetime | float | None = None) -> AsyncIterator[CandleClosed]:
        """Every bar close after the replay's start (or after market time `after`), in
        time order, as market time passes; ends when the history runs out."""
        timeline = self._timeline
        i = self._first_after(after)
        while i < len(timeline):
            now = self.clock.now()
            while i < len(timeline) and timeline[i, 0] <= now:
                yield self._event(i)
                i += 1
            if i < len(timeline):
                await self.clock.sleep_until(float(timeline[i, 0]))
        log.info(
            "replay finished",
            source=self.source,
            closes=len(timeline),
            last_close=as_datetime(self.end).isoformat(),
        )

    def _event(self, i: int) -> CandleClosed:
        _, _, _, index, bar = (int(v) for v in self._timeline[i])
        key = self._keys[index]
        candles = self._series[key].slice(max(0, bar + 1 - self.history_bars), bar + 1)
        return CandleClosed(key[0], key[1], candles, self.source)

    # --- prices ------------------------------------------------------------------------

    def tick_pairs(self) -> list[str]:
        return list(self._tick_series)

    async def ticks(self, after: datetime | float | None = None) -> AsyncIterator[PriceTick]:
        """A PriceTick per pair at each close of the pair's shortest timeframe (after
        the replay's start, or after market time `after`)."""
        wanted = {self._keys.index(key) for key in self._tick_series.values()}
        timeline = self._timeline
        i = self._first_after(after)
        while i < len(timeline):
            now = self.clock.now()
            while i < len(timeline) and timeline[i, 0] <= now:
                if int(timeline[i, 3]) in wanted:
                    key = self._keys[int(timeline[i, 3])]
                    yield self._tick(key, int(timeline[i, 4]))
                i += 1
            if i < len(timeline):
                await self.clock.sleep_until(float(timeline[i, 0]))

    def latest_tick(self, pair: str) -> PriceTick | None:
        """The price at the current market time: the close of the pair's last closed
        bar (None before its first bar closed, or for a pair without data)."""
        key = self._tick_series.get(pair)
        if key is None:
            return None
        closed = self.closed_count(*key)
        return self._tick(key, closed - 1) if closed else None

    def _tick(self, key: SeriesKey, bar: int) -> PriceTick:
        candles = self._series[key]
        return PriceTick(
            pair=key[0],
            price=float(candles.close[bar]),
            high=float(candles.high[bar]),
            low=float(candles.low[bar]),
            time=as_datetime(float(self._closes[key][bar])),
            source=self.source,
        )

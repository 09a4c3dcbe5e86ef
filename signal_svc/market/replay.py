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
  finished", when the history runs out — unless the replay loops (`loop=True`): then the
  replay starts again from its start as lap 1, 2, ..., and each consumer sees every
  close of a lap (tagged with the lap) before the first close of the next;
- `resume(market_time, lap)` continues a replay where an earlier run of the service
  stopped (signal_svc stores the position: `replay_state.py`);
- `ticks()` yields a `PriceTick` per pair at each close of the pair's shortest series
  that has bars at that moment (EUR/USD: its hours while they last, its daily fixings
  before and after them): price = that bar's close, high/low = that bar's high/low (the
  range traded since the previous tick; for a closes-only series the price itself),
  time = the bar's close time (historical).

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

    def restart(self, start: float) -> None:
        """Market time is `start` now, and runs on from there."""
        self.start = float(start)
        self._t0 = self._monotonic()

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
        origins: Mapping[SeriesKey, str] | None = None,
        loop: bool = False,
    ) -> None:
        """`series` in order of preference: the first one sets the start (`warmup_bars`
        bars in, or `start` when given). `history_bars` is how much history each
        CandleClosed carries (ending with the bar that closed). `origins` says where
        each series comes from, in words (ListPairs shows it)."""
        series = {key: c for key, c in series.items() if len(c)}
        if not series:
            raise MarketDataError("nothing to replay: no series has bars")
        if warmup_bars < 1 or history_bars < 1:
            raise ValueError("warmup_bars and history_bars must be at least 1")
        self.source = source
        self.origins: dict[SeriesKey, str] = dict(origins or {})
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
        self.loop = loop
        self._lap = 0
        # Closes of the current lap are those after this market time: the start, or
        # where a resumed replay took up.
        self._lap_origin = self.start

        # Each pair's series, shortest first: the shortest with bars at a moment gives
        # the pair's price then.
        self._pair_series: dict[str, list[SeriesKey]] = {}
        for key in self._keys:
            self._pair_series.setdefault(key[0], []).append(key)
        for keys in self._pair_series.values():
            keys.sort(key=lambda k: TIMEFRAME_SECONDS[k[1]])

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
        self._tick_rows = self._price_ticks()

    def _price_ticks(self) -> np.ndarray:
        """Which closes of the timeline are price ticks: a close of a pair's series
        that no shorter series of the pair covers (has bars around) at that moment."""
        ticks = np.zeros(len(self._timeline), dtype=bool)
        index_of = {key: index for index, key in enumerate(self._keys)}
        for keys in self._pair_series.values():
            for position, key in enumerate(keys):
                rows = np.flatnonzero(self._timeline[:, 3] == index_of[key])
                moments = self._timeline[rows, 0]
                covered = np.zeros(rows.size, dtype=bool)
                for shorter in keys[:position]:
                    closes = self._closes[shorter]
                    covered |= (moments >= closes[0]) & (moments <= closes[-1])
                ticks[rows[~covered]] = True
        return ticks

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
        return self.position()[1]

    @property
    def lap(self) -> int:
        """How many times the replay has started again from its start."""
        return self.position()[0]

    @property
    def finished(self) -> bool:
        """The history has run out and the replay does not loop."""
        return not self.loop and self.clock.now() >= self.end

    def position(self) -> tuple[int, float]:
        """(lap, market time) now. A looping replay whose history has run out starts
        again from its start here, as the next lap."""
        now = self.clock.now()
        if self.loop and now >= self.end:
            self._lap += 1
            self._lap_origin = self.start
            self.clock.restart(self.start)
            log.info("replay starts again from the beginning", lap=self._lap)
            now = self.clock.now()
        return self._lap, now

    def resume(self, market_time: float, lap: int = 0) -> None:
        """Continue from `market_time` of `lap` (an earlier run's position): closes and
        ticks are those after it. Call before anything iterates the replay."""
        self._lap = max(0, lap)
        self._lap_origin = min(max(float(market_time), self.start), self.end)
        self.clock.restart(self._lap_origin)

    async def _wait_until(self, market_time: float, lap: int) -> None:
        """Return once market time reaches `market_time`, or a new lap has started."""
        # A float-rounded sleep may wake a hair early, and a new lap may start meanwhile.
        while self._lap == lap and (delay := self.clock.real_seconds_until(market_time)) > 0:  # noqa: ASYNC110
            await asyncio.sleep(delay)

    # --- MarketData --------------------------------------------------------------------

    def closed_count(self, pair: str, timeframe: Timeframe, at: float | None = None) -> int:
        """How many bars of the series have closed at market time `at` (default now)."""
        self.series(pair, timeframe)
        moment = self.now() if at is None else at
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

    async def _rows(self, after: datetime | float | None) -> AsyncIterator[tuple[int, int]]:
        """(lap, timeline row) of every close after the current lap's origin (or after
        market time `after`), in time order, as market time passes; a lap's closes all
        come before the next lap's. Ends when a replay that does not loop runs out."""
        timeline = self._timeline
        lap, _ = self.position()
        i = self._first_after(self._lap_origin if after is None else after)
        while True:
            current, now = self.position()
            if current != lap:  # started again: what is left of the lap comes first
                for row in range(i, len(timeline)):
                    yield lap, row
                lap, i = current, self._first_after(self._lap_origin)
                continue
            while i < len(timeline) and timeline[i, 0] <= now:
                yield lap, i
                i += 1
            if i < len(timeline):
                await self._wait_until(float(timeline[i, 0]), lap)
            elif self.loop:
                await self._wait_until(self.end, lap)
            else:
                return

    async def closes(self, after: datetime | float | None = None) -> AsyncIterator[CandleClosed]:
        """Every bar close of the current lap (after where it started, or after market
        time `after`), in time order, as market time passes, then those of the laps
        after it when the replay loops; ends when the history runs out otherwise."""
        async for lap, row in self._rows(after):
            yield self._event(row, lap)
        log.info(
            "replay finished",
            source=self.source,
            closes=len(self._timeline),
            last_close=as_datetime(self.end).isoformat(),
        )

    def _event(self, i: int, lap: int) -> CandleClosed:
        _, _, _, index, bar = (int(v) for v in self._timeline[i])
        key = self._keys[index]
        candles = self._series[key].slice(max(0, bar + 1 - self.history_bars), bar + 1)
        return CandleClosed(key[0], key[1], candles, self.source, lap=lap)

    # --- prices ------------------------------------------------------------------------

    def tick_pairs(self) -> list[str]:
        return list(self._pair_series)

    async def ticks(self, after: datetime | float | None = None) -> AsyncIterator[PriceTick]:
        """A PriceTick per pair at each close of its shortest series with bars at that
        moment (after the current lap's origin, or after market time `after`). When a
        looping replay starts again, the prices go back to those of its start."""
        timeline, ticks = self._timeline, self._tick_rows
        async for lap, row in self._rows(after):
            if ticks[row]:
                key = self._keys[int(timeline[row, 3])]
                yield self._tick(key, int(timeline[row, 4]), lap)

    def latest_tick(self, pair: str) -> PriceTick | None:
        """The price at the current market time: the close of the pair's most recently
        closed bar, of its shortest series at equal times (None before any bar of the
        pair closed, or for a pair without data)."""
        latest: tuple[float, SeriesKey, int] | None = None
        for key in self._pair_series.get(pair, []):  # shortest first: it wins ties
            closed = self.closed_count(*key)
            if closed and (latest is None or self._closes[key][closed - 1] > latest[0]):
                latest = (float(self._closes[key][closed - 1]), key, closed - 1)
        return None if latest is None else self._tick(latest[1], latest[2], self._lap)

    def _tick(self, key: SeriesKey, bar: int, lap: int) -> PriceTick:
        candles = self._series[key]
        return PriceTick(
            pair=key[0],
            price=float(candles.close[bar]),
            high=float(candles.high[bar]),
            low=float(candles.low[bar]),
            time=as_datetime(float(self._closes[key][bar])),
            source=self.source,
            lap=lap,
        )

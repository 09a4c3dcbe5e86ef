"""Live market data from Yahoo Finance (`common.market_data.load_yahoo_history`).

One poller task (started by the first `closes()`/`ticks()` iterator, or by `run()`)
fetches every polled series every `poll_seconds`, in a worker thread so yfinance's
blocking I/O and its retries never stall the event loop, then:

- emits a `CandleClosed` for each bar that closed since the previous poll (the first
  look at a series — its first successful poll, or a `history()` call such as the
  scheduler's warm start — only sets where it stands: bars that closed before the
  service started are history, not news, and none closed after it is skipped);
- emits a `PriceTick` per pair from its shortest polled series: the newest bar's close
  (Yahoo's forming bar, i.e. the latest quote), with the range of the bars since the
  previous tick.

`history()` serves the series' latest fetch when it is fresher than `poll_seconds`, and
fetches otherwise. Yahoo unreachable, rate limiting or answering what cannot be read
(each fetch already retried with backoff by load_yahoo_history) → `MarketDataUnavailable`
from `history()` (the RPC layer answers UNAVAILABLE); the poller logs it, marks the pair
offline and the series failing (`failing()`, the "market_data" health check), and tries
again later: while every series fails, the wait between polls doubles, up to
MAX_POLL_BACKOFF times `poll_seconds`, so a rate-limited Yahoo is asked less often. Only
closed bars are ever returned as candles, and nothing is made up meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from datetime import UTC, datetime

import numpy as np
import structlog

from common.candles import TIMEFRAME_SECONDS, Candles
from common.market import Timeframe
from common.market_data import MarketDataError, MarketDataUnavailable, load_yahoo_history
from signal_svc.market.series import SeriesKey, close_times
from signal_svc.ports import CandleClosed, PriceTick

log = structlog.get_logger(__name__)

DEFAULT_POLL_SECONDS = 60.0
DEFAULT_HISTORY_BARS = 300
# Most bars kept per series between polls.
KEEP_BARS = 5000
# While every series fails, polls are this many times further apart at most.
MAX_POLL_BACKOFF = 8
# What each poll asks Yahoo for: short ranges, enough to bridge a missed poll or two.
POLL_PERIODS = {Timeframe.M15: "5d", Timeframe.H1: "5d", Timeframe.H4: "1mo", Timeframe.D1: "3mo"}

Loader = Callable[..., Candles]


def _concat(old: Candles, new: Candles) -> Candles:
    """`old` bars before `new`'s first bar, then `new` (its values win where both have
    a bar), then `old` bars after `new`'s last one — a fetch that answers late with an
    older view (the warm start's and the poller's overlap) must not drop newer bars —
    at most KEEP_BARS."""
    if not len(old):
        return new.tail(KEEP_BARS)
    if not len(new):
        return old
    head = old.slice(0, int(np.searchsorted(old.times, new.times[0], side="left")))
    rest = old.slice(int(np.searchsorted(old.times, new.times[-1], side="right")), len(old))

    def joined(name: str) -> np.ndarray:
        return np.concatenate([getattr(head, name), getattr(new, name), getattr(rest, name)])

    merged = Candles(
        new.pair,
        new.timeframe,
        times=joined("times"),
        open=joined("open"),
        high=joined("high"),
        low=joined("low"),
        close=joined("close"),
        volume=joined("volume"),
        closes_only=new.closes_only,
    )
    return merged.tail(KEEP_BARS)


class LiveFeed:
    """`MarketData` (plus price ticks) over Yahoo Finance."""

    source = "live"

    def __init__(
        self,
        offered: Mapping[str, Iterable[Timeframe]],
        polled: Iterable[SeriesKey],
        *,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
        history_bars: int = DEFAULT_HISTORY_BARS,
        loader: Loader = load_yahoo_history,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`offered`: pair → timeframes served on demand (GetCandles); `polled`: the
        series watched for closes (the scheduler's). `loader(pair, timeframe, period=...)`
        is load_yahoo_history's signature (tests pass their own)."""
        self._offered = {pair: list(tfs) for pair, tfs in offered.items()}
        self._polled = list(dict.fromkeys(polled))
        for pair, timeframe in self._polled:
            tfs = self._offered.setdefault(pair, [])
            if timeframe not in tfs:
                tfs.append(timeframe)
        for tfs in self._offered.values():
            tfs.sort(key=lambda tf: TIMEFRAME_SECONDS[tf])
        self.poll_seconds = poll_seconds
        self.history_bars = history_bars
        self._loader = loader
        self._clock = clock
        self._bars: dict[SeriesKey, Candles] = {}
        self._fetched_at: dict[SeriesKey, float] = {}
        self._last_closed: dict[SeriesKey, int] = {}  # open time of the last emitted bar
        self._last_tick: dict[str, PriceTick] = {}
        self.online: dict[str, bool] = {}
        # Series whose latest poll failed, and why.
        self._failing: dict[SeriesKey, str] = {}
        self._close_queues: set[asyncio.Queue[CandleClosed]] = set()
        self._tick_queues: set[asyncio.Queue[PriceTick]] = set()
        self._poller: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    # --- what is offered ---------------------------------------------------------------

    def offered(self) -> dict[str, list[Timeframe]]:
        return {pair: list(tfs) for pair, tfs in self._offered.items()}

    def tick_pairs(self) -> list[str]:
        return list(dict.fromkeys(pair for pair, _ in self._polled))

    def now(self) -> float:
        return self._clock()

    def _tick_series(self, pair: str) -> SeriesKey | None:
        tfs = [tf for p, tf in self._polled if p == pair]
        return (pair, min(tfs, key=lambda tf: TIMEFRAME_SECONDS[tf])) if tfs else None

    # --- fetching ------------------------------------------------------------------------

    async def _fetch(self, key: SeriesKey, period: str | None = None) -> Candles:
        """Fetch in a worker thread; merge into what is kept; record online/offline."""
        pair, timeframe = key
        kwargs = {} if period is None else {"period": period}
        try:
            fresh = await asyncio.to_thread(self._loader, pair, timeframe, **kwargs)
        except MarketDataUnavailable:
            self.online[pair] = False
            raise
        self.online[pair] = True
        merged = _concat(self._bars.get(key, fresh.slice(0, 0)), fresh)
        self._bars[key] = merged
        self._fetched_at[key] = time.monotonic()
        return merged

    def _closed(self, candles: Candles, now: float | None = None) -> Candles:
        moment = self._clock() if now is None else now
        return candles.slice(0, int(np.searchsorted(close_times(candles), moment, side="right")))

    async def history(self, pair: str, timeframe: Timeframe, count: int) -> Candles:
        """The latest `count` closed bars. Raises MarketDataUnavailable when Yahoo
        cannot be reached, MarketDataError for a series not offered."""
        if timeframe not in self._offered.get(pair, []):
            raise MarketDataError(f"no live data offered for {pair} {timeframe.value}")
        key = (pair, timeframe)
        fetched = self._fetched_at.get(key)
        if fetched is None or time.monotonic() - fetched > self.poll_seconds:
            async with self._lock:  # one fetch at a time, not one per waiting caller
                fetched = self._fetched_at.get(key)
                if fetched is None or time.monotonic() - fetched > self.poll_seconds:
                    await self._fetch(key)
        closed = self._closed(self._bars[key])
        if len(closed) and key in self._polled:
            # What a caller saw first is where the series stands: the scheduler's warm
            # start signals this bar, so the next poll must emit every bar after it.
            self._last_closed.setdefault(key, int(closed.times[-1]))
        return closed.tail(max(0, count))

    def latest_tick(self, pair: str) -> PriceTick | None:
        return self._last_tick.get(pair)

    def failing(self) -> dict[SeriesKey, str]:
        """The polled series whose latest poll brought no data, and why."""
        return dict(self._failing)

    # --- polling -------------------------------------------------------------------------

    async def poll_once(self) -> bool:
        """Fetch every polled series once; queue the closes and ticks that are new.
        Whether any series brought data."""
        events: list[tuple[int, int, CandleClosed]] = []
        for key in self._polled:
            first = key not in self._bars
            try:
                candles = await self._fetch(key, None if first else POLL_PERIODS[key[1]])
            except MarketDataError as exc:
                log.warning(
                    "live market data unavailable",
                    pair=key[0],
                    timeframe=key[1].value,
                    error=str(exc),
                )
                self._failing[key] = str(exc)
                continue
            if self._failing.pop(key, None) is not None:
                log.info("live market data flowing again", pair=key[0], timeframe=key[1].value)
            closed = self._closed(candles)
            if not len(closed):
                continue
            last = self._last_closed.get(key)
            self._last_closed[key] = int(closed.times[-1])
            if last is not None:
                for index in np.flatnonzero(closed.times > last):
                    i = int(index)
                    history = closed.slice(max(0, i + 1 - self.history_bars), i + 1)
                    close_time = int(closed.times[i]) + TIMEFRAME_SECONDS[key[1]]
                    events.append(
                        (
                            close_time,
                            TIMEFRAME_SECONDS[key[1]],
                            CandleClosed(key[0], key[1], history, self.source),
                        )
                    )
            if self._tick_series(key[0]) == key:
                self._publish_tick(key, candles)
        for _, _, event in sorted(events, key=lambda e: (e[0], e[1])):
            for queue in self._close_queues:
                queue.put_nowait(event)
        return len(self._failing) < len(self._polled)

    def _publish_tick(self, key: SeriesKey, candles: Candles) -> None:
        pair, timeframe = key
        previous = self._last_tick.get(pair)
        since = 0.0 if previous is None else previous.time.timestamp()
        # Bars that were still forming or not yet seen at the previous tick.
        recent = np.flatnonzero(close_times(candles) > since)
        if not recent.size:
            return
        last = len(candles) - 1
        now = self._clock()
        close_time = float(candles.times[last] + TIMEFRAME_SECONDS[timeframe])
        tick = PriceTick(
            pair=pair,
            price=float(candles.close[last]),
            high=float(candles.high[recent].max()),
            low=float(candles.low[recent].min()),
            time=datetime.fromtimestamp(min(now, close_time), UTC),
            source=self.source,
        )
        if previous is not None and (previous.time, previous.price) == (tick.time, tick.price):
            return
        self._last_tick[pair] = tick
        for queue in self._tick_queues:
            queue.put_nowait(tick)

    async def run(self) -> None:
        """Poll forever: every `poll_seconds`, further apart while nothing comes back."""
        backoff = 1
        while True:
            started = time.monotonic()
            answered = await self.poll_once()
            backoff = 1 if answered else min(backoff * 2, MAX_POLL_BACKOFF)
            wait = self.poll_seconds * backoff - (time.monotonic() - started)
            await asyncio.sleep(max(0.0, wait))

    def _ensure_poller(self) -> None:
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self.run(), name="live-market-poller")

    async def closes(self) -> AsyncIterator[CandleClosed]:
        """Every bar close of every polled series, from now on."""
        queue: asyncio.Queue[CandleClosed] = asyncio.Queue()
        self._close_queues.add(queue)
        self._ensure_poller()
        try:
            while True:
                yield await queue.get()
        finally:
            self._close_queues.discard(queue)

    async def ticks(self) -> AsyncIterator[PriceTick]:
        queue: asyncio.Queue[PriceTick] = asyncio.Queue()
        self._tick_queues.add(queue)
        self._ensure_poller()
        try:
            while True:
                yield await queue.get()
        finally:
            self._tick_queues.discard(queue)

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None

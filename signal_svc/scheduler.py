"""The scheduler: a signal per configured (pair, timeframe) at each candle close.

    feed.closes() ──▶ queue ──▶ batch ──▶ engine.evaluate_many ──▶ repository.store
                                          (a signal or a failure per event)
                                   stored (not a duplicate)? ──▶ cache.put, publisher.publish

- Closes that arrive together (several series closing on the same hour) are evaluated
  as one batch: one PredictBatch to the inference service.
- Exactly one signal per (pair, timeframe, candle), however many schedulers (replicas)
  run: `store` is an insert the database refuses for a candle that already has a
  signal; only the scheduler whose insert succeeded publishes, so each signal reaches
  subscribers once. The loser refreshes its cache from the database.
- On start, the latest closed candle of each series is evaluated too (warm start), so
  GetSignal has an answer right away instead of after the first close; a restart or a
  second replica re-evaluating a candle that already has its signal stores nothing.
- A database outage holds signals back instead of losing them: a store that failed
  because the database is down or saturated (common.outages) is retried, with a
  backoff, until it succeeds; the closes that arrive meanwhile wait in the queue.
- Any other failure on one series (its evaluation, store, cache or publish) is logged
  and never stops the loop or the other series. If the feed's stream of closes fails, it is
  re-subscribed after a backoff; if it ends (a finished replay), `run` returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence

import structlog

from common.market import Timeframe, normalize_pair
from common.outages import as_unavailable
from common.settings import MarketSettings
from common.shutdown import stop_tasks
from signal_svc.engine import HISTORY_BARS, EvaluationFailed, SignalEngine, candle_close_time
from signal_svc.metrics import count_stored
from signal_svc.ports import CandleClosed, MarketData, SignalPublisher
from signal_svc.repository import SignalRepository
from signal_svc.signal_cache import SignalCache
from signal_svc.signals import Signal

log = structlog.get_logger(__name__)

MAX_BATCH = 64
RESUBSCRIBE_MIN_SECONDS = 1.0
RESUBSCRIBE_MAX_SECONDS = 30.0
STORE_RETRY_MIN_SECONDS = 0.25
STORE_RETRY_MAX_SECONDS = 4.0
_END = object()


def configured_series(
    market: MarketSettings, offered: Mapping[str, Iterable[Timeframe]] | None = None
) -> list[tuple[str, Timeframe]]:
    """Every (pair, timeframe) of market.signal_pairs x market.signal_timeframes,
    normalised, and with `offered` (pair → timeframes with market data) only those the
    market has data for; ValueError naming a bad entry."""
    pairs = [normalize_pair(pair) for pair in market.signal_pairs]
    timeframes = [Timeframe(tf.strip().lower()) for tf in market.signal_timeframes]
    wanted = [(pair, timeframe) for pair in pairs for timeframe in timeframes]
    if offered is None:
        return wanted
    available = {(pair, tf) for pair, tfs in offered.items() for tf in tfs}
    skipped = [f"{pair} {tf.value}" for pair, tf in wanted if (pair, tf) not in available]
    if skipped:
        log.info("configured series without market data get no signals", series=skipped)
    return [series for series in wanted if series in available]


class Scheduler:
    def __init__(
        self,
        feed: MarketData,
        engine: SignalEngine,
        repository: SignalRepository,
        publisher: SignalPublisher,
        series: Iterable[tuple[str, Timeframe]],
        *,
        cache: SignalCache | None = None,
        warm_start: bool = True,
    ) -> None:
        self._feed = feed
        self._engine = engine
        self._repository = repository
        self._publisher = publisher
        self._series = frozenset((pair, Timeframe(tf)) for pair, tf in series)
        self._cache = cache
        self._warm_start = warm_start
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self.stored = 0
        self.duplicates = 0
        self.failures = 0

    @property
    def series(self) -> frozenset[tuple[str, Timeframe]]:
        return self._series

    async def run(self) -> None:
        """Produce signals until cancelled (or until the feed's closes end)."""
        reader = asyncio.create_task(self._read_closes(), name="scheduler-closes")
        try:
            await asyncio.sleep(0)  # let the reader subscribe before the warm start
            if self._warm_start:
                await self.handle(await self._latest_closes())
            while True:
                first = await self._queue.get()
                if first is _END:
                    return
                batch = [first]
                ended = False
                while len(batch) < MAX_BATCH and not self._queue.empty():
                    item = self._queue.get_nowait()
                    if item is _END:
                        ended = True
                        break
                    batch.append(item)
                await self.handle(batch)  # type: ignore[arg-type]
                if ended:
                    return
        finally:
            await stop_tasks(reader)  # cancels again if the reader loses a cancellation

    async def _read_closes(self) -> None:
        delay = RESUBSCRIBE_MIN_SECONDS
        while True:
            try:
                async for event in self._feed.closes():
                    delay = RESUBSCRIBE_MIN_SECONDS
                    if (event.pair, event.timeframe) in self._series:
                        self._queue.put_nowait(event)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("candle closes failed; subscribing again", retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RESUBSCRIBE_MAX_SECONDS)
                continue
            log.info("candle closes ended")
            self._queue.put_nowait(_END)
            return

    async def _latest_closes(self) -> list[CandleClosed]:
        events = []
        for pair, timeframe in sorted(self._series):
            try:
                candles = await self._feed.history(pair, timeframe, HISTORY_BARS)
            except Exception:
                log.exception("warm start: no history", pair=pair, timeframe=timeframe.value)
                continue
            if len(candles):
                events.append(CandleClosed(pair, timeframe, candles, "history"))
        return events

    async def handle(self, events: Sequence[CandleClosed]) -> list[Signal]:
        """Evaluate, store and publish the signals of `events`; the signals this
        scheduler stored (duplicates of stored candles and failures left out)."""
        events = _dedupe([e for e in events if (e.pair, e.timeframe) in self._series])
        if not events:
            return []
        stored: list[Signal] = []
        for evaluation in await self._engine.evaluate_many(events):
            if isinstance(evaluation, EvaluationFailed):
                self._failed(evaluation)
                continue
            result = await self._store_and_publish(evaluation)
            if result is not None:
                stored.append(result)
        return stored

    def _failed(self, failure: EvaluationFailed) -> None:
        self.failures += 1
        event = failure.event
        log.error(
            "signal evaluation failed",
            pair=event.pair,
            timeframe=event.timeframe.value,
            candles=len(event.candles),
            exc_info=failure.error,
        )

    async def _store_and_publish(self, signal: Signal) -> Signal | None:
        where = {"pair": signal.pair, "timeframe": signal.timeframe.value}
        try:
            stored = await self._store(signal)
        except Exception:
            self.failures += 1
            log.exception("signal store failed", **where)
            return None
        if stored is None:
            self.duplicates += 1
            log.info("signal already stored", candle_time=signal.candle_time.isoformat(), **where)
            await self._refresh_cache(signal)
            return None
        self.stored += 1
        count_stored(stored)
        if self._cache is not None:
            try:
                await self._cache.put(stored)
            except Exception:
                log.exception("signal cache update failed", **where)
        try:
            await self._publisher.publish(stored)
        except Exception:
            # Stored: subscribers that resume from their last id still get it.
            self.failures += 1
            log.exception("signal publish failed", signal_id=stored.id, **where)
        return stored

    async def _store(self, signal: Signal) -> Signal | None:
        """`repository.store`, retried for as long as the database is unavailable."""
        delay = STORE_RETRY_MIN_SECONDS
        while True:
            try:
                return await self._repository.store(signal)
            except Exception as exc:
                if as_unavailable(exc) is None:
                    raise
                log.warning(
                    "signal store waits for the database",
                    pair=signal.pair,
                    timeframe=signal.timeframe.value,
                    error=type(exc).__name__,
                    retry_in=delay,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, STORE_RETRY_MAX_SECONDS)

    async def _refresh_cache(self, signal: Signal) -> None:
        if self._cache is None:
            return
        try:
            latest = await self._repository.latest(signal.pair, signal.timeframe)
            if latest is not None:
                await self._cache.put(latest)
        except Exception:
            log.exception("signal cache refresh failed", pair=signal.pair)


def _dedupe(events: list[CandleClosed]) -> list[CandleClosed]:
    """One event per (pair, timeframe, candle), the last one seen."""
    by_candle: dict[tuple[str, Timeframe, object], CandleClosed] = {}
    for event in events:
        if len(event.candles) == 0:
            log.warning("close without candles ignored", pair=event.pair)
            continue
        by_candle[(event.pair, event.timeframe, candle_close_time(event.candles))] = event
    return list(by_candle.values())

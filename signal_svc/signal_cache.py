"""The latest signal per (pair, timeframe), for GetSignal: Redis when configured (shared
by every replica), in process otherwise, read through to the repository on a miss.

A cached signal lives until its series' next candle closes: the scheduler overwrites it
when it stores the next signal (`put`), and the entry expires at the expected next
close, so a replica whose scheduler stopped (or another replica's newer signal on a
process-local cache) is never served past it. The next close in real time is the
signal's candle_time + timeframe when that is still ahead (live data); for replayed
history, whose candle times are historical, it is the signal's creation time plus the
timeframe divided by the replay speed.

In front of the store sits a short in-process memo (settings.streams.signal_memo_seconds,
0.5 s by default): GetSignal is read far more often than a series closes, and a Redis
round trip per call was most of its latency under load. The memo is always current for
this process's own signals: `put` replaces the series' memo at once (before the store
is written), and a read that was in flight across a `put` answers with the put signal
instead of memoising its older one. Another replica's new signal reaches this one only
through the store, so it is served at most `memo_seconds` later than without the memo
(for the same reason, a signal may be served up to `memo_seconds` past its entry's
expiry).

Losing Redis degrades (common.kv.RedisStore): entries fall back to the in-process store
and GetSignal reads through to the database; nothing fails.

Losing the database too (or every pooled connection busy, see common.outages): a read
that must go through to it answers with the last signal this process knew for the
series instead of failing ("stale if error"; the signal's candle time says how old it
is). Only a series this process never saw gets UNAVAILABLE.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from common.candles import TIMEFRAME_SECONDS
from common.kv import KeyValueStore
from common.market import Timeframe
from common.outages import as_unavailable
from common.settings import MarketSettings, StreamSettings
from common.time import as_utc, utcnow
from signal_svc.repository import SignalRepository
from signal_svc.signal_codec import signal_from_json, signal_to_json
from signal_svc.signals import Signal

log = structlog.get_logger(__name__)

# Shortest life of an entry, so a signal stored just before its next close still
# absorbs the burst of reads it triggers.
MIN_TTL_SECONDS = 0.5
# Default life of the in-process memo (settings.streams.signal_memo_seconds).
MEMO_SECONDS = 0.5


def cache_key(pair: str, timeframe: Timeframe) -> str:
    """Key under the store's prefix (settings.storage.redis_prefix), e.g.
    `aifx:signal:latest:EUR/USD:1h`."""
    return f"signal:latest:{pair}:{timeframe.value}"


@dataclass(frozen=True)
class _Memo:
    signal: Signal
    expires: float  # on the cache's monotonic clock


class SignalCache:
    """The latest signal per series: memo, then store, then repository (module doc)."""

    def __init__(
        self,
        store: KeyValueStore,
        repository: SignalRepository,
        *,
        replay_speed: float = 1.0,
        memo_seconds: float = MEMO_SECONDS,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._repository = repository
        self._speed = replay_speed
        self._memo_seconds = memo_seconds
        self._clock = clock
        self._monotonic = monotonic
        self._memos: dict[str, _Memo] = {}
        # The newest signal seen per series, kept past any expiry: the answer while the
        # database is unavailable (one per configured series, so it stays small).
        self._last_known: dict[str, Signal] = {}

    @classmethod
    def from_settings(
        cls,
        market: MarketSettings,
        streams: StreamSettings,
        store: KeyValueStore,
        repository: SignalRepository,
    ) -> SignalCache:
        """The cache of the configured market (replayed history's clock runs at
        replay_speed; live data's at 1) and memo time."""
        speed = market.replay_speed if market.market_data_mode == "replay" else 1.0
        return cls(store, repository, replay_speed=speed, memo_seconds=streams.signal_memo_seconds)

    def ttl_seconds(self, signal: Signal) -> float:
        """Seconds until the series' next candle is expected to close (see module doc)."""
        now = self._clock()
        period = TIMEFRAME_SECONDS[signal.timeframe]
        live_next = as_utc(signal.candle_time) + timedelta(seconds=period)
        if live_next > now:
            remaining = (live_next - now).total_seconds()
        else:
            replay_next = as_utc(signal.created_at) + timedelta(seconds=period / self._speed)
            remaining = (replay_next - now).total_seconds()
        return max(MIN_TTL_SECONDS, remaining)

    async def put(self, signal: Signal) -> None:
        """Make `signal` the cached latest of its series (the scheduler, on store). This
        process serves it from the next call on: the memo is replaced before the store
        write, which may take a network round trip."""
        key = cache_key(signal.pair, signal.timeframe)
        self._memoise(key, signal)
        self._last_known[key] = signal
        await self._store.set(key, signal_to_json(signal), self.ttl_seconds(signal))

    async def latest(self, pair: str, timeframe: Timeframe) -> Signal | None:
        """The latest signal of the series from the memo, else the store, else the
        database (and then cached); None when the series has no signal yet."""
        key = cache_key(pair, timeframe)
        memo = self._memos.get(key)
        if memo is not None and memo.expires > self._monotonic():
            return memo.signal
        try:
            signal = await self._read(key, pair, timeframe)
        except Exception as exc:
            stale = self._last_known.get(key)
            if stale is None or as_unavailable(exc) is None:
                raise
            log.debug("database unavailable: the last known signal served", key=key)
            return stale
        current = self._memos.get(key)
        if current is not None and current is not memo:
            # A `put` (or another read) while we were reading: at least as new as ours.
            return current.signal
        if signal is not None:
            self._memoise(key, signal)
            self._last_known[key] = signal
        return signal

    def _memoise(self, key: str, signal: Signal) -> None:
        if self._memo_seconds > 0:
            self._memos[key] = _Memo(signal, self._monotonic() + self._memo_seconds)

    async def _read(self, key: str, pair: str, timeframe: Timeframe) -> Signal | None:
        cached = await self._store.get(key)
        if cached is not None:
            try:
                return signal_from_json(cached)
            except (ValueError, KeyError, TypeError):
                log.warning("unreadable cached signal ignored", key=key)
        signal = await self._repository.latest(pair, timeframe)
        if signal is not None:
            await self._store.set(key, signal_to_json(signal), self.ttl_seconds(signal))
        return signal

"""The latest signal per (pair, timeframe), for GetSignal: Redis when configured (shared
by every replica), in process otherwise, read through to the repository on a miss.

A cached signal lives until its series' next candle closes: the scheduler overwrites it
when it stores the next signal (`put`), and the entry expires at the expected next
close, so a replica whose scheduler stopped (or another replica's newer signal on a
process-local cache) is never served past it. The next close in real time is the
signal's candle_time + timeframe when that is still ahead (live data); for replayed
history, whose candle times are historical, it is the signal's creation time plus the
timeframe divided by the replay speed.

Losing Redis degrades (common.kv.RedisStore): entries fall back to the in-process store
and GetSignal reads through to the database; nothing fails.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from common.candles import TIMEFRAME_SECONDS
from common.kv import KeyValueStore
from common.market import Timeframe
from common.settings import Settings
from common.time import as_utc, utcnow
from signal_svc.convert import signal_from_json, signal_to_json
from signal_svc.repository import SignalRepository
from signal_svc.signals import Signal

log = structlog.get_logger(__name__)

# Shortest life of an entry, so a signal stored just before its next close still
# absorbs the burst of reads it triggers.
MIN_TTL_SECONDS = 0.5


def cache_key(pair: str, timeframe: Timeframe) -> str:
    """Key under the store's prefix (settings.redis_prefix), e.g.
    `aifx:signal:latest:EUR/USD:1h`."""
    return f"signal:latest:{pair}:{timeframe.value}"


class SignalCache:
    def __init__(
        self,
        store: KeyValueStore,
        repository: SignalRepository,
        *,
        replay_speed: float = 1.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self._repository = repository
        self._speed = replay_speed
        self._clock = clock

    @classmethod
    def from_settings(
        cls, settings: Settings, store: KeyValueStore, repository: SignalRepository
    ) -> SignalCache:
        speed = settings.replay_speed if settings.market_data_mode == "replay" else 1.0
        return cls(store, repository, replay_speed=speed)

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
        """Make `signal` the cached latest of its series (the scheduler, on store)."""
        await self._store.set(
            cache_key(signal.pair, signal.timeframe),
            signal_to_json(signal),
            self.ttl_seconds(signal),
        )

    async def latest(self, pair: str, timeframe: Timeframe) -> Signal | None:
        """The latest signal of the series from the cache, else from the database (and
        then cached); None when the series has no signal yet."""
        key = cache_key(pair, timeframe)
        cached = await self._store.get(key)
        if cached is not None:
            try:
                return signal_from_json(cached)
            except (ValueError, KeyError, TypeError):
                log.warning("unreadable cached signal ignored", key=key)
        signal = await self._repository.latest(pair, timeframe)
        if signal is not None:
            await self.put(signal)
        return signal

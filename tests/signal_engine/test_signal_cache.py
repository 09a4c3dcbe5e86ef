"""GetSignal's cache on both backends: hits without the database, read-through on a
miss, overwrite on store, expiry at the next candle close, a dead Redis, and the
in-process memo in front of the store (on a stepped clock: no timing assumptions)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis

from common.kv import KeyValueStore, MemoryStore, RedisStore, fail_fast_options
from common.market import Timeframe
from signal_svc.engine import SignalEngine
from signal_svc.signal_cache import SignalCache, cache_key
from signal_svc.signal_codec import signal_to_json
from signal_svc.signals import Signal
from tests.infra import SteppedClock, free_port, make_settings
from tests.signal_engine.helpers import closed

H1 = ("EUR/USD", Timeframe.H1)


class CountingStore:
    """A store that counts reads and can hold them until released."""

    def __init__(self, inner: KeyValueStore) -> None:
        self.inner = inner
        self.gets = 0
        self.release = asyncio.Event()
        self.release.set()
        self.reading = asyncio.Event()

    async def set(self, key: str, value: str, ttl_seconds: float) -> None:
        await self.inner.set(key, value, ttl_seconds)

    async def get(self, key: str) -> str | None:
        self.gets += 1
        value = await self.inner.get(key)  # what the store held when asked
        self.reading.set()
        await self.release.wait()
        return value

    async def close(self) -> None:
        await self.inner.close()


class CountingRepository:
    def __init__(self, inner) -> None:
        self.inner = inner
        self.reads = 0

    async def latest(self, pair, timeframe):
        self.reads += 1
        return await self.inner.latest(pair, timeframe)


async def two_signals(signal_db, hours) -> tuple[Signal, Signal]:
    """Rules-only signals of two consecutive real hourly closes, stored."""
    older, newer = await SignalEngine(signal_db.settings.strategy, None).evaluate_many(
        [closed(hours, 4500), closed(hours, 4501)]
    )
    return older, newer


async def test_a_put_signal_is_served_without_the_database(signal_db, kv_store, hours) -> None:
    older, newer = await two_signals(signal_db, hours)
    stored = await signal_db.repository.store(older)
    repository = CountingRepository(signal_db.repository)
    cache = SignalCache(kv_store, repository)  # type: ignore[arg-type]
    await cache.put(stored)
    for _ in range(5):
        assert await cache.latest(*H1) == stored
    assert repository.reads == 0
    # The scheduler storing the next candle's signal overwrites it.
    newest = await signal_db.repository.store(newer)
    await cache.put(newest)
    assert await cache.latest(*H1) == newest
    assert repository.reads == 0


async def test_a_miss_reads_through_once_and_nothing_is_none(signal_db, kv_store, hours) -> None:
    repository = CountingRepository(signal_db.repository)
    cache = SignalCache(kv_store, repository)  # type: ignore[arg-type]
    assert await cache.latest(*H1) is None
    older, _ = await two_signals(signal_db, hours)
    stored = await signal_db.repository.store(older)
    assert await cache.latest(*H1) == stored
    assert await cache.latest(*H1) == stored
    assert repository.reads == 2  # the empty answer, then one read-through


async def test_an_entry_expires_when_the_next_candle_closes(signal_db, hours) -> None:
    """Replaying at 6,000x an hour bar closes every 0.6 s: the cached signal is served
    until then, and the database's newer one after, even if nobody overwrote it (on a
    stepped clock: the memo's and the store's)."""
    older, newer = await two_signals(signal_db, hours)
    now = datetime.now(UTC)
    stored = await signal_db.repository.store(dataclasses.replace(older, created_at=now))
    clock = SteppedClock()
    cache = SignalCache(
        MemoryStore(monotonic=clock),
        signal_db.repository,
        replay_speed=6000,
        clock=lambda: now,
        monotonic=clock,
    )
    assert cache.ttl_seconds(stored) == pytest.approx(0.6)
    await cache.put(stored)
    # Another replica stores the next candle's signal; this cache is not told.
    newest = await signal_db.repository.store(dataclasses.replace(newer, created_at=now))
    assert await cache.latest(*H1) == stored
    clock.advance(0.55)  # past the memo (0.5 s), not the entry (0.6 s): memoised again
    assert await cache.latest(*H1) == stored
    clock.advance(0.5)  # past the entry and the new memo
    assert await cache.latest(*H1) == newest


async def test_redis_keeps_an_entry_until_the_next_close(
    signal_db, signal_settings, kv_store, hours
) -> None:
    """With Redis, the entry's expiry is Redis's own: the key lives until the series'
    next close (0.6 s at 6,000x), so every replica drops it then."""
    if not signal_settings.storage.redis_url:
        pytest.skip("embedded backend: the in-process store's expiry is tested above")
    older, _ = await two_signals(signal_db, hours)
    now = datetime.now(UTC)
    stored = await signal_db.repository.store(dataclasses.replace(older, created_at=now))
    cache = SignalCache(kv_store, signal_db.repository, replay_speed=6000, clock=lambda: now)
    await cache.put(stored)
    client = aioredis.Redis.from_url(signal_settings.storage.redis_url)
    try:
        ttl_ms = await client.pttl(signal_settings.storage.redis_prefix + cache_key(*H1))
    finally:
        await client.aclose()
    assert 500 < ttl_ms <= 600


async def test_ttl_is_the_time_to_the_next_close(hours, tmp_path) -> None:
    signal = await SignalEngine(make_settings(tmp_path).strategy, None).evaluate(
        closed(hours, 4500)
    )
    # Live: a candle that closed at 10:00 is replaced at 11:00.
    close = datetime(2024, 5, 6, 10, 0, tzinfo=UTC)
    live = dataclasses.replace(signal, candle_time=close, created_at=close)
    at = close + timedelta(minutes=20, seconds=5)
    assert SignalCache(MemoryStore(), None, clock=lambda: at).ttl_seconds(live) == 2395  # type: ignore[arg-type]
    four = dataclasses.replace(live, timeframe=Timeframe.H4)
    assert SignalCache(MemoryStore(), None, clock=lambda: at).ttl_seconds(four) == 13195  # type: ignore[arg-type]
    # Replay (historical candle times) at 60x: an hour bar closes every minute.
    replayed = dataclasses.replace(signal, created_at=close)
    cache = SignalCache(
        MemoryStore(), None, replay_speed=60, clock=lambda: close + timedelta(seconds=15)
    )  # type: ignore[arg-type]
    assert cache.ttl_seconds(replayed) == 45
    # Overdue (the next close is late): a short floor, then the database decides.
    late = SignalCache(MemoryStore(), None, clock=lambda: close + timedelta(hours=3))  # type: ignore[arg-type]
    assert late.ttl_seconds(live) == 0.5


async def test_a_dead_redis_degrades_to_process_memory_and_the_database(signal_db, hours) -> None:
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", **fail_fast_options())
    store = RedisStore(client, "aifx-test-dead:")
    repository = CountingRepository(signal_db.repository)
    cache = SignalCache(store, repository)  # type: ignore[arg-type]
    older, newer = await two_signals(signal_db, hours)
    try:
        started = time.perf_counter()
        stored = await signal_db.repository.store(older)
        assert await cache.latest(*H1) == stored  # read through, Redis refused
        newest = await signal_db.repository.store(newer)
        await cache.put(newest)
        assert await cache.latest(*H1) == newest  # served from process memory
        assert repository.reads == 1
        assert time.perf_counter() - started < 3.0  # fail-fast, not a connect timeout
    finally:
        await store.close()


async def test_an_unreadable_entry_is_ignored(signal_db, kv_store, hours) -> None:
    older, _ = await two_signals(signal_db, hours)
    stored = await signal_db.repository.store(older)
    await kv_store.set(cache_key(*H1), "{not json", 60)
    assert await SignalCache(kv_store, signal_db.repository).latest(*H1) == stored


# --- the in-process memo -----------------------------------------------------------------


async def test_the_memo_serves_repeated_reads_without_the_store(signal_db, kv_store, hours) -> None:
    older, newer = await two_signals(signal_db, hours)
    stored = await signal_db.repository.store(older)
    store, clock = CountingStore(kv_store), SteppedClock()
    cache = SignalCache(store, signal_db.repository, memo_seconds=0.5, monotonic=clock)
    await cache.put(stored)
    for _ in range(5):
        assert await cache.latest(*H1) == stored
    assert store.gets == 0
    # This process's next signal is served at once, memo or not.
    newest = await signal_db.repository.store(newer)
    await cache.put(newest)
    assert await cache.latest(*H1) == newest
    assert store.gets == 0
    # Once the memo is older than memo_seconds, the store is asked again (once).
    clock.now += 0.5
    assert await cache.latest(*H1) == newest
    assert await cache.latest(*H1) == newest
    assert store.gets == 1


async def test_another_replicas_signal_is_seen_within_the_memo_ttl(
    signal_db, kv_store, hours
) -> None:
    """Two replicas on one store: B's new signal reaches A when A's memo expires."""
    older, newer = await two_signals(signal_db, hours)
    stored = await signal_db.repository.store(older)
    clock = SteppedClock()
    a = SignalCache(kv_store, signal_db.repository, memo_seconds=0.5, monotonic=clock)
    b = SignalCache(kv_store, signal_db.repository, memo_seconds=0.5, monotonic=clock)
    await b.put(stored)
    assert await a.latest(*H1) == stored  # memoised by A now
    newest = await signal_db.repository.store(newer)
    await b.put(newest)
    assert await a.latest(*H1) == stored  # within A's memo TTL: still the older one
    clock.now += 0.49
    assert await a.latest(*H1) == stored
    clock.now += 0.01
    assert await a.latest(*H1) == newest


async def test_a_read_in_flight_across_a_put_does_not_memoise_the_older_signal(
    signal_db, hours
) -> None:
    older, newer = await two_signals(signal_db, hours)
    stored = await signal_db.repository.store(older)
    store = CountingStore(MemoryStore())
    cache = SignalCache(store, signal_db.repository, memo_seconds=60, monotonic=SteppedClock())
    await store.set(cache_key(*H1), signal_to_json(stored), 60)
    store.release.clear()
    reading = asyncio.create_task(cache.latest(*H1))
    await store.reading.wait()  # the read has the older signal in hand
    newest = await signal_db.repository.store(newer)
    await cache.put(newest)
    store.release.set()
    assert await reading == newest
    assert await cache.latest(*H1) == newest  # from the memo: the put one, not the read one
    assert store.gets == 1


async def test_memo_seconds_zero_turns_the_memo_off(signal_db, hours) -> None:
    older, _ = await two_signals(signal_db, hours)
    stored = await signal_db.repository.store(older)
    store = CountingStore(MemoryStore())
    cache = SignalCache(store, signal_db.repository, memo_seconds=0, monotonic=SteppedClock())
    await cache.put(stored)
    for _ in range(3):
        assert await cache.latest(*H1) == stored
    assert store.gets == 3


async def test_the_memo_ttl_is_a_setting(signal_db, hours, tmp_path) -> None:
    assert make_settings(tmp_path).streams.signal_memo_seconds == 0.5
    older, _ = await two_signals(signal_db, hours)
    stored = await signal_db.repository.store(older)
    store = CountingStore(MemoryStore())
    settings = make_settings(tmp_path, signal_memo_seconds=0)
    cache = SignalCache.from_settings(
        settings.market, settings.streams, store, signal_db.repository
    )
    await cache.put(stored)
    assert await cache.latest(*H1) == stored
    assert store.gets == 1


class UnavailableRepository:
    """The database gone: every read is refused as asyncpg refuses a connection."""

    async def latest(self, pair, timeframe):
        raise ConnectionRefusedError(111, "Connect call failed")


class BrokenRepository:
    async def latest(self, pair, timeframe):
        raise ValueError("a bug")


async def expired_entry(signal_db, hours, repository) -> tuple[SignalCache, Signal]:
    """A cache over `repository` whose entry for a stored signal has expired, so the
    next read of its series goes to the repository."""
    older, _ = await two_signals(signal_db, hours)
    now = datetime.now(UTC)
    stored = await signal_db.repository.store(dataclasses.replace(older, created_at=now))
    clock = SteppedClock()
    cache = SignalCache(
        MemoryStore(monotonic=clock),
        repository,
        replay_speed=6000,
        clock=lambda: now,
        monotonic=clock,
    )
    await cache.put(stored)
    clock.advance(5)  # past the memo and the entry (0.6 s at 6,000x)
    return cache, stored


async def test_an_expired_signal_is_served_while_the_database_is_unavailable(
    signal_db, hours
) -> None:
    """Stale if error: the last known signal answers; a series never seen still fails."""
    cache, stored = await expired_entry(signal_db, hours, UnavailableRepository())
    assert await cache.latest(*H1) == stored
    with pytest.raises(ConnectionRefusedError):
        await cache.latest("EUR/USD", Timeframe.H4)


async def test_a_database_bug_is_not_hidden_by_a_stale_signal(signal_db, hours) -> None:
    cache, _ = await expired_entry(signal_db, hours, BrokenRepository())
    with pytest.raises(ValueError, match="a bug"):
        await cache.latest(*H1)

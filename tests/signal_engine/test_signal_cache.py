"""GetSignal's cache on both backends: hits without the database, read-through on a
miss, overwrite on store, expiry at the next candle close, and a dead Redis."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis

from common.kv import MemoryStore, RedisStore, fail_fast_options
from common.market import Timeframe
from signal_svc.engine import SignalEngine
from signal_svc.signal_cache import SignalCache, cache_key
from signal_svc.signals import Signal
from tests.infra import free_port, make_settings
from tests.signal_engine.helpers import closed

H1 = ("EUR/USD", Timeframe.H1)


class CountingRepository:
    def __init__(self, inner) -> None:
        self.inner = inner
        self.reads = 0

    async def latest(self, pair, timeframe):
        self.reads += 1
        return await self.inner.latest(pair, timeframe)


async def two_signals(signal_db, hours) -> tuple[Signal, Signal]:
    """Rules-only signals of two consecutive real hourly closes, stored."""
    older, newer = await SignalEngine(signal_db.settings, None).evaluate_many(
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


async def test_an_entry_expires_when_the_next_candle_closes(signal_db, kv_store, hours) -> None:
    """Replaying at 6,000x an hour bar closes every 0.6 s: the cached signal is served
    until then, and the database's newer one after, even if nobody overwrote it."""
    older, newer = await two_signals(signal_db, hours)
    now = datetime.now(UTC)
    stored = await signal_db.repository.store(dataclasses.replace(older, created_at=now))
    cache = SignalCache(kv_store, signal_db.repository, replay_speed=6000)
    # The TTL as of creation (a frozen clock: a slow store on a busy machine must not
    # eat into what is checked here).
    frozen = SignalCache(kv_store, signal_db.repository, replay_speed=6000, clock=lambda: now)
    assert frozen.ttl_seconds(stored) == pytest.approx(0.6, abs=0.05)
    await cache.put(stored)
    # Another replica stores the next candle's signal; this cache is not told.
    newest = await signal_db.repository.store(dataclasses.replace(newer, created_at=now))
    assert await cache.latest(*H1) == stored
    await asyncio.sleep(0.7)
    assert await cache.latest(*H1) == newest


async def test_ttl_is_the_time_to_the_next_close(hours, tmp_path) -> None:
    signal = await SignalEngine(make_settings(tmp_path), None).evaluate(closed(hours, 4500))
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

"""Stored candles on both backends (SQLite embedded; PostgreSQL + Redis): upsert
idempotence, the latest bars, the cache in front of the database, and a dead Redis."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import redis.asyncio as aioredis
from sqlalchemy import delete, func, select

from common.kv import RedisStore, fail_fast_options
from common.market import Timeframe
from signal_svc.market import CandleRecorder, CandleStore, ReplayFeed
from signal_svc.models import CandleRow
from signal_svc.ports import CandleClosed
from tests.infra import free_port

EURUSD = "EUR/USD"
H1, H4 = Timeframe.H1, Timeframe.H4


async def _count(sessions, timeframe: Timeframe | None = None) -> int:
    query = select(func.count()).select_from(CandleRow)
    if timeframe is not None:
        query = query.where(CandleRow.timeframe == timeframe.value)
    async with sessions() as session:
        return int(await session.scalar(query))


async def test_upsert_is_idempotent_and_updates_in_place(sessions, cache, bundled):
    store = CandleStore(sessions, cache)
    hours = bundled.series[(EURUSD, H1)].slice(0, 250)
    assert await store.upsert(hours, "replay") == 250
    assert await store.upsert(hours, "replay") == 250  # the same bars again: no new rows
    assert await store.upsert(hours.slice(200, 250), "replay") == 50
    assert await _count(sessions) == 250

    # A bar written again with other values (e.g. a provider's revision) is replaced.
    revised = dataclasses.replace(hours.slice(249, 250), close=np.array([hours.high[249]]))
    await store.upsert(revised, "csv")
    assert await _count(sessions) == 250
    latest = await store.latest(EURUSD, H1, 3)
    np.testing.assert_array_equal(latest.candles.times, hours.times[247:250])
    np.testing.assert_array_equal(latest.candles.close, [*hours.close[247:249], hours.high[249]])
    assert latest.source == "csv"


async def test_latest_reads_the_real_bars_back_exactly(sessions, cache, bundled):
    store = CandleStore(sessions, cache)
    fours = bundled.series[(EURUSD, H4)].slice(100, 400)
    await store.upsert(fours, "replay")
    for reader in (store, CandleStore(sessions, cache)):  # cached, and fresh from the DB
        got = await reader.latest(EURUSD, H4, 120)
        assert len(got) == 120 and got.source == "replay"
        for column in ("times", "open", "high", "low", "close", "volume"):
            np.testing.assert_array_equal(
                getattr(got.candles, column), getattr(fours, column)[-120:]
            )
    assert len(await store.latest(EURUSD, H1, 10)) == 0  # another series
    assert (await store.latest(EURUSD, H1, 10)).source is None


async def test_latest_never_returns_a_bar_closed_after_closed_by(sessions, cache, bundled):
    store = CandleStore(sessions, cache)
    hours = bundled.series[(EURUSD, H1)].slice(0, 100)
    await store.upsert(hours, "replay")
    market_time = hours.times[59] + 3600  # bar 59 has just closed, bar 60 is forming
    for reader in (store, CandleStore(sessions, cache, cache_bars=10)):
        got = await reader.latest(EURUSD, H1, 20, closed_by=market_time)
        np.testing.assert_array_equal(got.candles.times, hours.times[40:60])
    got = await store.latest(EURUSD, H1, 20, closed_by=market_time - 1)
    assert got.candles.times[-1] == hours.times[58]


async def test_reads_come_from_the_cache_until_the_next_write(
    sessions, cache, cache_prefix, signal_db, bundled
):
    """After a write, the cache holds the series: reads are served without the database
    (proved by emptying the table behind the cache's back); the next write refreshes it."""
    settings, _ = signal_db
    store = CandleStore(sessions, cache)
    hours = bundled.series[(EURUSD, H1)]
    await store.upsert(hours.slice(0, 200), "replay")

    if settings.storage.redis_url:  # really in Redis, as JSON, under the configured prefix
        client = aioredis.Redis.from_url(settings.storage.redis_url)
        keys = [k async for k in client.scan_iter(match=f"{cache_prefix}*")]
        cached = json.loads(await client.get(keys[0]))
        await client.aclose()
        assert keys == [f"{cache_prefix}market:candles:EUR/USD:1h".encode()]
        assert len(cached["bars"]) == 200 and cached["source"] == "replay"

    async with sessions() as session:
        await session.execute(delete(CandleRow))
        await session.commit()
    hit = await store.latest(EURUSD, H1, 50)
    assert hit.from_cache and len(hit) == 50
    np.testing.assert_array_equal(hit.candles.close, hours.close[150:200])

    await store.upsert(hours.slice(200, 210), "replay")  # refreshed from the database
    after = await store.latest(EURUSD, H1, 50)
    np.testing.assert_array_equal(after.candles.times, hours.times[200:210])


async def test_a_dead_redis_costs_only_the_cache(sessions, bundled):
    """Nothing listens on the Redis port: writes and reads still work (database and the
    in-process fallback), quickly."""
    client = aioredis.Redis(host="127.0.0.1", port=free_port(), **fail_fast_options())
    store = CandleStore(sessions, RedisStore(client, "dead:"))
    hours = bundled.series[(EURUSD, H1)].slice(0, 120)
    await store.upsert(hours, "replay")
    got = await store.latest(EURUSD, H1, 100)
    np.testing.assert_array_equal(got.candles.times, hours.times[20:120])
    fresh = CandleStore(
        sessions,
        RedisStore(
            aioredis.Redis(host="127.0.0.1", port=free_port(), **fail_fast_options()), "dead:"
        ),
    )
    got = await fresh.latest(EURUSD, H1, 100)  # nothing cached anywhere: the database
    np.testing.assert_array_equal(got.candles.close, hours.close[20:120])
    await store.close()
    await fresh.close()


async def test_recorder_stores_each_close_of_the_replay(sessions, cache, bundled, stepped):
    store = CandleStore(sessions, cache)
    recorder = CandleRecorder(store)
    feed = ReplayFeed(bundled.series, speed=3600, monotonic=stepped)
    hours = bundled.series[(EURUSD, H1)]
    stepped.advance((hours.times[309] + 3600 - feed.start) / 3600)  # ten more hours close
    closes = feed.closes()
    async for event in closes:
        assert isinstance(event, CandleClosed)
        await recorder.record(event)
        if event.timeframe == H1 and event.candles.times[-1] == hours.times[309]:
            break
    await closes.aclose()
    stored = await store.latest(EURUSD, H1, 1000)
    np.testing.assert_array_equal(stored.candles.times, hours.times[300:310])
    np.testing.assert_array_equal(stored.candles.close, hours.close[300:310])
    assert await _count(sessions, H4) >= 1

"""The key-value store: expiry in process, and Redis failures degrading, not failing."""

import redis.asyncio as aioredis

from common.kv import MemoryStore, RedisStore, fail_fast_options
from tests.infra import SteppedClock, free_port


async def test_memory_store_expires_keys():
    clock = SteppedClock()
    store = MemoryStore(monotonic=clock)
    await store.set("k", "v", ttl_seconds=0.05)
    assert await store.get("k") == "v"
    clock.advance(0.049)
    assert await store.get("k") == "v"
    clock.advance(0.001)
    assert await store.get("k") is None


async def test_memory_store_evicts_expired_keys_when_full():
    clock = SteppedClock()
    store = MemoryStore(max_keys=2, monotonic=clock)
    await store.set("a", "1", 0.01)
    await store.set("b", "1", 0.01)
    clock.advance(0.02)
    await store.set("c", "1", 10)
    assert len(store) == 1


async def test_dead_redis_degrades_to_the_process_store():
    """Nothing listens on the port: writes and reads still work, from this process."""
    client = aioredis.Redis(host="127.0.0.1", port=free_port(), **fail_fast_options())
    store = RedisStore(client, "test:")
    await store.set("revoked", "1", 60)
    assert await store.get("revoked") == "1"
    assert await store.get("never-set") is None
    await store.close()


def test_importing_the_store_does_not_import_redis():
    """A process without Redis configured does not pay for the redis package (~5 MB
    resident); it is imported when a Redis client is made, or REDIS_ERRORS asked for."""
    import subprocess
    import sys

    from common.settings import REPO_ROOT

    check = (
        "import sys, common.kv as kv; assert 'redis' not in sys.modules; "
        "kv.MemoryStore(); assert 'redis' not in sys.modules; "
        "from common.kv import REDIS_ERRORS; assert 'redis' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", check], cwd=REPO_ROOT, check=True)

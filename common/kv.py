"""A small key-value store with expiry: Redis when configured, in-process otherwise.

Used for token revocation (and, later, caches). Losing Redis degrades instead of
failing: a Redis error is logged and the call falls back to the in-process store, so a
Redis outage never takes a service down.

The redis package is imported only where a Redis is used (a client is created, or
`REDIS_ERRORS` is asked for): it costs a process ~5 MB resident, for nothing when no
Redis is configured.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import structlog

from common.settings import StorageSettings

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    # What a failing Redis raises: redis's errors and the socket's (see __getattr__).
    REDIS_ERRORS: tuple[type[BaseException], ...]

log = structlog.get_logger(__name__)


class KeyValueStore(Protocol):
    async def set(self, key: str, value: str, ttl_seconds: float) -> None: ...

    async def get(self, key: str) -> str | None: ...

    async def close(self) -> None: ...


class MemoryStore:
    """Process-local store; expired keys are dropped when read or when the store grows.
    `monotonic` is its clock (tests step it instead of waiting)."""

    def __init__(
        self, max_keys: int = 100_000, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._data: dict[str, tuple[str, float]] = {}
        self._max_keys = max_keys
        self._monotonic = monotonic

    async def set(self, key: str, value: str, ttl_seconds: float) -> None:
        if len(self._data) >= self._max_keys:
            self._evict_expired()
        self._data[key] = (value, self._monotonic() + ttl_seconds)

    async def get(self, key: str) -> str | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        value, expires = entry
        if expires <= self._monotonic():
            del self._data[key]
            return None
        return value

    async def close(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        """Keys held, expired ones not yet dropped included."""
        return len(self._data)

    def _evict_expired(self) -> None:
        now = self._monotonic()
        for key in [k for k, (_, exp) in self._data.items() if exp <= now]:
            del self._data[key]


def redis_errors() -> tuple[type[BaseException], ...]:
    """What a failing Redis raises: redis's errors and the socket's (imports redis)."""
    from redis.exceptions import RedisError

    return (RedisError, OSError)


def __getattr__(name: str) -> tuple[type[BaseException], ...]:
    """`REDIS_ERRORS`, built on first access (PEP 562) so that importing this module does
    not import redis. Code that only needs it once a Redis client exists should read it
    then (`kv.REDIS_ERRORS`, or `redis_errors()`), not at import time."""
    if name == "REDIS_ERRORS":
        return redis_errors()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Cooldown:
    """After a Redis failure, skip Redis for a while instead of paying its timeout on
    every call; try again when the cooldown has passed."""

    def __init__(
        self, seconds: float = 5.0, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._seconds = seconds
        self._monotonic = monotonic
        self._until = 0.0

    @property
    def active(self) -> bool:
        return self._monotonic() < self._until

    def trip(self, op: str, error: BaseException) -> None:
        log.warning("redis unavailable, working in process", op=op, error=str(error))
        self._until = self._monotonic() + self._seconds


class RedisStore:
    """Redis under a key prefix, falling back to a MemoryStore while Redis fails."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._fallback = MemoryStore()
        self._cooldown = Cooldown()
        self._errors = redis_errors()

    async def set(self, key: str, value: str, ttl_seconds: float) -> None:
        await self._fallback.set(key, value, ttl_seconds)
        if self._cooldown.active:
            return
        try:
            await self._client.set(self._prefix + key, value, px=max(1, int(ttl_seconds * 1000)))
        except self._errors as exc:
            self._cooldown.trip("set", exc)

    async def get(self, key: str) -> str | None:
        if not self._cooldown.active:
            try:
                value = await self._client.get(self._prefix + key)
            except self._errors as exc:
                self._cooldown.trip("get", exc)
            else:
                return value.decode() if isinstance(value, bytes) else value
        return await self._fallback.get(key)

    async def close(self) -> None:
        await self._client.aclose()


def fail_fast_options() -> dict[str, object]:
    """Client options for a Redis that is only ever an accelerator: short timeouts and
    no retries, so a dead Redis costs one short timeout, not seconds of backoff."""
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return {
        "socket_connect_timeout": 0.5,
        "socket_timeout": 0.5,
        "retry": Retry(NoBackoff(), retries=0),
    }


def redis_client(storage: StorageSettings) -> aioredis.Redis | None:
    """A fail-fast Redis client, or None when no Redis is configured."""
    if not storage.redis_url:
        return None
    import redis.asyncio as aioredis

    return aioredis.Redis.from_url(storage.redis_url, **fail_fast_options())  # type: ignore[arg-type]


def create_store(storage: StorageSettings, prefix: str | None = None) -> KeyValueStore:
    """Redis under `prefix` (default storage.redis_prefix), or in process."""
    client = redis_client(storage)
    if client is None:
        return MemoryStore()
    return RedisStore(client, storage.redis_prefix if prefix is None else prefix)

"""Rate limits on failures, with `limits`: failed logins per identifier and per client
address, failed Discord link codes per Discord user; and on registrations (every
attempt, not only failures) per client address.

Only failures count, so a user who types their password right is never slowed by
someone else hammering their name from elsewhere more than the per-identifier limit.
Counters live in Redis when configured (shared by every replica), in process otherwise;
if Redis fails mid-flight the limiter falls back to its in-process counters rather than
letting logins through unlimited or failing them.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from common.errors import RateLimited
from common.kv import Cooldown, fail_fast_options, redis_errors
from common.settings import LoginSettings, StorageSettings

T = TypeVar("T")


class FailureLimiter:
    """Moving-window limits on failures, one bucket per named key (`limits`: bucket name
    → "5/5minutes"); `what` names the failures in the refusal ("failed logins")."""

    def __init__(
        self, limits: dict[str, str], what: str, storage: StorageSettings, key_prefix: str
    ) -> None:
        self._limits = {name: parse(text) for name, text in limits.items()}
        self._what = what
        self._memory = MovingWindowRateLimiter(MemoryStorage())
        self._storage: Storage | None = None
        self._shared: MovingWindowRateLimiter | None = None
        self._cooldown = Cooldown()
        # What a failing shared store raises; redis's errors are read (importing redis)
        # only when a Redis is configured.
        self._errors: tuple[type[BaseException], ...] = (StorageError,)
        if storage.redis_url:
            self._errors = (StorageError, *redis_errors())
            self._storage = RedisStorage(
                "async+" + storage.redis_url,
                implementation="redispy",
                key_prefix=f"{storage.redis_prefix}{key_prefix}",
                wrap_exceptions=True,
                # limits types **options as scalars, but forwards them to redis-py's
                # client, which takes the Retry object among them.
                **fail_fast_options(),  # type: ignore[arg-type]
            )
            self._shared = MovingWindowRateLimiter(self._storage)

    def _buckets(self, keys: dict[str, str]) -> list[tuple[RateLimitItem, str]]:
        return [(self._limits[name], f"{name}:{value}") for name, value in keys.items()]

    async def check(self, **keys: str) -> None:
        """Raise RateLimited (with the wait) when any bucket is exhausted."""
        for item, key in self._buckets(keys):
            if not await self._test(item, key):
                wait = max(1.0, await self._reset_time(item, key) - time.time())
                raise RateLimited(
                    f"too many {self._what}; try again in {int(wait + 0.999)} s",
                    retry_after_seconds=wait,
                )

    async def record_failure(self, **keys: str) -> None:
        for item, key in self._buckets(keys):
            await self._hit(item, key)

    async def _test(self, item: RateLimitItem, key: str) -> bool:
        return await self._with_fallback(lambda limiter: limiter.test(item, key))

    async def _reset_time(self, item: RateLimitItem, key: str) -> float:
        stats = await self._with_fallback(lambda limiter: limiter.get_window_stats(item, key))
        return float(stats.reset_time)

    async def _hit(self, item: RateLimitItem, key: str) -> bool:
        return await self._with_fallback(lambda limiter: limiter.hit(item, key))

    async def _with_fallback(self, op: Callable[[MovingWindowRateLimiter], Awaitable[T]]) -> T:
        if self._shared is not None and not self._cooldown.active:
            try:
                return await op(self._shared)
            except self._errors as exc:
                self._cooldown.trip("rate limit", exc)
        return await op(self._memory)


class LoginLimiter:
    """Failed logins, per identifier and per client address; registration attempts per
    client address."""

    def __init__(self, logins: LoginSettings, storage: StorageSettings) -> None:
        self._limiter = FailureLimiter(
            {
                "id": logins.login_failure_limit_per_identifier,
                "ip": logins.login_failure_limit_per_address,
            },
            "failed logins",
            storage,
            "login",
        )
        self._registrations = FailureLimiter(
            {"ip": logins.registration_limit_per_address},
            "registrations from this address",
            storage,
            "register",
        )

    async def admit_registration(self, address: str) -> None:
        """Count one registration attempt from `address`, or raise RateLimited (with
        the wait) when the address has used up its allowance."""
        await self._registrations.check(ip=address)
        await self._registrations.record_failure(ip=address)

    async def check(self, identifier: str, address: str) -> None:
        await self._limiter.check(id=identifier, ip=address)

    async def record_failure(self, identifier: str, address: str) -> None:
        await self._limiter.record_failure(id=identifier, ip=address)

"""Revoked access tokens (by `jti`), kept until the token would have expired anyway.

auth_svc adds to it at logout; every service's verifier consults it. With Redis the
list is shared by all services and replicas; without Redis it is per process, so only
the process that handled the logout knows (documented in the README).

Every authenticated RPC asks "is this token revoked?", so a "no" is remembered for one
second per token: a busy client costs Redis one lookup a second instead of one per
call, and a logout handled by another replica takes effect within that second (at
once in the process that handled it).

A process also never forgets a revocation it made itself: it keeps its own copy, so a
logout handled while Redis was down (written only in process) still holds after Redis
returns empty or restarted, instead of the token being accepted again.
"""

from __future__ import annotations

from cachetools import TTLCache

from common.kv import KeyValueStore, MemoryStore

PREFIX = "revoked-jti:"
NOT_REVOKED_MEMORY_SECONDS = 1.0


class RevocationList:
    """Build it over the store under `storage.effective_revocation_prefix`
    (`create_store(storage, storage.effective_revocation_prefix)`), so every service
    reads the same keys auth_svc writes."""

    def __init__(self, store: KeyValueStore) -> None:
        self._store = store
        self._own = MemoryStore()  # revoked here, whatever the shared store forgets
        self._known_live: TTLCache[str, bool] = TTLCache(
            maxsize=50_000, ttl=NOT_REVOKED_MEMORY_SECONDS
        )

    async def revoke(self, token_id: str, ttl_seconds: float) -> None:
        self._known_live.pop(token_id, None)
        await self._own.set(token_id, "1", max(1.0, ttl_seconds))
        await self._store.set(PREFIX + token_id, "1", max(1.0, ttl_seconds))

    async def is_revoked(self, token_id: str) -> bool:
        if token_id in self._known_live:
            return False
        if await self._own.get(token_id) is not None:
            return True
        revoked = await self._store.get(PREFIX + token_id) is not None
        if not revoked:
            self._known_live[token_id] = True
        return revoked

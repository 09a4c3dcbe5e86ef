"""Per-user caps on concurrent long-lived things (gRPC/SSE streams, Socket.IO sockets),
so one account cannot pin a process's memory and fan-out with thousands of them.

Counted per process: with N replicas behind Envoy a user may hold up to N times the limit.
That bound is what protects each process, needs no shared store on every connect and
disconnect, and cannot leak slots when a replica dies (a count in Redis would, until
it expired). Plain Python: no gRPC, no web framework.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from common.errors import RateLimited

# What a refused client is told to wait before trying again: a slot frees the moment
# one of the user's streams or sockets closes, so this only paces reconnect loops.
RETRY_AFTER_SECONDS = 5.0


class UserSlots:
    """At most `limit` concurrent `what` (e.g. "streams") per user id; `limit` None
    counts without capping (in-process tests and benchmarks)."""

    def __init__(self, limit: int | None, what: str) -> None:
        if limit is not None and limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._what = what
        self._held: dict[str, int] = {}

    def held(self, user_id: str) -> int:
        return self._held.get(user_id, 0)

    def acquire(self, user_id: str) -> None:
        """Take a slot, or raise RateLimited (RESOURCE_EXHAUSTED, 429) naming the cap."""
        held = self.held(user_id)
        if self.limit is not None and held >= self.limit:
            raise RateLimited(
                f"too many open {self._what} for this user (the limit is {self.limit}); "
                f"close one first",
                retry_after_seconds=RETRY_AFTER_SECONDS,
            )
        self._held[user_id] = held + 1

    def release(self, user_id: str) -> None:
        held = self.held(user_id) - 1
        if held > 0:
            self._held[user_id] = held
        else:
            self._held.pop(user_id, None)

    @contextmanager
    def hold(self, user_id: str | None) -> Iterator[None]:
        """A slot for the duration of the block (a stream's life), freed however it
        ends: completed, failed or cancelled by a client that went away. `user_id`
        None (a service caller) is not counted: services are not capped."""
        if user_id is None:
            yield
            return
        self.acquire(user_id)
        try:
            yield
        finally:
            self.release(user_id)

"""Following a resumable stream forever: what the notifier (into its ledger) and the
edge (into its Socket.IO rooms) both do with the signal and position-event streams.

Each (re)connection resumes after the cursor its owner reports (the last item it has
handled), so a broken stream or a restart neither skips nor repeats an item; a
dependency that is down is retried with growing backoff, never given up on; and a
failure in handling (a database, say) is logged and the stream followed again — a
follower that ended would leave its process up but deaf until restarted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import structlog

from common.errors import DomainError

log = structlog.get_logger(__name__)

RECONNECT_BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0)

Item = TypeVar("Item")

# Every item of a stream after the given cursor (replayed, then live).
Stream = Callable[[str | None], AsyncIterator[Item]]


async def follow(
    name: str,
    stream: Stream[Item],
    resume_after: Callable[[], Awaitable[str | None]],
    handle: Callable[[Item], Awaitable[None]],
    *,
    backoff: tuple[float, ...] = RECONNECT_BACKOFF,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Hand every item of `stream` to `handle`, in order, forever."""
    failures = 0
    while True:
        try:
            async for item in stream(await resume_after()):
                await handle(item)
                failures = 0
            log.info("stream ended; following again", stream=name)
        except DomainError as error:
            log.warning("stream failed; following again", stream=name, error=error.message)
        except Exception:  # the handler's database, say: the follower must outlive it
            log.exception("following failed; following again", stream=name)
        wait = backoff[min(failures, len(backoff) - 1)]
        failures += 1
        await sleep(wait)

"""The notifier's background loops: following a stream (signals, position events) into
the ledger, and sending what the ledger owes. Plain Python over the ports: no gRPC, no
Discord.

Following (common.following) resumes after the last item already owed (the ledger's
cursor) on every (re)connection, so a broken stream or a restart neither skips nor
repeats an item's deliveries. Sending wakes when new deliveries are owed, or every
`idle_seconds` to retry what a struggling Discord left pending. Neither loop ends on a
failure: one that ended would leave the notifier up but silent until restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import structlog

from common import following
from common.following import RECONNECT_BACKOFF, Stream
from notifier.fanout import Sender

log = structlog.get_logger(__name__)

Item = TypeVar("Item")
Item_contra = TypeVar("Item_contra", contravariant=True)


class Fanout(Protocol[Item_contra]):
    async def resume_after(self) -> str | None:
        """The cursor of the last item already owed."""
        ...

    async def owe(self, item: Item_contra) -> int:
        """Record the deliveries `item` needs; how many are new."""
        ...


async def follow(
    name: str,
    stream: Stream[Item],
    fanout: Fanout[Item],
    owed: asyncio.Event,
    *,
    backoff: tuple[float, ...] = RECONNECT_BACKOFF,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Owe every item of `stream` (signals, position events) to its recipients,
    forever (common.following); sets `owed` when there is news."""

    async def owe(item: Item) -> None:
        if await fanout.owe(item):
            owed.set()

    await following.follow(name, stream, fanout.resume_after, owe, backoff=backoff, sleep=sleep)


async def send_owed(
    sender: Sender, owed: asyncio.Event, *, idle_seconds: float = 1.0, batch: int = 100
) -> None:
    """Send pending deliveries whenever some are owed (and every `idle_seconds`), up to
    `batch` per pass. A pass that fails (the ledger's database, auth_svc) is logged and
    tried again after `idle_seconds`: what it left is still pending."""
    while True:
        owed.clear()
        try:
            while await sender.send_pending(batch):
                pass  # a pass sent something: there may be more
        except Exception:
            log.exception("sending failed; trying again")
        # asyncio.timeout, not wait_for: on 3.11 a cancellation arriving as wait_for's
        # timeout fires can be lost, and the loop would outlive its stop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(idle_seconds):
                await owed.wait()

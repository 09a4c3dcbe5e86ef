"""The notifier's two background loops: following the signal stream into the ledger, and
sending what the ledger owes. Plain Python over the ports: no gRPC, no Discord.

Following resumes after the last signal already owed (the ledger's cursor) on every
(re)connection, so a broken stream or a restart neither skips nor repeats a signal's
deliveries; a dependency that is down is retried with backoff, never given up on.
Sending wakes when new deliveries are owed, or every `idle_seconds` to retry what a
struggling Discord left pending.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

import structlog

from common.errors import DomainError
from notifier.fanout import Sender, SignalFanout
from notifier.messages import SignalView

log = structlog.get_logger(__name__)

RECONNECT_BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0)


class Signals(Protocol):
    def signals(self, resume_after_id: str | None) -> AsyncIterator[SignalView]:
        """Every signal after `resume_after_id` (replayed, then live)."""
        ...


async def follow_signals(
    stream: Signals,
    fanout: SignalFanout,
    owed: asyncio.Event,
    *,
    backoff: tuple[float, ...] = RECONNECT_BACKOFF,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Owe every signal to its recipients, forever; sets `owed` when there is news."""
    failures = 0
    while True:
        try:
            async for signal in stream.signals(await fanout.resume_after()):
                if await fanout.on_signal(signal):
                    owed.set()
                failures = 0
            log.info("signal stream ended; following again")
        except DomainError as error:
            log.warning("signal stream failed; following again", error=error.message)
        wait = backoff[min(failures, len(backoff) - 1)]
        failures += 1
        await sleep(wait)


async def send_owed(sender: Sender, owed: asyncio.Event, *, idle_seconds: float = 1.0) -> None:
    """Send pending deliveries whenever some are owed (and every `idle_seconds`)."""
    while True:
        owed.clear()
        while await sender.send_pending():
            pass  # a full pass sent something: there may be more
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(owed.wait(), idle_seconds)

"""Ending background tasks reliably."""

from __future__ import annotations

import asyncio
import contextlib

# How long a cancelled background task may take to end before it is cancelled again.
RECANCEL_SECONDS = 0.5


async def cancel_and_wait(task: asyncio.Task[None]) -> None:
    """Cancel `task` and wait until it has ended, cancelling it again while it runs on.

    One cancel is not always enough on Python 3.11: `asyncio.wait_for` returns the
    result of an operation that completed just as the cancellation arrived and drops the
    cancellation (CPython gh-86296, fixed in 3.12), and redis-py and our own stream
    readers wrap awaits in it, so a background task could miss its cancellation and
    hold shutdown forever."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=RECANCEL_SECONDS)
    with contextlib.suppress(asyncio.CancelledError):
        await task

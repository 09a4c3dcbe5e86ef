"""Stopping background tasks for sure, even when a cancellation gets lost.

One `task.cancel()` is not always enough on Python 3.11: `asyncio.wait_for` returns the
result of an operation that completed just as the cancellation arrived and drops the
cancellation (CPython gh-86296, fixed in 3.12). redis-py wraps every command in it when
a socket timeout is set (common.kv.fail_fast_options), so a task that talks to Redis
all the time (market recording, the signal scheduler, the relay listener) can swallow
its cancellation and run on; whoever awaits it after a single cancel waits forever.
`asyncio.TaskGroup` has the same weakness: it cancels its children once, then waits.

`stop_tasks` cancels again until the task ends, and is made
safe to nest: it stops several tasks at once, and when its caller is itself being
cancelled meanwhile (a task stopping its own children while its parent re-cancels it)
it still finishes stopping them before letting that cancellation through. Otherwise the
outer re-cancel would cut the inner wait short and leave a child running after its
parent had ended, e.g. still writing to Redis after the service closed its stores.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

# How long a cancelled task may take to end before it is cancelled again.
RECANCEL_SECONDS = 0.5


async def stop_tasks(*tasks: asyncio.Task[Any], recancel_seconds: float = RECANCEL_SECONDS) -> None:
    """Cancel `tasks` and return once every one has ended, cancelling again those still
    running after `recancel_seconds`.

    A task's own failure is not raised here (read it with `task.exception()`), so one
    failed task never leaves the others running. A cancellation of the caller that
    arrives meanwhile is raised once all of them have ended: a task never outlives the
    one that stops it (as with a TaskGroup)."""
    interrupted = False
    running = {task for task in tasks if not task.done()}
    while running:
        for task in running:
            task.cancel()
        try:
            await asyncio.wait(running, timeout=recancel_seconds)
        except asyncio.CancelledError:
            interrupted = True
        running = {task for task in running if not task.done()}
    for task in tasks:
        if not task.cancelled():
            task.exception()  # marks it retrieved: the caller decides what a failure means
    if interrupted:
        raise asyncio.CancelledError


async def run_together(children: dict[str, Coroutine[Any, Any, None]]) -> None:
    """Run `children` (name → coroutine) as tasks until cancelled or until one fails;
    then stop the others with `stop_tasks` and raise the first failure.

    The TaskGroup replacement for background work that may lose a cancellation: a
    TaskGroup cancels its children only once, so its shutdown could wait forever."""
    tasks = [asyncio.create_task(coroutine, name=name) for name, coroutine in children.items()]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        await stop_tasks(*tasks)
    for task in tasks:
        error = None if task.cancelled() else task.exception()
        if error is not None:
            raise error

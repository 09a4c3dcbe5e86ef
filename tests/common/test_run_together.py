"""common.shutdown.run_together: background children that end together."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from common.shutdown import run_together
from tests.infra import eventually


async def _forever(ended: list[str], name: str, started: list[str] | None = None) -> None:
    try:
        if started is not None:
            started.append(name)
        await asyncio.Event().wait()
    finally:
        ended.append(name)


async def _stubborn(ended: list[str], started: list[str] | None = None) -> None:
    """Swallows its first cancellation, as a task inside redis-py can on Python 3.11."""
    with contextlib.suppress(asyncio.CancelledError):
        if started is not None:
            started.append("stubborn")
        await asyncio.Event().wait()
    try:
        await asyncio.Event().wait()
    finally:
        ended.append("stubborn")


async def test_the_first_failure_stops_the_others_and_is_raised() -> None:
    ended: list[str] = []

    async def failing() -> None:
        await asyncio.sleep(0)
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await run_together({"a": _forever(ended, "a"), "b": failing()})
    assert ended == ["a"]


async def test_cancelling_it_stops_even_a_child_that_swallows_a_cancellation() -> None:
    ended: list[str] = []
    started: list[str] = []
    runner = asyncio.create_task(
        run_together({"a": _forever(ended, "a", started), "stubborn": _stubborn(ended, started)})
    )
    await eventually(lambda: len(started) == 2, "both children to start")
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(runner, timeout=5)
    assert sorted(ended) == ["a", "stubborn"]

"""common.shutdown.run_together: background children that end together."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from common.shutdown import run_together


async def _forever(ended: list[str], name: str) -> None:
    try:
        await asyncio.Event().wait()
    finally:
        ended.append(name)


async def _stubborn(ended: list[str]) -> None:
    """Swallows its first cancellation, as a task inside redis-py can on Python 3.11."""
    with contextlib.suppress(asyncio.CancelledError):
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
    runner = asyncio.create_task(
        run_together({"a": _forever(ended, "a"), "stubborn": _stubborn(ended)})
    )
    await asyncio.sleep(0.01)
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(runner, timeout=5)
    assert sorted(ended) == ["a", "stubborn"]

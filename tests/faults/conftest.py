"""Fixtures of the fault tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.full_stack import FullStack


@pytest.fixture
async def embedded_stack(tmp_path: Path) -> AsyncIterator[FullStack]:
    """The whole stack on the embedded defaults (SQLite, no Redis), replaying ten hour
    bars a second, started in a thread so the test's event loop keeps running."""
    full = FullStack(tmp_path / "stack", replay_speed=36_000, bcrypt_rounds=4)
    await asyncio.to_thread(full.__enter__)
    try:
        yield full
    finally:
        await asyncio.to_thread(full.__exit__, None, None, None)

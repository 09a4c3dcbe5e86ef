"""Fixtures of the fault tests: the whole stack started in a worker thread (so the
test's event loop keeps running), a fresh PostgreSQL database, a Redis key prefix."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.full_stack import FullStack
from tests.infra import (
    check_redis,
    create_postgres_database,
    delete_redis_prefix,
    drop_postgres_database,
)

# Ten hour bars a second, cheap password hashing, failed logins counted but not limited,
# a recovered model noticed within 3 s (not 30).
DEFAULTS: dict[str, object] = {
    "replay_speed": 36_000,
    "bcrypt_rounds": 4,
    "login_failure_limit_per_address": "1000/minute",
    "inference_recovery_seconds": 3,
}


@contextlib.asynccontextmanager
async def running_stack(workdir: Path, **settings: object) -> AsyncIterator[FullStack]:
    """The whole stack as `make run` starts it, with DEFAULTS and `settings`."""
    full = FullStack(workdir, **{**DEFAULTS, **settings})
    await asyncio.to_thread(full.__enter__)
    try:
        yield full
    finally:
        await asyncio.to_thread(full.__exit__, None, None, None)


@pytest.fixture
async def embedded_stack(tmp_path: Path) -> AsyncIterator[FullStack]:
    """The whole stack on the embedded defaults (SQLite, no Redis)."""
    async with running_stack(tmp_path / "stack") as full:
        yield full


@pytest.fixture
async def postgres_database() -> AsyncIterator[str]:
    """A fresh database on the shared PostgreSQL (its URL), dropped afterwards."""
    name, url = await create_postgres_database()
    try:
        yield url
    finally:
        await drop_postgres_database(name)


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of the test's own on the shared Redis, deleted afterwards."""
    await check_redis()
    prefix = f"faults-{uuid.uuid4().hex[:8]}:"
    try:
        yield prefix
    finally:
        await delete_redis_prefix(prefix)

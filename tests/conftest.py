"""Fixtures shared by every test. See tests/infra.py for the building blocks."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import structlog

from common.logging import console_renderer
from tests.infra import (
    REDIS_URL,
    AuthStack,
    auth_stack,
    check_redis,
    create_postgres_database,
    delete_redis_prefix,
    drop_postgres_database,
    make_settings,
    run_sync,
)

# structlog's default chain, with plain tracebacks (see common.logging.console_renderer).
structlog.configure(
    processors=[
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.StackInfoRenderer(),
        structlog.dev.set_exc_info,
        structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False),
        console_renderer(colors=False),
    ]
)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of our own on the local PostgreSQL for the whole session."""
    name, url = run_sync(create_postgres_database())
    yield url
    run_sync(drop_postgres_database(name))


@pytest.fixture(scope="session")
def redis_key_prefix() -> Iterator[str]:
    """A key prefix of our own on the local Redis, cleaned up after the session."""
    run_sync(check_redis())
    prefix = f"aifx-test-{uuid.uuid4().hex[:12]}:"
    yield prefix
    run_sync(delete_redis_prefix(prefix))


@pytest.fixture(scope="session", params=["embedded", "postgres+redis"])
def backend_settings(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """Settings for the embedded default (SQLite, in-process) and for real PostgreSQL +
    Redis: every test that uses them runs against both."""
    var_dir: Path = tmp_path_factory.mktemp(request.param.replace("+", "-"))
    if request.param == "embedded":
        return make_settings(var_dir)
    return make_settings(
        var_dir,
        database_url=request.getfixturevalue("postgres_url"),
        redis_url=REDIS_URL,
        redis_prefix=request.getfixturevalue("redis_key_prefix"),
    )


@pytest.fixture(scope="session")
async def auth(backend_settings) -> AsyncIterator[AuthStack]:
    """auth_svc migrated and serving in process on each backend."""
    async with auth_stack(backend_settings) as stack:
        yield stack

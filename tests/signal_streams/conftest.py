"""Fixtures of the stream tests: the real signal repository on both backends (the
embedded SQLite and our own PostgreSQL database), and a Redis key prefix of our own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import delete

from common.db import create_engine, session_factory
from common.migrations import upgrade
from common.settings import Settings
from signal_svc.models import SignalRow
from signal_svc.repository import SignalRepository
from tests.infra import (
    check_redis,
    create_postgres_database,
    delete_redis_prefix,
    drop_postgres_database,
    make_settings,
    run_sync,
)


@pytest.fixture(scope="session", params=["embedded", "postgres"])
def stream_db_settings(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Settings]:
    var_dir = tmp_path_factory.mktemp("streams-" + request.param)
    if request.param == "embedded":
        settings = make_settings(var_dir)
        upgrade("signal_svc", settings)
        yield settings
        return
    name, url = run_sync(create_postgres_database())
    settings = make_settings(var_dir, database_url=url)
    upgrade("signal_svc", settings)
    yield settings
    run_sync(drop_postgres_database(name))


@pytest.fixture(scope="session")
async def stream_repository_session(
    stream_db_settings: Settings,
) -> AsyncIterator[tuple[SignalRepository, object]]:
    engine = create_engine(stream_db_settings)
    sessions = session_factory(engine)
    yield SignalRepository(sessions), sessions
    await engine.dispose()


@pytest.fixture
async def repository(stream_repository_session) -> SignalRepository:
    """The real signal repository, emptied, on SQLite and on PostgreSQL."""
    repo, sessions = stream_repository_session
    async with sessions() as session, session.begin():
        await session.execute(delete(SignalRow))
    return repo


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix (hence channel) of our own on the local Redis."""
    run_sync(check_redis())
    prefix = f"aifx-test-streams-{uuid.uuid4().hex[:10]}:"
    yield prefix
    run_sync(delete_redis_prefix(prefix))

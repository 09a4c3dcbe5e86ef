"""Fixtures of the market-data tests: the real bundled history, a clock tests can step,
migrated signal_svc databases on both backends, and a private candle cache."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import delete

from common.db import create_engine, session_factory
from common.kv import create_store
from common.migrations import upgrade
from signal_svc.market import OfflineHistory, bundled_history
from signal_svc.models import CandleRow
from tests.infra import SteppedClock


@pytest.fixture(scope="session")
def bundled() -> OfflineHistory:
    return bundled_history()


@pytest.fixture
def stepped() -> SteppedClock:
    return SteppedClock()


@pytest.fixture(scope="session")
async def signal_db(backend_settings):
    """signal_svc's tables migrated on each backend: (settings, session factory)."""
    await asyncio.to_thread(upgrade, "signal_svc", backend_settings)
    engine = create_engine(backend_settings)
    yield backend_settings, session_factory(engine)
    await engine.dispose()


@pytest.fixture
async def sessions(signal_db):
    """A session factory on a signal_candles table emptied for this test."""
    _, factory = signal_db
    async with factory() as session:
        await session.execute(delete(CandleRow))
        await session.commit()
    return factory


@pytest.fixture
def cache_prefix(signal_db) -> str:
    """A Redis key prefix of this test's own (inside the session's, cleaned up with it)."""
    settings, _ = signal_db
    return f"{settings.storage.redis_prefix}{uuid.uuid4().hex[:8]}:"


@pytest.fixture
async def cache(signal_db, cache_prefix):
    """The backend's cache (Redis or in process) under the test's own key prefix."""
    settings, _ = signal_db
    own = settings.replace(**{"redis_prefix": cache_prefix})
    store = create_store(own.storage)
    yield store
    await store.close()

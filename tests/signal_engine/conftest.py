"""Fixtures of the signal engine tests: the real inference stack (model server +
inference service in process, shared with tests/inference), the real bundled EUR/USD
history, and signal_svc's tables on both backends (our own PostgreSQL database and Redis
prefix, so other suites' rows never mix with ours)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from common.candles import Candles
from common.db import create_engine, session_factory
from common.kv import KeyValueStore, create_store
from common.market import Timeframe
from common.market_data import load_bundled_history
from common.migrations import upgrade
from common.settings import Settings
from signal_svc.inference_client import InferenceClient
from signal_svc.models import SignalRow
from signal_svc.repository import SignalRepository
from tests.inference.conftest import (  # noqa: F401 (fixtures)
    InferenceStack,
    inference,
    model_config_file,
    model_server,
    served_version_dir,
)
from tests.infra import (
    REDIS_URL,
    check_redis,
    create_postgres_database,
    delete_redis_prefix,
    drop_postgres_database,
    make_settings,
    run_sync,
)


@pytest.fixture(scope="session")
def hours() -> Candles:
    """The real bundled EUR/USD hours (5,000 bars)."""
    return load_bundled_history("EUR/USD", Timeframe.H1)


@pytest.fixture(scope="session")
def four_hours() -> Candles:
    """The same history aggregated to 4h bars (a series the model does not cover)."""
    return load_bundled_history("EUR/USD", Timeframe.H4)


def inference_client(stack: InferenceStack, **options: object) -> InferenceClient:
    return InferenceClient(
        f"127.0.0.1:{stack.server.port}",
        stack.credential[0][1],
        options.pop("timeout_seconds", 5.0),  # type: ignore[arg-type]
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="session", params=["embedded", "postgres+redis"])
def signal_settings(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Settings]:
    var_dir = tmp_path_factory.mktemp("signal-" + request.param.replace("+", "-"))
    if request.param == "embedded":
        settings = make_settings(var_dir)
        upgrade("signal_svc", settings)
        yield settings
        return
    run_sync(check_redis())
    name, url = run_sync(create_postgres_database())
    prefix = f"aifx-test-signal-{uuid.uuid4().hex[:10]}:"
    settings = make_settings(var_dir, database_url=url, redis_url=REDIS_URL, redis_prefix=prefix)
    upgrade("signal_svc", settings)
    yield settings
    run_sync(delete_redis_prefix(prefix))
    run_sync(drop_postgres_database(name))


@dataclass
class SignalDb:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    repository: SignalRepository

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    async def clear(self) -> None:
        async with self.sessions() as session, session.begin():
            await session.execute(delete(SignalRow))


@pytest.fixture(scope="session")
async def signal_db_session(signal_settings: Settings) -> AsyncIterator[SignalDb]:
    engine = create_engine(signal_settings)
    sessions = session_factory(engine)
    yield SignalDb(signal_settings, engine, sessions, SignalRepository(sessions))
    await engine.dispose()


@pytest.fixture
async def signal_db(signal_db_session: SignalDb) -> SignalDb:
    """signal_svc's tables, emptied, on each backend."""
    await signal_db_session.clear()
    return signal_db_session


@pytest.fixture
async def kv_store(signal_settings: Settings) -> AsyncIterator[KeyValueStore]:
    """The key-value store of the backend (Redis under our prefix, or in process)."""
    store = create_store(signal_settings.storage)
    yield store
    await store.close()
    if signal_settings.storage.redis_url:
        await delete_redis_prefix(signal_settings.storage.redis_prefix)

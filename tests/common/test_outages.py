"""Which failures are outages (UNAVAILABLE, retried) and which are bugs (INTERNAL): real
errors from asyncpg through SQLAlchemy against the local PostgreSQL and a closed port."""

from __future__ import annotations

import asyncpg
import grpc
import pytest
from google.rpc import error_details_pb2
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from common.db import create_engine
from common.grpc_errors import to_status
from common.outages import as_unavailable
from tests.common.test_grpc_errors import details
from tests.infra import free_port, make_settings


async def raised(coro) -> BaseException:
    try:
        await coro
    except Exception as exc:
        return exc
    raise AssertionError("expected an error")


async def run(engine, *statements: str) -> None:
    async with engine.connect() as connection:
        for sql in statements:
            await connection.execute(text(sql))


async def test_a_refused_connection_is_an_outage(tmp_path) -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/postgres"
    engine = create_engine(make_settings(tmp_path), url)
    try:
        error = await raised(run(engine, "SELECT 1"))
    finally:
        await engine.dispose()
    assert isinstance(error, ConnectionRefusedError)  # asyncpg's, not wrapped by SQLAlchemy
    unavailable = as_unavailable(error)
    assert unavailable is not None and unavailable.reason == "DEPENDENCY_UNAVAILABLE"


async def test_a_statement_timeout_is_an_outage(tmp_path, postgres_url) -> None:
    """A statement waiting on a lock the test holds is cancelled at the timeout."""
    settings = make_settings(tmp_path, database_statement_timeout_seconds=0.2)
    engine = create_engine(settings, postgres_url)
    holder = create_async_engine(postgres_url)
    try:
        async with holder.begin() as locked:
            await locked.execute(text("CREATE TABLE outage_lock (id int)"))
        async with holder.connect() as locked:
            await locked.execute(text("LOCK TABLE outage_lock IN ACCESS EXCLUSIVE MODE"))
            error = await raised(run(engine, "SELECT * FROM outage_lock"))
            await locked.rollback()
        async with holder.begin() as cleanup:
            await cleanup.execute(text("DROP TABLE outage_lock"))
    finally:
        await engine.dispose()
        await holder.dispose()
    unavailable = as_unavailable(error)
    assert unavailable is not None and unavailable.reason == "DATABASE_UNAVAILABLE"


async def test_a_saturated_pool_is_busy(tmp_path, postgres_url) -> None:
    """Every pooled connection checked out (1 + 1 overflow): the next request waits the
    pool timeout, then is refused."""
    settings = make_settings(tmp_path, database_pool_size=1, database_pool_timeout_seconds=0.2)
    engine = create_engine(settings, postgres_url)
    try:
        async with engine.connect() as first, engine.connect() as second:
            await first.execute(text("SELECT 1"))
            await second.execute(text("SELECT 1"))
            error = await raised(run(engine, "SELECT 1"))
    finally:
        await engine.dispose()
    unavailable = as_unavailable(error)
    assert unavailable is not None and unavailable.reason == "DATABASE_BUSY"


async def test_a_constraint_violation_is_a_bug(postgres_url) -> None:
    engine = create_async_engine(postgres_url)
    try:
        error = await raised(
            run(engine, "CREATE TEMP TABLE t (id int PRIMARY KEY)", "INSERT INTO t VALUES (1), (1)")
        )
    finally:
        await engine.dispose()
    assert isinstance(error, IntegrityError)
    assert as_unavailable(error) is None


@pytest.mark.parametrize("error", [ValueError("bad"), KeyError("k"), RuntimeError("x")])
def test_plain_bugs_stay_bugs(error) -> None:
    assert as_unavailable(error) is None


def test_an_outage_answers_unavailable_with_a_retry_delay() -> None:
    unavailable = as_unavailable(TimeoutError("connect timed out"))
    assert unavailable is not None
    status = to_status(unavailable)
    assert status.code == grpc.StatusCode.UNAVAILABLE
    retry = error_details_pb2.RetryInfo()
    assert any(d.Unpack(retry) for d in details(status).details)
    assert retry.retry_delay.ToMilliseconds() == 1000


def test_a_server_shutting_down_refusing_a_new_connection_is_an_outage() -> None:
    # asyncpg raises its own error, not wrapped by SQLAlchemy, when the server answers a
    # new connection with 57P03 (a restart caught it: the signal of that candle was lost).
    refused = asyncpg.exceptions.CannotConnectNowError("the database system is shutting down")
    unavailable = as_unavailable(refused)
    assert unavailable is not None and unavailable.reason == "DATABASE_UNAVAILABLE"
    assert as_unavailable(asyncpg.exceptions.UniqueViolationError("duplicate key")) is None

"""The SQLAlchemy 2 async engine and sessions: PostgreSQL through asyncpg in production,
SQLite through aiosqlite as the embedded default."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import Engine, event, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from common.settings import Settings
from common.tracing import traced


def create_engine(
    settings: Settings, url: str | None = None, *, serving: bool = True
) -> AsyncEngine:
    """An engine for `url` (default: the configured database). SQLite gets WAL and
    enforced foreign keys; PostgreSQL a pool sized by settings and, when `serving`
    requests (not migrating), the timeouts that make an outage or a saturated pool a
    quick UNAVAILABLE instead of a request hanging (common.outages)."""
    url = url or settings.database_url
    if url.startswith("sqlite"):
        settings.general.ensure_var_dir()
        engine = create_async_engine(url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return traced(engine)
    storage = settings.storage
    connect_args: dict[str, Any] = {"timeout": storage.database_connect_timeout_seconds}
    pool_timeout = 30.0
    if serving:
        statement_ms = round(storage.database_statement_timeout_seconds * 1000)
        connect_args["server_settings"] = {"statement_timeout": str(statement_ms)}
        pool_timeout = storage.database_pool_timeout_seconds
    return traced(
        create_async_engine(
            url,
            pool_size=storage.database_pool_size,
            max_overflow=storage.database_pool_size,
            pool_pre_ping=True,
            pool_timeout=pool_timeout,
            connect_args=connect_args,
        )
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit (no lazy reloads in async)."""
    return async_sessionmaker(engine, expire_on_commit=False)


# One write turn per SQLite database file and process (see write_transaction).
_SQLITE_WRITERS: weakref.WeakKeyDictionary[Engine, asyncio.Lock] = weakref.WeakKeyDictionary()


@contextlib.asynccontextmanager
async def write_transaction(
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """A session in a transaction that writes. SQLite has one writer at a time, and a
    connection that finds the database locked waits in SQLite's busy handler, which naps
    up to 100 ms between tries: with a few concurrent writers some waited seconds. So on
    SQLite the write transactions of this process take turns on one lock per engine
    instead; PostgreSQL needs no turn."""
    async with contextlib.AsyncExitStack() as stack:
        bind = sessions.kw.get("bind")
        if bind is not None and bind.dialect.name == "sqlite":
            lock = _SQLITE_WRITERS.setdefault(bind.sync_engine, asyncio.Lock())
            await stack.enter_async_context(lock)
        session = await stack.enter_async_context(sessions())
        await stack.enter_async_context(session.begin())
        yield session


def upsert_insert(session: AsyncSession) -> Any:
    """The session's dialect's INSERT, the one with ON CONFLICT. Imported when used: the
    engine has loaded its own dialect's package already, and importing the other one
    (PostgreSQL's is ~2 MB resident) would cost memory for nothing."""
    if session.bind.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert
    from sqlalchemy.dialects import sqlite

    return sqlite.insert


async def commit_in_id_order(session: AsyncSession, lock_key: int) -> None:
    """Make this transaction's inserts commit in id order with every other transaction
    that calls this with the same key: on PostgreSQL, a transaction-scoped advisory lock
    (ids come from a sequence and could otherwise commit out of order, and a reader
    resuming "after id n" would skip one committed late); SQLite serialises writers
    anyway. Call first in the transaction."""
    if session.bind.dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key})

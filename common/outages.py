"""Which unexpected exceptions mean "a dependency is down or saturated" rather than "a
bug": the interceptor answers those UNAVAILABLE (HTTP 503, with a retry delay) instead
of INTERNAL (500), and background loops retry them instead of dropping their work.

- a connection that failed or timed out (`ConnectionError`, `TimeoutError`: raised raw
  by asyncpg while SQLAlchemy opens a connection, and by any other client), or that the
  server refused while shutting down or starting up (asyncpg's own error, also raw);
- SQLAlchemy's pool timeout: every pooled connection is busy (slow queries);
- a database error whose SQLSTATE says the connection or the server went away or the
  statement was cancelled (class 08 connection exception, 57 operator intervention —
  statement timeout, admin shutdown, "the database system is starting up" — and 53
  insufficient resources), or that SQLAlchemy flagged as a disconnect.

Anything else (an IntegrityError, a TypeError) stays a bug.
"""

from __future__ import annotations

import sys

from common.errors import Unavailable

# Seconds a client is told to wait before trying again (RetryInfo / Retry-After).
RETRY_AFTER_SECONDS = 1.0

_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "53", "57")


def as_unavailable(exc: BaseException) -> Unavailable | None:
    """The Unavailable error to answer instead of `exc`, or None when `exc` is a bug."""
    if _database_busy(exc):
        return Unavailable(
            "the database is busy; try again shortly",
            reason="DATABASE_BUSY",
            retry_after_seconds=RETRY_AFTER_SECONDS,
        )
    if _database_gone(exc):
        return Unavailable(
            "the database is unavailable; try again shortly",
            reason="DATABASE_UNAVAILABLE",
            retry_after_seconds=RETRY_AFTER_SECONDS,
        )
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return Unavailable(
            "a service AIFX depends on is unavailable; try again shortly",
            reason="DEPENDENCY_UNAVAILABLE",
            retry_after_seconds=RETRY_AFTER_SECONDS,
        )
    return None


def _database_busy(exc: BaseException) -> bool:
    # A process that never imported SQLAlchemy (inference, the model server) cannot have
    # raised its errors, and importing it just to check would cost them memory.
    sa_exc = sys.modules.get("sqlalchemy.exc")
    return sa_exc is not None and isinstance(exc, sa_exc.TimeoutError)


def _database_gone(exc: BaseException) -> bool:
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is not None and isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated or isinstance(exc, sa_exc.InterfaceError):
            return True
        sqlstate = str(getattr(exc.orig, "sqlstate", "") or "")
        return sqlstate.startswith(_UNAVAILABLE_SQLSTATE_CLASSES)
    # asyncpg's own error, raised raw while SQLAlchemy opens a connection to a server
    # that is going down or coming up ("the database system is shutting down", 57P03).
    asyncpg_exc = sys.modules.get("asyncpg.exceptions")
    if asyncpg_exc is not None and isinstance(exc, asyncpg_exc.PostgresError):
        return str(exc.sqlstate or "").startswith(_UNAVAILABLE_SQLSTATE_CLASSES)
    return False

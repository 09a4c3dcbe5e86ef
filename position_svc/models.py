"""position_svc's tables. Only position_svc reads or writes them.

Prices, lot sizes, pips and money are exact: NUMERIC on PostgreSQL, and decimal text on
SQLite (whose NUMERIC is a float and would turn 1.08345 into 1.0834499999...).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Index,
    Integer,
    Numeric,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator, TypeEngine

from position_svc.pnl import plain_decimal

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
BIG_ID = BigInteger().with_variant(Integer, "sqlite")


class ExactDecimal(TypeDecorator[Decimal]):
    """A Decimal stored exactly: NUMERIC(24, 10) on PostgreSQL, text on SQLite."""

    impl = Numeric(24, 10)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(40))
        return dialect.type_descriptor(Numeric(24, 10, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None or dialect.name != "sqlite":
            return value
        return format(value, "f")

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        # Without NUMERIC(24, 10)'s padding: 1.085 reads back as 1.085 on PostgreSQL too,
        # not 1.0850000000 (which would reach error messages and event documents).
        return None if value is None else plain_decimal(Decimal(value))


class Base(DeclarativeBase):
    pass


class PositionRow(Base):
    """A position. Closing is one conditional UPDATE ... WHERE status = 'open': whoever
    flips the status (a watcher on a tick, another replica, a manual close) is the only
    one that writes the close and its event."""

    __tablename__ = "position_positions"
    __table_args__ = (
        # NULL keys never conflict, so positions opened without a key are not deduplicated.
        UniqueConstraint("user_id", "idempotency_key", name="uq_position_idempotency"),
        Index("ix_position_user_open_time", "user_id", "open_time", "id"),
        Index("ix_position_status_pair", "status", "pair"),
        Index("ix_position_user_close_time", "user_id", "close_time"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64))
    pair: Mapped[str] = mapped_column(String(7))
    side: Mapped[str] = mapped_column(String(4))
    lot_size: Mapped[Decimal] = mapped_column(ExactDecimal())
    entry_price: Mapped[Decimal] = mapped_column(ExactDecimal())
    stop_loss: Mapped[Decimal | None] = mapped_column(ExactDecimal(), nullable=True)
    take_profit: Mapped[Decimal | None] = mapped_column(ExactDecimal(), nullable=True)
    status: Mapped[str] = mapped_column(String(6))
    signal_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    open_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    update_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    close_reason: Mapped[str | None] = mapped_column(String(20), nullable=True)
    exit_price: Mapped[Decimal | None] = mapped_column(ExactDecimal(), nullable=True)
    close_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    result: Mapped[str | None] = mapped_column(String(9), nullable=True)
    pips: Mapped[Decimal | None] = mapped_column(ExactDecimal(), nullable=True)
    realized_pnl: Mapped[Decimal | None] = mapped_column(ExactDecimal(), nullable=True)
    realized_pnl_usd: Mapped[Decimal | None] = mapped_column(ExactDecimal(), nullable=True)
    version: Mapped[int] = mapped_column(Integer)
    idempotency_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # SHA-256 of the request that created the position under idempotency_key: a retry
    # with the same key must carry the same request.
    request_fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)


class EventRow(Base):
    """A change to a position, with the position as it was right after it. Ids commit in
    increasing order (see repository), so "events after id n" never misses one."""

    __tablename__ = "position_events"
    __table_args__ = (Index("ix_position_events_user_id", "user_id", "id"),)

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(64))
    position_id: Mapped[str] = mapped_column(String(36))
    type: Mapped[str] = mapped_column(String(15))
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    position: Mapped[dict[str, Any]] = mapped_column(JSON)


class SnapshotRow(Base):
    """A monitoring snapshot of an open position, taken by the periodic sweep."""

    __tablename__ = "position_snapshots"
    __table_args__ = (
        Index("ix_position_snapshots_position", "position_id", "time"),
        Index("ix_position_snapshots_time", "time"),
    )

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True, autoincrement=True)
    position_id: Mapped[str] = mapped_column(String(36))
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    price: Mapped[Decimal] = mapped_column(ExactDecimal())
    pips: Mapped[Decimal] = mapped_column(ExactDecimal())
    unrealized_pnl: Mapped[Decimal] = mapped_column(ExactDecimal())

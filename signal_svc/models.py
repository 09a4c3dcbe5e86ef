"""signal_svc's tables. Only signal_svc reads or writes them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
BIG_ID = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    pass


class CandleRow(Base):
    """One stored bar; upserted on (pair, timeframe, open_time)."""

    __tablename__ = "signal_candles"

    pair: Mapped[str] = mapped_column(String(7), primary_key=True)
    timeframe: Mapped[str] = mapped_column(String(3), primary_key=True)
    open_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    open: Mapped[float] = mapped_column(Float)
    high: Mapped[float] = mapped_column(Float)
    low: Mapped[float] = mapped_column(Float)
    close: Mapped[float] = mapped_column(Float)
    volume: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(8))


class SignalRow(Base):
    """A signal with its full content. The unique constraint is what makes "exactly one
    signal per (pair, timeframe, candle)" hold with several schedulers running: the
    second insert for a candle is refused by the database, not by a check-then-write."""

    __tablename__ = "signal_signals"
    __table_args__ = (
        UniqueConstraint(
            "pair", "timeframe", "candle_time", "replay_lap", name="uq_signal_per_candle"
        ),
        Index("ix_signal_signals_pair_tf_id", "pair", "timeframe", "id"),
        Index("ix_signal_signals_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True, autoincrement=True)
    pair: Mapped[str] = mapped_column(String(7))
    timeframe: Mapped[str] = mapped_column(String(3))
    candle_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    action: Mapped[str] = mapped_column(String(4))
    confidence: Mapped[float] = mapped_column(Float)
    strength: Mapped[str] = mapped_column(String(12))
    entry_price: Mapped[float] = mapped_column(Float)
    stop_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    take_profit: Mapped[float | None] = mapped_column(Float, nullable=True)
    risk_reward_ratio: Mapped[float | None] = mapped_column(Float, nullable=True)
    probabilities: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    indicators: Mapped[dict[str, Any]] = mapped_column(JSON)
    source: Mapped[str] = mapped_column(String(20))
    model_name: Mapped[str] = mapped_column(String(40))
    model_version: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    replay_lap: Mapped[int] = mapped_column(Integer, default=0)


class ReplayStateRow(Base):
    """Where the offline replay is, so a restarted service continues there instead of
    starting the history over. One row per history (`history`: a fingerprint of what is
    replayed, so another history or CSV starts from its own beginning)."""

    __tablename__ = "signal_replay_state"

    history: Mapped[str] = mapped_column(String(64), primary_key=True)
    market_time: Mapped[float] = mapped_column(Float)
    lap: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

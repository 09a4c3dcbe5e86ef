"""The notifier's tables. Only the notifier reads or writes them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class CursorRow(Base):
    """Where the notifier stands in a stream it follows (the last signal or position
    event whose deliveries are recorded), so a restart resumes exactly there."""

    __tablename__ = "notifier_cursors"

    stream: Mapped[str] = mapped_column(String(32), primary_key=True)
    position: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DeliveryRow(Base):
    """One message owed to one Discord user: recorded (pending) before it is sent, marked
    sent after. `key` — kind, source id and recipient — is unique, so a signal or event
    is owed to a user at most once however often it is recorded."""

    __tablename__ = "notifier_deliveries"
    __table_args__ = (Index("ix_notifier_deliveries_pending", "status", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(160), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    source_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(36))
    # Where it goes: "dm" (discord_user_id is a user) or "channel" (a server's signal
    # channel id).
    target: Mapped[str] = mapped_column(String(8), default="dm")
    discord_user_id: Mapped[str] = mapped_column(String(32))
    # The message, as the sender renders it (an embed's fields), and whether it is sent
    # without a push notification.
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    silent: Mapped[bool] = mapped_column(Boolean)
    # pending | sent | unreachable
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Which notifier replica is sending it, and until when the claim holds: a replica
    # that dies mid-pass leaves its claims to lapse, and another sends them then.
    claimed_by: Mapped[str | None] = mapped_column(String(36), nullable=True)
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ChannelRow(Base):
    """A server's signal channel: matching signals are posted there once each. One per
    server; `pairs` empty means every pair."""

    __tablename__ = "notifier_channels"

    guild_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(32))
    pairs: Mapped[list[str]] = mapped_column(JSON)
    min_confidence: Mapped[float] = mapped_column(Float)
    set_by: Mapped[str] = mapped_column(String(32))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

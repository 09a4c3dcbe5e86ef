"""auth_svc's tables. Only auth_svc reads or writes them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class UserRow(Base):
    """An account. `email_key` / `username_key` are the lower-cased forms that carry the
    uniqueness, so `Ann@x.io` and `ann@x.io` are one account on every database."""

    __tablename__ = "auth_users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    email_key: Mapped[str] = mapped_column(String(254), unique=True)
    username: Mapped[str] = mapped_column(String(32))
    username_key: Mapped[str] = mapped_column(String(32), unique=True)
    password_hash: Mapped[str] = mapped_column(String(60))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PreferencesRow(Base):
    """A user's signal preferences; created with the user in the same transaction."""

    __tablename__ = "auth_preferences"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("auth_users.id", ondelete="CASCADE"), primary_key=True
    )
    pairs: Mapped[list[Any]] = mapped_column(JSON)
    timeframes: Mapped[list[Any]] = mapped_column(JSON)
    min_confidence: Mapped[float] = mapped_column(Float)
    notify_discord: Mapped[bool] = mapped_column(Boolean)
    notify_browser: Mapped[bool] = mapped_column(Boolean)
    # kind of Discord DM → "on" | "silent" | "off" (auth_svc.notification_modes); a
    # kind missing is on.
    discord_modes: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RefreshTokenRow(Base):
    """One refresh token, stored only as its SHA-256. Tokens rotated from one login form
    a family; reuse of a rotated token revokes the family."""

    __tablename__ = "auth_refresh_tokens"
    __table_args__ = (Index("ix_auth_refresh_tokens_family", "family_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    family_id: Mapped[str] = mapped_column(String(36))
    user_id: Mapped[str] = mapped_column(ForeignKey("auth_users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    rotated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class DiscordLinkRow(Base):
    """The Discord account linked to a user: at most one per user, and a Discord account
    links to at most one user."""

    __tablename__ = "auth_discord_links"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("auth_users.id", ondelete="CASCADE"), primary_key=True
    )
    discord_user_id: Mapped[str] = mapped_column(String(32), unique=True)
    discord_username: Mapped[str] = mapped_column(String(64))
    linked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    dm_reachable: Mapped[bool] = mapped_column(Boolean)


class DiscordLinkCodeRow(Base):
    """A link code, stored only as its SHA-256: single use, valid until `expires_at`."""

    __tablename__ = "auth_discord_link_codes"
    __table_args__ = (Index("ix_auth_discord_link_codes_user", "user_id"),)

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("auth_users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class SignalInterestRow(Base):
    """One (pair, timeframe) a user's preferences name, kept in step with
    `PreferencesRow.pairs` x `timeframes`: the index that finds a signal's recipients
    without reading every user's preferences."""

    __tablename__ = "auth_signal_interests"
    __table_args__ = (Index("ix_auth_signal_interests_series", "pair", "timeframe"),)

    user_id: Mapped[str] = mapped_column(
        ForeignKey("auth_users.id", ondelete="CASCADE"), primary_key=True
    )
    pair: Mapped[str] = mapped_column(String(7), primary_key=True)
    timeframe: Mapped[str] = mapped_column(String(3), primary_key=True)

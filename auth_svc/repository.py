"""Persistence of accounts, preferences and refresh tokens (auth_svc's tables only).

Functions take an open AsyncSession; the caller owns the transaction, so an operation
that writes several rows (a user and their preferences, a rotation) commits all or
nothing.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from auth_svc.models import PreferencesRow, RefreshTokenRow, SignalInterestRow, UserRow


async def find_user_by_id(session: AsyncSession, user_id: str) -> UserRow | None:
    return await session.get(UserRow, user_id)


async def find_user_by_email(session: AsyncSession, email_key: str) -> UserRow | None:
    result = await session.execute(select(UserRow).where(UserRow.email_key == email_key))
    return result.scalar_one_or_none()


async def find_user_by_username(session: AsyncSession, username_key: str) -> UserRow | None:
    result = await session.execute(select(UserRow).where(UserRow.username_key == username_key))
    return result.scalar_one_or_none()


async def get_preferences(session: AsyncSession, user_id: str) -> PreferencesRow | None:
    return await session.get(PreferencesRow, user_id)


async def find_refresh_token(session: AsyncSession, token_hash: str) -> RefreshTokenRow | None:
    result = await session.execute(
        select(RefreshTokenRow).where(RefreshTokenRow.token_hash == token_hash)
    )
    return result.scalar_one_or_none()


async def mark_rotated(session: AsyncSession, token_id: str, now: datetime) -> bool:
    """Spend a refresh token. A conditional update, so of two concurrent Refresh calls
    with the same token exactly one wins; False means it was already spent or revoked."""
    result = await session.execute(
        update(RefreshTokenRow)
        .where(
            RefreshTokenRow.id == token_id,
            RefreshTokenRow.rotated_at.is_(None),
            RefreshTokenRow.revoked_at.is_(None),
        )
        .values(rotated_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def revoke_family(session: AsyncSession, family_id: str, now: datetime) -> int:
    """Revoke every live token of a login session; returns how many were live."""
    result = await session.execute(
        update(RefreshTokenRow)
        .where(RefreshTokenRow.family_id == family_id, RefreshTokenRow.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def replace_interests(
    session: AsyncSession, user_id: str, pairs: list[str], timeframes: list[str]
) -> None:
    """Make the user's signal-interest rows pairs x timeframes (their preferences)."""
    await session.execute(delete(SignalInterestRow).where(SignalInterestRow.user_id == user_id))
    session.add_all(
        SignalInterestRow(user_id=user_id, pair=pair, timeframe=timeframe)
        for pair in pairs
        for timeframe in timeframes
    )

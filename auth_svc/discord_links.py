"""Linking Discord accounts to AIFX accounts: one-time codes created on the web, spent
with `/link CODE` in Discord, and the links the notifier looks users up by. Plain Python:
no gRPC, no generated code.

A code is 8 characters from an alphabet without look-alikes (32 symbols, 40 bits),
stored only as its SHA-256, valid for 10 minutes and spent on first use; asking for a
new code voids the user's unused ones. Guessing is bounded twice: failed codes are rate
limited per Discord user, and a code lives 10 minutes.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from cachetools import TTLCache
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from auth_svc import notification_modes
from auth_svc.login_limiter import FailureLimiter
from auth_svc.models import DiscordLinkCodeRow, DiscordLinkRow, PreferencesRow, SignalInterestRow
from auth_svc.validation import require_fields
from common import request_fields
from common.errors import (
    AlreadyExists,
    FieldViolation,
    InvalidArgument,
    NotFound,
    ViolationCollector,
)
from common.time import as_utc, utcnow

CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L
CODE_LENGTH = 8
CODE_TTL = timedelta(minutes=10)
# Failed codes per Discord user before /link is refused for a while.
FAILED_CODES_LIMIT = "5/10minutes"
MAX_SNOWFLAKE_DIGITS = 20
LINK_CACHE_SIZE = 10_000
LINK_CACHE_SECONDS = 30
_UNKNOWN = object()  # "not cached", as opposed to a cached "no link" (None)
DEFAULT_RECIPIENTS_PAGE = 1000
MAX_RECIPIENTS_PAGE = 5000


@dataclass(frozen=True)
class LinkCode:
    code: str
    expires_at: datetime

    @property
    def instructions(self) -> str:
        return f"/link {self.code}"


@dataclass(frozen=True)
class DiscordLink:
    user_id: str
    discord_user_id: str
    discord_username: str
    linked_at: datetime
    dm_reachable: bool


def _link(row: DiscordLinkRow) -> DiscordLink:
    return DiscordLink(
        user_id=row.user_id,
        discord_user_id=row.discord_user_id,
        discord_username=row.discord_username,
        linked_at=as_utc(row.linked_at),
        dm_reachable=row.dm_reachable,
    )


def _hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def normalize_code(text: str) -> str:
    """What a user typed, as stored: upper case, without spaces or dashes."""
    return "".join(text.split()).replace("-", "").upper()


def _discord_id(value: str) -> str:
    """A Discord snowflake: digits only."""
    value = value.strip()
    if not value.isdigit() or len(value) > MAX_SNOWFLAKE_DIGITS:
        raise InvalidArgument(
            [FieldViolation("discord_user_id", f"'{value}' is not a Discord user id")]
        )
    return value


class DiscordLinks:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], failures: FailureLimiter
    ) -> None:
        self._sessions = sessions
        self._failures = failures
        # GetMe shows the link and is the hottest authenticated call: links are kept in
        # memory like profiles (Accounts), dropped here on every change; another
        # replica's change shows within LINK_CACHE_SECONDS.
        self._by_user: TTLCache[str, DiscordLink | None] = TTLCache(
            maxsize=LINK_CACHE_SIZE, ttl=LINK_CACHE_SECONDS
        )

    async def create_code(self, user_id: str) -> LinkCode:
        """A new code for `user_id`; the user's unused codes stop working."""
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        now = utcnow()
        expires_at = now + CODE_TTL
        async with self._sessions() as session:
            await session.execute(
                delete(DiscordLinkCodeRow).where(
                    DiscordLinkCodeRow.user_id == user_id, DiscordLinkCodeRow.used_at.is_(None)
                )
            )
            session.add(
                DiscordLinkCodeRow(
                    code_hash=_hash(code), user_id=user_id, created_at=now, expires_at=expires_at
                )
            )
            await session.commit()
        return LinkCode(code, expires_at)

    async def link(self, code: str, discord_user_id: str, discord_username: str) -> DiscordLink:
        """Spend `code` to link the Discord user to the code's account (replacing that
        account's earlier link)."""
        require_fields(code=code.strip(), discord_user_id=discord_user_id.strip())
        discord_id = _discord_id(discord_user_id)
        await self._failures.check(discord=discord_id)
        now = utcnow()
        async with self._sessions() as session:
            # Spend the code first, conditionally: of two concurrent /link with one code,
            # exactly one wins.
            spent = await session.execute(
                update(DiscordLinkCodeRow)
                .where(
                    DiscordLinkCodeRow.code_hash == _hash(normalize_code(code)),
                    DiscordLinkCodeRow.used_at.is_(None),
                    DiscordLinkCodeRow.expires_at > now,
                )
                .values(used_at=now)
                .returning(DiscordLinkCodeRow.user_id)
            )
            user_id = spent.scalar_one_or_none()
            if user_id is None:
                await session.rollback()
                reason = await self._why_refused(session, normalize_code(code), now)
                await self._failures.record_failure(discord=discord_id)
                raise InvalidArgument([FieldViolation("code", reason)])
            other = await session.execute(
                select(DiscordLinkRow).where(DiscordLinkRow.discord_user_id == discord_id)
            )
            existing = other.scalar_one_or_none()
            if existing is not None and existing.user_id != user_id:
                await session.rollback()
                raise AlreadyExists(
                    "this Discord account is linked to another AIFX account: /unlink it first",
                    reason="DISCORD_ALREADY_LINKED",
                )
            await session.execute(delete(DiscordLinkRow).where(DiscordLinkRow.user_id == user_id))
            row = DiscordLinkRow(
                user_id=user_id,
                discord_user_id=discord_id,
                discord_username=discord_username.strip()[:64],
                linked_at=now,
                dm_reachable=True,
            )
            session.add(row)
            try:
                await session.commit()
            except IntegrityError:
                # Linked to another account by a concurrent /link of another code.
                await session.rollback()
                raise AlreadyExists(
                    "this Discord account is linked to another AIFX account: /unlink it first",
                    reason="DISCORD_ALREADY_LINKED",
                ) from None
        self._by_user.pop(user_id, None)
        return _link(row)

    @staticmethod
    async def _why_refused(session: AsyncSession, code: str, now: datetime) -> str:
        row = await session.get(DiscordLinkCodeRow, _hash(code))
        if row is None:
            return (
                "unknown code: create one on the AIFX website (POST /api/v1/auth/discord/link-code)"
            )
        if row.used_at is not None:
            return "this code was already used: create a new one"
        return "this code expired (codes last 10 minutes): create a new one"

    async def for_user(self, user_id: str) -> DiscordLink | None:
        cached = self._by_user.get(user_id, _UNKNOWN)
        if cached is not _UNKNOWN:
            return cached  # type: ignore[return-value]
        async with self._sessions() as session:
            row = await session.get(DiscordLinkRow, user_id)
        link = self._by_user[user_id] = None if row is None else _link(row)
        return link

    async def by_discord_id(self, discord_user_id: str) -> DiscordLink:
        """The link of a Discord user; NotFound when they have none."""
        require_fields(discord_user_id=discord_user_id.strip())
        discord_id = _discord_id(discord_user_id)
        async with self._sessions() as session:
            result = await session.execute(
                select(DiscordLinkRow).where(DiscordLinkRow.discord_user_id == discord_id)
            )
            row = result.scalar_one_or_none()
        if row is None:
            raise NotFound(_NOT_LINKED, reason="DISCORD_NOT_LINKED")
        return _link(row)

    async def unlink_user(self, user_id: str) -> DiscordLink:
        async with self._sessions() as session:
            row = await session.get(DiscordLinkRow, user_id)
            if row is None:
                raise NotFound("no Discord account is linked", reason="DISCORD_NOT_LINKED")
            link = _link(row)
            await session.delete(row)
            await session.commit()
        self._by_user.pop(user_id, None)
        return link

    async def unlink_discord(self, discord_user_id: str) -> DiscordLink:
        link = await self.by_discord_id(discord_user_id)
        return await self.unlink_user(link.user_id)

    async def set_dm_reachable(self, discord_user_id: str, reachable: bool) -> DiscordLink:
        link = await self.by_discord_id(discord_user_id)
        async with self._sessions() as session:
            await session.execute(
                update(DiscordLinkRow)
                .where(DiscordLinkRow.user_id == link.user_id)
                .values(dm_reachable=reachable)
            )
            await session.commit()
        self._by_user.pop(link.user_id, None)
        return DiscordLink(
            link.user_id, link.discord_user_id, link.discord_username, link.linked_at, reachable
        )

    async def signal_recipients(
        self,
        pair_raw: str,
        timeframe_value: int,
        confidence_value: float,
        page_size: int,
        page_token: str,
    ) -> tuple[list[tuple[str, str, bool]], str]:
        """(user id, Discord user id, silent) of the users to DM about a signal, a page
        ordered by user id, and the next page's token ("" after the last). Users whose
        signal DMs are off are left out; `silent` says they are sent without a push."""
        errors = ViolationCollector()
        pair = request_fields.pair(pair_raw, "pair", errors, required=True)
        timeframe = request_fields.timeframe(timeframe_value, "timeframe", errors, default=None)
        if timeframe is None and not timeframe_value:
            errors.add("timeframe", "is required")
        confidence = request_fields.confidence(confidence_value, "confidence", errors)
        if not 0 <= page_size <= MAX_RECIPIENTS_PAGE:
            errors.add("page_size", f"must be between 1 and {MAX_RECIPIENTS_PAGE} (0: 1000)")
        errors.raise_if_any()
        assert pair is not None and timeframe is not None
        limit = page_size or DEFAULT_RECIPIENTS_PAGE
        signal_mode = func.coalesce(
            PreferencesRow.discord_modes["signal"].as_string(), notification_modes.ON
        )
        query = (
            select(DiscordLinkRow.user_id, DiscordLinkRow.discord_user_id, signal_mode)
            .join(SignalInterestRow, SignalInterestRow.user_id == DiscordLinkRow.user_id)
            .join(PreferencesRow, PreferencesRow.user_id == DiscordLinkRow.user_id)
            .where(
                SignalInterestRow.pair == pair,
                SignalInterestRow.timeframe == timeframe.value,
                PreferencesRow.notify_discord.is_(True),
                PreferencesRow.min_confidence <= confidence,
                signal_mode != notification_modes.OFF,
                DiscordLinkRow.dm_reachable.is_(True),
                DiscordLinkRow.user_id > page_token,
            )
            .order_by(DiscordLinkRow.user_id)
            .limit(limit + 1)
        )
        async with self._sessions() as session:
            rows = [
                (str(r[0]), str(r[1]), r[2] == notification_modes.SILENT)
                for r in (await session.execute(query)).all()
            ]
        page = rows[:limit]
        return page, page[-1][0] if len(rows) > limit else ""


_NOT_LINKED = (
    "this Discord account is not linked to an AIFX account: create a code on the AIFX "
    "website and send /link CODE"
)

"""The account operations of auth_svc: registration, login, token rotation, logout,
profile and preferences. Plain Python: no gRPC, no generated code."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from cachetools import TTLCache
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from auth_svc import notification_modes, repository
from auth_svc.login_limiter import LoginLimiter
from auth_svc.models import PreferencesRow, RefreshTokenRow, UserRow
from auth_svc.passwords import PasswordHasher
from auth_svc.tokens import IssuedTokens, TokenIssuer, hash_refresh_token, new_refresh_token
from auth_svc.validation import (
    MAX_PAIRS,
    PreferencesInput,
    check_email,
    check_new_password,
    check_username,
    require_fields,
)
from common import request_fields
from common.access_tokens import AccessClaims, AccessTokenVerifier
from common.errors import (
    AlreadyExists,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unauthenticated,
    ViolationCollector,
)
from common.market import Timeframe
from common.revocation import RevocationList
from common.time import as_utc, utcnow

INVALID_CREDENTIALS = "invalid email/username or password"
USER_CACHE_SIZE = 10_000
USER_CACHE_SECONDS = 30
DELEGATED_TOKEN_SECONDS = 300
PREFERENCE_FIELDS = (
    "pairs",
    "timeframes",
    "min_confidence",
    "notify_discord",
    "notify_browser",
    "discord_notifications",
)


@dataclass(frozen=True)
class User:
    id: str
    email: str
    username: str
    created_at: datetime


@dataclass(frozen=True)
class Preferences:
    pairs: list[str]
    timeframes: list[Timeframe]
    min_confidence: float
    notify_discord: bool
    notify_browser: bool
    updated_at: datetime
    # Every kind of Discord DM → "on" | "silent" | "off" (notification_modes).
    discord_modes: dict[str, str] = field(default_factory=lambda: notification_modes.effective({}))


DEFAULT_PREFERENCES = Preferences(
    pairs=["EUR/USD"],
    timeframes=[Timeframe.H1],
    min_confidence=0.6,
    notify_discord=False,
    notify_browser=True,
    updated_at=datetime.min,
)


@dataclass(frozen=True)
class SignedIn:
    user: User
    tokens: IssuedTokens


def _user(row: UserRow) -> User:
    return User(
        id=row.id, email=row.email, username=row.username, created_at=as_utc(row.created_at)
    )


def _preferences(row: PreferencesRow) -> Preferences:
    return Preferences(
        pairs=list(row.pairs),
        timeframes=[Timeframe(value) for value in row.timeframes],
        min_confidence=row.min_confidence,
        notify_discord=row.notify_discord,
        notify_browser=row.notify_browser,
        updated_at=as_utc(row.updated_at),
        discord_modes=notification_modes.effective(row.discord_modes),
    )


class Accounts:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        hasher: PasswordHasher,
        issuer: TokenIssuer,
        verifier: AccessTokenVerifier,
        limiter: LoginLimiter,
        revocations: RevocationList,
    ) -> None:
        self._sessions = sessions
        self._hasher = hasher
        self._issuer = issuer
        self._verifier = verifier
        self._limiter = limiter
        self._revocations = revocations
        self._users: TTLCache[str, User] = TTLCache(maxsize=USER_CACHE_SIZE, ttl=USER_CACHE_SECONDS)

    # --- sessions ----------------------------------------------------------------------

    async def register(
        self, email: str, username: str, password: str, client_address: str
    ) -> SignedIn:
        errors = ViolationCollector()
        email = check_email(email, errors)
        username = check_username(username, errors)
        check_new_password(password, errors)
        errors.raise_if_any()
        await self._limiter.admit_registration(client_address)
        async with self._sessions() as session:
            await self._refuse_taken(session, email.lower(), username.lower())
        password_hash = await self._hasher.hash(password)
        now = utcnow()
        user = UserRow(
            id=str(uuid.uuid4()),
            email=email,
            email_key=email.lower(),
            username=username,
            username_key=username.lower(),
            password_hash=password_hash,
            created_at=now,
        )
        async with self._sessions() as session:
            try:
                session.add(user)
                await session.flush()
                preferences = self._default_preferences(user.id, now)
                session.add(preferences)
                await repository.replace_interests(
                    session, user.id, preferences.pairs, preferences.timeframes
                )
                tokens = self._start_family(session, user.id, now)
                await session.commit()
            except IntegrityError:
                # Lost a race with a concurrent registration of the same name: nothing
                # of this request was written.
                await session.rollback()
                await self._refuse_taken(session, user.email_key, user.username_key)
                raise
        return SignedIn(_user(user), tokens)

    @staticmethod
    def _default_preferences(user_id: str, now: datetime) -> PreferencesRow:
        defaults = DEFAULT_PREFERENCES
        return PreferencesRow(
            user_id=user_id,
            pairs=defaults.pairs,
            timeframes=[tf.value for tf in defaults.timeframes],
            min_confidence=defaults.min_confidence,
            notify_discord=defaults.notify_discord,
            notify_browser=defaults.notify_browser,
            discord_modes={},
            updated_at=now,
        )

    async def _refuse_taken(self, session: AsyncSession, email_key: str, username_key: str) -> None:
        if await repository.find_user_by_email(session, email_key):
            raise AlreadyExists("email is already registered", reason="EMAIL_TAKEN")
        if await repository.find_user_by_username(session, username_key):
            raise AlreadyExists("username is already taken", reason="USERNAME_TAKEN")

    async def login(self, identifier: str, password: str, client_address: str) -> SignedIn:
        require_fields(identifier=identifier.strip(), password=password)
        key = identifier.strip().lower()
        await self._limiter.check(key, client_address)
        async with self._sessions() as session:
            if "@" in key:
                row = await repository.find_user_by_email(session, key)
            else:
                row = await repository.find_user_by_username(session, key)
        if not await self._hasher.verify(password, row.password_hash if row else None):
            await self._limiter.record_failure(key, client_address)
            raise Unauthenticated(INVALID_CREDENTIALS, reason="INVALID_CREDENTIALS")
        assert row is not None  # verify() is False without a row
        async with self._sessions() as session:
            tokens = self._start_family(session, row.id, utcnow())
            await session.commit()
        return SignedIn(_user(row), tokens)

    async def refresh(self, refresh_token: str) -> IssuedTokens:
        require_fields(refresh_token=refresh_token)
        now = utcnow()
        async with self._sessions() as session:
            row = await self._find_refresh_token(session, refresh_token)
            if row.revoked_at is not None:
                raise Unauthenticated("refresh token was revoked", reason="REFRESH_REVOKED")
            if as_utc(row.expires_at) <= now:
                raise Unauthenticated("refresh token expired", reason="REFRESH_EXPIRED")
            if not await repository.mark_rotated(session, row.id, now):
                # Already spent: whoever holds the newer token may be a thief, or the
                # thief is the one here. End the whole session either way.
                await repository.revoke_family(session, row.family_id, now)
                await session.commit()
                raise Unauthenticated(
                    "refresh token was already used; the session has been revoked",
                    reason="REFRESH_REUSED",
                )
            tokens = self._issue(session, row.user_id, row.family_id, now)
            await session.commit()
        return tokens

    async def logout(self, refresh_token: str, access_token: str) -> None:
        """Revoke the refresh token's family, and the presented access token if valid.
        Logging out an already revoked session succeeds (it is what the user wants)."""
        require_fields(refresh_token=refresh_token)
        now = utcnow()
        async with self._sessions() as session:
            row = await self._find_refresh_token(session, refresh_token)
            await repository.revoke_family(session, row.family_id, now)
            await session.commit()
        if access_token:
            try:
                claims = await self._verifier.verify(access_token)
            except Unauthenticated:
                return
            remaining = (claims.expires_at - now).total_seconds() + 5
            await self._revocations.revoke(claims.token_id, remaining)

    @staticmethod
    async def _find_refresh_token(session: AsyncSession, token: str) -> RefreshTokenRow:
        row = await repository.find_refresh_token(session, hash_refresh_token(token))
        if row is None:
            raise Unauthenticated("refresh token is not valid", reason="REFRESH_INVALID")
        return row

    def _start_family(self, session: AsyncSession, user_id: str, now: datetime) -> IssuedTokens:
        return self._issue(session, user_id, str(uuid.uuid4()), now)

    def _issue(
        self, session: AsyncSession, user_id: str, family_id: str, now: datetime
    ) -> IssuedTokens:
        refresh = new_refresh_token()
        expires_at = self._issuer.refresh_expiry(now)
        session.add(
            RefreshTokenRow(
                id=str(uuid.uuid4()),
                token_hash=hash_refresh_token(refresh),
                family_id=family_id,
                user_id=user_id,
                created_at=now,
                expires_at=expires_at,
            )
        )
        return IssuedTokens(
            access_token=self._issuer.access_token(user_id, now),
            expires_in=self._issuer.access_ttl,
            refresh_token=refresh,
            refresh_expires_at=expires_at,
        )

    def delegated_access_token(self, user_id: str) -> tuple[str, int]:
        """An access token for a service acting as the user (the Discord bot answering
        their command) and its lifetime: an ordinary user token, so every service
        applies the user's rights and no more, but short-lived — it is minted per
        command, never stored by the user, and cannot be refreshed."""
        ttl = min(DELEGATED_TOKEN_SECONDS, self._issuer.access_ttl)
        return self._issuer.access_token(user_id, utcnow(), ttl), ttl

    # --- the signed-in user ----------------------------------------------------------

    async def authenticate(self, access_token: str) -> AccessClaims:
        return await self._verifier.verify(access_token)

    async def get_user(self, user_id: str) -> User:
        """The user's profile. Profiles never change after registration (there is no
        rename or e-mail change yet), so they are kept in memory for a short while:
        GetMe is the hottest authenticated call and this spares it a query."""
        require_fields(user_id=user_id)
        cached = self._users.get(user_id)
        if cached is not None:
            return cached
        async with self._sessions() as session:
            row = await repository.find_user_by_id(session, user_id)
        if row is None:
            raise NotFound(f"user {user_id} not found", reason="USER_NOT_FOUND")
        user = self._users[user_id] = _user(row)
        return user

    async def get_preferences(self, user_id: str) -> Preferences:
        async with self._sessions() as session:
            row = await repository.get_preferences(session, user_id)
        if row is None:
            raise NotFound(f"user {user_id} not found", reason="USER_NOT_FOUND")
        return _preferences(row)

    async def update_preferences(
        self, user_id: str, values: PreferencesInput, mask: list[str]
    ) -> Preferences:
        """Apply the fields named in `mask`; validate only those. An empty mask changes
        nothing (the caller derives it from what the client sent)."""
        unknown = [path for path in mask if path not in PREFERENCE_FIELDS]
        if unknown:
            raise InvalidArgument(
                [
                    FieldViolation(
                        "update_mask",
                        f"unknown field '{path}'; updatable: {', '.join(PREFERENCE_FIELDS)}",
                    )
                    for path in unknown
                ]
            )
        fields = set(mask)
        errors = ViolationCollector()
        changes: dict[str, object] = {}
        if "pairs" in fields:
            changes["pairs"] = request_fields.pairs(
                values.pairs, "preferences.pairs", errors, max_count=MAX_PAIRS
            )
        if "timeframes" in fields:
            timeframes = request_fields.timeframes(
                values.timeframes, "preferences.timeframes", errors
            )
            changes["timeframes"] = [tf.value for tf in timeframes]
        if "min_confidence" in fields:
            changes["min_confidence"] = request_fields.confidence(
                values.min_confidence, "preferences.min_confidence", errors
            )
        for flag in ("notify_discord", "notify_browser"):
            if flag in fields:
                changes[flag] = getattr(values, flag)
        if "discord_notifications" in fields:
            for kind, mode in values.discord_modes.items():
                if mode is not None and mode not in notification_modes.MODES:
                    errors.add(f"preferences.discord_notifications.{kind}", "is not a mode")
        errors.raise_if_any()
        async with self._sessions() as session:
            row = await repository.get_preferences(session, user_id)
            if row is None:
                raise NotFound(f"user {user_id} not found", reason="USER_NOT_FOUND")
            for name, value in changes.items():
                setattr(row, name, value)
            if "discord_notifications" in fields:
                row.discord_modes = notification_modes.merged(
                    row.discord_modes, values.discord_modes
                )
            row.updated_at = utcnow()
            if "pairs" in changes or "timeframes" in changes:
                await repository.replace_interests(session, user_id, row.pairs, row.timeframes)
            await session.commit()
        return _preferences(row)

"""Issuing access tokens (EdDSA JWTs) and opaque refresh tokens.

Refresh tokens are 256 random bits handed to the client once; the database keeps only
their SHA-256, so a leaked table cannot be replayed.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt

from auth_svc.signing_keys import SigningKey
from common.access_tokens import ALGORITHM

USER_SCOPE = "user"


@dataclass(frozen=True)
class IssuedTokens:
    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_at: datetime


class TokenIssuer:
    def __init__(
        self, key: SigningKey, *, issuer: str, audience: str, access_ttl: int, refresh_ttl: int
    ) -> None:
        self._key = key
        self._issuer = issuer
        self._audience = audience
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl

    def access_token(self, user_id: str, now: datetime, ttl: int | None = None) -> str:
        """A user access token valid `ttl` seconds (default: access_ttl)."""
        claims = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": user_id,
            "iat": int(now.timestamp()),
            "exp": int(now.timestamp()) + (self.access_ttl if ttl is None else ttl),
            "jti": uuid.uuid4().hex,
            "scope": USER_SCOPE,
        }
        return jwt.encode(
            claims, self._key.private_key, algorithm=ALGORITHM, headers={"kid": self._key.kid}
        )

    def refresh_expiry(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.refresh_ttl)


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()

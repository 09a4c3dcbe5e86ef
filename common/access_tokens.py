"""Verification of access tokens (EdDSA JWTs) against a public JSON Web Key Set.

Every service verifies tokens itself with the public keys only; nothing here can sign.
Revocation (logout) is checked through a callback so the verifier stays free of storage.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
from cachetools import TTLCache

from common.errors import Unauthenticated

ALGORITHM = "EdDSA"
REQUIRED_CLAIMS = ["exp", "iat", "sub", "jti", "iss", "aud"]
VERIFIED_CACHE_SIZE = 50_000
VERIFIED_CACHE_SECONDS = 300


@dataclass(frozen=True)
class AccessClaims:
    """What a verified access token says about its bearer."""

    subject: str
    token_id: str
    scopes: frozenset[str]
    issued_at: datetime
    expires_at: datetime


RevocationCheck = Callable[[str], Awaitable[bool]]


class AccessTokenVerifier:
    """Verifies signature, issuer, audience, expiry and revocation of access tokens."""

    def __init__(
        self,
        jwks: dict[str, Any],
        *,
        issuer: str,
        audience: str,
        is_revoked: RevocationCheck | None = None,
        leeway_seconds: float = 5.0,
    ) -> None:
        self._keys = self._load(jwks)
        self._issuer = issuer
        self._audience = audience
        self._is_revoked = is_revoked
        self._leeway = leeway_seconds
        self._verified: TTLCache[str, AccessClaims] = TTLCache(
            maxsize=VERIFIED_CACHE_SIZE, ttl=VERIFIED_CACHE_SECONDS
        )

    @staticmethod
    def _load(jwks: dict[str, Any]) -> dict[str, Any]:
        """Key id → key. A key without a `kid` is left out: tokens pick their key by the
        `kid` header, so such a key could never be selected."""
        keys = jwt.PyJWKSet.from_dict(jwks).keys
        return {key.key_id: key.key for key in keys if key.key_id is not None}

    def replace_keys(self, jwks: dict[str, Any]) -> None:
        """Swap in a new key set (key rotation) without recreating the verifier."""
        self._keys = self._load(jwks)
        self._verified.clear()

    async def verify(self, token: str) -> AccessClaims:
        """The token's claims, or Unauthenticated saying what is wrong with it.

        A token whose signature was already checked is remembered (by its exact text),
        so a client calling every second pays the signature check once; expiry and
        revocation are still checked on every call.
        """
        if not token:
            raise Unauthenticated("missing access token", reason="TOKEN_MISSING")
        claims = self._verified.get(token)
        if claims is None:
            claims = self._check_signature_and_claims(token)
            self._verified[token] = claims
        if claims.expires_at.timestamp() + self._leeway <= time.time():
            raise Unauthenticated("access token expired", reason="TOKEN_EXPIRED")
        if self._is_revoked is not None and await self._is_revoked(claims.token_id):
            raise Unauthenticated("access token revoked", reason="TOKEN_REVOKED")
        return claims

    def _check_signature_and_claims(self, token: str) -> AccessClaims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as exc:
            raise Unauthenticated("malformed access token", reason="TOKEN_INVALID") from exc
        key = self._keys.get(header.get("kid", ""))
        if key is None or header.get("alg") != ALGORITHM:
            raise Unauthenticated("access token signed by an unknown key", reason="TOKEN_INVALID")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("access token expired", reason="TOKEN_EXPIRED") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"invalid access token: {exc}", reason="TOKEN_INVALID") from exc
        return AccessClaims(
            subject=str(claims["sub"]),
            token_id=str(claims["jti"]),
            scopes=frozenset(str(claims.get("scope", "")).split()),
            issued_at=datetime.fromtimestamp(claims["iat"], UTC),
            expires_at=datetime.fromtimestamp(claims["exp"], UTC),
        )

"""Forged and misused access tokens, one thing wrong with each, for the attack matrix
at every surface (REST through Envoy, gRPC at a service, Socket.IO at the edge).

Every attack but one starts from auth_svc's real signing key: no signature (`alg:
none`), HS256 keyed with the public key (key confusion), a `kid` no JWKS entry has,
another audience or issuer, expired, not valid yet, and a real token's payload changed
under its original signature."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable

import jwt
from cryptography.hazmat.primitives import serialization

from auth_svc.signing_keys import SigningKey
from common.settings import TokenSettings
from tests.infra import sign_access_token

# (token settings, the real signing key, a real token) → a forged token
Forgery = Callable[[TokenSettings, SigningKey, str], str]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(tokens: TokenSettings) -> dict[str, object]:
    now = int(time.time())
    return {
        "iss": tokens.jwt_issuer,
        "aud": tokens.jwt_audience,
        "sub": "00000000-0000-0000-0000-000000000001",
        "iat": now,
        "exp": now + 600,
        "jti": "attack",
        "scope": "user",
    }


def _unsigned(tokens: TokenSettings, key: SigningKey, _real: str) -> str:
    header = {"alg": "none", "typ": "JWT", "kid": key.kid}
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(_claims(tokens)).encode())}."


def _key_confusion(tokens: TokenSettings, key: SigningKey, _real: str) -> str:
    """HS256 with the public key (PEM, as a naive verifier would load it) as the secret."""
    public_pem = key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": key.kid}
    signing_input = (
        f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(_claims(tokens)).encode())}"
    )
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _tampered(_tokens: TokenSettings, _key: SigningKey, real: str) -> str:
    """A valid token whose payload is swapped for another user's, signature kept."""
    header, _, signature = real.split(".")
    payload = jwt.decode(real, options={"verify_signature": False})
    payload["sub"] = "00000000-0000-0000-0000-000000000002"
    return f"{header}.{_b64(json.dumps(payload).encode())}.{signature}"


def _signed(**claims: object) -> Forgery:
    """Signed with the real key and kid; only `claims` differ from a good token."""

    def make(tokens: TokenSettings, key: SigningKey, _real: str) -> str:
        return sign_access_token(key.private_key, key.kid, tokens, **claims)

    return make


def _unknown_kid(tokens: TokenSettings, key: SigningKey, _real: str) -> str:
    return sign_access_token(key.private_key, "no-such-key", tokens)


NOW = int(time.time())
ATTACKS: dict[str, Forgery] = {
    "alg none": _unsigned,
    "HS256 keyed with the public key": _key_confusion,
    "unknown kid": _unknown_kid,
    "wrong audience": _signed(aud="someone-else"),
    "wrong issuer": _signed(iss="https://evil.example"),
    "expired": _signed(iat=NOW - 7200, exp=NOW - 3600),
    "not yet valid": _signed(nbf=NOW + 3600, iat=NOW, exp=NOW + 7200),
    "tampered payload": _tampered,
}

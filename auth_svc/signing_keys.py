"""The Ed25519 key that signs access tokens, and the public JWKS that verifies them.

Production supplies the private key in settings (PEM, inline or as a file). The
embedded default generates one into `var/keys/` on first run and reuses it after, so
tokens survive restarts. The key id is the RFC 7638 thumbprint of the public key, so
the same key always has the same `kid`.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from common.secret_files import create_once
from common.settings import Settings


@dataclass(frozen=True)
class SigningKey:
    private_key: Ed25519PrivateKey
    kid: str

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = jwt.algorithms.OKPAlgorithm.to_jwk(
            self.private_key.public_key(), as_dict=True
        )
        return {**jwk, "kid": self.kid, "alg": "EdDSA", "use": "sig"}

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk()]}


def thumbprint(public_jwk: dict[str, Any]) -> str:
    """RFC 7638 thumbprint of an OKP public key: the stable `kid` of that key."""
    canonical = json.dumps(
        {name: public_jwk[name] for name in ("crv", "kty", "x")},
        separators=(",", ":"),
        sort_keys=True,
    )
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _from_pem(pem: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("AIFX_JWT_PRIVATE_KEY must be an Ed25519 private key (PEM, PKCS#8)")
    return key


def _new_pem() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_signing_key(settings: Settings) -> SigningKey:
    """The configured key, or the embedded default's (generated on first run)."""
    inline = settings.tokens.jwt_private_key.get_secret_value()
    if inline:
        key = _from_pem(inline.encode())
    else:
        path = (
            settings.tokens.jwt_private_key_file
            or settings.general.var_dir / "keys" / "jwt-ed25519.pem"
        )
        # Every auth replica starting on a fresh var/ signs with the same key.
        key = _from_pem(create_once(path, _new_pem))
    public = jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return SigningKey(private_key=key, kid=thumbprint(public))

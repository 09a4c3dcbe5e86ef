"""Issuing and verifying access tokens: signature, claims, expiry, revocation."""

import time
from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auth_svc.signing_keys import SigningKey, thumbprint
from auth_svc.tokens import TokenIssuer, hash_refresh_token, new_refresh_token
from common.access_tokens import AccessTokenVerifier
from common.errors import Unauthenticated
from common.time import utcnow


def make_key() -> SigningKey:
    key = Ed25519PrivateKey.generate()
    public = jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return SigningKey(private_key=key, kid=thumbprint(public))


KEY = make_key()


def issuer(key: SigningKey = KEY, ttl: int = 3600) -> TokenIssuer:
    return TokenIssuer(key, issuer="aifx", audience="aifx", access_ttl=ttl, refresh_ttl=60)


def verifier(revoked: set[str] | None = None, **kwargs) -> AccessTokenVerifier:
    async def is_revoked(jti: str) -> bool:
        return jti in (revoked or set())

    return AccessTokenVerifier(
        KEY.jwks(), issuer="aifx", audience="aifx", is_revoked=is_revoked, **kwargs
    )


async def test_round_trip_carries_the_required_claims():
    token = issuer().access_token("user-1", utcnow())
    claims = await verifier().verify(token)
    assert claims.subject == "user-1"
    assert claims.scopes == frozenset({"user"})
    assert claims.token_id
    assert claims.expires_at - claims.issued_at == timedelta(hours=1)
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "EdDSA", "kid": KEY.kid, "typ": "JWT"}


async def test_jwks_is_public_only():
    (jwk,) = KEY.jwks()["keys"]
    assert jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519" and "d" not in jwk
    assert jwk["kid"] == KEY.kid and jwk["alg"] == "EdDSA" and jwk["use"] == "sig"


async def expect_refused(token: str, reason: str, v: AccessTokenVerifier | None = None) -> None:
    with pytest.raises(Unauthenticated) as caught:
        await (v or verifier()).verify(token)
    assert caught.value.reason == reason


async def test_expired_token_is_refused():
    old = utcnow() - timedelta(hours=2)
    await expect_refused(issuer().access_token("u", old), "TOKEN_EXPIRED")


async def test_token_from_another_key_with_our_kid_is_refused():
    forger = make_key()
    forged = SigningKey(private_key=forger.private_key, kid=KEY.kid)
    await expect_refused(issuer(forged).access_token("u", utcnow()), "TOKEN_INVALID")


async def test_unknown_kid_is_refused():
    await expect_refused(issuer(make_key()).access_token("u", utcnow()), "TOKEN_INVALID")


async def test_wrong_audience_or_issuer_is_refused():
    other = TokenIssuer(KEY, issuer="evil", audience="aifx", access_ttl=60, refresh_ttl=60)
    await expect_refused(other.access_token("u", utcnow()), "TOKEN_INVALID")
    other = TokenIssuer(KEY, issuer="aifx", audience="other", access_ttl=60, refresh_ttl=60)
    await expect_refused(other.access_token("u", utcnow()), "TOKEN_INVALID")


async def test_missing_jti_is_refused():
    now = int(time.time())
    claims = {"iss": "aifx", "aud": "aifx", "sub": "u", "iat": now, "exp": now + 60}
    token = jwt.encode(claims, KEY.private_key, algorithm="EdDSA", headers={"kid": KEY.kid})
    await expect_refused(token, "TOKEN_INVALID")


async def test_unsigned_and_malformed_tokens_are_refused():
    now = int(time.time())
    claims = {"iss": "aifx", "aud": "aifx", "sub": "u", "iat": now, "exp": now + 60, "jti": "j"}
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": KEY.kid})
    await expect_refused(unsigned, "TOKEN_INVALID")
    await expect_refused("not-a-jwt", "TOKEN_INVALID")
    await expect_refused("", "TOKEN_MISSING")


async def test_revoked_token_is_refused():
    token = issuer().access_token("u", utcnow())
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    await expect_refused(token, "TOKEN_REVOKED", verifier(revoked={jti}))


async def test_key_rotation_replaces_the_key_set():
    v = verifier()
    new = make_key()
    token = issuer(new).access_token("u", utcnow())
    await expect_refused(token, "TOKEN_INVALID", v)
    v.replace_keys(new.jwks())
    assert (await v.verify(token)).subject == "u"


def test_refresh_tokens_are_random_and_stored_as_sha256():
    first, second = new_refresh_token(), new_refresh_token()
    assert first != second and len(first) >= 43
    assert len(hash_refresh_token(first)) == 64
    assert hash_refresh_token(first) != first


async def test_a_remembered_token_is_still_refused_once_expired(monkeypatch):
    """The signature check is cached; expiry is not."""
    v = verifier(leeway_seconds=0)
    token = issuer(ttl=60).access_token("u", utcnow())
    assert (await v.verify(token)).subject == "u"
    later = time.time() + 61
    monkeypatch.setattr("common.access_tokens.time.time", lambda: later)
    await expect_refused(token, "TOKEN_EXPIRED", v)


async def test_revocation_applies_to_a_remembered_token_at_once():
    from common.kv import MemoryStore
    from common.revocation import RevocationList

    revocations = RevocationList(MemoryStore())
    v = AccessTokenVerifier(
        KEY.jwks(), issuer="aifx", audience="aifx", is_revoked=revocations.is_revoked
    )
    token = issuer().access_token("u", utcnow())
    claims = await v.verify(token)
    await revocations.revoke(claims.token_id, 60)
    await expect_refused(token, "TOKEN_REVOKED", v)


async def test_a_process_keeps_its_own_revocations_when_the_shared_store_forgets_them():
    """A logout handled while Redis was down lives only in this process; a Redis that
    comes back empty must not make the token valid again here."""
    from common.kv import MemoryStore
    from common.revocation import RevocationList

    shared = MemoryStore()
    revocations = RevocationList(shared)
    await revocations.revoke("jti-1", 60)
    await shared.close()  # the shared store restarted empty
    assert await revocations.is_revoked("jti-1")
    assert not await revocations.is_revoked("jti-2")

"""Forged and misused access tokens, each refused at Envoy (REST) and at the service
(gRPC straight to signal_svc, past Envoy): the matrix of attacks and surfaces.

Every attack but one starts from auth_svc's real signing key, so exactly one thing is
wrong with each token: no signature (`alg: none`), HS256 keyed with the public key (key
confusion), a `kid` no JWKS entry has, another audience or issuer, expired, not valid
yet, a payload changed under the original signature. Revoked tokens:
`test_signal_rest.py::test_a_revoked_token_is_refused_by_signal_svc` and the edge's and
auth's suites."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable

import grpc
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from aifx.signal.v1 import signal_pb2
from auth_svc.signing_keys import SigningKey, load_signing_key
from tests.infra import sign_access_token
from tests.signal_e2e.conftest import SignalEdge

pytestmark = pytest.mark.e2e

SIGNAL_PATH = "/api/v1/trading/signal/EURUSD"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(edge: SignalEdge, **overrides: object) -> dict[str, object]:
    now = int(time.time())
    return {
        "iss": edge.settings.tokens.jwt_issuer,
        "aud": edge.settings.tokens.jwt_audience,
        "sub": "00000000-0000-0000-0000-000000000001",
        "iat": now,
        "exp": now + 600,
        "jti": "attack",
        "scope": "user",
        **overrides,
    }


def _unsigned(edge: SignalEdge, key: SigningKey) -> str:
    header = {"alg": "none", "typ": "JWT", "kid": key.kid}
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(_claims(edge)).encode())}."


def _key_confusion(edge: SignalEdge, key: SigningKey) -> str:
    """HS256 with the public key (PEM, as a naive verifier would load it) as the secret."""
    public_pem = key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": key.kid}
    signing_input = (
        f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(_claims(edge)).encode())}"
    )
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _tampered(edge: SignalEdge, key: SigningKey) -> str:
    """A valid token whose payload is swapped for another user's, signature kept."""
    header, _, signature = edge.access_token.split(".")
    payload = jwt.decode(edge.access_token, options={"verify_signature": False})
    payload["sub"] = "00000000-0000-0000-0000-000000000002"
    return f"{header}.{_b64(json.dumps(payload).encode())}.{signature}"


def _signed(**claims: object) -> Callable[[SignalEdge, SigningKey], str]:
    """Signed with the real key and kid; only `claims` differ from a good token."""

    def make(edge: SignalEdge, key: SigningKey) -> str:
        return sign_access_token(key.private_key, key.kid, edge.settings.tokens, **claims)

    return make


NOW = int(time.time())
ATTACKS: dict[str, Callable[[SignalEdge, SigningKey], str]] = {
    "alg none": _unsigned,
    "HS256 keyed with the public key": _key_confusion,
    "unknown kid": lambda edge, key: sign_access_token(
        key.private_key, "no-such-key", edge.settings.tokens
    ),
    "wrong audience": _signed(aud="someone-else"),
    "wrong issuer": _signed(iss="https://evil.example"),
    "expired": _signed(iat=NOW - 7200, exp=NOW - 3600),
    "not yet valid": _signed(nbf=NOW + 3600, iat=NOW, exp=NOW + 7200),
    "tampered payload": _tampered,
}


@pytest.mark.parametrize("attack", ATTACKS)
async def test_refused_at_envoy(signal_edge: SignalEdge, http: httpx.AsyncClient, attack: str):
    token = ATTACKS[attack](signal_edge, load_signing_key(signal_edge.settings))
    response = await http.get(SIGNAL_PATH, headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text
    assert response.json()["code"] == 16


@pytest.mark.parametrize("attack", ATTACKS)
async def test_refused_at_the_service(signal_edge: SignalEdge, attack: str):
    token = ATTACKS[attack](signal_edge, load_signing_key(signal_edge.settings))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await signal_edge.stub.GetSignal(
            signal_pb2.GetSignalRequest(pair="EUR/USD"),
            metadata=(("authorization", f"Bearer {token}"),),
        )
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED, caught.value


async def test_the_real_token_passes_both(signal_edge: SignalEdge, http: httpx.AsyncClient):
    """The control: the same requests with the real token are served."""
    response = await http.get(SIGNAL_PATH, headers=dict(signal_edge.bearer))
    assert response.status_code == 200, response.text
    await signal_edge.stub.GetSignal(
        signal_pb2.GetSignalRequest(pair="EUR/USD"), metadata=signal_edge.bearer
    )

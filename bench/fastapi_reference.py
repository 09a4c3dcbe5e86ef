"""The reference bench/rest_vs_fastapi.py measures AIFX against: the smallest FastAPI
app doing the same job as `GET /api/v1/trading/signal/{pair}` — what a team would write
instead of AIFX's Envoy + gRPC service.

Per request, like AIFX: the bearer token's Ed25519 signature, issuer, audience and
expiry checked with PyJWT against AIFX's own JWKS (so AIFX's tokens are accepted), its
`jti` looked up in a revocation set (in memory, as AIFX's embedded default keeps
revocations), and the latest signal answered as JSON — the very body AIFX answered,
loaded at start and serialised per request. Configured from the environment:
AIFX_REFERENCE_JWKS (path of the JWKS JSON), AIFX_REFERENCE_SIGNAL (path of the signal
JSON), AIFX_REFERENCE_ISSUER, AIFX_REFERENCE_AUDIENCE.

Run:  uvicorn --app-dir bench fastapi_reference:app --port 9001 --no-access-log
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import jwt
from fastapi import FastAPI, Header, HTTPException

_JWKS = json.loads(Path(os.environ["AIFX_REFERENCE_JWKS"]).read_text())
_KEYS = {key.key_id: key.key for key in jwt.PyJWKSet.from_dict(_JWKS).keys}
_SIGNAL: dict[str, Any] = json.loads(Path(os.environ["AIFX_REFERENCE_SIGNAL"]).read_text())
_ISSUER = os.environ["AIFX_REFERENCE_ISSUER"]
_AUDIENCE = os.environ["AIFX_REFERENCE_AUDIENCE"]
_REVOKED: set[str] = set()

app = FastAPI()


def _claims(authorization: str | None) -> dict[str, Any]:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(401, "a bearer token is required")
    try:
        key = _KEYS[jwt.get_unverified_header(token).get("kid")]
        claims: dict[str, Any] = jwt.decode(
            token, key, algorithms=["EdDSA"], issuer=_ISSUER, audience=_AUDIENCE
        )
    except (KeyError, jwt.PyJWTError) as error:
        raise HTTPException(401, "invalid token") from error
    if claims.get("jti") in _REVOKED:
        raise HTTPException(401, "token revoked")
    return claims


@app.get("/api/v1/trading/signal/{pair}")
async def get_signal(
    pair: str, authorization: Annotated[str | None, Header()] = None
) -> dict[str, Any]:
    _claims(authorization)
    if pair.upper() != "EURUSD":
        raise HTTPException(404, f"no signal for {pair}")
    return _SIGNAL

"""auth_svc through a real Envoy, over HTTP/JSON: transcoding (proto3 JSON names),
errors as google.rpc.Status JSON with the mapped HTTP status, jwt_authn at the edge,
CORS, and Envoy's own JSON error bodies. Runs against both backends."""

from __future__ import annotations

import base64
import re
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aifx.auth.v1 import auth_pb2, auth_pb2_grpc
from auth_svc.signing_keys import load_signing_key
from common.service_credentials import load_service_token
from tests.auth_e2e.conftest import EdgeStack
from tests.envoy import PASSWORD, envoy_settings, http_client, running_envoy, unique_account
from tests.infra import free_port, make_settings, sign_access_token

pytestmark = pytest.mark.e2e

ALLOWED_ORIGIN = "http://localhost:8080"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
DEFAULT_PREFERENCES = {
    "pairs": ["EUR/USD"],
    "timeframes": ["TIMEFRAME_H1"],
    "minConfidence": 0.6,
    "notifyDiscord": False,
    "notifyBrowser": True,
    "discordNotifications": {
        kind: "NOTIFICATION_MODE_ON"
        for kind in ("signal", "takeProfitHit", "stopLossHit", "positionOpened", "positionClosed")
    },
}


# --- helpers -------------------------------------------------------------------------


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def error(response: httpx.Response, status: int, code: int) -> dict[str, Any]:
    """The JSON google.rpc.Status body of an error response, after checking that the
    HTTP status and the gRPC code agree with what is expected."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert body["code"] == code, body
    assert body["message"], body
    return body


def detail(body: dict[str, Any], type_url: str) -> dict[str, Any]:
    found = [d for d in body.get("details", []) if d["@type"] == type_url]
    assert len(found) == 1, body
    return found[0]


def violations(body: dict[str, Any]) -> dict[str, str]:
    """BadRequest field violations as field → description."""
    return {v["field"]: v["description"] for v in detail(body, BAD_REQUEST)["fieldViolations"]}


def reason(body: dict[str, Any]) -> str:
    return detail(body, ERROR_INFO)["reason"]


async def register(http: httpx.AsyncClient, **overrides: str) -> tuple[dict[str, str], dict]:
    account = {**unique_account(), **overrides}
    response = await http.post("/api/v1/auth/register", json=account)
    assert response.status_code == 200, response.text
    return account, response.json()


def assert_token_pair(tokens: dict[str, Any], settings_ttl: int) -> None:
    assert tokens["tokenType"] == "Bearer"
    assert tokens["accessToken"].count(".") == 2
    # int64 is a JSON string in the proto3 mapping.
    assert tokens["expiresIn"] == str(settings_ttl)
    assert len(tokens["refreshToken"]) >= 32
    assert RFC3339.match(tokens["refreshExpireTime"]), tokens
    assert set(tokens) == {
        "accessToken",
        "tokenType",
        "expiresIn",
        "refreshToken",
        "refreshExpireTime",
    }


# --- register ------------------------------------------------------------------------


async def test_register_returns_the_user_and_a_token_pair(edge: EdgeStack, http):
    account = unique_account()
    before = datetime.now(UTC)
    response = await http.post("/api/v1/auth/register", json=account)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers.get("x-request-id")
    body = response.json()
    assert set(body) == {"user", "tokens"}
    user = body["user"]
    assert set(user) == {"id", "email", "username", "createTime"}  # never a password hash
    assert uuid.UUID(user["id"])
    assert user["email"] == account["email"]
    assert user["username"] == account["username"]
    created = datetime.fromisoformat(user["createTime"].replace("Z", "+00:00"))
    assert abs((created - before).total_seconds()) < 60
    assert_token_pair(body["tokens"], edge.settings.tokens.access_token_ttl_seconds)
    claims = jwt.decode(body["tokens"]["accessToken"], options={"verify_signature": False})
    assert claims["sub"] == user["id"]
    assert claims["iss"] == edge.settings.tokens.jwt_issuer
    assert claims["aud"] == edge.settings.tokens.jwt_audience


async def test_register_validation_error_names_every_bad_field(http):
    response = await http.post(
        "/api/v1/auth/register",
        json={"email": "not-an-email", "username": "a!", "password": "short"},
    )

    body = error(response, 400, 3)
    assert set(violations(body)) == {"email", "username", "password"}
    assert "8" in violations(body)["password"]
    assert reason(body) == "INVALID_ARGUMENT"


async def test_register_missing_fields_are_required(http):
    body = error(await http.post("/api/v1/auth/register", json={}), 400, 3)

    assert set(violations(body)) == {"email", "username", "password"}


async def test_register_duplicate_email_is_409(http):
    account, _ = await register(http)
    again = {**unique_account(), "email": account["email"].upper()}

    body = error(await http.post("/api/v1/auth/register", json=again), 409, 6)
    assert reason(body) == "EMAIL_TAKEN"
    assert "email" in body["message"]


async def test_register_duplicate_username_is_409_regardless_of_case(http):
    tag = uuid.uuid4().hex[:10]
    await register(http, username=f"Trader_{tag}")
    again = {**unique_account(), "username": f"tRADER_{tag.upper()}"}

    body = error(await http.post("/api/v1/auth/register", json=again), 409, 6)
    assert reason(body) == "USERNAME_TAKEN"
    assert "username" in body["message"]


async def test_malformed_json_body_is_400(http):
    response = await http.post(
        "/api/v1/auth/register",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )

    error(response, 400, 3)


# --- login ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "identifier",
    [
        lambda a: a["email"],
        lambda a: a["email"].upper(),
        lambda a: a["username"],
        lambda a: a["username"].upper(),
    ],
    ids=["email", "EMAIL", "username", "USERNAME"],
)
async def test_login_by_email_or_username_regardless_of_case(edge: EdgeStack, http, identifier):
    account, registered = await register(http)

    response = await http.post(
        "/api/v1/auth/login",
        json={"identifier": identifier(account), "password": PASSWORD},
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user"] == registered["user"]
    assert_token_pair(body["tokens"], edge.settings.tokens.access_token_ttl_seconds)
    assert body["tokens"]["refreshToken"] != registered["tokens"]["refreshToken"]
    me = await http.get("/api/v1/auth/me", headers=bearer(body["tokens"]["accessToken"]))
    assert me.status_code == 200, me.text
    assert me.json()["user"]["id"] == registered["user"]["id"]


async def test_wrong_password_and_unknown_user_get_the_same_401(http):
    account, _ = await register(http)

    wrong = error(
        await http.post(
            "/api/v1/auth/login",
            json={"identifier": account["username"], "password": "not the password"},
        ),
        401,
        16,
    )
    unknown = error(
        await http.post(
            "/api/v1/auth/login",
            json={"identifier": f"nobody-{uuid.uuid4().hex}@example.com", "password": PASSWORD},
        ),
        401,
        16,
    )

    assert wrong["message"] == unknown["message"]
    assert reason(wrong) == reason(unknown) == "INVALID_CREDENTIALS"


async def test_login_missing_fields_is_400(http):
    body = error(await http.post("/api/v1/auth/login", json={}), 400, 3)

    assert set(violations(body)) == {"identifier", "password"}


async def test_login_rate_limit_is_429_with_retry_info(edge: EdgeStack, http):
    account, _ = await register(http)
    limit = int(edge.settings.logins.login_failure_limit_per_identifier.split("/")[0])
    for _ in range(limit):
        error(
            await http.post(
                "/api/v1/auth/login",
                json={"identifier": account["username"], "password": "wrong password"},
            ),
            401,
            16,
        )

    # Even the right password is refused until the window passes.
    response = await http.post(
        "/api/v1/auth/login", json={"identifier": account["username"], "password": PASSWORD}
    )

    body = error(response, 429, 8)
    assert reason(body) == "RATE_LIMITED"
    delay = detail(body, RETRY_INFO)["retryDelay"]
    assert re.fullmatch(r"\d+(\.\d+)?s", delay), delay
    assert 0 < float(delay[:-1]) <= 5 * 60


# --- the signed-in user: Envoy's jwt_authn and the service's own checks ---------------


async def test_me_with_a_token_is_the_user(http):
    _, registered = await register(http)

    response = await http.get(
        "/api/v1/auth/me", headers=bearer(registered["tokens"]["accessToken"])
    )

    assert response.status_code == 200, response.text
    assert response.json() == {"user": registered["user"]}


async def test_me_without_a_token_is_refused_by_envoy(http):
    response = await http.get("/api/v1/auth/me")

    body = error(response, 401, 16)
    assert "Jwt is missing" in body["message"]
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_me_with_a_forged_token_is_401(edge: EdgeStack, http):
    _, registered = await register(http)
    real = jwt.decode(registered["tokens"]["accessToken"], options={"verify_signature": False})
    kid = jwt.get_unverified_header(registered["tokens"]["accessToken"])["kid"]
    forged = sign_access_token(
        Ed25519PrivateKey.generate(), kid, edge.settings.tokens, sub=real["sub"]
    )

    body = error(await http.get("/api/v1/auth/me", headers=bearer(forged)), 401, 16)
    assert "verification fail" in body["message"].lower()


async def test_me_with_an_expired_token_is_401(edge: EdgeStack, http):
    _, registered = await register(http)
    key = load_signing_key(edge.settings)  # the real key: only the expiry is wrong
    past = int(time.time()) - 3600
    expired = sign_access_token(
        key.private_key,
        key.kid,
        edge.settings.tokens,
        sub=registered["user"]["id"],
        iat=past - 600,
        exp=past,
    )

    body = error(await http.get("/api/v1/auth/me", headers=bearer(expired)), 401, 16)
    assert "expired" in body["message"].lower()


async def test_me_with_a_token_for_another_audience_is_401(edge: EdgeStack, http):
    _, registered = await register(http)
    key = load_signing_key(edge.settings)
    token = sign_access_token(
        key.private_key,
        key.kid,
        edge.settings.tokens,
        sub=registered["user"]["id"],
        aud="someone-else",
    )

    error(await http.get("/api/v1/auth/me", headers=bearer(token)), 401, 16)


# --- refresh and logout --------------------------------------------------------------


async def test_refresh_rotates_and_reuse_revokes_the_family(edge: EdgeStack, http):
    _, registered = await register(http)
    first = registered["tokens"]["refreshToken"]

    response = await http.post("/api/v1/auth/refresh", json={"refreshToken": first})
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"tokens"}
    rotated = response.json()["tokens"]
    assert_token_pair(rotated, edge.settings.tokens.access_token_ttl_seconds)
    assert rotated["refreshToken"] != first
    assert rotated["accessToken"] != registered["tokens"]["accessToken"]
    me = await http.get("/api/v1/auth/me", headers=bearer(rotated["accessToken"]))
    assert me.status_code == 200, me.text

    # The spent token again: refused, and the whole session with it.
    reused = error(await http.post("/api/v1/auth/refresh", json={"refreshToken": first}), 401, 16)
    assert reason(reused) == "REFRESH_REUSED"
    revoked = error(
        await http.post("/api/v1/auth/refresh", json={"refreshToken": rotated["refreshToken"]}),
        401,
        16,
    )
    assert reason(revoked) == "REFRESH_REVOKED"


async def test_refresh_with_an_unknown_token_is_401(http):
    body = error(
        await http.post("/api/v1/auth/refresh", json={"refreshToken": "no-such-token"}),
        401,
        16,
    )

    assert reason(body) == "REFRESH_INVALID"


async def test_logout_revokes_the_session_and_the_access_token(http):
    account, registered = await register(http)
    tokens = registered["tokens"]
    other = await http.post(
        "/api/v1/auth/login", json={"identifier": account["email"], "password": PASSWORD}
    )
    assert other.status_code == 200, other.text

    response = await http.post(
        "/api/v1/auth/logout",
        json={"refreshToken": tokens["refreshToken"]},
        headers=bearer(tokens["accessToken"]),
    )
    assert response.status_code == 200, response.text
    assert response.json() == {}

    refused = error(
        await http.post("/api/v1/auth/refresh", json={"refreshToken": tokens["refreshToken"]}),
        401,
        16,
    )
    assert reason(refused) == "REFRESH_REVOKED"
    # Envoy passes the (validly signed) token on; auth_svc knows it was revoked.
    me = error(await http.get("/api/v1/auth/me", headers=bearer(tokens["accessToken"])), 401, 16)
    assert reason(me) == "TOKEN_REVOKED"
    # Another session of the same user is untouched.
    still = await http.get("/api/v1/auth/me", headers=bearer(other.json()["tokens"]["accessToken"]))
    assert still.status_code == 200, still.text


async def test_logout_with_only_the_refresh_token_works(http):
    _, registered = await register(http)
    tokens = registered["tokens"]

    response = await http.post("/api/v1/auth/logout", json={"refreshToken": tokens["refreshToken"]})

    assert response.status_code == 200, response.text
    error(
        await http.post("/api/v1/auth/refresh", json={"refreshToken": tokens["refreshToken"]}),
        401,
        16,
    )


async def test_logout_with_a_bad_access_token_is_refused_by_envoy(edge: EdgeStack, http):
    _, registered = await register(http)
    forged = sign_access_token(
        Ed25519PrivateKey.generate(), "whatever", edge.settings.tokens, sub=registered["user"]["id"]
    )

    response = await http.post(
        "/api/v1/auth/logout",
        json={"refreshToken": registered["tokens"]["refreshToken"]},
        headers=bearer(forged),
    )

    error(response, 401, 16)
    # Nothing was revoked.
    refreshed = await http.post(
        "/api/v1/auth/refresh", json={"refreshToken": registered["tokens"]["refreshToken"]}
    )
    assert refreshed.status_code == 200, refreshed.text


# --- preferences ---------------------------------------------------------------------


async def test_preferences_start_with_the_defaults(http):
    _, registered = await register(http)

    response = await http.get(
        "/api/v1/auth/preferences", headers=bearer(registered["tokens"]["accessToken"])
    )

    assert response.status_code == 200, response.text
    preferences = response.json()["preferences"]
    assert RFC3339.match(preferences.pop("updateTime"))
    assert preferences == DEFAULT_PREFERENCES


async def test_preferences_need_a_token(http):
    error(await http.get("/api/v1/auth/preferences"), 401, 16)
    error(await http.patch("/api/v1/auth/preferences", json={"minConfidence": 0.8}), 401, 16)


async def test_patch_preferences_changes_only_the_fields_sent(http):
    _, registered = await register(http)
    auth = bearer(registered["tokens"]["accessToken"])

    response = await http.patch(
        "/api/v1/auth/preferences",
        json={
            "pairs": ["gbpusd", "EUR/USD", "GBP-USD"],
            "timeframes": ["TIMEFRAME_H4", "TIMEFRAME_D1"],
            "notifyDiscord": True,
        },
        headers=auth,
    )
    assert response.status_code == 200, response.text
    first = response.json()["preferences"]
    assert first["pairs"] == ["GBP/USD", "EUR/USD"]  # normalised, de-duplicated
    assert first["timeframes"] == ["TIMEFRAME_H4", "TIMEFRAME_D1"]
    assert first["notifyDiscord"] is True
    assert first["minConfidence"] == 0.6
    assert first["notifyBrowser"] is True

    # A partial update: only minConfidence changes.
    response = await http.patch(
        "/api/v1/auth/preferences", json={"minConfidence": 0.8}, headers=auth
    )
    assert response.status_code == 200, response.text
    second = response.json()["preferences"]
    assert second["minConfidence"] == 0.8
    assert {k: v for k, v in second.items() if k not in ("minConfidence", "updateTime")} == {
        k: v for k, v in first.items() if k not in ("minConfidence", "updateTime")
    }
    assert second["updateTime"] >= first["updateTime"]

    stored = await http.get("/api/v1/auth/preferences", headers=auth)
    assert stored.status_code == 200, stored.text
    assert stored.json()["preferences"] == second


async def test_patch_preferences_with_an_update_mask_clears_pairs(http):
    _, registered = await register(http)
    auth = bearer(registered["tokens"]["accessToken"])

    response = await http.patch("/api/v1/auth/preferences?updateMask=pairs", json={}, headers=auth)

    assert response.status_code == 200, response.text
    preferences = response.json()["preferences"]
    assert preferences["pairs"] == []
    preferences.pop("updateTime")
    assert preferences == {**DEFAULT_PREFERENCES, "pairs": []}
    stored = await http.get("/api/v1/auth/preferences", headers=auth)
    assert stored.json()["preferences"]["pairs"] == []


async def test_patch_preferences_with_a_bad_pair_names_it(http):
    _, registered = await register(http)
    auth = bearer(registered["tokens"]["accessToken"])

    response = await http.patch(
        "/api/v1/auth/preferences", json={"pairs": ["XXXYYY"]}, headers=auth
    )

    body = error(response, 400, 3)
    assert set(violations(body)) == {"preferences.pairs[0]"}
    # Nothing was changed.
    stored = await http.get("/api/v1/auth/preferences", headers=auth)
    assert stored.json()["preferences"]["pairs"] == DEFAULT_PREFERENCES["pairs"]


async def test_patch_preferences_names_every_bad_field(http):
    _, registered = await register(http)

    response = await http.patch(
        "/api/v1/auth/preferences",
        json={"pairs": ["EUR/USD", "nope"], "minConfidence": 1.5},
        headers=bearer(registered["tokens"]["accessToken"]),
    )

    body = error(response, 400, 3)
    assert set(violations(body)) == {"preferences.pairs[1]", "preferences.min_confidence"}


async def test_patch_preferences_with_an_unknown_mask_path_is_400(http):
    _, registered = await register(http)

    response = await http.patch(
        "/api/v1/auth/preferences?updateMask=colour",
        json={},
        headers=bearer(registered["tokens"]["accessToken"]),
    )

    body = error(response, 400, 3)
    assert set(violations(body)) == {"update_mask"}


# --- public keys ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/auth/jwks", "/.well-known/jwks.json"])
async def test_jwks_is_public_and_holds_the_ed25519_key(http, path):
    _, registered = await register(http)
    kid = jwt.get_unverified_header(registered["tokens"]["accessToken"])["kid"]

    response = await http.get(path)

    assert response.status_code == 200, response.text
    keys = response.json()["keys"]
    assert len(keys) >= 1
    key = next(k for k in keys if k["kid"] == kid)
    assert key["kty"] == "OKP"
    assert key["crv"] == "Ed25519"
    assert key["alg"] == "EdDSA"
    assert key["use"] == "sig"
    assert len(base64.urlsafe_b64decode(key["x"] + "=" * (-len(key["x"]) % 4))) == 32
    assert "d" not in key  # never the private part
    # The published key really verifies the service's tokens.
    public = jwt.PyJWK.from_dict(key).key
    claims = jwt.decode(
        registered["tokens"]["accessToken"], public, algorithms=["EdDSA"], audience="aifx"
    )
    assert claims["sub"] == registered["user"]["id"]


# --- what Envoy answers itself -------------------------------------------------------


# Paths outside /api/ are the edge's (the dashboard): its tests are in tests/edge.
@pytest.mark.parametrize("path", ["/api/v1/auth/nope", "/api/v2/whatever"])
async def test_unknown_path_is_404_json(http, path):
    body = error(await http.get(path), 404, 5)

    assert path in body["message"]


async def test_unknown_query_parameter_is_400_json(http):
    body = error(await http.get("/api/v1/auth/jwks?colour=blue"), 400, 3)

    assert "colour" in body["message"]


async def test_internal_service_is_not_routed(edge: EdgeStack, http):
    """AuthInternalService has no REST mapping, and Envoy must not proxy it to a gRPC
    client either, even one holding the service credential."""
    response = await http.post(
        "/aifx.auth.v1.AuthInternalService/GetUserPreferences", json={"userId": "x"}
    )
    assert response.status_code == 404, response.text

    async with grpc.aio.insecure_channel(edge.url.removeprefix("http://")) as channel:
        internal = auth_pb2_grpc.AuthInternalServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await internal.GetUserPreferences(
                auth_pb2.GetUserPreferencesRequest(user_id=str(uuid.uuid4())),
                metadata=[("x-aifx-service-token", load_service_token(edge.settings))],
                timeout=5,
            )
        assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED, refused.value

        # The public service is proxied to gRPC clients as is.
        public = auth_pb2_grpc.AuthServiceStub(channel)
        jwks = await public.GetJwks(auth_pb2.GetJwksRequest(), timeout=5)
        assert jwks.keys[0].kty == "OKP"


async def test_cors_preflight_from_an_allowed_origin(http):
    response = await http.options(
        "/api/v1/auth/login",
        headers={
            "Origin": ALLOWED_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, authorization",
        },
    )

    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "authorization" in response.headers["access-control-allow-headers"]


async def test_cors_response_to_an_allowed_origin_carries_the_header(http):
    response = await http.get("/api/v1/auth/jwks", headers={"Origin": ALLOWED_ORIGIN})

    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN


async def test_cors_preflight_from_another_origin_is_not_allowed(http):
    response = await http.options(
        "/api/v1/auth/login",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    )

    assert "access-control-allow-origin" not in response.headers
    other = await http.get("/api/v1/auth/jwks", headers={"Origin": "http://evil.example"})
    assert other.status_code == 200
    assert "access-control-allow-origin" not in other.headers


async def test_upstream_down_is_503_json(tmp_path: Path):
    """A second Envoy whose auth_svc address has nothing listening."""
    settings = envoy_settings(make_settings(tmp_path / "var"), auth_port=free_port())
    async with running_envoy(settings, tmp_path / "envoy") as envoy, http_client(envoy.url) as http:
        response = await http.post(
            "/api/v1/auth/login", json={"identifier": "someone", "password": PASSWORD}
        )
        body = error(response, 503, 14)
        jwks = await http.get("/api/v1/auth/jwks")
        error(jwks, 503, 14)

    assert "unavailable" in body["message"]


async def test_patch_preferences_with_timeframes_as_traders_write_them(http):
    _, registered = await register(http)
    auth = bearer(registered["tokens"]["accessToken"])

    response = await http.patch(
        "/api/v1/auth/preferences", json={"timeframes": ["1h", "4H", "TIMEFRAME_D1"]}, headers=auth
    )

    assert response.status_code == 200, response.text
    assert response.json()["preferences"]["timeframes"] == [
        "TIMEFRAME_H1",
        "TIMEFRAME_H4",
        "TIMEFRAME_D1",
    ]
    refused = await http.patch(
        "/api/v1/auth/preferences", json={"timeframes": ["1h", "5m"]}, headers=auth
    )
    body = error(refused, 400, 3)
    assert set(violations(body)) == {"timeframes[1]"}
    assert "15m, 1h, 4h, 1d" in body["message"]
    stored = await http.get("/api/v1/auth/preferences", headers=auth)
    assert stored.json()["preferences"]["timeframes"] == [
        "TIMEFRAME_H1",
        "TIMEFRAME_H4",
        "TIMEFRAME_D1",
    ]


async def test_patch_discord_dm_modes_as_words_and_a_bad_one_named(http):
    _, registered = await register(http)
    auth = bearer(registered["tokens"]["accessToken"])

    response = await http.patch(
        "/api/v1/auth/preferences",
        json={"discordNotifications": {"signal": "silent", "stopLossHit": "OFF"}},
        headers=auth,
    )

    assert response.status_code == 200, response.text
    modes = response.json()["preferences"]["discordNotifications"]
    assert modes["signal"] == "NOTIFICATION_MODE_SILENT"
    assert modes["stopLossHit"] == "NOTIFICATION_MODE_OFF"
    assert modes["takeProfitHit"] == "NOTIFICATION_MODE_ON"
    refused = await http.patch(
        "/api/v1/auth/preferences",
        json={"discordNotifications": {"signal": "loud"}},
        headers=auth,
    )
    body = error(refused, 400, 3)
    assert body["message"] == (
        'signal: "loud" is not a notification mode; use one of on, silent, off'
    )
    stored = await http.get("/api/v1/auth/preferences", headers=auth)
    assert stored.json()["preferences"]["discordNotifications"]["signal"] == (
        "NOTIFICATION_MODE_SILENT"
    )


# --- Discord linking -----------------------------------------------------------------


async def test_discord_link_code_link_and_unlink_over_rest(edge: EdgeStack, http):
    """The web half of linking: a code over REST, the notifier's /link over gRPC, the
    link in /me, and DELETE /api/v1/auth/discord."""
    _, registered = await register(http)
    headers = bearer(registered["tokens"]["accessToken"])
    created = await http.post("/api/v1/auth/discord/link-code", json={}, headers=headers)
    assert created.status_code == 200, created.text
    code = created.json()
    assert set(code) == {"code", "expireTime", "instructions"} and RFC3339.match(code["expireTime"])
    assert code["instructions"] == f"/link {code['code']}"

    internal = auth_pb2_grpc.AuthInternalServiceStub(edge.auth.channel)
    await internal.LinkDiscordAccount(
        auth_pb2.LinkDiscordAccountRequest(
            code=code["code"], discord_user_id="998877665544332211", discord_username="fx"
        ),
        metadata=(("x-aifx-service-token", load_service_token(edge.settings)),),
    )
    me = (await http.get("/api/v1/auth/me", headers=headers)).json()
    assert me["discord"]["discordUserId"] == "998877665544332211"
    assert me["discord"]["dmReachable"] is True

    assert (await http.delete("/api/v1/auth/discord", headers=headers)).status_code == 200
    assert "discord" not in (await http.get("/api/v1/auth/me", headers=headers)).json()
    again = error(await http.delete("/api/v1/auth/discord", headers=headers), 404, 5)
    assert "no Discord account is linked" in again["message"]


async def test_discord_endpoints_need_a_token_at_envoy(http):
    for response in (
        await http.post("/api/v1/auth/discord/link-code", json={}),
        await http.delete("/api/v1/auth/discord"),
    ):
        assert "Jwt is missing" in error(response, 401, 16)["message"]


async def test_internal_discord_methods_are_not_routed_by_envoy(edge: EdgeStack):
    """Only the notifier links accounts: through Envoy, even with the service credential,
    the internal Discord methods do not exist."""
    credential = [("x-aifx-service-token", load_service_token(edge.settings))]
    async with grpc.aio.insecure_channel(edge.url.removeprefix("http://")) as channel:
        internal = auth_pb2_grpc.AuthInternalServiceStub(channel)
        for call in (
            internal.LinkDiscordAccount(
                auth_pb2.LinkDiscordAccountRequest(code="ABCDEFGH", discord_user_id="1"),
                metadata=credential,
                timeout=5,
            ),
            internal.GetUserByDiscordId(
                auth_pb2.GetUserByDiscordIdRequest(discord_user_id="1"),
                metadata=credential,
                timeout=5,
            ),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call
            assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED, refused.value

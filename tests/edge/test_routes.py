"""The edge's HTTP routes with a real auth_svc and inference service: the dashboard's
cookie session (sign-up, sign-in, silent refresh, sign-out, every refusal), the model
page, and the dashboard's files with the app's routes falling back to index.html."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from common.errors import NotFound, RateLimited, Unavailable
from edge.routes import COOKIE, SECURITY_HEADERS, SESSION_HEADER, error_response
from tests.auth.test_auth_rpcs import PASSWORD, names
from tests.edge.edge_stack import serving

SESSION = {SESSION_HEADER: "1"}


@pytest.fixture
async def edge(
    auth,
    inference,
    tmp_path: Path,
) -> AsyncIterator[httpx.AsyncClient]:
    """The edge's web app (its relays not started) on a free port, and a client of it."""
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><div id=root></div>")
    (dist / "assets" / "app-1a2b.js").write_text("console.log('aifx')")
    (dist / "assets" / "app-1a2b.js.gz").write_bytes(gzip.compress(b"console.log('aifx')"))
    (dist / "favicon.svg").write_text("<svg/>")
    settings = auth.settings.replace(
        auth_target=auth.address,
        inference_target=f"127.0.0.1:{inference.server.port}",
        service_token=inference.credential[0][1],
        dashboard_dir=dist,
    )
    async with (
        serving(settings, relay=False) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
    ):
        yield client


async def sign_up(client: httpx.AsyncClient) -> httpx.Response:
    email, username = names()
    body = {"email": email, "username": username, "password": PASSWORD}
    return await client.post("/session/register", json=body, headers=SESSION)


async def test_sign_up_keeps_the_refresh_token_in_an_http_only_cookie(edge):
    reply = await sign_up(edge)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["accessToken"] and body["expiresIn"] > 0 and body["user"]["email"]
    assert "refreshToken" not in reply.text
    cookie = reply.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie and "Path=/session" in cookie
    assert reply.headers["cache-control"] == "no-store"
    # A reload: the cookie alone gives a new access token and who is signed in.
    again = await edge.post("/session/refresh", headers=SESSION)
    assert again.status_code == 200, again.text
    assert again.json()["user"]["id"] == body["user"]["id"]
    assert again.json()["accessToken"] != body["accessToken"]


async def test_sign_in_by_email_or_username_and_sign_out_ends_the_session(edge):
    email, username = names()
    registered = {"email": email, "username": username, "password": PASSWORD}
    assert (await edge.post("/session/register", json=registered, headers=SESSION)).is_success
    edge.cookies.clear()
    by_name = await edge.post(
        "/session/login", json={"identifier": username, "password": PASSWORD}, headers=SESSION
    )
    assert by_name.status_code == 200, by_name.text
    by_email = await edge.post(
        "/session/login", json={"email": email, "password": PASSWORD}, headers=SESSION
    )
    assert by_email.status_code == 200
    out = await edge.post("/session/logout", headers=SESSION)
    assert out.status_code == 204 and f'{COOKIE}=""' in out.headers["set-cookie"]
    assert not edge.cookies.get(COOKIE)
    refused = await edge.post("/session/refresh", headers=SESSION)
    assert refused.status_code == 401 and refused.json()["code"] == "UNAUTHENTICATED"
    # Signing out twice is still done.
    assert (await edge.post("/session/logout", headers=SESSION)).status_code == 204


async def test_a_refresh_token_used_after_sign_out_is_refused_and_its_cookie_cleared(edge):
    assert (await sign_up(edge)).is_success
    stolen = edge.cookies[COOKIE]
    assert (await edge.post("/session/logout", headers=SESSION)).status_code == 204
    edge.cookies.set(COOKIE, stolen)
    refused = await edge.post("/session/refresh", headers=SESSION)
    assert refused.status_code == 401
    assert "sign in again" in refused.json()["message"]
    assert f'{COOKIE}=""' in refused.headers["set-cookie"]


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "code", "words"),
    [
        (
            "/session/login",
            {"email": "a@b.c", "password": "x"},
            {},
            400,
            "INVALID_ARGUMENT",
            "X-AIFX-Session",
        ),
        ("/session/refresh", None, {}, 400, "INVALID_ARGUMENT", "X-AIFX-Session"),
        ("/session/login", {"password": "x"}, SESSION, 400, "INVALID_ARGUMENT", "identifier"),
        (
            "/session/login",
            ["not", "an", "object"],
            SESSION,
            400,
            "INVALID_ARGUMENT",
            "JSON object",
        ),
        (
            "/session/login",
            {"email": "nobody@example.com", "password": "wrong-password-1"},
            SESSION,
            401,
            "UNAUTHENTICATED",
            "",
        ),
        (
            "/session/register",
            {"email": "not-an-email", "username": "ok_name", "password": PASSWORD},
            SESSION,
            400,
            "INVALID_ARGUMENT",
            "email",
        ),
        ("/session/refresh", None, SESSION, 401, "UNAUTHENTICATED", "sign in"),
    ],
)
async def test_session_refusals_say_what_is_wrong(edge, path, body, headers, status, code, words):
    reply = await edge.post(path, json=body, headers=headers)
    assert reply.status_code == status, reply.text
    assert reply.json()["code"] == code and words in reply.text
    assert "Traceback" not in reply.text


async def test_an_address_already_registered_is_a_conflict(edge):
    email, username = names()
    body = {"email": email, "username": username, "password": PASSWORD}
    assert (await edge.post("/session/register", json=body, headers=SESSION)).is_success
    body["username"] = names()[1]
    again = await edge.post("/session/register", json=body, headers=SESSION)
    assert again.status_code == 409 and again.json()["code"] == "ALREADY_EXISTS"


async def test_a_body_too_large_is_refused_before_it_is_read(edge):
    reply = await edge.post("/session/login", content=b"{" + b" " * 100_000 + b"}", headers=SESSION)
    assert reply.status_code == 413


async def test_the_model_page_for_a_signed_in_user(edge, inference):
    token = (await sign_up(edge)).json()["accessToken"]
    reply = await edge.get("/model/info?timeframe=1h", headers={"Authorization": f"Bearer {token}"})
    assert reply.status_code == 200, reply.text
    page = reply.json()
    assert page["modelName"] == "lstm" and page["modelVersion"] in page["versions"]
    assert page["modelCard"].startswith("# Model card")
    assert page["edge"]["demonstrated"] is False
    assert page["edge"]["summary"].startswith("**No demonstrated edge")
    assert page["reliabilityUrl"].startswith("data:image/png;base64,iVBOR")
    daily = await edge.get("/model/info?timeframe=1d", headers={"Authorization": f"Bearer {token}"})
    assert daily.json()["modelName"] == "lstm_daily"


@pytest.mark.parametrize(
    ("query", "authorization", "status", "words"),
    [
        ("timeframe=1h", None, 401, "Authorization: Bearer"),
        ("timeframe=1h", "Bearer forged.token.here", 401, ""),
        ("timeframe=2h", "good", 400, "use one of 15m, 1h, 4h, 1d"),
        ("timeframe=15m", "good", 400, "15m"),
    ],
)
async def test_model_page_refusals(edge, query, authorization, status, words):
    if authorization == "good":
        authorization = f"Bearer {(await sign_up(edge)).json()['accessToken']}"
    headers = {"Authorization": authorization} if authorization else {}
    reply = await edge.get(f"/model/info?{query}", headers=headers)
    assert reply.status_code == status, reply.text
    assert words in reply.json()["message"]


async def test_the_dashboard_files_and_its_routes(edge):
    index = await edge.get("/")
    assert index.status_code == 200 and "id=root" in index.text
    assert index.headers["cache-control"] == "no-cache"
    for name, value in SECURITY_HEADERS.items():
        assert index.headers[name] == value
    asset = await edge.get("/assets/app-1a2b.js")
    assert asset.status_code == 200 and "immutable" in asset.headers["cache-control"]
    # The build's gzipped copy goes to a browser that accepts it (httpx does).
    assert asset.headers["content-encoding"] == "gzip" and asset.text == "console.log('aifx')"
    assert (await edge.get("/favicon.svg")).text == "<svg/>"
    # The app's own routes are the app; a missing asset or a way out of dist is not.
    assert "id=root" in (await edge.get("/positions")).text
    assert (await edge.get("/assets/missing.js")).status_code == 404
    assert (await edge.get("/..%2f..%2fpyproject.toml")).status_code in (403, 404)
    assert (await edge.get("/healthz")).json() == {"status": "serving"}


@pytest.mark.parametrize(
    ("error", "status", "retry_after"),
    [
        (RateLimited("slow down", retry_after_seconds=30.2), 429, "30"),
        (Unavailable("auth is down", retry_after_seconds=1), 503, "1"),
        (Unavailable("auth is down"), 503, None),
        (NotFound("no such card"), 404, None),
    ],
)
def test_an_error_the_same_call_may_outwait_says_when_to_retry(error, status, retry_after):
    response = error_response(error)
    assert response.status == status
    assert response.headers.get("Retry-After") == retry_after

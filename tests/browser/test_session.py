"""Signing up, in and out of the dashboard: the session is a refresh token in an HttpOnly
cookie (no script can read it), restored on reload, ended by signing out; a wrong
password is said inline, in the form."""

from __future__ import annotations

import aiohttp
from playwright.async_api import Page, expect

from tests.browser.helpers import (
    SESSION_COOKIE,
    Rest,
    new_user,
    screenshot,
    sign_up_in_page,
)
from tests.full_stack import FullStack


async def test_sign_up_opens_the_board_with_a_live_feed(page: Page) -> None:
    user = new_user()
    await page.goto("/")
    await expect(page.get_by_test_id("login-form")).to_be_visible()
    await screenshot(page, "sign-in")

    await sign_up_in_page(page, user)

    await expect(page.get_by_test_id("signal-board")).to_be_visible()
    await expect(page.get_by_test_id("connection-state")).to_have_attribute(
        "data-state", "live", timeout=15_000
    )
    assert page.url.endswith("/"), page.url


async def test_a_wrong_password_is_said_in_the_form(page: Page, stack: FullStack) -> None:
    user = new_user()
    await Rest.sign_up(stack.url, user)
    await page.goto("/")

    await page.get_by_test_id("login-email").fill(user.email)
    await page.get_by_test_id("login-password").fill("not the password at all")
    await page.get_by_test_id("login-submit").click()

    error = page.get_by_test_id("login-error")
    await expect(error).to_be_visible()
    await expect(error).to_contain_text("Wrong email/username or password")
    # Still the form, with what was typed, ready for another try.
    await expect(page.get_by_test_id("login-form")).to_be_visible()
    await expect(page.get_by_test_id("login-email")).to_have_value(user.email)
    await expect(page.get_by_test_id("login-submit")).to_be_enabled()
    await expect(page.get_by_test_id("user-name")).to_have_count(0)

    # The right password then signs in (the failure did not lock the form).
    await page.get_by_test_id("login-password").fill(user.password)
    await page.get_by_test_id("login-submit").click()
    await expect(page.get_by_test_id("user-name")).to_have_text(user.username)


async def test_the_session_survives_a_reload_and_its_cookie_is_http_only(
    page: Page,
) -> None:
    user = new_user()
    await sign_up_in_page(page, user)

    cookies = {c["name"]: c for c in await page.context.cookies()}
    assert SESSION_COOKIE in cookies, cookies
    refresh_cookie = cookies[SESSION_COOKIE]
    assert refresh_cookie["httpOnly"], refresh_cookie
    assert refresh_cookie["sameSite"] == "Strict", refresh_cookie
    assert refresh_cookie["path"] == "/session", refresh_cookie

    await page.reload()
    await expect(page.get_by_test_id("user-name")).to_have_text(user.username)
    await expect(page.get_by_test_id("signal-board")).to_be_visible()
    script_cookies = await page.evaluate("document.cookie")
    assert SESSION_COOKIE not in script_cookies, script_cookies
    assert refresh_cookie["value"] not in script_cookies
    # Nor does the page keep a token in storage a script could read.
    stored = await page.evaluate(
        "JSON.stringify({local: {...localStorage}, session: {...sessionStorage}})"
    )
    assert refresh_cookie["value"] not in stored, stored
    assert "eyJ" not in stored, f"an access token in web storage: {stored}"


async def test_sign_out_ends_the_session(page: Page, stack: FullStack) -> None:
    user = new_user()
    await sign_up_in_page(page, user)
    cookie = next(c for c in await page.context.cookies() if c["name"] == SESSION_COOKIE)

    await page.get_by_test_id("logout-button").click()

    await expect(page.get_by_test_id("login-form")).to_be_visible()
    await expect(page.get_by_test_id("user-name")).to_have_count(0)
    assert SESSION_COOKIE not in {c["name"] for c in await page.context.cookies()}
    await page.reload()
    await expect(page.get_by_test_id("login-form")).to_be_visible()
    # The refresh token was revoked, not only forgotten by the browser.
    headers = {"X-AIFX-Session": "1", "Cookie": f"{SESSION_COOKIE}={cookie['value']}"}
    async with (
        aiohttp.ClientSession(stack.url) as client,
        client.post("/session/refresh", headers=headers) as response,
    ):
        assert response.status == 401, await response.text()

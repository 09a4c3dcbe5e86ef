"""What the browser tests share: where the browser and the build are, a REST client that
signs a dashboard user in from the test (to check what the page did through the API),
waiting on conditions with a deadline, and the optional screenshots."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from playwright.async_api import Page, expect

from common.settings import REPO_ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
DIST_INDEX = REPO_ROOT / "edge" / "dashboard" / "dist" / "index.html"
SCREENSHOT_DIR = REPO_ROOT / "docs" / "screenshots"
SESSION_COOKIE = "aifx_session"
PASSWORD = "correct horse battery staple"

T = TypeVar("T")


@dataclass(frozen=True)
class User:
    email: str
    username: str
    password: str = PASSWORD


def new_user() -> User:
    """A user nobody has signed up yet."""
    tag = uuid.uuid4().hex[:10]
    return User(email=f"trader-{tag}@example.com", username=f"trader_{tag}")


class PageErrors:
    """Uncaught script errors of a page, for a test that must not have any."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def check(self) -> None:
        assert not self.errors, f"uncaught errors in the page: {self.errors}"


async def eventually(
    probe: Callable[[], Awaitable[T | None]], what: str, within: float = 30.0
) -> T:
    """The first truthy answer of `probe` (asked every 0.2 s) within `within` seconds."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"not within {within:.0f} s: {what} (last: {last!r})")


class Rest:
    """The stack's REST API (through Envoy) as one user, signed in from the test."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {token}"}

    @classmethod
    async def sign_in(cls, base_url: str, user: User) -> Rest:
        """Sign `user` in as the dashboard does (POST /session/login): a session of its
        own, beside the browser's."""
        body = await request(
            base_url,
            "POST",
            "/session/login",
            json={"email": user.email, "password": user.password},
            headers={"X-AIFX-Session": "1"},
        )
        return cls(base_url, body["accessToken"])

    @classmethod
    async def sign_up(cls, base_url: str, user: User) -> Rest:
        body = await request(
            base_url,
            "POST",
            "/session/register",
            json={"email": user.email, "username": user.username, "password": user.password},
            headers={"X-AIFX-Session": "1"},
        )
        return cls(base_url, body["accessToken"])

    async def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return await request(self.base_url, method, path, headers=self.headers, **kwargs)

    async def positions(self, **params: str) -> list[dict[str, Any]]:
        body = await self.call("GET", "/api/v1/positions", params={"pageSize": "100", **params})
        return list(body.get("positions", []))

    async def price(self, pair: str = "EURUSD") -> Decimal:
        body = await self.call("GET", f"/api/v1/market/price/{pair}")
        return Decimal(str(body["price"]["price"]))

    async def performance(self) -> dict[str, Any]:
        return await self.call("GET", "/api/v1/positions/performance")


async def request(base_url: str, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    """One JSON call; a failure says what the server answered."""
    async with (
        aiohttp.ClientSession(base_url) as client,
        client.request(method, path, **kwargs) as response,
    ):
        text = await response.text()
        if response.status >= 400:
            raise AssertionError(f"{method} {path}: HTTP {response.status}: {text[:500]}")
        return await response.json(content_type=None) if text else {}


def screenshots_wanted() -> bool:
    return os.environ.get("AIFX_SCREENSHOTS") == "1"


async def screenshot(page: Page, name: str) -> None:
    """docs/screenshots/<name>.png of the page as it is, when AIFX_SCREENSHOTS=1 (so CI
    never rewrites the committed pictures). Transitions are finished and the passing
    toasts hidden, so the picture shows the page itself."""
    if not screenshots_wanted():
        return
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    await page.screenshot(
        path=str(SCREENSHOT_DIR / f"{name}.png"),
        animations="disabled",
        style='[data-testid="toasts"] { visibility: hidden !important; }',
    )


async def sign_up_in_page(page: Page, user: User) -> None:
    """Create `user`'s account through the dashboard's form; return once signed in."""
    await page.goto("/")
    await page.get_by_test_id("auth-tab-signup").click()
    await page.get_by_test_id("signup-email").fill(user.email)
    await page.get_by_test_id("signup-username").fill(user.username)
    await page.get_by_test_id("signup-password").fill(user.password)
    await page.get_by_test_id("signup-submit").click()
    await expect(page.get_by_test_id("user-name")).to_have_text(user.username)


async def register(page: Page, user: User | None = None) -> User:
    """A new user whose session cookie `page`'s context holds: the account is created
    through the context (POST /session/register; the context keeps the HttpOnly cookie
    it sets), so the next page load is signed in."""
    user = user or new_user()
    response = await page.context.request.post(
        "/session/register",
        headers={"X-AIFX-Session": "1"},
        data={"email": user.email, "username": user.username, "password": user.password},
    )
    assert response.ok, f"sign-up: HTTP {response.status}: {await response.text()}"
    return user


async def signed_up(page: Page, user: User | None = None) -> User:
    """A new user signed in on `page`, the quick way (see `register`): the dashboard
    opens and restores the session from the cookie."""
    user = await register(page, user)
    await page.goto("/")
    await expect(page.get_by_test_id("user-name")).to_have_text(user.username)
    return user

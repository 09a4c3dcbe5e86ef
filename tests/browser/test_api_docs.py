"""The REST API explorer at /api/docs as a developer uses it: Swagger UI lists every
operation of gen/openapi.json under the dashboard's CSP (a blocked script or style
would be a console error), and "Try it out" on a public operation calls the live API
through Envoy."""

from __future__ import annotations

import json

from playwright.async_api import ConsoleMessage, Page, expect

from common.settings import REPO_ROOT
from tests.browser.helpers import screenshot


def operation_count() -> int:
    document = json.loads((REPO_ROOT / "gen" / "openapi.json").read_text())
    return sum(len(methods) for methods in document["paths"].values())


async def test_the_explorer_lists_every_operation_and_calls_the_api(page: Page) -> None:
    console: list[str] = []

    def record(message: ConsoleMessage) -> None:
        if message.type == "error":
            console.append(message.text)

    page.on("console", record)
    response = await page.goto("/api/docs")
    assert response is not None and response.ok
    assert "script-src 'self'" in (response.headers.get("content-security-policy") or "")
    await expect(page.locator(".opblock")).to_have_count(operation_count(), timeout=20_000)
    await expect(page.locator(".information-container .title")).to_contain_text("AIFX REST API")
    await screenshot(page, "api-docs")

    # Try the public JWKS read: the live answer is shown under the operation.
    jwks = page.locator("#operations-AuthService-AuthService_GetJwks")
    await jwks.locator(".opblock-summary").click()
    await jwks.get_by_role("button", name="Try it out").click()
    async with page.expect_response(lambda r: r.url.endswith("/api/v1/auth/jwks")) as answer:
        await jwks.get_by_role("button", name="Execute").click()
    assert (await answer.value).status == 200
    await expect(
        jwks.locator(".live-responses-table tbody .response-col_status").first
    ).to_contain_text("200")
    assert not [m for m in console if "Content Security Policy" in m], console


async def test_the_document_is_served_as_json(page: Page) -> None:
    response = await page.request.get("/api/openapi.json")
    assert response.ok
    document = await response.json()
    assert document["openapi"].startswith("3.")
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"

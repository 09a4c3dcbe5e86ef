"""A service stopped mid-session: the dashboard says so (an error state, not a blank
page) and recovers by itself once the service is back. It stops signal_svc of the shared
stack, so it runs after every other browser test (see conftest)."""

from __future__ import annotations

import re

import aiohttp
import pytest
from playwright.async_api import Page, expect

from tests.browser.helpers import Rest, eventually, screenshot, signed_up
from tests.full_stack import FullStack

UNAVAILABLE = re.compile("unavailable", re.IGNORECASE)


async def serving(rest: Rest) -> bool:
    """signal_svc answers through Envoy again (the pairs on offer)."""
    try:
        await rest.call("GET", "/api/v1/market/pairs")
    except (AssertionError, aiohttp.ClientError):
        return False
    return True


@pytest.mark.disturbs_stack
async def test_a_stopped_signal_service_shows_an_error_and_recovers(
    page: Page, stack: FullStack
) -> None:
    rest = await Rest.sign_in(stack.url, await signed_up(page))
    card = page.get_by_test_id("signal-card-EURUSD")
    await expect(card).to_have_attribute("data-signal-id", re.compile(r".+"), timeout=20_000)
    await expect(page.get_by_test_id("connection-state")).to_have_attribute("data-state", "live")

    stack.stop("signal")
    try:
        # The open page keeps what it showed...
        await expect(page.get_by_test_id("signal-board")).to_be_visible()
        await expect(page.get_by_test_id("user-name")).to_be_visible()
        # ...and what needs signal_svc says it is unavailable.
        await page.get_by_test_id("nav-signals").click()
        await expect(page.get_by_test_id("signals-error")).to_contain_text(UNAVAILABLE)
        # A reload during the outage is not a blank page either.
        await page.reload()
        await expect(page.get_by_test_id("user-name")).to_be_visible()
        await expect(page.get_by_test_id("signals-error")).to_contain_text(UNAVAILABLE)
        await page.get_by_test_id("nav-dashboard").click()
        await expect(page.get_by_test_id("service-banner")).to_contain_text(UNAVAILABLE)
        # The followed pair's card says why it has no signal (not "you follow no pairs").
        await expect(page.get_by_test_id("signal-error-EURUSD")).to_contain_text(UNAVAILABLE)
        await expect(page.get_by_test_id("chart-error")).to_be_visible()
        await screenshot(page, "outage")
    finally:
        stack.start("signal")
    await eventually(lambda: serving(rest), "signal_svc serving again", within=60)

    # Recovered without a reload: the banner goes, the board fills, signals flow live.
    await expect(page.get_by_test_id("service-banner")).to_have_count(0, timeout=30_000)
    await expect(page.get_by_test_id("signal-error-EURUSD")).to_have_count(0, timeout=30_000)
    await expect(page.get_by_test_id("chart-error")).to_have_count(0, timeout=30_000)
    await expect(card).to_have_attribute("data-signal-id", re.compile(r".+"), timeout=30_000)
    before = await card.get_attribute("data-signal-id")
    await expect(card).not_to_have_attribute("data-signal-id", before or "", timeout=30_000)
    await expect(page.get_by_test_id("connection-state")).to_have_attribute("data-state", "live")
    await page.get_by_test_id("nav-signals").click()
    await expect(page.get_by_test_id("signals-table")).to_be_visible(timeout=30_000)


async def page_served(stack: FullStack) -> bool:
    """The edge serves the dashboard through Envoy again."""
    try:
        async with aiohttp.ClientSession(stack.url) as client, client.get("/") as response:
            return response.status == 200
    except aiohttp.ClientError:
        return False


@pytest.mark.disturbs_stack
async def test_a_restarted_edge_shows_the_feed_reconnecting_then_live(
    page: Page, stack: FullStack
) -> None:
    await signed_up(page)
    pill = page.get_by_test_id("connection-state")
    await expect(pill).to_have_attribute("data-state", "live", timeout=15_000)
    card = page.get_by_test_id("signal-card-EURUSD")
    await expect(card).to_have_attribute("data-signal-id", re.compile(r".+"), timeout=20_000)

    stack.stop("edge")  # the Socket.IO server: the page's live feed drops
    try:
        await expect(pill).to_have_attribute("data-state", re.compile("reconnecting|offline"))
        await expect(pill).to_contain_text(re.compile("Reconnecting|Offline"))
        # The page stays, showing what it had.
        await expect(page.get_by_test_id("signal-board")).to_be_visible()
        await expect(card).to_have_attribute("data-signal-id", re.compile(r".+"))
    finally:
        stack.start("edge")
    await eventually(lambda: page_served(stack), "the edge serving again", within=60)

    # The socket reconnects by itself (backoff at most 10 s) and signals flow again.
    await expect(pill).to_have_attribute("data-state", "live", timeout=30_000)
    before = await card.get_attribute("data-signal-id")
    await expect(card).not_to_have_attribute("data-signal-id", before or "", timeout=30_000)


@pytest.mark.disturbs_stack
async def test_a_dead_model_server_marks_signals_technical_fallback_then_model_again(
    page: Page, stack: FullStack
) -> None:
    """The model server SIGKILLed: the board's signal says it came from the technical
    fallback (no error shown, the feed stays live); started again, model signals return
    without a reload."""
    await signed_up(page)
    source = page.get_by_test_id("signal-source-EURUSD")
    await expect(source).to_contain_text("Model", timeout=30_000)
    stack.processes["model_server"].kill()
    try:
        await expect(source).to_contain_text("Technical fallback", timeout=30_000)
        await expect(page.get_by_test_id("service-banner")).to_have_count(0)
        await expect(page.get_by_test_id("connection-state")).to_have_attribute(
            "data-state", "live"
        )
        await screenshot(page, "fallback")
    finally:
        stack.processes["model_server"].wait(15)
        stack.start("model_server")
    await expect(source).to_contain_text("Model", timeout=60_000)

"""Preferences chosen in Settings are saved, survive a reload, and are honoured: the board
shows only the followed pairs, and signal toasts come for those pairs at the chosen
minimum confidence."""

from __future__ import annotations

import re

from playwright.async_api import Page, expect

from tests.browser.helpers import Rest, screenshot, signed_up
from tests.full_stack import FullStack

FOLLOWED = ("EURUSD", "GBPUSD")


async def test_preferences_are_saved_and_honoured(page: Page, stack: FullStack) -> None:
    user = await signed_up(page)
    # A new user follows EUR/USD only (the default preferences).
    await expect(page.get_by_test_id("signal-card-EURUSD")).to_be_visible()
    await expect(page.locator('[data-testid^="signal-card-"]')).to_have_count(1)

    await page.get_by_test_id("nav-settings").click()
    await expect(page.get_by_test_id("preferences")).to_be_visible()
    await expect(page.get_by_test_id("pref-pair-EURUSD")).to_be_checked()
    await page.get_by_test_id("pref-pair-GBPUSD").check()
    await expect(page.get_by_test_id("pref-pair-USDJPY")).not_to_be_checked()
    await page.get_by_test_id("pref-tf-1h").check()
    await page.get_by_test_id("pref-tf-1d").check()
    await page.get_by_test_id("pref-min-confidence").fill("0.05")
    await expect(page.get_by_test_id("pref-min-confidence-value")).to_have_text("5%")
    await page.get_by_test_id("pref-save").click()
    await expect(page.get_by_test_id("pref-saved")).to_be_visible()
    await screenshot(page, "settings")

    # Saved on the server...
    rest = await Rest.sign_in(stack.url, user)
    saved = (await rest.call("GET", "/api/v1/auth/preferences"))["preferences"]
    assert sorted(saved["pairs"]) == ["EUR/USD", "GBP/USD"], saved
    assert set(saved["timeframes"]) == {"TIMEFRAME_H1", "TIMEFRAME_D1"}, saved
    assert abs(saved["minConfidence"] - 0.05) < 1e-6, saved

    # ...and shown again after a reload.
    await page.reload()
    await expect(page.get_by_test_id("pref-pair-GBPUSD")).to_be_checked()
    await expect(page.get_by_test_id("pref-pair-EURUSD")).to_be_checked()
    await expect(page.get_by_test_id("pref-pair-USDJPY")).not_to_be_checked()
    await expect(page.get_by_test_id("pref-tf-1d")).to_be_checked()
    await expect(page.get_by_test_id("pref-tf-4h")).not_to_be_checked()
    await expect(page.get_by_test_id("pref-min-confidence-value")).to_have_text("5%")

    # The board shows the followed pairs and no other.
    await page.get_by_test_id("nav-dashboard").click()
    cards = page.locator('[data-testid^="signal-card-"]')
    await expect(cards).to_have_count(len(FOLLOWED))
    for code in FOLLOWED:
        await expect(page.get_by_test_id(f"signal-card-{code}")).to_be_visible()
    # GBP/USD has daily signals only: its card follows the 1d series the user chose.
    await expect(page.get_by_test_id("signal-action-GBPUSD")).to_be_visible(timeout=20_000)

    # Signal toasts come for the followed pairs (at 5 % nearly every signal qualifies).
    toast = page.get_by_test_id("toast").filter(
        has_text=re.compile(r"^(BUY|SELL|HOLD) (EUR/USD|GBP/USD) \((1h|1d)\)")
    )
    await expect(toast.first).to_be_visible(timeout=20_000)
    titles = await page.get_by_test_id("toast").locator("strong").all_inner_texts()
    for title in titles:
        if re.match(r"^(BUY|SELL|HOLD) ", title):
            assert re.search(r"(EUR/USD|GBP/USD) \((1h|1d)\)$", title), titles

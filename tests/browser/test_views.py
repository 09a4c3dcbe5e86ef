"""The dashboard's other pages as a user reads them (signal history with its filters, the
model page), and the board at phone width (no sideways scrolling)."""

from __future__ import annotations

import re

from playwright.async_api import Browser, Page, ViewportSize, expect

from tests.browser.helpers import PageErrors, eventually, screenshot, signed_up
from tests.full_stack import FullStack

PHONE: ViewportSize = {"width": 375, "height": 812}


async def column(page: Page, index: int) -> list[str]:
    """The text of one column of the signal history table (0-based)."""
    cells = page.get_by_test_id("signals-table").locator(f"tbody tr td:nth-child({index + 1})")
    return await cells.all_inner_texts()


async def choose(page: Page, filter_id: str, value: str, query: str) -> None:
    """Pick `value` in a signal history filter; return once the query it made (`query`
    in its URL) was answered."""
    async with page.expect_response(
        lambda r: "/api/v1/trading/signals" in r.url and query in r.url
    ) as answer:
        await page.get_by_test_id(filter_id).select_option(value)
    assert (await answer.value).ok
    await expect(page.get_by_test_id("signals-error")).to_have_count(0)


async def only(page: Page, index: int, value: str) -> None:
    """Wait until the table lists rows, all with `value` in column `index`."""

    async def shown() -> bool:
        cells = await column(page, index)
        return bool(cells) and set(cells) == {value}

    await eventually(shown, f"only {value!r} in column {index}", within=10)


async def test_signal_history_filters_and_shows_a_signal_on_the_chart(page: Page) -> None:
    await signed_up(page)
    await page.get_by_test_id("nav-signals").click()
    table = page.get_by_test_id("signals-table")
    await expect(table.locator("tbody tr").first).to_be_visible()
    await screenshot(page, "signals")

    # One pair (another than EUR/USD when the history lists one).
    listed = await column(page, 1)
    pair = next((p for p in listed if p != "EUR/USD"), "EUR/USD")
    await choose(page, "filter-pair", pair, f"pair={pair[:3]}%2F{pair[4:]}")
    await only(page, 1, pair)

    # Pair, timeframe and action together: those of a signal listed, so that there is
    # one to show even early in the replay.
    if pair != "EUR/USD":
        await choose(page, "filter-pair", "EUR/USD", "pair=EUR%2FUSD")
        await only(page, 1, "EUR/USD")
    timeframe = (await column(page, 2))[0]
    await choose(page, "filter-timeframe", timeframe, f"timeframe={timeframe}")
    await only(page, 2, timeframe)
    action = (await column(page, 3))[0]
    await choose(page, "filter-action", action.lower(), f"action={action.lower()}")
    await only(page, 3, action)
    assert set(await column(page, 1)) == {"EUR/USD"}
    assert set(await column(page, 2)) == {timeframe}

    # A row opens the dashboard with that signal's levels drawn on the chart.
    await table.locator("tbody tr").first.click()
    await expect(page.get_by_test_id("signal-board")).to_be_visible()
    chart = page.get_by_test_id("price-chart")
    await expect(chart).to_have_attribute("data-pair", "EURUSD")
    await expect(chart).to_have_attribute("data-timeframe", timeframe)
    legend = page.get_by_test_id("chart-legend")
    await expect(legend).to_contain_text("Entry")
    if action != "HOLD":
        await expect(legend).to_contain_text("Stop-loss")
        await expect(legend).to_contain_text("Take-profit")
    await expect(chart.locator("canvas").first).to_be_visible()
    await expect(page.get_by_test_id("chart-loading")).to_have_count(0)
    await screenshot(page, "board")


async def test_the_model_page_explains_the_model(page: Page) -> None:
    await signed_up(page)
    await page.get_by_test_id("nav-model").click()
    await expect(page.get_by_test_id("model-page")).to_be_visible()
    await expect(page.get_by_test_id("model-verdict")).to_be_visible()
    await expect(page.get_by_test_id("model-name")).to_have_text(re.compile(r"\S+ v\S+"))
    await expect(page.get_by_test_id("model-metrics")).to_be_visible()
    await expect(page.get_by_test_id("model-card")).to_contain_text(re.compile(r"\w{3,}"))
    reliability = page.get_by_test_id("model-reliability")
    await expect(reliability).to_be_visible()
    await reliability.scroll_into_view_if_needed()
    await expect(reliability).to_have_js_property("complete", True)
    assert await reliability.evaluate("img => img.naturalWidth") > 0
    await page.evaluate("scrollTo(0, 0)")
    await screenshot(page, "model")

    await page.get_by_test_id("model-tf-1d").click()
    await expect(page.get_by_test_id("model-name")).to_have_text(re.compile(r"\S+ v\S+"))
    await expect(page.get_by_test_id("model-error")).to_have_count(0)


async def test_the_board_fits_a_phone(browser: Browser, stack: FullStack) -> None:
    context = await browser.new_context(
        base_url=stack.url, viewport=PHONE, is_mobile=True, has_touch=True
    )
    try:
        page = await context.new_page()
        errors = PageErrors(page)
        await signed_up(page)
        card = page.get_by_test_id("signal-card-EURUSD")
        await expect(card.get_by_test_id("signal-action-EURUSD")).to_be_visible(timeout=20_000)
        await expect(page.get_by_test_id("price-chart")).to_be_visible()
        await expect(page.get_by_test_id("open-positions")).to_be_visible()

        overflow = await page.evaluate(
            """() => ({
                page: document.documentElement.scrollWidth,
                body: document.body.scrollWidth,
                viewport: document.documentElement.clientWidth,
                // Sticking out of the page, not inside a box that scrolls or clips.
                wide: [...document.querySelectorAll("body *")]
                    .filter(e => e.getBoundingClientRect().right > innerWidth + 1)
                    .filter(e => {
                        for (let a = e.parentElement; a && a !== document.body;
                             a = a.parentElement) {
                            if (getComputedStyle(a).overflowX !== "visible") return false;
                        }
                        return true;
                    })
                    .slice(0, 5)
                    .map(e => (e.dataset.testid || e.className || e.tagName) + ""),
            })"""
        )
        assert overflow["page"] <= overflow["viewport"], overflow
        assert overflow["body"] <= overflow["viewport"], overflow
        assert not overflow["wide"], overflow
        box = await card.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]

        # The navigation folds into a menu that opens.
        await page.get_by_test_id("nav-toggle").click()
        await expect(page.get_by_test_id("nav-positions")).to_be_visible()
        await page.get_by_test_id("nav-toggle").click()
        await screenshot(page, "phone")
        errors.check()
    finally:
        await context.close()

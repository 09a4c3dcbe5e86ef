"""The trading flow a new user goes through: sign up, a signal arrives live on the board,
one click opens a position from it, its unrealized PnL follows the quotes, it closes on
its stop-loss or take-profit, and the performance page counts it. The row's SL/TP
control sets levels that close a position; a double click on "Open" opens one position.

The replay is fast (see conftest), so a position on a signal's levels lives a few
seconds, and by the click the price may have passed a level of the signal (the API then
refuses it, and the card says why): such races are retried on the next signal, at most
three times; every other refusal fails the test."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page, Request, Response, expect

from tests.browser.helpers import (
    Rest,
    eventually,
    new_user,
    register,
    screenshot,
    sign_up_in_page,
    signed_up,
)
from tests.full_stack import FullStack

PIP = Decimal("0.0001")
CLOSED_ON_LEVEL = {"CLOSE_REASON_TAKE_PROFIT", "CLOSE_REASON_STOP_LOSS"}
# What the PnL cell of a position row says: "+12.30 USD", "\u22124.00 USD" (a minus
# sign), "0.00 USD".
MONEY = re.compile("^[+\u2212]?[\\d,]+\\.\\d\\d [A-Z]{3}$")
# The price moved past a level of the signal between its candle close and the click.
OVERTAKEN = re.compile(r"must be (above|below) the entry price")
# The price moved past a new level while it was typed.
OVERTAKEN_NOW = re.compile(r"must be (above|below) the current price")
ATTEMPTS = 3


async def press_open(page: Page, double: bool = False) -> Response:
    """Click (or double-click) "Open" on the EUR/USD card once it offers a BUY or SELL;
    the answer to the POST it made. A new HOLD signal can disable the button between
    Playwright's check and the click (ten signals a second): then it is clicked again."""
    button = page.get_by_test_id("signal-card-EURUSD").get_by_test_id("open-position-button")
    sent: list[Request] = []

    def note(request: Request) -> None:
        if request.method == "POST" and request.url.endswith("/api/v1/positions"):
            sent.append(request)

    async def any_sent() -> bool:
        return bool(sent)

    page.on("request", note)
    try:
        for _ in range(ATTEMPTS):
            await expect(button).to_be_enabled(timeout=20_000)
            await (button.dblclick() if double else button.click())
            try:  # the click handler sends the request at once
                await eventually(any_sent, "a POST /api/v1/positions", within=2)
            except AssertionError:
                continue
            response = await sent[0].response()
            assert response is not None, f"no answer to {sent[0].url}"
            return response
    finally:
        page.remove_listener("request", note)
    raise AssertionError(f"{ATTEMPTS} clicks on Open sent no request")


async def click_open(page: Page) -> dict[str, Any] | None:
    """Click "Open" on the EUR/USD card: the position opened, or None when the price had
    overtaken the signal's levels (the card says so)."""
    card = page.get_by_test_id("signal-card-EURUSD")
    response = await press_open(page)
    if response.ok:
        await expect(page.get_by_test_id("toast").filter(has_text="Opened")).not_to_have_count(0)
        return dict((await response.json())["position"])
    error = card.get_by_test_id("open-position-error")
    await expect(error).to_be_visible()
    message = await error.inner_text()
    assert OVERTAKEN.search(message), f"the dashboard could not open the position: {message!r}"
    return None


async def pnl_moves_or_closes(page: Page, position_id: str) -> str | None:
    """The position row's PnL once it differs from what it showed first; None when the
    row went away first (the position closed on the signal's own levels)."""
    row = page.get_by_test_id(f"position-row-{position_id}")
    pnl = page.get_by_test_id(f"pnl-{position_id}")
    try:
        await expect(row).to_be_visible(timeout=10_000)
        first = await pnl.text_content(timeout=2_000)
    except (AssertionError, PlaywrightError):  # the row went first
        return None
    assert first is not None and MONEY.match(first), first
    moved = await page.wait_for_function(
        """([id, first]) => {
            const cell = document.querySelector(`[data-testid="pnl-${id}"]`);
            if (!cell) return "closed";
            return cell.textContent !== first ? cell.textContent : false;
        }""",
        arg=[position_id, first],
        timeout=20_000,
    )
    value = await moved.json_value()
    if value == "closed":
        return None
    assert MONEY.match(value), value
    return str(value)


async def modify_levels(page: Page, rest: Rest, position: dict[str, Any]) -> tuple[str, str] | None:
    """Set tight levels on a position through its row's SL/TP control: the levels once
    the page says they were saved; None when the position closed first (the row went,
    or the change was refused as too late). Levels the price passed while they were
    typed (refused: "must be above the current price") are recomputed and saved again."""
    pid = position["id"]
    row = page.get_by_test_id(f"position-row-{pid}")
    saved = page.get_by_test_id("toast").filter(has_text="EUR/USD levels updated")
    refused = page.get_by_test_id(f"position-error-{pid}")
    try:
        await page.get_by_test_id(f"edit-levels-{pid}").click(timeout=5_000)
    except PlaywrightError:
        assert await row.count() == 0, "the SL/TP control could not be used"
        return None
    for _ in range(ATTEMPTS):
        levels = tight_levels(position, await rest.price())
        try:
            await page.get_by_test_id(f"sl-input-{pid}").fill(levels[0], timeout=2_000)
            await page.get_by_test_id(f"tp-input-{pid}").fill(levels[1], timeout=2_000)
            async with page.expect_response(
                lambda r: r.request.method == "PATCH" and pid in r.url
            ) as answer:
                await page.get_by_test_id(f"save-levels-{pid}").click(timeout=2_000)
        except PlaywrightError:
            assert await row.count() == 0, "the SL/TP control could not be used"
            return None
        if (await answer.value).ok:
            await expect(saved).not_to_have_count(0)
            return levels
        try:
            await expect(refused).to_be_visible()
            message = await refused.inner_text()
        except (AssertionError, PlaywrightError):
            assert await row.count() == 0, "a refused change was not shown"
            return None
        if not OVERTAKEN_NOW.search(message):
            # Only a position closed meanwhile may refuse good levels.
            assert not re.search("Stop-loss:|Take-profit:", message), message
            return None
    raise AssertionError(f"the price overtook the new levels {ATTEMPTS} times")


def tight_levels(position: dict[str, Any], price: Decimal) -> tuple[str, str]:
    """Stop-loss and take-profit 5 pips beyond both the entry and `price` (the API wants
    them on the right side of both): hit within a few replayed bars."""
    entry = Decimal(position["entryPrice"])
    low, high = min(entry, price), max(entry, price)
    below, above = (low - 5 * PIP).quantize(PIP), (high + 5 * PIP).quantize(PIP)
    if position["side"] == "TRADE_ACTION_BUY":
        return str(below), str(above)
    return str(above), str(below)


async def closed_on_a_level(rest: Rest, pid: str) -> dict[str, Any]:
    """The position once position_svc closed it; it must have been on SL or TP."""

    async def closed() -> dict[str, Any] | None:
        position = (await rest.call("GET", f"/api/v1/positions/{pid}"))["position"]
        return position if position["status"] == "POSITION_STATUS_CLOSED" else None

    final = await eventually(closed, f"position {pid} closed", within=45)
    assert final["closeReason"] in CLOSED_ON_LEVEL, final
    assert final["exitPrice"] in {final["stopLoss"], final["takeProfit"]}, final
    return final


async def closing_is_shown(page: Page, pid: str) -> None:
    """The page heard the close live: the row leaves the open positions, a toast says
    which level was hit."""
    await expect(page.get_by_test_id(f"position-row-{pid}")).to_have_count(0)
    await expect(
        page.get_by_test_id("toast").filter(has_text=re.compile("(Take profit|Stop loss) hit"))
    ).not_to_have_count(0)


async def test_a_live_signal_opens_moves_closes_and_counts(page: Page, stack: FullStack) -> None:
    user = new_user()
    await sign_up_in_page(page, user)
    rest = await Rest.sign_in(stack.url, user)

    # A signal on the board, then a newer one arriving live (no reload).
    card = page.get_by_test_id("signal-card-EURUSD")
    await expect(card).to_have_attribute("data-signal-id", re.compile(r".+"), timeout=20_000)
    first_signal = await card.get_attribute("data-signal-id")
    assert first_signal
    await expect(card).not_to_have_attribute("data-signal-id", first_signal, timeout=20_000)
    await expect(card.get_by_test_id("signal-action-EURUSD")).to_have_text(
        re.compile("^(BUY|SELL|HOLD)$")
    )
    await expect(card.get_by_test_id("signal-confidence-EURUSD")).to_have_text(
        re.compile(r"^\d+%$")
    )
    await expect(page.get_by_test_id("price-chart")).to_be_visible()

    # One click opens a position that follows the signal; its PnL follows the quotes.
    opened: list[dict[str, Any]] = []
    moved = None
    for _ in range(ATTEMPTS):
        position = await click_open(page)
        if position is None:
            continue
        opened.append(position)
        assert position["pair"] == "EUR/USD" and position["signalId"], position
        assert position["side"] in {"TRADE_ACTION_BUY", "TRADE_ACTION_SELL"}, position
        moved = await pnl_moves_or_closes(page, position["id"])
        if moved is not None:
            break
    assert moved is not None, f"no PnL change seen before a position closed: {opened}"
    assert len(await rest.positions()) == len(opened), "one click, one position"
    pid = opened[-1]["id"]

    # It closes on its take-profit or stop-loss: the signal's, or tight ones set now.
    saved = await modify_levels(page, rest, opened[-1])
    final = await closed_on_a_level(rest, pid)
    if saved:
        assert Decimal(final["stopLoss"]) == Decimal(saved[0]), (saved, final)
        assert Decimal(final["takeProfit"]) == Decimal(saved[1]), (saved, final)
    await closing_is_shown(page, pid)

    # The positions page lists it among the closed trades.
    await page.get_by_test_id("nav-positions").click()
    await expect(page.get_by_test_id(f"closed-row-{pid}")).to_be_visible()
    await expect(page.get_by_test_id(f"result-{pid}")).to_have_text(
        re.compile("Win|Loss|Breakeven")
    )
    await screenshot(page, "positions")

    # And the performance page counts it.
    await page.get_by_test_id("nav-performance").click()
    trades = page.get_by_test_id("perf-trades")
    await expect(trades).to_have_text(re.compile(r"^[1-9]\d*$"))
    assert (await rest.performance())["performance"]["trades"] >= 1
    await screenshot(page, "performance")


async def test_the_sl_tp_control_sets_levels_that_close_the_position(
    page: Page, stack: FullStack
) -> None:
    rest = await Rest.sign_in(stack.url, await register(page))
    # A position without levels stays open until they are set. (Opened before the page
    # loads: the table then lists it at once, without waiting for the live event.)
    position = (
        await rest.call(
            "POST",
            "/api/v1/positions",
            json={"pair": "EUR/USD", "side": "TRADE_ACTION_SELL", "lotSize": "0.25"},
        )
    )["position"]
    pid = position["id"]
    await page.goto("/")
    await expect(page.get_by_test_id(f"position-row-{pid}")).to_be_visible()
    moved = await pnl_moves_or_closes(page, pid)  # its PnL follows the quotes
    assert moved is not None, "a position without levels closed"

    saved = await modify_levels(page, rest, position)
    assert saved, "the levels were not saved"
    final = await closed_on_a_level(rest, pid)
    assert Decimal(final["stopLoss"]) == Decimal(saved[0]), (saved, final)
    assert Decimal(final["takeProfit"]) == Decimal(saved[1]), (saved, final)
    await closing_is_shown(page, pid)


async def test_a_double_click_opens_one_position(page: Page, stack: FullStack) -> None:
    rest = await Rest.sign_in(stack.url, await signed_up(page))
    posts: list[str] = []
    answered: list[str] = []

    def sent(request: Any) -> None:
        if request.method == "POST" and request.url.endswith("/api/v1/positions"):
            posts.append(request.url)

    def done(request: Any) -> None:
        if request.method == "POST" and request.url.endswith("/api/v1/positions"):
            answered.append(request.url)

    page.on("request", sent)
    page.on("requestfinished", done)
    page.on("requestfailed", done)

    for _ in range(ATTEMPTS):
        if (await press_open(page, double=True)).ok:
            break
        error = page.get_by_test_id("signal-card-EURUSD").get_by_test_id("open-position-error")
        message = await error.inner_text()
        assert OVERTAKEN.search(message), f"could not open the position: {message!r}"
        assert not await rest.positions()
    else:
        raise AssertionError(f"the price overtook the signal's levels {ATTEMPTS} times")

    await expect(page.get_by_test_id("toast").filter(has_text="Opened")).not_to_have_count(0)

    async def settled() -> bool:
        return len(answered) == len(posts)

    await eventually(settled, "every POST /api/v1/positions of the page answered")
    positions = await rest.positions()
    assert len(positions) == 1, f"{len(positions)} positions from one double click: {positions}"

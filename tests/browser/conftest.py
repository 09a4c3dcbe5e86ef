"""Fixtures of the browser end-to-end tests: the whole stack as `make run` starts it
(tests/full_stack.py, one per package, replaying the real EUR/USD history fast), one
headless Debian Chromium, and a fresh browser context (no cookies, no storage) per test.

Without /usr/bin/chromium or a built dashboard (edge/dashboard/dist/index.html) the tests
are skipped on a developer machine and FAIL when CI is set, saying what is missing.

A test marked `disturbs_stack` (it stops a service) runs after every other test of the
package, whatever the file order, so the shared stack is whole for the rest.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright
from playwright.async_api import Error as PlaywrightError

from common.settings import REPO_ROOT
from tests.browser.helpers import CHROMIUM, CHROMIUM_ARGS, DIST_INDEX, PageErrors
from tests.full_stack import FullStack

# Market seconds per real second: ten 1-hour EUR/USD bars a second. A 1h signal arrives
# every ~0.1 s, except over a replayed weekend (48 market hours: ~5 s without bars; the
# replay starts on a Friday evening); a daily one every ~2.4 s; a position on a signal's
# levels (1.5 and 3 ATR) stays open for a few seconds, one with levels a few pips away
# closes within a second or two. The bundled history (2017-04 to 2018-02) lasts about
# 12 minutes at this speed.
REPLAY_SPEED = 36_000


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "disturbs_stack: stops a service of the shared stack (run last)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """This package's tests that stop services go right after its other tests; the rest
    of the session keeps its order."""
    here = Path(__file__).parent
    disturbing = [
        item
        for item in items
        if item.path.is_relative_to(here) and item.get_closest_marker("disturbs_stack")
    ]
    if not disturbing:
        return
    rest = [item for item in items if item not in disturbing]
    after = max((n + 1 for n, item in enumerate(rest) if item.path.is_relative_to(here)), default=0)
    items[:] = [*rest[:after], *disturbing, *rest[after:]]


def require_prerequisites() -> None:
    """Skip (developer machine) or fail (CI) when the browser or the build is missing."""
    missing = []
    if not CHROMIUM.is_file():
        missing.append(f"{CHROMIUM} (CI installs Debian's chromium package)")
    if not DIST_INDEX.is_file():
        missing.append(
            f"{DIST_INDEX.relative_to(REPO_ROOT)} (build it: cd edge/dashboard && npm ci "
            "&& npm run build, or make setup)"
        )
    if not missing:
        return
    message = "browser tests need " + " and ".join(missing)
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FullStack]:
    require_prerequisites()
    # Default settings but a fast replay, cheap password hashing and a recovered model
    # noticed within 3 s, not 30. (The page's origin is Envoy's free port: the edge must
    # accept it for Socket.IO as the page's own.)
    stack = FullStack(
        tmp_path_factory.mktemp("stack"),
        replay_speed=REPLAY_SPEED,
        bcrypt_rounds=4,
        inference_recovery_seconds=3,
    )
    with stack as running:
        yield running


@pytest.fixture(scope="package")
async def browser() -> AsyncIterator[Browser]:
    require_prerequisites()
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        yield chromium
        await chromium.close()


@pytest.fixture
async def context(browser: Browser, stack: FullStack) -> AsyncIterator[BrowserContext]:
    """A fresh browser (no cookies, no storage) at 1280x800 on the stack's Envoy."""
    fresh = await browser.new_context(base_url=stack.url, viewport={"width": 1280, "height": 800})
    fresh.set_default_timeout(10_000)
    yield fresh
    await fresh.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the test item, for fixtures that report failures."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
async def page(
    context: BrowserContext, stack: FullStack, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Page]:
    """A page of `context`; an uncaught script error on it fails the test. When the
    test fails, what the page showed is saved (failure.png in the test's tmp_path) and
    the tail of every process's log printed, to read beside the failure."""
    opened = await context.new_page()
    errors = PageErrors(opened)
    yield opened
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        shot = tmp_path / "failure.png"
        with contextlib.suppress(PlaywrightError):
            await opened.screenshot(path=str(shot))
            print(f"the page when the test failed: {shot} ({opened.url})")
        print(stack.logs())
    errors.check()

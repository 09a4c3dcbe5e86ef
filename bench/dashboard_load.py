"""Dashboard load benchmark: how much JavaScript and CSS the dashboard ships, and how
fast it first renders on localhost, in a real Chromium, through Envoy.

Size: every file of edge/dashboard/dist/assets/ (or --dist) ending in .js or .css, raw
and gzipped (level 9, as a static server precompresses; target: the JavaScript under
300 KB gzipped), and the bytes the browser actually fetched for them on a cold load
(PerformanceResourceTiming.encodedBodySize: what Envoy and the edge sent). Without a
build (no dist/index.html) it says so and builds one (`npm ci` when node_modules is
missing, then `npm run build` in edge/dashboard).

Render: the whole stack as `make run` starts it (tests/full_stack.py, replaying at
--replay-speed so signals are stored meanwhile) serving a copy of that build (a rebuild
meanwhile changes nothing); Debian's Chromium (Playwright, headless; one unrecorded load
first) loads `/` in a new context each run (a cold cache, no cookies), --runs times, and
reports the median of First Contentful Paint, DOMContentLoaded and load (from the
navigation's start); then the sign-in page (--signin-path) the same way, with the time
its form (a password field) is first visible (noted in the page by a MutationObserver).
Last, once per run: a new trader fills in the sign-up form (--signup-path; bcrypt at the
default cost) and submits; the time from the click to the board showing its first signal
card (--card-selector), and how much of it the sign-up request took (`--waterfall`
prints every request after the click).

Run:  .venv/bin/python bench/dashboard_load.py [--runs 5] [--dist edge/dashboard/dist]
          [--signin-path /login] [--signup-path /signup] [--card-selector CSS]
          [--skip-render] [--skip-signup] [--waterfall]
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from report import table

from common.settings import REPO_ROOT, Settings
from tests.browser.helpers import CHROMIUM, CHROMIUM_ARGS
from tests.full_stack import FullStack

DASHBOARD = REPO_ROOT / "edge" / "dashboard"
TARGET_JS_KB = 300.0
PASSWORD = "bench-password-1"  # a throwaway account of a private stack
# Timings of the current page, ms from the navigation's start.
TIMINGS_JS = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const paint = Object.fromEntries(
    performance.getEntriesByType('paint').map((p) => [p.name, p.startTime]));
  const assets = performance.getEntriesByType('resource')
    .filter((r) => /\\.(js|css)(\\?|$)/.test(r.name))
    .map((r) => ({name: r.name, encoded: r.encodedBodySize, decoded: r.decodedBodySize,
                  transfer: r.transferSize}));
  return {
    fcp: paint['first-contentful-paint'] ?? null,
    fp: paint['first-paint'] ?? null,
    dcl: nav ? nav.domContentLoadedEventEnd : null,
    load: nav ? nav.loadEventEnd : null,
    ttfb: nav ? nav.responseStart : null,
    status: nav ? nav.responseStatus : null,
    assets,
  };
}"""


# Notes, in the page, when the first password field is in the DOM and visible (a
# MutationObserver from before the page's own scripts run): the form's first render.
FORM_WATCH_JS = """(() => {
  const seen = () => {
    const field = document.querySelector('input[type=password]');
    if (field && field.offsetParent !== null && window.__formShown === undefined) {
      window.__formShown = performance.now();
    }
  };
  new MutationObserver(seen).observe(document, {childList: true, subtree: true});
})();"""


def kb(size: float) -> str:
    return f"{size / 1024:.1f} KB"


# --- size ------------------------------------------------------------------------------


def ensure_build(dist: Path) -> str:
    """'' when `dist` has a build; otherwise build edge/dashboard and say so."""
    if (dist / "index.html").is_file():
        return ""
    note = f"no build at {dist} (no index.html)"
    print(f"{note}: building edge/dashboard", flush=True)
    if dist.resolve() != (DASHBOARD / "dist").resolve():
        raise SystemExit(f"{note}, and only edge/dashboard/dist is built here")
    if not (DASHBOARD / "package.json").is_file():
        raise SystemExit(f"{note}, and edge/dashboard has no package.json to build it")
    if not (DASHBOARD / "node_modules").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=DASHBOARD, check=True)
    subprocess.run(["npm", "run", "build"], cwd=DASHBOARD, check=True)
    if not (dist / "index.html").is_file():
        raise SystemExit(f"`npm run build` wrote no {dist / 'index.html'}")
    return f"{note}; built it with npm run build"


def copy_build(dist: Path, to: Path) -> Path:
    """A copy of `dist` whose index.html's assets are all there (retried while a
    rebuild is replacing them)."""
    for _ in range(30):
        shutil.rmtree(to, ignore_errors=True)
        with contextlib.suppress(OSError):
            shutil.copytree(dist, to)
            wanted = re.findall(r'(?:src|href)="/?(assets/[^"]+)"', (to / "index.html").read_text())
            if all((to / name).is_file() for name in wanted):
                return to
        time.sleep(1.0)
    raise SystemExit(f"{dist} kept changing: no consistent copy of the build")


@dataclass
class Asset:
    name: str
    raw: int
    gzipped: int


def asset_sizes(dist: Path) -> list[Asset]:
    """Every .js and .css under dist/assets, raw and gzipped (level 9)."""
    assets = []
    for path in sorted((dist / "assets").glob("*")):
        if path.suffix in (".js", ".css") and path.is_file():
            data = path.read_bytes()
            assets.append(Asset(path.name, len(data), len(gzip.compress(data, 9, mtime=0))))
    return assets


# --- render ----------------------------------------------------------------------------


@dataclass
class Runs:
    """Per page: each run's timings."""

    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)

    def add(self, page: str, timing: dict[str, Any]) -> None:
        self.samples.setdefault(page, []).append(timing)

    def median(self, page: str, key: str) -> str:
        values = [s[key] for s in self.samples.get(page, []) if s.get(key) is not None]
        if not values:
            return "—"
        return f"{statistics.median(values):.0f} ms"

    def spread(self, page: str, key: str) -> str:
        values = [s[key] for s in self.samples.get(page, []) if s.get(key) is not None]
        return f"{min(values):.0f}-{max(values):.0f}" if values else ""


def find_in_sources(pattern: str) -> list[str]:
    """Matches of `pattern` (one group) in edge/dashboard/src, for defaults that follow
    the dashboard as it is written."""
    found: list[str] = []
    for path in sorted((DASHBOARD / "src").rglob("*.[jt]s*")):
        found += re.findall(pattern, path.read_text(errors="replace"))
    return found


async def render(args: argparse.Namespace, url: str) -> tuple[Runs, list[tuple[float, float]], str]:
    """The timings of --runs cold loads of / and the sign-in page, and of sign-up → the
    first signal card (an empty list and why, when that could not be measured)."""
    from playwright.async_api import Error as PlaywrightError
    from playwright.async_api import async_playwright

    runs = Runs()
    signup: list[tuple[float, float]] = []
    why = ""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # One unrecorded load first: the browser's own start-up is not the page's.
            warmup = await browser.new_context()
            with contextlib.suppress(PlaywrightError):
                await (await warmup.new_page()).goto(url + "/", wait_until="load")
            await warmup.close()
            for number in range(args.runs):
                for label, path in (("/", "/"), ("sign-in", args.signin_path)):
                    context = await browser.new_context()
                    try:
                        page = await context.new_page()
                        await page.add_init_script(FORM_WATCH_JS)
                        await page.goto(url + path, wait_until="load")
                        shown = None
                        if label == "sign-in":
                            await page.wait_for_selector(
                                "input[type=password]", state="visible", timeout=15_000
                            )
                            shown = await page.evaluate("() => window.__formShown ?? null")
                        # loadEventEnd is set just after the load event's handlers.
                        await page.wait_for_function(
                            "() => performance.getEntriesByType('navigation')[0]?.loadEventEnd > 0"
                        )
                        timing = await page.evaluate(TIMINGS_JS)
                        timing["form"] = shown
                        runs.add(label, timing)
                    except PlaywrightError as error:
                        runs.failed.append(f"{label}: {str(error).splitlines()[0]}")
                    finally:
                        await context.close()
                if args.skip_signup or why:
                    continue
                try:
                    signup.append(await sign_up(browser, url, args, number))
                except PlaywrightError as error:
                    why = f"sign-up → first card not measured: {str(error).splitlines()[0]}"
        finally:
            await browser.close()
    return runs, signup, why


async def sign_up(
    browser: Any, url: str, args: argparse.Namespace, number: int
) -> tuple[float, float]:
    """Seconds from submitting the sign-up form to the first signal card on the board,
    and how long of it the sign-up request itself took."""
    context = await browser.new_context()
    try:
        page = await context.new_page()
        await page.goto(url + args.signup_path, wait_until="load")
        await page.wait_for_selector("input[type=password]", state="visible", timeout=15_000)
        stamp = f"{int(time.time())}-{number}"
        email = page.locator("[data-testid=signup-email], input[type=email]")
        await email.first.fill(f"board-{stamp}@bench.example")
        username = page.locator("[data-testid=signup-username], input[name=username]")
        if await username.count():
            await username.first.fill(f"board-{stamp}")
        passwords = page.locator("input[type=password]")
        for index in range(await passwords.count()):
            await passwords.nth(index).fill(PASSWORD)
        submit = page.locator("[data-testid=signup-submit], form button[type=submit]")
        clicked = await page.evaluate("() => performance.now()")
        started = time.monotonic()
        await submit.first.click()
        await page.wait_for_selector(args.card_selector, state="visible", timeout=30_000)
        shown = time.monotonic() - started
        request = await page.evaluate(
            "() => performance.getEntriesByType('resource')"
            ".filter((r) => r.name.includes('register')).map((r) => r.duration)[0] ?? null"
        )
        if args.waterfall:
            entries = await page.evaluate(
                "(t0) => performance.getEntriesByType('resource')"
                ".filter((r) => r.startTime >= t0)"
                ".map((r) => [r.name, r.startTime - t0, r.duration])",
                clicked,
            )
            print(f"sign-up run {number + 1}: card after {shown * 1000:.0f} ms; requests:")
            for name, start, duration in entries:
                path = name.split("://", 1)[-1].split("/", 1)[-1]
                print(f"  +{start:6.0f} ms  {duration:6.0f} ms  /{path[:90]}")
        return shown, (request or 0.0) / 1000
    finally:
        await context.close()


# --- main ------------------------------------------------------------------------------


def report(
    args: argparse.Namespace,
    note: str,
    built_at: float,
    assets: list[Asset],
    runs: Runs | None,
    signup: list[tuple[float, float]],
    why: str,
) -> None:
    js = [a for a in assets if a.name.endswith(".js")]
    css = [a for a in assets if a.name.endswith(".css")]
    js_gz = sum(a.gzipped for a in js)
    print()
    built = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(built_at))
    print(f"dashboard at {args.dist}, built {built}" + (f" ({note})" if note else ""))
    head = ["asset", "raw", "gzipped"]
    rows = [[a.name, kb(a.raw), kb(a.gzipped)] for a in assets]
    rows += [
        [f"JavaScript, {len(js)} file(s)", kb(sum(a.raw for a in js)), kb(js_gz)],
        [f"CSS, {len(css)} file(s)", kb(sum(a.raw for a in css)), kb(sum(a.gzipped for a in css))],
        ["JavaScript + CSS", kb(sum(a.raw for a in assets)), kb(sum(a.gzipped for a in assets))],
    ]
    print(table(head, rows))
    verdict = "met" if js_gz < TARGET_JS_KB * 1024 else "MISSED"
    print(f"JavaScript gzipped {kb(js_gz)}: target < {TARGET_JS_KB:.0f} KB {verdict}")
    if runs is None:
        return
    first = runs.samples.get("/", [{}])[0]
    fetched = first.get("assets", [])
    if fetched:
        encoded = sum(a["encoded"] for a in fetched)
        decoded = sum(a["decoded"] for a in fetched)
        print(
            f"a cold load of / fetched {len(fetched)} JS/CSS file(s): {kb(encoded)} over the "
            f"wire ({kb(decoded)} decoded) — "
            + ("compressed in transit" if encoded < decoded * 0.9 else "NOT compressed in transit")
        )
    statuses = sorted({str(s.get("status")) for v in runs.samples.values() for s in v})
    print(
        f"render on localhost through Envoy, Chromium headless, new context each run: "
        f"median of {args.runs} (min-max), HTTP status {', '.join(statuses)}; machine load "
        f"average (1 min) now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    head = ["page", "first contentful paint", "DOMContentLoaded", "load", "form visible"]
    rows = []
    for label in ("/", "sign-in"):
        rows.append(
            [
                label if label == "/" else f"sign-in ({args.signin_path})",
                *[
                    f"{runs.median(label, k)} ({runs.spread(label, k)})"
                    for k in ("fcp", "dcl", "load")
                ],
                f"{runs.median(label, 'form')} ({runs.spread(label, 'form')})"
                if label == "sign-in"
                else "",
            ]
        )
    print(table(head, rows))
    if signup:
        ms = [s * 1000 for s, _ in signup]
        request = [r * 1000 for _, r in signup]
        print(
            f"sign-up submitted → first signal card ({args.card_selector}): median "
            f"{statistics.median(ms):.0f} ms ({min(ms):.0f}-{max(ms):.0f}) over {len(ms)} "
            f"run(s); of which the sign-up request (POST /session/register, bcrypt at the "
            f"default cost) {statistics.median(request):.0f} ms"
        )
    if why:
        print(why)
    if runs.failed:
        print(f"page loads that failed (not in the medians): {'; '.join(runs.failed[:3])}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--dist", type=Path, default=DASHBOARD / "dist", help="the build")
    parser.add_argument("--runs", type=int, default=5, help="cold loads of each page")
    parser.add_argument("--signin-path", default="", help="default: found in the sources")
    parser.add_argument("--signup-path", default="", help="default: found in the sources")
    parser.add_argument(
        "--card-selector",
        default='[data-testid^="signal-card-"] [data-testid^="signal-action-"]',
        help="a signal card showing a signal (its action badge)",
    )
    parser.add_argument("--skip-render", action="store_true", help="sizes only; no stack")
    parser.add_argument("--skip-signup", action="store_true")
    parser.add_argument(
        "--waterfall", action="store_true", help="print each sign-up run's requests"
    )
    parser.add_argument("--replay-speed", type=float, default=3600.0)
    parser.add_argument("--keep-workdir", action="store_true")
    args = parser.parse_args()
    args.dist = args.dist.resolve()
    note = ensure_build(args.dist)
    args.signin_path = args.signin_path or default_path(("login", "signin", "sign-in"))
    args.signup_path = args.signup_path or default_path(("register", "signup", "sign-up"))
    # A copy, so that a rebuild meanwhile (npm run build replaces dist/) changes nothing
    # under the measurement: sizes and pages are of one build.
    workdir = Path(tempfile.mkdtemp(prefix="aifx-dashboard-load-"))
    built = (args.dist / "index.html").stat().st_mtime
    snapshot = copy_build(args.dist, workdir / "dist")
    assets = asset_sizes(snapshot)
    if args.skip_render:
        report(args, note, built, assets, None, [], "")
        shutil.rmtree(workdir, ignore_errors=True)
        return 0

    import asyncio

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        settings = {"replay_speed": args.replay_speed, "dashboard_dir": snapshot}
        started = time.monotonic()
        # Stopped on the way out whatever happens (Ctrl-C and SIGTERM included).
        stack = FullStack(workdir / "stack", **settings)
        # The page's own origin (Envoy on a free port here, 8080 under `make run`, which
        # the default list allows): browsers send it on the Socket.IO handshake.
        defaults = ",".join(Settings.load(None).edge.cors_allowed_origins)
        stack.env["AIFX_CORS_ALLOWED_ORIGINS"] = f"{stack.url},{defaults}"
        with stack:
            print(f"stack up in {time.monotonic() - started:.1f} s at {stack.url}", flush=True)
            runs, signup, why = asyncio.run(render(args, stack.url))
            refused = "not an accepted origin" in stack.log("edge", tail=10_000_000)
        report(args, note, built, assets, runs, signup, why)
        if refused:
            print("the edge refused the page's Socket.IO origin: the board ran without live data")
        return 0
    except KeyboardInterrupt:
        print("interrupted: everything started was stopped", file=sys.stderr)
        return 130
    finally:
        if args.keep_workdir:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def default_path(names: tuple[str, ...]) -> str:
    """The first route of the dashboard's sources named one of `names` ("/login")."""
    for name in names:
        if (DASHBOARD / "src").is_dir() and find_in_sources(rf"[\"'`](/{name})[\"'`]"):
            return f"/{name}"
    return f"/{names[0]}"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())

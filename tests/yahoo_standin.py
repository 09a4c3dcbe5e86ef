"""A local stand-in for Yahoo Finance that the real yfinance 1.7 code talks to.

yfinance fetches, over curl_cffi:
  - `https://fc.yahoo.com` for a cookie, then `https://query1.finance.yahoo.com/v1/test/
    getcrumb` for a crumb (hard-coded URLs in yfinance/data.py; on failure it tries the
    consent flow at guce.yahoo.com, then goes on without a crumb);
  - `https://query2.finance.yahoo.com/v8/finance/chart/{symbol}?range=1d&interval=1d` for
    the exchange's time zone (`yfinance.const._BASE_URL_`, copied into base.py at import);
  - the same chart URL with `interval`, `range` or `period1`/`period2`, `events`, and the
    crumb, for the bars (`_BASE_URL_` as copied into scrapers/history.py).

Patching `_BASE_URL_` would move only the chart requests; the cookie and crumb URLs are
literals. So AIFX points yfinance elsewhere with what yfinance accepts for all its
traffic, a curl_cffi session (`common.market_data.yahoo_session`, the
AIFX_YAHOO_BASE_URL setting) that sends every `https://*.yahoo.com/...` request to a base
URL, here `http://127.0.0.1:<port>`, the Yahoo host travelling in an `X-Yahoo-Host`
header; `YahooStandin` answers like Yahoo, with real bars: a frame per symbol and
interval (`series`), or one frame for every request (`bars`). With a `market_clock`
it answers only the bars closed by that clock's time, so new bars appear as it advances.

The fixtures (import them into a test module to use them): `fresh_yfinance` isolates
a test from yfinance's process-wide state: its `YfData` singleton (which keeps the last
session, cookie and crumb), its memo of past-range answers, its on-disk time-zone and
cookie caches, and its counter of `.info` fallbacks; `yahoo_standin` runs the stand-in
and gives a session for it.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest

from common.market_data import yahoo_session

CRUMB = "standin-crumb"
LONDON = "Europe/London"
INTERVAL_SECONDS = {"15m": 900, "1h": 3600, "1d": 86400}
# What the stand-in answers in each failure mode: Yahoo's rate limit, a server error, a
# body that is not JSON, and JSON that is not Yahoo's chart.
FAILURES = {
    "http429": (429, "text/html", b"Too Many Requests\r\n"),
    "http500": (500, "text/html", b"<html>Internal Server Error</html>"),
    "garbage": (200, "application/json", b"<html><body>not a chart</body></html>"),
    "malformed": (200, "application/json", b'{"chart": {"result": [{"timestamp": "soon"}]}}'),
}


@dataclass
class Request:
    host: str
    path: str
    query: dict[str, str]

    @property
    def is_history(self) -> bool:
        """A bars request (the time-zone lookup asks for no events)."""
        return self.path.startswith("/v8/finance/chart/") and "events" in self.query


@dataclass
class YahooStandin:
    """What the stand-in answers to chart requests for bars: `mode` is "bars" (real bars,
    cut to period1/period2 as Yahoo does), "empty" (a result without bars, as Yahoo sends
    for a range with no data), or one of FAILURES. The bars of a request are
    `series[(symbol, interval)]` when given, else `bars`; with `market_clock`, only those
    closed by its time."""

    bars: pd.DataFrame | None = None
    interval: str = "1h"
    mode: str = "bars"
    series: dict[tuple[str, str], pd.DataFrame] = field(default_factory=dict)
    market_clock: Callable[[], float] | None = None
    requests: list[Request] = field(default_factory=list)
    port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def history_requests(self) -> list[Request]:
        return [r for r in self.requests if r.is_history]

    def answer(self, request: Request) -> tuple[int, str, bytes, dict[str, str]]:
        """Status, content type, body and extra headers for a request."""
        self.requests.append(request)
        if request.host == "fc.yahoo.com":
            # Yahoo answers 404 and sets the A3 cookie.
            return 404, "text/html", b"<html>404</html>", {"Set-Cookie": "A3=standin; Path=/"}
        if request.path == "/v1/test/getcrumb":
            return 200, "text/plain", CRUMB.encode(), {}
        if not request.path.startswith("/v8/finance/chart/"):
            return 404, "text/html", b"<html>not in the stand-in</html>", {}
        symbol = request.path.rsplit("/", 1)[1]
        if not request.is_history:  # the time-zone lookup
            return 200, "application/json", _json(_chart(symbol, "1d", None)), {}
        if self.mode in FAILURES:
            status, kind, body = FAILURES[self.mode]
            return status, kind, body, {}
        interval = request.query.get("interval", self.interval)
        frame = None
        if self.mode == "bars":
            frame = self._bars(symbol, interval, request.query)
        return 200, "application/json", _json(_chart(symbol, interval, frame)), {}

    def _bars(self, symbol: str, interval: str, query: dict[str, str]) -> pd.DataFrame | None:
        frame = self.series.get((symbol, interval), self.bars if not self.series else None)
        if frame is None:
            return None
        if self.market_clock is not None:
            closed_by = pd.Timestamp(self.market_clock() - INTERVAL_SECONDS[interval], unit="s")
            frame = frame[frame.index <= closed_by]
        if "period1" in query:
            start = pd.Timestamp(int(query["period1"]), unit="s")
            end = pd.Timestamp(int(query["period2"]), unit="s")
            frame = frame[(frame.index >= start) & (frame.index < end)]
        elif "range" in query and self.market_clock is not None:
            # A range is counted back from now: from the clock's now here.
            start = pd.Timestamp(self.market_clock(), unit="s") - _range(query["range"])
            frame = frame[frame.index >= start]
        return frame


def _range(text: str) -> pd.Timedelta:
    """Yahoo's range ("5d", "1mo", "3mo", "1y") as a span."""
    amount, unit = int(text.rstrip("dmoy")), text.lstrip("0123456789")
    days = {"d": 1, "mo": 31, "y": 366}[unit]
    return pd.Timedelta(days=amount * days)


def _json(document: dict) -> bytes:
    return json.dumps(document).encode()


def _chart(symbol: str, interval: str, frame: pd.DataFrame | None) -> dict:
    """Yahoo's /v8/finance/chart answer for a currency pair; `frame` has a naive-UTC
    index of bar open times (None or empty: an answer without bars)."""
    meta = {
        "currency": symbol[3:6],
        "symbol": symbol,
        "exchangeName": "CCY",
        "fullExchangeName": "CCY",
        "instrumentType": "CURRENCY",
        "firstTradeDate": 1070236800,
        "hasPrePostMarketData": False,
        "gmtoffset": 0,
        "timezone": "GMT",
        "exchangeTimezoneName": LONDON,
        "priceHint": 4,
        "dataGranularity": interval,
        "validRanges": ["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"],
    }
    result: dict = {"meta": meta, "indicators": {"quote": [{}]}}
    if frame is not None and len(frame):
        stamps = [int(t.timestamp()) for t in frame.index.tz_localize("UTC")]
        meta |= {
            "regularMarketTime": stamps[-1],
            "regularMarketPrice": float(frame["Close"].iloc[-1]),
            "chartPreviousClose": float(frame["Open"].iloc[0]),
        }
        result["timestamp"] = stamps
        result["indicators"]["quote"] = [
            {
                "open": frame["Open"].tolist(),
                "high": frame["High"].tolist(),
                "low": frame["Low"].tolist(),
                "close": frame["Close"].tolist(),
                "volume": [int(v) for v in frame["Volume"]],
            }
        ]
        if interval.endswith("d"):
            result["indicators"]["adjclose"] = [{"adjclose": frame["Close"].tolist()}]
        else:
            # Intraday answers list each day's trading period: all day, London time.
            days = sorted(
                {t.tz_convert(LONDON).normalize() for t in frame.index.tz_localize("UTC")}
            )
            meta["tradingPeriods"] = [
                [
                    {
                        "timezone": "GMT",
                        "start": int(day.timestamp()),
                        "end": int((day + pd.Timedelta(days=1)).timestamp()) - 60,
                        "gmtoffset": 0,
                    }
                ]
                for day in days
            ]
    return {"chart": {"result": [result], "error": None}}


def _handler(standin: YahooStandin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            host = self.headers.get("X-Yahoo-Host", "")
            status, kind, body, extra = standin.answer(Request(host, parts.path, query))
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # the consent flow, which the stand-in does not offer
            self.do_GET()

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture(name="fresh_yfinance")
def fresh_yfinance_fixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """yfinance as a new process would have it, restored afterwards."""
    from yfinance import base, cache
    from yfinance.data import SingletonMeta, YfData

    saved = SingletonMeta._instances.pop(YfData, None)
    monkeypatch.setattr(cache._TzCacheManager, "_tz_cache", cache._TzCacheDummy())
    monkeypatch.setattr(cache._CookieCacheManager, "_Cookie_cache", cache._CookieCacheDummy())
    monkeypatch.setattr(base, "_tz_info_fetch_ctr", 0)
    YfData.cache_get.cache_clear()
    yield
    YfData.cache_get.cache_clear()
    SingletonMeta._instances.pop(YfData, None)
    if saved is not None:
        SingletonMeta._instances[YfData] = saved


@contextlib.contextmanager
def running_standin(standin: YahooStandin) -> Iterator[YahooStandin]:
    """`standin` served on a free loopback port (its `base_url`) until the block ends."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(standin))
    standin.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield standin
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(name="yahoo_standin")
def yahoo_standin_fixture(fresh_yfinance: None) -> Iterator[tuple[YahooStandin, Any]]:
    """A running stand-in (configure `.bars`, `.interval`, `.mode`) and a session for it."""
    with running_standin(YahooStandin()) as standin:
        session = yahoo_session(standin.base_url)
        try:
            yield standin, session
        finally:
            session.close()

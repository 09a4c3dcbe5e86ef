"""Yahoo Finance history through yfinance: `EUR/USD` is Yahoo's `EURUSD=X`.

Yahoo has 15m, 1h and 1d bars of currency pairs, but no 4h interval (yfinance 1.7 knows
1m 2m 5m 15m 30m 60m 90m 1h 1d 5d 1wk 1mo 3mo), so 4h bars are aggregated from 1h bars
into buckets starting 00:00, 04:00, ... UTC. Daily bars are dated by Yahoo's trading day
and carry that date at 00:00 UTC. Yahoo limits intraday history (15m: about the last 60
days, 1h: the last 730 days); asking beyond that gets Yahoo's explanation in the error.

yfinance reports failures in two ways: offline, `Ticker.history` raises curl_cffi's
`DNSError` (an `OSError`) at once; other times it logs an error and returns an empty
frame (as `yf.download` always does). Both, like rate limiting, are retried a few times
with exponential backoff and then become one `MarketDataUnavailable` naming the cause
(taken from the exception or from what yfinance logged). Nothing is ever made up.

`yahoo_session(base_url)` sends all of yfinance's traffic (the cookie, the crumb and the
chart requests, whose URLs yfinance hard-codes) to another server that answers Yahoo's
endpoints: a mirror, or the tests' local stand-in (AIFX_YAHOO_BASE_URL).

yfinance, and pandas which it needs, are imported on the first call, not with this
module: `signal_svc` imports it in every mode but uses Yahoo only in live mode, and the
two would cost a replaying service about 70 MB of resident memory (pandas about 42,
yfinance with curl_cffi about 28) for nothing. So is tenacity (about 2 MB: it imports
tornado, when installed, to support tornado coroutines).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import structlog

from common.candles import CandleError, Candles
from common.market import Timeframe
from common.market_data._core import (
    MarketDataError,
    MarketDataUnavailable,
    aggregate_hourly,
    as_pair,
    as_timeframe,
    frame_to_candles,
)

if TYPE_CHECKING:
    import pandas as pd
    import tenacity

# Retry policy: `attempts` tries in all; the wait before the second is `backoff` seconds
# and doubles after that, capped at MAX_WAIT.
DEFAULT_ATTEMPTS = 3
DEFAULT_BACKOFF = 0.5
MAX_WAIT = 8.0
# Seconds yfinance waits for each chart request.
DEFAULT_TIMEOUT = 10.0

# The yfinance interval each timeframe is fetched with (4h from 1h, see above).
_INTERVALS = {Timeframe.M15: "15m", Timeframe.H1: "1h", Timeframe.H4: "1h", Timeframe.D1: "1d"}
# How far back a call without period/start reaches: about 1,300-3,000 bars each.
DEFAULT_PERIODS = {
    Timeframe.M15: "1mo",
    Timeframe.H1: "6mo",
    Timeframe.H4: "1y",
    Timeframe.D1: "5y",
}
_PERIOD = re.compile(r"(?:[1-9]\d*(?:d|wk|mo|y)|ytd|max)")
_CURL_ADVICE = re.compile(r"\s*See https://curl\.se/\S+ first for more details\.?")

log = structlog.get_logger(__name__)

# What the retry loop sleeps with; a test may replace it to record the waits.
_sleep = time.sleep

When = datetime | date | str | int


class _AttemptFailed(Exception):
    """One fetch that brought no bars; the message is the cause."""


def yahoo_symbol(pair: str) -> str:
    """Yahoo's symbol of a currency pair: `EUR/USD` (or `eurusd`) → `EURUSD=X`."""
    base, quote = as_pair(pair).split("/")
    return f"{base}{quote}=X"


def yahoo_session(base_url: str) -> Any:
    """A curl_cffi Session (the kind yfinance accepts) that sends every request for a
    `*.yahoo.com` URL to `base_url` instead, path and query unchanged, the Yahoo host it
    was meant for in an `X-Yahoo-Host` header; any other host is refused."""
    from curl_cffi import requests as curl_requests  # here: see the module docstring

    target = urlsplit(base_url)
    if target.scheme not in ("http", "https") or not target.netloc:
        raise MarketDataError(f"the Yahoo base URL must be http(s)://host[:port], not {base_url!r}")

    class RedirectedSession(curl_requests.Session):
        def request(self, method: Any, url: str, *args: Any, **kwargs: Any) -> Any:
            parts = urlsplit(url)
            host = parts.hostname or ""
            if not host.endswith("yahoo.com"):
                raise MarketDataError(f"only Yahoo's URLs are redirected, not {url}")
            kwargs["headers"] = {**(kwargs.get("headers") or {}), "X-Yahoo-Host": host}
            path = target.path.rstrip("/") + (parts.path or "/")
            moved = urlunsplit((target.scheme, target.netloc, path, parts.query, ""))
            return super().request(method, moved, *args, **kwargs)

    return RedirectedSession(impersonate="chrome", trust_env=False)


def load_yahoo_history(
    pair: str,
    timeframe: Timeframe | str,
    *,
    period: str | None = None,
    start: When | None = None,
    end: When | None = None,
    attempts: int = DEFAULT_ATTEMPTS,
    backoff: float = DEFAULT_BACKOFF,
    timeout: float = DEFAULT_TIMEOUT,
    session: Any = None,
) -> Candles:
    """Bars of `pair` from Yahoo Finance, either the last `period` (Yahoo's ranges:
    `5d`, `1mo`, `6mo`, `1y`, `ytd`, `max`, ...; default DEFAULT_PERIODS[timeframe]) or
    from `start` (inclusive) to `end` (exclusive; default now). Times are datetimes,
    dates, ISO 8601 strings (no zone means UTC) or epoch seconds.

    `session` is a curl_cffi Session for yfinance to use (e.g. with a proxy); note that
    yfinance keeps the last one given for the whole process.

    Raises MarketDataError for a bad argument or bars that fail validation, and
    MarketDataUnavailable when Yahoo is unreachable or sends no bars in `attempts` tries.
    """
    import pandas as pd  # here, not at the top: see the module's docstring

    pair = as_pair(pair)
    timeframe = as_timeframe(timeframe)
    symbol = yahoo_symbol(pair)
    interval = _INTERVALS[timeframe]
    request, what = _request(timeframe, period, start, end)
    if attempts < 1 or backoff < 0:
        raise MarketDataError(
            f"attempts must be at least 1 and backoff not negative, not {attempts} and {backoff}"
        )
    shown = f"{interval} (for 4h bars)" if timeframe == Timeframe.H4 else interval

    import tenacity  # here, not at the top: see the module docstring

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts),
        wait=tenacity.wait_exponential(multiplier=backoff, max=MAX_WAIT),
        retry=tenacity.retry_if_exception_type(_AttemptFailed),
        sleep=lambda seconds: _sleep(seconds),
        before_sleep=_before_retry,
        reraise=True,
    )
    try:
        frame = retrying(_fetch, symbol, interval, request, timeout, session)
    except _AttemptFailed as exc:
        tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
        raise MarketDataUnavailable(
            f"Yahoo Finance is unreachable or sent no bars for {symbol} {shown} {what} "
            f"({tries}): {exc}"
        ) from exc.__cause__

    if timeframe == Timeframe.D1:
        # Yahoo dates daily bars at midnight of the exchange's zone (Europe/London for
        # currencies): keep the trading day, at 00:00 UTC.
        frame = frame.set_axis(pd.DatetimeIndex([d.date() for d in frame.index]))
    elif timeframe == Timeframe.H4:
        frame = aggregate_hourly(frame.tz_convert("UTC"), timeframe)
    try:
        return frame_to_candles(frame, pair, timeframe)
    except CandleError as exc:
        raise MarketDataError(
            f"Yahoo Finance sent {symbol} {shown} bars AIFX cannot use ({what}): {exc}"
        ) from None


def _request(
    timeframe: Timeframe, period: str | None, start: When | None, end: When | None
) -> tuple[dict[str, Any], str]:
    """yfinance `history` arguments for the range, and the range in words."""
    import pandas as pd

    if period is not None and (start is not None or end is not None):
        raise MarketDataError("give either period or start/end, not both")
    if start is None and end is None:
        period = DEFAULT_PERIODS[timeframe] if period is None else period
        if not _PERIOD.fullmatch(period):
            raise MarketDataError(
                f"'{period}' is not a Yahoo period; use e.g. 5d, 1mo, 6mo, 1y, 2y, ytd or max"
            )
        return {"period": period}, f"period {period}"
    epochs = {
        name: _epoch(value, name)
        for name, value in (("start", start), ("end", end))
        if value is not None
    }
    if len(epochs) == 2 and epochs["start"] >= epochs["end"]:
        raise MarketDataError(f"start {start} is not before end {end}")
    moments = {name: pd.Timestamp(epoch, unit="s", tz="UTC") for name, epoch in epochs.items()}
    if timeframe == Timeframe.D1:
        # Daily bars are trading days: ask by date, which yfinance takes as midnight in
        # the exchange's zone, where Yahoo's daily bars start.
        request: dict[str, Any] = {name: m.date() for name, m in moments.items()}
        if len(request) == 2 and request["start"] >= request["end"]:
            raise MarketDataError(
                f"daily bars are asked for by date: start {start} and end {end} are one day"
            )
        shown = {name: str(day) for name, day in request.items()}
    else:
        request = dict(epochs)
        shown = {name: m.strftime("%Y-%m-%dT%H:%MZ") for name, m in moments.items()}
    return request, f"{shown.get('start', '…')} → {shown.get('end', 'now')}"


def _epoch(value: When, name: str) -> int:
    import pandas as pd

    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        moment = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise MarketDataError(f"{name} '{value}' is not a date or time") from None
    if moment is pd.NaT:
        raise MarketDataError(f"{name} '{value}' is not a date or time")
    moment = moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")
    return int(moment.timestamp())


def _fetch(
    symbol: str, interval: str, request: dict[str, Any], timeout: float, session: Any
) -> pd.DataFrame:
    """One try. A fresh Ticker each time: a Ticker remembers a failed timezone lookup."""
    import yfinance as yf
    from yfinance.exceptions import YFException

    with _YfinanceLog() as log:
        try:
            frame = yf.Ticker(symbol, session=session).history(
                interval=interval,
                timeout=timeout,
                # Currencies trade around the clock: no pre/post-market filtering by
                # exchange hours, no dividend columns, no price "repairs".
                prepost=True,
                actions=False,
                auto_adjust=False,
                repair=False,
                **request,
            )
        except (OSError, YFException) as exc:  # curl_cffi's errors are OSErrors
            raise _AttemptFailed(_clean(f"{type(exc).__name__}: {exc}")) from exc
        except Exception as exc:
            # An answer yfinance could not read (not JSON, not Yahoo's shape): whatever
            # its parsing raised, this attempt brought no bars.
            raise _AttemptFailed(
                _clean(f"an answer yfinance could not read ({type(exc).__name__}: {exc})")
            ) from exc
    if frame is None or frame.empty:
        raise _AttemptFailed(log.cause() or "Yahoo sent no bars")
    return frame[["Open", "High", "Low", "Close", "Volume"]]


def _before_retry(state: tenacity.RetryCallState) -> None:
    # yfinance memoises answers for ranges in the past, failed ones included: forget
    # them, or the retry would only replay the failure.
    from yfinance.data import YfData

    YfData.cache_get.cache_clear()
    log.warning(
        "yahoo finance attempt failed, retrying",
        attempt=state.attempt_number,
        error=str(state.outcome.exception()) if state.outcome else None,
        wait_s=round(state.upcoming_sleep, 3),
    )


class _YfinanceLog(logging.Handler):
    """Collects what yfinance logs as warnings and errors in this thread while active:
    it reports most failures only there."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self._thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self._thread:
            message = _clean(record.getMessage())
            if message and message not in self.messages:
                self.messages.append(message)

    def cause(self) -> str:
        return "; ".join(self.messages[-3:])

    def __enter__(self) -> _YfinanceLog:
        logging.getLogger("yfinance").addHandler(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        logging.getLogger("yfinance").removeHandler(self)


def _clean(message: str) -> str:
    return " ".join(_CURL_ADVICE.sub("", message).split())

"""signal_svc's business metrics (its RPC metrics are common.interceptors'): signals by
what they say, and when each series last produced one — with the real time a bar takes
here, so an alert can tell a stalled pipeline from a quiet market (a replay runs bars
faster than the clock) — and the gRPC signal streams open now."""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client import Counter, Gauge

from common.candles import TIMEFRAME_SECONDS
from common.market import Timeframe
from common.settings import MarketSettings
from signal_svc.signals import Signal

SIGNALS = Counter(
    "aifx_signals_stored_total",
    "Signals stored (once per candle), by series, action (buy/sell/hold) and source "
    "(model/technical_fallback)",
    ["pair", "timeframe", "action", "source"],
)
LAST_STORED = Gauge(
    "aifx_signal_last_stored_timestamp_seconds",
    "Unix time when the series last stored a signal",
    ["pair", "timeframe"],
)
BAR_SECONDS = Gauge(
    "aifx_signal_bar_seconds",
    "Real seconds one bar of the series takes here (its length, divided by the replay "
    "speed when replaying); weekends and holidays have no bars",
    ["pair", "timeframe"],
)
SUBSCRIBERS = Gauge(
    "aifx_signal_subscribers",
    "gRPC signal streams (SubscribeSignals, StreamAllSignals: the edge, the notifier, "
    "API clients) open on this replica now",
)


def declare_series(series: Iterable[tuple[str, Timeframe]], market: MarketSettings) -> None:
    """The configured series' bar lengths, so a series that never stores is seen too."""
    speed = market.replay_speed if market.market_data_mode == "replay" else 1.0
    for pair, timeframe in series:
        BAR_SECONDS.labels(pair, timeframe.value).set(TIMEFRAME_SECONDS[timeframe] / speed)


def count_stored(signal: Signal) -> None:
    SIGNALS.labels(signal.pair, signal.timeframe.value, signal.action, signal.source).inc()
    LAST_STORED.labels(signal.pair, signal.timeframe.value).set(time.time())

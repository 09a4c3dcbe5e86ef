"""signal_svc's business metrics: signals by action and source, when each series last
stored one, and how long its bars take here."""

from __future__ import annotations

import time

import pytest
from prometheus_client import REGISTRY

from common.market import Timeframe
from common.settings import MarketSettings
from signal_svc.metrics import count_stored, declare_series
from signal_svc.signals import Action
from tests.signal_streams.helpers import make_signal


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_bar_seconds_are_real_seconds_at_the_replay_speed_and_clock_time_live():
    series = [("EUR/USD", Timeframe.H1), ("GBP/USD", Timeframe.D1)]
    declare_series(series, MarketSettings(market_data_mode="replay", replay_speed=3600))
    assert sample("aifx_signal_bar_seconds", pair="EUR/USD", timeframe="1h") == 1.0
    assert sample("aifx_signal_bar_seconds", pair="GBP/USD", timeframe="1d") == 24.0
    declare_series(series, MarketSettings(market_data_mode="live"))
    assert sample("aifx_signal_bar_seconds", pair="EUR/USD", timeframe="1h") == 3600.0


def test_a_stored_signal_is_counted_by_action_and_source_and_stamps_its_series():
    signal = make_signal(1, pair="AUD/USD", timeframe=Timeframe.H4, action=Action.SELL)
    labels = {"pair": "AUD/USD", "timeframe": "4h", "action": "sell", "source": signal.source}
    before = sample("aifx_signals_stored_total", **labels) or 0.0
    count_stored(signal)
    assert sample("aifx_signals_stored_total", **labels) == before + 1
    stamped = sample("aifx_signal_last_stored_timestamp_seconds", pair="AUD/USD", timeframe="4h")
    assert stamped == pytest.approx(time.time(), abs=5)

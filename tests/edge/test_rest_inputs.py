"""The REST input forms derived from the contracts (edge/rest_inputs.py), and the Lua
filter in envoy.yaml kept fresh against them (the filter itself is exercised through a
real Envoy in tests/signal_e2e/test_rest_inputs.py and the other e2e suites)."""

from __future__ import annotations

from edge.rest_inputs import (
    BLOCK_HEADER,
    ENVOY_YAML,
    NARROWED,
    enum_fields,
    enum_forms,
    lua_source,
    with_current_lua,
)


def test_every_enum_field_of_a_rest_request_is_known_with_its_enum():
    fields = {name: enum.full_name for name, enum in enum_fields().items()}
    assert fields["timeframe"] == fields["timeframes"] == "aifx.common.v1.Timeframe"
    assert fields["side"] == fields["action"] == "aifx.common.v1.TradeAction"
    assert fields["status"] == "aifx.position.v1.PositionStatus"
    assert fields["period"] == "aifx.position.v1.PerformancePeriod"


def test_the_forms_of_each_value():
    fields = enum_fields()
    timeframe = enum_forms(fields["timeframe"])
    assert timeframe.accepted == "15m, 1h, 4h, 1d"
    for form in ("1h", "h1", "timeframe_h1"):
        assert timeframe.forms[form] == "TIMEFRAME_H1"
    assert "timeframe_unspecified" not in timeframe.forms  # "not given" is left out
    period = enum_forms(fields["period"])
    assert period.forms["all"] == period.forms["all_time"] == "PERFORMANCE_PERIOD_ALL_TIME"
    assert period.what == "a performance period"
    action = enum_forms(fields["action"])
    assert action.accepted == "buy, sell, hold" and action.forms["hold"] == "TRADE_ACTION_HOLD"
    # A position's side is a trade action, but never HOLD: refused at the edge.
    side = enum_forms(fields["side"], NARROWED["side"])
    assert side.accepted == "buy, sell" and side.forms["sell"] == "TRADE_ACTION_SELL"
    assert "hold" not in side.forms
    assert '["side"] = "aifx.common.v1.TradeAction/side"' in lua_source()


def test_envoy_yaml_runs_the_current_filter():
    text = ENVOY_YAML.read_text()
    assert with_current_lua(text) == text, "run `make gen`"
    assert '["1h"] = "TIMEFRAME_H1"' in lua_source()


def test_rewriting_replaces_only_the_generated_block():
    header = f"a:\n  {BLOCK_HEADER}\n"
    text = header + "    old\n\n    older\nb: 1\n"
    fresh = with_current_lua(text)
    assert fresh.startswith(header)
    assert fresh.endswith("\nb: 1\n") and "old\n" not in fresh
    assert with_current_lua(fresh) == fresh

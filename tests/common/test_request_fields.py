"""common.request_fields: one rule per shared request field, every bad one named."""

from __future__ import annotations

import math

import pytest

from aifx.common.v1 import market_pb2
from common import request_fields
from common.errors import ViolationCollector
from common.market import TIMEFRAME_NUMBERS, Timeframe


def fields_of(errors: ViolationCollector) -> list[str]:
    return [violation.field for violation in errors.violations]


def test_a_pair_is_normalised_and_a_missing_one_is_an_error_only_when_required():
    errors = ViolationCollector()
    assert request_fields.pair("eur-usd", "pair", errors, required=True) == "EUR/USD"
    assert request_fields.pair(" ", "filter", errors, required=False) is None
    assert request_fields.pair("", "pair", errors, required=True) is None
    assert request_fields.pair("XXXYYY", "other", errors, required=False) is None
    assert fields_of(errors) == ["pair", "other"]
    assert "e.g. EUR/USD" in errors.violations[0].description


def test_pair_lists_are_deduplicated_in_order_and_bad_entries_named_by_index():
    errors = ViolationCollector()
    got = request_fields.pairs(["eurusd", "EUR/USD", "nope", "gbpusd", ""], "p", errors)
    assert got == ["EUR/USD", "GBP/USD"]
    assert fields_of(errors) == ["p[2]", "p[4]"]


def test_pair_lists_may_be_required_and_capped():
    errors = ViolationCollector()
    assert request_fields.pairs([], "pairs", errors, required=True) == []
    request_fields.pairs(["EURUSD"] * 3, "preferences.pairs", errors, max_count=2)
    assert fields_of(errors) == ["pairs", "preferences.pairs"]


def test_an_unspecified_timeframe_is_the_rpcs_default_and_an_unknown_one_an_error():
    errors = ViolationCollector()
    unspecified = market_pb2.TIMEFRAME_UNSPECIFIED
    assert request_fields.timeframe(unspecified, "t", errors, default=Timeframe.H1) is Timeframe.H1
    assert request_fields.timeframe(unspecified, "t", errors, default=None) is None
    assert request_fields.timeframe(market_pb2.TIMEFRAME_D1, "t", errors, default=None) is (
        Timeframe.D1
    )
    assert errors.violations == []
    assert request_fields.timeframe(99, "timeframe", errors, default=Timeframe.H1) is None
    assert fields_of(errors) == ["timeframe"]
    assert "TIMEFRAME_M15, TIMEFRAME_H1, TIMEFRAME_H4, TIMEFRAME_D1" in (
        errors.violations[0].description
    )


def test_every_element_of_a_timeframe_list_must_name_one():
    errors = ViolationCollector()
    values = [market_pb2.TIMEFRAME_H1, market_pb2.TIMEFRAME_UNSPECIFIED, market_pb2.TIMEFRAME_H1, 7]
    assert request_fields.timeframes(values, "t", errors) == [Timeframe.H1]
    assert fields_of(errors) == ["t[1]", "t[3]"]


def test_the_timeframe_numbers_are_the_contracts():
    for timeframe, number in TIMEFRAME_NUMBERS.items():
        assert market_pb2.Timeframe.Name(number) == f"TIMEFRAME_{timeframe.name}"
    assert set(TIMEFRAME_NUMBERS) == set(Timeframe)


@pytest.mark.parametrize(
    ("value", "ok"),
    [(0.0, True), (1.0, True), (0.65, True), (-0.1, False), (1.01, False), (math.nan, False)],
)
def test_confidence_is_from_0_to_1(value, ok):
    errors = ViolationCollector()
    read = request_fields.confidence(value, "min_confidence", errors)
    assert (not errors.violations) == ok
    assert read == (value if ok else 0.0)


def test_a_series_needs_a_pair_and_reads_1h_when_no_timeframe_is_named():
    errors = ViolationCollector()
    assert request_fields.series("eurusd", 0, errors) == ("EUR/USD", Timeframe.H1)
    assert request_fields.series("gbpusd", market_pb2.TIMEFRAME_H4, errors) == (
        "GBP/USD",
        Timeframe.H4,
    )
    assert errors.violations == []
    assert request_fields.series("", 42, errors) is None
    assert fields_of(errors) == ["pair", "timeframe"]

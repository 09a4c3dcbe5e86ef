"""Validation of OpenPosition / UpdatePosition input: every bad field is named, all at
once, with a message a trader understands."""

from decimal import Decimal

import pytest

from common.errors import FieldViolation, InvalidArgument
from position_svc.positions import Side
from position_svc.validation import (
    LOT_MAX,
    LOT_MIN,
    MAX_LEVEL_DISTANCE,
    UPDATABLE_PATHS,
    OpenDraft,
    check_entry,
    check_levels,
    parse_decimal,
    parse_open,
    update_paths,
)

GOOD = {
    "pair": "eurusd",
    "side": Side.BUY,
    "lot_size": "0.10",
    "entry_price": "1.08345",
    "stop_loss": "1.08000",
    "take_profit": "1.09000",
    "signal_id": "sig-1",
    "idempotency_key": "8b0f6c1e-3c1a-4c5e-9d7b-2f1a7e0c9d11",
}


def violations_of(**changes) -> list[tuple[str, str]]:
    with pytest.raises(InvalidArgument) as caught:
        parse_open(**{**GOOD, **changes})
    return [(v.field, v.description) for v in caught.value.violations]


def fields_of(**changes) -> list[str]:
    return [field for field, _ in violations_of(**changes)]


def test_a_good_request():
    assert parse_open(**GOOD) == OpenDraft(
        pair="EUR/USD",
        side=Side.BUY,
        lot_size=Decimal("0.10"),
        entry_price=Decimal("1.08345"),
        stop_loss=Decimal("1.08000"),
        take_profit=Decimal("1.09000"),
        signal_id="sig-1",
        idempotency_key="8b0f6c1e-3c1a-4c5e-9d7b-2f1a7e0c9d11",
    )


def test_optional_fields_may_be_empty():
    draft = parse_open(
        "USD/JPY", Side.SELL, "1", entry_price="", stop_loss="", take_profit="",
        signal_id="", idempotency_key="",
    )  # fmt: skip
    assert draft == OpenDraft("USD/JPY", Side.SELL, Decimal(1), None, None, None, None, None)


def test_without_an_entry_the_levels_are_left_to_the_caller():
    # Wrong-side levels cannot be judged without a reference price.
    draft = parse_open(**{**GOOD, "entry_price": "", "stop_loss": "1.2", "take_profit": "1.0"})
    assert (draft.stop_loss, draft.take_profit) == (Decimal("1.2"), Decimal("1.0"))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1.08345", "1.08345"), ("-1", "-1"), ("0", "0"), ("150.750", "150.750"), ("007", "7")],
)
def test_parse_decimal_accepts_plain_decimals(raw, expected):
    violations: list[FieldViolation] = []
    assert str(parse_decimal("x", raw, violations, required=True)) == expected
    assert violations == []


@pytest.mark.parametrize(
    "raw",
    ["1e-3", "1E5", "NaN", "nan", "Infinity", "-Infinity", " 1.08", "1.08 ", "1,000.5",
     "1_000", "+1", ".5", "5.", "1.2.3", "abc", "١٢", "-", "0x10"],
)  # fmt: skip
def test_parse_decimal_refuses_other_forms(raw):
    violations: list[FieldViolation] = []
    assert parse_decimal("entry_price", raw, violations, required=False) is None
    assert [v.field for v in violations] == ["entry_price"]
    assert "is not a plain decimal such as 1.08345" in violations[0].description


def test_parse_decimal_empty():
    violations: list[FieldViolation] = []
    assert parse_decimal("stop_loss", "", violations, required=False) is None
    assert violations == []
    assert parse_decimal("lot_size", "", violations, required=True) is None
    assert violations == [FieldViolation("lot_size", "is required")]


def test_parse_decimal_refuses_very_long_strings():
    violations: list[FieldViolation] = []
    assert parse_decimal("entry_price", "1" * 33, violations, required=True) is None
    assert violations == [FieldViolation("entry_price", "must be at most 32 characters")]


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ("", "a currency pair is required, e.g. EUR/USD or EURUSD"),
        ("EURXYZ", "EUR/XYZ is not a supported pair"),
        ("euro", "'euro' is not a currency pair; write it like EUR/USD or EURUSD"),
    ],
)
def test_pair(pair, message):
    assert violations_of(pair=pair) == [("pair", message)]


def test_side_missing_or_hold():
    assert violations_of(side=None) == [
        ("side", "must be buy or sell (TRADE_ACTION_BUY or TRADE_ACTION_SELL)")
    ]


@pytest.mark.parametrize(
    ("lot", "message"),
    [
        ("", "is required"),
        ("0", "must be at least 0.01 lots (a micro lot)"),
        ("0.009", "must be at least 0.01 lots (a micro lot)"),
        ("-1", "must be at least 0.01 lots (a micro lot)"),
        ("100.01", "must be at most 100 lots"),
        ("1000", "must be at most 100 lots"),
        ("0.015", "must have at most 2 decimal places (0.01 is a micro lot)"),
        ("1e2", None),
    ],
)
def test_lot_size_refused(lot, message):
    got = violations_of(lot_size=lot)
    assert [field for field, _ in got] == ["lot_size"]
    if message is not None:
        assert got[0][1] == message


@pytest.mark.parametrize("lot", ["0.01", "100", "100.00", "0.10", "2.5", "0.150"])
def test_lot_size_accepted(lot):
    assert parse_open(**{**GOOD, "lot_size": lot}).lot_size == Decimal(lot)


def test_bounds_are_the_documented_values():
    assert [str(LOT_MIN), str(LOT_MAX), str(MAX_LEVEL_DISTANCE)] == ["0.01", "100", "0.5"]


@pytest.mark.parametrize("field", ["entry_price", "stop_loss", "take_profit"])
@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("0", "must be greater than 0"),
        ("-1.08", "must be greater than 0"),
        ("1.0834512", "must have at most 6 decimal places"),
        ("1000000", "must be below 1000000"),
    ],
)
def test_prices_refused(field, raw, message):
    # Without an entry the levels are not compared, so each field is judged alone.
    assert violations_of(**{"entry_price": "", field: raw}) == [(field, message)]


def test_six_decimal_places_and_trailing_zeros_are_fine():
    draft = parse_open(**{**GOOD, "entry_price": "1.083451", "stop_loss": "1.0800000000"})
    assert draft.entry_price == Decimal("1.083451")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"stop_loss": "1.09"},
            [("stop_loss", "stop_loss 1.09 must be below the entry price 1.08345 for a BUY")],
        ),
        (
            {"take_profit": "1.08"},
            [("take_profit", "take_profit 1.08 must be above the entry price 1.08345 for a BUY")],
        ),
        (
            {"stop_loss": "1.08345"},
            [("stop_loss", "stop_loss 1.08345 must be below the entry price 1.08345 for a BUY")],
        ),
        (
            {"side": Side.SELL},
            [
                ("stop_loss", "stop_loss 1.08000 must be above the entry price 1.08345 for a SELL"),
                (
                    "take_profit",
                    "take_profit 1.09000 must be below the entry price 1.08345 for a SELL",
                ),
            ],
        ),
        (
            {"take_profit": "10.9"},
            [
                (
                    "take_profit",
                    "take_profit 10.9 is more than 50% away from the entry price 1.08345; "
                    "check for a misplaced decimal point",
                )
            ],
        ),
    ],
)
def test_levels_against_the_entry(changes, expected):
    assert violations_of(**changes) == expected


def test_sell_levels_accepted():
    draft = parse_open(**{**GOOD, "side": Side.SELL, "stop_loss": "1.09", "take_profit": "1.07"})
    assert (draft.stop_loss, draft.take_profit) == (Decimal("1.09"), Decimal("1.07"))


@pytest.mark.parametrize(
    ("side", "stop", "target", "fields"),
    [
        (Side.BUY, "1.0799", "1.0901", []),
        (Side.BUY, "1.09", "1.07", ["stop_loss", "take_profit"]),
        (Side.BUY, "0.54", "1.62", []),  # exactly 50% away is still sane
        (Side.BUY, "0.5399", "1.6201", ["stop_loss", "take_profit"]),
        (Side.SELL, "1.0901", "1.0799", []),
        (Side.SELL, "1.07", "1.09", ["stop_loss", "take_profit"]),
        (Side.SELL, "1.6201", "0.5399", ["stop_loss", "take_profit"]),
        (Side.SELL, None, None, []),
    ],
)
def test_check_levels(side, stop, target, fields):
    got = check_levels(
        side,
        Decimal("1.08"),
        None if stop is None else Decimal(stop),
        None if target is None else Decimal(target),
    )
    assert [v.field for v in got] == fields


def test_check_levels_for_an_update_against_the_current_price():
    got = check_levels(
        Side.SELL,
        Decimal("150.250"),
        Decimal("150.000"),
        None,
        prefix="position.",
        reference_name="current price",
    )
    assert got == [
        FieldViolation(
            "position.stop_loss",
            "stop_loss 150.000 must be above the current price 150.250 for a SELL",
        )
    ]


def test_check_entry_against_the_market():
    assert check_entry(Decimal("1.08"), Decimal("1.0835")) == []
    assert check_entry(Decimal("10.8"), Decimal("1.0835")) == [
        FieldViolation(
            "entry_price",
            "entry_price 10.8 is more than 50% away from the current price 1.0835; "
            "check for a misplaced decimal point",
        )
    ]


@pytest.mark.parametrize("signal_id", ["x" * 65, "s" * 100])
def test_signal_id_too_long(signal_id):
    assert violations_of(signal_id=signal_id) == [("signal_id", "must be at most 64 characters")]


def test_signal_id_of_64_characters():
    assert parse_open(**{**GOOD, "signal_id": "s" * 64}).signal_id == "s" * 64


@pytest.mark.parametrize("key", ["k" * 65, "has space", "tab\tkey", "clé", "new\nline"])
def test_idempotency_key_refused(key):
    assert violations_of(idempotency_key=key) == [
        (
            "idempotency_key",
            "must be 1 to 64 printable ASCII characters without spaces, e.g. a UUID",
        )
    ]


@pytest.mark.parametrize("key", ["k", "k" * 64, "order#42/retry~1"])
def test_idempotency_key_accepted(key):
    assert parse_open(**{**GOOD, "idempotency_key": key}).idempotency_key == key


def test_every_violation_is_reported_together():
    got = fields_of(
        pair="XXXYYY",
        side=None,
        lot_size="0.001",
        entry_price="1e3",
        stop_loss="NaN",
        take_profit="-2",
        signal_id="x" * 70,
        idempotency_key="bad key",
    )
    assert got == [
        "pair",
        "side",
        "lot_size",
        "entry_price",
        "stop_loss",
        "take_profit",
        "signal_id",
        "idempotency_key",
    ]


def test_wrong_side_levels_and_other_errors_together():
    assert fields_of(lot_size="500", stop_loss="1.1", take_profit="1.0") == [
        "lot_size",
        "stop_loss",
        "take_profit",
    ]


@pytest.mark.parametrize(
    ("paths", "expected"),
    [
        ([], UPDATABLE_PATHS),
        (["stop_loss"], ("stop_loss",)),
        (["take_profit"], ("take_profit",)),
        (["take_profit", "stop_loss"], ("stop_loss", "take_profit")),
        (["stopLoss"], ("stop_loss",)),
        (["takeProfit", "stop_loss", "stopLoss"], ("stop_loss", "take_profit")),
    ],
)
def test_update_paths(paths, expected):
    assert update_paths(paths) == expected
    assert UPDATABLE_PATHS == ("stop_loss", "take_profit")


def test_unknown_update_paths_are_refused_by_name():
    with pytest.raises(InvalidArgument) as caught:
        update_paths(["stop_loss", "lot_size", "entryPrice"])
    assert caught.value.violations == [
        FieldViolation(
            "update_mask", "unknown path 'lot_size'; only stop_loss and take_profit can change"
        ),
        FieldViolation(
            "update_mask", "unknown path 'entryPrice'; only stop_loss and take_profit can change"
        ),
    ]

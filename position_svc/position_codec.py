"""A Position as plain fields (its database row) and as a JSON document (the snapshot a
position event carries): one place that knows which fields are enums, times and exact
decimals, for both.

Fields come straight from the dataclass, so a field added to `Position` is stored and
carried without touching this module, as long as its kind is listed here when it is an
enum, a time or a decimal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields as dataclass_fields
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from common.time import as_utc
from position_svc.positions import CloseReason, Position, Result, Side, Status

ENUMS: dict[str, type[StrEnum]] = {
    "side": Side,
    "status": Status,
    "close_reason": CloseReason,
    "result": Result,
}
TIMES = frozenset({"open_time", "update_time", "close_time"})
DECIMALS = frozenset(
    {
        "lot_size",
        "entry_price",
        "stop_loss",
        "take_profit",
        "exit_price",
        "pips",
        "realized_pnl",
        "realized_pnl_usd",
    }
)
NAMES = tuple(field.name for field in dataclass_fields(Position))


def position_fields(position: Position) -> dict[str, Any]:
    """Every field as a plain value: enums as their values, times in UTC, decimals and
    the rest as they are."""
    values: dict[str, Any] = {}
    for name in NAMES:
        value = getattr(position, name)
        if value is not None and name in ENUMS:
            value = value.value
        elif value is not None and name in TIMES:
            value = as_utc(value)
        values[name] = value
    return values


def position_from_fields(values: Mapping[str, Any]) -> Position:
    """The Position of `position_fields` output, a row with the same columns, or a
    document (decimals as text, times as ISO 8601 text are read too)."""
    fields: dict[str, Any] = {}
    for name in NAMES:
        value = values.get(name)
        if value is not None:
            if name in ENUMS:
                value = ENUMS[name](value)
            elif name in TIMES:
                value = as_utc(datetime.fromisoformat(value) if isinstance(value, str) else value)
            elif name in DECIMALS:
                value = Decimal(value)
        fields[name] = value
    return Position(**fields)


def position_document(position: Position) -> dict[str, Any]:
    """The position as JSON: decimals as plain strings so they stay exact, times as
    ISO 8601. `position_from_fields` reads it back."""
    document = position_fields(position)
    for name, value in document.items():
        if value is not None and name in DECIMALS:
            document[name] = format(value, "f")
        elif value is not None and name in TIMES:
            document[name] = value.isoformat()
    return document

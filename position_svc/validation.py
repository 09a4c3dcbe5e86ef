"""Validation of what traders send the position service. Every bad field is named with a
message a trader can act on, and all of them come back in one INVALID_ARGUMENT.

Ranges, and why:
- Lot sizes: 0.01 (a micro lot, the smallest size retail brokers trade) to 100 standard
  lots, at most 2 decimal places.
- Prices: greater than 0, below 1,000,000 and at most 6 decimal places (quotes carry 5,
  or 3 for JPY pairs; one more digit leaves room for fractional-pip levels).
- A stop-loss or take-profit (and an entry against the market price) more than 50% away
  from its reference is refused as not sane: no major moves that far while a position
  is open, but a misplaced decimal point (10.8 for 1.08) does, and it would otherwise
  record a level that never triggers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from common import request_fields
from common.errors import FieldViolation, InvalidArgument, ViolationCollector
from position_svc.pnl import plain_decimal
from position_svc.positions import Side

LOT_MIN = Decimal("0.01")
LOT_MAX = Decimal("100")
LOT_PLACES = 2
PRICE_PLACES = 6
PRICE_MAX = Decimal(1_000_000)
MAX_LEVEL_DISTANCE = Decimal("0.5")
# Longer strings are no price or lot size; the cap also keeps them out of messages.
MAX_DECIMAL_CHARS = 32
MAX_SIGNAL_ID_CHARS = 64
UPDATABLE_PATHS = ("stop_loss", "take_profit")

_DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
# Visible ASCII without spaces: the key may travel as an HTTP header, where leading and
# trailing spaces are stripped, and a UUID fits.
_IDEMPOTENCY_KEY = re.compile(r"[!-~]{1,64}")
# proto3 JSON names too: Envoy's transcoder may pass `updateMask=stopLoss` through as is.
_PATH_NAMES = {
    "stop_loss": "stop_loss",
    "stopLoss": "stop_loss",
    "take_profit": "take_profit",
    "takeProfit": "take_profit",
}


@dataclass(frozen=True)
class OpenDraft:
    """An OpenPosition request that passed validation. `entry_price` None means open at
    the market price; the caller then checks the levels against that price."""

    pair: str
    side: Side
    lot_size: Decimal
    entry_price: Decimal | None
    stop_loss: Decimal | None
    take_profit: Decimal | None
    signal_id: str | None
    idempotency_key: str | None


def parse_decimal(
    field: str, raw: str, violations: list[FieldViolation], *, required: bool
) -> Decimal | None:
    """`raw` as an exact Decimal, or None (after recording a violation when it is bad).

    Only the contract's plain form is accepted ("1.08345", "-1"): `Decimal()` alone would
    also take " 1e2", "NaN", "Infinity" and "1_000", which no client means as a price.
    An empty string is an absent value.
    """
    if raw == "":
        if required:
            violations.append(FieldViolation(field, "is required"))
        return None
    if len(raw) > MAX_DECIMAL_CHARS:
        violations.append(FieldViolation(field, f"must be at most {MAX_DECIMAL_CHARS} characters"))
        return None
    if not _DECIMAL.fullmatch(raw):
        violations.append(
            FieldViolation(
                field,
                f"'{raw}' is not a plain decimal such as 1.08345: digits with an optional "
                "'-' and '.', no exponent, spaces or separators",
            )
        )
        return None
    return Decimal(raw)


def _places(value: Decimal) -> int:
    """Decimal places that matter: 0.10 has one, 1.080000 has two."""
    exponent = plain_decimal(value).as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def _check_lot(value: Decimal, violations: list[FieldViolation]) -> Decimal | None:
    problem = None
    if value < LOT_MIN:
        problem = f"must be at least {LOT_MIN} lots (a micro lot)"
    elif value > LOT_MAX:
        problem = f"must be at most {LOT_MAX} lots"
    elif _places(value) > LOT_PLACES:
        problem = f"must have at most {LOT_PLACES} decimal places (0.01 is a micro lot)"
    if problem is None:
        return value
    violations.append(FieldViolation("lot_size", problem))
    return None


def _parse_price(field: str, raw: str, violations: list[FieldViolation]) -> Decimal | None:
    """An optional price: None when empty or bad (bad ones are recorded)."""
    value = parse_decimal(field, raw, violations, required=False)
    if value is None:
        return None
    problem = None
    if value <= 0:
        problem = "must be greater than 0"
    elif value >= PRICE_MAX:
        problem = f"must be below {PRICE_MAX}"
    elif _places(value) > PRICE_PLACES:
        problem = f"must have at most {PRICE_PLACES} decimal places"
    if problem is None:
        return value
    violations.append(FieldViolation(field, problem))
    return None


def _too_far(price: Decimal, reference: Decimal) -> bool:
    return abs(price - reference) > reference * MAX_LEVEL_DISTANCE


def _far_message(name: str, price: Decimal, reference_name: str, reference: Decimal) -> str:
    return (
        f"{name} {price} is more than {MAX_LEVEL_DISTANCE:%} away from the {reference_name} "
        f"{reference}; check for a misplaced decimal point"
    )


def check_levels(
    side: Side,
    reference: Decimal,
    stop_loss: Decimal | None,
    take_profit: Decimal | None,
    *,
    prefix: str = "",
    reference_name: str = "entry price",
) -> list[FieldViolation]:
    """Violations of the levels against `reference`: a BUY needs stop_loss < reference <
    take_profit, a SELL the mirror, and each level within MAX_LEVEL_DISTANCE of it.

    `reference` is the entry price when opening; an update may check against the current
    price instead (`reference_name="current price"`), so a stop can trail past the entry.
    `prefix` makes the field paths match the request ("position." for UpdatePosition).
    """
    violations: list[FieldViolation] = []
    levels = (
        ("stop_loss", stop_loss, side is Side.BUY),
        ("take_profit", take_profit, side is Side.SELL),
    )
    for name, level, below in levels:
        if level is None:
            continue
        if level >= reference if below else level <= reference:
            where = "below" if below else "above"
            problem = (
                f"{name} {level} must be {where} the {reference_name} {reference} for a {side.name}"
            )
        elif _too_far(level, reference):
            problem = _far_message(name, level, reference_name, reference)
        else:
            continue
        violations.append(FieldViolation(prefix + name, problem))
    return violations


def check_entry(entry_price: Decimal, market_price: Decimal) -> list[FieldViolation]:
    """The sanity check of a given entry price against the current market price."""
    if _too_far(entry_price, market_price):
        message = _far_message("entry_price", entry_price, "current price", market_price)
        return [FieldViolation("entry_price", message)]
    return []


def parse_open(
    pair: str,
    side: Side | None,
    lot_size: str,
    entry_price: str,
    stop_loss: str,
    take_profit: str,
    signal_id: str,
    idempotency_key: str,
) -> OpenDraft:
    """An OpenPosition request as an OpenDraft, or one InvalidArgument naming every bad
    field. `side` None is a missing side or HOLD. The levels are checked against the entry
    here only when it is given; otherwise the caller checks them against the market price.
    """
    collector = ViolationCollector()
    violations = collector.violations
    normalized = request_fields.pair(pair, "pair", collector, required=True)
    if side is None:
        violations.append(
            FieldViolation("side", "must be buy or sell (TRADE_ACTION_BUY or TRADE_ACTION_SELL)")
        )
    lot = parse_decimal("lot_size", lot_size, violations, required=True)
    if lot is not None:
        lot = _check_lot(lot, violations)
    entry = _parse_price("entry_price", entry_price, violations)
    stop = _parse_price("stop_loss", stop_loss, violations)
    target = _parse_price("take_profit", take_profit, violations)
    if side is not None and entry is not None:
        violations.extend(check_levels(side, entry, stop, target))
    if len(signal_id) > MAX_SIGNAL_ID_CHARS:
        violations.append(
            FieldViolation("signal_id", f"must be at most {MAX_SIGNAL_ID_CHARS} characters")
        )
    if idempotency_key and not _IDEMPOTENCY_KEY.fullmatch(idempotency_key):
        violations.append(
            FieldViolation(
                "idempotency_key",
                "must be 1 to 64 printable ASCII characters without spaces, e.g. a UUID",
            )
        )
    # The None checks only narrow types: each None above recorded a violation.
    if violations or normalized is None or side is None or lot is None:
        raise InvalidArgument(violations)
    return OpenDraft(
        pair=normalized,
        side=side,
        lot_size=lot,
        entry_price=entry,
        stop_loss=stop,
        take_profit=target,
        signal_id=signal_id or None,
        idempotency_key=idempotency_key or None,
    )


def update_paths(paths: Sequence[str]) -> tuple[str, ...]:
    """The levels an UpdatePosition changes, in UPDATABLE_PATHS order; an empty mask means
    both. Any other path is refused, naming the ones allowed."""
    if not paths:
        return UPDATABLE_PATHS
    unknown = [path for path in paths if path not in _PATH_NAMES]
    if unknown:
        allowed = " and ".join(UPDATABLE_PATHS)
        raise InvalidArgument(
            [
                FieldViolation("update_mask", f"unknown path '{path}'; only {allowed} can change")
                for path in unknown
            ]
        )
    chosen = {_PATH_NAMES[path] for path in paths}
    return tuple(path for path in UPDATABLE_PATHS if path in chosen)


def parse_levels(paths: Sequence[str], raw: dict[str, str]) -> dict[str, Decimal | None]:
    """The new values of the levels an UpdatePosition changes (`update_paths` of its
    mask), from their sent text `raw` (path → text; empty removes the level).
    InvalidArgument naming every bad one as `position.<path>`."""
    violations: list[FieldViolation] = []
    levels = {
        path: parse_decimal(f"position.{path}", raw[path], violations, required=False)
        for path in paths
    }
    if violations:
        raise InvalidArgument(violations)
    return levels


def parse_exit_price(raw: str) -> Decimal | None:
    """A ClosePosition's exit price: None (close at market) when empty."""
    violations: list[FieldViolation] = []
    price = parse_decimal("exit_price", raw, violations, required=False)
    if price is not None and price <= 0:
        violations.append(FieldViolation("exit_price", "must be greater than 0"))
    if violations:
        raise InvalidArgument(violations)
    return price

"""Reading the fields AIFX requests share — pairs, timeframes, confidences,
stream resume points, page sizes — with one rule each, for every servicer.

Each reader records what is wrong in a ViolationCollector under the field's path
(`pair`, `pairs[2]`, `preferences.timeframes[0]`) and returns what it could read, so a
request with three bad fields gets one INVALID_ARGUMENT naming all three. Plain Python
(timeframes arrive as the contract's enum numbers, see common.market), so domain code
that validates requests uses it too.

The rules:

- **Pairs** are normalised (`eurusd`, `EUR-USD` → `EUR/USD`) and must be pairs AIFX
  knows. A repeated pair field keeps the first of each pair, in the order given.
- **Timeframes**: `TIMEFRAME_UNSPECIFIED` (0, what an absent field reads as) means the
  field was not given: a single timeframe then takes the RPC's documented default
  (1h where one series is read, "any" where it filters). In a repeated field every
  element must name a timeframe, as an element cannot be absent. A number that is no
  timeframe is always an error.
- **Confidences** are finite numbers from 0 to 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from common.errors import ViolationCollector
from common.market import TIMEFRAME_NUMBERS, Timeframe, normalize_pair, timeframe_enum_name

TIMEFRAME_UNSPECIFIED = 0
_TIMEFRAMES = {number: timeframe for timeframe, number in TIMEFRAME_NUMBERS.items()}
TIMEFRAME_NAMES = ", ".join(timeframe_enum_name(timeframe) for timeframe in Timeframe)
PAIR_EXAMPLE = "e.g. EUR/USD or EURUSD"
# The timeframe of a request that reads one series and names none.
SERIES_TIMEFRAME = Timeframe.H1


def pair(raw: str, field: str, violations: ViolationCollector, *, required: bool) -> str | None:
    """The normalised pair, or None when it is missing (a violation if `required`) or
    not a pair AIFX knows (a violation)."""
    if not raw.strip():
        if required:
            violations.add(field, f"a currency pair is required, {PAIR_EXAMPLE}")
        return None
    try:
        return normalize_pair(raw)
    except ValueError as exc:
        violations.add(field, str(exc))
        return None


def pairs(
    raw: Sequence[str],
    field: str,
    violations: ViolationCollector,
    *,
    required: bool = False,
    max_count: int | None = None,
) -> list[str]:
    """Normalised pairs, each once, in the order given; `field[i]` names a bad one."""
    if required and not raw:
        violations.add(field, f"at least one currency pair is required, {PAIR_EXAMPLE}")
    if max_count is not None and len(raw) > max_count:
        violations.add(field, f"at most {max_count} pairs")
    read = (pair(value, f"{field}[{i}]", violations, required=True) for i, value in enumerate(raw))
    return list(dict.fromkeys(p for p in read if p is not None))


def _not_a_timeframe(value: int) -> str:
    return f"{value} is not a timeframe; use one of {TIMEFRAME_NAMES}"


def timeframe(
    value: int, field: str, violations: ViolationCollector, *, default: Timeframe | None
) -> Timeframe | None:
    """The timeframe of a single field; `default` when it was not given (see the
    module docstring); None after recording a violation for an unknown number."""
    if value == TIMEFRAME_UNSPECIFIED:
        return default
    known = _TIMEFRAMES.get(value)
    if known is None:
        violations.add(field, _not_a_timeframe(value))
    return known


def timeframes(
    values: Sequence[int], field: str, violations: ViolationCollector
) -> list[Timeframe]:
    """The timeframes of a repeated field, each once, in the order given; every element
    must name one (`field[i]` names one that does not)."""
    read: list[Timeframe] = []
    for index, value in enumerate(values):
        known = _TIMEFRAMES.get(value)
        if known is None:
            violations.add(f"{field}[{index}]", _not_a_timeframe(value))
        elif known not in read:
            read.append(known)
    return read


def series(
    pair_raw: str, timeframe_value: int, violations: ViolationCollector
) -> tuple[str, Timeframe] | None:
    """The (pair, timeframe) of a request that reads one series (`pair` and
    `timeframe` fields): the pair is required, the timeframe defaults to 1h. None after
    recording what is wrong."""
    pair_read = pair(pair_raw, "pair", violations, required=True)
    timeframe_read = timeframe(timeframe_value, "timeframe", violations, default=SERIES_TIMEFRAME)
    if pair_read is None or timeframe_read is None:
        return None
    return pair_read, timeframe_read


def confidence(value: float, field: str, violations: ViolationCollector) -> float:
    """A confidence from 0 to 1; 0 after recording a violation when it is not one."""
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        violations.add(field, "must be between 0 and 1")
        return 0.0
    return value

"""Market vocabulary shared by every service: currency pairs and timeframes.

Pairs are written `EUR/USD`; `EURUSD`, `eur/usd` and `EUR-USD` are accepted and
normalised. Only pairs AIFX knows are accepted, so a typo is an error, not a silent
empty subscription.
"""

from __future__ import annotations

import re
from enum import StrEnum

# Majors and the common crosses; the signal service decides which of them have data.
SUPPORTED_PAIRS: frozenset[str] = frozenset(
    {
        "EUR/USD", "GBP/USD", "USD/JPY", "USD/CHF", "AUD/USD", "USD/CAD", "NZD/USD",
        "EUR/GBP", "EUR/JPY", "GBP/JPY", "EUR/CHF", "AUD/JPY", "EUR/AUD", "GBP/CHF",
    }
)  # fmt: skip

_PAIR = re.compile(r"^\s*([A-Za-z]{3})\s*[/\-_ ]?\s*([A-Za-z]{3})\s*$")


class Timeframe(StrEnum):
    """Bar lengths AIFX computes signals on."""

    M15 = "15m"
    H1 = "1h"
    H4 = "4h"
    D1 = "1d"


# The numbers of the contract's `aifx.common.v1.Timeframe` enum (0 is
# TIMEFRAME_UNSPECIFIED: not given), so code that reads requests needs no generated code.
# common.proto_convert checks them against the generated enum when it is imported.
TIMEFRAME_NUMBERS: dict[Timeframe, int] = {
    Timeframe.M15: 1,
    Timeframe.H1: 2,
    Timeframe.H4: 3,
    Timeframe.D1: 4,
}


def timeframe_enum_name(timeframe: Timeframe) -> str:
    """The contract's name of `timeframe`, e.g. TIMEFRAME_H1."""
    return f"TIMEFRAME_{timeframe.name}"


def normalize_pair(raw: str) -> str:
    """`eurusd` → `EUR/USD`. Raises ValueError naming the accepted forms."""
    match = _PAIR.match(raw or "")
    if match is None:
        raise ValueError(f"'{raw}' is not a currency pair; write it like EUR/USD or EURUSD")
    pair = f"{match.group(1).upper()}/{match.group(2).upper()}"
    if pair not in SUPPORTED_PAIRS:
        raise ValueError(f"{pair} is not a supported pair")
    return pair

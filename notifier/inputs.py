"""Pairs and timeframes as traders type them in a slash command (`eurusd`, `EUR/USD`,
`1h`, `H1`, `60m`, `daily`), read into the platform's vocabulary, with a refusal that
says what to type instead."""

from __future__ import annotations

from common.errors import FieldViolation, InvalidArgument
from common.market import SUPPORTED_PAIRS, Timeframe, normalize_pair

_TIMEFRAME_FORMS = {
    Timeframe.M15: ("15m", "m15", "15min", "15", "15minutes"),
    Timeframe.H1: ("1h", "h1", "60m", "60", "60min", "hourly", "1hour"),
    Timeframe.H4: ("4h", "h4", "240m", "240", "4hours"),
    Timeframe.D1: ("1d", "d1", "d", "day", "daily", "24h", "1day"),
}
_TIMEFRAMES = {form: tf for tf, forms in _TIMEFRAME_FORMS.items() for form in forms}
TIMEFRAME_HELP = ", ".join(tf.value for tf in Timeframe)


def pair(raw: str, option: str = "pair") -> str:
    """`eurusd` → `EUR/USD`; InvalidArgument naming the option otherwise."""
    try:
        return normalize_pair(raw)
    except ValueError as refused:
        raise InvalidArgument(
            [FieldViolation(option, f"{refused}. Pairs: {', '.join(sorted(SUPPORTED_PAIRS))}")]
        ) from None


def timeframe(raw: str | None, option: str = "timeframe") -> Timeframe:
    """`1h`, `H1`, `60m`... → Timeframe.H1; 1h when not given."""
    if raw is None or not raw.strip():
        return Timeframe.H1
    key = raw.strip().lower().replace(" ", "").replace("_", "")
    found = _TIMEFRAMES.get(key)
    if found is None:
        raise InvalidArgument(
            [FieldViolation(option, f"'{raw}' is not a timeframe; use one of {TIMEFRAME_HELP}")]
        )
    return found


def pair_choices(known: list[str], typed: str, limit: int = 25) -> list[str]:
    """Autocomplete: the known pairs matching what is typed so far (`eu`, `eur/`, `usdj`),
    at most `limit` (Discord shows 25)."""
    needle = "".join(ch for ch in typed.upper() if ch.isalpha())
    return [p for p in known if needle in p.replace("/", "")][:limit]

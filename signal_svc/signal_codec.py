"""A Signal as plain fields, and as JSON: the one list of a signal's fields outside the
proto conversion (`convert.py`).

`signal_fields` / `signal_from_fields` are what the repository writes to and reads from
its rows (datetimes, enum values, floats); `signal_to_json` / `signal_from_json` are what
Redis carries (the GetSignal cache and the cross-replica relay): the same fields with
times as ISO 8601 text. No generated code here: the cache and the relay are domain
parts, and a signal's storage form must not change with its wire form.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from common.market import Timeframe
from common.time import as_utc
from signal_svc.signals import Action, Signal, Source, Strength

_TIMES = ("candle_time", "created_at")


def _finite(value: float | None) -> float | None:
    """NaN and infinities (an indicator that could not be computed) are None: JSON and
    the database have no room for them."""
    return None if value is None or not math.isfinite(value) else float(value)


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def signal_fields(signal: Signal) -> dict[str, Any]:
    """Every field of `signal` (its id included) as plain values."""
    return {
        "id": signal.id,
        "pair": signal.pair,
        "timeframe": signal.timeframe.value,
        "candle_time": as_utc(signal.candle_time),
        "action": signal.action.value,
        "confidence": signal.confidence,
        "strength": signal.strength.value,
        "entry_price": signal.entry_price,
        "stop_loss": signal.stop_loss,
        "take_profit": signal.take_profit,
        "risk_reward_ratio": signal.risk_reward_ratio,
        "probabilities": None if signal.probabilities is None else dict(signal.probabilities),
        "indicators": {name: _finite(value) for name, value in signal.indicators.items()},
        "source": signal.source.value,
        "model_name": signal.model_name,
        "model_version": signal.model_version,
        "created_at": as_utc(signal.created_at),
        "replay_lap": signal.replay_lap,
    }


def signal_from_fields(fields: Mapping[str, Any]) -> Signal:
    """The Signal of `signal_fields` output (or a row with the same columns).
    KeyError, ValueError or TypeError when a field is missing or malformed."""
    probabilities = fields.get("probabilities")
    return Signal(
        id=int(fields.get("id") or 0),
        pair=str(fields["pair"]),
        timeframe=Timeframe(str(fields["timeframe"])),
        candle_time=as_utc(fields["candle_time"]),
        action=Action(str(fields["action"])),
        confidence=float(fields["confidence"]),
        strength=Strength(str(fields["strength"])),
        entry_price=float(fields["entry_price"]),
        stop_loss=_optional_float(fields.get("stop_loss")),
        take_profit=_optional_float(fields.get("take_profit")),
        risk_reward_ratio=_optional_float(fields.get("risk_reward_ratio")),
        probabilities=(
            None
            if probabilities is None
            else {str(name): float(value) for name, value in probabilities.items()}
        ),
        indicators={
            str(name): _optional_float(value)
            for name, value in (fields.get("indicators") or {}).items()
        },
        source=Source(str(fields["source"])),
        model_name=str(fields.get("model_name", "")),
        model_version=str(fields.get("model_version", "")),
        created_at=as_utc(fields["created_at"]),
        replay_lap=int(fields.get("replay_lap") or 0),
    )


def signal_to_json_fields(signal: Signal) -> dict[str, Any]:
    """`signal_fields` with its times as ISO 8601 text: ready for json.dumps."""
    fields = signal_fields(signal)
    for name in _TIMES:
        fields[name] = fields[name].isoformat()
    return fields


def signal_from_json_fields(data: Mapping[str, Any]) -> Signal:
    """The reverse of `signal_to_json_fields`."""
    return signal_from_fields(
        {**data, **{name: datetime.fromisoformat(str(data[name])) for name in _TIMES}}
    )


def signal_to_json(signal: Signal) -> str:
    """Compact JSON of the whole signal (id included); `signal_from_json` reverses it."""
    return json.dumps(signal_to_json_fields(signal), separators=(",", ":"), allow_nan=False)


def signal_from_json(text: str | bytes) -> Signal:
    """ValueError, KeyError or TypeError when `text` is not a signal's JSON."""
    return signal_from_json_fields(json.loads(text))

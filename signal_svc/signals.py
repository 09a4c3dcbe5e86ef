"""What a signal is, in plain Python; shared by the engine, the repository, the streams
and the servicer."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from common.market import Timeframe


class Action(StrEnum):
    BUY = "buy"
    SELL = "sell"
    HOLD = "hold"


class Strength(StrEnum):
    """Confidence buckets (thresholds are settings, see `strength_of`)."""

    WEAK = "weak"
    MODERATE = "moderate"
    STRONG = "strong"
    VERY_STRONG = "very_strong"


class Source(StrEnum):
    MODEL = "model"
    TECHNICAL_FALLBACK = "technical_fallback"


INDICATOR_NAMES = (
    "sma_20",
    "sma_50",
    "ema_12",
    "ema_26",
    "rsi_14",
    "macd",
    "macd_signal",
    "macd_histogram",
    "atr_14",
    "bollinger_upper",
    "bollinger_middle",
    "bollinger_lower",
)


@dataclass(frozen=True)
class Signal:
    """A recommendation for one pair and timeframe at one candle close.

    `candle_time` is the close time of the last candle used (its open time plus the
    timeframe), UTC. `id` is 0 until the signal is stored; stored ids increase in
    creation order. Stop-loss, take-profit and risk/reward are None for HOLD;
    `probabilities` is None for technical-fallback signals. `replay_lap` is the lap of
    an offline replay that loops (0 on its first lap and for live data): a candle has
    one signal per lap.
    """

    pair: str
    timeframe: Timeframe
    candle_time: datetime
    action: Action
    confidence: float
    strength: Strength
    entry_price: float
    stop_loss: float | None
    take_profit: float | None
    risk_reward_ratio: float | None
    probabilities: dict[str, float] | None
    indicators: dict[str, float | None]
    source: Source
    model_name: str
    model_version: str
    created_at: datetime
    id: int = field(default=0)
    replay_lap: int = 0


def strength_of(confidence: float, thresholds: tuple[float, float, float]) -> Strength:
    """WEAK below thresholds[0], MODERATE below [1], STRONG below [2], else VERY_STRONG."""
    moderate, strong, very_strong = thresholds
    if confidence >= very_strong:
        return Strength.VERY_STRONG
    if confidence >= strong:
        return Strength.STRONG
    if confidence >= moderate:
        return Strength.MODERATE
    return Strength.WEAK

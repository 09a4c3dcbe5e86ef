"""The signal engine: a closed candle in, a signal out (not stored; id 0).

How the model and the technical rules combine (see `technical.py` for the rules):

- The model answers (source MODEL): its calibrated class probabilities decide.
  - Model BUY or SELL, and the rules do not call the opposite trade → the model's action,
    with the model's calibrated probability of it as the confidence.
  - Model BUY or SELL, but the rules call the opposite trade → HOLD: two views disagree
    and nothing is traded. The confidence is the model's probability of HOLD.
  - Model HOLD → HOLD with the model's probability of HOLD. The rules never promote a
    HOLD to a trade: they are weaker evidence than the calibrated model.
  So the confidence is always the model's calibrated probability of the action sent;
  technical confirmation can only veto, never inflate it (inflating would break the
  calibration the model card measures).
- The model does not answer (source TECHNICAL_FALLBACK): inference down, slower than
  `inference_timeout_seconds`, its circuit breaker open, the series not covered by the
  served model (e.g. 4h), or no inference configured. The rules' action, with their
  heuristic confidence capped at `fallback_max_confidence`; no probabilities; model name
  "technical" and version "1" (the rule set, as the Signal contract documents).

Levels: entry = the last close; for BUY stop-loss = entry - stop_loss_atr x ATR(14) and
take-profit = entry + take_profit_atr x ATR(14), mirrored for SELL; risk/reward =
|take-profit - entry| / |entry - stop-loss|. HOLD has none. Without an ATR (too few
candles) a trade cannot be sized, so it becomes HOLD. Strength buckets the confidence
with `strength_thresholds`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from common.candles import TIMEFRAME_SECONDS, Candles
from common.settings import StrategySettings
from common.time import utcnow
from signal_svc import technical
from signal_svc.ports import (
    CandleClosed,
    InferenceUnavailable,
    ModelPrediction,
    Outcome,
    Predictions,
)
from signal_svc.signals import Action, Signal, Source, strength_of

log = structlog.get_logger(__name__)

# Closed candles the engine wants per evaluation, oldest first: at least the served
# model's GetModelInfo.min_candles (260 for lstm v1) and the indicators' warm-up. What
# the market feed should hand over in CandleClosed.candles / MarketData.history.
HISTORY_BARS = 300


@dataclass(frozen=True)
class Levels:
    stop_loss: float | None
    take_profit: float | None
    risk_reward_ratio: float | None


def candle_close_time(candles: Candles) -> datetime:
    """Close time (UTC) of the last candle: its open time plus the timeframe."""
    seconds = int(candles.times[-1]) + TIMEFRAME_SECONDS[candles.timeframe]
    return datetime.fromtimestamp(seconds, UTC)


def levels(
    action: Action, entry: float, atr: float | None, stop_atr: float, target_atr: float
) -> Levels | None:
    """Stop-loss / take-profit / risk-reward of a trade; all None for HOLD; None when a
    trade cannot be sized (no usable ATR)."""
    if action is Action.HOLD:
        return Levels(None, None, None)
    if atr is None or not math.isfinite(atr) or atr <= 0:
        return None
    direction = 1.0 if action is Action.BUY else -1.0
    stop_loss = entry - direction * stop_atr * atr
    take_profit = entry + direction * target_atr * atr
    risk = abs(entry - stop_loss)
    reward = abs(take_profit - entry)
    return Levels(stop_loss, take_profit, reward / risk)


def combine(
    prediction: ModelPrediction, view: technical.TechnicalView
) -> tuple[Action, float, str]:
    """The model's decision after technical confirmation: (action, confidence, why)."""
    probabilities = prediction.probabilities
    model_action = max(("buy", "hold", "sell"), key=lambda name: probabilities.get(name, 0.0))
    action = Action(model_action)
    if action is not Action.HOLD and view.contradicts(action):
        return Action.HOLD, probabilities.get("hold", 0.0), "technicals contradict the model"
    if action is Action.HOLD:
        return Action.HOLD, probabilities.get("hold", 0.0), "model holds"
    why = "technicals confirm" if view.action is action else "technicals neutral"
    return action, probabilities.get(model_action, 0.0), why


@dataclass(frozen=True)
class EvaluationFailed:
    """An event the engine could not turn into a signal, and why."""

    event: CandleClosed
    error: Exception


Evaluation = Signal | EvaluationFailed
# The indicator snapshot and the technical rules' view of a series' last candle.
Analysis = tuple[dict[str, float | None], technical.TechnicalView]


class SignalEngine:
    def __init__(
        self,
        strategy: StrategySettings,
        inference: Predictions | None,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """`inference` None means technical rules only (every signal is a fallback)."""
        self._strategy = strategy
        self._inference = inference
        self._clock = clock
        low, middle, high = strategy.strength_thresholds
        self._thresholds = (low, middle, high)

    async def evaluate(self, event: CandleClosed) -> Signal:
        """The signal of one event; raises what kept it from having one."""
        (result,) = await self.evaluate_many([event])
        if isinstance(result, EvaluationFailed):
            raise result.error
        return result

    async def evaluate_many(self, events: Sequence[CandleClosed]) -> list[Evaluation]:
        """An evaluation per event, in order: its signal, or why it has none (one bad
        series never costs the others their signal). Series that closed together are
        predicted with one inference call (one PredictBatch)."""
        results: list[Evaluation | None] = [None] * len(events)
        ready = []
        for index, event in enumerate(events):
            if len(event.candles) == 0:
                error = ValueError(f"{event.pair} {event.timeframe.value}: no candles")
                results[index] = EvaluationFailed(event, error)
            else:
                ready.append(index)
        series = [events[index].candles.tail(HISTORY_BARS) for index in ready]
        outcomes = await self._predict(series)
        analyses: list[Analysis | None]
        try:
            analyses = list(technical.analyse_many(series))
        except Exception:  # analysed one by one in _signal, where only the bad one fails
            log.exception("batched indicators failed; analysing series one by one")
            analyses = [None] * len(series)
        for index, candles, outcome, analysis in zip(
            ready, series, outcomes, analyses, strict=True
        ):
            try:
                results[index] = self._signal(events[index], candles, outcome, analysis)
            except Exception as error:
                results[index] = EvaluationFailed(events[index], error)
        return [result for result in results if result is not None]

    async def _predict(self, series: list[Candles]) -> list[Outcome]:
        if self._inference is None:
            return [InferenceUnavailable("no inference service")] * len(series)
        return await self._inference.predict(series)

    def _signal(
        self,
        event: CandleClosed,
        candles: Candles,
        outcome: Outcome,
        analysis: Analysis | None,
    ) -> Signal:
        strategy = self._strategy
        snap, view = analysis or technical.analyse(candles)
        entry = float(candles.close[-1])
        probabilities: dict[str, float] | None
        if isinstance(outcome, ModelPrediction):
            action, confidence, why = combine(outcome, view)
            source = Source.MODEL
            probabilities = dict(outcome.probabilities)
            model_name, model_version = outcome.model_name, outcome.model_version
        else:
            action = view.action
            confidence = min(view.confidence, strategy.fallback_max_confidence)
            why = f"fallback: {type(outcome).__name__}: {outcome}"
            source = Source.TECHNICAL_FALLBACK
            probabilities = None
            model_name, model_version = technical.RULES_NAME, technical.RULES_VERSION
        trade = levels(
            action, entry, snap.get("atr_14"), strategy.stop_loss_atr, strategy.take_profit_atr
        )
        if trade is None:
            why += "; no ATR to size the trade, holding"
            if probabilities is not None:
                confidence = probabilities.get("hold", 0.0)
            action, trade = Action.HOLD, Levels(None, None, None)
        confidence = min(1.0, max(0.0, float(confidence)))
        signal = Signal(
            pair=event.pair,
            timeframe=event.timeframe,
            candle_time=candle_close_time(candles),
            action=action,
            confidence=confidence,
            strength=strength_of(confidence, self._thresholds),
            entry_price=entry,
            stop_loss=trade.stop_loss,
            take_profit=trade.take_profit,
            risk_reward_ratio=trade.risk_reward_ratio,
            probabilities=probabilities,
            indicators=snap,
            source=source,
            model_name=model_name,
            model_version=model_version,
            created_at=self._clock(),
            replay_lap=event.lap,
        )
        log.info(
            "signal computed",
            pair=signal.pair,
            timeframe=signal.timeframe.value,
            candle_time=signal.candle_time.isoformat(),
            action=signal.action.value,
            confidence=round(signal.confidence, 4),
            source=signal.source.value,
            technical_score=view.score,
            why=why,
        )
        return signal

"""The recorded held-out predictions of a model version, and the offline `Predictions`
port (signal_svc/ports.py) that answers them to the real signal engine."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from common.candles import Candles
from signal_svc.ports import ModelPrediction, Outcome, SeriesNotCovered
from signal_svc.signals import Action

PROBABILITY_COLUMNS = ("sell", "hold", "buy")

# (pair, open time of the decision day's bar in epoch seconds) → class probabilities
Recorded = dict[tuple[str, int], dict[str, float]]


def _epoch(iso: str) -> int:
    """2020-01-02T00:00:00Z → epoch seconds."""
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


def load_recorded(path: Path) -> tuple[Recorded, dict[tuple[str, int], int]]:
    """The probabilities of every recorded (pair, day), and the held-out year each
    belongs to. ValueError naming the line for a malformed row or a repeated key: a
    silently overwritten prediction would trade on the wrong model."""
    recorded: Recorded = {}
    years: dict[tuple[str, int], int] = {}
    with path.open(newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            try:
                key = (row["pair"], _epoch(row["candle_time"]))
                probabilities = {name: float(row[name]) for name in PROBABILITY_COLUMNS}
                year = int(row["test_year"])
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{path}: line {line}: {exc}") from None
            if key in recorded:
                raise ValueError(f"{path}: line {line}: {key[0]} {row['candle_time']} repeats")
            recorded[key] = probabilities
            years[key] = year
    return recorded, years


class RecordedPredictions:
    """The `Predictions` port answered from recorded out-of-sample probabilities: for a
    series, the prediction recorded for its pair at its last candle (the decision day),
    exactly what the served model would have said that day; SeriesNotCovered when
    nothing was recorded for that day (the engine then falls back to its rules, and the
    simulation does not trade such fallbacks as the model's)."""

    def __init__(self, recorded: Recorded, model_name: str, model_version: str) -> None:
        self._recorded = recorded
        self._model_name = model_name
        self._model_version = model_version

    async def predict(self, series: Sequence[Candles]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for candles in series:
            key = (candles.pair, int(candles.times[-1])) if len(candles) else None
            probabilities = self._recorded.get(key) if key else None
            if probabilities is None:
                outcomes.append(SeriesNotCovered(f"no recorded prediction for {key}"))
                continue
            best = max(PROBABILITY_COLUMNS, key=lambda name: probabilities[name])
            outcomes.append(
                ModelPrediction(
                    probabilities=dict(probabilities),
                    action=Action(best),
                    confidence=probabilities[best],
                    model_name=self._model_name,
                    model_version=self._model_version,
                )
            )
        return outcomes

"""Turning candles into the LSTM's calibrated buy/hold/sell probabilities.

Plain Python: validation, features (the shared module, exactly as in training), one
batched call to the model server for every window of a request, and reading the
answer. The gRPC servicer translates protos to these types and back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from common.candles import CandleError, Candles, make_candles
from common.errors import FieldViolation, InvalidArgument, ViolationCollector
from common.market import Timeframe, normalize_pair
from inference.features import last_window, window_features
from inference.model_format import ModelMetadata

MAX_BATCH = 256


@dataclass(frozen=True)
class CandleColumns:
    """Candles as sent, column by column, not yet validated."""

    times: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray


@dataclass(frozen=True)
class PredictionInput:
    pair: str
    timeframe: Timeframe | None
    candles: CandleColumns


@dataclass(frozen=True)
class Prediction:
    pair: str
    timeframe: Timeframe
    probabilities: dict[str, float]  # by class name: "sell", "hold", "buy"
    action: str
    confidence: float
    model_name: str
    model_version: int
    candle_time: int  # open time of the last candle used, UTC epoch seconds


@dataclass(frozen=True)
class ServedModel:
    """The version the model server serves, with what training saved about it."""

    version: int
    metadata: ModelMetadata


class ModelBackend(Protocol):
    async def served_model(self) -> ServedModel:
        """The version being served now (raises Unavailable when unreachable)."""
        ...

    async def predict(self, inputs: np.ndarray, model: ServedModel) -> np.ndarray:
        """Probabilities [batch, classes] for model inputs [batch, lookback, features]."""
        ...


def _covered(
    model: ServedModel, entry: PredictionInput, where: str, errors: ViolationCollector
) -> tuple[str, Timeframe | None]:
    """The normalised pair and the timeframe, if valid and covered by the model."""
    metadata = model.metadata
    pair = ""
    try:
        pair = normalize_pair(entry.pair)
    except ValueError as exc:
        errors.add(f"{where}pair", str(exc))
    else:
        if pair not in metadata.pairs:
            covered = ", ".join(metadata.pairs)
            errors.add(
                f"{where}pair",
                f"model {metadata.model_name} v{model.version} covers {covered}, not {pair}",
            )
            pair = ""
    timeframe = entry.timeframe
    if timeframe is None:
        errors.add(f"{where}timeframe", "is required: one of 15m, 1h, 4h, 1d")
    elif timeframe.value not in metadata.timeframes:
        covered = ", ".join(metadata.timeframes)
        errors.add(
            f"{where}timeframe",
            f"model {metadata.model_name} v{model.version} covers {covered}, not {timeframe.value}",
        )
        timeframe = None
    return pair, timeframe


def _candles(
    model: ServedModel,
    entry: PredictionInput,
    pair: str,
    timeframe: Timeframe,
    where: str,
    errors: ViolationCollector,
) -> Candles | None:
    needed = model.metadata.window.history
    columns = entry.candles
    if columns.times.shape[0] < needed:
        errors.add(
            f"{where}candles",
            f"need at least {needed} candles ({model.metadata.lookback} the model reads + "
            f"{model.metadata.warmup} to warm up indicators), got {columns.times.shape[0]}",
        )
        return None
    try:
        return make_candles(
            pair or "?",
            timeframe,
            columns.times,
            columns.open,
            columns.high,
            columns.low,
            columns.close,
            columns.volume,
        ).tail(needed)
    except CandleError as exc:
        errors.add(f"{where}candles", str(exc))
        return None


class Predictor:
    def __init__(self, backend: ModelBackend) -> None:
        self._backend = backend

    async def predict(
        self, entries: Sequence[PredictionInput], *, batch_field: str | None = None
    ) -> list[Prediction]:
        """One prediction per entry, all from the same model version. With
        `batch_field` ("requests"), violations are named `requests[i].<field>`."""
        if batch_field is not None and not 1 <= len(entries) <= MAX_BATCH:
            raise InvalidArgument(
                [FieldViolation(batch_field, f"send 1 to {MAX_BATCH} requests, got {len(entries)}")]
            )
        model = await self._backend.served_model()
        errors = ViolationCollector()
        series: list[Candles] = []
        for index, entry in enumerate(entries):
            where = f"{batch_field}[{index}]." if batch_field is not None else ""
            pair, timeframe = _covered(model, entry, where, errors)
            candles = _candles(model, entry, pair, timeframe or Timeframe.H1, where, errors)
            if candles is not None and pair and timeframe is not None:
                series.append(candles)
        errors.raise_if_any()

        spec, scaler = model.metadata.window, model.metadata.fitted_scaler()
        windows = [last_window(candles, spec) for candles in series]
        ohlc = np.concatenate([w[0] for w in windows])
        times = np.concatenate([w[1] for w in windows])
        inputs = scaler.transform(window_features(ohlc, times, spec))
        probabilities = await self._backend.predict(inputs, model)
        return [
            _prediction(model, candles, row)
            for candles, row in zip(series, probabilities, strict=True)
        ]


def _prediction(model: ServedModel, candles: Candles, row: np.ndarray) -> Prediction:
    classes = model.metadata.classes
    best = int(np.argmax(row))
    return Prediction(
        pair=candles.pair,
        timeframe=candles.timeframe,
        probabilities={name: float(p) for name, p in zip(classes, row, strict=True)},
        action=classes[best],
        confidence=float(row[best]),
        model_name=model.metadata.model_name,
        model_version=model.version,
        candle_time=int(candles.times[-1]),
    )

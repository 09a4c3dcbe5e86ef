"""Turning candles into the LSTM's calibrated buy/hold/sell probabilities.

Plain Python: routing each series to the served model whose metadata covers its
timeframe (the hourly `lstm` for 1h, `lstm_daily` for 1d), validation, features (the
shared module, in the model's own feature set, exactly as in training), one batched call
to the model server per model for the windows of a request, and reading the answer. The
gRPC servicer translates protos to these types and back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from common.candles import CandleError, Candles, make_candles
from common.errors import FieldViolation, InvalidArgument, Unavailable, ViolationCollector
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
    """The version the model server serves of the model `name`, with what training
    saved about it."""

    name: str
    version: int
    metadata: ModelMetadata
    # The version's folder (models/<name>/<version>/), where its model card lies.
    folder: Path | None = None

    def describe(self) -> str:
        return f"{self.name} v{self.version} ({', '.join(self.metadata.timeframes)})"


class ModelBackend(Protocol):
    async def served_models(self) -> Sequence[ServedModel | Unavailable]:
        """Every configured model: the version served now, or why none is."""
        ...

    async def predict(self, inputs: np.ndarray, model: ServedModel) -> np.ndarray:
        """Probabilities [batch, classes] for model inputs [batch, lookback, features]."""
        ...


def _model_covering(
    served: Sequence[ServedModel | Unavailable], timeframe: Timeframe
) -> ServedModel | str:
    """The available model whose metadata covers `timeframe`, or why there is none. When
    none covers it and another model is unavailable, raises that Unavailable: the
    missing model may be the one that covers it."""
    models = [m for m in served if isinstance(m, ServedModel)]
    model = next((m for m in models if timeframe.value in m.metadata.timeframes), None)
    if model is not None:
        return model
    missing = [m for m in served if isinstance(m, Unavailable)]
    if missing:
        raise missing[0]
    covered = "; ".join(m.describe() for m in models)
    return f"no served model covers {timeframe.value}: {covered}"


def _route(
    served: Sequence[ServedModel | Unavailable],
    entry: PredictionInput,
    where: str,
    errors: ViolationCollector,
) -> tuple[ServedModel | None, str]:
    """The model for an entry (by its timeframe) and its normalised pair, if valid and
    covered."""
    pair = ""
    try:
        pair = normalize_pair(entry.pair)
    except ValueError as exc:
        errors.add(f"{where}pair", str(exc))
    timeframe = entry.timeframe
    if timeframe is None:
        errors.add(f"{where}timeframe", "is required: one of 15m, 1h, 4h, 1d")
        return None, pair
    model = _model_covering(served, timeframe)
    if isinstance(model, str):
        errors.add(f"{where}timeframe", model)
        return None, pair
    if pair and pair not in model.metadata.pairs:
        covered = ", ".join(model.metadata.pairs)
        errors.add(
            f"{where}pair",
            f"model {model.name} v{model.version} covers {covered}, not {pair}",
        )
    return model, pair


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

    async def model_for(self, timeframe: Timeframe) -> ServedModel:
        """The served model that predicts `timeframe` series (GetModelInfo)."""
        model = _model_covering(await self._backend.served_models(), timeframe)
        if isinstance(model, str):
            raise InvalidArgument([FieldViolation("timeframe", model)])
        return model

    async def predict(
        self, entries: Sequence[PredictionInput], *, batch_field: str | None = None
    ) -> list[Prediction]:
        """One prediction per entry, each from the model covering its timeframe. With
        `batch_field` ("requests"), violations are named `requests[i].<field>`."""
        if batch_field is not None and not 1 <= len(entries) <= MAX_BATCH:
            raise InvalidArgument(
                [FieldViolation(batch_field, f"send 1 to {MAX_BATCH} requests, got {len(entries)}")]
            )
        served = await self._backend.served_models()
        errors = ViolationCollector()
        routed: list[tuple[ServedModel, Candles]] = []
        for index, entry in enumerate(entries):
            where = f"{batch_field}[{index}]." if batch_field is not None else ""
            model, pair = _route(served, entry, where, errors)
            if model is None or entry.timeframe is None:
                continue
            candles = _candles(model, entry, pair, entry.timeframe, where, errors)
            if candles is not None:
                routed.append((model, candles))
        errors.raise_if_any()

        groups: dict[str, list[int]] = {}
        for position, (model, _) in enumerate(routed):
            groups.setdefault(model.name, []).append(position)
        answers = await asyncio.gather(
            *(
                self._run(routed[rows[0]][0], [routed[r][1] for r in rows])
                for rows in groups.values()
            )
        )
        rows_by_position: dict[int, np.ndarray] = {}
        for rows, probabilities in zip(groups.values(), answers, strict=True):
            rows_by_position.update(zip(rows, probabilities, strict=True))
        return [
            _prediction(model, candles, rows_by_position[position])
            for position, (model, candles) in enumerate(routed)
        ]

    async def _run(self, model: ServedModel, series: list[Candles]) -> np.ndarray:
        """Probabilities [len(series), classes] from one model, in one call."""
        spec, scaler = model.metadata.window, model.metadata.fitted_scaler()
        windows = [last_window(candles, spec) for candles in series]
        ohlc = np.concatenate([w[0] for w in windows])
        times = np.concatenate([w[1] for w in windows])
        inputs = scaler.transform(window_features(ohlc, times, spec))
        return await self._backend.predict(inputs, model)


def _prediction(model: ServedModel, candles: Candles, row: np.ndarray) -> Prediction:
    classes = model.metadata.classes
    best = int(np.argmax(row))
    return Prediction(
        pair=candles.pair,
        timeframe=candles.timeframe,
        probabilities={name: float(p) for name, p in zip(classes, row, strict=True)},
        action=classes[best],
        confidence=float(row[best]),
        model_name=model.name,
        model_version=model.version,
        candle_time=int(candles.times[-1]),
    )

"""gRPC servicer of the inference service: proto ⇄ domain, nothing more."""

from __future__ import annotations

import asyncio
from datetime import datetime

import grpc
import numpy as np
from google.protobuf import timestamp_pb2

from aifx.common.v1 import market_pb2
from aifx.inference.v1 import inference_pb2, inference_pb2_grpc
from common.grpc_metadata import require_service_token
from common.market import Timeframe
from common.proto_convert import (
    TIMEFRAME_FROM_PROTO,
    TIMEFRAME_TO_PROTO,
    timestamp,
    timestamp_from_epoch,
)
from inference.model_format import complete_versions, read_documents
from inference.predictor import CandleColumns, Prediction, PredictionInput, Predictor

ACTIONS = {
    "buy": market_pb2.TRADE_ACTION_BUY,
    "sell": market_pb2.TRADE_ACTION_SELL,
    "hold": market_pb2.TRADE_ACTION_HOLD,
}
CALIBRATION = "temperature_scaling"


def _timestamp_from_iso(text: str) -> timestamp_pb2.Timestamp:
    return timestamp(datetime.fromisoformat(text))


def prediction_input(request: inference_pb2.PredictRequest) -> PredictionInput:
    candles = request.candles
    return PredictionInput(
        pair=request.pair,
        timeframe=TIMEFRAME_FROM_PROTO.get(request.timeframe),
        candles=CandleColumns(
            times=np.fromiter((c.open_time.seconds for c in candles), np.int64, len(candles)),
            open=np.fromiter((c.open for c in candles), np.float64, len(candles)),
            high=np.fromiter((c.high for c in candles), np.float64, len(candles)),
            low=np.fromiter((c.low for c in candles), np.float64, len(candles)),
            close=np.fromiter((c.close for c in candles), np.float64, len(candles)),
            volume=np.fromiter((c.volume for c in candles), np.float64, len(candles)),
        ),
    )


def prediction_message(prediction: Prediction) -> inference_pb2.PredictResponse:
    p = prediction.probabilities
    return inference_pb2.PredictResponse(
        pair=prediction.pair,
        timeframe=TIMEFRAME_TO_PROTO[prediction.timeframe],
        probabilities=inference_pb2.ActionProbabilities(
            buy=p["buy"], hold=p["hold"], sell=p["sell"]
        ),
        action=ACTIONS[prediction.action],
        confidence=prediction.confidence,
        model_name=prediction.model_name,
        model_version=str(prediction.model_version),
        candle_time=timestamp_from_epoch(prediction.candle_time),
    )


def _evaluation(name: str, scores: dict[str, float]) -> inference_pb2.EvaluationMetrics:
    return inference_pb2.EvaluationMetrics(
        name=name,
        accuracy=scores.get("accuracy", 0.0),
        balanced_accuracy=scores.get("balanced_accuracy", 0.0),
        log_loss=scores.get("log_loss") or 0.0,
        brier_score=scores.get("brier_score") or 0.0,
        expected_calibration_error=scores.get("expected_calibration_error") or 0.0,
    )


class InferenceService(inference_pb2_grpc.InferenceServiceServicer):
    def __init__(self, predictor: Predictor, service_token: str) -> None:
        self._predictor = predictor
        self._service_token = service_token

    async def Predict(  # noqa: N802
        self, request: inference_pb2.PredictRequest, context: grpc.aio.ServicerContext
    ) -> inference_pb2.PredictResponse:
        require_service_token(context, self._service_token)
        (prediction,) = await self._predictor.predict([prediction_input(request)])
        return prediction_message(prediction)

    async def PredictBatch(  # noqa: N802
        self, request: inference_pb2.PredictBatchRequest, context: grpc.aio.ServicerContext
    ) -> inference_pb2.PredictBatchResponse:
        require_service_token(context, self._service_token)
        predictions = await self._predictor.predict(
            [prediction_input(r) for r in request.requests], batch_field="requests"
        )
        return inference_pb2.PredictBatchResponse(
            responses=[prediction_message(p) for p in predictions]
        )

    async def GetModelInfo(  # noqa: N802
        self, request: inference_pb2.GetModelInfoRequest, context: grpc.aio.ServicerContext
    ) -> inference_pb2.GetModelInfoResponse:
        require_service_token(context, self._service_token)
        timeframe = TIMEFRAME_FROM_PROTO.get(request.timeframe) or Timeframe.H1
        model = await self._predictor.model_for(timeframe)
        meta = model.metadata
        metrics = meta.metrics
        thresholded = metrics.get("thresholded", {})
        card, plot, versions = "", b"", [model.version]
        if model.folder is not None:
            versions = await asyncio.to_thread(complete_versions, model.folder.parent)
            if request.include_documents:
                card, plot = await asyncio.to_thread(read_documents, model.folder)
        return inference_pb2.GetModelInfoResponse(
            model_name=model.name,
            model_version=str(model.version),
            train_time=_timestamp_from_iso(meta.created_at),
            data_start_time=_timestamp_from_iso(meta.data["start"]),
            data_end_time=_timestamp_from_iso(meta.data["end"]),
            test_start_time=_timestamp_from_iso(meta.test_start),
            pairs=meta.pairs,
            timeframes=[TIMEFRAME_TO_PROTO[Timeframe(tf)] for tf in meta.timeframes],
            lookback=meta.lookback,
            horizon=meta.horizon,
            hold_band_atr=meta.hold_band_atr,
            calibration_method=CALIBRATION,
            metrics=[
                _evaluation("model", metrics.get("model", {})),
                *(_evaluation(name, s) for name, s in metrics.get("baselines", {}).items()),
            ],
            confidence_threshold=thresholded.get("threshold", 0.0),
            thresholded_accuracy=thresholded.get("accuracy"),
            thresholded_count=thresholded.get("count", 0),
            test_count=metrics.get("test_samples", 0),
            min_candles=meta.window.history,
            feature_names=meta.feature_names,
            versions=[str(v) for v in versions],
            model_card=card,
            reliability_png=plot,
        )

"""The inference service's client of the model server, over the TensorFlow Serving gRPC
API with the official `tensorflow_serving` stubs, so the server can be ours or a real
`tensorflow_model_server` (a change of `AIFX_MODEL_SERVER_TARGET`).

The served version of each configured model is read from ModelService.GetModelStatus
(newest AVAILABLE), and each Predict pins that version, so the features are always built
with the scaler and window of the version that answers. A dead or slow server is
UNAVAILABLE within the timeout, never a hang: signal_svc then falls back to technical
rules. Calls go through the shared client helper (common.grpc_client): the request id of
the Predict being served travels on, and a model server that is still starting is waited
for within the timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from google.protobuf import wrappers_pb2
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from common.errors import DomainError, NotFound, Unavailable
from common.grpc_client import GrpcClient
from inference.model_format import SIGNATURE, ModelMetadata
from inference.predictor import ServedModel
from inference.tensor_proto import make_ndarray, make_tensor_proto

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
# How long the served version is trusted before asking again; a new version is picked
# up within this time of the model server loading it.
STATUS_REFRESH_SECONDS = 2.0


class _VersionWatch:
    """What the model server serves of one model, asked again at most every
    STATUS_REFRESH_SECONDS."""

    def __init__(self, name: str, base_path: Path) -> None:
        self.name = name
        self.base_path = base_path
        self.served: ServedModel | None = None
        self.checked_at = 0.0
        self.lock = asyncio.Lock()

    def fresh(self) -> bool:
        return (
            self.served is not None and time.monotonic() - self.checked_at < STATUS_REFRESH_SECONDS
        )


class ModelServerClient:
    """One client for every configured model (`models`: name → base path), over one
    channel to the model server."""

    def __init__(self, target: str, models: Mapping[str, Path], timeout_seconds: float) -> None:
        self._client = GrpcClient("model server", target, timeout_seconds=timeout_seconds)
        self._watches = {name: _VersionWatch(name, path) for name, path in models.items()}

    def _unavailable(self, error: DomainError) -> Unavailable:
        """Whatever the model server answered instead of a prediction, the inference
        service cannot predict: UNAVAILABLE, so callers fall back."""
        return Unavailable(
            f"model server at {self._client.target} did not answer: {error.message}",
            reason="MODEL_SERVER_UNAVAILABLE",
        )

    async def served_models(self) -> list[ServedModel | Unavailable]:
        """Every configured model's served version, or why it has none; asked
        concurrently."""
        return await asyncio.gather(*(self._served(watch) for watch in self._watches.values()))

    async def _served(self, watch: _VersionWatch) -> ServedModel | Unavailable:
        if watch.fresh():
            assert watch.served is not None
            return watch.served
        async with watch.lock:
            if not watch.fresh():
                try:
                    watch.served = await self._fetch_served_model(watch)
                except Unavailable as reason:
                    return reason
                watch.checked_at = time.monotonic()
        assert watch.served is not None
        return watch.served

    async def _fetch_served_model(self, watch: _VersionWatch) -> ServedModel:
        request = get_model_status_pb2.GetModelStatusRequest(
            model_spec=model_pb2.ModelSpec(name=watch.name)
        )
        status = self._client.stub(model_service_pb2_grpc.ModelServiceStub)
        try:
            reply = await self._client.unary(status.GetModelStatus, request)
        except DomainError as error:
            raise self._unavailable(error) from error
        versions = [v.version for v in reply.model_version_status if v.state == AVAILABLE]
        if not versions:
            raise Unavailable(
                f"model server at {self._client.target} has no available version of {watch.name}",
                reason="MODEL_NOT_LOADED",
            )
        version = max(versions)
        if watch.served is not None and watch.served.version == version:
            return watch.served
        folder = watch.base_path / str(version)
        try:
            metadata = await asyncio.to_thread(ModelMetadata.read, folder)
        except (OSError, ValueError) as exc:
            raise Unavailable(
                f"model server serves {watch.name} v{version}, but its "
                f"aifx_metadata.json is not readable in {folder}: {exc}",
                reason="MODEL_METADATA_MISSING",
            ) from exc
        return ServedModel(name=watch.name, version=version, metadata=metadata, folder=folder)

    async def predict(self, inputs: np.ndarray, model: ServedModel) -> np.ndarray:
        request = predict_pb2.PredictRequest(
            model_spec=model_pb2.ModelSpec(
                name=model.name,
                signature_name=SIGNATURE,
                version=wrappers_pb2.Int64Value(value=model.version),
            )
        )
        request.inputs[model.metadata.input_name].CopyFrom(make_tensor_proto(inputs))
        predictions = self._client.stub(prediction_service_pb2_grpc.PredictionServiceStub)
        try:
            reply = await self._client.unary(predictions.Predict, request)
        except DomainError as error:
            if isinstance(error, NotFound):
                # The version was unloaded since we looked: ask again next time.
                self._watches[model.name].checked_at = 0.0
            raise self._unavailable(error) from error
        return make_ndarray(reply.outputs[model.metadata.output_name])

    async def close(self) -> None:
        await self._client.close()

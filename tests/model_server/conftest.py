"""Fixtures of the model server tests: a models folder with test versions, an
in-process server on a free port, and clients built from the official
`tensorflow_serving` stubs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from google.protobuf import wrappers_pb2
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from common.server import RunningServer
from inference.model_format import INPUT_NAME, ONNX_FILE
from inference.model_server.config import ServerConfig
from inference.model_server.core import ModelServer
from inference.model_server.servable import session_options
from inference.model_server.server import start_model_server
from inference.tensor_proto import make_tensor_proto
from tests.model_server.onnx_models import FEATURES, LOOKBACK, write_version

POLL_SECONDS = 0.05


def candles(batch: int, seed: int = 0) -> np.ndarray:
    """A model input [batch, lookback, features], distinct per seed and row."""
    return (
        np.random.default_rng(seed).standard_normal((batch, LOOKBACK, FEATURES)).astype(np.float32)
    )


def direct(version_dir: Path, inputs: np.ndarray) -> np.ndarray:
    """onnxruntime run directly on the version's model.onnx (same session options)."""
    session = ort.InferenceSession(str(version_dir / ONNX_FILE), sess_options=session_options(1, 1))
    return session.run(None, {session.get_inputs()[0].name: inputs})[0]


def predict_request(
    inputs: np.ndarray | None = None,
    *,
    name: str = "lstm",
    version: int | None = None,
    label: str | None = None,
    signature: str = "",
    as_content: bool = True,
    alias: str = INPUT_NAME,
) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest(model_spec=model_spec(name, version, label, signature))
    if inputs is not None:
        request.inputs[alias].CopyFrom(make_tensor_proto(inputs, as_content=as_content))
    return request


def model_spec(
    name: str = "lstm", version: int | None = None, label: str | None = None, signature: str = ""
) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=name, signature_name=signature)
    if version is not None:
        spec.version.CopyFrom(wrappers_pb2.Int64Value(value=version))
    if label is not None:
        spec.version_label = label
    return spec


@dataclass
class Served:
    running: RunningServer
    core: ModelServer
    channel: grpc.aio.Channel
    predict: prediction_service_pb2_grpc.PredictionServiceStub
    models: model_service_pb2_grpc.ModelServiceStub

    async def states(self, name: str = "lstm") -> dict[int, str]:
        response = await self.models.GetModelStatus(
            get_model_status_pb2.GetModelStatusRequest(model_spec=model_spec(name))
        )
        return {
            s.version: get_model_status_pb2.ModelVersionStatus.State.Name(s.state)
            for s in response.model_version_status
        }


Serve = Callable[..., Awaitable[Served]]


@pytest.fixture
def base_path(tmp_path: Path) -> Path:
    """models/lstm with complete versions 1 and 2."""
    path = tmp_path / "models" / "lstm"
    write_version(path, 1)
    write_version(path, 2)
    return path


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start a model server in process: `await serve(base_path, **ServerConfig options)`."""
    started: list[Served] = []

    async def _serve(base_path: Path, **options: object) -> Served:
        options.setdefault("poll_seconds", POLL_SECONDS)
        running, core = await start_model_server(ServerConfig.single("lstm", base_path, **options))
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
        served = Served(
            running,
            core,
            channel,
            prediction_service_pb2_grpc.PredictionServiceStub(channel),
            model_service_pb2_grpc.ModelServiceStub(channel),
        )
        started.append(served)
        return served

    yield _serve
    for served in started:
        await served.channel.close()
        await served.running.stop(grace=0.5)

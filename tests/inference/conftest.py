"""Fixtures of the inference service tests: the committed models (hourly and daily)
served by our model server in process from a model config file, as `make run` serves
them, the inference service in front of it, and real EUR/USD candles."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from aifx.common.v1 import market_pb2
from aifx.inference.v1 import inference_pb2, inference_pb2_grpc
from common.candles import Candles
from common.market_data import load_bundled_history
from common.server import RunningServer, start_server
from common.service_credentials import load_service_token
from common.settings import REPO_ROOT
from inference.model_format import ModelMetadata, complete_versions
from inference.model_server.config import ServerConfig
from inference.model_server.flags import parse_model_config_file
from inference.model_server.server import start_model_server
from inference.server import build
from tests.infra import make_settings

# The committed model; AIFX_TEST_MODEL_BASE_PATH points the tests at another one.
MODEL_BASE_PATH = Path(os.environ.get("AIFX_TEST_MODEL_BASE_PATH", REPO_ROOT / "models" / "lstm"))
DAILY_MODEL_BASE_PATH = REPO_ROOT / "models" / "lstm_daily"


@dataclass
class InferenceStack:
    server: RunningServer
    stub: inference_pb2_grpc.InferenceServiceStub
    credential: tuple[tuple[str, str], ...]
    metadata: ModelMetadata
    version_dir: Path


def candle_messages(candles: Candles) -> list[market_pb2.Candle]:
    from google.protobuf import timestamp_pb2

    return [
        market_pb2.Candle(
            open_time=timestamp_pb2.Timestamp(seconds=int(t)),
            open=o,
            high=h,
            low=lo,
            close=c,
            volume=v,
        )
        for t, o, h, lo, c, v in zip(
            candles.times,
            candles.open,
            candles.high,
            candles.low,
            candles.close,
            candles.volume,
            strict=True,
        )
    ]


def request_for(candles: Candles, pair: str = "EUR/USD") -> inference_pb2.PredictRequest:
    return inference_pb2.PredictRequest(
        pair=pair, timeframe=market_pb2.TIMEFRAME_H1, candles=candle_messages(candles)
    )


@pytest.fixture(scope="session")
def history() -> Candles:
    """The real bundled EUR/USD hours."""
    return load_bundled_history()


@pytest.fixture(scope="session")
def served_version_dir() -> Path:
    versions = complete_versions(MODEL_BASE_PATH)
    assert versions, f"no complete model version in {MODEL_BASE_PATH} (commit one: make train)"
    return MODEL_BASE_PATH / str(versions[-1])


@pytest.fixture(scope="session")
def model_config_file(served_version_dir: Path, tmp_path_factory) -> Path:
    """Both committed models, as models/models.config serves them (the hourly one from
    AIFX_TEST_MODEL_BASE_PATH when set)."""
    path = tmp_path_factory.mktemp("models") / "models.config"
    entries = {"lstm": served_version_dir.parent, "lstm_daily": DAILY_MODEL_BASE_PATH}
    path.write_text(
        "model_config_list {\n"
        + "".join(f'  config {{ name: "{n}" base_path: "{b}" }}\n' for n, b in entries.items())
        + "}\n"
    )
    return path


@pytest.fixture(scope="session")
async def model_server(model_config_file: Path) -> AsyncIterator[RunningServer]:
    models = parse_model_config_file(model_config_file)
    running, _ = await start_model_server(ServerConfig(models=models), "127.0.0.1", 0)
    yield running
    await running.stop(grace=0.2)


@pytest.fixture(scope="session")
async def inference(
    model_server: RunningServer, served_version_dir: Path, model_config_file: Path, tmp_path_factory
) -> AsyncIterator[InferenceStack]:
    settings = make_settings(
        tmp_path_factory.mktemp("inference"),
        model_server_target=f"127.0.0.1:{model_server.port}",
        model_config_file=model_config_file,
    )
    running = await start_server(build(settings), "127.0.0.1", 0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    yield InferenceStack(
        server=running,
        stub=inference_pb2_grpc.InferenceServiceStub(channel),
        credential=(("x-aifx-service-token", load_service_token(settings)),),
        metadata=ModelMetadata.read(served_version_dir),
        version_dir=served_version_dir,
    )
    await channel.close()
    await running.stop(grace=0.2)

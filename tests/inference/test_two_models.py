"""Two models served at once, as `make run` serves them: TF Serving's model config file
lists the hourly `lstm` and the daily `lstm_daily`; the model server loads both and the
inference service routes each series to the model covering its timeframe, building its
input in that model's own feature set."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import onnxruntime
import pytest

from aifx.common.v1 import market_pb2
from aifx.inference.v1 import inference_pb2, inference_pb2_grpc
from common.candles import Candles
from common.market_data.ecb import load_ecb_history
from common.server import start_server
from common.service_credentials import load_service_token
from inference.features import DAILY_CLOSES, DAILY_FEATURE_NAMES, WindowSpec, model_input
from inference.model_format import ONNX_FILE, ModelMetadata
from inference.model_server.config import ServerConfig
from inference.model_server.flags import configured_models
from inference.model_server.server import start_model_server
from inference.server import build
from tests.inference.conftest import candle_messages, request_for
from tests.inference.test_inference_service import refused, violations, window
from tests.infra import make_settings
from tests.model_server.onnx_models import write_version

DAILY_PAIRS = ["EUR/USD", "GBP/USD", "USD/JPY"]
DATA = {
    "source": "test model built with onnx.helper",
    "start": "2000-01-03T00:00:00+00:00",
    "end": "2024-12-31T00:00:00+00:00",
    "test_start": "2024-01-02T00:00:00+00:00",
}
HOURLY = {"data": DATA}
DAILY = {
    "data": DATA,
    "feature_set": DAILY_CLOSES,
    "feature_names": list(DAILY_FEATURE_NAMES),
    "scaler": {"mean": [0.0] * len(DAILY_FEATURE_NAMES), "std": [1.0] * len(DAILY_FEATURE_NAMES)},
    "pairs": DAILY_PAIRS,
    "timeframes": ["1d"],
}


@dataclass
class Stack:
    stub: inference_pb2_grpc.InferenceServiceStub
    credential: tuple[tuple[str, str], ...]
    models: Path


def config_file(folder: Path, names: list[str]) -> Path:
    entries = "".join(
        f'  config {{ name: "{n}" base_path: "{folder / n}" model_platform: "tensorflow" }}\n'
        for n in names
    )
    path = folder / "models.config"
    path.write_text(f"model_config_list {{\n{entries}}}\n")
    return path


async def serve(config: Path, var_dir: Path) -> AsyncIterator[Stack]:
    settings = make_settings(var_dir, model_config_file=config)
    model_server, _ = await start_model_server(
        ServerConfig(models=configured_models(settings)), "127.0.0.1", 0
    )
    settings = settings.replace(model_server_target=f"127.0.0.1:{model_server.port}")
    inference = await start_server(build(settings), "127.0.0.1", 0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{inference.port}")
    try:
        yield Stack(
            inference_pb2_grpc.InferenceServiceStub(channel),
            (("x-aifx-service-token", load_service_token(settings)),),
            config.parent,
        )
    finally:
        await channel.close()
        await inference.stop(grace=0.1)
        await model_server.stop(grace=0.1)


@pytest.fixture
async def two_models(tmp_path) -> AsyncIterator[Stack]:
    write_version(tmp_path / "lstm", 1, described=HOURLY)
    write_version(
        tmp_path / "lstm_daily",
        3,
        model_name="lstm_daily",
        described=DAILY,
        features=len(DAILY_FEATURE_NAMES),
    )
    async for stack in serve(config_file(tmp_path, ["lstm", "lstm_daily"]), tmp_path / "var"):
        yield stack


@pytest.fixture(scope="module")
def fixings() -> dict[str, Candles]:
    return load_ecb_history(DAILY_PAIRS)


def daily_request(candles: Candles, pair: str) -> inference_pb2.PredictRequest:
    return inference_pb2.PredictRequest(
        pair=pair, timeframe=market_pb2.TIMEFRAME_D1, candles=candle_messages(candles)
    )


def run_onnx(version_dir: Path, candles: Candles) -> np.ndarray:
    meta = ModelMetadata.read(version_dir)
    session = onnxruntime.InferenceSession(str(version_dir / ONNX_FILE))
    inputs = model_input(candles, meta.window, meta.fitted_scaler())
    return session.run(None, {meta.input_name: inputs})[0][0]


async def test_each_series_goes_to_the_model_of_its_timeframe(two_models, history, fixings):
    hours = window(history, 3000)
    gbp, jpy = fixings["GBP/USD"].tail(400), fixings["USD/JPY"].tail(300)
    reply = await two_models.stub.PredictBatch(
        inference_pb2.PredictBatchRequest(
            requests=[
                daily_request(gbp, "GBPUSD"),
                request_for(hours),
                daily_request(jpy, "usd/jpy"),
            ]
        ),
        metadata=two_models.credential,
    )
    answered = [(r.pair, r.model_name, r.model_version) for r in reply.responses]
    assert answered == [
        ("GBP/USD", "lstm_daily", "3"),
        ("EUR/USD", "lstm", "1"),
        ("USD/JPY", "lstm_daily", "3"),
    ]
    # The daily answer is the daily model run on closes-only daily features.
    daily_dir = two_models.models / "lstm_daily" / "3"
    for response, candles in ((reply.responses[0], gbp), (reply.responses[2], jpy)):
        expected = run_onnx(daily_dir, candles)
        got = [response.probabilities.sell, response.probabilities.hold, response.probabilities.buy]
        np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_allclose(
        [reply.responses[1].probabilities.sell, reply.responses[1].probabilities.hold],
        run_onnx(two_models.models / "lstm" / "1", hours)[:2],
        atol=1e-6,
    )


def test_daily_features_read_closes_only(fixings):
    """The daily feature set never reads highs or lows: an aggregated daily bar (with a
    range) and the same closes alone give the same input."""
    closes = fixings["EUR/USD"].tail(300)
    spec = WindowSpec(60, 200, DAILY_CLOSES)
    scaler_free = model_input(closes, spec, _unit_scaler())
    ohlc = closes.ohlc().copy()
    ohlc[:, 1] *= 1.01  # highs above, lows below: a traded bar's range
    ohlc[:, 2] *= 0.99
    from common.candles import make_candles

    ranged = make_candles(
        "EUR/USD",
        closes.timeframe,
        closes.times,
        ohlc[:, 0],
        ohlc[:, 1],
        ohlc[:, 2],
        ohlc[:, 3],
        closes.volume,
    )
    np.testing.assert_array_equal(model_input(ranged, spec, _unit_scaler()), scaler_free)


def _unit_scaler():
    from inference.features import Scaler

    n = len(DAILY_FEATURE_NAMES)
    return Scaler(mean=np.zeros(n), std=np.ones(n))


async def test_model_info_describes_the_model_of_a_timeframe(two_models):
    daily = await two_models.stub.GetModelInfo(
        inference_pb2.GetModelInfoRequest(timeframe=market_pb2.TIMEFRAME_D1),
        metadata=two_models.credential,
    )
    assert (daily.model_name, daily.model_version) == ("lstm_daily", "3")
    assert list(daily.feature_names) == list(DAILY_FEATURE_NAMES)
    assert list(daily.timeframes) == [market_pb2.TIMEFRAME_D1]
    hourly = await two_models.stub.GetModelInfo(
        inference_pb2.GetModelInfoRequest(), metadata=two_models.credential
    )
    assert (hourly.model_name, hourly.min_candles) == ("lstm", 260)
    error = await refused(
        two_models.stub.GetModelInfo(
            inference_pb2.GetModelInfoRequest(timeframe=market_pb2.TIMEFRAME_H4),
            metadata=two_models.credential,
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(error)["timeframe"] == (
        "no served model covers 4h: lstm v1 (1h); lstm_daily v3 (1d)"
    )


async def test_uncovered_requests_name_what_each_model_covers(two_models, history, fixings):
    four_hours = request_for(window(history, 3000))
    four_hours.timeframe = market_pb2.TIMEFRAME_H4
    error = await refused(
        two_models.stub.PredictBatch(
            inference_pb2.PredictBatchRequest(
                requests=[
                    daily_request(fixings["GBP/USD"].tail(300), "GBP/USD"),
                    four_hours,
                    daily_request(fixings["GBP/USD"].tail(300), "AUD/USD"),
                    daily_request(fixings["USD/JPY"].tail(100), "USD/JPY"),
                ]
            ),
            metadata=two_models.credential,
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    found = violations(error)
    assert found["requests[1].timeframe"].startswith("no served model covers 4h")
    assert found["requests[2].pair"] == (
        "model lstm_daily v3 covers EUR/USD, GBP/USD, USD/JPY, not AUD/USD"
    )
    assert "need at least 260 candles" in found["requests[3].candles"]
    assert "requests[0].pair" not in found


async def test_a_missing_model_costs_only_its_own_series(tmp_path, history, fixings):
    """The config names lstm_daily but no version of it exists: 1h series are still
    predicted; a 1d series is UNAVAILABLE (its caller falls back), never a wrong model."""
    write_version(tmp_path / "lstm", 1)
    (tmp_path / "lstm_daily").mkdir()
    async for stack in serve(config_file(tmp_path, ["lstm", "lstm_daily"]), tmp_path / "var"):
        hourly = await stack.stub.Predict(
            request_for(window(history, 3000)), metadata=stack.credential
        )
        assert hourly.model_name == "lstm"
        error = await refused(
            stack.stub.Predict(
                daily_request(fixings["GBP/USD"].tail(300), "GBP/USD"), metadata=stack.credential
            )
        )
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert "versions of model lstm_daily" in error.details()


async def test_the_committed_models_answer_their_own_series(inference, history, fixings):
    """models/lstm/1 and models/lstm_daily/1 served together, as `make run` serves them."""
    reply = await inference.stub.PredictBatch(
        inference_pb2.PredictBatchRequest(
            requests=[
                request_for(window(history, 3000)),
                daily_request(fixings["GBP/USD"].tail(300), "GBP/USD"),
            ]
        ),
        metadata=inference.credential,
    )
    assert [(r.model_name, r.model_version) for r in reply.responses] == [
        ("lstm", "1"),
        ("lstm_daily", "1"),
    ]
    daily = await inference.stub.GetModelInfo(
        inference_pb2.GetModelInfoRequest(timeframe=market_pb2.TIMEFRAME_D1),
        metadata=inference.credential,
    )
    assert list(daily.feature_names) == list(DAILY_FEATURE_NAMES)
    assert {"EUR/USD", "GBP/USD", "USD/JPY", "GBP/JPY"} <= set(daily.pairs)
    assert daily.min_candles == daily.lookback + 100
    # Its metrics pool the walk-forward's held-out years, which start in 2020.
    assert daily.test_start_time.ToDatetime().date().isoformat() == "2020-01-02"
    assert daily.test_count == 24444

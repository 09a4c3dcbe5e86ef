"""The inference service end to end: real EUR/USD candles → the shared feature module →
our model server (TF Serving protocol) → calibrated probabilities; and every failure."""

import time

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from aifx.common.v1 import market_pb2
from aifx.inference.v1 import inference_pb2, inference_pb2_grpc
from common.server import start_server
from common.service_credentials import load_service_token
from inference.features import model_input
from inference.model_format import ONNX_FILE
from inference.server import build
from tests.inference.conftest import candle_messages, request_for
from tests.infra import eventually, free_port, make_settings


def violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    bad = error_details_pb2.BadRequest()
    for packed in rpc_status.from_call(error).details:
        if packed.Unpack(bad):
            return {v.field: v.description for v in bad.field_violations}
    raise AssertionError(f"no BadRequest in {error}")


async def refused(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


def window(history, end: int, size: int = 300):
    return history.slice(end - size, end)


async def test_predict_matches_the_model_run_directly_on_shared_features(inference, history):
    candles = window(history, 4000)
    reply = await inference.stub.Predict(request_for(candles), metadata=inference.credential)

    meta = inference.metadata
    expected_input = model_input(candles, meta.window, meta.fitted_scaler())
    session = ort.InferenceSession(str(inference.version_dir / ONNX_FILE))
    (expected,) = session.run(None, {meta.input_name: expected_input})[0]
    got = [reply.probabilities.sell, reply.probabilities.hold, reply.probabilities.buy]
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert sum(got) == pytest.approx(1.0, abs=1e-5)

    best = int(np.argmax(expected))
    action = [
        market_pb2.TRADE_ACTION_SELL,
        market_pb2.TRADE_ACTION_HOLD,
        market_pb2.TRADE_ACTION_BUY,
    ]
    assert reply.action == action[best]
    assert reply.confidence == pytest.approx(float(expected[best]), abs=1e-6)
    assert (reply.pair, reply.model_name) == ("EUR/USD", "lstm")
    assert reply.model_version == inference.version_dir.name
    assert reply.candle_time.seconds == candles.times[-1]


async def test_pair_spellings_are_normalised(inference, history):
    reply = await inference.stub.Predict(
        request_for(window(history, 3000), pair="eurusd"), metadata=inference.credential
    )
    assert reply.pair == "EUR/USD"


async def test_batch_of_30_windows_equals_single_predictions_in_order(inference, history):
    ends = range(1000, 4000, 100)
    batch = await inference.stub.PredictBatch(
        inference_pb2.PredictBatchRequest(requests=[request_for(window(history, e)) for e in ends]),
        metadata=inference.credential,
    )
    assert len(batch.responses) == 30
    for end, response in zip(ends, batch.responses, strict=True):
        single = await inference.stub.Predict(
            request_for(window(history, end)), metadata=inference.credential
        )
        assert response.candle_time == single.candle_time
        assert response.probabilities.buy == pytest.approx(single.probabilities.buy, abs=1e-6)


async def test_model_info_reports_the_card(inference):
    info = await inference.stub.GetModelInfo(
        inference_pb2.GetModelInfoRequest(), metadata=inference.credential
    )
    meta = inference.metadata
    assert info.model_name == "lstm" and info.model_version == inference.version_dir.name
    assert info.min_candles == meta.lookback + meta.warmup
    assert list(info.feature_names) == meta.feature_names
    assert list(info.pairs) == ["EUR/USD"]
    assert list(info.timeframes) == [market_pb2.TIMEFRAME_H1]
    names = [m.name for m in info.metrics]
    assert names[0] == "model" and {"majority_class", "persistence", "technical_rules"} <= set(
        names
    )
    assert info.test_count > 0 and info.data_start_time.seconds < info.test_start_time.seconds
    assert info.calibration_method == "temperature_scaling"
    # The documents only on request; the versions always.
    assert info.model_card == "" and info.reliability_png == b""
    assert info.model_version in info.versions


async def test_get_model_info_with_documents_gives_the_card_and_plot_of_the_served_version(
    inference,
):
    info = await inference.stub.GetModelInfo(
        inference_pb2.GetModelInfoRequest(include_documents=True), metadata=inference.credential
    )
    card = (inference.version_dir / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert info.model_card == card and "## Bottom line" in info.model_card
    assert info.reliability_png.startswith(b"\x89PNG")
    assert info.reliability_png == (inference.version_dir / "reliability.png").read_bytes()


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (lambda r: r.candles.__delitem__(slice(0, 100)), "candles", "need at least 260"),
        (lambda r: setattr(r.candles[150], "close", float("nan")), "candles", "finite"),
        (lambda r: setattr(r.candles[10], "low", -1.0), "candles", "positive"),
        (
            lambda r: r.candles[20].open_time.CopyFrom(r.candles[19].open_time),
            "candles",
            "increasing",
        ),
        (lambda r: setattr(r.candles[30], "high", r.candles[30].low / 2), "candles", "bracket"),
        (lambda r: setattr(r, "pair", "XXXYYY"), "pair", "not"),
        (lambda r: setattr(r, "pair", "GBP/USD"), "pair", "covers EUR/USD"),
        (
            lambda r: setattr(r, "timeframe", market_pb2.TIMEFRAME_UNSPECIFIED),
            "timeframe",
            "required",
        ),
        (
            lambda r: setattr(r, "timeframe", market_pb2.TIMEFRAME_H4),
            "timeframe",
            "no served model covers 4h: lstm v1 (1h)",
        ),
    ],
)
async def test_bad_requests_name_the_problem(inference, history, change, field, words):
    request = request_for(window(history, 2000))
    change(request)
    error = await refused(inference.stub.Predict(request, metadata=inference.credential))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    found = violations(error)
    assert field in found, found
    assert words in found[field]


async def test_batch_violations_name_the_request(inference, history):
    good, bad = request_for(window(history, 2000)), request_for(window(history, 2100))
    bad.candles[5].close = float("inf")
    error = await refused(
        inference.stub.PredictBatch(
            inference_pb2.PredictBatchRequest(requests=[good, bad]), metadata=inference.credential
        )
    )
    assert list(violations(error)) == ["requests[1].candles"]
    empty = await refused(
        inference.stub.PredictBatch(
            inference_pb2.PredictBatchRequest(), metadata=inference.credential
        )
    )
    assert "requests" in violations(empty)


async def test_the_service_credential_is_required(inference, history):
    for metadata in ((), (("x-aifx-service-token", "wrong"),)):
        error = await refused(
            inference.stub.Predict(request_for(window(history, 2000)), metadata=metadata)
        )
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_model_server_down_is_unavailable_quickly(served_version_dir, history, tmp_path):
    settings = make_settings(
        tmp_path,
        model_server_target=f"127.0.0.1:{free_port()}",
        model_base_path=served_version_dir.parent,
    )
    running = await start_server(build(settings), "127.0.0.1", 0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    stub = inference_pb2_grpc.InferenceServiceStub(channel)
    credential = (("x-aifx-service-token", load_service_token(settings)),)
    try:
        started = time.monotonic()
        error = await refused(stub.Predict(request_for(window(history, 2000)), metadata=credential))
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert "model server" in error.details()
        assert time.monotonic() - started < 3.0
    finally:
        await channel.close()
        await running.stop(grace=0.1)


def test_candle_messages_round_trip_real_bars(history):
    messages = candle_messages(history.slice(0, 3))
    assert [m.close for m in messages] == list(history.close[:3])


async def test_the_service_runs_as_its_own_process(
    model_server, served_version_dir, history, tmp_path
):
    """`python -m inference`, as `make run` starts it, answers a Predict."""
    import asyncio
    import os
    import sys

    from grpc_health.v1 import health_pb2, health_pb2_grpc

    port = free_port()
    env = dict(
        os.environ,
        AIFX_VAR_DIR=str(tmp_path),
        AIFX_INFERENCE_PORT=str(port),
        AIFX_INFERENCE_METRICS_PORT="0",
        AIFX_MODEL_SERVER_TARGET=f"127.0.0.1:{model_server.port}",
        AIFX_MODEL_BASE_PATH=str(served_version_dir.parent),
    )
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "inference", env=env)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        health = health_pb2_grpc.HealthStub(channel)

        async def serving() -> bool:
            try:
                await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
            except grpc.aio.AioRpcError:
                return False
            return True

        await eventually(serving, "the inference process to serve", within=30)
        token = (tmp_path / "service-token").read_text().strip()
        reply = await inference_pb2_grpc.InferenceServiceStub(channel).Predict(
            request_for(window(history, 2500)), metadata=(("x-aifx-service-token", token),)
        )
        assert reply.model_version == served_version_dir.name
    finally:
        await channel.close()
        process.terminate()
        assert await process.wait() == 0

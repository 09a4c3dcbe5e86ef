"""The model server as its own process (`python -m inference.model_server`), and proof
that serving never imports TensorFlow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc

from common.settings import REPO_ROOT
from inference.model_format import OUTPUT_NAME
from inference.tensor_proto import make_ndarray
from tests.infra import free_port
from tests.model_server.conftest import candles, direct, predict_request


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(AIFX_LOG_LEVEL="WARNING", AIFX_ENV="test")
    return env


def test_serving_imports_no_tensorflow_runtime():
    """Start a server, answer a Predict and GetModelMetadata, then list what `tensorflow`
    modules the process holds: only tensorflow-protobuf's generated `tensorflow.core`."""
    script = textwrap.dedent(
        """
        import asyncio, json, sys, tempfile, pathlib
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc
        from inference.model_server.config import ServerConfig
        from inference.model_server.server import start_model_server
        from tests.model_server.conftest import candles, predict_request
        from tests.model_server.test_metadata_and_bootstrap import _metadata_request
        from tests.model_server.onnx_models import write_version

        async def main():
            base = pathlib.Path(tempfile.mkdtemp()) / "lstm"
            write_version(base, 1)
            running, _ = await start_model_server(ServerConfig.single("lstm", base))
            async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
                stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
                await stub.Predict(predict_request(candles(2)))
                await stub.GetModelMetadata(_metadata_request())
            await running.stop(0.1)

        asyncio.run(main())
        import tensorflow
        print(json.dumps({
            "modules": sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow"),
            "version": getattr(tensorflow, "__version__", None),
        }))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["version"] is None
    assert "tensorflow.python" not in found["modules"]
    assert all(m == "tensorflow" or m.startswith("tensorflow.core") for m in found["modules"])


def test_command_line_server_serves_and_stops_on_sigterm(tmp_path):
    from tests.model_server.onnx_models import write_version

    base_path = tmp_path / "lstm"
    write_version(base_path, 4)
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "inference.model_server",
            f"--port={port}",
            "--model_name=lstm",
            f"--model_base_path={base_path}",
            "--metrics_port=0",
            "--enable_batching",
        ],
        cwd=REPO_ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="tensorflow.serving.PredictionService")
            )
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            inputs = candles(5, seed=3)
            response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
                predict_request(inputs), timeout=10
            )
            assert response.model_spec.version.value == 4
            np.testing.assert_array_equal(
                make_ndarray(response.outputs[OUTPUT_NAME]), direct(base_path / "4", inputs)
            )
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert process.wait(timeout=15) == 0
        assert time.monotonic() - started < 10
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        output = process.stdout.read().decode() if process.stdout else ""
    assert "Traceback" not in output, output

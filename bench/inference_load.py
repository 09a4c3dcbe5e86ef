"""Latency of the inference service end to end: PredictBatch of 30 windows of real
EUR/USD candles → features (the shared module) → the model server → probabilities.

Starts the model server (`python -m inference.model_server`, the committed model) and
the inference service (`python -m inference`) as subprocesses on free ports, then times
sequential calls from a Python gRPC client. Target: 30 windows under 50 ms end to end.
The served model covers EUR/USD 1h only, so the 30 windows are 30 different EUR/USD
hours (300 candles each), as signal_svc would send when several series close together.

Run:  .venv/bin/python bench/inference_load.py [--calls 200] [--windows 30]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from model_server_load import REAL_MODELS, Server, percentile, pick_model
from proc_stats import memory_mb

from aifx.inference.v1 import inference_pb2, inference_pb2_grpc
from common.market_data import load_bundled_history
from common.settings import REPO_ROOT
from tests.inference.conftest import request_for
from tests.infra import free_port, stop_process

TARGET_BATCH_MS = 50.0
CANDLES_PER_WINDOW = 300


class InferenceProcess:
    """`python -m inference` on a free port, in front of the model server at `target`;
    `models` are the settings naming the served models (default: the committed hourly
    model alone)."""

    def __init__(self, target: str, var_dir: Path, models: dict[str, str] | None = None) -> None:
        self.port = free_port()
        env = dict(
            os.environ,
            AIFX_LOG_LEVEL="WARNING",
            AIFX_VAR_DIR=str(var_dir),
            AIFX_INFERENCE_PORT=str(self.port),
            AIFX_INFERENCE_METRICS_PORT="0",
            AIFX_MODEL_SERVER_TARGET=target,
            **(models if models is not None else {"AIFX_MODEL_BASE_PATH": str(REAL_MODELS)}),
        )
        self.log_path = var_dir / "inference.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "inference"],
            cwd=REPO_ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.target = f"127.0.0.1:{self.port}"
        self.token = self._wait_ready(var_dir)

    def _wait_ready(self, var_dir: Path) -> str:
        deadline = time.monotonic() + 60
        with grpc.insecure_channel(self.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError("inference exited:\n" + self.log_path.read_text())
                try:
                    if health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                        return (var_dir / "service-token").read_text().strip()
                except grpc.RpcError:
                    pass
                time.sleep(0.1)
        raise RuntimeError("inference not ready:\n" + self.log_path.read_text())

    def rss_mb(self) -> float:
        return memory_mb(self.process.pid)["VmRSS"]

    def stop(self) -> None:
        stop_process(self.process, grace=15)
        self._log.close()


def timed(call, calls: int) -> list[float]:  # type: ignore[no-untyped-def]
    for _ in range(min(20, calls)):
        call()
    latencies = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--windows", type=int, default=30)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="aifx-inference-bench-"))
    model = pick_model(workdir, None)
    if model.base_path != REAL_MODELS:
        raise SystemExit(f"no committed model in {REAL_MODELS}: run `make train` first")
    history = load_bundled_history()
    ends = [len(history) - 1 - 97 * i for i in range(args.windows)]
    batch = inference_pb2.PredictBatchRequest(
        requests=[request_for(history.slice(e - CANDLES_PER_WINDOW, e)) for e in ends]
    )
    single = batch.requests[0]
    print(f"model: {model.description}")
    print(f"{args.windows} windows of {CANDLES_PER_WINDOW} real EUR/USD 1h candles each\n")

    server = Server(model, [], workdir / "model-server.log")
    service: InferenceProcess | None = None
    try:
        service = InferenceProcess(server.target, workdir)
        credential = (("x-aifx-service-token", service.token),)
        with grpc.insecure_channel(service.target) as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            batch_ms = timed(lambda: stub.PredictBatch(batch, metadata=credential), args.calls)
            single_ms = timed(lambda: stub.Predict(single, metadata=credential), args.calls)
        rss_service, rss_server = service.rss_mb(), server.memory_mb()[0]
    finally:
        if service is not None:
            service.stop()
        server.stop()

    p50, p99 = percentile(batch_ms, 50), percentile(batch_ms, 99)
    print(f"PredictBatch, {args.windows} windows: p50 {p50:.1f} ms  p99 {p99:.1f} ms")
    print(
        f"Predict, 1 window:        p50 {percentile(single_ms, 50):.1f} ms  "
        f"p99 {percentile(single_ms, 99):.1f} ms"
    )
    print(f"memory: inference RSS {rss_service:.0f} MB, model server RSS {rss_server:.0f} MB")
    print(
        f"\ntarget: {args.windows} windows under {TARGET_BATCH_MS:.0f} ms end to end (p50 "
        f"{p50:.1f} ms): {'met' if p50 < TARGET_BATCH_MS else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Load benchmark of the model server (TF Serving gRPC API over onnxruntime).

Starts `python -m inference.model_server` as a subprocess on free ports (so it never
touches a running `make run`) and measures, with a Python gRPC client using the official
`tensorflow_serving` stubs:

1. Predict latency, sequential calls, batch 1 and batch 32: p50 / p99.
   Target: batch-1 p50 under 2 ms.
2. Throughput with --concurrency callers (64) sending batch-1 Predicts, with server-side
   batching off and on (a fresh server each), plus the rows per onnxruntime run the
   server reports.
3. The server's resident memory (VmRSS, and the peak VmHWM). Target: under 200 MB.

Serves the committed trained model (models/lstm/<latest>/) when there is one, else a
test model of the same shape built with onnx.helper (the output says which), or the
newest version under --model-base-path. Client and
server share this machine's cores, so concurrency figures include the client's cost.

Run:  .venv/bin/python bench/model_server_load.py [--calls 2000] [--concurrency 64]
      [--concurrent-calls 6000] [--max-batch-size 64] [--batch-timeout-micros 0] [--strict]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
from proc_stats import cpu_seconds, machine_busy_seconds, memory_mb
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from common.settings import REPO_ROOT, Settings
from inference.model_format import INPUT_NAME, ModelMetadata, complete_versions
from inference.model_server.flags import configured_models
from inference.tensor_proto import make_ndarray, make_tensor_proto
from tests.infra import free_port, stop_process

TARGET_P50_MS = 2.0
TARGET_RSS_MB = 200.0
MODEL_NAME = "lstm"
REAL_MODELS = REPO_ROOT / "models" / MODEL_NAME


@dataclass
class Model:
    base_path: Path
    version: int
    lookback: int
    features: int
    input_name: str
    description: str


def pick_model(workdir: Path, base_path: Path | None) -> Model:
    real = base_path or REAL_MODELS
    versions = complete_versions(real)
    if versions:
        meta = ModelMetadata.read(real / str(versions[-1]))
        what = "committed trained model" if base_path is None else "trained model"
        return Model(
            real,
            versions[-1],
            meta.lookback,
            len(meta.feature_names),
            meta.input_name,
            f"{what} {real}/{versions[-1]}",
        )
    if base_path is not None:
        raise SystemExit(f"no complete version under {base_path}")
    from tests.model_server.onnx_models import FEATURES, LOOKBACK, write_version

    base_path = workdir / MODEL_NAME
    write_version(base_path, 1, hidden=64)
    return Model(
        base_path,
        1,
        LOOKBACK,
        FEATURES,
        INPUT_NAME,
        f"test model built with onnx.helper (no committed version in {REAL_MODELS}): "
        f"LSTM(64) + dense + softmax, [N, {LOOKBACK}, {FEATURES}] -> [N, 3]",
    )


class Server:
    """`python -m inference.model_server` on free ports: serving `model` alone, or with
    `model` None every model of models/models.config (as `make run` does); ready once
    each is AVAILABLE (`model`'s own version)."""

    def __init__(self, model: Model | None, extra: list[str], log_path: Path) -> None:
        self.port = free_port()
        self.metrics_port = free_port()
        env = dict(os.environ, AIFX_LOG_LEVEL="WARNING")
        self.log_path = log_path
        self._log = log_path.open("wb")
        if model is None:
            served = [m.name for m in configured_models(Settings.load())]
            flags, wanted = [], dict.fromkeys(served)
        else:
            flags = [f"--model_name={MODEL_NAME}", f"--model_base_path={model.base_path}"]
            wanted = {MODEL_NAME: model.version}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "inference.model_server",
                f"--port={self.port}",
                *flags,
                f"--metrics_port={self.metrics_port}",
                *extra,
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.target = f"127.0.0.1:{self.port}"
        self.models = list(wanted)
        self._wait_available(wanted)

    def _wait_available(self, wanted: dict[str, int | None]) -> None:
        """Until every model has an AVAILABLE version (the given one, if not None)."""
        deadline = time.monotonic() + 60
        waiting = dict(wanted)
        with grpc.insecure_channel(self.target) as channel:
            stub = model_service_pb2_grpc.ModelServiceStub(channel)
            while waiting and time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError("model server exited:\n" + self.log_path.read_text())
                for name, version in list(waiting.items()):
                    request = get_model_status_pb2.GetModelStatusRequest(
                        model_spec=model_pb2.ModelSpec(name=name)
                    )
                    try:
                        states = stub.GetModelStatus(request, timeout=1).model_version_status
                    except grpc.RpcError:
                        continue
                    if any(s.state == s.AVAILABLE and version in (None, s.version) for s in states):
                        del waiting[name]
                time.sleep(0.1)
        if waiting:
            raise RuntimeError(
                f"model server not ready ({', '.join(waiting)}):\n" + self.log_path.read_text()
            )

    def memory_mb(self) -> tuple[float, float]:
        """(VmRSS, VmHWM) in MB."""
        values = memory_mb(self.process.pid)
        return values["VmRSS"], values["VmHWM"]

    def mean_rows_per_run(self) -> float | None:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        total = re.search(r"^aifx_model_server_batch_rows_sum (\S+)", text, re.M)
        count = re.search(r"^aifx_model_server_batch_rows_count (\S+)", text, re.M)
        if not total or not count or float(count.group(1)) == 0:
            return None
        return float(total.group(1)) / float(count.group(1))

    def stop(self) -> None:
        stop_process(self.process, grace=15)
        self._log.close()


def request(model: Model, batch: int, seed: int = 0) -> predict_pb2.PredictRequest:
    inputs = (
        np.random.default_rng(seed)
        .standard_normal((batch, model.lookback, model.features))
        .astype(np.float32)
    )
    message = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=MODEL_NAME))
    message.inputs[model.input_name].CopyFrom(make_tensor_proto(inputs))
    return message


class CpuMeter:
    """CPU used during a phase by the server, this client, and everything else, in % of
    one core."""

    def __init__(self, server_pid: int) -> None:
        self.pids = {"server": server_pid, "client": os.getpid()}

    def __enter__(self) -> CpuMeter:
        self._before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._machine = machine_busy_seconds()
        self._started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        elapsed = time.perf_counter() - self._started
        used = {name: cpu_seconds(pid) - self._before[name] for name, pid in self.pids.items()}
        used["other"] = max(0.0, machine_busy_seconds() - self._machine - sum(used.values()))
        self.percent = {name: 100 * seconds / elapsed for name, seconds in used.items()}

    def text(self) -> str:
        p = self.percent
        return f"CPU server {p['server']:.0f}%, client {p['client']:.0f}%, other {p['other']:.0f}%"


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def sequential(server: Server, model: Model, batch: int, calls: int) -> dict[str, float]:
    message = request(model, batch)
    with grpc.insecure_channel(server.target) as channel:
        predict = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict
        first = predict(message, timeout=10)
        assert make_ndarray(first.outputs["output_0"]).shape[0] == batch
        for _ in range(min(200, calls)):
            predict(message, timeout=10)
        latencies = []
        for _ in range(calls):
            started = time.perf_counter()
            predict(message, timeout=10)
            latencies.append((time.perf_counter() - started) * 1000)
    return {
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "mean": statistics.fmean(latencies),
    }


async def concurrent(server: Server, model: Model, callers: int, calls: int) -> dict[str, float]:
    messages = [request(model, 1, seed=i) for i in range(callers)]
    latencies: list[float] = []
    remaining = calls

    async with grpc.aio.insecure_channel(server.target) as channel:
        predict = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict
        await asyncio.gather(*(predict(m, timeout=10) for m in messages))  # warm up

        async def caller(message: predict_pb2.PredictRequest) -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                await predict(message, timeout=10)
                latencies.append((time.perf_counter() - started) * 1000)

        with CpuMeter(server.process.pid) as cpu:
            started = time.perf_counter()
            await asyncio.gather(*(caller(m) for m in messages))
            elapsed = time.perf_counter() - started
    return {
        "rps": len(latencies) / elapsed,
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "cpu": cpu,  # type: ignore[dict-item]
    }


def _median_round(rounds: list[dict[str, object]]) -> dict[str, object]:
    return sorted(rounds, key=lambda r: r["rps"])[len(rounds) // 2]  # type: ignore[arg-type,return-value]


def _line(name: str, figures: dict[str, object]) -> str:
    return (
        f"  batching {name}: {figures['rps']:7.0f} req/s  p50 {figures['p50']:6.2f} ms  "
        f"p99 {figures['p99']:6.2f} ms  ({figures['cpu'].text()})"  # type: ignore[attr-defined]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="sequential calls per batch size")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--concurrent-calls", type=int, default=6000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating off/on rounds")
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--batch-timeout-micros", type=int, default=0)
    parser.add_argument("--num-batch-threads", type=int, default=None)
    parser.add_argument(
        "--model-base-path", type=Path, help="serve this models/<name> folder's newest version"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="aifx-model-bench-"))
    model = pick_model(workdir, args.model_base_path)
    print(f"model: {model.description}")
    print(f"machine: {os.cpu_count()} cores; client and server share them\n")

    batching_flags = [
        "--enable_batching",
        f"--max_batch_size={args.max_batch_size}",
        f"--batch_timeout_micros={args.batch_timeout_micros}",
    ]
    if args.num_batch_threads:
        batching_flags.append(f"--num_batch_threads={args.num_batch_threads}")
    plain = Server(model, [], workdir / "server-plain.log")
    batched: Server | None = None
    try:
        latency: dict[int, dict[str, float]] = {}
        for batch in (1, 32):
            latency[batch] = figures = sequential(plain, model, batch, args.calls)
            print(
                f"Predict batch {batch:>2}, {args.calls} sequential calls: "
                f"p50 {figures['p50']:.2f} ms  p99 {figures['p99']:.2f} ms  "
                f"mean {figures['mean']:.2f} ms"
            )
        batched = Server(model, batching_flags, workdir / "server-batching.log")
        off_rounds, on_rounds = [], []
        for _ in range(args.rounds):
            off_rounds.append(
                asyncio.run(concurrent(plain, model, args.concurrency, args.concurrent_calls))
            )
            on_rounds.append(
                asyncio.run(concurrent(batched, model, args.concurrency, args.concurrent_calls))
            )
        rows_per_run = batched.mean_rows_per_run()
        rss_off, hwm_off = plain.memory_mb()
        rss_on, hwm_on = batched.memory_mb()
    finally:
        plain.stop()
        if batched is not None:
            batched.stop()

    off, on = _median_round(off_rounds), _median_round(on_rounds)
    print(
        f"\n{args.concurrency} concurrent callers, batch 1, {args.concurrent_calls} calls per "
        f"round, median of {args.rounds} alternating rounds:\n"
        f"{_line('off', off)}\n{_line('on ', on)}\n"
        f"  (batching: max_batch_size {args.max_batch_size}, batch_timeout_micros "
        f"{args.batch_timeout_micros}; mean rows per onnxruntime run {rows_per_run or 0:.1f})"
    )
    print(
        f"\nserver memory: batching off RSS {rss_off:.0f} MB (peak {hwm_off:.0f} MB); "
        f"batching on RSS {rss_on:.0f} MB (peak {hwm_on:.0f} MB)"
    )
    p50 = latency[1]["p50"]
    rss = max(hwm_off, hwm_on)
    ok_latency = p50 < TARGET_P50_MS
    ok_memory = rss < TARGET_RSS_MB
    print(
        f"\ntargets: batch-1 p50 {p50:.2f} ms < {TARGET_P50_MS} ms: "
        f"{'met' if ok_latency else 'MISSED'}; peak RSS {rss:.0f} MB < {TARGET_RSS_MB:.0f} MB: "
        f"{'met' if ok_memory else 'MISSED'}"
    )
    return 1 if args.strict and not (ok_latency and ok_memory) else 0


if __name__ == "__main__":
    sys.exit(main())

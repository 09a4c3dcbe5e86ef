"""Resident memory of a real `python -m signal_svc`: idle, then serving --streams gRPC
SubscribeSignals streams while it replays history and pushes a signal to every stream
each second (issue 4: under 150 MB while serving 1,000 subscribers).

Starts the service as `make run` would (migrations first, replay of the bundled history
at the default speed, in a temporary AIFX_VAR_DIR, on free ports), embedded by default or
on PostgreSQL + Redis (--database-url with --create-database, --redis-url). The inference
service is not started, so signals come from the technical fallback, which is also what
the service does when inference is down. After --idle-seconds the client process opens
--streams streams with the service credential, each on its own TCP connection (as
separate subscriber processes would) or --streams-per-connection of them per connection
(as a proxy multiplexes them: Envoy for Server-Sent Events, the edge for WebSockets), and
counts the signals every stream receives. The service's VmRSS is sampled every
--interval seconds; the report gives idle, with streams (min/max), the peak (VmHWM), the
anon/file split, the streams' cost per 1,000, the signals received, and which of a few
heavy packages the process loaded that it should not need offline (pandas, yfinance, ...:
seen from their compiled extensions in /proc/PID/maps).

The bundled history starts on a Friday evening: at the default 3600x the first weekend
gap lasts about 48 s of wall time, so the default --idle-seconds 10 + --seconds 75 see
signals flowing for the last ~25 s or more.

Run:  .venv/bin/python bench/signal_rss.py [--streams 1000] [--streams-per-connection 1]
      .venv/bin/python bench/signal_rss.py --create-database \\
          --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/aifx_bench_rss \\
          --redis-url redis://127.0.0.1:6379/0
      --streams 0: idle only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from getme_load import create_database, drop_database, safe_url
from proc_stats import memory_mb, rss_parts

from tests.infra import delete_redis_prefix, free_port, stop_process

REPO_ROOT = Path(__file__).resolve().parents[1]
TARGET_MB = 150.0
# Packages whose compiled extensions in the process's memory maps say they were imported.
WATCHED = ("pandas", "backtesting", "bokeh", "yfinance", "curl_cffi", "scipy", "onnxruntime")


def mapped_packages(pid: int) -> list[str]:
    """WATCHED packages with a file mapped into the process (compiled extensions)."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return []
    return [name for name in WATCHED if f"/site-packages/{name}/" in maps]


# --- the client process ---------------------------------------------------------------


async def clients(target: str, streams: int, per_connection: int, out: Path) -> None:
    """Open the streams and, once every one is registered (its first message), count
    signals, rewriting the counts to `out` every second until killed."""
    import grpc

    from aifx.signal.v1 import signal_pb2, signal_pb2_grpc

    channels = []
    calls = []
    request = signal_pb2.SubscribeSignalsRequest(pairs=["EUR/USD"])
    metadata = (("x-aifx-service-token", os.environ["AIFX_CLIENT_TOKEN"]),)
    for index in range(streams):
        if index % per_connection == 0:
            options = [("grpc.use_local_subchannel_pool", 1)]  # a connection of its own
            channels.append(grpc.aio.insecure_channel(target, options=options))
        stub = signal_pb2_grpc.SignalServiceStub(channels[-1])
        calls.append(stub.SubscribeSignals(request, metadata=metadata))
    await asyncio.gather(*(call.read() for call in calls))
    received = [0] * streams
    errors: list[str] = []

    async def count(slot: int, call: grpc.aio.UnaryStreamCall) -> None:
        try:
            while (message := await call.read()) is not grpc.aio.EOF:
                if message.WhichOneof("event") == "signal":
                    received[slot] += 1
            errors.append("stream ended")
        except grpc.aio.AioRpcError as exc:
            errors.append(f"{exc.code().name}: {exc.details()}")

    tasks = [asyncio.create_task(count(i, call)) for i, call in enumerate(calls)]
    while True:
        report = {
            "open": sum(not task.done() for task in tasks),
            "min": min(received),
            "max": max(received),
            "errors": errors[:3],
            "error_count": len(errors),
        }
        out.with_suffix(".tmp").write_text(json.dumps(report))
        out.with_suffix(".tmp").replace(out)
        await asyncio.sleep(1)


class Clients:
    """The client process and its reports."""

    def __init__(self, args: argparse.Namespace, port: int, token: str, workdir: Path) -> None:
        self.report_path = workdir / "clients.json"
        command = [sys.executable, __file__, "--role", "clients", "--target"]
        command += [f"127.0.0.1:{port}", "--streams", str(args.streams)]
        command += ["--streams-per-connection", str(args.streams_per_connection)]
        command += ["--out", str(self.report_path)]
        self.process = subprocess.Popen(
            command, cwd=REPO_ROOT, env={**os.environ, "AIFX_CLIENT_TOKEN": token}
        )

    def wait_registered(self, timeout: float) -> None:
        """Block until the first report: every stream has had its first message."""
        deadline = time.monotonic() + timeout
        while not self.report_path.exists():
            if self.process.poll() is not None:
                raise SystemExit("the client process ended before its streams were open")
            if time.monotonic() > deadline:
                raise SystemExit(f"the streams were not open within {timeout:.0f} s")
            time.sleep(0.2)

    def report(self) -> dict:
        return json.loads(self.report_path.read_text())


# --- the orchestrator -----------------------------------------------------------------


def service_env(
    args: argparse.Namespace, workdir: Path, port: int, token: str, redis_prefix: str
) -> dict:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("AIFX_")  # the defaults, whatever the shell exports
    }
    env.update(
        AIFX_VAR_DIR=str(workdir),
        AIFX_SIGNAL_PORT=str(port),
        AIFX_SIGNAL_METRICS_PORT=str(free_port()),
        AIFX_INFERENCE_TARGET=f"127.0.0.1:{free_port()}",  # nothing there: fallback
        AIFX_AUTH_TARGET=f"127.0.0.1:{free_port()}",
        AIFX_LOG_LEVEL="WARNING",
        AIFX_SERVICE_TOKEN=token,
        PYTHONPATH=str(REPO_ROOT),
    )
    if args.database_url:
        env["AIFX_DATABASE_URL"] = args.database_url
    if args.redis_url:
        env["AIFX_REDIS_URL"] = args.redis_url
        env["AIFX_REDIS_PREFIX"] = redis_prefix
    return env


def sample(pid: int, seconds: float, interval: float) -> list[float]:
    samples = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
        samples.append(memory_mb(pid).get("VmRSS", 0.0))
    return samples


def measure(args: argparse.Namespace, workdir: Path) -> int:
    port = free_port()
    token = uuid.uuid4().hex
    redis_prefix = f"aifx-bench-rss-{uuid.uuid4().hex[:8]}:"
    env = service_env(args, workdir, port, token, redis_prefix)
    subprocess.run(
        [sys.executable, "-m", "common.migrations", "signal_svc"],
        cwd=workdir,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    log_path = workdir / "signal_svc.log"
    with log_path.open("wb") as log:
        service = subprocess.Popen(
            [sys.executable, "-m", "signal_svc"],
            cwd=workdir,  # no .env of the repository
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    client: Clients | None = None
    try:
        idle = sample(service.pid, args.idle_seconds, args.interval)
        idle_parts = rss_parts(service.pid)
        serving: list[float] = []
        report: dict = {}
        if args.streams:
            print(f"opening {args.streams} streams …", flush=True)
            client = Clients(args, port, token, workdir)
            client.wait_registered(120)
            serving = sample(service.pid, args.seconds, args.interval)
            report = client.report()
        if service.poll() is not None:
            print(log_path.read_text()[-3000:])
            raise SystemExit(f"signal_svc exited with {service.returncode}")
        peak = memory_mb(service.pid).get("VmHWM", 0.0)
        parts = rss_parts(service.pid)
        loaded = mapped_packages(service.pid)
    finally:
        if client is not None:
            stop_process(client.process)
        stop_process(service)
        if args.redis_url:
            asyncio.run(delete_redis_prefix(redis_prefix, args.redis_url))

    backend = "PostgreSQL" if args.database_url else "embedded SQLite"
    backend += " + Redis" if args.redis_url else ", no Redis"
    where = safe_url(args.database_url) if args.database_url else "the temporary var dir"
    print(f"signal_svc ({backend}: {where})")
    print(f"  idle: {idle[-1]:.0f} MB ({idle_parts})")
    if serving:
        per_connection = args.streams_per_connection
        layout = (
            "each on its own connection"
            if per_connection == 1
            else (f"{per_connection} per connection")
        )
        print(
            f"  serving {args.streams} streams ({layout}): {min(serving):.0f} to "
            f"{max(serving):.0f} MB sampled, {serving[-1]:.0f} MB at the end ({parts}); "
            f"streams cost {(max(serving) - idle[-1]) * 1000 / args.streams:.0f} MB per 1,000"
        )
        print(
            f"  signals received per stream: {report['min']} to {report['max']}; streams open "
            f"at the end: {report['open']}; stream errors: {report['error_count']} "
            f"{' | '.join(report['errors'])}"
        )
    print(f"  peak (VmHWM): {peak:.0f} MB")
    print(f"  heavy packages with compiled code mapped: {', '.join(loaded) or 'none'}")
    met = peak < TARGET_MB
    print(f"target < {TARGET_MB:.0f} MB: {'met' if met else 'MISSED'}")
    return 0 if met or not args.strict else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=1000, help="0: idle only")
    parser.add_argument("--streams-per-connection", type=int, default=1)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=75.0, help="sampled with streams")
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--database-url", default="", help="default: embedded SQLite")
    parser.add_argument(
        "--create-database", action="store_true", help="create and drop --database-url"
    )
    parser.add_argument("--redis-url", default="", help="default: in-process stores")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the target is missed")
    parser.add_argument("--role", default="orchestrator", help=argparse.SUPPRESS)
    parser.add_argument("--target", default="", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "clients":
        asyncio.run(clients(args.target, args.streams, args.streams_per_connection, args.out))
        return 0
    if args.streams_per_connection < 1:
        parser.error("--streams-per-connection must be at least 1")
    if args.create_database and not args.database_url.startswith("postgresql"):
        parser.error("--create-database needs a PostgreSQL --database-url")
    workdir = Path(tempfile.mkdtemp(prefix="aifx-signal-rss-"))
    try:
        if args.create_database:
            create_database(args.database_url)
        return measure(args, workdir)
    finally:
        if args.create_database:
            drop_database(args.database_url)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

"""Fan-out benchmark: 1,000 concurrent gRPC SubscribeSignals streams.

Three kinds of processes, so the server's resident memory is its own:

- the SERVER (this script with `--role server`): signal_svc's real SignalService with
  its stream handlers (`StreamRpcs`) and a fixed-token gate, served by the real server
  bootstrap (interceptor, health, reflection), the Broadcaster, the RelayPublisher (local,
  or through Redis with --redis-url) and the real signal repository on the embedded
  SQLite database (or --database-url). On command it plays the scheduler: for each signal
  it STORES it (committed), notes the time, then PUBLISHES it. So that its resident
  memory is what `python -m signal_svc` would hold, it also imports everything the real
  service imports (market data, engine, inference client, token verification, ...) and
  loads the offline history the service replays, without running them; with
  --streams-only it holds only what serving the streams needs. It does not import what
  only this orchestrator uses (Alembic, the test helpers: pytest, asyncpg);
- the CLIENTS (`--role clients`, --client-processes of them): together --subscribers
  streams, each on its own connection by default, subscribed to EUR/USD; each notes when
  every signal arrives;
- this orchestrator: starts them, waits until every stream is registered (its first
  heartbeat), has the server store+publish --signals signals (after --warmup unmeasured
  ones) --interval seconds apart, samples the server's resident memory meanwhile, then
  prints latency from stored to received over all deliveries, lost/duplicate deliveries,
  and memory.

Targets: p99 from stored to received under 100 ms; server resident memory under 150 MB
while serving the 1,000 streams (this server approximates the service's memory;
`bench/signal_rss.py` measures a real `python -m signal_svc`, idle and serving
streams). Clients and server share this machine's cores, so the latencies include the
clients' own CPU time (Python gRPC receiving 1,000 streams); `--pin` puts the server on
CPU 0 and the clients on the others, as if they were other
hosts. `--server-timing` also prints when the server handed each message to gRPC.

Garbage collection: by default the server calls gc.freeze() once started (as a
long-running service should: the ~130k objects of its imports and wiring are then never
scanned again). Without it (`--no-gc-freeze`) a full collection now and then scans them
all and stalls the event loop for 100-150 ms, which alone decides the p99. The clients
freeze theirs too, and keep receipts in untracked arrays, so their pauses are not counted
as the server's latency.

Run:  .venv/bin/python bench/signal_fanout.py [--subscribers 1000] [--signals 40]
          [--interval 0.25] [--burst 1] [--client-processes 2] [--streams-per-connection 1]
          [--pin] [--server-timing] [--no-gc-freeze] [--streams-only] [--strict]
          [--redis-url redis://127.0.0.1:6379/0] [--database-url postgresql+asyncpg://...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from array import array
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from proc_stats import cpu_seconds, memory_mb, rss_parts

from aifx.signal.v1 import signal_pb2, signal_pb2_grpc
from common.market import Timeframe
from common.settings import REPO_ROOT, Settings

# Not imported here: what only the orchestrator uses (common.migrations: Alembic;
# tests.infra: pytest, asyncpg), about 16 MB the server process must not count. (The
# server takes its fixed-token gate from tests.servicer_parts, which imports neither.)

TARGET_P99_MS = 100.0
TARGET_RSS_MB = 150.0
TOKEN = "bench-token"
METADATA = (("authorization", f"Bearer {TOKEN}"),)


# --- server ---------------------------------------------------------------------------


async def serve(args: argparse.Namespace, bars: list[list[float]]) -> None:
    if args.cpus:
        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
    # Migrations ran in the orchestrator, and the real bars' prices come in a file.
    from common.db import create_engine, session_factory
    from common.logging import configure_logging
    from common.server import ServiceSpec, start_server
    from signal_svc.convert import ResponseCache
    from signal_svc.fanout import Broadcaster
    from signal_svc.market_rpcs import MarketRpcs
    from signal_svc.redis_relay import RelayPublisher
    from signal_svc.repository import SignalRepository
    from signal_svc.service import SignalService
    from signal_svc.signal_rpcs import SignalRpcs
    from signal_svc.stream_rpcs import StreamRpcs
    from tests.servicer_parts import FixedGate, not_exercised

    settings = Settings.load(
        None,
        var_dir=Path(args.var_dir),
        database_url=args.database_url,
        redis_url=args.redis_url,
        redis_prefix=args.redis_prefix,
        log_level="WARNING",
        subscriber_buffer=args.subscriber_buffer,
    )
    configure_logging(settings, "signal-fanout-bench")
    offline_bars = 0
    if not args.streams_only:
        # What the real signal_svc process holds besides the streams: every module it
        # imports and the offline history it replays (loaded, not replayed here).
        import signal_svc.server  # noqa: F401
        from signal_svc.market import offline_history

        offline = offline_history(settings)
        offline_bars = sum(len(candles) for candles in offline.series.values())
    engine = create_engine(settings)
    repository = SignalRepository(session_factory(engine))
    broadcaster = Broadcaster(settings.streams.subscriber_buffer)
    relay = RelayPublisher.from_settings(broadcaster, settings.storage, reader=repository)
    await relay.start()
    if relay.uses_redis and not await relay.wait_listening(5):
        raise SystemExit("Redis unreachable")

    streams = StreamRpcs(
        broadcaster,
        repository,
        ResponseCache(),
        heartbeat_seconds=settings.streams.stream_heartbeat_seconds,
    )
    parts = (
        FixedGate(user_token=TOKEN, user_id="bench"),
        not_exercised(MarketRpcs),
        not_exercised(SignalRpcs),
        streams,
    )

    handed: dict[int, array[float]] = {}

    class TimedContext:
        """The RPC's context, noting when each signal message is handed to gRPC."""

        def __init__(self, context: grpc.aio.ServicerContext) -> None:
            self._context = context

        def __getattr__(self, name: str) -> Any:
            return getattr(self._context, name)

        async def write(self, response: Any) -> None:
            if response.WhichOneof("event") == "signal":
                key = int(response.signal.id)
                handed.setdefault(key, array("d")).append(time.time())
            await self._context.write(response)

    class TimedSignalService(SignalService):
        """Also notes when each signal message is handed to gRPC for sending."""

        async def SubscribeSignals(self, request: Any, context: Any) -> None:  # noqa: N802
            await super().SubscribeSignals(request, TimedContext(context))

    service = TimedSignalService(*parts) if args.server_timing else SignalService(*parts)
    spec = ServiceSpec(
        "signal-fanout-bench",
        lambda server: signal_pb2_grpc.add_SignalServiceServicer_to_server(service, server),
        [signal_pb2.DESCRIPTOR.services_by_name["SignalService"].full_name],
    )
    running = await start_server(spec, "127.0.0.1", args.port)
    if args.gc_freeze:
        # What a long-running server can do after start-up: exempt the objects of the
        # imports and wiring (~130k) from every later collection, so the occasional
        # full collection scans only what was created since (see the figures printed).
        gc.collect()
        gc.freeze()
    pauses = array("d")
    started_at = [0.0]

    def gc_timer(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started_at[0] = time.perf_counter()
        elif info["generation"] == 2:
            pauses.append((time.perf_counter() - started_at[0]) * 1000)

    gc.callbacks.append(gc_timer)
    emit({"ready": running.port, "offline_bars": offline_bars})

    loop = asyncio.get_running_loop()
    index = 0
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
        if not line or line[0] == "quit":
            break
        if line[0] == "subscribers":
            emit({"subscribers": len(broadcaster)})
        elif line[0] == "publish":
            count, interval, burst = int(line[1]), float(line[2]), int(line[3])
            started = loop.time()
            for tick in range(0, count, burst):
                await asyncio.sleep(max(0.0, started + (tick // burst) * interval - loop.time()))
                for _ in range(min(burst, count - tick)):
                    stored = await repository.store(bench_signal(bars[index % len(bars)], index))
                    index += 1
                    assert stored is not None
                    at = time.time()
                    await relay.publish(stored)
                    emit({"id": stored.id, "stored": at, "published": time.time()})
            emit(
                {
                    "done": count,
                    "handed": {k: list(v) for k, v in handed.items()},
                    "gc_full_ms": list(pauses),
                }
            )
            handed.clear()
            del pauses[:]
    await running.stop(grace=1)
    await relay.stop()
    await engine.dispose()


def bench_signal(bar: list[float], index: int) -> Any:
    """A BUY signal at the close of a real bar ([open time, close]); one candle each."""
    from signal_svc.signals import Action, Signal, Source, Strength

    open_time, entry = bar
    return Signal(
        pair="EUR/USD",
        timeframe=Timeframe.H1,
        # A distinct candle per signal (one signal per candle is a database constraint).
        candle_time=datetime.fromtimestamp(open_time + 3600, UTC) + timedelta(days=index * 400),
        action=Action.BUY,
        confidence=0.72,
        strength=Strength.STRONG,
        entry_price=entry,
        stop_loss=round(entry - 0.0015, 5),
        take_profit=round(entry + 0.003, 5),
        risk_reward_ratio=2.0,
        probabilities={"buy": 0.72, "hold": 0.18, "sell": 0.10},
        indicators={"rsi_14": 58.2, "atr_14": 0.001, "sma_20": entry - 0.0004},
        source=Source.MODEL,
        model_name="lstm",
        model_version="1",
        created_at=datetime.now(UTC),
    )


def real_bars(count: int) -> list[list[float]]:
    """[open time, close] of the last `count` real bundled EUR/USD hours."""
    from common.market_data import load_bundled_history

    hours = load_bundled_history("EUR/USD", Timeframe.H1).tail(count)
    return [[int(t), float(c)] for t, c in zip(hours.times, hours.close, strict=True)]


def emit(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


# --- clients --------------------------------------------------------------------------


async def clients(args: argparse.Namespace) -> None:
    if args.cpus:
        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
    channels: list[grpc.aio.Channel] = []
    calls = []
    request = signal_pb2.SubscribeSignalsRequest(pairs=["EUR/USD"])
    for index in range(args.streams):
        if index % args.streams_per_connection == 0:
            # Each its own connection, as separate subscribers would have.
            channels.append(
                grpc.aio.insecure_channel(
                    args.target, options=[("grpc.use_local_subchannel_pool", 1)]
                )
            )
        stub = signal_pb2_grpc.SignalServiceStub(channels[-1])
        calls.append(stub.SubscribeSignals(request, metadata=METADATA))

    async def registered(call: Any) -> None:
        first = await call.read()
        assert first.WhichOneof("event") == "heartbeat", first

    await asyncio.gather(*(registered(call) for call in calls))
    # The clients' own garbage-collector pauses are not the server's latency: receipts go
    # to untracked arrays, and what exists now is exempted from collections.
    received_ids = [array("q") for _ in calls]
    received_at = [array("d") for _ in calls]
    errors: list[str] = []
    gc.collect()
    gc.freeze()
    emit({"ready": len(calls)})

    async def receive(slot: int, call: Any) -> None:
        ids, times = received_ids[slot], received_at[slot]
        try:
            while len(ids) < args.expect:
                message = await call.read()
                if message is grpc.aio.EOF:
                    errors.append("stream ended")
                    return
                if message.WhichOneof("event") == "signal":
                    times.append(time.time())
                    ids.append(int(message.signal.id))
        except grpc.aio.AioRpcError as exc:
            errors.append(f"{exc.code().name}: {exc.details()}")

    try:
        async with asyncio.timeout(args.timeout):
            await asyncio.gather(*(receive(i, call) for i, call in enumerate(calls)))
    except TimeoutError:
        errors.append("timed out waiting for signals")
    for call in calls:
        call.cancel()
    receipts = [
        list(zip(ids, times, strict=True))
        for ids, times in zip(received_ids, received_at, strict=True)
    ]
    report = json.dumps({"receipts": receipts, "errors": errors})
    await asyncio.to_thread(Path(args.out).write_text, report)
    for channel in channels:
        await channel.close()
    emit({"finished": len(calls)})


# --- orchestrator ---------------------------------------------------------------------


class Process:
    """A child role of this script, speaking JSON lines on stdout."""

    def __init__(self, role: str, extra: list[str], log_path: Path) -> None:
        self.log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--role", role, *extra],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env={**os.environ, "AIFX_LOG_LEVEL": "WARNING"},
        )
        self.log_path = log_path

    def record(self, key: str, timeout: float = 120.0) -> dict[str, Any]:
        """The next stdout record holding `key` (others are ignored)."""
        deadline = time.monotonic() + timeout
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"process exited:\n{self.log_path.read_text()[-3000:]}")
            record = json.loads(line)
            if key in record:
                return record
        raise TimeoutError(f"no {key!r} from {self.log_path.name}")

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def stop(self) -> None:
        from tests.infra import stop_process

        stop_process(self.process, grace=10)
        self.log.close()


class MemorySampler(threading.Thread):
    """The server's VmRSS every 50 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[float] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.05):
            self.samples.append(memory_mb(self.pid).get("VmRSS", 0.0))


def percentile(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q))


def orchestrate(args: argparse.Namespace) -> int:
    from common.migrations import upgrade
    from tests.infra import delete_redis_prefix, free_port

    workdir = Path(tempfile.mkdtemp(prefix="aifx-fanout-bench-"))
    prefix = f"aifx-bench-fanout-{uuid.uuid4().hex[:8]}:"
    port = free_port()
    total = args.warmup + args.signals
    bars = workdir / "bars.json"
    bars.write_text(json.dumps(real_bars(total)))
    settings = Settings.load(None, var_dir=workdir, database_url=args.database_url)
    upgrade("signal_svc", settings)
    cpus = sorted(os.sched_getaffinity(0))
    pin = args.pin and len(cpus) > 1
    server_cpus = str(cpus[0]) if pin else ""
    client_cpus = ",".join(str(c) for c in cpus[1:]) if pin else ""
    server = Process(
        "server",
        [
            "--port",
            str(port),
            "--var-dir",
            str(workdir),
            "--database-url",
            args.database_url,
            "--redis-url",
            args.redis_url,
            "--redis-prefix",
            prefix,
            "--subscriber-buffer",
            str(args.subscriber_buffer),
            "--bars",
            str(bars),
            "--cpus",
            server_cpus,
            *(["--server-timing"] if args.server_timing else []),
            *([] if args.gc_freeze else ["--no-gc-freeze"]),
            *(["--streams-only"] if args.streams_only else []),
        ],
        workdir / "server.log",
    )
    client_processes: list[Process] = []
    try:
        offline_bars = server.record("ready")["offline_bars"]
        pid = server.process.pid
        baseline = memory_mb(pid)["VmRSS"]
        shares = [
            args.subscribers // args.client_processes
            + (1 if i < args.subscribers % args.client_processes else 0)
            for i in range(args.client_processes)
        ]
        started = time.monotonic()
        for number, streams in enumerate(shares):
            client_processes.append(
                Process(
                    "clients",
                    [
                        "--target",
                        f"127.0.0.1:{port}",
                        "--streams",
                        str(streams),
                        "--streams-per-connection",
                        str(args.streams_per_connection),
                        "--expect",
                        str(total),
                        "--timeout",
                        str(total * args.interval / args.burst + 60),
                        "--out",
                        str(workdir / f"clients-{number}.json"),
                        "--cpus",
                        client_cpus,
                    ],
                    workdir / f"clients-{number}.log",
                )
            )
        for client in client_processes:
            client.record("ready", timeout=180)
        server.send("subscribers")
        subscribed = server.record("subscribers")["subscribers"]
        connect_seconds = time.monotonic() - started
        time.sleep(1.0)
        idle = memory_mb(pid)["VmRSS"]
        idle_parts = rss_parts(pid)

        sampler = MemorySampler(pid)
        sampler.start()
        cpu_before = cpu_seconds(pid)
        server.send(f"publish {total} {args.interval} {args.burst}")
        stored: dict[int, float] = {}
        publish_ms: list[float] = []
        for _ in range(total):
            record = server.record("id")
            stored[record["id"]] = record["stored"]
            publish_ms.append((record["published"] - record["stored"]) * 1000)
        done = server.record("done")
        handed, gc_full_ms = done["handed"], done["gc_full_ms"]
        for client in client_processes:
            client.record("finished", timeout=total * args.interval + 120)
        sampler.halt.set()
        sampler.join()
        server_cpu = cpu_seconds(pid) - cpu_before
        peak = memory_mb(pid)["VmHWM"]
    finally:
        for client in client_processes:
            client.stop()
        if server.process.poll() is None:
            server.send("quit")
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.process.wait(15)
        server.stop()
        if args.redis_url:
            asyncio.run(delete_redis_prefix(prefix, args.redis_url))

    measured = set(sorted(stored)[args.warmup :])
    latencies: list[float] = []
    errors: list[str] = []
    duplicates = lost = 0
    for number in range(len(client_processes)):
        result = json.loads((workdir / f"clients-{number}.json").read_text())
        errors += result["errors"]
        for receipts in result["receipts"]:
            ids = [signal_id for signal_id, _ in receipts]
            duplicates += len(ids) - len(set(ids))
            lost += len(measured - set(ids))
            latencies += [
                (at - stored[signal_id]) * 1000
                for signal_id, at in receipts
                if signal_id in measured
            ]
    shutil.rmtree(workdir, ignore_errors=True)  # kept (for its logs) when a step failed
    values = np.asarray(latencies)
    p50, p99 = percentile(values, 50), percentile(values, 99)
    serving_rss = max(sampler.samples or [idle])

    print(
        "server holds: "
        + (
            "only what serving the streams needs (--streams-only)"
            if args.streams_only
            else f"signal_svc's modules and its offline history ({offline_bars} bars)"
        )
    )
    print(
        f"subscribers: {subscribed} streams registered ({args.client_processes} client processes, "
        f"{args.streams_per_connection} stream(s) per connection) in {connect_seconds:.1f} s"
    )
    print(
        f"signals: {args.signals} measured (+{args.warmup} warm-up), {args.interval} s apart, "
        f"{args.burst} per tick; relay {'local + Redis' if args.redis_url else 'local only'}, "
        f"repository on {'PostgreSQL' if args.database_url else 'SQLite'}"
    )
    print(
        f"deliveries: {len(latencies)} measured, lost {lost}, duplicates {duplicates}, "
        f"stream errors {len(errors)}{' ' + errors[0] if errors else ''}"
    )
    print(
        f"stored -> received: p50 {p50:.1f} ms  p90 {percentile(values, 90):.1f} ms  "
        f"p99 {p99:.1f} ms  max {values.max():.1f} ms"
    )
    if handed:
        server_side = np.asarray(
            [
                (at - stored[int(key)]) * 1000
                for key, times in handed.items()
                if int(key) in measured
                for at in times
            ]
        )
        print(
            f"stored -> handed to gRPC by the server: p50 {percentile(server_side, 50):.1f} ms  "
            f"p99 {percentile(server_side, 99):.1f} ms  max {server_side.max():.1f} ms"
        )
    print(
        f"server full garbage collections while publishing: {len(gc_full_ms)}"
        + (f", longest {max(gc_full_ms):.0f} ms" if gc_full_ms else "")
        + (" (objects of start-up frozen)" if args.gc_freeze else "")
    )
    print(
        f"publish call (after store): p50 {np.percentile(publish_ms, 50):.2f} ms  "
        f"max {max(publish_ms):.2f} ms"
    )
    per_thousand = (idle - baseline) * 1000 / max(1, subscribed)
    print(
        f"server RSS: {baseline:.0f} MB before subscribers, {idle:.0f} MB ({idle_parts}) "
        f"with {subscribed} idle streams, max {serving_rss:.0f} MB while fanning out "
        f"(peak VmHWM {peak:.0f} MB); streams cost {per_thousand:.0f} MB per 1,000; "
        f"server CPU while publishing {server_cpu:.1f} s"
    )
    met_latency = p99 < TARGET_P99_MS
    met_memory = serving_rss < TARGET_RSS_MB
    print(
        f"\ntarget p99 < {TARGET_P99_MS:.0f} ms: {'met' if met_latency else 'MISSED'}; "
        f"target server RSS < {TARGET_RSS_MB:.0f} MB: {'met' if met_memory else 'MISSED'}"
    )
    ok = met_latency and met_memory and not lost and not duplicates and not errors
    return 0 if ok or not args.strict else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--role",
        choices=["orchestrator", "server", "clients"],
        default="orchestrator",
        help=argparse.SUPPRESS,
    )
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--signals", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument(
        "--interval", type=float, default=0.25, help="seconds between publish ticks"
    )
    parser.add_argument("--burst", type=int, default=1, help="signals stored+published per tick")
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--streams-per-connection", type=int, default=1)
    parser.add_argument("--subscriber-buffer", type=int, default=256)
    parser.add_argument("--database-url", default="", help="default: SQLite in a temp dir")
    parser.add_argument("--redis-url", default="", help="default: no Redis (in-process)")
    parser.add_argument(
        "--no-gc-freeze",
        dest="gc_freeze",
        action="store_false",
        help="do not gc.freeze() in the server after start-up",
    )
    parser.add_argument(
        "--server-timing",
        action="store_true",
        help="also time when the server hands each message to gRPC",
    )
    parser.add_argument(
        "--streams-only",
        action="store_true",
        help="server holds only what serving streams needs, not signal_svc's other modules "
        "and offline history",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    # server / clients
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--var-dir", default="", help=argparse.SUPPRESS)
    parser.add_argument("--redis-prefix", default="aifx-bench:", help=argparse.SUPPRESS)
    parser.add_argument("--target", default="", help=argparse.SUPPRESS)
    parser.add_argument("--streams", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--expect", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=120.0, help=argparse.SUPPRESS)
    parser.add_argument("--out", default="", help=argparse.SUPPRESS)
    parser.add_argument("--bars", default="", help=argparse.SUPPRESS)
    parser.add_argument("--cpus", default="", help=argparse.SUPPRESS)
    parser.add_argument(
        "--pin",
        action="store_true",
        help="server on CPU 0, clients on the other CPUs (as if on other hosts)",
    )
    args = parser.parse_args()
    if args.role == "server":
        bars = json.loads(Path(args.bars).read_text())
        asyncio.run(serve(args, bars))
        return 0
    if args.role == "clients":
        asyncio.run(clients(args))
        return 0
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())

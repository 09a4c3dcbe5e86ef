"""Replica scaling (issue 13): `make run` with one, then two replicas of each stateless
service, on this machine.

For each replica count the stack runs as a user runs it — `python -m stack`, supervisord
and every process it starts (tests/supervised_stack.py), AIFX_REPLICAS=N, on free ports
in a temporary var/, on a fresh PostgreSQL database (created, then dropped) and the local
Redis under a key prefix of its own (deleted afterwards), replaying EUR/USD 1h at
--replay-speed (3600: a bar closes every second once the replay is past the weekend).
Then, through Envoy:

1. GetSignal (`GET /api/v1/trading/signal/EURUSD?timeframe=TIMEFRAME_H1`, bearer token)
   with wrk, --connections connections for --duration s after a --warmup: req/s,
   p50/p99, errors, how the RPCs split across the signal_svc replicas (each replica's
   `aifx_grpc_requests_total`) and how busy the machine's cores were.
2. Socket.IO fan-out: --clients sockets of the real socket.io-client (bench/node/
   fanout.mjs, as bench/socketio_fanout.py runs it) subscribed to signals, then the next
   --signals signals stored: stored → received latency p50/p99, deliveries lost and
   doubled, and how the sockets split across the edge replicas
   (`aifx_edge_sockets_connected`).
3. The stack's memory: RSS and PSS summed over supervisord and every process under it,
   idle (after sign-up) and with the sockets connected. RSS counts shared library pages
   once per process; PSS shares them out, so it is the fairer total.

Asserts nothing: it prints the figures side by side. On a 2-core machine a second
replica adds processes that compete for the same two cores (with wrk, Node and
Envoy), so throughput cannot double and may drop; what replicas buy here is
availability, not capacity.

Run:  .venv/bin/python bench/replica_scaling.py [--replicas 1,2] [--duration 15]
          [--connections 32] [--clients 1000] [--signals 20] [--keep-workdir]
Needs PostgreSQL on 127.0.0.1:5432, Redis on 127.0.0.1:6379, wrk and Node.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import numpy as np
from getme_load import WRK_MISSING, WrkResult, http, parse_wrk, scrape_counter
from proc_stats import cpu_seconds, machine_busy_seconds
from report import table
from socketio_fanout import NodeClients, epoch_ms, node_ready, register

from tests.infra import (
    REDIS_URL,
    create_postgres_database,
    delete_redis_prefix,
    drop_postgres_database,
    stop_process,
)
from tests.supervised_stack import SupervisedStack

SIGNAL_PATH = "/api/v1/trading/signal/EURUSD?timeframe=TIMEFRAME_H1"
GETME_PATH = "/api/v1/auth/me"
GETSIGNAL_METHOD = "/aifx.signal.v1.SignalService/GetSignal"
SOCKETS_GAUGE = "aifx_edge_sockets_connected"
# Above this (% of a core), CPU used outside the stack and wrk skews the figures.
NOISY_CPU_PERCENT = 25.0


# --- the stack's processes ------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """`pid` and every process under it (from /proc/<pid>/task/*/children)."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                pending.extend(int(c) for c in (task / "children").read_text().split())
    return found


def _kb(path: Path, names: tuple[str, ...]) -> dict[str, float]:
    values = dict.fromkeys(names, 0.0)
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in values:
                values[name] = float(rest.split()[0])
    return values


@dataclass
class Memory:
    processes: int
    rss_mb: float
    pss_mb: float


def stack_memory(root: int) -> Memory:
    """RSS and PSS summed over `root` (python -m stack) and everything under it."""
    pids = descendants(root)
    rss = sum(_kb(Path(f"/proc/{p}/status"), ("VmRSS",))["VmRSS"] for p in pids)
    pss = sum(_kb(Path(f"/proc/{p}/smaps_rollup"), ("Pss",))["Pss"] for p in pids)
    return Memory(len(pids), rss / 1024, pss / 1024)


def process_name(pid: int) -> str:
    """The supervised program a process is (its AIFX_PROCESS_NAME), else its command."""
    with contextlib.suppress(OSError):
        for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
            if item.startswith(b"AIFX_PROCESS_NAME="):
                return item.split(b"=", 1)[1].decode()
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return str(pid)


def cpu_by_process(root: int, extra: dict[str, int]) -> dict[int, tuple[str, float]]:
    """Every process on the machine now: pid -> (name, CPU seconds used so far). Those
    under `root` are named by program (Envoy's launcher and Envoy are one), `extra`
    (name -> pid) by its name, any other "other: <command>" (so CPU outside the stack
    shows, too)."""
    ours = {pid: process_name(pid) for pid in descendants(root)}
    ours |= {pid: name for name, pid in extra.items()}
    found: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            name = ours.get(pid) or "other: " + (entry / "comm").read_text().strip()
        except OSError:
            continue
        found[pid] = (name, cpu_seconds(pid))
    return found


def cpu_percent(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], wall: float
) -> dict[str, float]:
    """CPU used between two `cpu_by_process` samples, by name (100 = a core). Deltas are
    per pid, so a process that exec'd in between (a new name) counts only its share."""
    used: dict[str, float] = {}
    for pid, (name, seconds) in after.items():
        delta = seconds - before[pid][1] if pid in before else seconds
        used[name] = used.get(name, 0.0) + 100 * max(0.0, delta) / wall
    return used


def scrape_gauge(metrics_url: str, name: str) -> float:
    """A Prometheus metric without labels (0 when absent)."""
    with urllib.request.urlopen(metrics_url, timeout=5) as response:  # noqa: S310 (loopback)
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


# --- one replica count ----------------------------------------------------------------


@dataclass
class Figures:
    replicas: int
    startup_s: float = 0.0
    getsignal: WrkResult | None = None
    getsignal_split: list[float] = field(default_factory=list)
    busy_percent: float = 0.0  # both cores, during the GetSignal run
    cpu_percent: dict[str, float] = field(default_factory=dict)  # per process, same run
    memory_idle: Memory | None = None
    memory_sockets: Memory | None = None
    connected: int = 0
    subscribed: int = 0
    socket_split: list[float] = field(default_factory=list)
    signals: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    lost: int = 0
    doubled: int = 0
    disconnects: int = 0


def wait(stack: SupervisedStack, url: str, token: str, what: str, within: float) -> None:
    stack.wait_until(lambda: http("GET", url, token=token)[0] == 200, what, within)


def getsignal_load(
    args: argparse.Namespace, stack: SupervisedStack, token: str, figures: Figures
) -> None:
    wrk = [
        args.wrk,
        "-t1",
        f"-c{args.connections}",
        "--latency",
        "--timeout",
        "10s",
        "-H",
        f"Authorization: Bearer {token}",
        stack.url + SIGNAL_PATH,
    ]
    metrics = [
        f"http://127.0.0.1:{stack.port('signal_metrics_port', n)}/metrics"
        for n in range(1, stack.replicas + 1)
    ]

    def served() -> list[float]:
        return [
            scrape_counter(url, "aifx_grpc_requests_total", {"method": GETSIGNAL_METHOD})
            for url in metrics
        ]

    def run(seconds: float, sample: bool = False) -> WrkResult:
        process = subprocess.Popen(
            [wrk[0], f"-d{seconds:g}s", *wrk[1:]],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        assert stack.process is not None
        root, extra = stack.process.pid, {"wrk": process.pid}
        try:
            if sample:  # per-process CPU, sampled before wrk exits (then it has no /proc)
                before, started = cpu_by_process(root, extra), time.monotonic()
                time.sleep(max(0.0, seconds - 0.5))
                after, wall = cpu_by_process(root, extra), time.monotonic() - started
                figures.cpu_percent = cpu_percent(before, after, wall)
            output, _ = process.communicate(timeout=seconds + 30)
        finally:
            stop_process(process)
        if process.returncode != 0:
            raise RuntimeError(f"wrk failed ({process.returncode}):\n{output}")
        return parse_wrk(output)

    if args.warmup > 0:
        run(args.warmup)
    before, busy_before, started = served(), machine_busy_seconds(), time.monotonic()
    figures.getsignal = run(args.duration, sample=True)
    wall = time.monotonic() - started
    figures.busy_percent = 100 * (machine_busy_seconds() - busy_before) / wall
    figures.getsignal_split = [b - a for a, b in zip(before, served(), strict=True)]


async def fanout(
    args: argparse.Namespace,
    stack: SupervisedStack,
    tokens: list[str],
    node: str,
    workdir: Path,
    figures: Figures,
) -> None:
    config, receipts_path = workdir / "clients.json", workdir / "receipts.json"
    config.write_text(
        json.dumps(
            {
                "url": stack.url,
                "tokens": tokens,
                "clients": args.clients,
                "connectBatch": 50,
                "deflate": True,
                "out": str(receipts_path),
            }
        )
    )
    clients = NodeClients(node, config)
    await clients.start()
    try:
        connected = await clients.until("connected", args.timeout)
        ready = await clients.until("ready", args.timeout)
        figures.connected, figures.subscribed = connected["connected"], ready["subscribed"]
        ready_at = float(ready["at"])
        assert stack.process is not None
        figures.memory_sockets = stack_memory(stack.process.pid)
        figures.socket_split = [
            scrape_gauge(
                f"http://127.0.0.1:{stack.port('edge_metrics_port', n)}/metrics", SOCKETS_GAUGE
            )
            for n in range(1, stack.replicas + 1)
        ]
        print(
            f"  {figures.connected} sockets connected in {connected['ms'] / 1000:.1f} s, "
            f"{figures.subscribed} subscribed; waiting for {args.signals} signals …",
            flush=True,
        )
        measured: list[str] = []
        deadline = time.monotonic() + args.timeout
        while len(measured) < args.signals and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                message = await clients.next(min(5.0, max(0.1, deadline - time.monotonic())))
                if message["event"] == "signal" and epoch_ms(message["timestamp"]) > ready_at:
                    measured.append(message["id"])
        await asyncio.sleep(args.grace)  # the last signal's slowest deliveries
        assert clients.process is not None and clients.process.stdin is not None
        clients.process.stdin.write(b"stop\n")
        await clients.process.stdin.drain()
        await clients.until("done", 60)
    finally:
        await clients.stop()
    result = json.loads(receipts_path.read_text())
    figures.signals = len(measured)
    figures.disconnects = int(result["counters"]["disconnects"])
    for signal_id in measured:
        entry = result["receipts"].get(signal_id, {"timestamp": "", "clients": {}})
        stamp = epoch_ms(entry["timestamp"])
        got: dict[str, list[float]] = entry["clients"]
        figures.latencies_ms += [float(t) - stamp for times in got.values() for t in times]
        figures.lost += sum(1 for c in range(args.clients) if str(c) not in got)
        figures.doubled += sum(len(times) - 1 for times in got.values())


async def sign_up(url: str, users: int) -> list[str]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        return await register(session, url, users)


def measure(args: argparse.Namespace, replicas: int, node: str, workdir: Path) -> Figures:
    figures = Figures(replicas)
    name, database_url = asyncio.run(create_postgres_database())
    prefix = f"aifx-bench-scaling-{uuid.uuid4().hex[:8]}:"
    try:
        started = time.monotonic()
        with SupervisedStack(
            workdir / "stack",
            replicas=replicas,
            database_url=database_url,
            redis_url=args.redis_url,
            redis_prefix=prefix,
            replay_speed=args.replay_speed,
            signal_pairs="EUR/USD",
            signal_timeframes="1h",
            bcrypt_rounds=4,
            log_level="WARNING",
        ) as stack:
            figures.startup_s = time.monotonic() - started
            print(f"  stack up in {figures.startup_s:.1f} s at {stack.url}", flush=True)
            tokens = asyncio.run(sign_up(stack.url, args.users))
            wait(stack, stack.url + GETME_PATH, tokens[0], "Envoy accepting the token", 60)
            wait(stack, stack.url + SIGNAL_PATH, tokens[0], "the first signal", 90)
            assert stack.process is not None
            figures.memory_idle = stack_memory(stack.process.pid)
            print(f"  GetSignal: wrk -c{args.connections} {args.duration:g} s …", flush=True)
            getsignal_load(args, stack, tokens[0], figures)
            asyncio.run(fanout(args, stack, tokens, node, workdir, figures))
    finally:
        asyncio.run(drop_postgres_database(name))
        asyncio.run(delete_redis_prefix(prefix, args.redis_url))
    return figures


# --- report ---------------------------------------------------------------------------


def report(args: argparse.Namespace, runs: list[Figures]) -> None:
    def each(render: Callable[[Figures], object]) -> list[str]:
        return [str(render(f)) for f in runs]

    def pct(values: list[float], q: float) -> str:
        return f"{np.percentile(values, q):.1f} ms" if values else "-"

    def split(values: list[float]) -> str:
        total = sum(values) or 1.0
        return " / ".join(f"{v:.0f} ({v / total:.0%})" for v in values)

    def gs(f: Figures) -> WrkResult:
        assert f.getsignal is not None
        return f.getsignal

    def mem(m: Memory | None) -> str:
        return f"{m.rss_mb:.0f} / {m.pss_mb:.0f} MB ({m.processes} proc.)" if m else "-"

    rows = [
        ["stack start (python -m stack → ready banner)", *each(lambda f: f"{f.startup_s:.1f} s")],
        ["GetSignal req/s", *each(lambda f: f"{gs(f).rps:,.0f}")],
        ["GetSignal p50 / p99", *each(lambda f: f"{gs(f).p50:.1f} / {gs(f).p99:.1f} ms")],
        ["GetSignal errors (non-2xx + socket)", *each(lambda f: gs(f).errors)],
        ["GetSignal split across signal_svc replicas", *each(lambda f: split(f.getsignal_split))],
        [
            "all cores busy during GetSignal (100% = a core)",
            *each(lambda f: f"{f.busy_percent:.0f}% of {100 * (os.cpu_count() or 1)}%"),
        ],
        ["sockets connected / subscribed", *each(lambda f: f"{f.connected} / {f.subscribed}")],
        ["sockets split across edge replicas", *each(lambda f: split(f.socket_split))],
        ["signals measured", *each(lambda f: f.signals)],
        ["fan-out stored → received p50", *each(lambda f: pct(f.latencies_ms, 50))],
        ["fan-out stored → received p99", *each(lambda f: pct(f.latencies_ms, 99))],
        ["fan-out max", *each(lambda f: pct(f.latencies_ms, 100))],
        ["deliveries lost / doubled", *each(lambda f: f"{f.lost} / {f.doubled}")],
        ["socket disconnects", *each(lambda f: f.disconnects)],
        ["stack RSS / PSS, idle", *each(lambda f: mem(f.memory_idle))],
        [f"stack RSS / PSS, {args.clients} sockets", *each(lambda f: mem(f.memory_sockets))],
    ]
    head = ["figure", *(f"{f.replicas} replica{'s' if f.replicas > 1 else ''}" for f in runs)]
    print()
    print(
        f"Replica scaling through Envoy, {os.cpu_count()} cores; GetSignal: wrk -t1 "
        f"-c{args.connections} {args.duration:g} s; fan-out: {args.clients} socket.io-client "
        f"sockets ({args.users} users), EUR/USD 1h replayed x{args.replay_speed:g}"
    )
    print(table(head, rows))
    for f in runs:
        others = sum(v for k, v in f.cpu_percent.items() if k.startswith("other: "))
        ours = sorted(
            ((k, v) for k, v in f.cpu_percent.items() if not k.startswith("other: ")),
            key=lambda item: -item[1],
        )
        print(
            f"CPU during GetSignal, {f.replicas} replica{'s' if f.replicas > 1 else ''} "
            "(100% = one core): "
            + ", ".join(f"{name} {value:.0f}%" for name, value in ours if value >= 1)
            + f"; every other process on the machine {others:.0f}%"
        )
        if others > NOISY_CPU_PERCENT:
            print(
                f"  warning: processes outside the stack used {others:.0f}% of a core: "
                "the figures above are skewed by other work on this machine"
            )
    print(
        f"Honest note: this machine has {os.cpu_count()} cores, shared by the stack, Envoy, "
        "wrk and the Node clients. A second replica of each service adds processes that "
        "compete for the same cores, so throughput cannot double and may drop, and the "
        "stack's memory grows by a process per service. What two replicas buy here is "
        "availability (one replica killed or restarting, the other serves), not capacity; "
        "capacity scales with replicas only when they get cores (or machines) of their own."
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--replicas", default="1,2", help="replica counts, in order")
    parser.add_argument("--duration", type=float, default=15.0, help="s of GetSignal load")
    parser.add_argument("--warmup", type=float, default=3.0, help="s of wrk before measuring")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--clients", type=int, default=1000, help="Socket.IO sockets")
    parser.add_argument("--users", type=int, default=50, help="traders whose tokens they share")
    parser.add_argument("--signals", type=int, default=20, help="signals measured")
    parser.add_argument("--replay-speed", type=float, default=3600.0, help="AIFX_REPLAY_SPEED")
    parser.add_argument("--redis-url", default=REDIS_URL)
    parser.add_argument("--grace", type=float, default=2.0, help="s to wait after the last")
    parser.add_argument("--timeout", type=float, default=120.0, help="s for each wait")
    parser.add_argument("--wrk", default=shutil.which("wrk") or "", help="path of wrk")
    parser.add_argument("--keep-workdir", action="store_true")
    args = parser.parse_args()
    if not args.wrk:
        raise SystemExit(WRK_MISSING)
    node = node_ready()
    signal.signal(signal.SIGTERM, _interrupt)
    began = time.monotonic()
    runs: list[Figures] = []
    workdir = Path(tempfile.mkdtemp(prefix="aifx-replica-scaling-"))
    try:
        for count in (int(n) for n in args.replicas.split(",")):
            print(f"AIFX_REPLICAS={count}:", flush=True)
            runs.append(measure(args, count, node, workdir / f"replicas-{count}"))
    except KeyboardInterrupt:
        print("interrupted: everything started was stopped", file=sys.stderr)
        return 130
    finally:
        if args.keep_workdir:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    report(args, runs)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"{stamp}; the whole benchmark took {time.monotonic() - began:.0f} s")
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())

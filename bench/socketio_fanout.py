"""Socket.IO fan-out benchmark: 1,000 socket.io-client sockets on the edge, through
Envoy, receiving the signals of a running stack.

The whole stack runs as `make run` starts it (tests/full_stack.py: every Procfile
process on free ports, in a temporary var/), replaying the bundled history at
--replay-speed (3600: an hour bar closes every second, the demo cadence) for the series
`make run` configures, or only --pairs / --timeframes. signal_svc stores a signal when a
replayed candle closes; its `timestamp` in the `trading:signal` event is its stored
create time (ms). --users traders sign up through REST (POST /api/v1/auth/register,
bcrypt at --bcrypt-rounds 4: signing up is setup, not what is measured; auth_svc limits
failed logins, not registrations); their access tokens are shared round-robin by
--clients sockets held by one Node process (bench/node/fanout.mjs: the real
socket.io-client, `forceNew`, WebSocket transport only), connected --connect-batch at a
time, each emitting `subscribe:signals` and waiting for its acknowledgement.

Once every socket is subscribed, the next --signals signals stored after that moment
are measured: latency from the signal's stored `timestamp` to each socket's receipt
(Date.now() in Node; the same machine clock, so a millisecond of rounding), and
deliveries lost or doubled (each socket must get each of them exactly once). The ids
are cross-checked against GET /api/v1/trading/signals (every signal stored in the
window must have been relayed). Also the edge's and Envoy's resident memory (VmRSS)
before the sockets and with them connected, and the CPU each process used while the
signals were relayed. Node and the stack share this machine's cores, so the latencies
include the clients' own time to receive 1,000 messages.

Targets (the old system's WebSocket bar): p99 under 100 ms; the edge under 150 MB with
1,000 sockets. `--py-spy PATH` (py-spy's binary, e.g. from `pip install --target
/tmp/pyspy py-spy`) records the edge while the signals are relayed and prints where its
time goes.

Run:  .venv/bin/python bench/socketio_fanout.py [--clients 1000] [--users 50]
          [--signals 40] [--replay-speed 3600] [--pairs EUR/USD --timeframes 1h]
          [--py-spy /tmp/pyspy/bin/py-spy] [--keep-workdir] [--strict]
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
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from proc_stats import cpu_seconds, memory_mb, rss_parts
from report import table

from common.grpc_client import GrpcClient
from common.settings import REPO_ROOT
from edge.clients import SignalEvents
from tests.full_stack import FullStack

TARGET_P99_MS = 100.0
TARGET_RSS_MB = 150.0
NODE_DIR = REPO_ROOT / "bench" / "node"
DRIVER = NODE_DIR / "fanout.mjs"
PASSWORD = "bench-password-1"  # throwaway accounts of a private stack


def epoch_ms(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000


def iso(ms: float) -> str:
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def tree_rss_mb(pid: int) -> float:
    """VmRSS of a process and its descendants, MB (Envoy's launcher execs it; this also
    counts anything it spawned)."""
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(OSError):
            total += memory_mb(current).get("VmRSS", 0.0)
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                pending.extend(int(c) for c in children)
    return total


def node_ready() -> str:
    """Node, with socket.io-client installed in bench/node (`npm ci` when missing)."""
    node = shutil.which("node")
    if not node:
        raise SystemExit("node is not on PATH (Node 18+ is needed for socket.io-client)")
    if not (NODE_DIR / "node_modules" / "socket.io-client" / "package.json").exists():
        print("installing socket.io-client: npm ci --prefix bench/node", flush=True)
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True)
    return node


async def register(session: aiohttp.ClientSession, url: str, users: int) -> list[str]:
    """`users` new traders' access tokens, signed up through REST, 8 at a time."""
    run = os.urandom(3).hex()
    gate = asyncio.Semaphore(8)

    async def one(number: int) -> str:
        body = {
            "email": f"fanout-{run}-{number}@bench.example",
            "username": f"fanout-{run}-{number}",
            "password": PASSWORD,
        }
        async with gate, session.post(f"{url}/api/v1/auth/register", json=body) as response:
            answer = await response.json(content_type=None)
            if response.status != 200:
                raise SystemExit(f"register failed: {response.status} {answer}")
            return str(answer["tokens"]["accessToken"])

    return list(await asyncio.gather(*(one(n) for n in range(users))))


async def stored_signals(
    session: aiohttp.ClientSession, url: str, token: str, since_ms: float
) -> list[dict[str, Any]]:
    """Every signal stored at or after `since_ms`, from GET /api/v1/trading/signals."""
    found: list[dict[str, Any]] = []
    page = ""
    while True:
        query = {"since": iso(since_ms), "pageSize": "500", **({"pageToken": page} if page else {})}
        async with session.get(
            f"{url}/api/v1/trading/signals",
            params=query,
            headers={"Authorization": f"Bearer {token}"},
        ) as response:
            answer = await response.json(content_type=None)
            if response.status != 200:
                raise RuntimeError(f"GET /api/v1/trading/signals: {response.status} {answer}")
        found += answer.get("signals", [])
        page = answer.get("nextPageToken", "")
        if not page:
            return found


class StreamObserver:
    """signal_svc's StreamAllSignals followed in this process, as the edge follows it:
    when each signal reaches a gRPC subscriber, to split the latency into signal_svc's
    part (stored → on the stream) and the edge's, Envoy's and Node's (→ sockets)."""

    def __init__(self, stack: FullStack) -> None:
        token = (stack.workdir / "var" / "service-token").read_text().strip()
        target = f"127.0.0.1:{stack.ports['signal_port']}"
        self._client = GrpcClient("signal_svc", target, service_token=token)
        self.arrived: dict[str, float] = {}  # id -> Unix ms
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        async for event in SignalEvents(self._client).after(None):
            self.arrived.setdefault(event["id"], time.time() * 1000)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self._client.close()


class NodeClients:
    """bench/node/fanout.mjs as a child process, read line by line."""

    def __init__(self, node: str, config: Path) -> None:
        self._args = [node, str(DRIVER), str(config)]
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *self._args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=NODE_DIR,
            start_new_session=True,
            limit=1 << 20,
        )

    async def next(self, within: float) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), within)
        if not line:
            raise SystemExit(f"the Node clients exited ({await self.process.wait()})")
        return dict(json.loads(line))

    async def until(self, event: str, within: float) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            message = await self.next(max(0.1, deadline - time.monotonic()))
            if message["event"] == event:
                return message
            if message["event"] in ("connect_error", "failed"):
                print(f"node: {message}", flush=True)

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            await self.process.wait()


class Profiler:
    """py-spy recording the edge, when asked for."""

    def __init__(self, py_spy: str, pid: int, output: Path) -> None:
        self._args = [py_spy, "record", "--pid", str(pid), "--format", "raw"]
        self._args += ["--rate", "250", "--output", str(output)]
        self.output = output
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            self._args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def summary(self, top: int = 14) -> str:
        """Where the edge's event loop was busy (its thread's samples not waiting in
        select), from py-spy's collapsed stacks: by function including what it called,
        and by the function on top of the stack."""
        if not self.output.exists():
            stderr = self.process.stderr if self.process is not None else None
            return f"py-spy wrote nothing: {stderr.read().decode()[:500] if stderr else ''}"
        inclusive: Counter[str] = Counter()
        leaf: Counter[str] = Counter()
        busy = 0
        for line in self.output.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if "run_forever" not in stack:
                continue  # another thread (gRPC's, the metrics server's)
            samples = int(count)
            frames = [_short(f) for f in stack.split(";")]
            if frames[-1].startswith(("select (", "_PollLikeSelector.select")):
                continue
            busy += samples
            leaf[frames[-1]] += samples
            for frame in set(frames):
                inclusive[frame] += samples
        if not busy:
            return "py-spy: no busy samples of the event loop"
        lines = [
            f"py-spy, the edge's event loop: {busy} samples at 250/s ({busy / 250:.1f} s busy; "
            "idle ones are not taken); shares of them:"
        ]
        outer = (
            "_run_module_as_main",
            "_run_code",
            "Runner.",
            "BaseEventLoop.",
            "Handle._run",
            "run (",
            "main (",
            "<module>",
            "serve (",
        )
        lines.append("  inclusive (the function and what it called):")
        lines += [
            f"    {n / busy:6.1%}  {frame}"
            for frame, n in inclusive.most_common(top + 12)
            if not frame.startswith(outer)
        ][:top]
        lines.append("  the edge's own code (inclusive):")
        lines += [
            f"    {n / busy:6.1%}  {frame}"
            for frame, n in inclusive.most_common()
            if "(edge/" in frame or "(common/" in frame
        ][:8]
        lines.append("  self (the function on top of the stack):")
        lines += [f"    {n / busy:6.1%}  {frame}" for frame, n in leaf.most_common(top)]
        return "\n".join(lines)


def _short(frame: str) -> str:
    """ "emit (socketio/async_manager.py:123)" without the site-packages prefix."""
    for marker in ("site-packages/", "lib/python3.11/", str(REPO_ROOT) + "/"):
        if marker in frame:
            name, _, rest = frame.partition(" (")
            return f"{name} ({rest.split(marker, 1)[1]}"
    return frame


def stack_settings(args: argparse.Namespace) -> dict[str, object]:
    """The AIFX_* settings of the benchmark's stack."""
    settings: dict[str, object] = {
        "replay_speed": args.replay_speed,
        "bcrypt_rounds": args.bcrypt_rounds,
        "log_level": args.log_level,
    }
    if args.pairs:
        settings["signal_pairs"] = args.pairs
    if args.timeframes:
        settings["signal_timeframes"] = args.timeframes
    return settings


async def measure(args: argparse.Namespace, stack: FullStack, workdir: Path, node: str) -> int:
    clients: NodeClients | None = None
    profiler: Profiler | None = None
    observer = StreamObserver(stack)
    observer.start()
    try:
        edge_pid, envoy_pid = stack.processes["edge"].pid, stack.processes["envoy"].pid
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            began = time.monotonic()
            tokens = await register(session, stack.url, args.users)
            print(
                f"{len(tokens)} traders signed up in {time.monotonic() - began:.1f} s",
                flush=True,
            )
            await asyncio.sleep(1.0)
            edge_idle = memory_mb(edge_pid)
            edge_idle_parts = rss_parts(edge_pid)
            envoy_idle = tree_rss_mb(envoy_pid)

            config = workdir / "clients.json"
            receipts_path = workdir / "receipts.json"
            config.write_text(
                json.dumps(
                    {
                        "url": stack.url,
                        "tokens": tokens,
                        "clients": args.clients,
                        "connectBatch": args.connect_batch,
                        "deflate": not args.no_deflate,
                        "out": str(receipts_path),
                    }
                )
            )
            clients = NodeClients(node, config)
            await clients.start()
            connected = await clients.until("connected", args.timeout)
            ready = await clients.until("ready", args.timeout)
            print(
                f"{connected['connected']} sockets connected in {connected['ms'] / 1000:.1f} s "
                f"({connected['failed']} failed; permessage-deflate "
                f"{'negotiated' if connected['deflate'] else 'off'}), "
                f"{ready['subscribed']} subscribed in {ready['ms'] / 1000:.1f} s",
                flush=True,
            )
            ready_at = float(ready["at"])
            load_before = os.getloadavg()[0]
            if args.py_spy:
                profiler = Profiler(args.py_spy, edge_pid, workdir / "edge.pyspy.txt")
                profiler.start()
            cpu_before = {
                name: cpu_seconds(process.pid) for name, process in stack.processes.items()
            }
            assert clients.process is not None
            cpu_before["node"] = cpu_seconds(clients.process.pid)
            wall_before = time.monotonic()
            edge_peak = 0.0

            # The next --signals signals stored after every socket subscribed.
            measured: list[dict[str, Any]] = []
            deadline = time.monotonic() + args.timeout
            while len(measured) < args.signals:
                left = deadline - time.monotonic()
                if left <= 0:
                    print(f"timed out with {len(measured)} signals", flush=True)
                    break
                try:
                    message = await clients.next(min(left, 5.0))
                except TimeoutError:
                    edge_peak = max(edge_peak, memory_mb(edge_pid).get("VmRSS", 0.0))
                    continue
                if message["event"] == "signal" and epoch_ms(message["timestamp"]) > ready_at:
                    measured.append(message)
                    edge_peak = max(edge_peak, memory_mb(edge_pid).get("VmRSS", 0.0))
            await asyncio.sleep(args.grace)  # the last signal's slowest deliveries
            wall = time.monotonic() - wall_before
            load_after = os.getloadavg()[0]
            cpu = {
                name: cpu_seconds(process.pid) - cpu_before[name]
                for name, process in stack.processes.items()
            }
            cpu["node"] = cpu_seconds(clients.process.pid) - cpu_before["node"]
            if profiler is not None:
                profiler.stop()
            edge_busy = memory_mb(edge_pid)
            edge_busy_parts = rss_parts(edge_pid)
            envoy_busy = tree_rss_mb(envoy_pid)
            assert clients.process.stdin is not None
            clients.process.stdin.write(b"stop\n")
            await clients.process.stdin.drain()
            await clients.until("done", 60)
            result = json.loads(receipts_path.read_text())
            cutoff = max(epoch_ms(m["timestamp"]) for m in measured) if measured else ready_at
            listed = await stored_signals(session, stack.url, tokens[0], ready_at)
    finally:
        if profiler is not None:
            profiler.stop()
        if clients is not None:
            await clients.stop()
        await observer.stop()

    # --- figures ---------------------------------------------------------------------
    receipts: dict[str, Any] = result["receipts"]
    ids = [m["id"] for m in measured]
    latencies: list[float] = []
    lost = doubled = 0
    per_signal: list[tuple[str, float, float, float]] = []
    for signal_id in ids:
        entry = receipts.get(signal_id, {"timestamp": "", "clients": {}})
        stamp = epoch_ms(entry["timestamp"])
        mine = [float(t) - stamp for times in entry["clients"].values() for t in times]
        latencies += mine
        got = entry["clients"]
        lost += sum(1 for c in range(args.clients) if str(c) not in got)
        doubled += sum(len(times) - 1 for times in got.values())
        if mine:
            per_signal.append((signal_id, min(mine), float(np.median(mine)), max(mine)))
    doubled_any = sum(
        len(times) - 1 for entry in receipts.values() for times in entry["clients"].values()
    )
    listed_in_window = {s["id"] for s in listed if ready_at < epoch_ms(s["createTime"]) <= cutoff}
    never_relayed = sorted(listed_in_window - set(receipts))
    not_listed = sorted(set(ids) - {s["id"] for s in listed})
    values = np.asarray(latencies) if latencies else np.asarray([float("nan")])

    def ms(q: float) -> str:
        return f"{np.percentile(values, q):.1f} ms"

    edge_busy_rss = edge_busy.get("VmRSS", 0.0)
    counters = result["counters"]
    series = f"{args.pairs or 'make run pairs'} x {args.timeframes or 'make run timeframes'}"
    span = (
        (epoch_ms(measured[-1]["timestamp"]) - epoch_ms(measured[0]["timestamp"])) / 1000
        if len(measured) > 1
        else 0.0
    )
    print()
    print(
        f"Socket.IO fan-out through Envoy: {args.clients} socket.io-client sockets (Node, "
        f"WebSocket) sharing {args.users} users' tokens; replay x{args.replay_speed:g} of "
        f"{series}; {len(measured)} signals over {span:.1f} s"
    )
    rows = [
        [
            "clients connected / subscribed",
            f"{connected['connected']} / {result['subscribed']}",
            str(args.clients),
        ],
        ["signals measured (stored after all subscribed)", str(len(measured)), str(args.signals)],
        ["deliveries", str(len(latencies)), str(args.clients * len(measured))],
        ["latency stored → received: p50", ms(50), ""],
        ["  p90", ms(90), ""],
        ["  p99", ms(99), f"< {TARGET_P99_MS:.0f} ms"],
        ["  max", ms(100), ""],
        ["lost (socket x signal never received)", str(lost), "0"],
        ["doubled (measured signals)", str(doubled), "0"],
        ["doubled (any signal seen)", str(doubled_any), "0"],
        ["stored in window, relayed to nobody (REST)", str(len(never_relayed)), "0"],
        ["relayed but not listed by REST", str(len(not_listed)), "0"],
        ["permessage-deflate negotiated", "yes" if connected["deflate"] else "no", ""],
        [
            "disconnects / error events / connect errors",
            f"{counters['disconnects']} / {counters['errors']} / {counters['connectErrors']}",
            "0",
        ],
        ["edge VmRSS: no sockets", f"{edge_idle.get('VmRSS', 0):.0f} MB ({edge_idle_parts})", ""],
        [
            f"edge VmRSS: {args.clients} sockets",
            f"{edge_busy_rss:.0f} MB ({edge_busy_parts})",
            f"< {TARGET_RSS_MB:.0f} MB",
        ],
        [
            "edge VmRSS peak sampled / VmHWM",
            f"{max(edge_peak, edge_busy_rss):.0f} / {edge_busy.get('VmHWM', 0):.0f} MB",
            "",
        ],
        ["Envoy VmRSS: no sockets / with them", f"{envoy_idle:.0f} / {envoy_busy:.0f} MB", ""],
    ]
    print(table(["figure", "value", "target"], rows))
    busiest = sorted(cpu.items(), key=lambda item: -item[1])
    print(
        f"CPU while relaying ({wall:.1f} s wall, {os.cpu_count()} cores): "
        + ", ".join(f"{name} {seconds / wall:.0%}" for name, seconds in busiest if seconds > 0.05)
    )
    print(
        f"machine load average (1 min) before / after the signals: {load_before:.1f} / "
        f"{load_after:.1f} (the stack and Node alone keep it near 1; more means other work "
        "shared the cores)"
    )
    if per_signal:
        worst = sorted(per_signal, key=lambda s: -s[3])[:5]
        print(
            "slowest signals (first / median / last socket): "
            + "; ".join(f"{a:.0f}/{b:.0f}/{c:.0f} ms" for _, a, b, c in worst)
        )
        firsts = np.asarray([s[1] for s in per_signal])
        spreads = np.asarray([s[3] - s[1] for s in per_signal])
        print(
            f"per signal: stored → first socket median {np.median(firsts):.1f} ms; "
            f"first → last socket median {np.median(spreads):.1f} ms, "
            f"max {spreads.max():.1f} ms"
        )
    on_stream = [
        (observer.arrived[i] - epoch_ms(receipts[i]["timestamp"]), s)
        for i, s in {s[0]: s for s in per_signal}.items()
        if i in observer.arrived
    ]
    if on_stream:
        stream_ms = np.asarray([a for a, _ in on_stream])
        first_ms = np.asarray([s[1] - a for a, s in on_stream])
        last_ms = np.asarray([s[3] - a for a, s in on_stream])
        print(
            "where the time goes, per signal (median / max): stored → on signal_svc's "
            f"StreamAllSignals (a gRPC follower like the edge) {np.median(stream_ms):.1f} / "
            f"{stream_ms.max():.1f} ms; on the stream → first socket "
            f"{np.median(first_ms):.1f} / {first_ms.max():.1f} ms; → last socket "
            f"{np.median(last_ms):.1f} / {last_ms.max():.1f} ms"
        )
    if never_relayed or not_listed:
        print(f"never relayed: {never_relayed[:5]}; not listed: {not_listed[:5]}")
    if profiler is not None:
        print(profiler.summary())
    met = (
        len(measured) == args.signals
        and np.percentile(values, 99) < TARGET_P99_MS
        and edge_busy_rss < TARGET_RSS_MB
        and lost == doubled == len(never_relayed) == 0
    )
    print(f"targets: {'met' if met else 'MISSED'}")
    return 0 if met or not args.strict else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--clients", type=int, default=1000, help="sockets in one Node process")
    parser.add_argument("--users", type=int, default=50, help="traders whose tokens they share")
    parser.add_argument("--signals", type=int, default=40, help="signals measured")
    parser.add_argument(
        "--replay-speed", type=float, default=3600.0, help="AIFX_REPLAY_SPEED (market s/real s)"
    )
    parser.add_argument("--pairs", default="", help="AIFX_SIGNAL_PAIRS (default: make run's)")
    parser.add_argument(
        "--timeframes", default="", help="AIFX_SIGNAL_TIMEFRAMES (default: make run's)"
    )
    parser.add_argument("--connect-batch", type=int, default=50, help="sockets connecting at once")
    parser.add_argument(
        "--no-deflate",
        action="store_true",
        help="clients do not offer permessage-deflate (browsers always do)",
    )
    parser.add_argument("--bcrypt-rounds", type=int, default=4)
    parser.add_argument("--log-level", default="INFO", help="AIFX_LOG_LEVEL of the stack")
    parser.add_argument("--grace", type=float, default=3.0, help="s to wait after the last")
    parser.add_argument("--timeout", type=float, default=300.0, help="s for each phase")
    parser.add_argument("--py-spy", default="", help="py-spy binary: profile the edge")
    parser.add_argument("--keep-workdir", action="store_true")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    node = node_ready()
    signal.signal(signal.SIGTERM, _interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="aifx-socketio-fanout-"))
    try:
        started = time.monotonic()
        # Stopped on the way out whatever happens (Ctrl-C and SIGTERM included).
        with FullStack(workdir / "stack", **stack_settings(args)) as stack:
            print(f"stack up in {time.monotonic() - started:.1f} s at {stack.url}", flush=True)
            return asyncio.run(measure(args, stack, workdir, node))
    except KeyboardInterrupt:
        print("interrupted: everything started was stopped", file=sys.stderr)
        return 130
    finally:
        if args.keep_workdir:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())

"""A day in an hour (issue 14): the whole stack under steady mixed load for --minutes,
replaying the real EUR/USD history at --replay-speed market seconds per real second
(3600 by default: 30 minutes cover 75 days of market time), with nothing lost.

The stack runs as a user runs it — `python -m stack` (supervisord and every process,
tests/supervised_stack.py), the notifier included, pointed at the Discord stand-in
(tests/discord_standin.py, in this process) — on the embedded defaults (SQLite,
in-process caches) in a temporary var/. The load, all through Envoy or the edge:

- REST reads at --rest-rate requests a second, round-robin over GetSignal, GetMe,
  ListPositions, ListSignals and GetPerformance, as one trader;
- --grpc gRPC subscribers to SubscribeSignals (through Envoy, bearer token) and
  --sockets Socket.IO subscribers to `subscribe:signals` (python-socketio, websocket);
- a position opened every --position-seconds with stop-loss and take-profit 0.1 % away
  (the watcher closes it within market hours), its owner's socket subscribed to
  `subscribe:notifications`;
- --traders Discord users linked through `/link` with EUR/USD 1h signal DMs on.

Sampled every --sample-seconds: each process's PSS (proportional set size: shared
library pages shared out, so the sum is the stack's real footprint), the REST p99 and
errors of the last interval. Printed at the end: the samples, each process's memory
growth from the end of warm-up (the first --warmup-fraction of the run) to the end
(target under 5 %), the total against the old system's 500 MB bar, REST errors (target
0), and signals, position notifications and DMs lost or doubled (target 0) — counted
against the stored signals and position events (the SQLite database) after a drain.
With --plot PATH (needs bench/requirements.txt) memory, p99 and errors over time go to
a PNG; --json PATH writes every figure.

Run:  .venv/bin/python bench/soak.py [--minutes 30] [--plot docs/soak.png]
      make soak   (30 minutes, with the plot)
Asserts nothing itself; tests/bench/test_soak_short.py runs 2 minutes and asserts the
zeros.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import socketio
from replica_scaling import descendants, process_name
from report import table

from aifx.signal.v1 import signal_pb2, signal_pb2_grpc
from tests.discord_standin import TOKEN, DiscordStandin, running_standin_server
from tests.envoy import PASSWORD
from tests.notifier_e2e.harness import link_through_rest
from tests.supervised_stack import SupervisedStack

OLD_SYSTEM_MB = 500.0
GROWTH_TARGET_PERCENT = 5.0
DRAIN_SECONDS = 90.0
SIGNAL_FOOTER = re.compile(r"AIFX signal (\d+)")
DM_PREFERENCES = {
    "pairs": ["EUR/USD"],
    "timeframes": ["1h"],
    "minConfidence": 0,
    "notifyDiscord": True,
}
READS = [
    ("GetSignal", "/api/v1/trading/signal/EURUSD", {"timeframe": "1h"}),
    ("GetMe", "/api/v1/auth/me", {}),
    ("ListPositions", "/api/v1/positions", {}),
    ("ListSignals", "/api/v1/trading/signals", {"pageSize": "20"}),
    ("GetPerformance", "/api/v1/positions/performance", {}),
]


@dataclass
class Sample:
    at_s: float
    pss_mb: dict[str, float]
    requests: int
    errors: int
    p99_ms: float


@dataclass
class Outcome:
    """What a run measured (--json writes it)."""

    minutes: float
    replay_speed: float
    samples: list[Sample] = field(default_factory=list)
    growth_percent: dict[str, float] = field(default_factory=dict)
    total_pss_mb: float = 0.0
    rest_requests: int = 0
    rest_errors: int = 0
    rest_error_kinds: dict[str, int] = field(default_factory=dict)
    signals_stored: int = 0
    signal_streams: dict[str, dict[str, int]] = field(default_factory=dict)
    positions_opened: int = 0
    notifications: dict[str, int] = field(default_factory=dict)
    dms: dict[str, int] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        """Zero errors, zero lost, zero doubled."""
        counts = [self.rest_errors, self.notifications["lost"], self.notifications["doubled"]]
        counts += [self.dms["lost"], self.dms["doubled"]]
        counts += [s["lost"] + s["doubled"] for s in self.signal_streams.values()]
        return not any(counts)


# --- the load ---------------------------------------------------------------------------


class RestReader:
    """Reads at a steady rate; latencies and errors per sampling interval."""

    def __init__(self, http: httpx.AsyncClient, token: str, rate: float) -> None:
        self.http, self.rate = http, rate
        self.headers = {"authorization": f"Bearer {token}"}
        self.latencies: list[float] = []
        self.errors = 0
        self.total = self.total_errors = 0
        self.kinds: Counter[str] = Counter()

    def interval(self) -> tuple[int, int, float]:
        """(requests, errors, p99 ms) since the last call."""
        latencies, errors = self.latencies, self.errors
        self.latencies, self.errors = [], 0
        p99 = statistics.quantiles(latencies, n=100)[98] if len(latencies) >= 2 else 0.0
        return len(latencies), errors, p99 * 1000

    async def run(self) -> None:
        period, started, n = 1.0 / self.rate, time.monotonic(), 0
        while True:
            name, path, params = READS[n % len(READS)]
            begun = time.monotonic()
            try:
                response = await self.http.get(path, params=params, headers=self.headers)
                failed = "" if response.status_code == 200 else f"{name} {response.status_code}"
            except httpx.HTTPError as exc:
                failed = f"{name} {type(exc).__name__}"
            self.latencies.append(time.monotonic() - begun)
            self.total += 1
            if failed:
                self.errors += 1
                self.total_errors += 1
                self.kinds[failed] += 1
            n += 1
            await asyncio.sleep(max(0.0, started + n * period - time.monotonic()))


class GrpcSubscriber:
    """SubscribeSignals through Envoy; resumes after its last id if the stream breaks."""

    def __init__(self, target: str, token: str) -> None:
        self.target, self.metadata = target, (("authorization", f"Bearer {token}"),)
        self.ids: list[int] = []
        self.breaks = 0

    async def run(self) -> None:
        async with grpc.aio.insecure_channel(self.target) as channel:
            stub = signal_pb2_grpc.SignalServiceStub(channel)
            while True:
                request = signal_pb2.SubscribeSignalsRequest(
                    resume_after_id=str(self.ids[-1]) if self.ids else ""
                )
                try:
                    async for message in stub.SubscribeSignals(request, metadata=self.metadata):
                        if message.HasField("signal"):
                            self.ids.append(int(message.signal.id))
                except grpc.aio.AioRpcError:
                    self.breaks += 1
                    await asyncio.sleep(1)


class SocketSubscriber:
    """A Socket.IO client through Envoy, recording signal ids or notification ids."""

    def __init__(self) -> None:
        self.io = socketio.AsyncClient(reconnection=False)
        self.signal_ids: list[int] = []
        self.notifications: list[tuple[int, str]] = []
        self.disconnects = 0
        self.io.on("trading:signal", lambda s: self.signal_ids.append(int(s["id"])))
        self.io.on("notification", lambda n: self.notifications.append((int(n["id"]), n["type"])))
        self.io.on("disconnect", self._gone)

    def _gone(self, *_: Any) -> None:
        self.disconnects += 1

    async def start(self, url: str, token: str, event: str) -> None:
        await self.io.connect(url, auth={"token": token}, transports=["websocket"])
        await self.io.call(event)


async def register(http: httpx.AsyncClient, name: str) -> tuple[str, str]:
    """A new user's (access token, user id)."""
    tag = f"{name}-{time.time_ns() % 10**9}"
    body = {"email": f"{tag}@soak.example", "username": tag, "password": PASSWORD}
    response = await http.post("/api/v1/auth/register", json=body)
    response.raise_for_status()
    answer = response.json()
    return answer["tokens"]["accessToken"], answer["user"]["id"]


async def link_trader(http: httpx.AsyncClient, standin: DiscordStandin, number: int) -> str:
    """A trader linked through `/link` wanting every EUR/USD 1h signal by DM: their id."""
    discord_id = str(330_000_000_000_000_000 + number)
    await link_through_rest(http, standin, discord_id, DM_PREFERENCES)
    return discord_id


async def trade(http: httpx.AsyncClient, token: str, every: float, opened: list[str]) -> None:
    """A position every `every` seconds, levels 0.1 % either side of the price."""
    headers = {"authorization": f"Bearer {token}"}
    side = 0
    while True:
        price = await http.get("/api/v1/market/price/EURUSD", headers=headers)
        if price.status_code == 200:
            mid = float(price.json()["price"]["price"])
            buy = side % 2 == 0
            stop, take = (mid * 0.999, mid * 1.001) if buy else (mid * 1.001, mid * 0.999)
            body = {
                "pair": "EURUSD",
                "side": "TRADE_ACTION_BUY" if buy else "TRADE_ACTION_SELL",
                "lotSize": "0.10",
                "stopLoss": f"{stop:.5f}",
                "takeProfit": f"{take:.5f}",
            }
            response = await http.post("/api/v1/positions", json=body, headers=headers)
            if response.status_code == 200:
                opened.append(response.json()["position"]["id"])
            side += 1
        await asyncio.sleep(every)


# --- measuring ----------------------------------------------------------------------------


def pss_by_process(root: int) -> dict[str, float]:
    """PSS (MB) of every supervised process by program name (supervisord as "supervisord";
    Envoy's launcher counted with Envoy)."""
    found: dict[str, float] = {}
    for pid in descendants(root):
        name = process_name(pid)
        name = "supervisord" if pid == root or "supervisord" in name else name
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    found[name] = found.get(name, 0.0) + int(line.split()[1]) / 1024
    return found


def lost_and_doubled(received: list[int], expected: list[int]) -> dict[str, int]:
    counts = Counter(received)
    return {
        "received": len(received),
        "expected": len(expected),
        "lost": len(set(expected) - set(received)),
        "doubled": sum(n - 1 for n in counts.values() if n > 1),
    }


def stored(database: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        db.execute("PRAGMA busy_timeout=10000")
        return list(db.execute(sql, args))


def growth(samples: list[Sample], warmup_fraction: float) -> dict[str, float]:
    """Each process's PSS change from the end of warm-up to the end, in %: the mean of
    the samples in the interval after warm-up against the mean of the last interval."""
    if len(samples) < 4:
        return {}
    start = max(1, int(len(samples) * warmup_fraction))
    window = max(1, len(samples) // 10)
    early, late = samples[start : start + window], samples[-window:]
    result = {}
    for name in samples[-1].pss_mb:
        before = statistics.mean(s.pss_mb.get(name, 0.0) for s in early)
        after = statistics.mean(s.pss_mb.get(name, 0.0) for s in late)
        if before > 0:
            result[name] = 100 * (after - before) / before
    return result


async def wait_for(check: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.5)
    return bool(check())


# --- the run ------------------------------------------------------------------------------


async def soak(args: argparse.Namespace, workdir: Path) -> Outcome:
    outcome = Outcome(args.minutes, args.replay_speed)
    standin = DiscordStandin()
    standin.message_limit = None  # an hour bar a second is owed a DM a second per trader
    async with running_standin_server(standin):
        stack = SupervisedStack(
            workdir,
            replay_speed=args.replay_speed,
            bcrypt_rounds=4,
            discord_token=TOKEN,
            discord_api_base=standin.api_base,
            registration_limit_per_address="100000/hour",
            compact=args.compact,
        )
        print(f"starting the stack in {workdir} ...", flush=True)
        await asyncio.to_thread(stack.__enter__)
        try:
            await run_load(args, stack, standin, outcome)
        finally:
            await asyncio.to_thread(stack.__exit__, None, None, None)
    return outcome


async def run_load(
    args: argparse.Namespace, stack: SupervisedStack, standin: DiscordStandin, outcome: Outcome
) -> None:
    database = stack.var_dir / "aifx.db"
    envoy = stack.url.removeprefix("http://")
    async with httpx.AsyncClient(base_url=stack.url, timeout=15) as http:
        reader_token, _ = await register(http, "reader")
        headers = {"authorization": f"Bearer {reader_token}"}

        async def signal_ready() -> bool:
            return (await http.get(READS[0][1], params=READS[0][2], headers=headers)).is_success

        deadline = time.monotonic() + 120
        while not await signal_ready():
            if time.monotonic() > deadline:
                raise SystemExit(f"no signal within 120 s\n{stack.log()}")
            await asyncio.sleep(0.5)
        await standin.wait_until(lambda: bool(standin.commands), 60.0, "the bot's commands")
        traders = [await link_trader(http, standin, n) for n in range(args.traders)]
        trader_token, trader_id = await register(http, "trader")

        grpc_subs = [GrpcSubscriber(envoy, reader_token) for _ in range(args.grpc)]
        socket_subs = [SocketSubscriber() for _ in range(args.sockets)]
        for sub in socket_subs:
            await sub.start(stack.url, reader_token, "subscribe:signals")
        owner = SocketSubscriber()
        await owner.start(stack.url, trader_token, "subscribe:notifications")
        first_id = stored(database, "SELECT max(id) FROM signal_signals")[0][0] or 0
        reader = RestReader(http, reader_token, args.rest_rate)
        opened: list[str] = []
        tasks = [
            asyncio.create_task(reader.run()),
            asyncio.create_task(trade(http, trader_token, args.position_seconds, opened)),
            *(asyncio.create_task(sub.run()) for sub in grpc_subs),
        ]
        root = stack.process.pid if stack.process else 0
        started = time.monotonic()
        end = started + args.minutes * 60
        print(f"load running for {args.minutes:g} min ...", flush=True)
        try:
            while time.monotonic() < end:
                await asyncio.sleep(min(args.sample_seconds, max(0.0, end - time.monotonic())))
                requests, errors, p99 = reader.interval()
                sample = Sample(
                    round(time.monotonic() - started, 1),
                    pss_by_process(root),
                    requests,
                    errors,
                    p99,
                )
                outcome.samples.append(sample)
                print(
                    f"  {sample.at_s:7.0f} s  PSS {sum(sample.pss_mb.values()):6.0f} MB  "
                    f"p99 {p99:6.1f} ms  errors {errors}",
                    flush=True,
                )
                for task in tasks:
                    if task.done():
                        task.result()  # a load task that died is a bug of the bench
        finally:
            for task in tasks[:2]:
                task.cancel()
        # Drain: every stream catches up to the last stored signal, DMs and notifications
        # to what is owed.
        last_id = stored(database, "SELECT max(id) FROM signal_signals")[0][0]
        signals = [
            r[0]
            for r in stored(
                database,
                "SELECT id FROM signal_signals WHERE id > ? AND id <= ? ORDER BY id",
                first_id,
                last_id,
            )
        ]
        dm_series = [
            r[0]
            for r in stored(
                database,
                "SELECT id FROM signal_signals WHERE id > ? AND id <= ? AND pair = 'EUR/USD'"
                " AND timeframe = '1h' ORDER BY id",
                first_id,
                last_id,
            )
        ]

        def caught_up() -> bool:
            streams = [s.ids for s in grpc_subs] + [s.signal_ids for s in socket_subs]
            dms_done = all(set(dm_series) <= set(dm_ids(standin, trader)) for trader in traders)
            return all(ids and ids[-1] >= last_id for ids in streams) and dms_done

        await wait_for(caught_up, DRAIN_SECONDS)
        for task in tasks[2:]:
            task.cancel()
        events = stored(
            database,
            "SELECT id, type FROM position_events WHERE user_id = ? ORDER BY id",
            trader_id,
        )
        await wait_for(lambda: len(owner.notifications) >= len(events), 30)
        for sub in [*socket_subs, owner]:
            await sub.io.disconnect()

    outcome.rest_requests, outcome.rest_errors = reader.total, reader.total_errors
    outcome.rest_error_kinds = dict(reader.kinds)
    outcome.signals_stored = len(signals)
    for n, sub in enumerate(grpc_subs):
        window = [i for i in sub.ids if first_id < i <= last_id]
        outcome.signal_streams[f"grpc {n + 1}"] = lost_and_doubled(window, signals)
    for n, sock in enumerate(socket_subs):
        window = [i for i in sock.signal_ids if first_id < i <= last_id]
        outcome.signal_streams[f"socket {n + 1}"] = lost_and_doubled(window, signals)
    outcome.positions_opened = len(opened)
    outcome.notifications = lost_and_doubled(
        [i for i, _ in owner.notifications], [int(e[0]) for e in events]
    )
    per_trader = [
        lost_and_doubled([i for i in dm_ids(standin, t) if first_id < i <= last_id], dm_series)
        for t in traders
    ]
    keys = ("received", "expected", "lost", "doubled")
    outcome.dms = {key: sum(counts[key] for counts in per_trader) for key in keys}
    outcome.growth_percent = growth(outcome.samples, args.warmup_fraction)
    outcome.total_pss_mb = max(sum(s.pss_mb.values()) for s in outcome.samples)


def dm_ids(standin: DiscordStandin, discord_id: str) -> list[int]:
    """The signal ids of the DMs a trader received (one per message)."""
    found = []
    for message in standin.dms_to(discord_id):
        for embed in message.get("embeds", []):
            match = SIGNAL_FOOTER.search(embed.get("footer", {}).get("text", ""))
            if match:
                found.append(int(match.group(1)))
    return found


# --- report -------------------------------------------------------------------------------


def report(outcome: Outcome) -> str:
    names = sorted(outcome.samples[-1].pss_mb) if outcome.samples else []
    step = max(1, len(outcome.samples) // 12)
    rows = [
        [
            f"{s.at_s / 60:.1f}",
            *(f"{s.pss_mb.get(n, 0):.0f}" for n in names),
            f"{sum(s.pss_mb.values()):.0f}",
            f"{s.p99_ms:.1f}",
            str(s.errors),
        ]
        for s in outcome.samples[::step]
    ]
    lines = [
        "memory (PSS, MB), REST p99 and errors over the run:",
        table(["min", *names, "total", "p99 ms", "errors"], rows),
        "",
        "growth after warm-up (target < 5 %): "
        + ", ".join(f"{n} {g:+.1f} %" for n, g in sorted(outcome.growth_percent.items())),
        f"stack total (max of samples): {outcome.total_pss_mb:.0f} MB PSS "
        f"(the old system's bar: {OLD_SYSTEM_MB:.0f} MB)",
        f"REST: {outcome.rest_requests} requests, {outcome.rest_errors} errors "
        f"{outcome.rest_error_kinds or ''}",
        f"signals stored during the run: {outcome.signals_stored}",
    ]
    for name, counts in outcome.signal_streams.items():
        lines.append(f"  {name}: {counts}")
    lines.append(
        f"positions opened: {outcome.positions_opened}; notifications {outcome.notifications}"
    )
    lines.append(f"Discord DMs: {outcome.dms}")
    lines.append("CLEAN: zero errors, lost and doubled" if outcome.clean else "NOT CLEAN")
    return "\n".join(lines)


def plot(outcome: Outcome, path: Path) -> None:
    """Memory per process, p99 and errors over time, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [s.at_s / 60 for s in outcome.samples]
    figure, (memory, latency) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for name in sorted(outcome.samples[-1].pss_mb):
        memory.plot(minutes, [s.pss_mb.get(name, 0) for s in outcome.samples], label=name)
    memory.set_ylabel("PSS (MB)")
    memory.set_title(
        f"AIFX soak: {outcome.minutes:g} min at replay x{outcome.replay_speed:g}; "
        f"total {outcome.total_pss_mb:.0f} MB"
    )
    memory.legend(fontsize=8, ncol=3)
    latency.plot(minutes, [s.p99_ms for s in outcome.samples], label="REST p99 (ms)")
    errors = latency.twinx()
    counts = [s.errors for s in outcome.samples]
    errors.bar(minutes, counts, width=0.1, color="red")
    errors.set_ylim(0, max(1, *counts))
    errors.set_ylabel("REST errors per interval", color="red")
    latency.set_ylabel("p99 (ms)")
    latency.set_xlabel("minutes")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> Outcome:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--replay-speed", type=float, default=3600.0)
    parser.add_argument("--rest-rate", type=float, default=20.0, help="REST reads per second")
    parser.add_argument("--grpc", type=int, default=2, help="gRPC signal subscribers")
    parser.add_argument("--sockets", type=int, default=5, help="Socket.IO signal subscribers")
    parser.add_argument("--traders", type=int, default=3, help="Discord traders DMed")
    parser.add_argument("--position-seconds", type=float, default=3.0)
    parser.add_argument("--sample-seconds", type=float, default=15.0)
    parser.add_argument("--warmup-fraction", type=float, default=0.2)
    parser.add_argument(
        "--compact", action="store_true", help="AIFX_COMPACT: the core services in one process"
    )
    parser.add_argument("--plot", type=Path, help="write the plot here (PNG)")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="aifx-soak-") as tmp:
        outcome = asyncio.run(soak(args, Path(tmp)))
    print(report(outcome))
    if args.json:
        args.json.write_text(json.dumps(asdict(outcome), indent=2))
    if args.plot:
        plot(outcome, args.plot)
        print(f"plot: {args.plot}")
    return outcome


if __name__ == "__main__":
    sys.exit(0 if main().clean else 1)

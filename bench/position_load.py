"""Benchmarks of position_svc (issue 5, section 5). Prints its figures; asserts nothing.

Part 1, tick evaluation: N open positions (10,000 by default) on EUR/USD, each entered
at the real close of one of the 24 bundled hour bars before the tick's bar, BUY or SELL,
with a stop-loss and a take-profit spread at random distances so that the tick closes a
realistic share of them (--close-share, 3% by default; positions whose levels the
previous bar's close already crossed are drawn again, as they would be closed by now).
They are stored in position_svc's tables and loaded into a `position_svc.watcher.Watcher`
over its repository, and one real bar's tick (its close, high and low) is timed through
`watcher.on_tick(tick)` end to end: evaluating every position of the pair AND the
compare-and-set close of those hit, with their events, in one transaction. Repeated over
--ticks bars spread over the history, the tables refilled and the watcher reloaded
between runs (one unrecorded warm-up run first). Also timed: a tick inside every
position's levels (evaluation only, no write). Target: < 200 ms per tick.

Part 2, OpenPosition throughput: position_svc as a subprocess (`python -m position_svc`,
or --in-process), auth_svc in this process for real access tokens, and a stand-in for
signal_svc's GetPriceInternal answering a real bundled close (tests/position/
price_standin.py); --clients concurrent gRPC clients, each a user of its own with an
access token, call OpenPosition back to back with a fresh idempotency key and an
explicit entry_price for --seconds; prints opens/s and the latency percentiles.

Each part runs on SQLite (a temporary file, the embedded default) or, with --postgres,
on a database it creates on the local PostgreSQL and drops afterwards (part 2 then also
uses the local Redis for the revocation list, under a key prefix it deletes).

Run:  .venv/bin/python bench/position_load.py [--part ticks|opens|both] [--postgres]
      [--positions 10000] [--ticks 15] [--close-share 0.03] [--clients 32] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from proc_stats import cpu_seconds, machine_busy_seconds
from pydantic import SecretStr
from sqlalchemy import delete, func, insert, select, text

from aifx.auth.v1 import auth_pb2, auth_pb2_grpc
from aifx.common.v1 import market_pb2
from aifx.position.v1 import position_pb2, position_pb2_grpc
from common.candles import Candles
from common.db import create_engine, session_factory
from common.logging import configure_logging
from common.market import Timeframe
from common.market_data import load_bundled_history
from common.migrations import upgrade
from common.server import start_server
from common.settings import Settings
from position_svc.event_feed import EventFeed
from position_svc.models import EventRow, PositionRow, SnapshotRow
from position_svc.pnl import Tick, level_hit
from position_svc.positions import Position, Side, Status
from position_svc.price_source import PriceSource, decimal_price
from position_svc.repository import PositionRepository
from position_svc.watcher import Watcher
from tests.infra import (
    REDIS_URL,
    auth_stack,
    create_postgres_database,
    delete_redis_prefix,
    drop_postgres_database,
    free_port,
    make_settings,
    stop_process,
)
from tests.position.price_standin import price_standin

PAIR = "EUR/USD"
PIP = Decimal("0.0001")
PIPETTE = Decimal("0.00001")
TARGET_TICK_MS = 200.0
ENTRY_BARS = 24
SERVICE_TOKEN = "position-bench-service-token"
CPUS = os.cpu_count() or 1


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (share in 0..1) of `values`."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(share * len(ordered) + 0.5) - 1))]


def figures(values_ms: list[float]) -> str:
    return (
        f"p50 {percentile(values_ms, 0.50):.1f} ms, p99 {percentile(values_ms, 0.99):.1f} ms, "
        f"max {max(values_ms):.1f} ms"
    )


# --- part 1: tick evaluation -------------------------------------------------------------


def tick_of(history: Candles, bar: int) -> Tick:
    return Tick(
        PAIR,
        decimal_price(float(history.close[bar])),
        decimal_price(float(history.high[bar])),
        decimal_price(float(history.low[bar])),
        datetime.fromtimestamp(int(history.times[bar]) + 3600, UTC),
    )


def draw_positions(
    history: Candles, bar: int, count: int, max_pips: Decimal, seed: int
) -> list[Position]:
    """`count` open positions entered at real closes of the bars before `bar`, levels at
    random distances up to `max_pips`, none crossed by the previous close."""
    rng = random.Random(seed)
    previous = decimal_price(float(history.close[bar - 1]))
    now = datetime.now(UTC)
    positions = []
    while len(positions) < count:
        entry = decimal_price(float(history.close[bar - 1 - rng.randrange(ENTRY_BARS)]))
        side = rng.choice((Side.BUY, Side.SELL))
        stop = (Decimal(rng.randint(10, int(max_pips * 10))) * PIPETTE).quantize(PIPETTE)
        target = (Decimal(rng.randint(10, int(max_pips * 10))) * PIPETTE).quantize(PIPETTE)
        direction = 1 if side is Side.BUY else -1
        stop_loss = entry - direction * stop
        take_profit = entry + direction * target
        if level_hit(side, stop_loss, take_profit, Tick(PAIR, previous, previous, previous, now)):
            continue  # would have closed already
        positions.append(
            Position(
                id=str(uuid.uuid4()),
                user_id=f"bench-user-{rng.randrange(1000)}",
                pair=PAIR,
                side=side,
                lot_size=Decimal(rng.randint(1, 200)) / 100,
                entry_price=entry,
                stop_loss=stop_loss,
                take_profit=take_profit,
                status=Status.OPEN,
                open_time=now,
                update_time=now,
            )
        )
    return positions


def hits(positions: list[Position], tick: Tick) -> int:
    return sum(level_hit(p.side, p.stop_loss, p.take_profit, tick) is not None for p in positions)


def positions_for(
    history: Candles, bar: int, count: int, share: float, seed: int
) -> tuple[list[Position], Decimal]:
    """Positions whose levels the tick of `bar` hits in about `share` of cases: the
    level spread is searched (bisection on the widest distance, in pips)."""
    tick = tick_of(history, bar)
    sample = max(1000, count // 5)
    low, high = Decimal(5), Decimal(5000)
    for _ in range(14):
        middle = ((low + high) / 2).quantize(Decimal("0.1"))
        got = hits(draw_positions(history, bar, sample, middle, seed), tick) / sample
        if got > share:
            low = middle  # too many closes: spread the levels wider
        else:
            high = middle
    spread = ((low + high) / 2).quantize(Decimal("0.1"))
    return draw_positions(history, bar, count, spread, seed), spread


def row_values(position: Position) -> dict[str, Any]:
    return {
        name: value.value if isinstance(value, Enum) else value
        for name, value in position.__dict__.items()
    }


async def refill(sessions: Any, positions: list[Position]) -> None:
    async with sessions() as session, session.begin():
        for table in (SnapshotRow, EventRow, PositionRow):
            await session.execute(delete(table))
        rows = [row_values(p) for p in positions]
        for start in range(0, len(rows), 2000):
            await session.execute(insert(PositionRow), rows[start : start + 2000])
    async with sessions() as session:
        if session.bind.dialect.name == "sqlite":
            # Fold the refill's write-ahead log into the database now, so that the timed
            # close does not pay for checkpointing 10,000 inserted rows.
            await session.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        else:
            await session.execute(text("ANALYZE position_positions"))


async def closed_count(sessions: Any) -> int:
    async with sessions() as session:
        query = select(func.count()).where(PositionRow.status == Status.CLOSED.value)
        return int((await session.execute(query)).scalar_one())


def tick_bars(history: Candles, count: int) -> list[int]:
    """`count` + 1 bars spread over the history (the first is the warm-up), each with a
    range of at least 5 pips so that it can close anything."""
    bars: list[int] = []
    step = (len(history) - 2 * ENTRY_BARS) // (count + 1)
    for n in range(count + 1):
        bar = ENTRY_BARS + 1 + n * step
        while history.high[bar] - history.low[bar] < 0.0005:
            bar += 1
        bars.append(bar)
    return bars


async def bench_ticks(settings: Settings, args: argparse.Namespace) -> None:
    print(f"\n== tick evaluation: {args.positions:,} open positions, one watcher ==")
    await asyncio.to_thread(upgrade, "position_svc", settings)
    engine = create_engine(settings)
    sessions = session_factory(engine)
    repository = PositionRepository(sessions)
    feed = EventFeed(repository, poll_seconds=60.0, buffer_size=1024)
    # The watcher's price source is not used by on_tick (only by sweeps).
    watcher = Watcher(repository, feed, PriceSource("127.0.0.1:9", "unused"), 60.0)
    history = load_bundled_history(PAIR, Timeframe.H1)
    timings: list[float] = []
    closes: list[int] = []
    busy: list[float] = []
    gc_pauses: list[float] = []
    gc_started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        else:
            gc_pauses.append((time.perf_counter() - gc_started[0]) * 1000)

    gc.callbacks.append(on_gc)
    try:
        for run, bar in enumerate(tick_bars(history, args.ticks)):
            positions, spread = positions_for(
                history, bar, args.positions, args.close_share, seed=run
            )
            await refill(sessions, positions)
            del positions
            await watcher.reload()
            assert watcher.open_count() == args.positions
            tick = tick_of(history, bar)
            gc.collect()  # not the drawing's garbage: only what on_tick itself makes
            machine = machine_busy_seconds()
            gc_pauses.clear()
            started = time.perf_counter()
            events = await watcher.on_tick(tick)
            elapsed = (time.perf_counter() - started) * 1000
            machine = (machine_busy_seconds() - machine) / (elapsed / 1000) / CPUS
            stored = await closed_count(sessions)
            if stored != len(events):
                raise RuntimeError(f"{len(events)} close events but {stored} closed rows")
            label = "warm-up" if run == 0 else f"tick {run:2d}"
            print(
                f"  {label}: bar {tick.time:%Y-%m-%d %H:%M} range "
                f"{(tick.high - tick.low) / PIP:5.1f} pips, levels up to {spread:6.1f} pips: "
                f"closed {len(events):4d} ({len(events) / args.positions:5.1%}) "
                f"in {elapsed:7.1f} ms (machine {min(machine, 1):4.0%} busy)"
                + (f", GC {sum(gc_pauses):.0f} ms" if sum(gc_pauses) >= 1 else ""),
                flush=True,
            )
            if run:
                timings.append(elapsed)
                closes.append(len(events))
                busy.append(machine)

        # Evaluation alone: a tick at the previous close reaches no level.
        await watcher.reload()
        quiet: list[float] = []
        for _ in range(20):
            price = decimal_price(float(history.close[bar - 1]))
            started = time.perf_counter()
            events = await watcher.on_tick(Tick(PAIR, price, price, price, tick.time))
            quiet.append((time.perf_counter() - started) * 1000)
            assert not events
    finally:
        gc.callbacks.remove(on_gc)
        await engine.dispose()

    print(
        f"  on_tick with closes ({len(timings)} ticks): {figures(timings)}; "
        f"closes per tick: min {min(closes)}, median {statistics.median(closes):.0f}, "
        f"max {max(closes)} (target < {TARGET_TICK_MS:.0f} ms: "
        f"{'met' if max(timings) < TARGET_TICK_MS else 'MISSED'})"
    )
    print(f"  on_tick without closes (evaluation only, 20 ticks): {figures(quiet)}")
    if statistics.median(busy) > 0.75:
        print(
            "  note: the machine was busy with other work during the ticks (median "
            f"{min(statistics.median(busy), 1):.0%} of {CPUS} CPUs): figures are pessimistic"
        )


# --- part 2: OpenPosition throughput ---------------------------------------------------------


async def wait_serving(address: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"position_svc at {address} did not start")
            await asyncio.sleep(0.1)


@asynccontextmanager
async def position_server(
    settings: Settings, args: argparse.Namespace, var_dir: Path
) -> AsyncIterator[tuple[str, int]]:
    """position_svc serving on `settings`: its address and process id."""
    if args.in_process:
        from position_svc.server import build

        running = await start_server(build(settings), "127.0.0.1", 0)
        try:
            yield f"127.0.0.1:{running.port}", os.getpid()
        finally:
            await running.stop(grace=1.0)
        return
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIFX_")}
    env.update(
        {
            "AIFX_ENV": "development",
            "AIFX_VAR_DIR": str(var_dir),
            "AIFX_LOG_LEVEL": "WARNING",
            "AIFX_LOG_FORMAT": "json",
            "AIFX_BIND_HOST": "127.0.0.1",
            "AIFX_POSITION_PORT": str(port),
            "AIFX_POSITION_METRICS_PORT": "0",
            "AIFX_DATABASE_URL": settings.storage.database_url,
            "AIFX_REDIS_URL": settings.storage.redis_url,
            "AIFX_REDIS_PREFIX": settings.storage.redis_prefix,
            "AIFX_AUTH_TARGET": settings.network.auth_target,
            "AIFX_SIGNAL_TARGET": settings.network.signal_target,
            "AIFX_SERVICE_TOKEN": SERVICE_TOKEN,
        }
    )
    log = (var_dir / "position_svc.log").open("wb")
    process = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "position_svc"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        try:
            await wait_serving(f"127.0.0.1:{port}")
        except TimeoutError:
            raise RuntimeError(
                "position_svc did not start:\n" + (var_dir / "position_svc.log").read_text()
            ) from None
        yield f"127.0.0.1:{port}", process.pid
    finally:
        await asyncio.to_thread(stop_process, process)
        log.close()


async def register(channel: grpc.aio.Channel, count: int) -> list[str]:
    stub = auth_pb2_grpc.AuthServiceStub(channel)
    tokens = []
    for _ in range(count):
        tag = uuid.uuid4().hex[:12]
        reply = await stub.Register(
            auth_pb2.RegisterRequest(
                email=f"bench-{tag}@example.com", username=f"bench_{tag}", password="bench pw 1"
            )
        )
        tokens.append(reply.tokens.access_token)
    return tokens


def open_request(entry: Decimal) -> position_pb2.OpenPositionRequest:
    return position_pb2.OpenPositionRequest(
        pair=PAIR,
        side=market_pb2.TRADE_ACTION_BUY,
        lot_size="0.10",
        entry_price=str(entry),
        stop_loss=str(entry - 50 * PIP),
        take_profit=str(entry + 100 * PIP),
        idempotency_key=str(uuid.uuid4()),
    )


async def bench_opens(settings: Settings, args: argparse.Namespace, var_dir: Path) -> None:
    mode = "in process" if args.in_process else "as a subprocess"
    print(f"\n== OpenPosition throughput: {args.clients} clients, position_svc {mode} ==")
    history = load_bundled_history(PAIR, Timeframe.H1)
    bar = len(history) - 1
    entry = decimal_price(float(history.close[bar]))
    settings = settings.replace(
        **{"service_token": SecretStr(SERVICE_TOKEN), "auth_metrics_port": 0}
    )
    await asyncio.to_thread(upgrade, "position_svc", settings)
    async with (
        auth_stack(settings) as auth,
        price_standin(history, SERVICE_TOKEN) as prices,
    ):
        prices.set(bar)
        settings = settings.replace(
            **{"auth_target": auth.address, "signal_target": prices.address}
        )
        tokens = await register(auth.channel, args.clients)
        async with (
            position_server(settings, args, var_dir) as (address, pid),
            grpc.aio.insecure_channel(address) as channel,
        ):
            stub = position_pb2_grpc.PositionServiceStub(channel)
            latencies: list[float] = []
            errors: dict[str, int] = {}
            recording = False
            stop_at = 0.0

            async def client(token: str, warm_up: int) -> None:
                metadata = (("authorization", f"Bearer {token}"),)
                done = 0
                while (not recording and done < warm_up) or (
                    recording and time.perf_counter() < stop_at
                ):
                    started = time.perf_counter()
                    try:
                        await stub.OpenPosition(open_request(entry), metadata=metadata, timeout=10)
                    except grpc.aio.AioRpcError as error:
                        errors[error.code().name] = errors.get(error.code().name, 0) + 1
                    else:
                        if recording:
                            latencies.append((time.perf_counter() - started) * 1000)
                    done += 1

            # Warm-up: JWKS fetched, connections and statements prepared.
            await asyncio.gather(*(client(token, 5) for token in tokens))
            errors.clear()
            recording = True
            cpu = {"position_svc": cpu_seconds(pid), "bench": cpu_seconds(os.getpid())}
            busy = machine_busy_seconds()
            started = time.perf_counter()
            stop_at = started + args.seconds
            await asyncio.gather(*(client(token, 0) for token in tokens))
            elapsed = time.perf_counter() - started
            busy = (machine_busy_seconds() - busy) / elapsed / CPUS
            cpu = {
                name: (cpu_seconds(p) - cpu[name]) / elapsed
                for name, p in (("position_svc", pid), ("bench", os.getpid()))
            }
            # An idempotent retry of the last request returns the stored position.
            request = open_request(entry)
            metadata = (("authorization", f"Bearer {tokens[0]}"),)
            first = await stub.OpenPosition(request, metadata=metadata)
            again = await stub.OpenPosition(request, metadata=metadata)
            assert first.position.id == again.position.id

    print(
        f"  {len(latencies):,} opens in {elapsed:.1f} s: {len(latencies) / elapsed:,.0f} "
        f"opens/s; latency {figures(latencies)}; errors: {errors or 'none'}"
    )
    if args.in_process:
        print(
            f"  CPU: this process (clients, auth, prices, position_svc) {cpu['bench']:.0%}", end=""
        )
    else:
        print(
            f"  CPU: position_svc {cpu['position_svc']:.0%} of a core, this process (clients, "
            f"auth_svc, price stand-in) {cpu['bench']:.0%}",
            end="",
        )
    print(f"; machine {busy:.0%} busy over {os.cpu_count()} CPUs")


# --- main ----------------------------------------------------------------------------------


@asynccontextmanager
async def backend(args: argparse.Namespace, var_dir: Path) -> AsyncIterator[Settings]:
    if not args.postgres:
        yield make_settings(
            var_dir, database_url=f"sqlite+aiosqlite:///{var_dir}/bench.db", log_level="WARNING"
        )
        return
    name, url = await create_postgres_database()
    prefix = f"aifx-bench-position-{uuid.uuid4().hex[:8]}:"
    try:
        yield make_settings(
            var_dir,
            database_url=url,
            redis_url=REDIS_URL,
            redis_prefix=prefix,
            log_level="WARNING",
        )
    finally:
        await drop_postgres_database(name)
        await delete_redis_prefix(prefix)


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="aifx-position-bench-") as directory:
        var_dir = Path(directory)
        async with backend(args, var_dir) as settings:
            configure_logging(settings, "position-bench")
            where = "PostgreSQL (+ Redis)" if args.postgres else "SQLite"
            print(f"position_svc benchmarks on {where}; {os.cpu_count()} CPUs", flush=True)
            if args.part in ("ticks", "both"):
                await bench_ticks(settings, args)
            if args.part in ("opens", "both"):
                await bench_opens(settings, args, var_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("ticks", "opens", "both"), default="both")
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="run on a database created on the local PostgreSQL (AIFX_TEST_PG_DSN) and "
        "dropped afterwards, with the local Redis (AIFX_TEST_REDIS_URL)",
    )
    parser.add_argument("--positions", type=int, default=10_000)
    parser.add_argument("--ticks", type=int, default=15, help="timed ticks (after a warm-up)")
    parser.add_argument(
        "--close-share", type=float, default=0.03, help="share of positions a tick closes"
    )
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0, help="OpenPosition run length")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="serve position_svc in this process instead of a subprocess",
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()

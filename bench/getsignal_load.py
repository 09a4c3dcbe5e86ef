"""Load benchmark of `GET /api/v1/trading/signal/EURUSD?timeframe=TIMEFRAME_H1` (GetSignal)
through a real Envoy with a valid bearer token (issue 4, section 6).

Starts its own stack as subprocesses on free ports in a temporary var dir (so it never
touches a running `make run`): migrations, `python -m inference.model_server`,
`python -m inference`, `python -m auth_svc`, `python -m signal_svc` (replaying the real
bundled EUR/USD hours at --replay-speed, the product default unless given) and
`python -m edge.envoy_proxy`. Registers a user, waits until Envoy's jwt_authn has the
JWKS and the first signal is stored, warms up, then runs

    wrk -t1 -c32 -d15s --latency -H 'Authorization: Bearer …' \
        http://<envoy>/api/v1/trading/signal/EURUSD?timeframe=TIMEFRAME_H1

and prints requests/s, p50/p90/p99, errors, the CPU each process used during the run,
and signal_svc's resident memory. Target: >= 1,500 req/s and p99 < 30 ms.

The signal scheduler keeps running during the load (a signal per replayed hour bar:
one a second at the default 3600x), so the figures include the cache turning over at
each close, as in production.

Run:  .venv/bin/python bench/getsignal_load.py [--duration 15] [--connections 32]
      .venv/bin/python bench/getsignal_load.py --create-database \
          --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/aifx_bench_signal \
          --redis-url redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from getme_load import (
    NOT_IN_VENV,
    WRK_MISSING,
    Child,
    Stack,
    WrkResult,
    answers_200,
    http,
    parse_wrk,
    run_bench,
    safe_url,
    wait_for,
)
from proc_stats import cpu_seconds, machine_busy_seconds, memory_mb

from common.settings import MarketSettings
from tests.infra import free_port, stop_process

SIGNAL_PATH = "/api/v1/trading/signal/EURUSD?timeframe=TIMEFRAME_H1"
REGISTER_PATH = "/api/v1/auth/register"
JWKS_PATH = "/api/v1/auth/jwks"
GETME_PATH = "/api/v1/auth/me"

TARGET_RPS = 1500.0
TARGET_P99_MS = 30.0
NOISY_CPU_PERCENT = 15.0


@dataclass
class Result:
    wrk: WrkResult
    cpu_percent: dict[str, float]
    signal_memory_mb: dict[str, float]
    signals_during_run: int


class Bench:
    def __init__(self, args: argparse.Namespace, var_dir: Path) -> None:
        self.args = args
        self.var_dir = var_dir
        self.ports = {
            "auth": free_port(),
            "signal": free_port(),
            "inference": free_port(),
            "model_server": free_port(),
            "envoy": args.envoy_port or free_port(),
            "envoy_admin": free_port(),
        }
        self.base = f"http://127.0.0.1:{self.ports['envoy']}"
        self.redis_prefix = f"aifx-bench-{uuid.uuid4().hex[:8]}:"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIFX_")}
        env.update(
            {
                "AIFX_VAR_DIR": str(var_dir),
                "AIFX_ENV": "development",
                "AIFX_LOG_LEVEL": args.log_level,
                "AIFX_LOG_FORMAT": "json",
                "AIFX_BIND_HOST": "127.0.0.1",
                "AIFX_AUTH_PORT": str(self.ports["auth"]),
                "AIFX_SIGNAL_PORT": str(self.ports["signal"]),
                "AIFX_INFERENCE_PORT": str(self.ports["inference"]),
                "AIFX_MODEL_SERVER_PORT": str(self.ports["model_server"]),
                "AIFX_ENVOY_PORT": str(self.ports["envoy"]),
                "AIFX_ENVOY_ADMIN_PORT": str(self.ports["envoy_admin"]),
                # No Prometheus ports: nothing scrapes them here, and fixed defaults
                # would clash with a running `make run`.
                "AIFX_AUTH_METRICS_PORT": "0",
                "AIFX_SIGNAL_METRICS_PORT": "0",
                "AIFX_INFERENCE_METRICS_PORT": "0",
                "AIFX_MODEL_SERVER_METRICS_PORT": "0",
                "AIFX_DATABASE_URL": args.database_url,
                "AIFX_REDIS_URL": args.redis_url,
                "AIFX_REDIS_PREFIX": self.redis_prefix,
                "PYTHONUNBUFFERED": "1",
            }
        )
        if args.replay_speed:
            env["AIFX_REPLAY_SPEED"] = str(args.replay_speed)
        if args.envoy_concurrency is not None:
            env["AIFX_ENVOY_CONCURRENCY"] = str(args.envoy_concurrency)
        self.stack = Stack(var_dir, env)
        self.children: dict[str, Child] = {}
        self.wrks: list[subprocess.Popen[str]] = []
        self.token = ""

    # -- setup --

    def _start(self, name: str, module: str) -> None:
        self.children[name] = self.stack.start(name, [sys.executable, "-m", module])

    def start_stack(self) -> None:
        print("migrating …", flush=True)
        migrate = subprocess.run(
            [sys.executable, "-m", "common.migrations"],
            env=self.stack.env,
            cwd=self.var_dir,
            capture_output=True,
            text=True,
            check=False,
        )
        if migrate.returncode != 0:
            raise RuntimeError(f"migrations failed:\n{migrate.stdout}\n{migrate.stderr}")
        print(
            "starting model server, inference, auth_svc, signal_svc "
            f"(127.0.0.1:{self.ports['signal']}) and Envoy ({self.base}) …",
            flush=True,
        )
        self._start("model_server", "inference.model_server")
        self._start("inference", "inference")
        self._start("auth_svc", "auth_svc")
        self._start("signal_svc", "signal_svc")
        self._start("envoy", "edge.envoy_proxy")
        wait_for(
            "Envoy /ready",
            answers_200(f"http://127.0.0.1:{self.ports['envoy_admin']}/ready"),
            self.stack,
        )
        wait_for("auth_svc through Envoy", answers_200(self.base + JWKS_PATH), self.stack)

    def sign_in(self) -> None:
        user = f"bench_{uuid.uuid4().hex[:10]}"
        status, body = http(
            "POST",
            self.base + REGISTER_PATH,
            {"email": f"{user}@example.com", "username": user, "password": "bench-" + user},
        )
        if status != 200:
            raise RuntimeError(f"register failed: HTTP {status} {body}")
        self.token = body["tokens"]["accessToken"]
        # jwt_authn fetches the JWKS in the background; until it has, Envoy answers 401.
        wait_for(
            "Envoy's jwt_authn to accept the token (GET /me = 200)",
            answers_200(self.base + GETME_PATH, self.token),
            self.stack,
        )
        # The scheduler stores the first signal from the latest closed candle at start.
        wait_for(
            "the first signal (GetSignal = 200)",
            answers_200(self.base + SIGNAL_PATH, self.token),
            self.stack,
            timeout=90.0,
        )
        speed = self.args.replay_speed or MarketSettings.model_fields["replay_speed"].default
        hour_bar_seconds = 3600 / speed
        if hour_bar_seconds > self.args.wait_live:
            print(f"an hour bar closes every {hour_bar_seconds:.0f} s: measuring between closes")
        elif self.args.wait_live:
            # The replay starts on a Friday evening bar, so at 3600x the next close is
            # about 49 s away: measure only once signals are being produced, so the run
            # includes the cache turning over at each close, as in production.
            first = self._newest_signal_id()
            print("waiting for the replay to close its next bar …", flush=True)
            wait_for(
                "a signal after the first (the replay producing)",
                lambda: (self._newest_signal_id() > first, "no new signal yet"),
                self.stack,
                timeout=self.args.wait_live,
            )

    # -- load --

    def wrk_args(self, seconds: float, bearer: str | None = None) -> list[str]:
        """wrk's arguments; without `bearer`, a placeholder (for printing)."""
        return [
            f"-t{self.args.threads}",
            f"-c{self.args.connections}",
            f"-d{seconds:g}s",
            "--latency",
            "--timeout",
            "10s",
            "-H",
            f"Authorization: Bearer {bearer or '<access token>'}",
            self.base + SIGNAL_PATH,
        ]

    def _wrk(self, seconds: float) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [self.args.wrk, *self.wrk_args(seconds, self.token)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.wrks.append(process)
        return process

    def _finish(self, process: subprocess.Popen[str], what: str) -> WrkResult:
        output, _ = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"wrk ({what}) failed with code {process.returncode}:\n{output}")
        if self.args.verbose:
            print(f"--- wrk ({what}) ---\n{output}", flush=True)
        return parse_wrk(output)

    def _cpu(self, wrk_pid: int) -> dict[str, float]:
        pids = {name: child.process.pid for name, child in self.children.items()}
        used = {name: cpu_seconds(pid) for name, pid in {**pids, "wrk": wrk_pid}.items()}
        used["machine"] = machine_busy_seconds()
        return used

    def _newest_signal_id(self) -> int:
        status, body = http(
            "GET", self.base + "/api/v1/trading/signals?pageSize=1", token=self.token
        )
        if status != 200 or not body.get("signals"):
            raise RuntimeError(f"ListSignals failed: HTTP {status} {body}")
        return int(body["signals"][0]["id"])

    def measure(self, seconds: float) -> Result:
        self.stack.check_alive()
        first_id = self._newest_signal_id()
        process = self._wrk(seconds)
        before = self._cpu(process.pid)
        started = time.monotonic()
        # Sample before wrk exits: a reaped process has no /proc entry.
        time.sleep(max(0.0, seconds - 0.3))
        after = self._cpu(process.pid)
        elapsed = time.monotonic() - started
        memory = memory_mb(self.children["signal_svc"].process.pid)
        result = self._finish(process, "GetSignal")
        signals = self._newest_signal_id() - first_id
        cpu = {k: 100.0 * (after[k] - before[k]) / elapsed for k in before}
        machine = cpu.pop("machine")
        cpu["other processes"] = max(0.0, machine - sum(cpu.values()))
        return Result(result, cpu, memory, signals)

    def run(self) -> Result:
        try:
            self.start_stack()
            self.sign_in()
            print(f"warming up {self.args.warmup:g} s …", flush=True)
            if self.args.warmup > 0:
                self._finish(self._wrk(self.args.warmup), "warm-up")
            print(
                f"GetSignal through Envoy, {self.args.connections} connections, "
                f"{self.args.duration:g} s …",
                flush=True,
            )
            result = self.measure(self.args.duration)
            self.stack.check_alive()
            return result
        finally:
            for process in self.wrks:
                stop_process(process)
            self.stack.stop_all()


# --- report -------------------------------------------------------------------------


def report(args: argparse.Namespace, bench: Bench, result: Result) -> bool:
    database = safe_url(args.database_url) if args.database_url else "SQLite (embedded)"
    redis = safe_url(args.redis_url) if args.redis_url else "none (in-process stores)"
    speed = args.replay_speed or "product default (AIFX_REPLAY_SPEED)"
    concurrency = args.envoy_concurrency or "product default (AIFX_ENVOY_CONCURRENCY)"
    r = result.wrk
    ok = r.rps >= TARGET_RPS and r.p99 < TARGET_P99_MS and r.errors == 0
    print()
    print("GET /api/v1/trading/signal/EURUSD?timeframe=TIMEFRAME_H1 through Envoy, bearer token")
    print(f"  database: {database} | redis: {redis}")
    print(
        f"  replay speed: {speed} | signals stored during the run: {result.signals_during_run}"
        f" | log level: {args.log_level} | Envoy --concurrency: {concurrency}"
        f" | CPUs: {os.cpu_count()}"
    )
    print(f"  {shlex.join([Path(args.wrk).name, *bench.wrk_args(args.duration)])}")
    print()
    header = f"{'req/s':>9}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'errors':>8}"
    target = f">= {TARGET_RPS:,.0f} req/s, p99 < {TARGET_P99_MS:g} ms"
    print(f"{header}  {'target':<30}result")
    print("-" * (len(header) + 38))
    print(
        f"{r.rps:>9.1f}{r.p50:>9.2f}{r.percentiles_ms.get(90, 0.0):>9.2f}{r.p99:>9.2f}"
        f"{r.errors:>8}  {target:<30}{'PASS' if ok else 'FAIL'}"
    )
    cpu = ", ".join(f"{name} {value:.0f}%" for name, value in result.cpu_percent.items())
    print(f"\nCPU during the run (100% = one core of {os.cpu_count()}): {cpu}")
    if result.cpu_percent["other processes"] > NOISY_CPU_PERCENT:
        print(
            "  note: 'other processes' includes the PostgreSQL/Redis servers; anything "
            "else running on this machine skews the figures."
        )
    memory = result.signal_memory_mb
    print(
        f"signal_svc resident memory: {memory.get('VmRSS', 0.0):.0f} MB now, "
        f"{memory.get('VmHWM', 0.0):.0f} MB peak"
    )
    print(f"\nOVERALL: {'PASS' if ok else 'FAIL'}")
    return ok


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Load-test GetSignal through Envoy (needs wrk).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--duration", type=float, default=15.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument(
        "--database-url", default="", help="SQLAlchemy URL; default: embedded SQLite"
    )
    parser.add_argument(
        "--create-database",
        action="store_true",
        help="create the PostgreSQL database named in --database-url first, drop it after",
    )
    parser.add_argument("--redis-url", default="", help="default: in-process stores")
    parser.add_argument(
        "--replay-speed",
        type=float,
        default=0.0,
        help="AIFX_REPLAY_SPEED (market seconds per real second); 0: product default",
    )
    parser.add_argument(
        "--wait-live",
        type=float,
        default=120.0,
        help="seconds to wait for the replay's first new signal before measuring; 0: don't",
    )
    parser.add_argument("--log-level", default="WARNING", help="AIFX_LOG_LEVEL of the services")
    parser.add_argument(
        "--envoy-concurrency",
        type=int,
        default=None,
        help="AIFX_ENVOY_CONCURRENCY (Envoy worker threads); default: the product's setting",
    )
    parser.add_argument("--envoy-port", type=int, default=0, help="0: a free port")
    parser.add_argument("--var-dir", type=Path, default=None, help="default: a temporary dir")
    parser.add_argument("--keep-var-dir", action="store_true", help="keep logs and database")
    parser.add_argument("--wrk", default=shutil.which("wrk") or "", help="path of wrk")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--verbose", action="store_true", help="print wrk's full output")
    args = parser.parse_args(argv)
    if not args.wrk or not os.access(args.wrk, os.X_OK):
        parser.exit(2, WRK_MISSING + "\n")
    if importlib.util.find_spec("signal_svc") is None:
        parser.exit(2, NOT_IN_VENV.replace("getme_load", "getsignal_load") + "\n")
    if args.create_database and not args.database_url.startswith("postgresql"):
        parser.error("--create-database needs a PostgreSQL --database-url")
    return args


def main(argv: list[str] | None = None) -> int:
    return run_bench(parse_args(argv), Bench, report, "aifx-bench-signal-")


if __name__ == "__main__":
    sys.exit(main())

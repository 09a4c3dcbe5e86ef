"""Load benchmark of `GET /api/v1/auth/me` through a real Envoy with a valid token.

Starts its own stack on free ports in a temporary var dir (so it never touches a running
`make run`): migrations, `python -m auth_svc`, `python -m edge.envoy_proxy`. Registers a
user, waits until Envoy's jwt_authn has fetched the JWKS, warms up, then runs two phases
with wrk:

1. GetMe alone, at --connections connections.
   Target: >= 1,500 req/s and p99 < 30 ms.
2. GetMe again while a second wrk process hammers `POST /api/v1/auth/login` with correct
   credentials (--login-connections connections, bcrypt at the configured cost).
   Target: GetMe p99 < 50 ms. Also prints how many logins/s succeeded (auth_svc's
   Prometheus counter, over exactly the GetMe window).

Run:  .venv/bin/python bench/getme_load.py [--duration 15] [--connections 32]
      .venv/bin/python bench/getme_load.py --create-database \
          --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/aifx_bench \
          --redis-url redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proc_stats import cpu_seconds, machine_busy_seconds

from tests.infra import delete_redis_prefix, free_port, stop_process

GETME_PATH = "/api/v1/auth/me"
LOGIN_PATH = "/api/v1/auth/login"
REGISTER_PATH = "/api/v1/auth/register"
JWKS_PATH = "/api/v1/auth/jwks"
LOGIN_METHOD = "/aifx.auth.v1.AuthService/Login"

TARGET_RPS = 1500.0
TARGET_P99_MS = 30.0
TARGET_P99_UNDER_LOGINS_MS = 50.0
# Above this, CPU used by processes outside the stack under test skews the figures.
NOISY_CPU_PERCENT = 15.0

WRK_MISSING = (
    "wrk is not installed (or not on PATH). Install it with:\n"
    "    sudo apt-get update && sudo apt-get install -y wrk\n"
    "or pass --wrk /path/to/wrk."
)
NOT_IN_VENV = (
    "auth_svc is not importable by this interpreter; run the benchmark with the project's "
    "virtualenv after `make setup`:\n    .venv/bin/python bench/getme_load.py"
)


# --- wrk output ---------------------------------------------------------------------

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _duration_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not match:
        raise ValueError(f"unparsable wrk duration {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    percentiles_ms: dict[int, float]
    non_2xx: int
    socket_errors: dict[str, int]

    @property
    def p50(self) -> float:
        return self.percentiles_ms[50]

    @property
    def p99(self) -> float:
        return self.percentiles_ms[99]

    @property
    def errors(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values())


def parse_wrk(output: str) -> WrkResult:
    """Figures of a `wrk --latency` run: req/s, the latency distribution, errors."""
    totals = re.search(r"(\d+) requests in ([\d.]+(?:us|ms|s|m|h))", output)
    rps = re.search(r"Requests/sec:\s*([\d.]+)", output)
    if not totals or not rps:
        raise ValueError(f"unexpected wrk output:\n{output}")
    _, found, distribution = output.partition("Latency Distribution")
    if not found:
        raise ValueError(f"wrk output has no latency distribution (--latency):\n{output}")
    percentiles = {
        int(p): _duration_ms(value)
        for p, value in re.findall(r"^\s+(\d+)%\s+(\S+)\s*$", distribution, re.MULTILINE)
    }
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", output)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    socket_errors = (
        dict(zip(("connect", "read", "write", "timeout"), map(int, sockets.groups()), strict=True))
        if sockets
        else {}
    )
    return WrkResult(
        requests=int(totals.group(1)),
        seconds=_duration_ms(totals.group(2)) / 1000.0,
        rps=float(rps.group(1)),
        percentiles_ms=percentiles,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=socket_errors,
    )


# --- processes ----------------------------------------------------------------------


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Stack:
    """The long-running processes this benchmark started, stopped in reverse order."""

    var_dir: Path
    env: dict[str, str]
    children: list[Child] = field(default_factory=list)

    def start(self, name: str, args: list[str]) -> Child:
        log_path = self.var_dir / f"{name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                args,
                env=self.env,
                cwd=self.var_dir,  # so no `.env` of the developer's checkout is read
                stdout=log,
                stderr=log,
                start_new_session=True,  # Ctrl-C reaches us only; we stop them in order
            )
        child = Child(name, process, log_path)
        self.children.append(child)
        return child

    def check_alive(self) -> None:
        for child in self.children:
            code = child.process.poll()
            if code is not None:
                raise RuntimeError(
                    f"{child.name} (pid {child.process.pid}) exited with code {code} "
                    f"during the benchmark; last lines of {child.log_path}:\n{child.tail()}"
                )

    def stop_all(self) -> None:
        for child in reversed(self.children):
            stop_process(child.process)


# --- HTTP ---------------------------------------------------------------------------


def http(
    method: str, url: str, body: dict[str, Any] | None = None, token: str = ""
) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 (loopback)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status, _json_or_text(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, _json_or_text(exc.read())


def _json_or_text(raw: bytes) -> dict[str, Any]:
    try:
        decoded = json.loads(raw or b"{}")
    except ValueError:
        return {"text": raw.decode(errors="replace")}
    return decoded if isinstance(decoded, dict) else {"value": decoded}


def answers_200(url: str, token: str = "") -> Callable[[], tuple[bool, object]]:
    def probe() -> tuple[bool, object]:
        status, body = http("GET", url, token=token)
        return status == 200, (status, body)

    return probe


def wait_for(
    what: str, probe: Callable[[], tuple[bool, object]], stack: Stack, timeout: float = 60.0
) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        stack.check_alive()
        try:
            ok, last = probe()
        except OSError as exc:
            ok, last = False, exc
        if ok:
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last})")


def scrape_counter(metrics_url: str, name: str, labels: dict[str, str]) -> float:
    """Sum of a Prometheus counter's samples that carry all of `labels`."""
    with urllib.request.urlopen(metrics_url, timeout=5) as response:  # noqa: S310
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        label_text, _, value = line[len(name) + 1 :].rpartition("} ")
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', label_text))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(value)
    return total


# --- PostgreSQL scratch database and Redis prefix ------------------------------------


def _admin_dsn(database_url: str) -> tuple[str, str]:
    """(asyncpg DSN of the server's `postgres` database, name of the URL's database)."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if not url.drivername.startswith("postgresql") or not url.database:
        raise SystemExit("--create-database needs a postgresql+asyncpg://…/<name> URL")
    admin = url.set(drivername="postgresql", database="postgres")
    return admin.render_as_string(hide_password=False), url.database


async def _pg_admin(database_url: str, statement: str) -> None:
    import asyncpg

    dsn, _ = _admin_dsn(database_url)
    connection = await asyncpg.connect(dsn, timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def create_database(database_url: str) -> None:
    _, name = _admin_dsn(database_url)
    asyncio.run(_pg_admin(database_url, f'CREATE DATABASE "{name}"'))


def drop_database(database_url: str) -> None:
    _, name = _admin_dsn(database_url)
    asyncio.run(_pg_admin(database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


# --- the benchmark ------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    getme: WrkResult
    cpu_percent: dict[str, float]
    logins: WrkResult | None = None
    logins_per_second: float | None = None


class Bench:
    def __init__(self, args: argparse.Namespace, var_dir: Path) -> None:
        self.args = args
        self.var_dir = var_dir
        self.auth_port = args.auth_port or free_port()
        self.metrics_port = args.auth_metrics_port or free_port()
        self.envoy_port = args.envoy_port or free_port()
        self.admin_port = args.envoy_admin_port or free_port()
        self.base = f"http://127.0.0.1:{self.envoy_port}"
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        self.redis_prefix = f"aifx-bench-{uuid.uuid4().hex[:8]}:"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIFX_")}
        env.update(
            {
                "AIFX_VAR_DIR": str(var_dir),
                "AIFX_ENV": "development",
                "AIFX_LOG_LEVEL": args.log_level,
                "AIFX_LOG_FORMAT": "json",
                "AIFX_BIND_HOST": "127.0.0.1",
                "AIFX_AUTH_PORT": str(self.auth_port),
                "AIFX_AUTH_METRICS_PORT": str(self.metrics_port),
                "AIFX_ENVOY_PORT": str(self.envoy_port),
                "AIFX_ENVOY_ADMIN_PORT": str(self.admin_port),
                "AIFX_DATABASE_URL": args.database_url,
                "AIFX_REDIS_URL": args.redis_url,
                "AIFX_REDIS_PREFIX": self.redis_prefix,
                "PYTHONUNBUFFERED": "1",
            }
        )
        if args.bcrypt_rounds:
            env["AIFX_BCRYPT_ROUNDS"] = str(args.bcrypt_rounds)
        if args.envoy_concurrency is not None:
            env["AIFX_ENVOY_CONCURRENCY"] = str(args.envoy_concurrency)
        self.stack = Stack(var_dir, env)
        self.wrks: list[subprocess.Popen[str]] = []
        self.user = f"bench_{uuid.uuid4().hex[:10]}"
        self.password = "bench-" + uuid.uuid4().hex
        self.token = ""

    # -- setup --

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
        print(f"starting auth_svc on 127.0.0.1:{self.auth_port} …", flush=True)
        self.auth = self.stack.start("auth_svc", [sys.executable, "-m", "auth_svc"])
        print(f"starting Envoy on {self.base} (admin :{self.admin_port}) …", flush=True)
        self.envoy = self.stack.start("envoy", [sys.executable, "-m", "edge.envoy_proxy"])
        wait_for(
            "Envoy /ready", answers_200(f"http://127.0.0.1:{self.admin_port}/ready"), self.stack
        )
        wait_for(
            "auth_svc through Envoy (GET jwks)", answers_200(self.base + JWKS_PATH), self.stack
        )

    def sign_in(self) -> None:
        status, body = http(
            "POST",
            self.base + REGISTER_PATH,
            {"email": f"{self.user}@example.com", "username": self.user, "password": self.password},
        )
        if status != 200:
            raise RuntimeError(f"register failed: HTTP {status} {body}")
        status, body = http(
            "POST", self.base + LOGIN_PATH, {"identifier": self.user, "password": self.password}
        )
        if status != 200:
            raise RuntimeError(f"login failed: HTTP {status} {body}")
        self.token = body["tokens"]["accessToken"]
        # jwt_authn fetches the JWKS in the background; until it has, /me answers 401.
        wait_for(
            "Envoy's jwt_authn to accept the token (GET /me = 200)",
            answers_200(self.base + GETME_PATH, self.token),
            self.stack,
        )

    # -- load --

    def _wrk(self, args: list[str]) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [self.args.wrk, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.wrks.append(process)
        return process

    def getme_wrk_args(self, seconds: float, bearer: str | None = None) -> list[str]:
        """wrk's arguments for GetMe; without `bearer`, a placeholder (for printing)."""
        return [
            f"-t{self.args.threads}",
            f"-c{self.args.connections}",
            f"-d{seconds:g}s",
            "--latency",
            "--timeout",
            "10s",
            "-H",
            f"Authorization: Bearer {bearer or '<access token>'}",
            self.base + GETME_PATH,
        ]

    def _wrk_login(self, seconds: float) -> subprocess.Popen[str]:
        body = json.dumps({"identifier": self.user, "password": self.password})
        script = self.var_dir / "login.lua"
        script.write_text(
            'wrk.method = "POST"\n'
            f"wrk.body = [==[{body}]==]\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
        )
        return self._wrk(
            [
                "-t1",
                f"-c{self.args.login_connections}",
                f"-d{seconds:g}s",
                "--latency",
                "--timeout",
                "30s",
                "-s",
                str(script),
                self.base + LOGIN_PATH,
            ]
        )

    def _finish(self, process: subprocess.Popen[str], what: str) -> WrkResult:
        output, _ = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"wrk ({what}) failed with code {process.returncode}:\n{output}")
        if self.args.verbose:
            print(f"--- wrk ({what}) ---\n{output}", flush=True)
        return parse_wrk(output)

    def _cpu(self, extra: dict[str, int]) -> dict[str, float]:
        pids = {"auth_svc": self.auth.process.pid, "envoy": self.envoy.process.pid, **extra}
        used = {name: cpu_seconds(pid) for name, pid in pids.items()}
        used["machine"] = machine_busy_seconds()
        return used

    def run_getme(self, name: str, seconds: float, others: dict[str, int] | None = None) -> Phase:
        self.stack.check_alive()
        process = self._wrk(self.getme_wrk_args(seconds, self.token))
        pids = {"wrk": process.pid, **(others or {})}
        before = self._cpu(pids)
        started = time.monotonic()
        # Sample before wrk exits: a reaped process has no /proc entry.
        time.sleep(max(0.0, seconds - 0.3))
        after = self._cpu(pids)
        elapsed = time.monotonic() - started
        result = self._finish(process, name)
        cpu = {k: 100.0 * (after[k] - before[k]) / elapsed for k in before}
        machine = cpu.pop("machine")
        cpu["other processes"] = max(0.0, machine - sum(cpu.values()))
        return Phase(name, result, cpu)

    def run_getme_under_logins(self, seconds: float) -> Phase:
        lead = self.args.login_lead
        logins = self._wrk_login(lead + seconds + 1.0)
        time.sleep(lead)  # let the bcrypt queue fill up
        self.stack.check_alive()
        ok_before = self._login_ok()
        started = time.monotonic()
        phase = self.run_getme("GetMe during logins", seconds, {"login wrk": logins.pid})
        ok_after = self._login_ok()
        elapsed = time.monotonic() - started
        phase.logins = self._finish(logins, "logins")
        phase.logins_per_second = (ok_after - ok_before) / elapsed
        return phase

    def _login_ok(self) -> float:
        return scrape_counter(
            self.metrics_url, "aifx_grpc_requests_total", {"method": LOGIN_METHOD, "code": "OK"}
        )

    def run(self) -> list[Phase]:
        try:
            self.start_stack()
            self.sign_in()
            print(f"warming up {self.args.warmup:g} s …", flush=True)
            if self.args.warmup > 0:
                self._finish(self._wrk(self.getme_wrk_args(self.args.warmup, self.token)), "warm")
            phases = []
            print(f"phase 1: GetMe alone, {self.args.duration:g} s …", flush=True)
            phases.append(self.run_getme("GetMe alone", self.args.duration))
            if not self.args.skip_logins:
                print(
                    f"phase 2: GetMe while {self.args.login_connections} connections log in "
                    f"flat out, {self.args.duration:g} s …",
                    flush=True,
                )
                phases.append(self.run_getme_under_logins(self.args.duration))
            self.stack.check_alive()
            return phases
        finally:
            for process in self.wrks:
                stop_process(process)
            self.stack.stop_all()


# --- report -------------------------------------------------------------------------


def report(args: argparse.Namespace, bench: Bench, phases: list[Phase]) -> bool:
    database = safe_url(args.database_url) if args.database_url else "SQLite (embedded)"
    redis = safe_url(args.redis_url) if args.redis_url else "none (in-process stores)"
    concurrency = args.envoy_concurrency or "product default (AIFX_ENVOY_CONCURRENCY)"
    print()
    print(f"GET {GETME_PATH} through Envoy with a valid bearer token")
    print(f"  database: {database} | redis: {redis}")
    print(
        f"  bcrypt rounds: {args.bcrypt_rounds or 'default (12)'} | auth_svc log level: "
        f"{args.log_level} | Envoy --concurrency: {concurrency} | CPUs: {os.cpu_count()}"
    )
    print(f"  {shlex.join([Path(args.wrk).name, *bench.getme_wrk_args(args.duration)])}")
    print()
    header = f"{'phase':<22}{'req/s':>9}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'errors':>8}"
    print(f"{header}  {'target':<30}result")
    print("-" * (len(header) + 38))
    all_ok = True
    for phase in phases:
        r = phase.getme
        if phase.logins is None:
            ok = r.rps >= TARGET_RPS and r.p99 < TARGET_P99_MS and r.errors == 0
            target = f">= {TARGET_RPS:,.0f} req/s, p99 < {TARGET_P99_MS:g} ms"
        else:
            ok = r.p99 < TARGET_P99_UNDER_LOGINS_MS and r.errors == 0
            target = f"p99 < {TARGET_P99_UNDER_LOGINS_MS:g} ms"
        all_ok = all_ok and ok
        print(
            f"{phase.name:<22}{r.rps:>9.1f}{r.p50:>9.2f}{r.percentiles_ms.get(90, 0.0):>9.2f}"
            f"{r.p99:>9.2f}{r.errors:>8}  {target:<30}{'PASS' if ok else 'FAIL'}"
        )
    for phase in phases:
        if phase.logins is None:
            continue
        lg = phase.logins
        print(
            f"\nLogins during phase 2: {phase.logins_per_second:.2f} logins/s succeeded "
            f"(auth_svc's counter over the GetMe window)\n"
            f"  login wrk, {args.login_connections} connections: {lg.requests} in "
            f"{lg.seconds:.1f} s = {lg.rps:.2f}/s, p50 {lg.p50:.0f} ms, p99 {lg.p99:.0f} ms, "
            f"errors {lg.errors}"
        )
    print(f"\nCPU use per phase (100% = one core of {os.cpu_count()}):")
    noisy = False
    for phase in phases:
        cpu = ", ".join(f"{name} {value:.0f}%" for name, value in phase.cpu_percent.items())
        print(f"  {phase.name:<22}{cpu}")
        noisy = noisy or phase.cpu_percent["other processes"] > NOISY_CPU_PERCENT
    if noisy:
        print(
            "  note: 'other processes' includes the PostgreSQL/Redis servers; anything "
            "else running on this machine skews the figures."
        )
    print(f"\nOVERALL: {'PASS' if all_ok else 'FAIL'}")
    return all_ok


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Load-test GET /api/v1/auth/me through Envoy (needs wrk).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per phase")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up")
    parser.add_argument("--connections", type=int, default=32, help="GetMe connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads for GetMe")
    parser.add_argument(
        "--login-connections", type=int, default=4, help="connections hammering Login"
    )
    parser.add_argument(
        "--login-lead", type=float, default=2.0, help="seconds of logins before phase 2 measures"
    )
    parser.add_argument("--skip-logins", action="store_true", help="run phase 1 only")
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
        "--bcrypt-rounds", type=int, default=0, help="AIFX_BCRYPT_ROUNDS; 0: product default"
    )
    parser.add_argument("--log-level", default="WARNING", help="AIFX_LOG_LEVEL of auth_svc")
    parser.add_argument(
        "--envoy-concurrency",
        type=int,
        default=None,
        help="AIFX_ENVOY_CONCURRENCY (Envoy worker threads); default: the product's setting",
    )
    parser.add_argument("--envoy-port", type=int, default=0, help="0: a free port")
    parser.add_argument("--envoy-admin-port", type=int, default=0, help="0: a free port")
    parser.add_argument("--auth-port", type=int, default=0, help="0: a free port")
    parser.add_argument("--auth-metrics-port", type=int, default=0, help="0: a free port")
    parser.add_argument("--var-dir", type=Path, default=None, help="default: a temporary dir")
    parser.add_argument("--keep-var-dir", action="store_true", help="keep logs and database")
    parser.add_argument("--wrk", default=shutil.which("wrk") or "", help="path of wrk")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--verbose", action="store_true", help="print wrk's full output")
    args = parser.parse_args(argv)
    if not args.wrk or not os.access(args.wrk, os.X_OK):
        parser.exit(2, WRK_MISSING + "\n")
    if importlib.util.find_spec("auth_svc") is None:
        parser.exit(2, NOT_IN_VENV + "\n")
    if args.create_database and not args.database_url.startswith("postgresql"):
        parser.error("--create-database needs a PostgreSQL --database-url")
    return args


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_bench(
    args: argparse.Namespace,
    make_bench: Callable[[argparse.Namespace, Path], Any],
    report_figures: Callable[[argparse.Namespace, Any, Any], bool],
    var_prefix: str,
) -> int:
    """What every stack benchmark's main() does: a var dir, the optional PostgreSQL
    database, run and report, and clean up everything on success, error or Ctrl-C
    (bench/getsignal_load.py runs through here too)."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)  # even when started with SIGINT ignored
    keep = args.keep_var_dir or args.var_dir is not None
    var_dir = args.var_dir or Path(tempfile.mkdtemp(prefix=var_prefix))
    var_dir.mkdir(parents=True, exist_ok=True)
    created_database = False
    bench = None
    try:
        if args.create_database:
            create_database(args.database_url)
            created_database = True
        bench = make_bench(args, var_dir)
        ok = report_figures(args, bench, bench.run())
        return 1 if args.strict and not ok else 0
    except KeyboardInterrupt:
        print("\ninterrupted; everything started was stopped", file=sys.stderr)
        return 130
    except (RuntimeError, OSError, ValueError) as exc:
        print(f"\nbenchmark failed: {exc}", file=sys.stderr)
        keep = True
        return 1
    finally:
        if created_database:
            with contextlib.suppress(Exception):
                drop_database(args.database_url)
        if bench is not None and args.redis_url:
            with contextlib.suppress(Exception):
                asyncio.run(delete_redis_prefix(bench.redis_prefix, args.redis_url))
        if keep:
            print(f"var dir (logs, database) kept: {var_dir}", file=sys.stderr)
        else:
            shutil.rmtree(var_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    return run_bench(parse_args(argv), Bench, report, "aifx-bench-")


if __name__ == "__main__":
    sys.exit(main())

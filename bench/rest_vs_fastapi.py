"""AIFX's REST read path against a FastAPI + uvicorn service on the same cores (issue 15).

Both do the same job: an authenticated JSON read of the latest EUR/USD signal (about
900 bytes), the bearer token's Ed25519 signature, expiry and revocation checked on every
request.

- AIFX runs as `make run` runs it (`python -m stack`: supervisord and every process, its
  default log settings) in a temporary var/; the read is
  `GET /api/v1/trading/signal/EURUSD?timeframe=TIMEFRAME_H1` through Envoy.
- The reference is bench/fastapi_reference.py in two uvicorn processes on ports of
  their own (two share one socket unevenly), serving the body AIFX answered and
  verifying AIFX's own token against AIFX's JWKS.

Rounds alternate (AIFX, reference, AIFX, …): AIFX with one `wrk -t1 -c32`; the reference
with two `wrk -t1 -c16` at once, one per process, their req/s summed and the worse p50
and p99 taken. Printed: each round, the medians, the ratio AIFX / reference, and the CPU
seconds each process used over the rounds (which is where AIFX's time goes).

With --profile PROGRAM (e.g. `signal`), py-spy samples that process of the stack during
the first AIFX round and the functions it spent its time in are printed: where to look.

Run:  .venv/bin/pip install -r bench/requirements.txt   (FastAPI, uvicorn, py-spy: bench only)
      .venv/bin/python bench/rest_vs_fastapi.py [--rounds 3] [--duration 15] [--profile signal]
Needs wrk (Debian's `wrk`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from getme_load import WRK_MISSING, WrkResult, http, parse_wrk
from replica_scaling import cpu_by_process
from report import table

from tests.infra import free_port, stop_process
from tests.supervised_stack import SupervisedStack

SIGNAL_PATH = "/api/v1/trading/signal/EURUSD?timeframe=TIMEFRAME_H1"
BENCH_DIR = Path(__file__).resolve().parent
PASSWORD = "bench-password-1"


@dataclass
class Side:
    """One contender's rounds and the CPU seconds its processes used in them."""

    name: str
    rounds: list[tuple[float, float, float, int]] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)

    def median(self, column: int) -> float:
        return statistics.median(r[column] for r in self.rounds)


def sign_in(url: str) -> str:
    user = f"bench{os.getpid()}"
    status, body = http(
        "POST",
        url + "/api/v1/auth/register",
        {"email": f"{user}@example.com", "username": user, "password": PASSWORD},
    )
    if status != 200:
        raise RuntimeError(f"register failed: HTTP {status} {body}")
    token: str = body["tokens"]["accessToken"]
    return token


def wrk(args: argparse.Namespace, url: str, token: str, connections: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            args.wrk,
            "-t1",
            f"-c{connections}",
            f"-d{args.duration:g}s",
            "--latency",
            "--timeout",
            "10s",
            "-H",
            f"Authorization: Bearer {token}",
            url,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def load(
    args: argparse.Namespace, side: Side, urls: list[str], token: str, root: int, extra: dict
) -> None:
    """One round: wrk on every url at once (the connections split evenly), req/s summed,
    the worst p50/p99; CPU per process sampled while wrk runs."""
    each = args.connections // len(urls)
    runs = [wrk(args, url, token, each) for url in urls]
    try:
        before, started = cpu_by_process(root, extra), time.monotonic()
        time.sleep(max(0.0, args.duration - 0.5))  # a bench, not a test: the load's length
        after = cpu_by_process(root, extra)
        wall = time.monotonic() - started
        outputs = [run.communicate(timeout=args.duration + 30)[0] for run in runs]
    finally:
        for run in runs:
            stop_process(run)
    results: list[WrkResult] = []
    for run, output in zip(runs, outputs, strict=True):
        if run.returncode != 0:
            raise RuntimeError(f"wrk failed ({run.returncode}):\n{output}")
        results.append(parse_wrk(output))
    side.rounds.append(
        (
            sum(r.rps for r in results),
            max(r.p50 for r in results),
            max(r.p99 for r in results),
            sum(r.errors for r in results),
        )
    )
    for pid, (name, seconds) in after.items():
        if name.startswith("other:") or pid not in before:
            continue
        used = (seconds - before[pid][1]) * args.duration / wall
        side.cpu[name] = side.cpu.get(name, 0.0) + used


def start_profile(
    args: argparse.Namespace, stack: SupervisedStack, path: Path
) -> subprocess.Popen[bytes]:
    """py-spy sampling program `args.profile` of the stack for most of a round."""
    pid = stack.pid(args.profile)
    if not pid:
        raise RuntimeError(f"no program {args.profile!r} is running:\n{stack.ctl('status')}")
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "py-spy"),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, int(args.duration) - 2)),
            "--rate",
            "250",
            "--format",
            "raw",
            "--output",
            str(path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )


def print_profile(collapsed: str, top: int = 20) -> None:
    """The functions the profiled process spent its time in (py-spy's collapsed stacks):
    by their own time, and with what they called."""
    own: Counter[str] = Counter()
    within: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        samples = int(count)
        total += samples
        frames = stack.split(";")
        own[frames[-1]] += samples
        for frame in set(frames):
            within[frame] += samples
    print(f"\nprofile ({total} samples):")
    for title, counter in (("own time", own), ("with callees", within)):
        print(f"  {title}:")
        for frame, samples in counter.most_common(top):
            print(f"    {100 * samples / total:5.1f} %  {frame[:110]}")


def start_reference(
    workdir: Path, stack_url: str, token: str
) -> tuple[list[subprocess.Popen[bytes]], list[str]]:
    """Two uvicorn processes of bench/fastapi_reference.py, AIFX's JWKS and signal body
    saved for them; their signal URLs once both answer 200."""
    (workdir / "jwks.json").write_text(json.dumps(http("GET", stack_url + "/api/v1/auth/jwks")[1]))
    status, body = http("GET", stack_url + SIGNAL_PATH, token=token)
    if status != 200:
        raise RuntimeError(f"AIFX's signal read failed: HTTP {status} {body}")
    (workdir / "signal.json").write_text(json.dumps(body))
    env = os.environ | {
        "AIFX_REFERENCE_JWKS": str(workdir / "jwks.json"),
        "AIFX_REFERENCE_SIGNAL": str(workdir / "signal.json"),
        "AIFX_REFERENCE_ISSUER": "aifx",
        "AIFX_REFERENCE_AUDIENCE": "aifx",
    }
    processes, urls = [], []
    for n in range(2):
        port = free_port()
        log = (workdir / f"reference-{n + 1}.log").open("wb")
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "--app-dir",
                    str(BENCH_DIR),
                    "fastapi_reference:app",
                    "--port",
                    str(port),
                    "--no-access-log",
                    "--log-level",
                    "warning",
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        urls.append(f"http://127.0.0.1:{port}/api/v1/trading/signal/EURUSD?timeframe=TIMEFRAME_H1")
    deadline = time.monotonic() + 60
    while not all(_answers(url, token) for url in urls):
        if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
            raise RuntimeError("the FastAPI reference did not start; see reference-*.log")
        time.sleep(0.2)
    return processes, urls


def _answers(url: str, token: str) -> bool:
    try:
        return http("GET", url, token=token)[0] == 200
    except OSError:
        return False


def report(args: argparse.Namespace, aifx: Side, reference: Side) -> None:
    rows = []
    for side in (aifx, reference):
        for n, (rps, p50, p99, errors) in enumerate(side.rounds, start=1):
            rows.append([side.name, str(n), f"{rps:,.0f}", f"{p50:.1f}", f"{p99:.1f}", str(errors)])
    print(table(["", "round", "req/s", "p50 ms", "p99 ms", "errors"], rows))
    print()
    medians = [
        [s.name, f"{s.median(0):,.0f}", f"{s.median(1):.1f}", f"{s.median(2):.1f}"]
        for s in (aifx, reference)
    ]
    print(table(["median", "req/s", "p50 ms", "p99 ms"], medians))
    ratio = aifx.median(0) / reference.median(0)
    print(f"\nAIFX / reference: {ratio:.2f}x  (goal: at least 1.0x, p99 at most 20 ms)")
    print(f"\nCPU seconds over {len(aifx.rounds)} x {args.duration:g} s, by process:")
    for side in (aifx, reference):
        used = sorted(side.cpu.items(), key=lambda item: -item[1])
        per_request = sum(side.cpu.values()) / max(
            1.0, side.median(0) * args.duration * len(side.rounds)
        )
        print(
            f"  {side.name}: "
            + ", ".join(f"{name} {seconds:.1f}" for name, seconds in used if seconds >= 0.05)
            + f"  ({per_request * 1000:.2f} ms CPU per request)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per round")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--wrk", default=shutil.which("wrk") or "wrk")
    parser.add_argument("--keep-workdir", action="store_true")
    parser.add_argument("--profile", metavar="PROGRAM", help="py-spy this program (e.g. signal)")
    args = parser.parse_args()
    if not shutil.which(args.wrk):
        print(WRK_MISSING, file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="aifx-rest-vs-fastapi-"))
    aifx, reference = Side("AIFX"), Side("FastAPI")
    profiled: str | None = None
    try:
        with SupervisedStack(workdir, log_format="console") as stack:
            assert stack.process is not None
            token = sign_in(stack.url)
            stack.wait_until(
                lambda: _answers(stack.url + SIGNAL_PATH, token), "the first signal", 120
            )
            processes, urls = start_reference(workdir, stack.url, token)
            extra = {f"fastapi-{n + 1}": p.pid for n, p in enumerate(processes)}
            try:
                for n in range(args.rounds):
                    print(f"round {n + 1}/{args.rounds} …", flush=True)
                    profile = workdir / "profile.txt"
                    spy = start_profile(args, stack, profile) if args.profile and n == 0 else None
                    load(args, aifx, [stack.url + SIGNAL_PATH], token, stack.process.pid, {})
                    if spy is not None:
                        spy.wait(30)
                        profiled = profile.read_text()  # before the workdir goes
                    load(args, reference, urls, token, processes[0].pid, extra)
            finally:
                for process in processes:
                    stop_process(process)
    finally:
        if args.keep_workdir:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    report(args, aifx, reference)
    if profiled is not None:
        print_profile(profiled)
    return 0


if __name__ == "__main__":
    sys.exit(main())

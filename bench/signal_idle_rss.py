"""Resident memory of a real `python -m signal_svc`, idle, with the default settings.

Starts the service as `make run` would (embedded SQLite in a temporary AIFX_VAR_DIR,
migrations applied first, no Redis, replay of the bundled history at the default speed;
the inference service is not started, so signals come from the technical fallback) on
free ports, samples its VmRSS every --interval seconds for --seconds, then stops it with
SIGTERM. Prints the samples, the peak (VmHWM), and which of a few heavy packages the
process has loaded that it should not need offline (pandas, backtesting, bokeh,
yfinance, ...), seen from their compiled extensions in /proc/PID/maps (a pure-Python
package would not show there; bokeh comes with pandas, through backtesting).

At the default replay speed an hour bar closes every second, but the history starts on a
Friday evening: the first weekend gap lasts about 48 s, so run 60 s or more to see the
service compute and store signals (from the technical fallback) while sampled.

Target of issue 4: under 150 MB (the same budget the fan-out bench checks while serving
1,000 streams).

Run:  .venv/bin/python bench/signal_idle_rss.py [--seconds 75] [--interval 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from proc_stats import memory_mb, rss_parts

REPO_ROOT = Path(__file__).resolve().parents[1]
# Packages whose compiled extensions in the process's memory maps say they were imported.
WATCHED = ("pandas", "backtesting", "bokeh", "yfinance", "curl_cffi", "scipy", "onnxruntime")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mapped_packages(pid: int) -> list[str]:
    """WATCHED packages with a file mapped into the process (compiled extensions)."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return []
    return [name for name in WATCHED if f"/site-packages/{name}/" in maps]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=75.0)
    parser.add_argument("--interval", type=float, default=5.0)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="aifx-idle-rss-"))
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("AIFX_")  # the defaults, whatever the shell exports
    }
    env.update(
        AIFX_VAR_DIR=str(workdir),
        AIFX_SIGNAL_PORT=str(free_port()),
        AIFX_SIGNAL_METRICS_PORT=str(free_port()),
        AIFX_INFERENCE_TARGET=f"127.0.0.1:{free_port()}",  # nothing there: fallback
        AIFX_AUTH_TARGET=f"127.0.0.1:{free_port()}",
        AIFX_LOG_LEVEL="WARNING",
    )
    subprocess.run(
        [sys.executable, "-m", "common.migrations", "signal_svc"],
        cwd=workdir,
        env={**env, "PYTHONPATH": str(REPO_ROOT)},
        check=True,
        stdout=subprocess.DEVNULL,
    )
    log = (workdir / "signal_svc.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "signal_svc"],
        cwd=workdir,  # no .env of the repository
        env={**env, "PYTHONPATH": str(REPO_ROOT)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    samples: list[tuple[float, float]] = []
    started = time.monotonic()
    try:
        while (elapsed := time.monotonic() - started) < args.seconds:
            time.sleep(args.interval)
            if process.poll() is not None:
                print((workdir / "signal_svc.log").read_text()[-3000:])
                print(f"signal_svc exited with {process.returncode}")
                return 1
            samples.append((elapsed + args.interval, memory_mb(process.pid).get("VmRSS", 0.0)))
        loaded = mapped_packages(process.pid)
        peak = memory_mb(process.pid).get("VmHWM", 0.0)
        parts = rss_parts(process.pid)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()
    shutil.rmtree(workdir, ignore_errors=True)

    print("signal_svc idle RSS (MB) by seconds since start:")
    print("  " + "  ".join(f"{t:.0f}s:{mb:.0f}" for t, mb in samples))
    last = samples[-1][1] if samples else 0.0
    print(
        f"last {last:.0f} MB ({parts}), max sampled {max(mb for _, mb in samples):.0f} MB, "
        f"peak VmHWM {peak:.0f} MB"
    )
    print(f"heavy packages with compiled code mapped: {', '.join(loaded) or 'none'}")
    print(f"target < 150 MB: {'met' if peak < 150 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The whole stack as `make run` starts it — its programs' commands (stack/programs.py),
each a process of its own — on free ports, in a private var/ folder, for tests and
benchmarks that use AIFX the way its users do (a browser, socket.io-client, curl)
through Envoy.

Each process is started here rather than under supervisord, so a test can stop one
service mid-session (without it being restarted) and watch the rest cope.
Ready means the `ready` process printed its banner: every component answered its health
check.

    with FullStack(tmp_path, replay_speed=36_000) as stack:
        stack.url            # http://127.0.0.1:<envoy port>, the dashboard
        stack.stop("signal") # SIGTERM one service
        stack.start("signal")
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from common.settings import REPO_ROOT
from stack.programs import MODULES, command
from tests.infra import free_port

READY_BANNER = "AIFX is up."
START_TIMEOUT_SECONDS = 180.0  # a cold start on a busy 2-core machine
# Every port setting of common.settings.NetworkSettings (the notifier is not started).
PORTS = (
    "auth_port",
    "signal_port",
    "position_port",
    "inference_port",
    "model_server_port",
    "edge_port",
    "envoy_port",
    "envoy_admin_port",
    "auth_metrics_port",
    "signal_metrics_port",
    "position_metrics_port",
    "inference_metrics_port",
    "model_server_metrics_port",
    "edge_metrics_port",
)


def stack_commands() -> dict[str, list[str]]:
    """`make run`'s processes (one of each), by name, without the notifier (no Discord
    token here) and in the default layout (no AIFX_COMPACT core)."""
    return {name: command(name) for name in MODULES if name not in ("notifier", "core")}


def migrate(env: dict[str, str]) -> None:
    """`make run`'s first step: every service's migrations, with `env`'s settings."""
    subprocess.run(
        [sys.executable, "-m", "common.migrations"],
        cwd=REPO_ROOT,
        env=env,
        check=True,
        capture_output=True,
    )


def wait_for_banner(
    log: Callable[[], str], failure: Callable[[], str | None], context: Callable[[], str]
) -> None:
    """Until `log()` shows the ready banner; fail at once when `failure()` names one
    (a process exited), or after START_TIMEOUT_SECONDS, with `context()` (logs)."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if READY_BANNER in log():
            return
        problem = failure()
        if problem:
            raise RuntimeError(f"{problem}:\n{context()}")
        time.sleep(0.2)
    raise RuntimeError(f"the stack was not ready in {START_TIMEOUT_SECONDS:.0f} s:\n{context()}")


class FullStack:
    """`make run`'s processes with `settings` (AIFX_* names, lower case, no prefix)."""

    def __init__(self, workdir: Path, **settings: object) -> None:
        self.workdir = workdir
        self.ports = {name: free_port() for name in PORTS}
        env = {key: value for key, value in os.environ.items() if not key.startswith("AIFX_")}
        values = {"var_dir": workdir / "var", "log_format": "json", **self.ports, **settings}
        env |= {f"AIFX_{key.upper()}": str(value) for key, value in values.items()}
        # The venv's scripts (envoy, grpcurl) first, as `make run` puts them.
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        self.env = env
        self.commands = stack_commands()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['envoy_port']}"

    def log_path(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def start(self, name: str) -> None:
        """Start (or restart) one process, its output appended to <name>.log."""
        with self.log_path(name).open("ab") as log:
            self.processes[name] = subprocess.Popen(
                self.commands[name],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self, *names: str, timeout: float = 15.0) -> None:
        """SIGTERM these processes at once, then wait for each (SIGKILL if it lingers)."""
        running = [
            process
            for process in (self.processes.get(name) for name in names)
            if process is not None and process.poll() is None
        ]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in running:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def log(self, name: str, tail: int = 4000) -> str:
        path = self.log_path(name)
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def logs(self) -> str:
        """The tail of every process's log, for a failure message."""
        return "\n".join(f"--- {name} ---\n{self.log(name, 1500)}" for name in self.commands)

    def __enter__(self) -> FullStack:
        self.workdir.mkdir(parents=True, exist_ok=True)
        migrate(self.env)
        try:
            for name in self.commands:
                self.start(name)
            wait_for_banner(lambda: self.log("ready", tail=100_000), self._exited, self.logs)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _exited(self) -> str | None:
        # `ready` exits once it has printed the banner.
        exited = [
            n
            for n, p in self.processes.items()
            if p.poll() is not None and not (n == "ready" and p.returncode == 0)
        ]
        return f"{exited} exited while starting" if exited else None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        # Envoy and the edge first, so clients see the front door close, then the rest
        # together: each ends the streams it serves as it stops, so none waits out its
        # grace for a caller that is stopping too.
        self.stop("envoy", "ready", "edge")
        self.stop(*self.processes)

"""`make run` itself — `python -m stack`, supervisord and every process it starts — on
ports of its own, in a private var/ folder, for tests and benchmarks of replicas,
restarts and the one log stream.

    with SupervisedStack(tmp_path, replicas=2, database_url=..., redis_url=...) as stack:
        stack.url                 # Envoy, http://127.0.0.1:<port>
        stack.kill("signal-1")    # SIGKILL; supervisord starts it again
        stack.ctl("status")       # supervisorctl's answer

Unlike tests/full_stack.py (each process started by the test, so a test can keep one
down), here supervisord owns the processes, as it does for a user.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

from common.replicas import PORT_STEP
from common.settings import REPO_ROOT
from tests.full_stack import PORTS, migrate, wait_for_banner
from tests.infra import (
    REDIS_URL,
    bindable,
    create_postgres_database,
    drop_postgres_database,
    run_sync,
)

STOP_TIMEOUT_SECONDS = 60.0
# Below Linux's ephemeral range (32768-60999), so that no outgoing connection takes a
# replica's port between choosing it and binding it.
PORT_RANGE = (20_000, 31_000)
NOTIFIER_PORTS = ("notifier_port", "notifier_metrics_port")


def free_port_block(count: int, step: int = PORT_STEP) -> int:
    """A port p with p, p + step, … p + (count-1)·step all free now."""
    for _ in range(1000):
        base = random.randrange(*PORT_RANGE)
        if all(bindable(base + n * step) for n in range(count)):
            return base
    raise RuntimeError(f"no block of {count} free ports {step} apart")


class SupervisedStack:
    """`python -m stack` with AIFX_REPLICAS=`replicas` and `settings` (AIFX_* names,
    lower case, no prefix)."""

    def __init__(self, workdir: Path, *, replicas: int = 1, **settings: object) -> None:
        self.workdir = workdir
        self.replicas = replicas
        self.ports: dict[str, int] = {}
        for name in (*PORTS, *NOTIFIER_PORTS):
            while True:  # every replica's port free, and no two settings overlapping
                port = free_port_block(replicas)
                block = {port + n * PORT_STEP for n in range(replicas)}
                taken = {p + n * PORT_STEP for p in self.ports.values() for n in range(replicas)}
                if not block & taken:
                    self.ports[name] = port
                    break
        self.var_dir = workdir / "var"
        env = {key: value for key, value in os.environ.items() if not key.startswith("AIFX_")}
        values = {
            "var_dir": self.var_dir,
            "replicas": replicas,
            "log_format": "json",
            **self.ports,
            **settings,
        }
        env |= {f"AIFX_{key.upper()}": str(value) for key, value in values.items()}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        self.env = env
        self.log_path = workdir / "stack.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['envoy_port']}"

    def port(self, setting: str, replica: int = 1) -> int:
        """Replica `replica`'s port for `setting` (e.g. "signal_port")."""
        return self.ports[setting] + PORT_STEP * (replica - 1)

    def log(self, tail: int = 6000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-tail:]

    def ctl(self, *args: str) -> str:
        """supervisorctl against this stack's supervisord (its output; status exits
        non-zero when something is not running, which is an answer, not an error)."""
        done = subprocess.run(
            [
                str(Path(sys.executable).parent / "supervisorctl"),
                "-c",
                str(self.var_dir / "supervisord.conf"),
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return done.stdout + done.stderr

    def pid(self, name: str) -> int:
        """The pid of program `name` now (0 when it is not running)."""
        answer = self.ctl("pid", name).strip()
        return int(answer) if answer.isdigit() else 0

    def kill(self, name: str) -> int:
        """SIGKILL program `name` (as an OOM kill or a crash would); its old pid."""
        pid = self.pid(name)
        assert pid, f"{name} is not running:\n{self.ctl('status')}"
        os.kill(pid, signal.SIGKILL)
        return pid

    def running(self, name: str) -> bool:
        return " RUNNING " in f" {self.ctl('status', name)} "

    def wait_until(self, check: Callable[[], object], what: str, within: float = 60.0) -> None:
        """Poll `check` until it is truthy; after `within` seconds fail, naming `what`
        and showing the supervisor's status and the log's tail."""
        deadline = time.monotonic() + within
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{what}: not within {within:.0f} s\n{self.ctl('status')}\n{self.log()}"
                )
            time.sleep(0.1)

    def __enter__(self) -> SupervisedStack:
        self.workdir.mkdir(parents=True, exist_ok=True)
        migrate(self.env)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "stack"],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_for_banner(lambda: self.log(tail=1_000_000), self._exited, self.log)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _exited(self) -> str | None:
        assert self.process is not None
        return "make run exited while starting" if self.process.poll() is not None else None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        """Stop supervisord as Ctrl-C does (it stops every program first)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@contextlib.contextmanager
def supervised_replicas(workdir: Path, **settings: object) -> Iterator[SupervisedStack]:
    """AIFX_REPLICAS=2 on a fresh PostgreSQL database (dropped after) and Redis under a
    prefix of its own, replaying an hour a second, with `settings` on top."""
    name, url = run_sync(create_postgres_database())
    try:
        with SupervisedStack(
            workdir,
            replicas=2,
            database_url=url,
            redis_url=REDIS_URL,
            redis_prefix=f"aifx-{workdir.name}:",
            replay_speed=3600,
            **settings,
        ) as running:
            yield running
    finally:
        run_sync(drop_postgres_database(name))

"""A private `redis-server` for fault tests: started on a free port in the test's own
folder, stopped mid-test (SHUTDOWN NOSAVE, as a crash loses everything) and started
again on the same port — the shared Redis on 6379 is never touched.

    server = RedisServer(tmp_path / "redis")
    server.start()          # waits until it answers PING
    server.stop()           # gone: connections refused
    server.start()          # back, empty, on the same port
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.infra import free_port, stop_process

START_TIMEOUT_SECONDS = 20.0


def redis_server_binary() -> str | None:
    """Where `redis-server` is, or None."""
    return shutil.which("redis-server")


def _ping(port: int) -> bool:
    """One raw RESP PING (no client library: this runs in a worker thread or in sync
    code, and must not leave a pooled connection behind)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process, without persistence, on a fixed free port."""

    def __init__(self, workdir: Path, binary: str = "redis-server") -> None:
        self.workdir = workdir
        self.binary = binary
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.workdir / "redis.log"

    def start(self) -> None:
        """Start it (again, on the same port) and wait until it answers PING."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    "--port", str(self.port),
                    "--bind", "127.0.0.1",
                    "--dir", str(self.workdir),
                    "--save", "",
                    "--appendonly", "no",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not _ping(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start:\n{self.log()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Gone at once, nothing saved (SIGKILL: every client connection is reset, as
        when the Redis host dies)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
        stop_process(self.process)
        self.process = None

    @property
    def answering(self) -> bool:
        return _ping(self.port)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

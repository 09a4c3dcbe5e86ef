"""A private PostgreSQL cluster for fault tests: `initdb` in a folder of its own, served
on a free port, stopped mid-test and started again on the same port — the machine's
shared server on 5432 is never touched.

    cluster = PostgresCluster()
    cluster.start()          # initdb on first start; waits until it accepts connections
    cluster.stop()           # a fast shutdown: sessions terminated, connections refused
    cluster.start()          # back, data intact, on the same port
    cluster.remove()

PostgreSQL refuses to run as root, so under root (CI) initdb and the server run as the
`postgres` user, in a folder under /tmp that user owns (pytest's tmp_path is private to
root).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from tests.infra import free_port

START_TIMEOUT_SECONDS = 30


def postgres_bindir() -> Path | None:
    """The folder of initdb / pg_ctl: pg_config's answer, else Debian's newest."""
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        bindir = Path(subprocess.check_output([pg_config, "--bindir"], text=True).strip())
        if (bindir / "initdb").exists():
            return bindir
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class PostgresCluster:
    """One cluster with trust authentication for `postgres`, listening on 127.0.0.1."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="aifx-pg-"))
        self.data = self.root / "data"
        self._as_postgres: dict[str, Any] = {}
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self._as_postgres = {"user": owner.pw_uid, "group": owner.pw_gid}

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    def _run(self, *args: str) -> None:
        result = subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_SECONDS + 10,
            check=False,
            **self._as_postgres,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed:\n{result.stdout}{result.stderr}{self.log()}")

    def start(self) -> None:
        """initdb (the first time), then start and wait until it accepts connections."""
        if not self.data.exists():
            self._run(
                "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"
            )
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            "pg_ctl", "start", "-D", str(self.data), "-l", str(self.log_path),
            "-o", options, "-w", "-t", str(START_TIMEOUT_SECONDS),
        )  # fmt: skip

    def stop(self) -> None:
        """A fast shutdown: open sessions are terminated, then new connections refused."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w")

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

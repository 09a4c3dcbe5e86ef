"""What the notifier's end-to-end tests and its benchmarks share: linking many traders
through auth_svc's real link-code flow (or one through REST and `/link`, as a trader
does), and `python -m notifier` as a process of its own, pointed at the Discord
stand-in, at auth_svc and at the stream stand-in.

The notifier gets a clean environment (no AIFX_* variable of the caller's shell) and a
working directory without a `.env`, so it runs on exactly the settings given here.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from aifx.auth.v1 import auth_pb2
from common.settings import REPO_ROOT
from tests.auth.test_discord_links import credential, internal, linked_trader
from tests.discord_standin import TOKEN, DiscordStandin
from tests.envoy import PASSWORD
from tests.infra import AuthStack, free_port, stop_process

# Traders linked at once: enough to overlap bcrypt and the RPCs, not so many that the
# auth stack's pool (or a busy machine) makes some of them time out.
LINKING_CONCURRENCY = 16


async def link_traders(stack: AuthStack, count: int, **preferences: object) -> list[str]:
    """`count` new users, each registered, linked to a Discord id of its own through a
    link code, and given `preferences`; their Discord ids."""
    gate = asyncio.Semaphore(LINKING_CONCURRENCY)

    async def one() -> str:
        async with gate:
            return (await linked_trader(stack, **preferences))[1]

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def link_through_rest(
    http: httpx.AsyncClient,
    standin: DiscordStandin,
    discord_id: str,
    preferences: Mapping[str, Any],
) -> str:
    """A trader as a trader becomes one, through Envoy (`http`) and Discord: sign up, ask
    for a link code, send `/link CODE` from `discord_id`, set `preferences` (REST JSON
    names). Their access token."""
    tag = f"linked-{uuid.uuid4().hex[:10]}"
    body = {"email": f"{tag}@example.com", "username": tag, "password": PASSWORD}
    registered = await http.post("/api/v1/auth/register", json=body)
    registered.raise_for_status()
    token = str(registered.json()["tokens"]["accessToken"])
    headers = {"authorization": f"Bearer {token}"}
    code = await http.post("/api/v1/auth/discord/link-code", json={}, headers=headers)
    code.raise_for_status()
    record = await standin.interact("link", {"code": code.json()["code"]}, user_id=discord_id)
    await record.wait_for_followups(1, timeout=30.0)
    changed = await http.patch("/api/v1/auth/preferences", json=dict(preferences), headers=headers)
    changed.raise_for_status()
    return token


async def signal_recipients(
    stack: AuthStack, pair: str, timeframe: int, confidence: float
) -> dict[str, bool]:
    """Everyone auth_svc says gets a signal: Discord id → silent (every page)."""
    found: dict[str, bool] = {}
    token = ""
    while True:
        reply = await internal(stack).ListSignalRecipients(
            auth_pb2.ListSignalRecipientsRequest(
                pair=pair,
                timeframe=timeframe,
                confidence=confidence,
                page_size=1000,
                page_token=token,
            ),
            metadata=credential(stack),
        )
        found |= {r.discord_user_id: r.silent for r in reply.recipients}
        token = reply.next_page_token
        if not token:
            return found


def notifier_env(
    *,
    api_base: str,
    auth_target: str,
    stream_target: str,
    service_token: str,
    database_url: str,
    var_dir: Path,
    log_level: str = "INFO",
    **extra: str,
) -> dict[str, str]:
    """The notifier's environment: the stand-in's token and API base, auth_svc, both
    streams from the stream stand-in, inference nowhere (commands are not exercised),
    its own database and var dir, free ports, `extra` AIFX_* settings on top."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIFX_")}
    env |= {
        "AIFX_DISCORD_TOKEN": TOKEN,
        "AIFX_DISCORD_API_BASE": api_base,
        "AIFX_AUTH_TARGET": auth_target,
        "AIFX_SIGNAL_TARGET": stream_target,
        "AIFX_POSITION_TARGET": stream_target,
        "AIFX_INFERENCE_TARGET": f"127.0.0.1:{free_port()}",
        "AIFX_SERVICE_TOKEN": service_token,
        "AIFX_DATABASE_URL": database_url,
        "AIFX_VAR_DIR": str(var_dir),
        "AIFX_NOTIFIER_PORT": str(free_port()),
        "AIFX_NOTIFIER_METRICS_PORT": "0",
        "AIFX_LOG_LEVEL": log_level,
        "AIFX_ENV": "test",
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "gen")]),
    }
    env |= {f"AIFX_{key.upper()}": value for key, value in extra.items()}
    return env


class NotifierProcess:
    """`python -m notifier` in `workdir`, its output appended to `workdir/notifier.log`
    (across restarts, so a failure shows every run)."""

    def __init__(self, env: Mapping[str, str], workdir: Path) -> None:
        self.env = dict(env)
        self.workdir = workdir
        self.log_path = workdir / "notifier.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts} ---\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "notifier"],
                cwd=self.workdir,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash or an OOM kill."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        """SIGTERM (graceful), SIGKILL if it lingers; a no-op when not running."""
        if self.process is not None:
            stop_process(self.process)

    def log(self, tail: int = 6000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:] if self.log_path.exists() else ""

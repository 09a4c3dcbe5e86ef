"""Envoy restarted under load: the whole stack as `make run` starts it (embedded
SQLite, no Redis), a loop of REST reads (GetMe, GetSignal) and an SSE signal subscriber
running throughout, while Envoy — the only front door — is stopped and started again.

What is proved: the clients see errors only in the restart window (none before the
stop; the last within a bounded time after the new Envoy reports ready — it also has to
fetch the JWKS again before it accepts a token); the SSE subscriber reconnects by
itself, resuming after the last id it had (`resumeAfterId`, as EventSource does), and
its ids are exactly the stored signals from its first to its last: no gap across the
restart, no duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.envoy import http_client, unique_account
from tests.faults.journey import SIGNAL_PATH
from tests.faults.signal_stream import SignalSubscriber
from tests.full_stack import FullStack
from tests.infra import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

WITHIN = 30.0
# After the new Envoy is ready, how long errors may go on: its first JWKS fetch (through
# itself, retried every second) and the clients' reconnects. Generous: a busy machine.
RECOVERY_BOUND_SECONDS = 20.0


@dataclass
class Outcome:
    started: float
    ended: float
    error: str | None  # None: a 200


@dataclass
class LoadLoop:
    """REST reads one after the other, each outcome recorded with its times."""

    url: str
    token: str
    outcomes: list[Outcome] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        headers = {"authorization": f"Bearer {self.token}"}
        calls = [("/api/v1/auth/me", {}), (SIGNAL_PATH, {"timeframe": "1h"})]
        async with http_client(self.url) as http:
            n = 0
            while True:
                path, params = calls[n % len(calls)]
                n += 1
                started = time.monotonic()
                try:
                    response = await http.get(path, params=params, headers=headers, timeout=3.0)
                    error = None if response.status_code == 200 else str(response.status_code)
                except httpx.HTTPError as exc:
                    error = type(exc).__name__
                self.outcomes.append(Outcome(started, time.monotonic(), error))
                if error is not None:
                    await asyncio.sleep(0.05)  # a refused connection returns at once

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="REST load loop")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def successes_after(self, moment: float) -> int:
        return sum(1 for o in self.outcomes if o.error is None and o.started > moment)

    def errors(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.error is not None]


def envoy_ready(admin_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/ready", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def stored_ids(database: Path, first: int, last: int) -> list[int]:
    with contextlib.closing(sqlite3.connect(database, timeout=10)) as connection:
        rows = connection.execute(
            "SELECT id FROM signal_signals WHERE id BETWEEN ? AND ? ORDER BY id", (first, last)
        ).fetchall()
    return [int(row[0]) for row in rows]


async def test_envoy_restart_under_load(embedded_stack: FullStack) -> None:
    async with http_client(embedded_stack.url) as http:
        registered = await http.post("/api/v1/auth/register", json=unique_account("envoy"))
        assert registered.status_code == 200, registered.text
        token = registered.json()["tokens"]["accessToken"]
        headers = {"authorization": f"Bearer {token}"}

        async def signal_ready() -> bool:
            response = await http.get(SIGNAL_PATH, params={"timeframe": "1h"}, headers=headers)
            return response.status_code == 200

        await eventually(signal_ready, "the JWKS and a first signal", within=WITHIN, interval=0.2)

    load = LoadLoop(embedded_stack.url, token)
    subscriber = SignalSubscriber(embedded_stack.url, token, reconnect=True)
    load.start()
    subscriber.start()
    try:
        await eventually(lambda: load.successes_after(0) >= 20, "REST reads before the restart")
        await eventually(lambda: len(subscriber.ids) >= 5, "signals before the restart")
        assert load.errors() == [], load.errors()[:5]

        stopping = time.monotonic()
        await asyncio.to_thread(embedded_stack.stop, "envoy")
        await eventually(lambda: load.errors(), "the clients to see Envoy gone", within=WITHIN)
        await eventually(lambda: subscriber.breaks, "the stream to break", within=WITHIN)
        before_restart = len(subscriber.ids)

        embedded_stack.start("envoy")
        admin = embedded_stack.ports["envoy_admin_port"]
        await eventually(
            lambda: asyncio.to_thread(envoy_ready, admin), "the new Envoy", within=WITHIN
        )
        ready = time.monotonic()

        # Both clients are back by themselves and go on.
        await eventually(
            lambda: load.successes_after(ready) >= 20,
            "REST reads after the restart",
            within=RECOVERY_BOUND_SECONDS + WITHIN,
        )
        await eventually(
            lambda: len(subscriber.ids) >= before_restart + 10,
            "signals after the restart",
            within=RECOVERY_BOUND_SECONDS + WITHIN,
        )
    finally:
        await load.stop()
        await subscriber.stop()

    errors = load.errors()
    assert errors
    # Errors only in the restart window: none finished before the stop began, none
    # started later than the bound after the new Envoy was ready.
    assert min(o.ended for o in errors) >= stopping, errors[:3]
    last_error = max(o.started for o in errors)
    assert last_error <= ready + RECOVERY_BOUND_SECONDS, (last_error - ready, errors[-3:])
    kinds = sorted({o.error or "" for o in errors})

    # The stream: reconnected, resumed after its last id; exactly the stored signals.
    assert len(subscriber.connected_at) >= 2, subscriber.breaks
    ids = subscriber.ids
    assert ids == sorted(set(ids)), "a signal twice or out of order"
    database = embedded_stack.workdir / "var" / "aifx.db"
    assert ids == await asyncio.to_thread(stored_ids, database, ids[0], ids[-1])
    print(
        f"REST calls {len(load.outcomes)}, errors {len(errors)} ({kinds}) from "
        f"{min(o.started for o in errors) - stopping:+.2f} s after the stop to "
        f"{last_error - ready:+.2f} s after Envoy was ready; stream breaks "
        f"{len(subscriber.breaks)}, reconnected {subscriber.connected_at[-1] - ready:+.2f} s "
        f"after ready; {len(ids)} signals, none missing"
    )

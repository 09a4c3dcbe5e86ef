"""The model server, then the inference service, killed mid-run: the whole stack as
`make run` starts it (embedded SQLite, no Redis), replaying fast, with a REST reader and
an SSE subscriber running throughout.

What is proved, for each of the two: while it is down the next signals come from the
technical fallback and say so (stored, over REST and on the stream:
`SIGNAL_SOURCE_TECHNICAL_FALLBACK`), no REST call fails, and
the stream never breaks; once it is back (started again, nothing else restarted) model
signals resume by themselves — signal_svc's breaker lets a trial call through.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
from pathlib import Path

import pytest

from tests.envoy import http_client, unique_account
from tests.faults.journey import SIGNAL_PATH
from tests.faults.signal_stream import SignalSubscriber
from tests.faults.test_envoy_restart import LoadLoop
from tests.full_stack import FullStack
from tests.infra import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

MODEL = "SIGNAL_SOURCE_MODEL"
FALLBACK = "SIGNAL_SOURCE_TECHNICAL_FALLBACK"
# signal_svc's breaker waits AIFX_INFERENCE_RECOVERY_SECONDS (3 s here, conftest) before
# its trial call; a busy machine adds more.
WITHIN = 60.0


def newest_sources(database: Path, after_id: int) -> list[str]:
    """The stored `source` of every signal newer than `after_id`, oldest first."""
    with contextlib.closing(sqlite3.connect(database, timeout=10)) as connection:
        rows = connection.execute(
            "SELECT source FROM signal_signals WHERE id > ? ORDER BY id", (after_id,)
        ).fetchall()
    return [str(row[0]) for row in rows]


def newest_id(database: Path) -> int:
    with contextlib.closing(sqlite3.connect(database, timeout=10)) as connection:
        row = connection.execute("SELECT COALESCE(MAX(id), 0) FROM signal_signals").fetchone()
    return int(row[0])


@pytest.mark.parametrize("victim", ["model_server", "inference"])
async def test_a_dead_model_gives_marked_fallback_signals_then_model_signals_again(
    embedded_stack: FullStack, victim: str
) -> None:
    database = embedded_stack.workdir / "var" / "aifx.db"
    async with http_client(embedded_stack.url) as http:
        registered = await http.post("/api/v1/auth/register", json=unique_account("model"))
        assert registered.status_code == 200, registered.text
        token = registered.json()["tokens"]["accessToken"]
        headers = {"authorization": f"Bearer {token}"}

        async def rest_source() -> str | None:
            response = await http.get(SIGNAL_PATH, params={"timeframe": "1h"}, headers=headers)
            return str(response.json()["signal"]["source"]) if response.status_code == 200 else None

        async def rest_says(source: str) -> bool:
            return await rest_source() == source

        await eventually(lambda: rest_says(MODEL), "a first model signal", within=WITHIN)

        load = LoadLoop(embedded_stack.url, token)
        subscriber = SignalSubscriber(embedded_stack.url, token)
        load.start()
        subscriber.start()
        try:
            await eventually(lambda: len(subscriber.ids) >= 3, "signals on the stream")
            others = {n: p.pid for n, p in embedded_stack.processes.items() if n != victim}

            embedded_stack.processes[victim].send_signal(signal.SIGKILL)
            await asyncio.to_thread(embedded_stack.processes[victim].wait, 15)
            killed_after = await asyncio.to_thread(newest_id, database)

            async def fallback_stored() -> bool:
                sources = await asyncio.to_thread(newest_sources, database, killed_after)
                return FALLBACK.removeprefix("SIGNAL_SOURCE_").lower() in sources

            await eventually(fallback_stored, "a stored fallback signal", within=WITHIN)
            await eventually(
                lambda: rest_says(FALLBACK), "REST showing the fallback", within=WITHIN
            )
            await eventually(
                lambda: FALLBACK in subscriber.sources.values(),
                "the stream carrying a fallback signal",
                within=WITHIN,
            )
            embedded_stack.start(victim)
            back_after = await asyncio.to_thread(newest_id, database)

            async def model_stored_again() -> bool:
                sources = await asyncio.to_thread(newest_sources, database, back_after)
                return "model" in sources

            await eventually(model_stored_again, "model signals again", within=WITHIN)
            await eventually(lambda: rest_says(MODEL), "REST showing the model", within=WITHIN)
            await eventually(
                lambda: any(s == MODEL for i, s in subscriber.sources.items() if i > back_after),
                "the stream carrying model signals again",
                within=WITHIN,
            )
        finally:
            await load.stop()
            await subscriber.stop()

    # No user-facing error: every REST read answered 200, the stream never broke, and no
    # other process was restarted.
    assert load.outcomes and load.errors() == [], load.errors()[:5]
    assert subscriber.breaks == [], subscriber.breaks
    assert {n: p.pid for n, p in embedded_stack.processes.items() if n != victim} == others
    exited = {n: p.returncode for n, p in embedded_stack.processes.items() if p.poll() is not None}
    assert set(exited) <= {"ready"}, exited  # `ready` prints the banner and exits

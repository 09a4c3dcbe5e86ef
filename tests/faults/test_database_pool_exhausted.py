"""signal_svc's database pool exhausted by slow queries (README "Reliability and
security"): the whole stack on a database of its own on the shared PostgreSQL, with a
small pool (2 + 2 overflow connections per service) and short timeouts, and a lock this
test takes on the signals table so that every query of it hangs until the statement
timeout — the pool's connections all wait on it.

What is proved, through Envoy: while the pool is exhausted, GetSignal (a read with a
cached answer) still answers 200, with the last known signal once its cache entry has
expired; ListSignals (no cached answer) is a 503 with a JSON google.rpc.Status, never a
504 from a request that hung until Envoy's timeout, and some of them say the pool was
busy (DATABASE_BUSY, after the pool timeout) rather than the statement timing out. Once
the lock goes, everything answers again, and no candle lost its signal.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.envoy import http_client
from tests.faults.conftest import running_stack
from tests.faults.journey import (
    SIGNAL_PATH,
    SIGNALS_PATH,
    assert_fast_503,
    assert_one_signal_per_candle,
    bearer,
    login,
    register,
    status,
    stored_signal_series,
)
from tests.full_stack import FullStack
from tests.infra import REDIS_URL, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

WITHIN = 30.0
SLOW_READS = 12


@pytest.fixture
async def stack(
    tmp_path: Path, postgres_database: str, redis_prefix: str
) -> AsyncIterator[FullStack]:
    async with running_stack(
        tmp_path / "stack",
        redis_url=REDIS_URL,
        redis_prefix=redis_prefix,
        database_url=postgres_database,
        database_pool_size=2,
        database_pool_timeout_seconds=0.5,
        database_statement_timeout_seconds=2,
    ) as full:
        yield full


async def timed(call: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await call
    return response, time.monotonic() - started


async def test_cached_reads_answer_and_the_rest_fail_fast_when_the_pool_is_exhausted(
    stack: FullStack, postgres_database: str
) -> None:
    database_url = postgres_database
    async with http_client(stack.url) as http:
        user = await register(http, "pool")
        token = (await login(http, user))["accessToken"]
        headers = bearer(token)

        async def signal_ready() -> bool:
            return await status(http, SIGNAL_PATH, token, timeframe="1h") == 200

        await eventually(signal_ready, "a first EUR/USD 1h signal", within=WITHIN, interval=0.2)
        assert (await http.get(SIGNALS_PATH, headers=headers)).status_code == 200

        # --- the signals table locked: its queries hang until the statement timeout ---
        dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
        locker = await asyncpg.connect(dsn, timeout=5)
        lock = locker.transaction()
        await lock.start()
        await locker.execute("LOCK TABLE signal_signals IN ACCESS EXCLUSIVE MODE")
        try:
            slow = [
                asyncio.ensure_future(timed(http.get(SIGNALS_PATH, headers=headers)))
                for _ in range(SLOW_READS)
            ]
            # Meanwhile the cached read answers, again and again (its entry expires
            # every 0.5 s at this replay speed: then the last known signal answers).
            cached = []
            while not all(task.done() for task in slow):
                response, took = await timed(
                    http.get(SIGNAL_PATH, params={"timeframe": "1h"}, headers=headers)
                )
                assert response.status_code == 200, response.text
                cached.append(took)
            answers = [task.result() for task in slow]
        finally:
            await lock.rollback()
            await locker.close()

        for response, _took in answers:
            assert_fast_503("ListSignals", response)
        reasons = {r.json()["details"][0]["reason"] for r, _ in answers}
        assert "DATABASE_BUSY" in reasons, reasons

        # --- the lock gone: everything answers, nothing was lost ------------------------
        async def signals_listed() -> bool:
            return await status(http, SIGNALS_PATH, token) == 200

        await eventually(signals_listed, "ListSignals to answer again", within=WITHIN)
        await eventually(
            lambda: "signal store waits for the database" in stack.log("signal", 1_000_000),
            "the scheduler to have held a signal back",
            within=WITHIN,
        )
        assert_one_signal_per_candle(await stored_signal_series(database_url))
        slowest = max(took for _, took in answers)
        print(
            f"pool exhausted: {len(cached)} cached reads answered 200 (slowest "
            f"{max(cached) * 1000:.0f} ms); {SLOW_READS} uncached reads 503 "
            f"({sorted(reasons)}), slowest {slowest:.1f} s"
        )

"""PostgreSQL goes down under the running stack and comes back (README "Reliability and
security"): the whole stack as `make run` starts it, on a private PostgreSQL cluster
this test creates with initdb on its own port (the machine's shared server is never
touched) and the shared Redis under a key prefix of its own.

What is proved, through Envoy as a client sees it:
- PostgreSQL stopped: every call that needs the database fails fast with 503 and a JSON
  google.rpc.Status (code 14, a Retry-After, no trace or SQL), never the 504 of a
  request that hung until Envoy's timeout; the cached latest signal still answers; an
  open SSE subscription stays open;
- PostgreSQL started again on the same port, no service restarted: every call answers
  again, by itself;
- nothing lost, nothing twice: the signals of the candles that closed during the outage
  were stored once it ended (every series has exactly one signal per replayed candle,
  no gap around the outage), the subscriber received exactly the stored signals in
  order, and the position opened before the outage has exactly one open and one close
  event.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from tests.envoy import http_client
from tests.faults.conftest import running_stack
from tests.faults.journey import (
    POSITIONS_PATH,
    SIGNAL_PATH,
    SIGNALS_PATH,
    assert_fast_503,
    assert_nothing_restarted,
    assert_one_signal_per_candle,
    assert_received_exactly_the_stored,
    bearer,
    login,
    query,
    register,
    status,
    stored_signal_series,
)
from tests.faults.postgres_server import PostgresCluster, postgres_bindir
from tests.faults.signal_stream import SignalSubscriber
from tests.full_stack import FullStack
from tests.infra import REDIS_URL, eventually, unreachable

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

WITHIN = 30.0


@pytest.fixture
async def cluster() -> AsyncIterator[PostgresCluster]:
    bindir = postgres_bindir()
    if bindir is None:
        unreachable("PostgreSQL's initdb", FileNotFoundError("no initdb / pg_ctl found"))
        raise AssertionError("unreachable")
    cluster = PostgresCluster(bindir)
    await asyncio.to_thread(cluster.start)
    try:
        yield cluster
    finally:
        await asyncio.to_thread(cluster.remove)


@pytest.fixture
async def stack(
    tmp_path: Path, cluster: PostgresCluster, redis_prefix: str
) -> AsyncIterator[FullStack]:
    async with running_stack(
        tmp_path / "stack",
        redis_url=REDIS_URL,
        redis_prefix=redis_prefix,
        database_url=cluster.url(),
    ) as full:
        yield full


async def test_stack_survives_postgres_restart(stack: FullStack, cluster: PostgresCluster) -> None:
    async with http_client(stack.url) as http:
        user = await register(http, "pg")
        token = (await login(http, user))["accessToken"]
        headers = bearer(token)

        async def envoy_has_jwks() -> bool:
            return await status(http, "/api/v1/auth/me", token) == 200

        await eventually(envoy_has_jwks, "Envoy to fetch the JWKS", within=WITHIN, interval=0.2)

        async def signal_ready() -> bool:
            return await status(http, SIGNAL_PATH, token, timeframe="1h") == 200

        await eventually(signal_ready, "a first EUR/USD 1h signal", within=WITHIN, interval=0.2)
        subscriber = SignalSubscriber(stack.url, token)
        subscriber.start()
        await eventually(lambda: len(subscriber.ids) >= 5, "signals on the SSE stream")
        order = {"pair": "EURUSD", "side": "TRADE_ACTION_BUY", "lotSize": "0.10"}
        opened = await http.post(POSITIONS_PATH, json=order, headers=headers)
        assert opened.status_code == 200, opened.text
        position_id = opened.json()["position"]["id"]

        # --- PostgreSQL stops (a fast shutdown: its sessions are terminated) -----------
        await asyncio.to_thread(cluster.stop)
        seen_at_outage = len(subscriber.ids)
        calls: dict[str, Callable[[], Awaitable[httpx.Response]]] = {
            "GetPreferences": lambda: http.get("/api/v1/auth/preferences", headers=headers),
            "Login": lambda: http.post(
                "/api/v1/auth/login",
                json={"identifier": user["username"], "password": user["password"]},
            ),
            "ListPositions": lambda: http.get(POSITIONS_PATH, headers=headers),
            "OpenPosition": lambda: http.post(POSITIONS_PATH, json=order, headers=headers),
            "ClosePosition": lambda: http.post(
                f"{POSITIONS_PATH}/{position_id}:close", json={}, headers=headers
            ),
            "ListSignals": lambda: http.get(SIGNALS_PATH, headers=headers),
        }
        took: dict[str, float] = {}
        answers: dict[str, httpx.Response] = {}
        for name, call in calls.items():
            started = time.monotonic()
            answers[name] = await call()
            took[name] = time.monotonic() - started
        for name, response in answers.items():
            assert_fast_503(name, response)
        # Reads with a cached answer still answer: the latest signal (Redis) and the
        # signed-in user (auth_svc's in-process cache).
        cached = await http.get(SIGNAL_PATH, params={"timeframe": "1h"}, headers=headers)
        assert cached.status_code == 200, cached.text
        me = await http.get("/api/v1/auth/me", headers=headers)
        assert me.status_code == 200, me.text
        assert subscriber.running, subscriber.breaks
        await eventually(
            lambda: "signal store waits for the database" in stack.log("signal", 1_000_000),
            "the signal scheduler to hold a signal back for the database",
            within=WITHIN,
        )

        # --- PostgreSQL is back on the same port; no service restarted ----------------
        pids = {name: process.pid for name, process in stack.processes.items()}
        await asyncio.to_thread(cluster.start)
        started = time.monotonic()

        async def preferences_answer() -> bool:
            return await status(http, "/api/v1/auth/preferences", token) == 200

        await eventually(preferences_answer, "auth_svc to read again", within=WITHIN, interval=0.2)
        recovered_after = time.monotonic() - started
        await login(http, user)
        listed = await http.get(POSITIONS_PATH, headers=headers)
        assert listed.status_code == 200, listed.text
        closed = await http.post(f"{POSITIONS_PATH}/{position_id}:close", json={}, headers=headers)
        assert closed.status_code == 200, closed.text
        history = await http.get(SIGNALS_PATH, headers=headers)
        assert history.status_code == 200, history.text

        # The signals held back during the outage arrive, then new ones.
        await eventually(
            lambda: len(subscriber.ids) >= seen_at_outage + 30,
            "signals on the SSE stream after PostgreSQL returned",
            within=WITHIN,
        )
        assert_nothing_restarted(stack, pids)

        # Nothing lost, nothing twice.
        ids = await assert_received_exactly_the_stored(subscriber, cluster.url())
        series = await stored_signal_series(cluster.url())
        assert_one_signal_per_candle(series)
        events = await query(
            cluster.url(),
            "SELECT type FROM position_events WHERE position_id = $1 ORDER BY id",
            position_id,
        )
        assert [e["type"] for e in events] == ["opened", "closed"], events
        print(
            f"during the outage: {', '.join(f'{n} {t * 1000:.0f} ms' for n, t in took.items())}; "
            f"answering again {recovered_after:.1f} s after PostgreSQL started; signals "
            f"received {len(ids)}, {sum(len(t) for t in series.values())} stored"
        )

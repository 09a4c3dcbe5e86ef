"""Redis dies under the running stack and comes back (README: "Losing Redis degrades,
never fails"): the whole stack as `make run` starts it, on PostgreSQL (a fresh
database) and a private redis-server this test kills and restarts on the same port.

What is proved, through Envoy as a client sees it:
- with Redis, a logout handled by auth_svc is seen by signal_svc (another process);
- Redis gone: login, GetMe, GetSignal, list/open/close position all answer; an SSE
  subscriber keeps receiving signals; a logout still makes its access token refused
  (by the process that handled it, as documented); failed logins are still limited;
- Redis back on the same port, no service restarted: a new logout is again refused by
  signal_svc (the revocation went through Redis), signal_svc's relay publishes to the
  new Redis and its listener subscribes again, and the revocation made during the
  outage still holds (it did not before common/kv.py consulted its in-process copy on
  a Redis miss);
- nothing lost: the subscriber received exactly the stored signals, in order, from its
  first to its last, the outage included.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from tests.envoy import PASSWORD, http_client
from tests.faults.conftest import running_stack
from tests.faults.journey import (
    POSITIONS_PATH,
    SIGNAL_PATH,
    assert_nothing_restarted,
    assert_received_exactly_the_stored,
    bearer,
    login,
    logout,
    register,
    status,
)
from tests.faults.redis_server import RedisServer, redis_server_binary
from tests.faults.signal_stream import SignalSubscriber
from tests.full_stack import FullStack
from tests.infra import eventually, unreachable

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

# Every answer during the outage may pay one failed Redis call (0.5 s) first.
WITHIN = 30.0


async def every_rpc_answers(http: httpx.AsyncClient, account: dict[str, str]) -> None:
    """Login, GetMe, GetSignal, list / open / close a position: all succeed."""
    token = (await login(http, account))["accessToken"]
    me = await http.get("/api/v1/auth/me", headers=bearer(token))
    assert me.status_code == 200, me.text
    signal = await http.get(SIGNAL_PATH, params={"timeframe": "1h"}, headers=bearer(token))
    assert signal.status_code == 200, signal.text
    body = {"pair": "EURUSD", "side": "TRADE_ACTION_BUY", "lotSize": "0.10"}
    opened = await http.post(POSITIONS_PATH, json=body, headers=bearer(token))
    assert opened.status_code == 200, opened.text
    position_id = opened.json()["position"]["id"]
    listed = await http.get(
        POSITIONS_PATH, params={"status": "POSITION_STATUS_OPEN"}, headers=bearer(token)
    )
    assert listed.status_code == 200, listed.text
    assert position_id in [p["id"] for p in listed.json()["positions"]]
    closed = await http.post(
        f"{POSITIONS_PATH}/{position_id}:close", json={}, headers=bearer(token)
    )
    assert closed.status_code == 200, closed.text


async def refused_by_signal_svc(http: httpx.AsyncClient, account: dict[str, str]) -> bool:
    """Log in, log out, then call signal_svc with that access token (never used there
    before, so not remembered as live): True when signal_svc refuses it — it read the
    revocation auth_svc wrote, which only Redis carries between the two processes."""
    tokens = await login(http, account)
    await logout(http, tokens)
    return await status(http, SIGNAL_PATH, tokens["accessToken"], timeframe="1h") == 401


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    binary = redis_server_binary()
    if binary is None:
        unreachable("redis-server", FileNotFoundError("redis-server not on PATH"))
        raise AssertionError("unreachable")
    server = RedisServer(tmp_path / "redis", binary)
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


@pytest.fixture
async def stack(
    tmp_path: Path, redis_server: RedisServer, postgres_database: str
) -> AsyncIterator[FullStack]:
    async with running_stack(
        tmp_path / "stack",
        redis_url=redis_server.url,
        redis_prefix=f"faults-{uuid.uuid4().hex[:8]}:",
        database_url=postgres_database,
    ) as full:
        yield full


async def test_stack_survives_redis_restart(
    stack: FullStack, redis_server: RedisServer, postgres_database: str
) -> None:
    async with http_client(stack.url) as http:
        user = await register(http)
        token = (await login(http, user))["accessToken"]

        async def envoy_has_jwks() -> bool:
            return await status(http, "/api/v1/auth/me", token) == 200

        await eventually(envoy_has_jwks, "Envoy to fetch the JWKS", within=WITHIN, interval=0.2)

        async def signal_ready() -> bool:
            return await status(http, SIGNAL_PATH, token, timeframe="1h") == 200

        await eventually(signal_ready, "a first EUR/USD 1h signal", within=WITHIN, interval=0.2)
        subscriber = SignalSubscriber(stack.url, token)
        subscriber.start()
        await eventually(lambda: len(subscriber.ids) >= 5, "signals on the SSE stream")

        # With Redis: a logout reaches signal_svc (another process) through Redis.
        other = await register(http)
        assert await refused_by_signal_svc(http, other)
        await every_rpc_answers(http, user)

        # --- Redis dies ----------------------------------------------------------------
        await asyncio.to_thread(redis_server.stop)
        assert not redis_server.answering
        seen_at_outage = len(subscriber.ids)

        await every_rpc_answers(http, user)
        # The stream goes on: signals keep arriving on the open subscription.
        await eventually(
            lambda: len(subscriber.ids) >= seen_at_outage + 10,
            "signals on the SSE stream while Redis is down",
            within=WITHIN,
        )
        assert subscriber.running, subscriber.breaks

        # A logout during the outage: its access token is refused by auth_svc (which
        # handled it; other processes learn of it only through Redis, as documented).
        outage_tokens = await login(http, other)
        assert await status(http, "/api/v1/auth/me", outage_tokens["accessToken"]) == 200
        await logout(http, outage_tokens)
        assert await status(http, "/api/v1/auth/me", outage_tokens["accessToken"]) == 401

        # Failed logins are still limited (default: 5 per identifier per 5 minutes),
        # counted in process while Redis is gone.
        target = await register(http)
        wrong = {"identifier": target["username"], "password": PASSWORD + "!"}
        codes = [(await http.post("/api/v1/auth/login", json=wrong)).status_code for _ in range(6)]
        assert codes == [401] * 5 + [429], codes

        # The services noticed (their logs), and still no Redis.
        assert "redis unavailable" in stack.log("auth", tail=200_000)
        assert "signal relay lost Redis" in stack.log("signal", tail=200_000)
        assert not redis_server.answering

        # --- Redis is back, on the same port, empty; no service restarted ----------------
        pids = {name: process.pid for name, process in stack.processes.items()}
        await asyncio.to_thread(redis_server.start)
        started = time.monotonic()

        await eventually(
            lambda: refused_by_signal_svc(http, other),
            "signal_svc to refuse a token logged out through auth_svc after Redis returned",
            within=WITHIN,
            interval=0.5,
        )
        reconnected_after = time.monotonic() - started
        prefix = stack.env["AIFX_REDIS_PREFIX"]
        client = aioredis.Redis.from_url(redis_server.url)
        try:
            revoked = [key async for key in client.scan_iter(match=f"{prefix}revoked-jti:*")]
            assert revoked, "no revocation in the restarted Redis"
            # signal_svc's relay publishes new signals to the restarted Redis again.
            async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                await pubsub.subscribe(f"{prefix}signals")
                relayed = await eventually(
                    lambda: pubsub.get_message(timeout=0.5),
                    "a signal relayed through the restarted Redis",
                    within=WITHIN,
                )
            assert relayed["type"] == "message", relayed
        finally:
            await client.aclose()
        # The relay's listener subscribed again by itself (the first time: at start).
        await eventually(
            lambda: stack.log("signal", tail=1_000_000).count("signal relay listening") >= 2,
            "signal_svc's relay listener to subscribe again",
            within=WITHIN,
            interval=0.2,
        )

        # The revocation made during the outage still holds once Redis answers again.
        assert await status(http, "/api/v1/auth/me", outage_tokens["accessToken"]) == 401
        await every_rpc_answers(http, user)
        seen_at_return = len(subscriber.ids)
        await eventually(
            lambda: len(subscriber.ids) >= seen_at_return + 10,
            "signals on the SSE stream after Redis returned",
            within=WITHIN,
        )
        assert_nothing_restarted(stack, pids)

        # Nothing lost, nothing twice: exactly the stored signals, first to last.
        ids = await assert_received_exactly_the_stored(subscriber, postgres_database)
        print(
            f"signals received {len(ids)} ({seen_at_return - seen_at_outage} during the "
            f"outage); signal_svc read revocations from Redis again "
            f"{reconnected_after:.1f} s after it returned"
        )

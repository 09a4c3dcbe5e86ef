"""What a client of the fault tests does through Envoy: register, log in and out, read
a status; and what the database holds afterwards (to count signals lost or doubled)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import asyncpg
import httpx

from common.market import Timeframe
from signal_svc.market.series import close_times, default_history
from tests.envoy import unique_account
from tests.faults.signal_stream import SignalSubscriber
from tests.full_stack import FullStack

SIGNAL_PATH = "/api/v1/trading/signal/EURUSD"
SIGNALS_PATH = "/api/v1/trading/signals"
POSITIONS_PATH = "/api/v1/positions"
UNAVAILABLE = 14


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def register(http: httpx.AsyncClient, prefix: str = "fault") -> dict[str, str]:
    account = unique_account(prefix)
    response = await http.post("/api/v1/auth/register", json=account)
    assert response.status_code == 200, response.text
    return account


async def login(http: httpx.AsyncClient, account: dict[str, str]) -> dict[str, str]:
    response = await http.post(
        "/api/v1/auth/login",
        json={"identifier": account["username"], "password": account["password"]},
    )
    assert response.status_code == 200, response.text
    return dict(response.json()["tokens"])


async def logout(http: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    response = await http.post(
        "/api/v1/auth/logout",
        json={"refreshToken": tokens["refreshToken"]},
        headers=bearer(tokens["accessToken"]),
    )
    assert response.status_code == 200, response.text


async def status(http: httpx.AsyncClient, path: str, token: str, **params: Any) -> int:
    response = await http.get(path, params=params, headers=bearer(token))
    return response.status_code


async def query(database_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    """Rows of `sql`, read straight from PostgreSQL (not through the stack)."""
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
    connection = await asyncpg.connect(dsn, timeout=5)
    try:
        return list(await connection.fetch(sql, *args))
    finally:
        await connection.close()


async def stored_ids(database_url: str, first: int, last: int) -> list[int]:
    rows = await query(
        database_url,
        "SELECT id FROM signal_signals WHERE id BETWEEN $1 AND $2 ORDER BY id",
        first,
        last,
    )
    return [int(row["id"]) for row in rows]


def assert_fast_503(name: str, response: httpx.Response) -> None:
    """A 503 with a google.rpc.Status JSON body that says to retry, and nothing of the
    failure's insides."""
    assert response.status_code == 503, (name, response.status_code, response.text)
    body = response.json()
    assert body["code"] == UNAVAILABLE and body["message"], (name, body)
    assert response.headers.get("retry-after") == "1", (name, dict(response.headers))
    for leak in ("Traceback", "SELECT", "INSERT", "asyncpg", "sqlalchemy"):
        assert leak not in response.text, (name, response.text)


async def stored_signal_series(database_url: str) -> dict[tuple[str, str, int], list[int]]:
    """Candle close times (epoch seconds) of the stored signals per (pair, timeframe,
    replay lap)."""
    rows = await query(
        database_url,
        "SELECT pair, timeframe, replay_lap, candle_time FROM signal_signals ORDER BY id",
    )
    series: dict[tuple[str, str, int], list[int]] = defaultdict(list)
    for row in rows:
        key = (row["pair"], row["timeframe"], row["replay_lap"])
        series[key].append(int(row["candle_time"].timestamp()))
    return series


def assert_one_signal_per_candle(series: dict[tuple[str, str, int], list[int]]) -> None:
    """Each series' signals cover every replayed candle between its first and its last
    signal, once each: a candle whose signal was dropped is a gap."""
    history = default_history().series
    for (pair, timeframe, lap), times in series.items():
        candles = history[(pair, Timeframe(timeframe))]
        expected = [int(t) for t in close_times(candles) if min(times) <= t <= max(times)]
        assert sorted(times) == expected, (pair, timeframe, lap)


def assert_nothing_restarted(stack: FullStack, pids: dict[str, int]) -> None:
    """Every process has the pid it had (`pids`) and is alive: the stack recovered by
    itself."""
    assert {name: process.pid for name, process in stack.processes.items()} == pids
    alive = [p.poll() is None for name, p in stack.processes.items() if name != "ready"]
    assert all(alive), stack.logs()


async def assert_received_exactly_the_stored(
    subscriber: SignalSubscriber, database_url: str
) -> list[int]:
    """Stop the subscriber; it never lost its connection and received exactly the
    stored signals from its first to its last, in order, once each. Its ids."""
    await subscriber.stop()
    assert subscriber.breaks == [], subscriber.breaks
    ids = subscriber.ids
    assert ids == sorted(set(ids)), "a signal twice or out of order"
    assert ids == await stored_ids(database_url, ids[0], ids[-1])
    return ids

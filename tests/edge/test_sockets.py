"""The Socket.IO contract with python-socketio's own client against the bridge served
on aiohttp: the token refused and accepted, signals to subscribers, a resume that gets
what was missed, in order, once; notifications only to their owner; market:update; a
token's expiry warned, refreshed, or ending the socket."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import socketio
from aiohttp import web
from prometheus_client import REGISTRY

from common.access_tokens import AccessClaims
from common.errors import Unauthenticated
from edge.event_buffer import EventBuffer
from edge.sockets import MissedSignals, SocketBridge
from tests.infra import eventually


async def verify(token: str) -> AccessClaims:
    """ "good-<user>" lasts an hour, "short-<user>" a second; anything else is refused."""
    kind, _, user = token.partition("-")
    lifetimes = {"good": timedelta(hours=1), "short": timedelta(seconds=1)}
    if kind not in lifetimes:
        raise Unauthenticated("the access token has expired")
    now = datetime.now(UTC)
    return AccessClaims(user, "jti", frozenset({"user"}), now, now + lifetimes[kind])


@contextlib.asynccontextmanager
async def serving(
    missed_signals: MissedSignals | None = None,
) -> AsyncIterator[tuple[SocketBridge, str]]:
    """A bridge (reading resume gaps with `missed_signals`) served on a free port."""
    server = socketio.AsyncServer(async_mode="aiohttp")
    app = web.Application()
    server.attach(app)
    bridge = SocketBridge(
        server, verify, EventBuffer(size=10), EventBuffer(size=10), missed_signals
    )
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield bridge, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def bridge() -> AsyncIterator[tuple[SocketBridge, str]]:
    async with serving() as served:
        yield served


class Client:
    """A python-socketio client recording what it receives."""

    def __init__(self) -> None:
        self.io = socketio.AsyncClient(reconnection=False)
        self.signals: list[dict] = []
        self.errors: list[dict] = []
        self.refusals: list[dict] = []
        self.notifications: list[dict] = []
        self.markets: list[dict] = []
        self.warnings: list[dict] = []
        self.io.on("trading:signal", self.signals.append)
        self.io.on("notification", self.notifications.append)
        self.io.on("market:update", self.markets.append)
        self.io.on("auth:expiring", self.warnings.append)
        self.io.on("error", self.errors.append)
        self.io.on("connect_error", self.refusals.append)

    async def connect(self, url: str, token: str | None) -> None:
        await self.io.connect(
            url, auth={"token": token} if token else None, transports=["websocket"]
        )


def signal(n: int) -> dict:
    stored = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "id": str(n),
        "pair": "EUR/USD",
        "signal": "buy",
        "confidence": 0.7,
        "timestamp": stored,
    }


def quote(pair: str, price: float, timestamp: str = "2024-03-01T10:00:00.000Z") -> dict:
    return {"pair": pair, "price": price, "high": price, "low": price, "timestamp": timestamp}


def position_event(n: int, user: str) -> dict:
    return {
        "id": str(n),
        "type": "position_opened",
        "message": "opened",
        "position": {"userId": user},
    }


async def test_no_token_or_a_bad_one_is_refused_with_a_reason(bridge):
    _, url = bridge
    for token, says in ((None, "send your access token"), ("forged", "has expired")):
        client = Client()
        with pytest.raises(socketio.exceptions.ConnectionError):
            await client.connect(url, token)
        [refusal] = client.refusals
        assert refusal["data"] == {"code": "UNAUTHENTICATED"} and says in refusal["message"]


async def test_subscribers_get_signals_and_a_resume_gets_what_it_missed_once(bridge):
    relay, url = bridge
    live = Client()
    await live.connect(url, "good-alice")
    assert await live.io.call("subscribe:signals") == {"subscribed": "signals", "resumed": 0}
    for n in (1, 2, 3):
        await relay.relay_signal(signal(n))
    await eventually(lambda: len(live.signals) == 3, "three signals")
    late = Client()
    await late.connect(url, "good-bob")
    ack = await late.io.call("subscribe:signals", {"lastSignalId": "1"})
    assert ack == {"subscribed": "signals", "resumed": 2}
    await eventually(lambda: len(late.signals) == 2, "the two missed")
    await relay.relay_signal(signal(4))
    await eventually(lambda: len(late.signals) == 3 and len(live.signals) == 4, "the next")
    assert [s["id"] for s in late.signals] == ["2", "3", "4"]
    assert [s["id"] for s in live.signals] == ["1", "2", "3", "4"]
    # Each relayed signal's time from stored to written to every socket is measured.
    assert (REGISTRY.get_sample_value("aifx_edge_signal_delivery_seconds_count") or 0) >= 4
    for client in (live, late):
        await client.io.disconnect()


async def test_a_resume_from_too_long_ago_is_told_where_to_look(bridge):
    relay, url = bridge
    for n in range(1, 20):
        await relay.relay_signal(signal(n))
    client = Client()
    await client.connect(url, "good-carol")
    await client.io.emit("subscribe:signals", {"lastSignalId": "2"})
    await eventually(lambda: client.errors, "an error event")
    assert client.errors[0]["code"] == "RESUME_TOO_OLD"
    assert "/api/v1/trading/signals" in client.errors[0]["message"]
    await client.io.disconnect()


async def test_prices_reach_only_the_sockets_following_the_pair(bridge):
    relay, url = bridge
    eur, gbp = Client(), Client()
    quotes: dict[str, list[dict]] = {"eur": [], "gbp": []}
    eur.io.on("price:EUR/USD", quotes["eur"].append)
    gbp.io.on("price:EUR/USD", quotes["gbp"].append)
    await eur.connect(url, "good-dave")
    await gbp.connect(url, "good-erin")
    assert await eur.io.call("subscribe:price", "eurusd") == {"subscribed": "price:EUR/USD"}
    assert await gbp.io.call("subscribe:price", "GBP/USD") == {"subscribed": "price:GBP/USD"}
    await relay.relay_price(quote("EUR/USD", 1.0841))
    await eventually(lambda: quotes["eur"], "the EUR/USD quote")
    assert quotes["eur"] == [quote("EUR/USD", 1.0841)] and quotes["gbp"] == []
    assert await eur.io.call("unsubscribe:price", "EUR/USD") == {"unsubscribed": "price:EUR/USD"}
    await relay.relay_price(quote("EUR/USD", 1.0842))
    await relay.relay_price(quote("GBP/USD", 1.27))
    await eventually(lambda: gbp.io.connected, "still connected")
    assert len(quotes["eur"]) == 1
    for client in (eur, gbp):
        await client.io.disconnect()


async def test_a_bad_pair_gets_an_error_event_not_a_dropped_socket(bridge):
    _, url = bridge
    client = Client()
    await client.connect(url, "good-frank")
    assert await client.io.call("subscribe:price", "EURXYZ") is None
    await eventually(lambda: client.errors, "an error event")
    assert client.errors[0]["code"] == "INVALID_ARGUMENT"
    assert "EUR/XYZ is not a supported pair" in client.errors[0]["message"]
    assert client.io.connected
    await client.io.disconnect()


async def test_notifications_reach_only_their_owner_and_resume(bridge):
    relay, url = bridge
    alice, bob, nosy = Client(), Client(), Client()
    await alice.connect(url, "good-alice")
    await bob.connect(url, "good-bob")
    await nosy.connect(url, "good-mallory")
    for client in (alice, bob, nosy):
        ack = await client.io.call("subscribe:notifications")
        assert ack == {"subscribed": "notifications", "resumed": 0}
    await relay.relay_notification(position_event(1, "alice"))
    await relay.relay_notification(position_event(2, "bob"))
    await relay.relay_notification(position_event(3, "alice"))
    await eventually(lambda: len(alice.notifications) == 2 and bob.notifications, "delivery")
    assert [n["id"] for n in alice.notifications] == ["1", "3"]
    assert [n["id"] for n in bob.notifications] == ["2"]
    # Alice reconnects having seen 1: she gets 3 again (hers), never bob's 2.
    again = Client()
    await again.connect(url, "good-alice")
    ack = await again.io.call("subscribe:notifications", {"lastNotificationId": "1"})
    assert ack == {"subscribed": "notifications", "resumed": 1}
    await eventually(lambda: again.notifications, "the missed one")
    assert [n["id"] for n in again.notifications] == ["3"]
    assert nosy.notifications == []
    for client in (alice, bob, nosy, again):
        await client.io.disconnect()


async def test_market_update_on_subscribe_and_when_the_board_changes(bridge):
    relay, url = bridge
    await relay.relay_price(quote("EUR/USD", 1.0800, "2024-03-01T00:00:00.000Z"))
    await relay.relay_signal(signal(1))
    client = Client()
    await client.connect(url, "good-grace")
    await client.io.call("subscribe:signals")
    await eventually(lambda: client.markets, "the board at once")
    [row] = client.markets[0]["pairs"]
    assert row["pair"] == "EUR/USD" and row["signal"] == "buy" and row["change"] == 0.0
    broadcast = asyncio.create_task(relay.broadcast_market())
    try:
        await relay.relay_price(quote("EUR/USD", 1.0854, "2024-03-01T05:00:00.000Z"))
        await eventually(lambda: len(client.markets) >= 2, "the board after a move")
        [row] = client.markets[-1]["pairs"]
        assert row["price"] == 1.0854 and round(row["changePercent"], 3) == 0.5
    finally:
        broadcast.cancel()
    await client.io.disconnect()


async def test_an_expiring_token_is_warned_and_a_refresh_keeps_the_socket(bridge):
    _, url = bridge
    client = Client()
    old_expiry = datetime.now(UTC) + timedelta(seconds=1)
    await client.connect(url, "short-heidi")
    await eventually(lambda: client.warnings, "auth:expiring")
    assert await client.io.call("auth:refresh", {"token": "short-ivan"}) == {
        "ok": False,
        "code": "PERMISSION_DENIED",
        "message": "that token is another user's; connect again to switch users",
    }
    refused = await client.io.call("auth:refresh", {"token": "forged"})
    assert refused["ok"] is False and refused["code"] == "UNAUTHENTICATED"
    ack = await client.io.call("auth:refresh", {"token": "good-heidi"})
    assert ack["ok"] is True and ack["expiresAt"].endswith("Z")
    # Past the old token's end (plus a margin), the socket stays, told nothing more.
    await eventually(lambda: datetime.now(UTC) > old_expiry + timedelta(seconds=0.5), "time")
    await client.io.call("subscribe:signals")  # a round trip after any due timer
    assert client.io.connected and client.errors == []
    await client.io.disconnect()


async def test_an_expired_token_ends_its_socket_with_a_reason(bridge):
    _, url = bridge
    client = Client()
    await client.connect(url, "short-judy")
    await eventually(lambda: client.errors, "the expiry error")
    assert client.errors[0]["code"] == "TOKEN_EXPIRED"
    await eventually(lambda: not client.io.connected, "disconnected")

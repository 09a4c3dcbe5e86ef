"""The Socket.IO contract with python-socketio's own client against the bridge served
on aiohttp: the token refused and accepted, signals to subscribers, and a resume that
gets what was missed, in order, once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import socketio
from aiohttp import web

from common.access_tokens import AccessClaims
from common.errors import Unauthenticated
from edge.signal_buffer import SignalBuffer
from edge.sockets import SocketBridge
from tests.infra import eventually


async def verify(token: str) -> AccessClaims:
    if not token.startswith("good-"):
        raise Unauthenticated("the access token has expired")
    moment = datetime(2026, 12, 4, tzinfo=UTC)
    return AccessClaims(token.removeprefix("good-"), "jti", frozenset({"user"}), moment, moment)


@pytest.fixture
async def bridge() -> AsyncIterator[tuple[SocketBridge, str]]:
    server = socketio.AsyncServer(async_mode="aiohttp")
    app = web.Application()
    server.attach(app)
    bridge = SocketBridge(server, verify, SignalBuffer(size=10))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield bridge, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


class Client:
    """A python-socketio client recording what it receives."""

    def __init__(self) -> None:
        self.io = socketio.AsyncClient(reconnection=False)
        self.signals: list[dict] = []
        self.errors: list[dict] = []
        self.refusals: list[dict] = []
        self.io.on("trading:signal", self.signals.append)
        self.io.on("error", self.errors.append)
        self.io.on("connect_error", self.refusals.append)

    async def connect(self, url: str, token: str | None) -> None:
        await self.io.connect(
            url, auth={"token": token} if token else None, transports=["websocket"]
        )


def signal(n: int) -> dict:
    return {"id": str(n), "pair": "EUR/USD", "signal": "buy"}


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
    await relay.relay_price({"pair": "EUR/USD", "price": 1.0841})
    await eventually(lambda: quotes["eur"], "the EUR/USD quote")
    assert quotes["eur"] == [{"pair": "EUR/USD", "price": 1.0841}] and quotes["gbp"] == []
    assert await eur.io.call("unsubscribe:price", "EUR/USD") == {"unsubscribed": "price:EUR/USD"}
    await relay.relay_price({"pair": "EUR/USD", "price": 1.0842})
    await relay.relay_price({"pair": "GBP/USD", "price": 1.27})
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

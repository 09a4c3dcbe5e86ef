"""The edge as built for `python -m edge`: a real access token from auth_svc accepted
(verified with its keys), a forged one refused, and the signal stream relayed to
subscribers as the old system's `trading:signal` — python-socketio's own client."""

from __future__ import annotations

import pytest
import socketio

from tests.auth.test_auth_rpcs import register
from tests.edge.edge_stack import (  # noqa: F401 (the `edge` fixture)
    position_event,
    price_update,
    running_edge,
)
from tests.edge.test_sockets import Client
from tests.infra import eventually
from tests.notifier_e2e.stream_standin import signal_message


async def test_a_real_token_gets_the_relayed_signals_and_a_forged_one_is_refused(auth, edge):
    url, streams = edge.url, edge.streams
    forged = Client()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await forged.connect(url, "eyJhbGciOiJub25lIn0.e30.")
    assert forged.refusals[0]["data"] == {"code": "UNAUTHENTICATED"}

    token = (await register(auth)).tokens.access_token
    client = Client()
    await client.connect(url, token)
    assert await client.io.call("subscribe:signals") == {"subscribed": "signals", "resumed": 0}
    await eventually(lambda: streams.open_signal_streams >= 1, "the edge following signals")
    first = signal_message("101", "EUR/USD", "1h", confidence=0.7, entry=1.0841)
    await streams.publish(first)
    await eventually(lambda: client.signals, "a trading:signal")
    event = client.signals[0]
    assert (event["id"], event["pair"], event["timeframe"], event["signal"]) == (
        "101",
        "EUR/USD",
        "1h",
        "buy",
    )
    assert event["entryPrice"] == pytest.approx(1.0841) and event["signalStrength"] == "strong"
    await client.io.disconnect()


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_through_envoy_by_websocket_and_by_long_polling(auth, edge, transport):
    streams, public = edge.streams, edge.public
    token = (await register(auth)).tokens.access_token
    client = Client()
    await client.io.connect(public, auth={"token": token}, transports=[transport])
    assert client.io.transport() == transport
    await client.io.call("subscribe:signals")
    await eventually(lambda: streams.open_signal_streams >= 1, "the edge following signals")
    await streams.publish(signal_message("202", "GBP/USD", "4h", confidence=0.6, entry=1.27))
    await eventually(lambda: client.signals, "a trading:signal through Envoy")
    assert client.signals[0]["id"] == "202" and client.signals[0]["timeframe"] == "4h"
    # Not a polite disconnect: over long-polling that waits for the open poll (up to the
    # server's 25 s ping interval) to come back.
    await client.io.eio.disconnect(abort=True)


async def test_python_client_through_envoy_gets_its_own_notifications_prices_and_the_board(
    edge,
):
    (alice_token, alice), (bob_token, bob) = await edge.new_user(), await edge.new_user()
    clients = {"alice": Client(), "bob": Client()}
    quotes: list[dict] = []
    clients["alice"].io.on("price:EUR/USD", quotes.append)
    for name, token in (("alice", alice_token), ("bob", bob_token)):
        await clients[name].io.connect(edge.public, auth={"token": token}, transports=["websocket"])
        ack = await clients[name].io.call("subscribe:notifications")
        assert ack == {"subscribed": "notifications", "resumed": 0}
    await clients["alice"].io.call("subscribe:price", "EURUSD")
    await clients["alice"].io.call("subscribe:signals")
    await eventually(lambda: edge.streams.open_signal_streams >= 1, "the edge following")
    await edge.streams.publish_position_event(position_event(9001, alice, "opened"))
    await edge.streams.publish_position_event(position_event(9002, bob, "take_profit_hit"))
    await edge.streams.publish_price(price_update("EUR/USD", 1.0875))
    await eventually(
        lambda: clients["alice"].notifications and clients["bob"].notifications and quotes,
        "each user's notification and the quote",
    )
    assert [(n["id"], n["type"]) for n in clients["alice"].notifications] == [
        ("9001", "position_opened")
    ]
    assert [(n["id"], n["type"]) for n in clients["bob"].notifications] == [
        ("9002", "take_profit_hit")
    ]
    assert quotes[0]["pair"] == "EUR/USD" and quotes[0]["price"] == pytest.approx(1.0875)
    await eventually(
        lambda: any(
            row["pair"] == "EUR/USD" and row["price"] == pytest.approx(1.0875)
            for update in clients["alice"].markets
            for row in update["pairs"]
        ),
        "market:update with the quote",
    )
    for client in clients.values():
        await client.io.disconnect()

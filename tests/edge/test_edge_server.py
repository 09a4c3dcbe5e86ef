"""The edge as built for `python -m edge`: a real access token from auth_svc accepted
(verified with its keys), a forged one refused, and the signal stream relayed to
subscribers as the old system's `trading:signal` — python-socketio's own client."""

from __future__ import annotations

import pytest
import socketio

from tests.auth.test_auth_rpcs import register
from tests.edge.edge_stack import running_edge  # noqa: F401 (the `edge` fixture)
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

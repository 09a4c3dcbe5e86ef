"""The edge as built for `python -m edge`: a real access token from auth_svc accepted
(verified with its keys), a forged one refused, and the signal stream relayed to
subscribers as the old system's `trading:signal` — python-socketio's own client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import socketio
from aiohttp import web

from common.service_credentials import load_service_token
from edge.server import build
from tests.auth.test_auth_rpcs import register
from tests.edge.test_sockets import Client
from tests.infra import eventually
from tests.notifier_e2e.stream_standin import StreamStandin, signal_message


@pytest.fixture
async def edge(auth) -> AsyncIterator[tuple[str, StreamStandin]]:
    token = load_service_token(auth.settings)
    streams = StreamStandin(token)
    await streams.start()
    settings = auth.settings.replace(
        auth_target=auth.address, signal_target=streams.target, service_token=token
    )
    built = build(settings)
    runner = web.AppRunner(built.app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    built.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", streams
    finally:
        await runner.cleanup()
        for release in built.release:
            await release()
        await streams.stop()


async def test_a_real_token_gets_the_relayed_signals_and_a_forged_one_is_refused(auth, edge):
    url, streams = edge
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

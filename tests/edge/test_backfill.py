"""An edge that does not keep what a resuming client missed — it was just started,
after the client's own edge replica died — reads the gap from signal_svc, then hands
over to its own buffer and room: every signal once, in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from common.errors import Unavailable
from edge.sockets import SocketBridge
from tests.edge.test_sockets import Client, serving, signal
from tests.infra import eventually


class SignalSource:
    """signal_svc's replay, as the edge reads it: every stored signal after an id."""

    def __init__(self, stored: int) -> None:
        self.stored = stored
        self.asked: list[str] = []

    async def missed(self, after_id: str) -> list[dict]:
        self.asked.append(after_id)
        return [signal(n) for n in range(int(after_id) + 1, self.stored + 1)]


@pytest.fixture
async def fresh_edge() -> AsyncIterator[tuple[SocketBridge, SignalSource, str]]:
    source = SignalSource(stored=8)
    async with serving(source.missed) as (bridge, url):
        yield bridge, source, url


async def test_a_resume_older_than_the_buffer_is_read_from_signal_svc_once_in_order(
    fresh_edge,
):
    bridge, source, url = fresh_edge
    await bridge.relay_signal(signal(7))  # this edge has relayed only 7 so far
    client = Client()
    await client.connect(url, "good-zoe")
    subscribing = asyncio.create_task(client.io.call("subscribe:signals", {"lastSignalId": "5"}))
    # 6, 7 and 8 come from signal_svc; this edge's own stream then brings 8 (already
    # sent: not again) and 9 (new: once).
    await eventually(lambda: len(client.signals) == 3, "the three missed")
    await bridge.relay_signal(signal(8))
    assert await subscribing == {"subscribed": "signals", "resumed": 3}
    await bridge.relay_signal(signal(9))
    await eventually(lambda: len(client.signals) == 4, "the new one")
    assert [s["id"] for s in client.signals] == ["6", "7", "8", "9"]
    assert source.asked == ["5"]
    assert not client.errors
    await client.io.disconnect()


async def test_a_resume_the_buffer_covers_asks_signal_svc_nothing(fresh_edge):
    bridge, source, url = fresh_edge
    for n in (5, 6, 7):
        await bridge.relay_signal(signal(n))
    client = Client()
    await client.connect(url, "good-yan")
    assert await client.io.call("subscribe:signals", {"lastSignalId": "5"}) == {
        "subscribed": "signals",
        "resumed": 2,
    }
    await eventually(lambda: len(client.signals) == 2, "the two missed")
    assert source.asked == []
    await client.io.disconnect()


@pytest.mark.parametrize(
    "answer", [Unavailable("signal_svc did not answer"), None], ids=["down", "too many"]
)
async def test_a_gap_signal_svc_cannot_fill_sends_the_client_to_rest(answer):
    async def missed(after_id: str) -> list[dict] | None:
        if isinstance(answer, Exception):
            raise answer
        return answer

    async with serving(missed) as (bridge, url):
        await bridge.relay_signal(signal(9))
        client = Client()
        await client.connect(url, "good-xia")
        await client.io.emit("subscribe:signals", {"lastSignalId": "2"})
        await eventually(lambda: client.errors, "an error event")
        assert client.errors[0]["code"] == "RESUME_TOO_OLD"
        assert client.signals == []
        await client.io.disconnect()

"""Cross-replica fan-out through REAL Redis: two Broadcaster + RelayPublisher pairs are
two replicas. Losing Redis degrades to single-replica fan-out, never fails a publish,
and what the other replica produced meanwhile is caught up from the database."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from signal_svc.fanout import Broadcaster, Subscriber
from signal_svc.ports import SignalFilter
from signal_svc.redis_relay import RelayPublisher, decode, encode
from tests.infra import REDIS_URL, eventually, free_port
from tests.signal_streams.helpers import MemoryReader, make_signal

EVERYTHING = SignalFilter()


async def received_ids(subscriber: Subscriber, count: int, within: float = 5.0) -> list[int]:
    got = []
    async with asyncio.timeout(within):
        while len(got) < count:
            signal = await subscriber.next()
            assert signal is not None
            got.append(signal.id)
    return got


@contextlib.asynccontextmanager
async def replica(
    url: str, prefix: str, reader: MemoryReader | None = None, wait: bool = True
) -> AsyncIterator[RelayPublisher]:
    relay = RelayPublisher(Broadcaster(), url, prefix, reader=reader, cooldown_seconds=0.2)
    await relay.start()
    if wait:
        assert await relay.wait_listening(5)
    try:
        yield relay
    finally:
        await relay.stop()


class Outage:
    """A TCP proxy in front of the real Redis that can be taken down and brought back,
    closing every connection through it, as a Redis restart would."""

    def __init__(self) -> None:
        target = urlsplit(REDIS_URL)
        self.target = (target.hostname or "127.0.0.1", target.port or 6379)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def down(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._pipes):
            writer.close()
        await self._server.wait_closed()
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._pipes |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._pipes -= {writer, up_writer}


def test_the_payload_carries_the_whole_signal() -> None:
    signal = make_signal(42, signal_id=9)
    origin, decoded = decode(encode(signal, "replica-a"))
    assert origin == "replica-a" and decoded == signal


async def test_a_subscriber_on_replica_b_receives_what_replica_a_published(
    redis_prefix: str,
) -> None:
    async with replica(REDIS_URL, redis_prefix) as a, replica(REDIS_URL, redis_prefix) as b:
        on_a = a.broadcaster.subscribe(EVERYTHING)
        on_b = b.broadcaster.subscribe(EVERYTHING)
        for index in range(1, 6):
            await a.publish(make_signal(index, signal_id=index))
        await b.publish(make_signal(6, signal_id=6))
        got_b = await received_ids(on_b, 6)
        # A's signals in A's order; B's own (local at once) may overtake them.
        assert sorted(got_b) == [1, 2, 3, 4, 5, 6] and [i for i in got_b if i != 6] == [
            1,
            2,
            3,
            4,
            5,
        ]
        assert await received_ids(on_a, 6) == [1, 2, 3, 4, 5, 6]
        received = await b.broadcaster.subscribe(EVERYTHING).next(idle_seconds=0.2)
        assert received is None  # A's own echo was not delivered twice on A
        assert on_a.pending == 0 and on_b.pending == 0
        assert (a.relayed, b.received) == (5, 5)


async def test_redis_unreachable_publish_still_reaches_local_subscribers() -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    async with replica(dead, "aifx-test-dead:", wait=False) as relay:
        local = relay.broadcaster.subscribe(EVERYTHING)
        loop = asyncio.get_running_loop()
        started = loop.time()
        for index in range(1, 21):
            await relay.publish(make_signal(index, signal_id=index))
        assert loop.time() - started < 2.0  # one short timeout, then the cooldown
        assert await received_ids(local, 20) == list(range(1, 21))
        assert not relay.listening


async def test_without_redis_the_relay_is_local() -> None:
    relay = RelayPublisher(Broadcaster())
    await relay.start()
    local = relay.broadcaster.subscribe(EVERYTHING)
    await relay.publish(make_signal(1, signal_id=1))
    assert await received_ids(local, 1) == [1]
    assert not relay.uses_redis
    await relay.stop()


async def test_when_redis_returns_fan_out_resumes_and_the_outage_is_caught_up(
    redis_prefix: str,
) -> None:
    """B loses Redis; A goes on publishing (on its own Redis connection, still up);
    B's subscribers get those from the database when B is listening again, then live.
    What B published meanwhile reaches A's subscribers from B's backlog."""
    outage = Outage()
    await outage.up()
    database = MemoryReader()
    async with (
        replica(REDIS_URL, redis_prefix) as a,
        replica(outage.url, redis_prefix, reader=database) as b,
    ):
        on_a = a.broadcaster.subscribe(EVERYTHING)
        on_b = b.broadcaster.subscribe(EVERYTHING)

        async def produce(relay: RelayPublisher, index: int) -> None:
            await relay.publish(database.store(make_signal(index)))

        await produce(a, 1)
        assert await received_ids(on_b, 1) == [1]

        await outage.down()
        await eventually(lambda: not b.listening, "B to notice Redis is gone")
        for index in range(2, 5):
            await produce(a, index)  # missed live by B
        await produce(b, 5)  # B publishes during the outage: its own subscribers get it
        assert await received_ids(on_b, 1) == [5]

        await outage.up()
        assert await b.wait_listening(10)
        await produce(a, 6)
        assert sorted(await received_ids(on_b, 4)) == [2, 3, 4, 6]
        await produce(b, 7)
        assert sorted(await received_ids(on_a, 7)) == [1, 2, 3, 4, 5, 6, 7]
        # Nothing twice: a signal published now is the next each subscriber gets after
        # what it already has (a duplicate from the backlog or the catch-up would be
        # delivered before it).
        await produce(a, 8)
        assert await received_ids(on_b, 2) == [7, 8]
        assert await received_ids(on_a, 1) == [8]
        assert on_a.pending == on_b.pending == 0
    with contextlib.suppress(AssertionError):
        await outage.down()


@pytest.mark.parametrize("payload", [b"not json", b'{"signal": {"pair": 1}}', b"{}"])
async def test_an_unreadable_payload_is_skipped(redis_prefix: str, payload: bytes) -> None:
    import redis.asyncio as aioredis

    async with replica(REDIS_URL, redis_prefix) as b:
        on_b = b.broadcaster.subscribe(EVERYTHING)
        client = aioredis.Redis.from_url(REDIS_URL)
        await client.publish(b.channel, payload)
        await client.aclose()
        async with replica(REDIS_URL, redis_prefix) as a:
            await a.publish(make_signal(1, signal_id=1))
        assert await received_ids(on_b, 1) == [1]
        assert b.listening


async def test_stop_ends_a_listener_that_loses_its_first_cancellation(redis_prefix: str) -> None:
    """The listener waits on Redis all the time, where a cancellation can get lost on
    Python 3.11 (asyncio.wait_for, CPython gh-86296): stop() cancels it until it ends."""
    cancellations = 0

    async def stubborn_listener() -> None:
        nonlocal cancellations
        while True:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancellations += 1
                if cancellations > 1:
                    raise

    relay = RelayPublisher(Broadcaster(), REDIS_URL, redis_prefix)
    relay._listen = stubborn_listener  # type: ignore[method-assign]
    await relay.start()
    await asyncio.sleep(0)  # the listener is waiting
    stopping = asyncio.create_task(relay.stop())
    await asyncio.wait({stopping}, timeout=10.0)  # a bound that only turns a hang into a failure
    assert stopping.done(), "RelayPublisher.stop did not return"
    stopping.result()
    assert cancellations == 2
    assert not relay.listening

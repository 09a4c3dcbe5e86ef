"""The in-process Broadcaster: one publish reaches every matching subscriber, each
through its own bounded buffer; a full buffer disconnects only that subscriber."""

from __future__ import annotations

import asyncio

import pytest

from common.grpc_errors import to_status
from common.market import Timeframe
from signal_svc.fanout import Broadcaster, StreamClosed, Subscriber, SubscriberTooSlow
from signal_svc.ports import SignalFilter
from signal_svc.signals import Action
from tests.signal_streams.helpers import make_signal


async def collect(subscriber: Subscriber, count: int) -> list[int]:
    received = []
    async with asyncio.timeout(5):
        while len(received) < count:
            signal = await subscriber.next()
            assert signal is not None
            received.append(signal.id)
            subscriber.last_id = signal.id
    return received


async def test_one_publish_reaches_many_subscribers_in_order() -> None:
    broadcaster = Broadcaster(buffer_size=64)
    subscribers = [broadcaster.subscribe(SignalFilter()) for _ in range(500)]
    readers = [asyncio.create_task(collect(s, 40)) for s in subscribers]
    for index in range(1, 41):
        assert broadcaster.publish(make_signal(index, signal_id=index)) == 500
        await asyncio.sleep(0)
    results = await asyncio.gather(*readers)
    assert all(received == list(range(1, 41)) for received in results)


async def test_filters_are_applied_at_publish() -> None:
    broadcaster = Broadcaster()
    eur_h1 = broadcaster.subscribe(
        SignalFilter(pairs=frozenset({"EUR/USD"}), timeframes=frozenset({Timeframe.H1}))
    )
    confident = broadcaster.subscribe(SignalFilter(min_confidence=0.8))
    sells = broadcaster.subscribe(SignalFilter(actions=frozenset({Action.SELL})))
    broadcaster.publish(make_signal(1, signal_id=1, confidence=0.9))
    broadcaster.publish(make_signal(2, signal_id=2, timeframe=Timeframe.H4))
    broadcaster.publish(make_signal(3, signal_id=3, pair="GBP/USD", action=Action.SELL))
    assert [eur_h1.pending, confident.pending, sells.pending] == [1, 1, 1]
    assert (await eur_h1.next()).id == 1  # type: ignore[union-attr]
    assert (await confident.next()).id == 1  # type: ignore[union-attr]
    assert (await sells.next()).id == 3  # type: ignore[union-attr]


async def test_a_never_reading_subscriber_is_disconnected_and_the_others_get_everything() -> None:
    """Overflow policy: the subscriber whose buffer is full is dropped from the
    broadcaster (nothing more is buffered for it) and its next read raises
    RESOURCE_EXHAUSTED naming the id to resume after; the others lose nothing."""
    broadcaster = Broadcaster(buffer_size=8)
    stuck = broadcaster.subscribe(SignalFilter())
    stuck.last_id = 41  # what its stream had sent before it stopped reading
    healthy = [broadcaster.subscribe(SignalFilter()) for _ in range(20)]
    readers = [asyncio.create_task(collect(s, 100)) for s in healthy]
    for index in range(1, 101):
        broadcaster.publish(make_signal(index, signal_id=index))
        await asyncio.sleep(0)  # readers keep up; `stuck` never reads
    results = await asyncio.gather(*readers)
    assert all(received == list(range(1, 101)) for received in results)

    assert stuck.overflowed and stuck.pending == 0
    assert len(broadcaster) == 20 and broadcaster.disconnected == 1
    with pytest.raises(SubscriberTooSlow) as raised:
        await stuck.next()
    assert raised.value.last_id == 41
    assert "resume_after_id=41" in raised.value.message
    status = to_status(raised.value)
    assert status.code.name == "RESOURCE_EXHAUSTED"


async def test_publishing_never_waits_for_subscribers() -> None:
    """10,000 subscribers, none reading: publishing is a loop of appends."""
    broadcaster = Broadcaster(buffer_size=4)
    subscribers = [broadcaster.subscribe(SignalFilter()) for _ in range(10_000)]
    loop = asyncio.get_running_loop()
    started = loop.time()
    for index in range(1, 5):
        broadcaster.publish(make_signal(index, signal_id=index))
    assert loop.time() - started < 0.5
    assert all(s.pending == 4 for s in subscribers)
    broadcaster.publish(make_signal(5, signal_id=5))  # every buffer overflows
    assert len(broadcaster) == 0


async def test_a_signal_delivered_twice_to_the_process_is_published_once() -> None:
    broadcaster = Broadcaster()
    subscriber = broadcaster.subscribe(SignalFilter())
    signal = make_signal(1, signal_id=7)
    assert broadcaster.publish(signal) == 1
    assert broadcaster.publish(signal) == 0
    assert subscriber.pending == 1


async def test_next_times_out_with_none_and_close_ends_every_stream() -> None:
    broadcaster = Broadcaster()
    subscriber = broadcaster.subscribe(SignalFilter())
    assert await subscriber.next(idle_seconds=0.01) is None
    waiting = asyncio.create_task(subscriber.next())
    await asyncio.sleep(0)
    broadcaster.close()
    with pytest.raises(StreamClosed):
        await waiting
    assert to_status(StreamClosed("x")).code.name == "UNAVAILABLE"
    with pytest.raises(StreamClosed):
        await broadcaster.subscribe(SignalFilter()).next()


async def test_unsubscribe_stops_buffering() -> None:
    broadcaster = Broadcaster()
    subscriber = broadcaster.subscribe(SignalFilter())
    broadcaster.unsubscribe(subscriber)
    assert broadcaster.publish(make_signal(1, signal_id=1)) == 0
    assert subscriber.pending == 0

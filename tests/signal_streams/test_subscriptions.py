"""The resume seam: replay from the database, a heartbeat, then live, with no gap and no
duplicate; heartbeats when idle; unknown resume ids refused."""

from __future__ import annotations

import asyncio

import pytest

from common.errors import InvalidArgument
from common.market import Timeframe
from signal_svc.fanout import Broadcaster, SubscriberTooSlow
from signal_svc.ports import SignalFilter
from signal_svc.repository import SignalRepository
from signal_svc.signals import Signal
from signal_svc.subscriptions import Heartbeat, subscribe
from tests.signal_streams.helpers import MemoryReader, ids, make_signal, take

EVERYTHING = SignalFilter()


def kinds(events: list) -> str:  # type: ignore[type-arg]
    return "".join("H" if isinstance(e, Heartbeat) else "S" for e in events)


async def test_live_only_starts_with_a_heartbeat_then_delivers_what_is_published() -> None:
    reader, broadcaster = MemoryReader(), Broadcaster()
    stream = subscribe(EVERYTHING, None, reader, broadcaster, heartbeat_seconds=5)
    first = await take(stream, 1)
    assert kinds(first) == "H" and len(broadcaster) == 1
    for index in range(3):
        broadcaster.publish(reader.store(make_signal(index)))
    assert ids(await take(stream, 3)) == [1, 2, 3]
    await stream.aclose()
    assert len(broadcaster) == 0


async def test_resume_across_a_disconnect_loses_nothing_and_repeats_nothing() -> None:
    reader, broadcaster = MemoryReader(), Broadcaster()
    stream = subscribe(EVERYTHING, None, reader, broadcaster, heartbeat_seconds=5)
    await take(stream, 1)
    for index in range(5):
        broadcaster.publish(reader.store(make_signal(index)))
    received = ids(await take(stream, 3))
    assert received == [1, 2, 3]
    await stream.aclose()  # disconnected with 4 and 5 unread, and more come meanwhile
    for index in range(5, 12):
        broadcaster.publish(reader.store(make_signal(index)))

    resumed = subscribe(EVERYTHING, received[-1], reader, broadcaster, heartbeat_seconds=5)
    events = await take(resumed, 10)
    assert kinds(events) == "S" * 9 + "H"
    assert ids(events) == list(range(4, 13))
    broadcaster.publish(reader.store(make_signal(12)))
    assert ids(await take(resumed, 1)) == [13]
    await resumed.aclose()


async def test_signals_published_during_the_replay_cross_the_seam_once() -> None:
    """While the replay reads page after page, new signals are stored then published:
    some are replayed (read after being stored) AND buffered live, one is stored during
    the replay but published only after it; each is delivered exactly once, in order."""
    reader, broadcaster = MemoryReader(), Broadcaster(buffer_size=64)
    for index in range(20):
        reader.store(make_signal(index))
    late: list[Signal] = []

    async def producer_runs() -> None:
        if reader.reads <= 4:
            for _ in range(2):
                broadcaster.publish(reader.store(make_signal(reader.next_id)))
        if reader.reads == 5:
            late.append(reader.store(make_signal(reader.next_id)))  # not published yet

    reader.before_read = producer_runs
    stream = subscribe(EVERYTHING, 5, reader, broadcaster, heartbeat_seconds=5, page_size=4)
    events: list[Signal | Heartbeat] = []
    async with asyncio.timeout(5):
        async for event in stream:
            events.append(event)
            if isinstance(event, Heartbeat):
                break
    replayed = ids(events)
    assert replayed == list(range(6, reader.next_id))  # stored so far, in order
    assert reader.reads > 5
    reader.before_read = None
    broadcaster.publish(late[0])  # its live copy: already replayed, skipped
    broadcaster.publish(reader.store(make_signal(99)))
    live = await take(stream, 1)
    assert ids(live) == [reader.next_id - 1]
    await stream.aclose()


async def test_a_smaller_id_committed_late_is_still_delivered_live() -> None:
    """Ids are not committed in order across replicas: a signal with a smaller id than
    the last replayed one, published after the replay, must not be dropped."""
    reader, broadcaster = MemoryReader(), Broadcaster()
    for index in range(3):
        reader.store(make_signal(index))
    slow_id = reader.reserve_id()  # 4: allocated, not committed yet
    reader.store(make_signal(10))  # 5: committed
    stream = subscribe(EVERYTHING, 1, reader, broadcaster, heartbeat_seconds=5)
    events = await take(stream, 4)
    assert ids(events) == [2, 3, 5] and kinds(events) == "SSSH"
    broadcaster.publish(reader.store(make_signal(11), slow_id))
    assert ids(await take(stream, 1)) == [4]
    await stream.aclose()


async def test_heartbeats_when_idle() -> None:
    reader, broadcaster = MemoryReader(), Broadcaster()
    stream = subscribe(EVERYTHING, None, reader, broadcaster, heartbeat_seconds=0.05)
    loop = asyncio.get_running_loop()
    started = loop.time()
    events = await take(stream, 4, within=2)
    assert kinds(events) == "HHHH"
    assert 0.12 <= loop.time() - started < 1.0
    broadcaster.publish(reader.store(make_signal(1)))
    assert kinds(await take(stream, 2, within=2)) == "SH"
    await stream.aclose()


async def test_the_filter_applies_to_the_replay_and_to_live() -> None:
    reader, broadcaster = MemoryReader(), Broadcaster()
    wanted = SignalFilter(timeframes=frozenset({Timeframe.H4}), min_confidence=0.6)
    reader.store(make_signal(0))
    reader.store(make_signal(1, timeframe=Timeframe.H4))
    reader.store(make_signal(2, timeframe=Timeframe.H4, confidence=0.5))
    stream = subscribe(wanted, 1, reader, broadcaster, heartbeat_seconds=5)
    assert ids(await take(stream, 2)) == [2]
    broadcaster.publish(reader.store(make_signal(3)))
    broadcaster.publish(reader.store(make_signal(4, timeframe=Timeframe.H4)))
    assert ids(await take(stream, 1)) == [5]
    await stream.aclose()


@pytest.mark.parametrize("resume_after_id", [0, 4, 999])
async def test_unknown_resume_ids_are_refused_before_anything_is_sent(
    resume_after_id: int,
) -> None:
    reader, broadcaster = MemoryReader(), Broadcaster()
    reader.store(make_signal(0))
    reader.store(make_signal(1))
    reader.store(make_signal(2), signal_id=5)  # 3 and 4 were never stored
    stream = subscribe(EVERYTHING, resume_after_id, reader, broadcaster)
    with pytest.raises(InvalidArgument) as raised:
        await anext(stream)
    assert [v.field for v in raised.value.violations] == ["resume_after_id"]
    assert len(broadcaster) == 0


async def test_falling_behind_during_a_long_replay_recovers_from_the_database() -> None:
    """More live signals than the buffer holds arrive during the replay: the stream
    re-registers and reads on from the database, still losing and repeating nothing."""
    reader, broadcaster = MemoryReader(), Broadcaster(buffer_size=3)
    for index in range(10):
        reader.store(make_signal(index))

    async def burst() -> None:
        if reader.reads <= 3:
            for _ in range(5):
                broadcaster.publish(reader.store(make_signal(reader.next_id)))

    reader.before_read = burst
    stream = subscribe(EVERYTHING, 2, reader, broadcaster, heartbeat_seconds=5, page_size=4)
    events: list[Signal | Heartbeat] = []
    async with asyncio.timeout(5):
        async for event in stream:
            events.append(event)
            if isinstance(event, Heartbeat):
                break
    assert ids(events) == list(range(3, reader.next_id))
    reader.before_read = None
    broadcaster.publish(reader.store(make_signal(50)))
    assert ids(await take(stream, 1)) == [reader.next_id - 1]
    await stream.aclose()


async def test_a_live_subscriber_that_stops_reading_is_told_where_to_resume() -> None:
    reader, broadcaster = MemoryReader(), Broadcaster(buffer_size=4)
    stream = subscribe(EVERYTHING, None, reader, broadcaster, heartbeat_seconds=5)
    await take(stream, 1)
    broadcaster.publish(reader.store(make_signal(0)))
    assert ids(await take(stream, 1)) == [1]
    for index in range(1, 10):
        broadcaster.publish(reader.store(make_signal(index)))
    with pytest.raises(SubscriberTooSlow, match="resume_after_id=1 "):
        await anext(stream)
    resumed = subscribe(EVERYTHING, 1, reader, broadcaster, heartbeat_seconds=5)
    assert ids(await take(resumed, 10)) == list(range(2, 11))
    await resumed.aclose()


async def test_resume_on_the_real_repository(repository: SignalRepository) -> None:
    """The same seam on the real repository (SQLite and PostgreSQL): store, then publish,
    as the scheduler does; disconnect; resume with the last id received."""
    broadcaster = Broadcaster()

    async def produce(index: int) -> Signal:
        stored = await repository.store(make_signal(index))
        assert stored is not None
        broadcaster.publish(stored)
        return stored

    first = [await produce(index) for index in range(3)]
    stream = subscribe(EVERYTHING, first[0].id, repository, broadcaster, heartbeat_seconds=5)
    events = await take(stream, 3)
    assert ids(events) == [s.id for s in first[1:]] and kinds(events) == "SSH"
    more = [await produce(index) for index in range(3, 6)]
    got = await take(stream, 2)
    assert ids(got) == [s.id for s in more[:2]]
    await stream.aclose()
    missed = [await produce(index) for index in range(6, 9)]

    resumed = subscribe(EVERYTHING, got[-1].id, repository, broadcaster, heartbeat_seconds=5)  # type: ignore[union-attr]
    events = await take(resumed, 5)
    assert ids(events) == [more[2].id] + [s.id for s in missed]
    assert kinds(events) == "SSSSH"
    live = await produce(9)
    assert ids(await take(resumed, 1)) == [live.id]
    await resumed.aclose()

    with pytest.raises(InvalidArgument):
        await anext(subscribe(EVERYTHING, live.id + 1000, repository, broadcaster))

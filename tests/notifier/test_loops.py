"""The notifier's loops with fakes at the ports: following resumes after the ledger's
cursor on every reconnection (no signal skipped or owed twice), backs off while the
stream is down, and sending wakes when something is owed."""

from __future__ import annotations

import asyncio
import contextlib

from common.errors import Unavailable
from notifier.fanout import Sender, SignalFanout
from notifier.loops import follow, send_owed
from tests.infra import eventually
from tests.notifier.test_fanout import (  # noqa: F401 (fixtures)
    PEOPLE,
    Closed,
    FakeDiscord,
    Recipients,
    ledger,
    migrated,
    signal,
)


class FlakyStream:
    """Signals by id; the connection breaks after `per_connection` of them."""

    def __init__(self, ids: list[str], per_connection: int) -> None:
        self.ids = ids
        self.per_connection = per_connection
        self.resumed_after: list[str | None] = []

    async def signals(self, resume_after_id: str | None):
        self.resumed_after.append(resume_after_id)
        # An id from before this stream's signals (another test's) resumes at the start.
        start = self.ids.index(resume_after_id) + 1 if resume_after_id in self.ids else 0
        for index, signal_id in enumerate(self.ids[start:]):
            if index == self.per_connection:
                raise Unavailable("signal_svc did not answer")
            yield signal(signal_id)
        await asyncio.Event().wait()  # live: nothing more for now


async def test_following_resumes_after_the_cursor_and_backs_off(ledger):  # noqa: F811
    ids = [f"sig-{n}-{id(ledger)}" for n in range(5)]
    stream = FlakyStream(ids, per_connection=2)
    waits: list[float] = []

    async def no_wait(seconds: float) -> None:
        waits.append(seconds)

    owed = asyncio.Event()
    fanout = SignalFanout(ledger, Recipients(PEOPLE[:1]))
    before = await fanout.resume_after()
    task = asyncio.create_task(follow("signals", stream.signals, fanout, owed, sleep=no_wait))
    try:
        await eventually(lambda: _cursor_is(fanout, ids[-1]), "every signal owed")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert stream.resumed_after == [before, ids[1], ids[3]]
    assert waits == [0.5, 0.5]  # each connection delivered before breaking: no growth
    owed_ids = [d.source_id for d in await ledger.pending(1000)]
    assert owed_ids == ids and owed.is_set()


async def test_a_stream_that_stays_down_is_retried_ever_more_slowly(ledger):  # noqa: F811
    class Down:
        async def signals(self, resume_after_id):
            raise Unavailable("signal_svc did not answer")
            yield  # an async generator that fails at once

    waits: list[float] = []
    enough = asyncio.Event()

    async def record(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 7:
            enough.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(
        follow(
            "signals",
            Down().signals,
            SignalFanout(ledger, Recipients(PEOPLE)),
            asyncio.Event(),
            sleep=record,
        )
    )
    try:
        await asyncio.wait_for(enough.wait(), 5)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert waits == [0.5, 1.0, 2.0, 5.0, 10.0, 10.0, 10.0]


async def _cursor_is(fanout: SignalFanout, wanted: str) -> bool:
    return await fanout.resume_after() == wanted


async def test_sending_wakes_when_something_is_owed(ledger):  # noqa: F811
    discord = FakeDiscord()
    owed = asyncio.Event()
    task = asyncio.create_task(send_owed(Sender(ledger, discord, Closed()), owed, idle_seconds=60))
    try:
        await SignalFanout(ledger, Recipients(PEOPLE)).owe(signal())
        owed.set()
        await eventually(lambda: _all_sent(ledger), "the owed DMs sent", within=5)
        assert len(discord.created) == 3
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _all_sent(ledger) -> bool:  # noqa: F811
    return await ledger.pending() == []


async def test_sending_outlives_a_failing_pass(ledger):  # noqa: F811
    class BrokenOnce(Sender):
        """The first pass fails as a database outage would."""

        failed = False

        async def send_pending(self, limit: int = 100) -> int:
            if not self.failed:
                self.failed = True
                raise ConnectionError("the ledger's database went away")
            return await super().send_pending(limit)

    discord = FakeDiscord()
    owed = asyncio.Event()
    sender = BrokenOnce(ledger, discord, Closed())
    task = asyncio.create_task(send_owed(sender, owed, idle_seconds=0.05))
    try:
        await SignalFanout(ledger, Recipients(PEOPLE)).owe(signal())
        owed.set()
        await eventually(lambda: _all_sent(ledger), "the owed DMs sent after the failure")
        assert sender.failed and len(discord.created) == 3
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_following_outlives_a_failure_that_is_not_the_streams(ledger):  # noqa: F811
    ids = [f"sig-{n}-{id(ledger)}-x" for n in range(2)]
    stream = FlakyStream(ids, per_connection=len(ids))

    class LedgerDownOnce(SignalFanout):
        failed = False

        async def owe(self, item):
            if not self.failed:
                self.failed = True
                raise ConnectionError("the ledger's database went away")
            return await super().owe(item)

    async def no_wait(seconds: float) -> None:
        await asyncio.sleep(0)

    fanout = LedgerDownOnce(ledger, Recipients(PEOPLE[:1]))
    task = asyncio.create_task(
        follow("signals", stream.signals, fanout, asyncio.Event(), sleep=no_wait)
    )
    try:
        await eventually(lambda: _cursor_is(fanout, ids[-1]), "every signal owed after the failure")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert fanout.failed and len(stream.resumed_after) == 2

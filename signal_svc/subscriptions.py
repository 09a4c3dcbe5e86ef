"""The resume seam: replay what a subscriber missed from the database, then continue
live, with no gap and no duplicate where the two meet.

    subscribe(wanted, resume_after_id, reader, broadcaster)

1. Registers with the broadcaster FIRST, so every signal published from now on is
   buffered for this subscriber.
2. THEN replays from the database, in pages, oldest first, every matching signal after
   `resume_after_id`.
3. Yields a `Heartbeat` marking the switch to live delivery.
4. Yields the live signals buffered meanwhile, then live ones as they come, skipping the
   ids the replay already sent. Ids are dropped by identity, not only by "id > last
   replayed": ids are allocated in one sequence but transactions of two replicas may
   commit out of order, so a signal with a smaller id can be published after a larger
   one was replayed, and must still be delivered. The replay also catches signals
   stored but not yet published when it read them; their later live copies are the
   duplicates this skips.
5. Yields a `Heartbeat` after every `heartbeat_seconds` without anything else sent.

Signals stored while the subscriber's buffer overflows during a long replay are not
lost: the subscriber re-registers and the replay goes on from where it was (the
database has them all), until it catches up without overflowing.

Without `resume_after_id` the stream is live only and starts with that Heartbeat at
once: "live delivery starts now" (it tells a client, or a proxy, that the subscription is
in place; every signal published after it is delivered).

Remaining limit, inherent in resuming by id: a signal whose transaction committed after
a larger id had already been delivered AND after the client disconnected, is behind the
client's `resume_after_id` and is not replayed. The window is the commit skew between two
replicas (milliseconds), which is why the contract calls delivery around a reconnect
"at least once" and asks clients to drop ids they have seen.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import datetime

from common.errors import FieldViolation, InvalidArgument
from common.time import utcnow
from signal_svc.fanout import Broadcaster
from signal_svc.ports import SignalFilter, SignalReader
from signal_svc.signals import Signal

REPLAY_PAGE = 500
# Replayed ids remembered to skip their live copies: the newest ones are the ones that
# can still arrive live (stored, not yet published, when the replay read them).
SEAM_IDS = 1024
EVERYTHING = SignalFilter()


@dataclass(frozen=True)
class Heartbeat:
    """Nothing to send for a while, or the replay is done and live delivery starts."""

    time: datetime


def unknown_resume_id(description: str) -> InvalidArgument:
    return InvalidArgument([FieldViolation("resume_after_id", description)])


async def check_resume_id(reader: SignalReader, resume_after_id: int) -> None:
    """INVALID_ARGUMENT unless `resume_after_id` is the id of a stored signal."""
    if resume_after_id <= 0:
        raise unknown_resume_id(f"{resume_after_id} is not a signal id")
    found = await reader.signals_after(resume_after_id - 1, EVERYTHING, 1)
    if not found or found[0].id != resume_after_id:
        raise unknown_resume_id(
            f"no signal has id {resume_after_id}; pass the id of the last signal received, "
            "or leave it empty to receive live signals only"
        )


class _SeamIds:
    """A bounded set of replayed ids: the newest SEAM_IDS of them."""

    def __init__(self) -> None:
        self._order: deque[int] = deque()
        self._ids: set[int] = set()

    def add(self, signal_id: int) -> None:
        self._order.append(signal_id)
        self._ids.add(signal_id)
        if len(self._order) > SEAM_IDS:
            self._ids.discard(self._order.popleft())

    def __contains__(self, signal_id: int) -> bool:
        return signal_id in self._ids


async def subscribe(
    wanted: SignalFilter,
    resume_after_id: int | None,
    reader: SignalReader,
    broadcaster: Broadcaster,
    *,
    heartbeat_seconds: float = 15.0,
    page_size: int = REPLAY_PAGE,
) -> AsyncGenerator[Signal | Heartbeat, None]:
    """The stream of one subscriber: replayed signals (when resuming), a Heartbeat at
    the switch to live, then live signals, with a Heartbeat after every
    `heartbeat_seconds` of silence. Raises InvalidArgument for an unknown
    `resume_after_id` (before anything is sent), SubscriberTooSlow when the subscriber
    falls `broadcaster.buffer_size` signals behind, StreamClosed when the broadcaster
    closes."""
    if resume_after_id is not None:
        await check_resume_id(reader, resume_after_id)
    subscriber = broadcaster.subscribe(wanted)
    try:
        seen: _SeamIds | None = None  # only when resuming: a live-only stream stays small
        subscriber.last_id = resume_after_id
        if resume_after_id is not None:
            seen = _SeamIds()
            cursor = resume_after_id
            while True:
                page = await reader.signals_after(cursor, wanted, page_size)
                for signal in page:
                    seen.add(signal.id)
                    subscriber.last_id = signal.id
                    yield signal
                if page:
                    cursor = max(cursor, page[-1].id)
                if len(page) == page_size:
                    continue
                if not subscriber.overflowed:
                    break
                # Fell behind while replaying: whatever overflowed is in the database.
                # Register again (before reading again), then read on from the cursor.
                last_id = subscriber.last_id
                broadcaster.unsubscribe(subscriber)
                subscriber = broadcaster.subscribe(wanted)
                subscriber.last_id = last_id
        yield Heartbeat(utcnow())
        # Live: first what was buffered during the replay, then as it comes.
        while True:
            live = await subscriber.next(idle_seconds=heartbeat_seconds)
            if live is None:
                yield Heartbeat(utcnow())
            elif seen is None or live.id not in seen:
                subscriber.last_id = live.id
                yield live
    finally:
        broadcaster.unsubscribe(subscriber)

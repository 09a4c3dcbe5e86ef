"""Position events, live: one reader of the events table per process, fanned out to
every stream and to the watcher.

The events table is the single source of truth. Its ids commit in increasing order (see
repository), so one task per process reads "events after the last id I delivered"
whenever this process commits one (`notify`) and, for events other replicas commit,
every `poll_seconds`; then it hands each event to every subscriber. No event is
skipped and none is delivered twice, whichever replica wrote it.

A stream that resumes from an id subscribes first, then replays from the database every
event committed after the resume id, and only then reads its live queue. The queue
starts at the feed's position when it subscribed, which may lag the database (an event
this process has just committed but the feed has not read yet): the replay covers that
too, so everything committed before the call comes before the "live now" Heartbeat,
and the live loop drops what the replay already sent. No gap and no duplicate at the
seam.

Overflow policy: each subscriber has a bounded queue. One that falls `buffer_size`
events behind is ended with RESOURCE_EXHAUSTED naming the last event id it was sent; it
resumes from there and loses nothing (the events are in the database). Others are
never held up by it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import structlog

from common.errors import RateLimited, Unavailable
from position_svc.positions import PositionEvent
from position_svc.repository import PositionRepository

log = structlog.get_logger(__name__)

READ_BATCH = 500


class SubscriberTooSlow(RateLimited):
    """RESOURCE_EXHAUSTED: the stream's buffer overflowed and it was ended."""

    reason = "SUBSCRIBER_TOO_SLOW"

    def __init__(self, last_sent_id: int) -> None:
        super().__init__(
            "this stream fell too far behind and was ended; reconnect with "
            f"resume_after_id={last_sent_id} to get every event after the last one you "
            "received",
            retry_after_seconds=0.0,
        )


class _Ended(Exception):
    """The subscription was ended: too slow (`overflowed`) or the server is stopping."""


@dataclass(frozen=True)
class Heartbeat:
    """Sent when the replay is done, and whenever a stream has been idle for a while."""


class Subscription:
    """One stream's view of the feed: events with id > `start_id`, of one user or all."""

    def __init__(self, feed: EventFeed, user_id: str | None, start_id: int, size: int) -> None:
        self.user_id = user_id
        self.start_id = start_id
        self._feed = feed
        self._queue: asyncio.Queue[PositionEvent | None] = asyncio.Queue(maxsize=size)
        self.overflowed = False

    def offer(self, event: PositionEvent) -> None:
        if self.overflowed or (self.user_id is not None and event.position.user_id != self.user_id):
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True
            self._feed.unsubscribe(self)
            self._queue.get_nowait()  # make room for the end marker
            self._queue.put_nowait(None)

    def end(self) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)

    async def next(self, idle_seconds: float) -> PositionEvent | None:
        """The next event, or None after `idle_seconds` without one. Raises when the
        subscription was ended (too slow, or the server is stopping)."""
        try:
            event = await asyncio.wait_for(self._queue.get(), idle_seconds)
        except TimeoutError:
            return None
        if event is None:
            self.end()  # stay ended for any later call
            raise _Ended()
        return event


class EventFeed:
    def __init__(
        self, repository: PositionRepository, poll_seconds: float, buffer_size: int
    ) -> None:
        self._repository = repository
        self._poll_seconds = poll_seconds
        self._buffer_size = buffer_size
        self._subscriptions: set[Subscription] = set()
        self._listeners: list[Callable[[PositionEvent], None]] = []
        self._wake = asyncio.Event()
        self._started = asyncio.Event()
        self.last_id = 0

    async def start(self) -> None:
        """Begin after the newest stored event; call before serving."""
        self.last_id = await self._repository.last_event_id()
        self._started.set()

    def add_listener(self, listener: Callable[[PositionEvent], None]) -> None:
        """Called with every event, in id order (the watcher's view of other replicas'
        opens, updates and closes)."""
        self._listeners.append(listener)

    def notify(self) -> None:
        """This process committed events: read them now rather than at the next poll."""
        self._wake.set()

    def subscribe(self, user_id: str | None) -> Subscription:
        subscription = Subscription(self, user_id, self.last_id, self._buffer_size)
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    def close(self) -> None:
        """End every subscription (server shutdown): clients resume from their last id."""
        for subscription in list(self._subscriptions):
            subscription.end()
        self._subscriptions.clear()

    async def run(self) -> None:
        await self._started.wait()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_seconds)
            self._wake.clear()
            try:
                await self.catch_up()
            except Exception:  # a database hiccup must not end live delivery
                log.exception("reading position events failed; retrying")

    async def catch_up(self) -> None:
        """Deliver every committed event after `last_id`."""
        while True:
            events = await self._repository.events_after(self.last_id, READ_BATCH)
            for event in events:
                self.last_id = event.id
                for listener in self._listeners:
                    listener(event)
                for subscription in list(self._subscriptions):
                    subscription.offer(event)
            if len(events) < READ_BATCH:
                return


async def stream_events(
    feed: EventFeed,
    repository: PositionRepository,
    user_id: str | None,
    resume_after_id: int | None,
    heartbeat_seconds: float,
) -> AsyncIterator[PositionEvent | Heartbeat]:
    """A user's (or, with user_id None, everyone's) events: the replay after
    `resume_after_id` when given, a Heartbeat, then live events and idle heartbeats."""
    subscription = feed.subscribe(user_id)
    last_sent = resume_after_id if resume_after_id is not None else subscription.start_id
    try:
        if resume_after_id is not None:
            # Not bounded by subscription.start_id: the feed may not have read the
            # newest committed events yet (see the module docstring).
            while True:
                batch = await repository.events_after(last_sent, READ_BATCH, user_id)
                for replayed in batch:
                    yield replayed
                    last_sent = replayed.id
                if len(batch) < READ_BATCH:
                    break
            yield Heartbeat()
        while True:
            try:
                event = await subscription.next(heartbeat_seconds)
            except _Ended:
                if subscription.overflowed:
                    raise SubscriberTooSlow(last_sent) from None
                raise Unavailable(
                    "the server is shutting down; reconnect with "
                    f"resume_after_id={last_sent} to continue",
                    reason="SHUTTING_DOWN",
                ) from None
            if event is None:
                yield Heartbeat()
            elif event.id > last_sent:
                yield event
                last_sent = event.id
    finally:
        feed.unsubscribe(subscription)

"""In-process fan-out of signals to live subscribers.

One `Broadcaster` per process. The producer (the scheduler, through the relay in
`redis_relay.py`) calls `publish(signal)` once; the broadcaster hands the same object to
every subscriber whose filter matches. Nothing is queried per subscriber, and publishing
never waits: it is one filter check and one non-blocking append per subscriber.

Each subscriber has its own bounded buffer (`settings.streams.subscriber_buffer` signals), which
its stream drains at its own pace, so a slow subscriber never holds up the others or
the producer.

Overflow policy. When a subscriber's buffer is full the subscriber is disconnected: it
is removed from the broadcaster at once (so it costs nothing more), the signals in its
buffer are dropped, and its next read raises `SubscriberTooSlow`, which the gRPC layer
turns into RESOURCE_EXHAUSTED with a message telling the client to reconnect with
`resume_after_id` = the id of the last signal it received. Nothing is lost: every
signal is stored before it is published, and a resumed stream replays from the
database everything after that id. Dropping the laggard (rather than blocking the
producer, or silently skipping signals for it) keeps memory per subscriber bounded and
keeps delivery lossless for everyone.

The broadcaster also drops a signal whose id it has published recently, so a signal that
reaches this process twice (a Redis publish that timed out after all, then published
locally as a fallback) is delivered once.
"""

from __future__ import annotations

import asyncio
from collections import deque

import structlog

from common.errors import RateLimited, Unavailable
from signal_svc.ports import SignalFilter
from signal_svc.signals import Signal

log = structlog.get_logger(__name__)

# Ids remembered to drop a signal delivered twice to this process.
RECENT_IDS = 4096
# Shortest interval at which idle subscribers are checked for a passed deadline.
MIN_TICK = 0.01


class SubscriberTooSlow(RateLimited):
    """The subscriber's buffer overflowed: it was disconnected (RESOURCE_EXHAUSTED) and
    should reconnect with `resume_after_id` = the last id it received."""

    reason = "SUBSCRIBER_TOO_SLOW"

    def __init__(self, last_id: int | None, buffer_size: int) -> None:
        resume = (
            f"resume_after_id={last_id}"
            if last_id
            else "resume_after_id set to the id of the last signal you received"
        )
        super().__init__(
            f"subscriber fell more than {buffer_size} signals behind and was disconnected; "
            f"reconnect with {resume} to receive every signal you missed, from history",
            retry_after_seconds=0.0,
        )
        self.last_id = last_id


class StreamClosed(Unavailable):
    """The broadcaster was closed (the server is shutting down): UNAVAILABLE, and the
    client reconnects (to another replica) with `resume_after_id`."""

    reason = "STREAM_CLOSED"


class Subscriber:
    """One live subscription: a filter and a bounded buffer. Created by
    `Broadcaster.subscribe`; read with `next`; ended with `Broadcaster.unsubscribe`.
    Kept small (slots, a plain list): a server holds one per open stream."""

    __slots__ = (
        "_broadcaster",
        "_buffer",
        "_closed",
        "_deadline",
        "_expired",
        "_overflowed",
        "_waiter",
        "last_id",
        "maxsize",
        "wanted",
    )

    def __init__(self, broadcaster: Broadcaster, wanted: SignalFilter, maxsize: int) -> None:
        self._broadcaster = broadcaster
        self.wanted = wanted
        self.maxsize = maxsize
        self._buffer: list[Signal] = []
        self._waiter: asyncio.Future[None] | None = None
        self._deadline = 0.0  # loop time when a waiting `next` gives up; 0: none
        self._expired = False
        self._overflowed = False
        self._closed = False
        # The id of the last signal handed to the stream (set by the consumer, which is
        # the one that knows what it sent); named in the overflow message.
        self.last_id: int | None = None

    @property
    def overflowed(self) -> bool:
        return self._overflowed

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def _offer(self, signal: Signal) -> bool:
        """Append without waiting. False when the buffer is full (the caller drops us)."""
        if len(self._buffer) >= self.maxsize:
            self._overflowed = True
            self._buffer.clear()
            self._wake()
            return False
        self._buffer.append(signal)
        self._wake()
        return True

    def _close(self) -> None:
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def next(self, idle_seconds: float | None = None) -> Signal | None:
        """The next signal, or None when about `idle_seconds` (up to a quarter more)
        pass without one. Raises SubscriberTooSlow after an overflow, StreamClosed when
        the broadcaster closed.

        Waiting costs no timer per call: one task of the broadcaster wakes the
        subscribers whose deadline has passed (a fan-out to N subscribers would
        otherwise create and cancel N timers per signal)."""
        while True:
            self._raise_if_ended()
            if self._buffer:
                return self._buffer.pop(0)
            loop = asyncio.get_running_loop()
            self._waiter = waiter = loop.create_future()
            if idle_seconds is not None:
                self._deadline = loop.time() + idle_seconds
                self._broadcaster._watch(idle_seconds)
            try:
                await waiter
            finally:
                self._waiter = None
                self._deadline = 0.0
            if self._expired:
                self._expired = False
                if not self._buffer and not self._overflowed and not self._closed:
                    return None

    def _raise_if_ended(self) -> None:
        if self._overflowed:
            raise SubscriberTooSlow(self.last_id, self.maxsize)
        if self._closed:
            raise StreamClosed("the signal stream is closing; reconnect with resume_after_id")


class Broadcaster:
    """Hands each published signal to every matching subscriber of this process."""

    def __init__(self, buffer_size: int = 256) -> None:
        if buffer_size < 1:
            raise ValueError("buffer_size must be at least 1")
        self.buffer_size = buffer_size
        self._subscribers: dict[Subscriber, None] = {}  # insertion-ordered set
        self._recent: deque[int] = deque()
        self._recent_set: set[int] = set()
        self._closed = False
        self._ticker: asyncio.Task[None] | None = None
        self._tick = 0.0
        self.published = 0
        self.disconnected = 0

    def __len__(self) -> int:
        return len(self._subscribers)

    def subscribe(self, wanted: SignalFilter, buffer_size: int | None = None) -> Subscriber:
        """Start buffering matching signals for a new subscriber."""
        subscriber = Subscriber(self, wanted, buffer_size or self.buffer_size)
        if self._closed:
            subscriber._close()
        else:
            self._subscribers[subscriber] = None
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.pop(subscriber, None)

    def publish(self, signal: Signal) -> int:
        """Offer `signal` to every matching subscriber; never waits. Returns how many
        took it. A subscriber whose buffer is full is disconnected (see the module
        docstring). A signal id published recently is dropped as a duplicate."""
        if signal.id:
            if signal.id in self._recent_set:
                return 0
            self._recent.append(signal.id)
            self._recent_set.add(signal.id)
            if len(self._recent) > RECENT_IDS:
                self._recent_set.discard(self._recent.popleft())
        self.published += 1
        delivered = 0
        dropped: list[Subscriber] = []
        for subscriber in self._subscribers:
            if not subscriber.wanted.matches(signal):
                continue
            if subscriber._offer(signal):
                delivered += 1
            else:
                dropped.append(subscriber)
        for subscriber in dropped:
            del self._subscribers[subscriber]
            self.disconnected += 1
            log.warning(
                "slow signal subscriber disconnected",
                buffer=subscriber.maxsize,
                last_id=subscriber.last_id,
            )
        return delivered

    def close(self) -> None:
        """End every subscription (their next read raises StreamClosed)."""
        self._closed = True
        for subscriber in self._subscribers:
            subscriber._close()
        self._subscribers.clear()
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None

    def _watch(self, idle_seconds: float) -> None:
        """Make sure subscribers waiting `idle_seconds` are woken about on time."""
        tick = max(MIN_TICK, idle_seconds / 4)
        if self._ticker is None or self._ticker.done():
            self._tick = tick
            self._ticker = asyncio.get_running_loop().create_task(
                self._expire_idle(), name="signal-subscribers-idle"
            )
        elif tick < self._tick:
            self._tick = tick

    async def _expire_idle(self) -> None:
        loop = asyncio.get_running_loop()
        while self._subscribers:
            await asyncio.sleep(self._tick)
            now = loop.time()
            for subscriber in self._subscribers:
                if subscriber._deadline and subscriber._deadline <= now:
                    subscriber._expired = True
                    subscriber._wake()

"""Pacing requests under Discord's global rate limit before Discord has to enforce it.

Discord lets a bot make 50 requests per second in all (more only when Discord raised the
bot's limit) and answers the rest with 429. discord.py waits a 429 out and retries, so
nothing is lost, but it learns of the global limit only from 429s: a fan-out to a
thousand users sent as fast as the loop can go drew hundreds of them per signal, and
Discord bans a bot for a while at 10,000 invalid (401, 403, 429) requests in ten
minutes. So the notifier counts its own requests and waits for room instead.

A request takes its place in the window from when it is sent until one window after
its answer came back. Discord counted it at some moment in between, which the notifier
cannot know; counting from the answer makes sure that a request let through because an
older one left the window really is a window apart from it at Discord, however the two
were delayed on the way. Counting from the send would need a safety margin, and any
delay beyond the margin (a busy machine) would still draw a 429. The price is the round
trip: each place is free again after a window plus a round trip, so at 100 ms from
Discord the pace is 50 / 1.1 s, 91 % of the limit.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

DISCORD_GLOBAL_LIMIT = 50  # requests per second
WINDOW_SECONDS = 1.0


class SlidingWindowLimit:
    """At most `limit` requests in any `window` seconds, each counted from its start
    until `window` after its end; `slot()` waits for room, first come first served."""

    def __init__(
        self,
        limit: int = DISCORD_GLOBAL_LIMIT,
        window: float = WINDOW_SECONDS,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a limit needs at least one request per positive window")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._sleep = sleep
        self._ended: deque[float] = deque()  # when requests still in the window ended
        self._in_flight = 0
        self._finished = asyncio.Event()  # a request in flight ended
        self._turn = asyncio.Lock()  # FIFO: waiters get room in the order they came

    def fill(self) -> None:
        """Count the window as full from now: requests this pacing did not see (the log
        in, the command sync, what a process killed a moment ago sent) share Discord's
        window, so the first paced request waits one window."""
        self._ended.extend([self._clock()] * self.limit)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Room for one request, held while it runs (wrap the request in it)."""
        await self._enter()
        try:
            yield
        finally:
            self._in_flight -= 1
            self._ended.append(self._clock())
            self._finished.set()

    async def _enter(self) -> None:
        async with self._turn:
            while True:
                now = self._clock()
                while self._ended and self._ended[0] <= now - self.window:
                    self._ended.popleft()
                if self._in_flight + len(self._ended) < self.limit:
                    self._in_flight += 1
                    return
                if self._ended:
                    await self._sleep(self._ended[0] + self.window - now)
                else:  # every place is in flight: one must end before its window starts
                    self._finished.clear()
                    await self._finished.wait()

"""The newest events the edge has relayed (signals, position notifications), kept in
order so that a Socket.IO client that reconnects with the last id it saw gets what it
missed — in order, once — without a stream or a query per client. Ids are the streams'
sequence numbers as strings, so "newer" is a number comparison. Plain Python."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

DEFAULT_SIZE = 1000


class EventBuffer:
    """The last `size` events (payloads with an "id"), oldest first."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self._events: deque[dict[str, Any]] = deque(maxlen=size)
        self._added = asyncio.Event()

    def add(self, event: dict[str, Any]) -> None:
        self._events.append(event)
        self._added.set()
        self._added = asyncio.Event()

    def newer_than(self, event_id: str) -> list[dict[str, Any]]:
        """The events kept with an id above `event_id`, oldest first."""
        return [event for event in self._events if int(event["id"]) > int(event_id)]

    async def reached(self, event_id: str, within: float) -> bool:
        """Wait (up to `within` seconds) until an event with id `event_id` or newer is
        kept; whether it is."""
        deadline = asyncio.get_running_loop().time() + within
        while not (self._events and int(self._events[-1]["id"]) >= int(event_id)):
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._added.wait()
        return True

    @property
    def last_id(self) -> str | None:
        return self._events[-1]["id"] if self._events else None

    def after(self, last_seen_id: str) -> list[dict[str, Any]] | None:
        """The events after `last_seen_id`, oldest first; None when that id is older
        than what is kept (the caller must fetch the gap elsewhere)."""
        for index, event in enumerate(self._events):
            if event["id"] == last_seen_id:
                return list(self._events)[index + 1 :]
        try:
            seen = int(last_seen_id)
        except ValueError:
            return None
        # An id newer than everything kept (the client saw an event this edge has not
        # relayed yet: another replica's) means nothing was missed here.
        if self._events and seen > int(self._events[-1]["id"]):
            return []
        return None

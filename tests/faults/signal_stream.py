"""A signal subscriber over Server-Sent Events through Envoy, run as a background task
for the whole of a fault test: it records every signal id it receives and, when the
stream breaks (Envoy restarted, a service gone), reconnects with `resumeAfterId` = the
last id it had, as a browser's EventSource does, recording each break."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx

from tests.envoy import http_client

STREAM_PATH = "/api/v1/trading/signals:stream"


@dataclass
class SignalSubscriber:
    """Ids received in order, each signal's `source` by id; `breaks` holds (when, why)
    of every lost connection."""

    url: str
    token: str
    reconnect: bool = False
    ids: list[int] = field(default_factory=list)
    sources: dict[int, str] = field(default_factory=dict)
    breaks: list[tuple[float, str]] = field(default_factory=list)
    connected_at: list[float] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    async def _events(self, http: httpx.AsyncClient) -> AsyncIterator[dict[str, object]]:
        params = {"access_token": self.token}
        if self.ids:
            params["resumeAfterId"] = str(self.ids[-1])
        headers = {"accept": "text/event-stream"}
        timeout = httpx.Timeout(10.0, read=30.0)
        async with http.stream(
            "GET", STREAM_PATH, params=params, headers=headers, timeout=timeout
        ) as response:
            if response.status_code != 200:
                raise httpx.HTTPStatusError(
                    f"stream answered {response.status_code}",
                    request=response.request,
                    response=response,
                )
            self.connected_at.append(time.monotonic())
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    yield json.loads(line.removeprefix("data: "))

    async def _run(self) -> None:
        async with http_client(self.url) as http:
            while True:
                try:
                    async for event in self._events(http):
                        signal = event.get("signal")
                        if isinstance(signal, dict):
                            self.ids.append(int(signal["id"]))
                            self.sources[int(signal["id"])] = str(signal.get("source", ""))
                    reason = "stream ended"
                except (httpx.HTTPError, ValueError) as exc:
                    reason = f"{type(exc).__name__}: {exc}"
                self.breaks.append((time.monotonic(), reason))
                if not self.reconnect:
                    return
                await asyncio.sleep(0.1)  # EventSource's retry, shortened

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="sse signal subscriber")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

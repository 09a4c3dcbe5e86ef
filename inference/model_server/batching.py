"""Server-side batching: concurrent Predict calls merged into one onnxruntime run.

Like TF Serving's batching session: requests for the same servable (and the same
non-batch dimensions) queue up; a batch is dispatched when it holds `max_batch_size`
rows, or `batch_timeout_micros` after its first request arrived, and never before one
of the `num_batch_threads` run slots is free, so under load each run takes everything
that queued while the previous ones executed. Inputs are concatenated along dimension 0,
the outputs split back, and every caller gets exactly its own rows. A request larger
than `max_batch_size` runs as a batch of its own (TF Serving would split or refuse it).

Runs execute in a thread pool (onnxruntime releases the GIL), so the event loop keeps
accepting and decoding requests meanwhile.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np
from prometheus_client import Histogram

from common.errors import Unavailable
from inference.model_server.servable import Servable

BATCH_ROWS = Histogram(
    "aifx_model_server_batch_rows",
    "Rows per onnxruntime run of the model server",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)

Outputs = dict[str, np.ndarray]


async def run_inference(
    executor: Executor, servable: Servable, inputs: dict[str, np.ndarray]
) -> Outputs:
    """One run without batching, in the thread pool."""
    loop = asyncio.get_running_loop()
    rows = next(iter(inputs.values())).shape[0] if inputs else 0
    BATCH_ROWS.observe(rows)
    return await loop.run_in_executor(executor, servable.run, inputs)


@dataclass
class _Task:
    key: Hashable
    servable: Servable
    inputs: dict[str, np.ndarray]
    rows: int
    enqueued: float
    future: asyncio.Future[Outputs] = field(repr=False)


@dataclass
class BatcherStats:
    runs: int = 0
    rows: int = 0
    largest: int = 0


class Batcher:
    def __init__(
        self,
        executor: Executor,
        *,
        max_batch_size: int,
        batch_timeout_micros: int,
        num_batch_threads: int,
    ) -> None:
        self._executor = executor
        self._max_rows = max_batch_size
        self._timeout = batch_timeout_micros / 1e6
        self._slots = asyncio.Semaphore(num_batch_threads)
        self._queue: deque[_Task] = deque()
        self._wakeup = asyncio.Event()
        self._scheduler: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self.stats = BatcherStats()

    def start(self) -> None:
        if self._scheduler is None:
            self._scheduler = asyncio.create_task(self._schedule(), name="batch-scheduler")

    async def close(self) -> None:
        """Stop scheduling; fail what is still queued, let running batches finish."""
        if self._scheduler is not None:
            self._scheduler.cancel()
            await asyncio.gather(self._scheduler, return_exceptions=True)
            self._scheduler = None
        while self._queue:
            task = self._queue.popleft()
            if not task.future.done():
                task.future.set_exception(Unavailable("the model server is shutting down"))
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    async def run(self, servable: Servable, inputs: dict[str, np.ndarray]) -> Outputs:
        """Outputs (every alias) for the rows of `inputs`, computed in a shared batch."""
        if self._scheduler is None:
            raise RuntimeError("Batcher.start() was not called")
        loop = asyncio.get_running_loop()
        key = (id(servable), tuple((alias, a.shape[1:]) for alias, a in sorted(inputs.items())))
        rows = next(iter(inputs.values())).shape[0]
        task = _Task(key, servable, inputs, rows, loop.time(), loop.create_future())
        self._queue.append(task)
        self._wakeup.set()
        return await task.future

    # --- scheduling -----------------------------------------------------------------

    async def _schedule(self) -> None:
        while True:
            await self._slots.acquire()
            try:
                batch = await self._next_batch()
            except BaseException:
                self._slots.release()
                raise
            running = asyncio.create_task(self._execute(batch))
            self._running.add(running)
            running.add_done_callback(self._running.discard)

    def _queued_rows(self, key: Hashable) -> int:
        return sum(t.rows for t in self._queue if t.key == key and not t.future.done())

    async def _next_batch(self) -> list[_Task]:
        loop = asyncio.get_running_loop()
        while True:
            while self._queue and self._queue[0].future.done():
                self._queue.popleft()  # its caller went away
            if self._queue:
                break
            self._wakeup.clear()
            await self._wakeup.wait()
        first = self._queue[0]
        deadline = first.enqueued + self._timeout
        while self._queued_rows(first.key) < self._max_rows:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                break
        return self._take(first.key)

    def _take(self, key: Hashable) -> list[_Task]:
        batch: list[_Task] = []
        rows = 0
        kept: deque[_Task] = deque()
        for task in self._queue:
            if task.future.done():
                continue
            if task.key == key and (not batch or rows + task.rows <= self._max_rows):
                batch.append(task)
                rows += task.rows
            else:
                kept.append(task)
        self._queue = kept
        return batch

    async def _execute(self, batch: list[_Task]) -> None:
        try:
            if not batch:
                return
            servable = batch[0].servable
            if len(batch) == 1:
                merged = batch[0].inputs
            else:
                merged = {
                    alias: np.concatenate([t.inputs[alias] for t in batch])
                    for alias in batch[0].inputs
                }
            rows = sum(t.rows for t in batch)
            self.stats.runs += 1
            self.stats.rows += rows
            self.stats.largest = max(self.stats.largest, rows)
            BATCH_ROWS.observe(rows)
            loop = asyncio.get_running_loop()
            try:
                outputs = await loop.run_in_executor(self._executor, servable.run, merged)
            except Exception as exc:
                for task in batch:
                    if not task.future.done():
                        task.future.set_exception(exc)
                return
            offset = 0
            for task in batch:
                if not task.future.done():
                    task.future.set_result(
                        {alias: out[offset : offset + task.rows] for alias, out in outputs.items()}
                    )
                offset += task.rows
        finally:
            self._slots.release()

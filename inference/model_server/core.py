"""The model server's engine, free of gRPC: the registries of the served models, the
polling of their base paths, and running inference (batched or not) in a thread pool."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import structlog

from common.errors import NotFound
from inference.model_server.batching import Batcher, Outputs, run_inference
from inference.model_server.config import ServerConfig
from inference.model_server.registry import ModelRegistry
from inference.model_server.servable import Servable, load_servable, session_options

log = structlog.get_logger(__name__)


class ModelServer:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        options = session_options(config.intra_op_threads, config.inter_op_threads)
        loader = functools.partial(load_servable, options=options)
        self.registries = {model.name: ModelRegistry(model, loader) for model in config.models}
        self._executor = ThreadPoolExecutor(
            max_workers=config.batching.num_batch_threads, thread_name_prefix="inference"
        )
        self.batcher: Batcher | None = None
        self._poller: asyncio.Task[None] | None = None

    def registry(self, name: str) -> ModelRegistry:
        try:
            return self.registries[name]
        except KeyError:
            served = ", ".join(sorted(self.registries))
            raise NotFound(
                f"Servable not found for request: model {name!r} is not served "
                f"(this server serves: {served})"
            ) from None

    async def poll(self) -> None:
        """One pass over every model's base path."""
        for registry in self.registries.values():
            try:
                await registry.poll()
            except Exception:
                log.exception("poll failed", model=registry.name, path=str(registry.base_path))

    async def start(self) -> None:
        """Load what is on disk now (like tensorflow_model_server, before serving), then
        keep polling every `poll_seconds` (once only if that is <= 0)."""
        if self.config.batching.enabled and self.batcher is None:
            batching = self.config.batching
            self.batcher = Batcher(
                self._executor,
                max_batch_size=batching.max_batch_size,
                batch_timeout_micros=batching.batch_timeout_micros,
                num_batch_threads=batching.num_batch_threads,
            )
            self.batcher.start()
        await self.poll()
        for registry in self.registries.values():
            if not registry.available_versions:
                log.warning(
                    "no servable version yet",
                    model=registry.name,
                    path=str(registry.base_path),
                    hint="a version is models/<name>/<N>/ with model.onnx and aifx_metadata.json",
                )
        if self.config.poll_seconds > 0 and self._poller is None:
            self._poller = asyncio.create_task(self._poll_forever(), name="version-poller")

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.poll_seconds)
            await self.poll()

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        if self.batcher is not None:
            await self.batcher.close()
            self.batcher = None
        self._executor.shutdown(wait=True)

    async def run(self, servable: Servable, inputs: dict[str, np.ndarray]) -> Outputs:
        """Every output of `servable` for validated inputs, through the batcher if on."""
        if self.batcher is not None:
            return await self.batcher.run(servable, inputs)
        return await run_inference(self._executor, servable, inputs)

"""Wiring of the model server: build its parts from the configuration and serve them
under the common bootstrap (health, reflection, request logs, metrics). No logic here."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

import grpc
from tensorflow_serving.apis import (
    model_service_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2,
    prediction_service_pb2_grpc,
)

from common.logging import configure_logging
from common.server import RunningServer, ServiceSpec, serve_forever, start_server
from common.settings import get_settings
from common.tracing import configure_tracing
from inference.model_server.config import ConfigError, ServerConfig
from inference.model_server.core import ModelServer
from inference.model_server.flags import parse_args
from inference.model_server.service import ModelService, PredictionService

SERVICE_NAMES = [
    prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"].full_name,
    model_service_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name,
]


def build(config: ServerConfig) -> tuple[ServiceSpec, ModelServer]:
    """The servicers over a ModelServer engine (call `await core.start()` to load the
    models before serving)."""
    core = ModelServer(config)

    def register(server: grpc.aio.Server) -> None:
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionService(core), server
        )
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(core), server)

    spec = ServiceSpec(
        name="model_server", register=register, service_names=SERVICE_NAMES, on_stop=[core.stop]
    )
    return spec, core


async def start_model_server(
    config: ServerConfig, host: str = "127.0.0.1", port: int = 0
) -> tuple[RunningServer, ModelServer]:
    """Load the models and serve them in this process (port 0 picks a free port); what
    tests of this server and of its clients use. `await running.stop()` stops both."""
    spec, core = build(config)
    await core.start()
    try:
        running = await start_server(spec, host, port)
    except BaseException:
        await core.stop()
        raise
    return running, core


async def serve(config: ServerConfig) -> None:
    spec, core = build(config)
    await core.start()
    try:
        await serve_forever(spec, config.host, config.port, config.metrics_port)
    except BaseException:
        await core.stop()
        raise


def main(argv: Sequence[str] | None = None) -> None:
    settings = get_settings()
    log = configure_logging(settings, "model_server")
    configure_tracing("model_server", settings)  # off unless AIFX_OTLP_ENDPOINT is set
    try:
        config = parse_args(argv, settings)
    except ConfigError as exc:
        sys.exit(f"model_server: {exc}")
    log.info(
        "starting",
        models=[
            {
                "name": m.name,
                "base_path": str(m.base_path),
                "policy": m.policy.describe(),
                "labels": m.labels,
            }
            for m in config.models
        ],
        batching=config.batching.enabled,
        max_batch_size=config.batching.max_batch_size,
        batch_timeout_micros=config.batching.batch_timeout_micros,
        num_batch_threads=config.batching.num_batch_threads,
        poll_seconds=config.poll_seconds,
    )
    asyncio.run(serve(config))


if __name__ == "__main__":
    main()

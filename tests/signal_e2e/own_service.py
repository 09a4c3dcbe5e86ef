"""A signal_svc of a test's own (built as server.py builds it) beside the package's
stack: its own database and Redis prefix, the package's auth stack and inference service.
For tests that restart the service or run it in another mode."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aifx.signal.v1 import signal_pb2, signal_pb2_grpc
from common.migrations import upgrade
from common.server import start_server
from common.settings import Settings
from tests.infra import (
    create_postgres_database,
    delete_redis_prefix,
    drop_postgres_database,
    run_sync,
)
from tests.signal_e2e.conftest import SignalEdge, stop_or_explain


@dataclass
class SignalService:
    """One running signal_svc of a test, with clients."""

    port: int
    stub: signal_pb2_grpc.SignalServiceStub
    internal: signal_pb2_grpc.SignalInternalServiceStub
    health: health_pb2_grpc.HealthStub
    bearer: tuple[tuple[str, str], ...]
    service_credential: tuple[tuple[str, str], ...]

    async def replay(self) -> signal_pb2.ReplayState:
        response = await self.stub.ListPairs(signal_pb2.ListPairsRequest(), metadata=self.bearer)
        return response.replay

    async def health_of(self, detail: str) -> int:
        """The health status of a detail ("replay", "market_data")."""
        request = health_pb2.HealthCheckRequest(service=detail)
        return int((await self.health.Check(request)).status)


@contextlib.asynccontextmanager
async def own_database(edge: SignalEdge, directory: Path, service: str) -> AsyncIterator[str]:
    """The URL of a fresh database (PostgreSQL when the package's stack runs on it, else
    SQLite in `directory`) with `service`'s tables; dropped afterwards."""
    name = ""
    if edge.settings.storage.database_url.startswith("postgresql"):
        name, url = await asyncio.to_thread(run_sync, create_postgres_database())
    else:
        url = f"sqlite+aiosqlite:///{directory}/{service}.db"
    try:
        await asyncio.to_thread(upgrade, service, edge.settings.replace(database_url=url))
        yield url
    finally:
        if name:
            await asyncio.to_thread(run_sync, drop_postgres_database(name))


@contextlib.asynccontextmanager
async def own_settings(edge: SignalEdge, directory: Path) -> AsyncIterator[Settings]:
    """The package's signal settings on a database and Redis prefix of their own."""
    prefix = f"{edge.settings.storage.redis_prefix}own-{directory.name}:"
    async with own_database(edge, directory, "signal_svc") as url:
        settings = edge.settings.replace(database_url=url, redis_prefix=prefix)
        try:
            yield settings
        finally:
            if settings.storage.redis_url:
                await delete_redis_prefix(prefix)


@contextlib.asynccontextmanager
async def serving(settings: Settings, edge: SignalEdge) -> AsyncIterator[SignalService]:
    """signal_svc of `settings` on a free port until the block ends."""
    from signal_svc.server import build

    running = await start_server(build(settings), "127.0.0.1", 0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        yield SignalService(
            running.port,
            signal_pb2_grpc.SignalServiceStub(channel),
            signal_pb2_grpc.SignalInternalServiceStub(channel),
            health_pb2_grpc.HealthStub(channel),
            edge.bearer,
            edge.service_credential,
        )
    finally:
        await channel.close()
        await stop_or_explain(running)

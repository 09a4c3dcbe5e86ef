"""Wiring of position_svc: the repository, the price source, the watcher, the event feed
and the servicers, under the common server bootstrap. No logic here."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import grpc

from aifx.position.v1 import position_pb2, position_pb2_grpc
from common.callers import TokenGate
from common.db import create_engine, session_factory
from common.kv import create_store
from common.remote_jwks import RemoteJwks
from common.revocation import RevocationList
from common.server import HostedService, ServiceSpec, run_service
from common.service_credentials import load_service_token
from common.settings import Settings
from common.shutdown import stop_tasks
from common.user_slots import UserSlots
from position_svc.book import PositionBook
from position_svc.event_feed import EventFeed
from position_svc.price_source import PriceSource
from position_svc.repository import PositionRepository
from position_svc.service import PositionInternalService, PositionService
from position_svc.watcher import Watcher

SERVICE_NAMES = [
    position_pb2.DESCRIPTOR.services_by_name["PositionService"].full_name,
    position_pb2.DESCRIPTOR.services_by_name["PositionInternalService"].full_name,
]


def build(settings: Settings) -> ServiceSpec:
    """position_svc's parts, ready to serve; call inside the running event loop."""
    database = create_engine(settings)
    repository = PositionRepository(session_factory(database))
    revocation_store = create_store(settings.storage, settings.storage.effective_revocation_prefix)
    service_token = load_service_token(settings)
    prices = PriceSource(settings.network.effective_signal_target, service_token)
    feed = EventFeed(
        repository,
        settings.positions.position_event_poll_seconds,
        settings.positions.position_event_buffer,
    )
    watcher = Watcher(
        repository,
        feed,
        prices,
        settings.positions.position_sweep_seconds,
        snapshot_retention=timedelta(days=settings.positions.position_snapshot_retention_days),
    )
    book = PositionBook(
        repository,
        prices,
        watcher,
        feed,
        heartbeat_seconds=settings.streams.stream_heartbeat_seconds,
    )
    jwks = RemoteJwks(
        settings.network.effective_auth_target,
        issuer=settings.tokens.jwt_issuer,
        audience=settings.tokens.jwt_audience,
        is_revoked=RevocationList(revocation_store).is_revoked,
    )
    gate = TokenGate(jwks, service_token, settings.network.trusted_proxies)
    tasks: list[asyncio.Task[None]] = []

    async def start_background() -> None:
        await feed.start()
        tasks.append(asyncio.create_task(feed.run(), name="position-events"))
        tasks.append(asyncio.create_task(watcher.run(), name="position-watcher"))

    def register(server: grpc.aio.Server) -> None:
        slots = UserSlots(settings.streams.max_streams_per_user, "streams")
        position_pb2_grpc.add_PositionServiceServicer_to_server(
            PositionService(gate, book, slots), server
        )
        position_pb2_grpc.add_PositionInternalServiceServicer_to_server(
            PositionInternalService(gate, book), server
        )
        tasks.append(asyncio.create_task(start_background(), name="position-start"))

    async def release() -> None:
        await stop_tasks(*tasks)
        for close in (prices.close, jwks.close, revocation_store.close, database.dispose):
            await close()

    async def end_streams() -> None:
        """Streams end at once with UNAVAILABLE (clients resume from their last id)."""
        feed.close()

    return ServiceSpec(
        name="position_svc",
        register=register,
        service_names=SERVICE_NAMES,
        on_stop=[release],
        on_drain=[end_streams],
    )


SERVICE = HostedService(
    "position_svc", build, lambda s: (s.network.position_port, s.network.position_metrics_port)
)


def main() -> None:
    run_service(SERVICE)


if __name__ == "__main__":
    main()

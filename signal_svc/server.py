"""Wiring of signal_svc: market data, the engine and scheduler, the repository, the
fan-out and the servicers, under the common server bootstrap. No logic here."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import grpc
import structlog

from aifx.signal.v1 import signal_pb2, signal_pb2_grpc
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
from signal_svc.convert import ResponseCache
from signal_svc.engine import SignalEngine
from signal_svc.fanout import Broadcaster
from signal_svc.inference_client import InferenceClient
from signal_svc.market import build_market
from signal_svc.market_rpcs import MarketRpcs
from signal_svc.metrics import declare_series
from signal_svc.redis_relay import RelayPublisher
from signal_svc.repository import SignalRepository
from signal_svc.scheduler import Scheduler, configured_series
from signal_svc.service import SignalInternalService, SignalService
from signal_svc.signal_cache import SignalCache
from signal_svc.signal_rpcs import SignalRpcs
from signal_svc.stream_rpcs import StreamRpcs

log = structlog.get_logger(__name__)

SERVICE_NAMES = [
    signal_pb2.DESCRIPTOR.services_by_name["SignalService"].full_name,
    signal_pb2.DESCRIPTOR.services_by_name["SignalInternalService"].full_name,
]


def build(settings: Settings) -> ServiceSpec:
    """signal_svc's parts, ready to serve; call inside the running event loop (the
    background tasks start here)."""
    database = create_engine(settings)
    sessions = session_factory(database)
    store = create_store(settings.storage)
    revocation_store = create_store(settings.storage, settings.storage.effective_revocation_prefix)
    service_token = load_service_token(settings)
    repository = SignalRepository(sessions)
    signal_cache = SignalCache.from_settings(settings.market, settings.streams, store, repository)
    market = build_market(settings, sessions)
    broadcaster = Broadcaster(settings.streams.subscriber_buffer)
    publisher = RelayPublisher.from_settings(broadcaster, settings.storage, reader=repository)
    inference = InferenceClient(
        settings.network.effective_inference_target,
        service_token,
        settings.strategy.inference_timeout_seconds,
        recovery_seconds=settings.strategy.inference_recovery_seconds,
    )
    series = configured_series(settings.market, market.offered())
    declare_series(series, settings.market)
    scheduler = Scheduler(
        market.feed,
        SignalEngine(settings.strategy, inference),
        repository,
        publisher,
        series,
        cache=signal_cache,
    )
    jwks = RemoteJwks(
        settings.network.effective_auth_target,
        issuer=settings.tokens.jwt_issuer,
        audience=settings.tokens.jwt_audience,
        is_revoked=RevocationList(revocation_store).is_revoked,
    )
    gate = TokenGate(jwks, service_token, settings.network.trusted_proxies)
    responses = ResponseCache()
    market_rpcs = MarketRpcs(market)
    streams = StreamRpcs(
        broadcaster,
        repository,
        responses,
        heartbeat_seconds=settings.streams.stream_heartbeat_seconds,
    )
    public = SignalService(
        gate,
        market_rpcs,
        SignalRpcs(repository, signal_cache, responses),
        streams,
        UserSlots(settings.streams.max_streams_per_user, "streams"),
    )
    internal = SignalInternalService(gate, market_rpcs, streams)
    tasks: list[asyncio.Task[None]] = []

    async def schedule_after_resume() -> None:
        """The scheduler starts where the replay takes up (an earlier run's position)."""
        await market.resumed.wait()
        await scheduler.run()

    def register(server: grpc.aio.Server) -> None:
        signal_pb2_grpc.add_SignalServiceServicer_to_server(public, server)
        signal_pb2_grpc.add_SignalInternalServiceServicer_to_server(internal, server)
        tasks.append(asyncio.create_task(market.run(), name="market"))
        tasks.append(asyncio.create_task(schedule_after_resume(), name="scheduler"))
        tasks.append(asyncio.create_task(publisher.start(), name="relay-start"))

    async def release() -> None:
        await market.save_position()  # before the background work is stopped
        # Cancelled until they end: they talk to Redis all the time and can lose a
        # cancellation on Python 3.11 (see common.shutdown).
        await stop_tasks(*tasks)
        for task in tasks:
            error = None if task.cancelled() else task.exception()
            if error is not None:
                log.error("background task had failed", task=task.get_name(), exc_info=error)
        closers: list[Callable[[], Awaitable[None]]] = [
            publisher.stop,
            market.close,
            inference.close,
            jwks.close,
            store.close,
            revocation_store.close,
            database.dispose,
        ]
        for close in closers:
            await close()

    async def end_streams() -> None:
        """Streams end at once with UNAVAILABLE (clients resume from their last id)
        instead of holding shutdown for the whole grace period."""
        broadcaster.close()

    return ServiceSpec(
        name="signal_svc",
        register=register,
        service_names=SERVICE_NAMES,
        on_stop=[release],
        on_drain=[end_streams],
        # "replay": NOT_SERVING once a replay that does not loop has played all its
        # history; "market_data": NOT_SERVING while a live series brings no data.
        health_details={
            "replay": market.replay_running,
            "market_data": market.market_data_flowing,
        },
    )


SERVICE = HostedService(
    "signal_svc", build, lambda s: (s.network.signal_port, s.network.signal_metrics_port)
)


def main() -> None:
    run_service(SERVICE)


if __name__ == "__main__":
    main()

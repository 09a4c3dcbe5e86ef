"""Wiring of the edge: the Socket.IO bridge on an aiohttp web app, fed by the signal,
price and position-event streams, with token checks against auth_svc's keys; the
dashboard's session and model routes and its files. No logic here.

The edge is an HTTP process (browsers speak HTTP and WebSocket to it through Envoy),
so its health is `GET /healthz` rather than the gRPC health service, its metrics are on
AIFX_EDGE_METRICS_PORT, and it stops on SIGTERM like every service.
"""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import socketio
import structlog
from aiohttp import web
from prometheus_client import start_http_server

from common import following
from common.access_tokens import AccessClaims
from common.grpc_client import GrpcClient
from common.kv import create_store
from common.logging import configure_logging
from common.remote_jwks import RemoteJwks
from common.revocation import RevocationList
from common.server import SHUTDOWN_GRACE_SECONDS
from common.service_credentials import load_service_token
from common.settings import REPO_ROOT, Settings, get_settings
from common.shutdown import stop_tasks
from common.tracing import configure_tracing
from edge.clients import AuthSessions, ModelCards, PositionEvents, PriceEvents, SignalEvents
from edge.event_buffer import EventBuffer
from edge.origins import AllowedOrigins
from edge.routes import ApiReference, DashboardFiles, ModelRoutes, SessionRoutes, json_errors
from edge.sockets import SocketBridge

log = structlog.get_logger(__name__)


@dataclass
class Edge:
    """The edge's web app and what it runs beside it."""

    app: web.Application
    sockets: socketio.AsyncServer
    bridge: SocketBridge
    start: Callable[[], None]
    release: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


def build(settings: Settings) -> Edge:
    """The edge's parts; call inside the running event loop."""
    service_token = load_service_token(settings)
    network = settings.network
    signal_client = GrpcClient(
        "signal_svc", network.effective_signal_target, service_token=service_token
    )
    position_client = GrpcClient(
        "position_svc", network.effective_position_target, service_token=service_token
    )
    auth_client = GrpcClient("auth_svc", network.effective_auth_target)
    inference_client = GrpcClient(
        "inference", network.effective_inference_target, service_token=service_token
    )
    revocations = create_store(settings.storage, settings.storage.effective_revocation_prefix)
    jwks = RemoteJwks(
        settings.network.effective_auth_target,
        issuer=settings.tokens.jwt_issuer,
        audience=settings.tokens.jwt_audience,
        is_revoked=RevocationList(revocations).is_revoked,
    )

    async def verify(token: str) -> AccessClaims:
        return await (await jwks.verifier()).verify(token)

    server = socketio.AsyncServer(
        async_mode="aiohttp",
        cors_allowed_origins=AllowedOrigins(settings.edge.cors_allowed_origins),
    )
    # Session bodies are a few hundred bytes; nothing the edge takes is large.
    app = web.Application(middlewares=[json_errors], client_max_size=64 * 1024)
    server.attach(app)
    signals, notifications = EventBuffer(), EventBuffer()
    events, prices = SignalEvents(signal_client), PriceEvents(signal_client)
    bridge = SocketBridge(
        server,
        verify,
        signals,
        notifications,
        events.missed,
        max_sockets_per_user=settings.edge.max_sockets_per_user,
    )
    position_events = PositionEvents(position_client)
    tasks: list[asyncio.Task[None]] = []

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "serving"})

    app.router.add_get("/healthz", healthz)
    SessionRoutes(AuthSessions(auth_client)).add_to(app)
    ModelRoutes(ModelCards(inference_client), verify).add_to(app)
    ApiReference(REPO_ROOT / "gen" / "openapi.json", settings.edge.dashboard_dir).add_to(app)
    DashboardFiles(settings.edge.dashboard_dir).add_to(app)  # last: it takes every path

    async def last_signal() -> str | None:
        return signals.last_id

    async def last_notification() -> str | None:
        return notifications.last_id

    async def live_only() -> str | None:
        return None

    def start() -> None:
        tasks.append(
            asyncio.create_task(
                following.follow("signals", events.after, last_signal, bridge.relay_signal),
                name="relay-signals",
            )
        )
        tasks.append(
            asyncio.create_task(
                following.follow("prices", prices.after, live_only, bridge.relay_price),
                name="relay-prices",
            )
        )
        tasks.append(
            asyncio.create_task(
                following.follow(
                    "position events",
                    position_events.after,
                    last_notification,
                    bridge.relay_notification,
                ),
                name="relay-notifications",
            )
        )
        tasks.append(asyncio.create_task(bridge.broadcast_market(), name="market-updates"))

    async def release() -> None:
        await stop_tasks(*tasks)
        clients = (signal_client, position_client, auth_client, inference_client)
        for close in (*(c.close for c in clients), jwks.close, revocations.close):
            await close()

    return Edge(app, server, bridge, start, [release])


async def serve(settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT."""
    edge = build(settings)
    # Open long-polls and sockets are closed by the Socket.IO shutdown below; what is
    # left gets the grace every service gives in-flight work.
    runner = web.AppRunner(edge.app, shutdown_timeout=SHUTDOWN_GRACE_SECONDS)
    await runner.setup()
    host, port = settings.general.bind_host, settings.network.edge_port
    await web.TCPSite(runner, host, port).start()
    edge.start()
    # What start-up loaded stays: out of the collector's sight, so full collections do
    # not stall a fan-out to every socket (as common.server does for gRPC services).
    gc.collect()
    gc.freeze()
    log.info("serving", service="edge", address=f"http://{host}:{port}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down", service="edge")
    await edge.sockets.shutdown()  # clients are told, and reconnect to another edge
    await runner.cleanup()
    for release in edge.release:
        await release()
    log.info("stopped", service="edge")


def main() -> None:
    settings = get_settings()
    configure_logging(settings, "edge")
    configure_tracing("edge", settings)  # its gRPC calls; off unless AIFX_OTLP_ENDPOINT
    if settings.network.edge_metrics_port:
        start_http_server(settings.network.edge_metrics_port, addr=settings.general.bind_host)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()

"""The server bootstrap every AIFX service runs under: a grpc.aio server with the
standard health service and reflection, the observability interceptor, a Prometheus
scrape port, and graceful shutdown on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import grpc
import structlog
import uvloop
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from common.interceptors import ObservabilityInterceptor
from common.logging import configure_logging
from common.settings import Settings, get_settings
from common.shutdown import stop_tasks
from common.tracing import configure_tracing

log = structlog.get_logger(__name__)

SHUTDOWN_GRACE_SECONDS = 5.0
# How often the health details of a ServiceSpec are checked.
HEALTH_DETAIL_SECONDS = 1.0


@dataclass
class ServiceSpec:
    """What a service plugs into the bootstrap.

    `register` adds its servicers to the server; `service_names` are the full names of
    the gRPC services it serves (for health and reflection); `health_details` are
    further health-check names and what says they are well (e.g. "replay": the offline
    replay still has history to play), reported SERVING / NOT_SERVING by the standard
    health service, checked every HEALTH_DETAIL_SECONDS; `on_drain` runs when
    shutdown begins, before in-flight RPCs are waited for (e.g. ending long-lived
    streams so clients reconnect elsewhere at once); `on_stop` releases resources after
    the server has stopped.
    """

    name: str
    register: Callable[[grpc.aio.Server], None]
    service_names: Sequence[str]
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    on_drain: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    health_details: Mapping[str, Callable[[], bool]] = field(default_factory=dict)


class RunningServer:
    """A started server: its bound port and how to stop it."""

    def __init__(
        self,
        server: grpc.aio.Server,
        port: int,
        spec: ServiceSpec,
        health_servicer: health.aio.HealthServicer,
    ) -> None:
        self.server = server
        self.port = port
        self.spec = spec
        self.health = health_servicer
        self._details: asyncio.Task[None] | None = None
        if spec.health_details:
            self._details = asyncio.create_task(
                _report_health_details(health_servicer, spec.health_details),
                name=f"{spec.name}-health-details",
            )

    async def stop(self, grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """Report NOT_SERVING, let in-flight RPCs finish within `grace`, then release."""
        if self._details is not None:
            await stop_tasks(self._details)
        await self.health.enter_graceful_shutdown()
        for drain in self.spec.on_drain:
            await drain()
        await self.server.stop(grace)
        for release in self.spec.on_stop:
            await release()


async def _report_health_details(
    servicer: health.aio.HealthServicer, details: Mapping[str, Callable[[], bool]]
) -> None:
    """Keep each detail's health status current (logging each change)."""
    reported: dict[str, bool] = {}
    while True:
        for name, well in details.items():
            try:
                now = bool(well())
            except Exception:  # a failing check is an unwell detail, never a dead server
                log.exception("health detail check failed", detail=name)
                now = False
            if reported.get(name) != now:
                status = (
                    health_pb2.HealthCheckResponse.SERVING
                    if now
                    else (health_pb2.HealthCheckResponse.NOT_SERVING)
                )
                await servicer.set(name, status)
                if name in reported:
                    log.warning("health detail changed", detail=name, serving=now)
                reported[name] = now
        await asyncio.sleep(HEALTH_DETAIL_SECONDS)


async def start_server(spec: ServiceSpec, host: str, port: int) -> RunningServer:
    """Start serving `spec` on host:port (port 0 picks a free one)."""
    server = grpc.aio.server(
        interceptors=[ObservabilityInterceptor()],
        options=[
            ("grpc.so_reuseport", 0),
            ("grpc.keepalive_permit_without_calls", 1),
            # Find dead clients of long-lived streams in a minute, not the default 2 h.
            ("grpc.keepalive_time_ms", 60_000),
            ("grpc.keepalive_timeout_ms", 20_000),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            # Accept our clients' keepalive pings (common.grpc_client: one a minute on a
            # connection with calls) however quiet the calls are; grpc's default
            # answers pings more often than every 5 minutes with GOAWAY.
            ("grpc.http2.min_recv_ping_interval_without_data_ms", 30_000),
        ],
    )
    spec.register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [*spec.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"{spec.name}: cannot bind {host}:{port}")
    await server.start()
    serving = health_pb2.HealthCheckResponse.SERVING
    for name in ("", *spec.service_names):
        await health_servicer.set(name, serving)
    log.info("serving", service=spec.name, address=f"{host}:{bound}")
    return RunningServer(server, bound, spec, health_servicer)


@dataclass(frozen=True)
class HostedService:
    """A gRPC service as a process runs it: its name (logs, traces), how to build it from
    the settings, and its (gRPC port, metrics port)."""

    name: str
    build: Callable[[Settings], ServiceSpec]
    ports: Callable[[Settings], tuple[int, int]]


async def serve_forever(spec: ServiceSpec, host: str, port: int, metrics_port: int) -> None:
    """Run one service until SIGTERM or SIGINT, then shut down gracefully."""
    await serve_all([(spec, port)], host, metrics_port)


async def serve_all(
    services: Sequence[tuple[ServiceSpec, int]], host: str, metrics_port: int
) -> None:
    """Run `services` (each on its port) in this process until SIGTERM or SIGINT, then
    shut them down gracefully, the last started first (callers before what they call).
    One metrics port: the process has one Prometheus registry, whatever it hosts."""
    if metrics_port:
        start_http_server(metrics_port, addr=host)
        log.info("metrics", url=f"http://{host}:{metrics_port}/metrics")
    running = [await start_server(spec, host, port) for spec, port in services]
    # Everything loaded at start-up (modules, models, history) stays: move it out of the
    # collector's sight so full collections do not stall the event loop for 100+ ms.
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for server in reversed(running):
        log.info("shutting down", service=server.spec.name)
        await server.stop()
        log.info("stopped", service=server.spec.name)


def run_service(service: HostedService) -> None:
    """The `main()` of every service: read the settings, configure logging, then build
    inside the running event loop (gRPC channels bind to the loop that creates them) and
    serve on its ports until SIGTERM/SIGINT."""
    run_services(service.name, [service])


def run_services(process: str, services: Sequence[HostedService]) -> None:
    """Several services in one process (`make run` with AIFX_COMPACT, stack/core.py):
    one interpreter's memory instead of one each, at the price of their isolation (one
    crash takes all of them down; supervisord restarts them together). Metrics of all of
    them on the first one's metrics port."""
    settings = get_settings()
    configure_logging(settings, process)
    configure_tracing(process, settings)  # off unless AIFX_OTLP_ENDPOINT is set
    bound = [(service, *service.ports(settings)) for service in services]

    async def serve() -> None:
        specs = [(service.build(settings), port) for service, port, _ in bound]
        await serve_all(specs, settings.general.bind_host, bound[0][2])

    # uvloop's event loop (libuv, in C) instead of asyncio's own: gRPC's aio server runs
    # every call through the loop, and on the REST read path the loop was most of
    # signal_svc's own CPU (issue 15: 0.27 -> 0.23 ms per GetSignal, +15 % req/s).
    uvloop.run(serve())

"""position_svc end to end, in this process, behind a real Envoy (once per backend: the
embedded SQLite default and PostgreSQL + Redis):

    httpx ──▶ Envoy ──▶ position_svc ──(GetPriceInternal, StreamPricesInternal)──▶ signal_svc
                 ├────▶ signal_svc ──▶ inference ──▶ model server (the committed model)
                 └────▶ auth_svc ◀── (JWKS over gRPC) ── position_svc, signal_svc

The signal chain is the one of tests/signal_e2e (its settings and helpers are reused),
with a replay slow enough to tell bars apart from the outside: REPLAY_SPEED market
seconds per real second is ten hour bars a second (a weekend gap lasts about 5 s), so a
test can know which bar the replay is on when a position closes. position_svc is
`position_svc.server.build` with `signal_target` pointing at that signal_svc, on a
database of its own (signal_svc keeps writing candles and signals on its own one).

Everything shares the tests' event loop: HTTP goes through `httpx.AsyncClient`, Envoy is
started and stopped in a worker thread, nothing blocks the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import grpc
import httpx
import pytest

from aifx.position.v1 import position_pb2_grpc
from aifx.signal.v1 import signal_pb2, signal_pb2_grpc
from common.grpc_metadata import SERVICE_TOKEN_HEADER
from common.migrations import upgrade
from common.server import RunningServer, start_server
from common.settings import Settings
from tests.envoy import envoy_settings, http_client, running_envoy, wait_for_jwks
from tests.inference.conftest import (  # noqa: F401 (fixtures used by this directory)
    InferenceStack,
    inference,
    model_config_file,
    model_server,
    served_version_dir,
)
from tests.infra import (
    AuthStack,
    EnvoyProcess,
    create_postgres_database,
    delete_redis_prefix,
    drop_postgres_database,
    run_sync,
)
from tests.signal_e2e.conftest import (
    sign_up,
    signal_settings,
    stop_or_explain,
    wait_for_first_signal,
)

# Market seconds per real second: ten hour bars a second.
REPLAY_SPEED = 36_000.0
BAR_SECONDS = 3600
PAIR = "EUR/USD"


@dataclass
class PositionEdge:
    """signal_svc, position_svc (both in process) and auth_svc behind a real Envoy, with
    a signed-in user."""

    auth: AuthStack
    signal: RunningServer
    position: RunningServer
    envoy: EnvoyProcess
    settings: Settings
    access_token: str
    service_token: str
    signal_channel: grpc.aio.Channel
    position_channel: grpc.aio.Channel

    @property
    def url(self) -> str:
        return self.envoy.url

    @property
    def service_credential(self) -> tuple[tuple[str, str], ...]:
        return ((SERVICE_TOKEN_HEADER, self.service_token),)

    @property
    def signal_internal(self) -> signal_pb2_grpc.SignalInternalServiceStub:
        """signal_svc's internal API directly over gRPC (what position_svc reads)."""
        return signal_pb2_grpc.SignalInternalServiceStub(self.signal_channel)

    @property
    def position_stub(self) -> position_pb2_grpc.PositionServiceStub:
        """position_svc directly over gRPC (not through Envoy)."""
        return position_pb2_grpc.PositionServiceStub(self.position_channel)

    async def new_user(self) -> str:
        """A new user's access token (each test that counts positions wants its own)."""
        return await sign_up(self.url)

    async def market_price(self) -> signal_pb2.Price:
        """signal_svc's current EUR/USD price (the close of the replay's last bar)."""
        response = await self.signal_internal.GetPriceInternal(
            signal_pb2.GetPriceInternalRequest(pair=PAIR), metadata=self.service_credential
        )
        return response.price


# Package scope: the stack replays, predicts and watches all the time, so it stops when
# this directory's tests are done instead of loading the event loop of every later test.
@pytest.fixture(scope="package")
async def position_edge(
    auth: AuthStack,
    inference: InferenceStack,  # noqa: F811 (the fixture imported above)
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[PositionEdge]:
    """The chain of the module docstring, with the first signal stored."""
    from position_svc.server import build as build_position
    from signal_svc.server import build as build_signal

    own_databases: list[str] = []
    if auth.settings.storage.database_url:
        urls = []
        for _ in range(2):
            name, url = await asyncio.to_thread(run_sync, create_postgres_database())
            own_databases.append(name)
            urls.append(url)
        signal_url, position_url = urls
    else:
        directory = tmp_path_factory.mktemp("position-e2e-db")
        signal_url = f"sqlite+aiosqlite:///{directory}/signal.db"
        position_url = f"sqlite+aiosqlite:///{directory}/position.db"
    # A Redis prefix of its own: this signal_svc lives for the whole session, and on
    # the signal_e2e prefix its relay would deliver its signals to that stack's streams.
    settings = signal_settings(auth, inference, signal_url).replace(
        **{
            "replay_speed": REPLAY_SPEED,
            "redis_prefix": f"{auth.settings.storage.redis_prefix}position-e2e-signal:",
        }
    )
    signal_redis_prefix = settings.storage.redis_prefix
    signal: RunningServer | None = None
    position: RunningServer | None = None
    channels: list[grpc.aio.Channel] = []
    try:
        await asyncio.to_thread(upgrade, "signal_svc", settings)
        signal = await start_server(build_signal(settings), "127.0.0.1", 0)
        settings = settings.replace(
            **{
                "database_url": position_url,
                "redis_prefix": f"{auth.settings.storage.redis_prefix}position-e2e:",
                "signal_target": f"127.0.0.1:{signal.port}",
                "signal_port": signal.port,
                "position_metrics_port": 0,
            }
        )
        await asyncio.to_thread(upgrade, "position_svc", settings)
        position = await start_server(build_position(settings), "127.0.0.1", 0)
        channels = [
            grpc.aio.insecure_channel(f"127.0.0.1:{signal.port}"),
            grpc.aio.insecure_channel(f"127.0.0.1:{position.port}"),
        ]
        edge_settings = envoy_settings(settings, auth.server.port).replace(
            **{"signal_port": signal.port, "position_port": position.port}
        )
        async with running_envoy(edge_settings, tmp_path_factory.mktemp("envoy")) as envoy:
            await wait_for_jwks(envoy)
            token = await sign_up(envoy.url)
            await wait_for_first_signal(channels[0], token)
            yield PositionEdge(
                auth=auth,
                signal=signal,
                position=position,
                envoy=envoy,
                settings=settings,
                access_token=token,
                service_token=settings.tokens.service_token.get_secret_value(),
                signal_channel=channels[0],
                position_channel=channels[1],
            )
    finally:
        for channel in channels:
            await channel.close()
        if position is not None:
            await position.stop(grace=0.5)
        if signal is not None:
            await stop_or_explain(signal)
        if auth.settings.storage.redis_url:  # only after the stop: a writer would recreate keys
            await delete_redis_prefix(signal_redis_prefix)
            await delete_redis_prefix(settings.storage.redis_prefix)
        for name in own_databases:
            await asyncio.to_thread(run_sync, drop_postgres_database(name))


@pytest.fixture
async def http(position_edge: PositionEdge) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for Envoy's public listener."""
    async with http_client(position_edge.url) as client:
        yield client


# --- helpers of the tests here ----------------------------------------------------------

POSITIONS_PATH = "/api/v1/positions"
EVENTS_PATH = "/api/v1/positions/events:stream"


def price_decimal(value: float) -> Decimal:
    """A replayed price as position_svc reads it (a quote has at most 6 decimals)."""
    return Decimal(repr(round(float(value), 6)))


def market_time(timestamp: Any) -> datetime:
    """A google.protobuf.Timestamp as an aware UTC datetime."""
    return timestamp.ToDatetime().replace(tzinfo=UTC)


@dataclass
class SeenTick:
    """A StreamPricesInternal update as this test saw it, with when it arrived."""

    received: float  # time.monotonic()
    bar_close: datetime  # market time: the close of the replayed bar
    price: Decimal
    high: Decimal
    low: Decimal


@dataclass
class TickObserver:
    """Every EUR/USD update of signal_svc's StreamPricesInternal (the stream position_svc's
    watcher follows), recorded in arrival order."""

    ticks: list[SeenTick] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def seen_before(self, moment: float) -> list[SeenTick]:
        return [tick for tick in self.ticks if tick.received <= moment]

    async def next_after(self, bar_close: datetime, within: float) -> SeenTick:
        """The first tick of a bar closing after `bar_close`."""
        deadline = time.monotonic() + within
        while True:
            later = [tick for tick in self.ticks if tick.bar_close > bar_close]
            if later:
                return later[0]
            self.arrived.clear()
            async with asyncio.timeout(max(0.01, deadline - time.monotonic())):
                await self.arrived.wait()


@contextlib.asynccontextmanager
async def observed_ticks(edge: PositionEdge) -> AsyncIterator[TickObserver]:
    observer = TickObserver()
    stream = edge.signal_internal.StreamPricesInternal(
        signal_pb2.StreamPricesInternalRequest(pairs=[PAIR]), metadata=edge.service_credential
    )

    async def follow() -> None:
        async for message in stream:
            if message.WhichOneof("event") != "update":
                continue
            update = message.update
            observer.ticks.append(
                SeenTick(
                    received=time.monotonic(),
                    bar_close=market_time(update.price.time),
                    price=price_decimal(update.price.price),
                    high=price_decimal(update.high),
                    low=price_decimal(update.low),
                )
            )
            observer.arrived.set()

    task = asyncio.create_task(follow(), name="observe EUR/USD ticks")
    try:
        yield observer
    finally:
        stream.cancel()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
            await task

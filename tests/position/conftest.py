"""Fixtures of the position service tests: position_svc built by its own server.py and
served in process (migrated, on both backends: embedded SQLite, and real PostgreSQL +
Redis), auth_svc in process for real access tokens, and a price stand-in for signal_svc
fed with real bundled EUR/USD bars (tests/position/price_standin.py).

The stack is shared by a backend's tests (starting it costs a migration), so every test
works with users of its own: positions, events and performance are per user. The
database also holds one "sentinel" open position without levels; its current price, as
a server reports it, tells that the server's watcher has evaluated a pushed tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from aifx.auth.v1 import auth_pb2, auth_pb2_grpc
from aifx.common.v1 import market_pb2
from aifx.position.v1 import position_pb2, position_pb2_grpc
from common.candles import Candles
from common.db import create_engine, session_factory
from common.grpc_metadata import SERVICE_TOKEN_HEADER
from common.market import Timeframe
from common.market_data import load_bundled_history
from common.migrations import upgrade
from common.server import RunningServer, start_server
from common.settings import Settings
from position_svc.models import EventRow, PositionRow
from position_svc.positions import PositionEvent
from position_svc.repository import PositionRepository
from position_svc.server import build
from tests.infra import AuthStack, eventually
from tests.position.price_standin import PriceStandIn, price_standin

SERVICE_TOKEN = "position-tests-service-token"
SERVICE = ((SERVICE_TOKEN_HEADER, SERVICE_TOKEN),)
PAIR = "EUR/USD"
BUY = market_pb2.TRADE_ACTION_BUY
SELL = market_pb2.TRADE_ACTION_SELL
# A bar whose close is the price before the first test pushes anything.
START_BAR = 10


@dataclass(frozen=True)
class User:
    id: str
    token: str

    @property
    def auth(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)


@dataclass
class PositionServer:
    """One position_svc server in process, with clients."""

    running: RunningServer
    channel: grpc.aio.Channel
    stub: position_pb2_grpc.PositionServiceStub
    internal: position_pb2_grpc.PositionInternalServiceStub

    async def stop(self) -> None:
        await self.channel.close()
        await self.running.stop(grace=0.2)


@contextlib.asynccontextmanager
async def serve_positions(settings: Settings) -> AsyncIterator[PositionServer]:
    """position_svc as server.py builds it, on a free port."""
    running = await start_server(build(settings), "127.0.0.1", 0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    server = PositionServer(
        running,
        channel,
        position_pb2_grpc.PositionServiceStub(channel),
        position_pb2_grpc.PositionInternalServiceStub(channel),
    )
    try:
        yield server
    finally:
        await server.stop()


@dataclass
class PositionEnv:
    """A backend's shared stack: settings, auth, the price stand-in, the main server."""

    settings: Settings
    auth: AuthStack
    bars: Candles
    prices: PriceStandIn
    main: PositionServer
    engine: AsyncEngine
    repository: PositionRepository
    sentinel: tuple[User, str] | None = None

    @property
    def stub(self) -> position_pb2_grpc.PositionServiceStub:
        return self.main.stub

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    def settings_for(self, prices: PriceStandIn | None = None, **overrides: Any) -> Settings:
        """Settings of another server on the same database (and stand-in by default)."""
        target = (prices or self.prices).address
        return self.settings.replace(**{"signal_target": target, **overrides})

    async def user(self) -> User:
        tag = uuid.uuid4().hex[:12]
        reply = await auth_pb2_grpc.AuthServiceStub(self.auth.channel).Register(
            auth_pb2.RegisterRequest(
                email=f"pos{tag}@example.com", username=f"pos_{tag}", password="correct horse"
            )
        )
        return User(reply.user.id, reply.tokens.access_token)

    async def open(self, user: User, stub=None, **fields: Any) -> position_pb2.Position:  # type: ignore[no-untyped-def]
        fields = {"pair": PAIR, "side": BUY, "lot_size": "0.10", **fields}
        response = await (stub or self.stub).OpenPosition(
            position_pb2.OpenPositionRequest(**fields), metadata=user.auth
        )
        return response.position

    async def get(self, user: User, position_id: str, stub=None) -> position_pb2.Position:  # type: ignore[no-untyped-def]
        response = await (stub or self.stub).GetPosition(
            position_pb2.GetPositionRequest(id=position_id), metadata=user.auth
        )
        return response.position

    async def evaluated(self, close: Decimal, server: PositionServer | None = None) -> None:
        """Until `server`'s watcher has taken `close` as the latest price (it evaluates
        a tick's levels, synchronously, right after noting its price)."""
        assert self.sentinel is not None
        user, position_id = self.sentinel
        stub = (server or self.main).stub

        async def seen() -> bool:
            return (await self.get(user, position_id, stub)).current_price == str(close)

        await eventually(seen, f"the watcher to evaluate the price {close}")

    async def tick(
        self,
        index: int,
        *servers: PositionServer,
        prices: PriceStandIn | None = None,
        lap: int = 0,
    ) -> Decimal:
        """Push real bar `index` (of replay lap `lap`) and wait until every server
        (default: the main one) has evaluated it; its close. When the current price is
        that close already (and was evaluated), nothing is pushed: the wait could not
        tell the two apart."""
        prices = prices or self.prices
        previous = prices.current.get(PAIR)
        close = prices.close_of(index)
        if previous is None or prices.close_of_update(previous) != close:
            prices.push(index, lap)
        for server in servers or (self.main,):
            await self.evaluated(close, server)
        return close

    async def closed(self, user: User, position_id: str, stub=None) -> position_pb2.Position:  # type: ignore[no-untyped-def]
        """Until the position is closed; the closed position."""
        found: list[position_pb2.Position] = []

        async def is_closed() -> bool:
            found[:] = [await self.get(user, position_id, stub)]
            return found[0].status == position_pb2.POSITION_STATUS_CLOSED

        await eventually(is_closed, f"position {position_id} to close")
        return found[0]

    async def events_of(self, position_id: str) -> list[PositionEvent]:
        """Every stored event of one position, in id order."""
        async with session_factory(self.engine)() as session:
            user_id = await session.scalar(
                select(PositionRow.user_id).where(PositionRow.id == position_id)
            )
        assert user_id is not None
        events = await self.repository.events_after(0, 100_000, user_id)
        return [event for event in events if event.position.id == position_id]

    async def positions_of(self, user: User) -> int:
        async with session_factory(self.engine)() as session:
            count = await session.scalar(
                select(func.count()).select_from(PositionRow).where(PositionRow.user_id == user.id)
            )
        return int(count or 0)

    async def last_event_id(self) -> int:
        async with session_factory(self.engine)() as session:
            return int(await session.scalar(select(func.max(EventRow.id))) or 0)


@pytest.fixture(scope="session")
def bars() -> Candles:
    """The real bundled EUR/USD hours."""
    return load_bundled_history(PAIR, Timeframe.H1)


@pytest.fixture(scope="session")
async def position_env(
    backend_settings: Settings, auth: AuthStack, bars: Candles
) -> AsyncIterator[PositionEnv]:
    async with price_standin(bars, SERVICE_TOKEN) as prices:
        prices.set(START_BAR)
        settings = backend_settings.replace(
            **{
                "auth_target": auth.address,
                "signal_target": prices.address,
                "service_token": SecretStr(SERVICE_TOKEN),
                # Sweeps would close positions on their own schedule: the tests that are
                # about sweeps start servers of their own with a short one.
                "position_sweep_seconds": 600.0,
                "position_event_poll_seconds": 0.05,
                "stream_heartbeat_seconds": 0.5,
            }
        )
        await asyncio.to_thread(upgrade, "position_svc", settings)
        engine = create_engine(settings)
        async with serve_positions(settings) as main:
            env = PositionEnv(
                settings,
                auth,
                bars,
                prices,
                main,
                engine,
                PositionRepository(session_factory(engine)),
            )
            await prices.wait_streams(1)
            sentinel_user = await env.user()
            sentinel = await env.open(sentinel_user)
            env.sentinel = (sentinel_user, sentinel.id)
            yield env
        await engine.dispose()


@pytest.fixture
def env(position_env: PositionEnv) -> PositionEnv:
    """The backend's shared stack (each test makes users of its own)."""
    return position_env


# --- errors ------------------------------------------------------------------------


async def fails(call: Awaitable[Any], code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    return caught.value


def status_details(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    """The google.rpc.Status in the trailing metadata `grpc-status-details-bin`."""
    (value,) = [
        value for key, value in error.trailing_metadata() or () if key == "grpc-status-details-bin"
    ]
    return status_pb2.Status.FromString(value)


def violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    """field → description of the google.rpc.BadRequest in the error's details."""
    found: dict[str, str] = {}
    for packed in status_details(error).details:
        bad = error_details_pb2.BadRequest()
        if packed.Unpack(bad):
            found.update({v.field: v.description for v in bad.field_violations})
    return found

"""The edge as built for `python -m edge`, with what it talks to, for the suites that
drive it with real Socket.IO clients (python-socketio's, socket.io-client from Node):
auth_svc (real tokens), a stream stand-in playing signal_svc's signal and price streams
and position_svc's position-event stream, the edge on a free port, and Envoy in front.

A module that uses the `edge` fixture imports it (`from tests.edge.edge_stack import
running_edge`); the stack is per module.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aifx.auth.v1 import auth_pb2
from aifx.common.v1 import market_pb2
from aifx.position.v1 import position_pb2
from aifx.signal.v1 import signal_pb2
from auth_svc.signing_keys import load_signing_key
from common.service_credentials import load_service_token
from common.settings import Settings
from tests.auth.test_auth_rpcs import register, stub
from tests.envoy import envoy_settings, running_envoy
from tests.infra import AuthStack, sign_access_token
from tests.notifier_e2e.stream_standin import StreamStandin


def price_update(pair: str, price: float, *, at: datetime | None = None) -> signal_pb2.PriceUpdate:
    """A quote with a small range around it."""
    update = signal_pb2.PriceUpdate(
        price=signal_pb2.Price(pair=pair, price=price), high=price + 0.0005, low=price - 0.0005
    )
    update.price.time.FromDatetime(at or datetime.now(UTC))
    return update


def position_event(event_id: int, user_id: str, kind: str = "opened") -> position_pb2.PositionEvent:
    """Event `event_id` of kind `kind` (opened, updated, take_profit_hit, stop_loss_hit,
    closed) on a EUR/USD buy of `user_id`: the position's `user_id` is who is told."""
    closed = kind not in ("opened", "updated")
    position = position_pb2.Position(
        id=f"pos-{event_id}",
        user_id=user_id,
        pair="EUR/USD",
        side=market_pb2.TRADE_ACTION_BUY,
        lot_size="0.10",
        entry_price="1.08410",
        stop_loss="1.07910",
        take_profit="1.09410",
        status=position_pb2.POSITION_STATUS_CLOSED if closed else position_pb2.POSITION_STATUS_OPEN,
        exit_price="1.09410" if closed else "",
        pips="100.0" if closed else "0.0",
        realized_pnl="100.00" if closed else "0.00",
        pnl_currency="USD",
    )
    event = position_pb2.PositionEvent(
        id=event_id,
        type=getattr(position_pb2, f"POSITION_EVENT_TYPE_{kind.upper()}"),
        position=position,
    )
    event.time.GetCurrentTime()
    return event


@dataclass
class EdgeStack:
    url: str  # the edge itself
    public: str  # Envoy in front of it
    streams: StreamStandin
    auth: AuthStack
    settings: Settings

    async def new_user(self) -> tuple[str, str]:
        """A registered user: (access token, user id)."""
        reply = await register(self.auth)
        return reply.tokens.access_token, reply.user.id

    def token(self, user_id: str, expires_in: float, *, forged: bool = False) -> str:
        """An access token of `user_id` signed with auth_svc's own key (`forged`: with
        another one, under the same key id), valid for `expires_in` seconds (negative:
        already expired)."""
        key = load_signing_key(self.auth.settings)
        now = int(time.time())
        return sign_access_token(
            Ed25519PrivateKey.generate() if forged else key.private_key,
            key.kid,
            self.auth.settings.tokens,
            sub=user_id,
            iat=now if expires_in > 0 else now + int(expires_in) - 60,
            exp=now + int(expires_in),
        )

    async def revoked_token(self) -> str:
        """The access token of a session that was signed out (auth_svc revoked it)."""
        tokens = (await register(self.auth)).tokens
        await stub(self.auth).Logout(
            auth_pb2.LogoutRequest(refresh_token=tokens.refresh_token),
            metadata=(("authorization", f"Bearer {tokens.access_token}"),),
        )
        return tokens.access_token


@asynccontextmanager
async def serving(settings: Settings, *, relay: bool = True) -> AsyncIterator[int]:
    """The edge as `python -m edge` builds it, on a free port (yielded), its relays
    started when `relay`; stopped and released after."""
    from edge.server import build

    built = build(settings)
    runner = web.AppRunner(built.app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    if relay:
        built.start()
    try:
        yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    finally:
        await built.sockets.shutdown()
        await runner.cleanup()
        for release in built.release:
            await release()


@pytest.fixture(scope="module", name="edge")
async def running_edge(auth, tmp_path_factory) -> AsyncIterator[EdgeStack]:
    """The edge on a free port following the stream stand-in, and Envoy in front."""
    token = load_service_token(auth.settings)
    streams = StreamStandin(token)
    await streams.start()
    settings = auth.settings.replace(
        auth_target=auth.address,
        signal_target=streams.target,
        position_target=streams.target,
        service_token=token,
    )
    try:
        async with serving(settings) as port:
            proxied = envoy_settings(settings, auth.server.port).replace(edge_port=port)
            async with running_envoy(proxied, tmp_path_factory.mktemp("envoy")) as envoy:
                yield EdgeStack(f"http://127.0.0.1:{port}", envoy.url, streams, auth, settings)
    finally:
        await streams.stop()

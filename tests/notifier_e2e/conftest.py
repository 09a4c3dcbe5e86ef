"""The notifier end to end, in this process: the bot (`notifier.server.build`, the
unmodified discord.py client) against the local Discord stand-in (REST and gateway),
and against the real services of tests/position_e2e (auth_svc, signal_svc replaying
real history with the committed model, position_svc, Envoy), on both backends.

A user signs up and links through REST and `/link` exactly as a trader would; slash
commands are dispatched through the stand-in's gateway and answered through its
interaction callbacks; DMs are what the stand-in recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.migrations import upgrade
from common.server import RunningServer, start_server
from common.settings import Settings
from tests.discord_standin import TOKEN, DiscordStandin, running_standin
from tests.envoy import http_client
from tests.infra import (
    AuthStack,
    auth_stack,
    create_postgres_database,
    drop_postgres_database,
    run_sync,
)
from tests.position_e2e.conftest import (  # noqa: F401 (fixtures used by this directory)
    InferenceStack,
    PositionEdge,
    inference,
    model_config_file,
    model_server,
    position_edge,
    served_version_dir,
)

GUILD_ID, SIGNALS_CHANNEL_ID = "600000000000000001", "600000000000000002"
_discord_ids = iter(range(310_000_000_000_000_000, 320_000_000_000_000_000, 7919))


@dataclass
class BotStack:
    edge: PositionEdge
    standin: DiscordStandin
    notifier: RunningServer
    settings: Settings
    auth: AuthStack  # the notifier's auth_svc (same database and keys as Envoy's)

    def http(self) -> httpx.AsyncClient:
        return http_client(self.edge.url)

    async def command(
        self, name: str, options: dict[str, Any] | None = None, *, user: str, followups: int = 1
    ) -> dict[str, Any]:
        """Run a slash command as Discord user `user`; its (last) follow-up message."""
        record = await self.standin.interact(name, options or {}, user_id=user)
        messages = await record.wait_for_followups(followups, timeout=15.0)
        return messages[-1]


@dataclass
class Trader:
    """A signed-up user with a linked Discord account."""

    access_token: str
    discord_id: str

    @property
    def bearer(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.access_token}"}


def new_discord_id() -> str:
    return str(next(_discord_ids))


@pytest.fixture(scope="package")
async def bot(
    position_edge: PositionEdge,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[BotStack]:
    from notifier.server import build

    own_database = None
    if position_edge.settings.storage.database_url:
        own_database, url = await asyncio.to_thread(run_sync, create_postgres_database())
    else:
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('notifier-db')}/notifier.db"
    # A second auth_svc on the session's auth database and keys, with the service
    # credential the signal chain uses (the session's auth_svc has one of its own): one
    # credential across every service, as in a deployment.
    auth_settings = position_edge.auth.settings.replace(
        service_token=position_edge.service_token, auth_metrics_port=0
    )
    try:
        async with running_standin() as standin, auth_stack(auth_settings) as auth:
            # The replay closes ten hour bars a second, so a subscriber is owed up to ten
            # signal DMs a second, where Discord's 5-per-5-s DM channel limit would queue
            # them for minutes; rate limits are proven in tests/discord and the notifier's
            # own tests, not here.
            standin.message_limit = None
            standin.add_guild(GUILD_ID, {SIGNALS_CHANNEL_ID: "signals"})
            settings = position_edge.settings.replace(
                database_url=url,
                discord_token=TOKEN,
                discord_api_base=standin.api_base,
                auth_target=auth.address,
                position_target=f"127.0.0.1:{position_edge.position.port}",
                notifier_metrics_port=0,
            )
            await asyncio.to_thread(upgrade, "notifier", settings)
            notifier = await start_server(build(settings), "127.0.0.1", 0)
            try:
                await standin.wait_until(
                    lambda: standin.sessions >= 1, 20.0, "the bot's gateway session"
                )
                await standin.wait_until(
                    lambda: bool(standin.commands), 20.0, "the commands synced"
                )
                yield BotStack(position_edge, standin, notifier, settings, auth)
            finally:
                await notifier.stop(grace=0.5)
    finally:
        if own_database:
            await asyncio.to_thread(run_sync, drop_postgres_database(own_database))


def notifier_serving(notifier: RunningServer):
    """Whether the notifier reports its Discord connection ready (its health detail)."""

    async def check() -> bool:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{notifier.port}") as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="discord")
            )
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    return check


async def linked_trader(bot: BotStack, discord_id: str | None = None, **preferences: Any) -> Trader:
    """Sign up through Envoy, create a link code, `/link` it from a new Discord user,
    then set `preferences` (REST JSON names) — the way a trader does it."""
    token = await bot.edge.new_user()
    trader = Trader(token, discord_id or new_discord_id())
    async with bot.http() as http:
        code = await http.post("/api/v1/auth/discord/link-code", headers=trader.bearer, json={})
        assert code.status_code == 200, code.text
        linked = await bot.command("link", {"code": code.json()["code"]}, user=trader.discord_id)
        assert linked["embeds"][0]["title"].startswith("Linked to AIFX account"), linked["embeds"]
        if preferences:
            response = await http.patch(
                "/api/v1/auth/preferences", headers=trader.bearer, json=preferences
            )
            assert response.status_code == 200, response.text
    return trader

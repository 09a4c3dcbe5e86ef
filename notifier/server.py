"""Wiring of the notifier: the gRPC clients, the ledger, the fan-outs and their loops,
and the discord.py bot, under the common server bootstrap (health, reflection, metrics,
logging, graceful shutdown). No logic here."""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta

import discord
import grpc
import structlog

from common.db import create_engine, session_factory
from common.grpc_client import GrpcClient
from common.logging import configure_logging
from common.server import HostedService, ServiceSpec, run_service
from common.service_credentials import load_service_token
from common.settings import Settings, get_settings
from common.shutdown import stop_tasks
from notifier.bot import AifxBot, point_at
from notifier.channels import Channels
from notifier.clients import AuthClient
from notifier.commands import Commands
from notifier.discord_dms import DiscordDirectMessages
from notifier.fanout import PositionFanout, Sender, SignalFanout
from notifier.ledger import Ledger
from notifier.loops import follow, send_owed
from notifier.pacing import SlidingWindowLimit
from notifier.platform_clients import (
    HealthClient,
    MarketClient,
    PositionEventStream,
    SignalStream,
    TradingClient,
)

log = structlog.get_logger(__name__)

BOT_OFF = (
    "AIFX_DISCORD_TOKEN is not set: the Discord bot is off. Create a bot in the Discord "
    "developer portal and set its token (README: Discord), or point "
    "AIFX_DISCORD_API_BASE at the local stand-in."
)


def build(settings: Settings) -> ServiceSpec:
    """The notifier's parts, ready to run; call inside the running event loop."""
    network = settings.network
    api_base = settings.discord.discord_api_base
    credential = load_service_token(settings)

    def client(name: str, target: str, *, as_service: bool = True) -> GrpcClient:
        return GrpcClient(name, target, service_token=credential if as_service else "")

    auth = client("auth_svc", network.effective_auth_target)
    auth_as_user = client("auth_svc", network.effective_auth_target, as_service=False)
    signal = client("signal_svc", network.effective_signal_target)
    position = client("position_svc", network.effective_position_target)
    position_as_user = client("position_svc", network.effective_position_target, as_service=False)
    inference = client("inference", network.effective_inference_target)
    grpc_clients = [auth, auth_as_user, signal, position, position_as_user, inference]

    database = create_engine(settings)
    sessions = session_factory(database)
    lease = timedelta(seconds=settings.discord.notifier_claim_seconds)
    shard = f"shard-{settings.discord.discord_shard_id}-of-{settings.discord.discord_shard_count}"
    ledger, channels = Ledger(sessions, lease=lease, owner=shard), Channels(sessions)
    accounts = AuthClient(auth, auth_as_user)
    health = HealthClient(
        {"auth": auth, "signal": signal, "position": position, "inference": inference}
    )
    market, trading = MarketClient(signal, inference), TradingClient(position_as_user)
    commands = Commands(accounts, market, trading, health, channels)
    point_at(settings.discord.discord_api_base)
    bot = AifxBot(
        commands,
        api_base=settings.discord.discord_api_base,
        sync_guilds=[int(g) for g in settings.discord.discord_command_guilds],
        shard_id=settings.discord.discord_shard_id,
        shard_count=settings.discord.discord_shard_count,
    )
    # Every shard shares the bot's one global limit.
    pace = SlidingWindowLimit(
        max(1, settings.discord.discord_global_limit // settings.discord.discord_shard_count)
    )
    dms = DiscordDirectMessages(bot, pace)
    concurrency = settings.discord.notifier_send_concurrency
    sender = Sender(ledger, dms, accounts, channels, concurrency=concurrency)
    owed = asyncio.Event()
    signals, positions = SignalStream(signal), PositionEventStream(position)
    tasks: list[asyncio.Task[None]] = []

    def follow_streams() -> None:
        """Owing needs no Discord: follow from the start, so no event passes while the
        bot connects (a first run follows live, from when it starts)."""
        tasks.append(
            asyncio.create_task(
                follow("signals", signals.signals, SignalFanout(ledger, accounts, channels), owed),
                name="follow-signals",
            )
        )
        tasks.append(
            asyncio.create_task(
                follow(
                    "position events",
                    lambda after: positions.events(int(after) if after else None),
                    PositionFanout(ledger, accounts),
                    owed,
                ),
                name="follow-positions",
            )
        )

    async def start_discord() -> None:
        """Log in (REST: enough to send DMs), then connect to the gateway for slash
        commands. A token Discord refuses is said plainly; the notifier then reports
        NOT_SERVING and owes DMs until it is restarted with a good one."""
        try:
            await bot.login(settings.discord.discord_token.get_secret_value())
        except discord.LoginFailure:
            log.error("Discord refused AIFX_DISCORD_TOKEN; the bot is off", api=api_base)
            return
        pace.fill()  # the log-in, the sync and a killed predecessor's requests
        batch = settings.discord.notifier_send_batch
        tasks.append(asyncio.create_task(send_owed(sender, owed, batch=batch), name="send"))
        tasks.append(asyncio.create_task(bot.connect(), name="discord"))
        await bot.wait_until_ready()
        log.info("discord ready", user=str(bot.user), api=api_base)

    def register(server: grpc.aio.Server) -> None:
        follow_streams()
        tasks.append(asyncio.create_task(start_discord(), name="notifier-start"))

    async def release() -> None:
        await bot.close()
        await stop_tasks(*tasks)
        for grpc_client in grpc_clients:
            await grpc_client.close()
        await database.dispose()

    return ServiceSpec(
        name="notifier",
        register=register,
        service_names=[],
        on_stop=[release],
        health_details={"discord": bot.is_ready},
    )


def main() -> None:
    settings = get_settings()
    if not settings.discord.discord_token.get_secret_value():
        configure_logging(settings, "notifier")
        log.error(BOT_OFF)
        sys.exit(2)
    run_service(
        HostedService(
            "notifier", build, lambda s: (s.discord.notifier_port, s.discord.notifier_metrics_port)
        )
    )


if __name__ == "__main__":
    main()

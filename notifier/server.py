"""Wiring of the notifier: the gRPC clients, the ledger, the fan-outs and their loops,
and the discord.py bot, under the common server bootstrap (health, reflection, metrics,
logging, graceful shutdown). No logic here."""

from __future__ import annotations

import asyncio
import sys

import grpc
import structlog

from common.db import create_engine, session_factory
from common.grpc_client import GrpcClient
from common.logging import configure_logging
from common.server import ServiceSpec, run_service
from common.service_credentials import load_service_token
from common.settings import Settings, get_settings
from common.shutdown import stop_tasks
from notifier.bot import AifxBot, point_at
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
    ledger = Ledger(session_factory(database))
    accounts = AuthClient(auth, auth_as_user)
    health = HealthClient(
        {"auth": auth, "signal": signal, "position": position, "inference": inference}
    )
    commands = Commands(
        accounts, MarketClient(signal, inference), TradingClient(position_as_user), health
    )
    point_at(settings.discord.discord_api_base)
    bot = AifxBot(
        commands,
        api_base=settings.discord.discord_api_base,
        sync_guilds=[int(g) for g in settings.discord.discord_command_guilds],
    )
    dms = DiscordDirectMessages(bot, SlidingWindowLimit(settings.discord.discord_global_limit))
    sender = Sender(ledger, dms, accounts, concurrency=settings.discord.notifier_send_concurrency)
    owed = asyncio.Event()
    signals, positions = SignalStream(signal), PositionEventStream(position)
    tasks: list[asyncio.Task[None]] = []

    async def start() -> None:
        # Logged in before waiting for READY: discord.py creates the event that
        # wait_until_ready() waits on in login(), and raises when it does not exist yet.
        try:
            await bot.login(settings.discord.discord_token.get_secret_value())
        except Exception:
            log.exception("Discord login failed; the bot is off")
            raise
        tasks.append(asyncio.create_task(bot.connect(), name="discord"))
        await bot.wait_until_ready()
        log.info("discord ready", user=str(bot.user), api=settings.discord.discord_api_base)
        tasks.append(
            asyncio.create_task(
                follow("signals", signals.signals, SignalFanout(ledger, accounts), owed),
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
        tasks.append(
            asyncio.create_task(
                send_owed(sender, owed, batch=settings.discord.notifier_send_batch), name="send"
            )
        )

    def register(server: grpc.aio.Server) -> None:
        tasks.append(asyncio.create_task(start(), name="notifier-start"))

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
        "notifier",
        build,
        lambda s: (s.discord.notifier_port, s.discord.notifier_metrics_port),
    )


if __name__ == "__main__":
    main()

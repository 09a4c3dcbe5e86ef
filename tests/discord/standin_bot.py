"""A bot run as a process of its own and pointed at a Discord stand-in by one setting,
AIFX_DISCORD_API_BASE — as the notifier is in e2e tests. It answers /ping with "pong"
once it has synced its commands."""

from __future__ import annotations

import os

import discord
import yarl
from discord import app_commands

from tests.discord_standin import TOKEN


def point_discord_py_at(api_base: str) -> None:
    """REST at the API base; the gateway at the same host and port, path /gateway."""
    discord.http.Route.BASE = api_base
    gateway = yarl.URL(api_base).with_scheme("ws").with_path("/gateway")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = gateway


def main() -> None:
    point_discord_py_at(os.environ["AIFX_DISCORD_API_BASE"])
    client = discord.Client(intents=discord.Intents.none(), guild_ready_timeout=0.05)
    tree = app_commands.CommandTree(client)

    @tree.command(description="Are you there?")
    async def ping(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("pong")

    @client.event
    async def on_ready() -> None:
        await tree.sync()

    client.run(TOKEN, log_handler=None)


if __name__ == "__main__":
    main()

"""The discord.py side of the notifier: the bot client, its slash commands, and the
translation between interactions and the domain's commands (notifier.commands). Like a
servicer: read the options, acknowledge within Discord's 3 seconds, send the reply.

Every command defers at once (Discord's window is 3 s; a command that asks three
services can take longer on a busy machine) and then follows up. Replies only the asker
may see (their preferences, positions, refusals) are ephemeral. /signal answers in the
open; when it fails, the public "thinking…" message is deleted and the refusal is sent
to the asker alone.
"""

from __future__ import annotations

import io
import logging
from typing import Literal

import discord
import structlog
import yarl
from discord import app_commands

from common.settings import DISCORD_API
from notifier.account_messages import unexpected_embed
from notifier.commands import Asker, Commands, Reply
from notifier.inputs import TIMEFRAME_HELP
from notifier.messages import error_embed

log = structlog.get_logger(__name__)

TIMEFRAMES = TIMEFRAME_HELP.split(", ")
PAGER_TIMEOUT_SECONDS = 600


class _NoVoiceWarnings(logging.Filter):
    """discord.py warns at start that voice libraries are missing; the bot never joins
    a voice channel, and an operator should not go looking for PyNaCl."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "voice will NOT be supported" not in record.getMessage()


logging.getLogger("discord.client").addFilter(_NoVoiceWarnings())


def point_at(api_base: str) -> None:
    """Send discord.py's REST calls to `api_base` (Discord, or a stand-in)."""
    discord.http.Route.BASE = api_base.rstrip("/")


class Pager(discord.ui.View):
    """◀ / ▶ buttons over a reply's pages (an embed each), for the asker only."""

    def __init__(self, pages: list[discord.Embed], owner_id: int) -> None:
        super().__init__(timeout=PAGER_TIMEOUT_SECONDS)
        self.pages = pages
        self.owner_id = owner_id
        self.index = 0
        self._sync()

    def _sync(self) -> None:
        self.previous.disabled = self.index == 0
        self.next.disabled = self.index == len(self.pages) - 1

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        return interaction.user.id == self.owner_id

    async def _show(self, interaction: discord.Interaction, step: int) -> None:
        self.index = max(0, min(len(self.pages) - 1, self.index + step))
        self._sync()
        await interaction.response.edit_message(embed=self.pages[self.index], view=self)

    @discord.ui.button(
        label="◀ Previous", style=discord.ButtonStyle.secondary, custom_id="page:prev"
    )
    async def previous(self, interaction: discord.Interaction, _: discord.ui.Button[Pager]) -> None:
        await self._show(interaction, -1)

    @discord.ui.button(label="Next ▶", style=discord.ButtonStyle.secondary)
    async def next(self, interaction: discord.Interaction, _: discord.ui.Button[Pager]) -> None:
        await self._show(interaction, +1)


async def send_reply(interaction: discord.Interaction, reply: Reply, *, public: bool) -> None:
    """Follow up a deferred interaction with `reply`: one message, paged with buttons
    when it has several pages, the PNG attached when there is one."""
    embeds = [discord.Embed.from_dict(embed) for embed in reply.embeds]
    if public and reply.ephemeral:
        await interaction.delete_original_response()
    file = discord.utils.MISSING
    if reply.file is not None:
        name, data = reply.file
        file = discord.File(io.BytesIO(data), filename=name)
    if reply.paged:
        pager = Pager(embeds, interaction.user.id)
        await interaction.followup.send(
            embed=embeds[0], view=pager, ephemeral=reply.ephemeral, wait=True
        )
    else:
        await interaction.followup.send(embeds=embeds, file=file, ephemeral=reply.ephemeral)


class AifxBot(discord.Client):
    """The bot: the slash commands of `commands`, synced at log-in."""

    def __init__(
        self,
        commands: Commands,
        *,
        api_base: str,
        sync_guilds: list[int],
        **options: object,
    ) -> None:
        # Guilds only (not privileged): the servers and channels `/channel set` names.
        super().__init__(intents=discord.Intents(guilds=True), **options)  # type: ignore[arg-type]
        self.commands = commands
        self.api_base = api_base
        self.sync_guilds = sync_guilds
        self.tree = app_commands.CommandTree(self)
        self.tree.on_error = self._on_tree_error  # type: ignore[method-assign]
        _register(self.tree, self)

    async def setup_hook(self) -> None:
        """After login, before the gateway: find the gateway the API base names (a
        stand-in serves its own) and sync the slash commands."""
        if self.api_base.rstrip("/") != DISCORD_API:
            _, url, _ = await self.http.get_bot_gateway()
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(url)
        synced = await self.tree.sync()
        for guild_id in self.sync_guilds:
            guild = discord.Object(guild_id)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)
        log.info("slash commands synced", commands=len(synced), guilds=len(self.sync_guilds))

    async def answer(
        self,
        interaction: discord.Interaction,
        command: str,
        *,
        public: bool = False,
        **options: object,
    ) -> None:
        await interaction.response.defer(ephemeral=not public, thinking=True)
        asker = Asker(
            str(interaction.user.id),
            interaction.user.name,
            guild_id=None if interaction.guild_id is None else str(interaction.guild_id),
            manages_guild=interaction.permissions.manage_guild,
        )
        reply = await self.commands.run(asker, command, **options)
        await send_reply(interaction, reply, public=public)

    async def _on_tree_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        """Anything the commands let through (a failed follow-up, Discord refusing):
        logged, and the user told if the interaction still allows it."""
        log.error(
            "interaction failed",
            error=repr(error),
            command=getattr(interaction.command, "name", None),
        )
        if isinstance(error, app_commands.TransformerError):
            embed = error_embed(
                "That was not accepted", f"`{error.value}` is not what this option takes."
            )
        else:
            embed = unexpected_embed()
        reply = discord.Embed.from_dict(embed)
        try:
            if interaction.response.is_done():
                await interaction.followup.send(embed=reply, ephemeral=True)
            else:
                await interaction.response.send_message(embed=reply, ephemeral=True)
        except discord.HTTPException:
            pass  # the interaction is gone; the log has it


def _register(tree: app_commands.CommandTree[AifxBot], bot: AifxBot) -> None:
    """The slash commands: each reads its options and hands them to the domain."""

    async def pairs(interaction: discord.Interaction, typed: str) -> list[app_commands.Choice[str]]:
        try:
            found = await bot.commands.pair_choices(typed)
        except Exception:  # autocomplete must answer something, even with signal_svc down
            log.warning("pair autocomplete failed", exc_info=True)
            found = []
        return [app_commands.Choice(name=p, value=p) for p in found]

    async def timeframes(
        interaction: discord.Interaction, typed: str
    ) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=t, value=t) for t in TIMEFRAMES if typed.lower() in t]

    @tree.command(name="signal", description="The latest signal for a pair")
    @app_commands.describe(
        pair="e.g. EUR/USD or eurusd", timeframe="15m, 1h, 4h or 1d (default 1h)"
    )
    @app_commands.autocomplete(pair=pairs, timeframe=timeframes)
    async def signal(
        interaction: discord.Interaction, pair: str, timeframe: str | None = None
    ) -> None:
        await bot.answer(interaction, "signal", public=True, pair=pair, timeframe=timeframe)

    @tree.command(name="subscribe", description="Get a pair's signals as DMs")
    @app_commands.describe(min_confidence="0 to 1: skip signals below it (sets your minimum)")
    @app_commands.autocomplete(pair=pairs, timeframe=timeframes)
    async def subscribe(
        interaction: discord.Interaction,
        pair: str,
        timeframe: str | None = None,
        min_confidence: float | None = None,
    ) -> None:
        await bot.answer(
            interaction, "subscribe", pair=pair, timeframe=timeframe, min_confidence=min_confidence
        )

    @tree.command(name="unsubscribe", description="Stop a pair's signal DMs")
    @app_commands.autocomplete(pair=pairs)
    async def unsubscribe(interaction: discord.Interaction, pair: str) -> None:
        await bot.answer(interaction, "unsubscribe", pair=pair)

    @tree.command(name="preferences", description="Show or change what the bot DMs you")
    @app_commands.describe(
        min_confidence="0 to 1: skip signals below it",
        dms="all DMs on or off",
        kind="a kind of DM to set the mode of",
        mode="on, silent (no push notification) or off",
    )
    async def preferences(
        interaction: discord.Interaction,
        min_confidence: float | None = None,
        dms: Literal["on", "off"] | None = None,
        kind: Literal[
            "signal", "take_profit_hit", "stop_loss_hit", "position_opened", "position_closed"
        ]
        | None = None,
        mode: Literal["on", "silent", "off"] | None = None,
    ) -> None:
        await bot.answer(
            interaction, "preferences", min_confidence=min_confidence, dms=dms, kind=kind, mode=mode
        )

    @tree.command(name="positions", description="Your open positions with live PnL")
    async def positions(interaction: discord.Interaction) -> None:
        await bot.answer(interaction, "positions")

    @tree.command(name="performance", description="Your results and equity curve")
    async def performance(
        interaction: discord.Interaction,
        period: Literal["all", "day", "week", "month", "year"] | None = None,
    ) -> None:
        await bot.answer(interaction, "performance", period=period)

    @tree.command(name="status", description="Model, market data and services")
    async def status(interaction: discord.Interaction) -> None:
        await bot.answer(interaction, "status")

    @tree.command(name="link", description="Link your AIFX account with a code from the dashboard")
    @app_commands.describe(code="the 8-character code, e.g. K7QX2MPD")
    async def link(interaction: discord.Interaction, code: str) -> None:
        await bot.answer(interaction, "link", code=code)

    @tree.command(name="unlink", description="Unlink your AIFX account")
    async def unlink(interaction: discord.Interaction) -> None:
        await bot.answer(interaction, "unlink")

    channel = app_commands.Group(
        name="channel",
        description="Server admins: a channel where matching signals are posted",
        guild_only=True,
        default_permissions=discord.Permissions(manage_guild=True),
    )

    @channel.command(name="set", description="Post matching signals in a channel")
    @app_commands.describe(
        channel="where to post",
        pairs="comma-separated, e.g. EURUSD,GBPUSD (default: every pair)",
        min_confidence="0 to 1: skip signals below it (default 0)",
    )
    async def channel_set(
        interaction: discord.Interaction,
        channel: discord.TextChannel,
        pairs: str | None = None,
        min_confidence: float | None = None,
    ) -> None:
        await bot.answer(
            interaction,
            "channel_set",
            channel_id=str(channel.id),
            pairs=pairs,
            min_confidence=min_confidence,
        )

    @channel.command(name="show", description="The server's signal channel")
    async def channel_show(interaction: discord.Interaction) -> None:
        await bot.answer(interaction, "channel_show")

    @channel.command(name="clear", description="Stop posting signals in this server")
    async def channel_clear(interaction: discord.Interaction) -> None:
        await bot.answer(interaction, "channel_clear")

    tree.add_command(channel)

    @tree.command(name="help", description="What the bot can do")
    async def help_(interaction: discord.Interaction) -> None:
        await bot.answer(interaction, "help")

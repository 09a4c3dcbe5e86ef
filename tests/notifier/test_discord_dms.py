"""DMs through the unmodified discord.py HTTP client against the local Discord stand-in:
the delivery's embed and nonce on the wire, a re-send after a crash answered with the
first message, closed DMs reported unreachable, 429s waited out, and the whole
fan-out from ledger to Discord with nothing lost or doubled."""

from __future__ import annotations

import discord
import pytest

from notifier.discord_dms import DiscordDirectMessages
from notifier.fanout import Sender, SignalFanout
from notifier.ledger import Delivery
from notifier.pacing import SlidingWindowLimit
from notifier.ports import Sent, Unreachable
from tests.discord_standin import TOKEN, running_standin
from tests.notifier.test_fanout import PEOPLE, Closed, Recipients, ledger, migrated, signal  # noqa: F401


@pytest.fixture
async def discord_client():
    async with running_standin() as rest:
        client = discord.Client(intents=discord.Intents.none())
        await client.login(TOKEN)
        try:
            yield rest, client
        finally:
            await client.close()


@pytest.fixture
def discord_rest(discord_client):
    rest, client = discord_client
    return rest, DiscordDirectMessages(client)


def delivery(n: int, user: str = "111", *, silent: bool = False) -> Delivery:
    return Delivery(
        id=n,
        key=f"signal:s{n}:{user}",
        kind="signal",
        source_id=f"s{n}",
        user_id="u",
        discord_user_id=user,
        payload={"title": f"EUR/USD 1h — BUY #{n}", "color": 0x2ECC71},
        silent=silent,
        attempts=0,
    )


async def test_a_dm_carries_the_embed_the_nonce_and_the_silent_flag(discord_rest):
    rest, dms = discord_rest
    outcome = await dms.send(delivery(1, silent=True))
    assert isinstance(outcome, Sent)
    [message] = rest.dms_to("111")
    assert message["embeds"][0]["title"] == "EUR/USD 1h — BUY #1"
    assert message["nonce"] == delivery(1).nonce
    assert message["flags"] & (1 << 12)  # SUPPRESS_NOTIFICATIONS
    sent = [r.body for r in rest.requests if r.path.endswith("/messages")]
    assert sent[0]["enforce_nonce"] is True


async def test_a_resend_with_the_same_nonce_creates_no_second_message(discord_rest):
    rest, dms = discord_rest
    first = await dms.send(delivery(2))
    again = await dms.send(delivery(2))
    assert isinstance(first, Sent) and again == first
    assert len(rest.dms_to("111")) == 1
    # The DM channel is opened once and cached: a DM costs one request after that.
    assert sum(r.path.endswith("/users/@me/channels") for r in rest.requests) == 1


async def test_each_dm_channel_is_opened_once_even_for_more_users_than_discordpy_keeps(
    discord_client,
):
    rest, client = discord_client
    # discord.py keeps the last 128 private channels; a fan-out reaches more users. (No
    # global limit and pacing far above it: pacing is not tested here.)
    rest.global_limit = None
    dms = DiscordDirectMessages(client, SlidingWindowLimit(10_000))
    users = [str(700 + n) for n in range(130)]
    for round_ in (1, 2):
        for n, user in enumerate(users):
            assert isinstance(await dms.send(delivery(round_ * 1000 + n, user)), Sent)
    assert all(len(rest.dms_to(user)) == 2 for user in users)
    assert sum(r.path.endswith("/users/@me/channels") for r in rest.requests) == len(users)


async def test_closed_dms_are_unreachable_and_rate_limits_are_waited_out(discord_rest):
    rest, dms = discord_rest
    rest.closed_dms.add("222")
    refused = await dms.send(delivery(3, "222"))
    assert isinstance(refused, Unreachable) and "50007" in refused.reason
    rest.rate_limit("POST /channels/", times=2)
    assert isinstance(await dms.send(delivery(4, "333")), Sent)
    assert len(rest.dms_to("333")) == 1
    assert sum(r.path.endswith("/messages") for r in rest.requests) >= 4  # two 429s retried


async def test_signals_reach_discord_once_each_through_the_ledger(discord_rest, ledger):  # noqa: F811
    rest, dms = discord_rest
    rest.closed_dms.add("222")
    fanout = SignalFanout(ledger, Recipients(PEOPLE))
    for _ in range(2):
        await fanout.owe(signal())
    closed = Closed()
    assert await Sender(ledger, dms, closed).send_pending() == 4
    assert [len(rest.dms_to(user)) for user in ("111", "222", "333")] == [2, 0, 2]
    assert closed.users == ["222"] and await ledger.pending() == []

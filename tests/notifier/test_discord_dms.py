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
from notifier.ports import Sent, Unreachable
from tests.discord_standin import TOKEN, running_standin
from tests.notifier.test_fanout import PEOPLE, Closed, Recipients, ledger, migrated, signal  # noqa: F401


@pytest.fixture
async def discord_rest():
    async with running_standin() as rest:
        client = discord.Client(intents=discord.Intents.none())
        await client.login(TOKEN)
        try:
            yield rest, DiscordDirectMessages(client)
        finally:
            await client.close()


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

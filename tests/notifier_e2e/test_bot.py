"""The bot as traders use it: link, slash commands through the gateway, and DMs of the
replay's signals and of a take-profit hit — exactly the ones the preferences select,
each once."""

from __future__ import annotations

import re

from aifx.auth.v1 import auth_pb2
from aifx.common.v1 import market_pb2
from aifx.signal.v1 import signal_pb2, signal_pb2_grpc
from tests.auth.test_discord_links import credential, internal
from tests.discord_standin import MEMBER_PERMISSIONS
from tests.infra import eventually
from tests.notifier_e2e.conftest import (
    GUILD_ID,
    SIGNALS_CHANNEL_ID,
    BotStack,
    linked_trader,
    new_discord_id,
)

EPHEMERAL = 1 << 6
MANAGE_GUILD = 1 << 5
SUPPRESS_NOTIFICATIONS = 1 << 12
SIGNAL_FOOTER = re.compile(r"AIFX signal (\d+) ")


async def stored_signal_ids(bot: BotStack, pair: str, *, down_to: int) -> list[int]:
    """The ids of the pair's stored 1h signals, newest first page by page until `down_to`
    is passed, sorted."""
    stub = signal_pb2_grpc.SignalServiceStub(bot.edge.signal_channel)
    ids: list[int] = []
    token = ""
    while True:
        page = await stub.ListSignals(
            signal_pb2.ListSignalsRequest(
                pair=pair, timeframe=market_pb2.TIMEFRAME_H1, page_size=500, page_token=token
            ),
            metadata=bot.edge.service_credential,
        )
        ids += [int(s.id) for s in page.signals]
        token = page.next_page_token
        if not token or (ids and min(ids) < down_to):
            return sorted(ids)


def signal_ids(messages: list[dict]) -> list[int]:
    ids = []
    for message in messages:
        match = SIGNAL_FOOTER.match(message["embeds"][0].get("footer", {}).get("text", ""))
        if match:
            ids.append(int(match.group(1)))
    return ids


async def test_a_linked_user_gets_each_matching_signal_once_and_silently_when_asked(bot: BotStack):
    trader = await linked_trader(
        bot,
        pairs=["EUR/USD"],
        timeframes=["1h"],
        minConfidence=0.0,
        notifyDiscord=True,
        discordNotifications={"signal": "silent"},
    )
    dms = await eventually(
        lambda: (m := list(bot.standin.dms_to(trader.discord_id))) and len(m) >= 4 and m,
        "four signal DMs",
        within=60.0,
    )
    ids = signal_ids(dms)
    assert len(ids) == len(dms) and len(set(ids)) == len(ids), "one DM per signal, never two"
    assert all(m["flags"] & SUPPRESS_NOTIFICATIONS for m in dms)
    assert all(m["embeds"][0]["title"].startswith("EUR/USD 1h — ") for m in dms)
    # Every EUR/USD 1h signal from the first DM'd to the last was DM'd: none skipped.
    stored = await stored_signal_ids(bot, "EUR/USD", down_to=min(ids))
    assert [i for i in stored if min(ids) <= i <= max(ids)] == sorted(ids)


async def test_signal_answers_in_the_open_and_refusals_only_to_the_asker(bot: BotStack):
    asker = new_discord_id()
    record = await bot.standin.interact(
        "signal", {"pair": "eurusd", "timeframe": "H1"}, user_id=asker
    )
    kind, data = await record.wait_for_response()
    assert kind == 5 and not (data or {}).get("flags", 0) & EPHEMERAL  # deferred, public
    [message] = await record.wait_for_followups()
    embed = message["embeds"][0]
    assert embed["title"].startswith("EUR/USD 1h — ")
    names = {f["name"] for f in embed["fields"]}
    assert {"Confidence", "Entry", "Stop-loss", "Take-profit", "Risk/reward", "Source"} <= names

    record = await bot.standin.interact("signal", {"pair": "EURXYZ"}, user_id=asker)
    [refusal] = await record.wait_for_followups()
    assert refusal["flags"] & EPHEMERAL and record.original and record.original.get("deleted")
    assert "pair" in refusal["embeds"][0]["description"]


async def test_commands_that_need_an_account_tell_an_unlinked_user_how_to_link(bot: BotStack):
    for command in ("positions", "performance", "subscribe", "unlink"):
        options = {"pair": "EURUSD"} if command == "subscribe" else {}
        reply = await bot.command(command, options, user=new_discord_id())
        assert reply["flags"] & EPHEMERAL
        assert reply["embeds"][0]["title"] == "Your Discord account is not linked", command
        assert "/link" in reply["embeds"][0]["description"]


async def test_a_wrong_link_code_is_refused_with_what_to_do(bot: BotStack):
    reply = await bot.command("link", {"code": "ZZZZZZZZ"}, user=new_discord_id())
    assert reply["flags"] & EPHEMERAL
    assert "code" in reply["embeds"][0]["description"]


async def test_pairs_autocomplete_from_list_pairs(bot: BotStack):
    record = await bot.standin.interact(
        "signal", {"pair": "usdj"}, user_id=new_discord_id(), focused="pair"
    )
    kind, data = await record.wait_for_response()
    assert kind == 8 and [c["value"] for c in data["choices"]] == ["USD/JPY"]


async def test_subscribe_preferences_and_unsubscribe(bot: BotStack):
    trader = await linked_trader(bot)
    reply = await bot.command(
        "subscribe",
        {"pair": "gbpusd", "timeframe": "4h", "min_confidence": 0.7},
        user=trader.discord_id,
    )
    fields = {f["name"]: f["value"] for f in reply["embeds"][0]["fields"]}
    assert "GBP/USD" in fields["Pairs"] and "4h" in fields["Timeframes"]
    assert fields["Minimum confidence"] == "70%" and fields["Discord DMs"] == "on"

    reply = await bot.command(
        "preferences", {"kind": "stop_loss_hit", "mode": "off"}, user=trader.discord_id
    )
    assert "Stop-loss hits: off" in reply["embeds"][0]["fields"][-1]["value"]
    reply = await bot.command("preferences", {"min_confidence": 1.5}, user=trader.discord_id)
    assert "min_confidence" in reply["embeds"][0]["description"]

    reply = await bot.command("unsubscribe", {"pair": "GBP/USD"}, user=trader.discord_id)
    fields = {f["name"]: f["value"] for f in reply["embeds"][0]["fields"]}
    assert "GBP/USD" not in fields["Pairs"]
    reply = await bot.command("unsubscribe", {"pair": "GBP/USD"}, user=trader.discord_id)
    assert reply["embeds"][0]["title"] == "You are not subscribed to GBP/USD"


async def test_positions_a_take_profit_dm_and_performance_with_its_chart(bot: BotStack):
    trader = await linked_trader(bot, notifyDiscord=True, pairs=["EUR/USD"], minConfidence=1.0)
    price = await bot.edge.market_price()
    async with bot.http() as http:
        opened = await http.post(
            "/api/v1/positions",
            headers=trader.bearer,
            json={
                "pair": "EURUSD",
                "side": "buy",
                "lotSize": "0.10",
                # Entered at the price just read, not "at market": the replay may move
                # between the two, and a take-profit must stay above the entry.
                "entryPrice": f"{price.price:.5f}",
                "takeProfit": f"{price.price + 0.0001:.5f}",
                "stopLoss": f"{price.price - 0.05:.5f}",
            },
        )
        assert opened.status_code == 200, opened.text
    reply = await bot.command("positions", user=trader.discord_id)
    embed = reply["embeds"][0]
    assert reply["flags"] & EPHEMERAL
    assert embed["title"] in {"Open positions (1)", "No open positions"}  # it may have closed

    kinds = await eventually(
        lambda: (
            (t := [m["embeds"][0]["title"] for m in bot.standin.dms_to(trader.discord_id)])
            and "Take-profit hit: EUR/USD" in t
            and t
        ),
        "the take-profit DM",
        within=60.0,
    )
    assert (
        kinds.count("Take-profit hit: EUR/USD") == 1
        and kinds.count("Position opened: EUR/USD") == 1
    )

    reply = await bot.command("performance", {"period": "all"}, user=trader.discord_id)
    fields = {f["name"]: f["value"] for f in reply["embeds"][0]["fields"]}
    assert fields["Trades"] == "1 (1 won, 0 lost)" and fields["Win rate"] == "100%"
    assert reply["embeds"][0]["image"]["url"] == "attachment://equity.png"
    [attachment] = reply["attachments"]
    assert attachment["filename"] == "equity.png"
    uploaded = [f for r in bot.standin.requests for f in r.files if f.filename == "equity.png"]
    assert uploaded and uploaded[-1].data.startswith(b"\x89PNG")


async def test_status_shows_the_model_the_data_and_every_service(bot: BotStack):
    trader = await linked_trader(bot)
    reply = await bot.command("status", user=trader.discord_id)
    fields = {f["name"]: f["value"] for f in reply["embeds"][0]["fields"]}
    assert fields["Services"].count("🟢") == 4 and "🔴" not in fields["Services"]
    assert "lstm" in fields["Model"] and "replay" in fields["Market data"]
    assert "DMs reach you" in fields["You"]


async def test_help_lists_every_command(bot: BotStack):
    reply = await bot.command("help", user=new_discord_id())
    usages = " ".join(f["name"] for f in reply["embeds"][0]["fields"])
    for command in bot.standin.commands:
        assert f"/{command['name']}" in usages


async def test_a_server_admin_sets_a_signal_channel_and_signals_are_posted_once_each(
    bot: BotStack,
):
    admin, member = new_discord_id(), new_discord_id()
    record = await bot.standin.interact(
        "channel",
        {"channel": SIGNALS_CHANNEL_ID, "pairs": "eurusd", "min_confidence": 0.0},
        subcommand="set",
        user_id=admin,
        guild_id=GUILD_ID,
        permissions=MEMBER_PERMISSIONS | MANAGE_GUILD,
    )
    [reply] = await record.wait_for_followups()
    assert reply["embeds"][0]["title"] == "Signal channel" and reply["flags"] & EPHEMERAL
    posted = await eventually(
        lambda: (m := list(bot.standin.messages_in(SIGNALS_CHANNEL_ID))) and len(m) >= 3 and m,
        "three signals in the channel",
        within=60.0,
    )
    ids = signal_ids(posted)
    assert len(set(ids)) == len(ids) == len(posted)
    assert all(m["embeds"][0]["title"].startswith("EUR/USD ") for m in posted)

    record = await bot.standin.interact(
        "channel", {}, subcommand="clear", user_id=member, guild_id=GUILD_ID
    )
    [refused] = await record.wait_for_followups()
    assert refused["embeds"][0]["title"] == "Only server admins can do that"

    record = await bot.standin.interact(
        "channel",
        {},
        subcommand="clear",
        user_id=admin,
        guild_id=GUILD_ID,
        permissions=MEMBER_PERMISSIONS | MANAGE_GUILD,
    )
    [cleared] = await record.wait_for_followups()
    assert cleared["embeds"][0]["title"] == "No signal channel"


async def test_a_long_positions_list_is_paged_with_buttons(bot: BotStack):
    trader = await linked_trader(bot)
    async with bot.http() as http:
        for _ in range(30):
            opened = await http.post(
                "/api/v1/positions",
                headers=trader.bearer,
                json={"pair": "EURUSD", "side": "sell", "lotSize": "0.01"},
            )
            assert opened.status_code == 200, opened.text
    reply = await bot.command("positions", user=trader.discord_id)
    assert reply["embeds"][0]["title"] == "Open positions (30) (page 1/2)"
    first_page = len(reply["embeds"][0]["fields"])
    buttons = [c for row in reply["components"] for c in row["components"]]
    assert [(b["label"], b.get("disabled", False)) for b in buttons] == [
        ("◀ Previous", True),
        ("Next ▶", False),
    ]
    kind, data = await press(bot, reply, buttons[1]["custom_id"], trader.discord_id)
    assert kind == 7 and data["embeds"][0]["title"] == "Open positions (30) (page 2/2)"
    assert first_page + len(data["embeds"][0]["fields"]) == 30


async def test_closed_dms_are_tried_once_shown_in_status_and_reopened_by_a_command(
    bot: BotStack,
):
    discord_id = new_discord_id()
    bot.standin.closed_dms.add(discord_id)
    await linked_trader(
        bot, pairs=["EUR/USD"], timeframes=["1h"], minConfidence=0.0, notifyDiscord=True,
        discord_id=discord_id,
    )  # fmt: skip
    channel = bot.standin.dm_channel(discord_id)

    def attempts() -> list:
        return [r for r in bot.standin.requests if r.path == f"/channels/{channel}/messages"]

    async def reachable() -> bool:
        reply = await internal(bot.auth).GetUserByDiscordId(
            auth_pb2.GetUserByDiscordIdRequest(discord_user_id=discord_id),
            metadata=credential(bot.auth),
        )
        return reply.discord.dm_reachable

    async def unreachable() -> bool:
        return not await reachable()

    await eventually(unreachable, "the user marked unreachable", within=30.0)
    # Later signals are not tried: no 403 storm toward Discord's invalid-request ban.
    newer = await bot.edge.market_price()
    await eventually(lambda: _later_price(bot, newer), "a few more bars of the replay", within=30.0)
    assert [r.status for r in attempts()] == [403] and not bot.standin.dms_to(discord_id)

    bot.standin.closed_dms.discard(discord_id)
    reply = await bot.command("status", user=discord_id)
    you = {f["name"]: f["value"] for f in reply["embeds"][0]["fields"]}["You"]
    assert "your DMs were closed" in you
    assert await reachable()
    await eventually(lambda: bot.standin.dms_to(discord_id), "DMs again", within=30.0)


async def _later_price(bot: BotStack, seen) -> bool:
    """Whether the replay has moved three bars past the price `seen`."""
    now = await bot.edge.market_price()
    return now.time.seconds >= seen.time.seconds + 3 * 3600


async def press(bot: BotStack, message: dict, custom_id: str, user: str) -> tuple:
    """Press a button and get the bot's callback. discord.py binds a view to its
    message once it has read the follow-up's response, a moment after the stand-in
    recorded the message: a test can press sooner than any user could, so a press that
    found no view yet is pressed again (as a user would)."""
    for _ in range(5):
        record = await bot.standin.press(message, custom_id, user_id=user)
        try:
            return await record.wait_for_response(timeout=2.0)
        except TimeoutError:
            continue
    raise AssertionError("the button never answered")

"""The commands' failure paths over fake ports: every failure is an ephemeral embed that
says what to do — a service down, too many attempts, an unexpected bug (no stack
trace), a command in the wrong place — and /status shows what is down instead of
failing."""

from __future__ import annotations

from dataclasses import dataclass

from common.errors import RateLimited, Unavailable
from notifier.commands import Asker, Commands
from notifier.views import Account

ME = Asker("111", "trader")


@dataclass
class Accounts:
    failure: Exception | None = None

    async def acting_as(self, discord_user_id: str) -> Account | None:
        return Account("u1", "trader", "token", dm_reachable=True)

    async def link(self, code: str, discord_user_id: str, discord_username: str) -> str:
        raise RateLimited("too many link attempts", retry_after_seconds=420)

    async def preferences(self, account: Account):
        raise Unavailable("auth_svc is unavailable")


class Market:
    async def latest_signal(self, pair: str, timeframe: str):
        raise KeyError("a bug")

    async def model(self) -> str:
        raise Unavailable("inference is unavailable")

    async def market_time(self):
        raise Unavailable("signal_svc is unavailable")


class Services:
    async def health(self) -> dict[str, bool]:
        return {"auth": True, "signal": False, "position": True, "inference": False}


def commands() -> Commands:
    return Commands(Accounts(), Market(), None, Services(), None)  # type: ignore[arg-type]


def only_embed(reply) -> dict:
    assert reply.ephemeral
    [embed] = reply.embeds
    return embed


async def test_a_service_down_is_said_so():
    embed = only_embed(await commands().run(ME, "subscribe", pair="EURUSD"))
    assert embed["title"] == "AIFX is partly unavailable"


async def test_too_many_link_attempts_say_when_to_try_again():
    embed = only_embed(await commands().run(ME, "link", code="ABCDEFGH"))
    assert embed["title"] == "Too many attempts" and "420 s" in embed["description"]


async def test_a_bug_is_logged_and_the_user_gets_no_stack_trace():
    embed = only_embed(await commands().run(ME, "signal", pair="EURUSD"))
    assert embed["title"] == "Something went wrong on our side"
    assert "KeyError" not in str(embed) and "Traceback" not in str(embed)


async def test_status_shows_what_is_down_instead_of_failing():
    embed = only_embed(await commands().run(ME, "status"))
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert embed["title"] == "AIFX status — degraded"
    assert "🔴 inference" in fields["Services"] and "🔴 signal" in fields["Services"]
    assert fields["Model"].startswith("unknown") and fields["Market data"] == "unknown"


async def test_channel_commands_need_a_server_and_its_admin():
    in_dm = only_embed(await commands().run(ME, "channel_show"))
    assert "in a server" in in_dm["description"]
    member = Asker("111", "trader", guild_id="9", manages_guild=False)
    refused = only_embed(await commands().run(member, "channel_clear"))
    assert refused["title"] == "Only server admins can do that"


async def test_commands_are_counted_by_outcome():
    from notifier.metrics import COMMANDS

    def count(command: str, outcome: str) -> float:
        return COMMANDS.labels(command, outcome)._value.get()

    before = count("signal", "failed"), count("link", "refused"), count("help", "ok")
    await commands().run(ME, "signal", pair="EURUSD")
    await commands().run(ME, "link", code="ABCDEFGH")
    await commands().run(ME, "help")
    after = count("signal", "failed"), count("link", "refused"), count("help", "ok")
    assert [b + 1 for b in before] == list(after)

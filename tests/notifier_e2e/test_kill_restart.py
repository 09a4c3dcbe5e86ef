"""The notifier as a process of its own, end to end, on both backends: `python -m
notifier` against the real auth_svc (traders linked through the real link-code flow),
the Discord stand-in and a protocol stand-in for the signal stream.

- Killed with SIGKILL in the middle of a fan-out — right after Discord created a DM the
  notifier never heard back about — and started again, it resumes the stream at its
  ledger's cursor and every trader ends up with exactly one DM per signal: the ones
  owed before the kill, the one published while it was down, and the one in flight at
  the kill (re-sent with its nonce and answered with the first message).
- A trader whose DMs are closed costs one 403 however many signals are owed to them,
  and is recorded unreachable in auth_svc; 429s only delay DMs.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from aifx.auth.v1 import auth_pb2
from aifx.common.v1 import market_pb2
from common.db import create_engine, session_factory
from common.migrations import upgrade
from common.service_credentials import load_service_token
from notifier.fanout import SIGNALS
from notifier.ledger import Ledger
from tests.auth.test_discord_links import credential, internal
from tests.discord_standin import DiscordStandin, running_standin_server
from tests.infra import (
    AuthStack,
    create_postgres_database,
    drop_postgres_database,
    eventually,
    make_settings,
)
from tests.notifier_e2e.harness import (
    NotifierProcess,
    link_traders,
    notifier_env,
    signal_recipients,
)
from tests.notifier_e2e.stream_standin import StreamStandin, signal_message

# Processes start, traders are linked and hundreds of DMs go out at Discord's pace.
pytestmark = pytest.mark.timeout(300)

PAIR = "EUR/AUD"  # no other test's traders want it
STARTUP_SECONDS = 60.0  # a cold `python -m notifier` on a busy machine
DELIVERY_SECONDS = 120.0


class Notifier:
    """A notifier process with its own ledger, and the stand-ins it is pointed at."""

    def __init__(
        self,
        process: NotifierProcess,
        ledger: Ledger,
        discord: DiscordStandin,
        streams: StreamStandin,
    ) -> None:
        self.process = process
        self.ledger = ledger
        self.discord = discord
        self.streams = streams

    async def until(
        self, check: Callable[[], Any], what: str, within: float = DELIVERY_SECONDS
    ) -> Any:
        """`eventually(check)`, failing at once with the notifier's log if it exited."""

        async def alive_and_checked() -> Any:
            if not self.process.running():
                pytest.fail(f"the notifier exited while waiting for {what}:\n{self.process.log()}")
            result = check()
            return await result if inspect.isawaitable(result) else result

        try:
            return await eventually(alive_and_checked, what, within=within, interval=0.05)
        except pytest.fail.Exception as failed:
            pytest.fail(f"{failed}\nnotifier log:\n{self.process.log()}")

    async def start(self) -> None:
        """Start the process and wait until it follows the signal stream."""
        followers = self.streams.open_signal_streams
        self.process.start()
        await self.until(
            lambda: self.streams.open_signal_streams > followers,
            "the notifier to follow the signal stream",
            within=STARTUP_SECONDS,
        )

    async def all_sent(self) -> bool:
        return "pending" not in await self.ledger.counts()


@pytest.fixture
async def notifier_database(auth: AuthStack, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, migrated notifier database on the auth stack's backend: a SQLite file
    next to the embedded stack, a database of its own on PostgreSQL."""
    name = None
    if auth.settings.storage.database_url:
        name, url = await create_postgres_database()
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'notifier.db'}"
    await asyncio.to_thread(upgrade, "notifier", make_settings(tmp_path, database_url=url))
    try:
        yield url
    finally:
        if name is not None:
            await drop_postgres_database(name)


@pytest.fixture
async def notifier_factory(
    auth: AuthStack, notifier_database: str, tmp_path: Path
) -> AsyncIterator[Callable[[DiscordStandin], Awaitable[Notifier]]]:
    """Serve a Discord stand-in and the stream stand-in, and give a Notifier process
    pointed at them (not started); everything is stopped afterwards."""
    token = load_service_token(auth.settings)
    streams = StreamStandin(token)
    await streams.start()
    engine = create_engine(make_settings(tmp_path, database_url=notifier_database))
    made: list[NotifierProcess] = []
    served: list[Any] = []

    async def make(discord: DiscordStandin) -> Notifier:
        server = running_standin_server(discord)
        await server.__aenter__()
        served.append(server)
        env = notifier_env(
            api_base=discord.api_base,
            auth_target=auth.address,
            stream_target=streams.target,
            service_token=token,
            database_url=notifier_database,
            var_dir=tmp_path,
        )
        process = NotifierProcess(env, tmp_path)
        made.append(process)
        return Notifier(process, Ledger(session_factory(engine)), discord, streams)

    try:
        yield make
    finally:
        for process in made:
            await asyncio.to_thread(process.stop)
        for server in served:
            await server.__aexit__(None, None, None)
        await streams.stop()
        await engine.dispose()


class CrashingDiscord(DiscordStandin):
    """The stand-in, SIGKILLing `victim` right after creating the `kill_at`-th DM and
    before answering it: that DM exists on Discord, but the notifier never learnt it was
    sent."""

    def __init__(self, kill_at: int) -> None:
        super().__init__()
        self.kill_at = kill_at
        self.victim: NotifierProcess | None = None
        self.created = 0
        self.unanswered: dict[str, Any] | None = None  # the DM created at the kill

    async def _create_message(self, request: web.Request) -> web.Response:
        channel = request.match_info["channel"]
        before = len(self.messages_in(channel))
        response = await super()._create_message(request)
        if len(self.messages_in(channel)) > before:
            self.created += 1
            if self.created == self.kill_at and self.victim is not None:
                self.victim.kill()
                self.unanswered = self.messages_in(channel)[-1]
        return response


def entries(discord: DiscordStandin, user: str) -> list[str]:
    """The entry price each DM to `user` shows: which signal it is about."""
    return [
        next(f["value"] for f in message["embeds"][0]["fields"] if f["name"] == "Entry")
        for message in discord.dms_to(user)
    ]


async def test_a_notifier_killed_mid_fanout_delivers_every_dm_once_after_restart(
    auth: AuthStack, notifier_factory: Callable[[DiscordStandin], Awaitable[Notifier]]
) -> None:
    await link_traders(
        auth,
        100,
        pairs=[PAIR],
        timeframes=[market_pb2.TIMEFRAME_M15],
        min_confidence=0.1,
        notify_discord=True,
    )
    recipients = set(await signal_recipients(auth, PAIR, market_pb2.TIMEFRAME_M15, 0.8))
    assert len(recipients) >= 100
    discord = CrashingDiscord(kill_at=40)
    notifier = await notifier_factory(discord)
    discord.victim = notifier.process
    signals = [
        signal_message(f"{n}", PAIR, "15m", confidence=0.8, entry=1.6 + n / 100)
        for n in range(1, 4)
    ]
    shown = {f"{s.entry_price:.5f}" for s in signals}  # as the embeds show entries

    await notifier.start()
    for signal in signals[:2]:
        await notifier.streams.publish(signal)
    await eventually(lambda: discord.unanswered, "the kill", within=DELIVERY_SECONDS)
    assert not notifier.process.running()
    cursor = await notifier.ledger.cursor(SIGNALS)
    assert cursor in {signals[0].id, signals[1].id}

    await notifier.streams.publish(signals[2])  # while the notifier is down
    await notifier.start()
    await notifier.until(
        lambda: all(len(discord.dms_to(user)) >= 3 for user in recipients),
        "three DMs to every trader",
    )
    await notifier.until(notifier.all_sent, "every delivery marked sent")

    # The restarted notifier resumed the stream at its ledger's cursor: the signals it
    # owed before the kill were not read again, the one published meanwhile was.
    assert notifier.streams.resumed_after[:2] == ["", cursor]
    for user in recipients:
        assert sorted(entries(discord, user)) == sorted(shown), user
    assert await notifier.ledger.counts() == {"sent": 3 * len(recipients)}
    # The DM created at the kill was sent again after the restart, with its nonce, and
    # Discord answered with the first message instead of creating a second.
    nonce = discord.unanswered["nonce"]
    posted = [
        r
        for r in discord.requests
        if r.method == "POST"
        and r.path.endswith("/messages")
        and (r.body or {}).get("nonce") == nonce
    ]
    assert sum(r.status == 200 for r in posted) == 2
    channel = discord.unanswered["channel_id"]
    assert sum(m["nonce"] == nonce for m in discord.messages_in(channel)) == 1
    # Paced under the global limit (notifier.pacing): Discord never had to refuse one.
    assert not [r for r in discord.requests if r.status == 429]


async def test_closed_dms_cost_one_refusal_and_rate_limits_only_delay(
    auth: AuthStack, notifier_factory: Callable[[DiscordStandin], Awaitable[Notifier]]
) -> None:
    timeframe = market_pb2.TIMEFRAME_H4  # apart from the other test's traders
    linked = await link_traders(
        auth,
        20,
        pairs=[PAIR],
        timeframes=[timeframe],
        min_confidence=0.1,
        notify_discord=True,
    )
    closed = linked[0]
    recipients = set(await signal_recipients(auth, PAIR, timeframe, 0.8))
    discord = DiscordStandin()
    discord.closed_dms.add(closed)
    # A bucket's 429s on messages, and a global one on opening DM channels.
    discord.rate_limit("/messages", times=3, retry_after=0.2)
    discord.rate_limit("POST /users/@me/channels", times=1, retry_after=0.1, global_=True)
    notifier = await notifier_factory(discord)
    await notifier.start()
    for n in range(1, 4):
        await notifier.streams.publish(
            signal_message(f"{n}", PAIR, "4h", confidence=0.8, entry=1.6 + n / 100)
        )

    reachable = recipients - {closed}
    await notifier.until(
        lambda: all(len(discord.dms_to(user)) >= 3 for user in reachable),
        "three DMs to every trader whose DMs are open",
    )
    await notifier.until(notifier.all_sent, "no delivery pending")

    assert Counter(len(discord.dms_to(user)) for user in recipients) == Counter(
        {3: len(reachable), 0: 1}
    )
    refused = [r for r in discord.requests if r.status == 403]
    assert len(refused) == 1  # one 403 for three signals owed
    assert refused[0].path == f"/channels/{discord.dm_channel(closed)}/messages"
    assert await notifier.ledger.counts() == {"sent": 3 * len(reachable), "unreachable": 3}
    found = await internal(auth).GetUserByDiscordId(
        auth_pb2.GetUserByDiscordIdRequest(discord_user_id=closed), metadata=credential(auth)
    )
    assert found.discord.dm_reachable is False
    # The injected 429s, each waited out (nothing lost, nothing doubled), and no other.
    assert sum(r.status == 429 for r in discord.requests) == 4

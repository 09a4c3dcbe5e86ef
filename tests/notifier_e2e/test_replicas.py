"""Two notifier processes as `make run` starts them with AIFX_REPLICAS=2 — Discord
shards 0 and 1 of 2, one PostgreSQL ledger — both following the signal stream: every
trader gets exactly one DM per signal, and when one replica is SIGKILLed in the middle
of the fan-out, the other takes over its claims once they lapse and finishes."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from aifx.common.v1 import market_pb2
from common.db import create_engine, session_factory
from common.migrations import upgrade
from common.service_credentials import load_service_token
from common.settings import DiscordSettings
from notifier.ledger import Ledger
from tests.discord_standin import running_standin_server
from tests.infra import AuthStack, create_postgres_database, drop_postgres_database, make_settings
from tests.notifier_e2e.harness import (
    NotifierProcess,
    link_traders,
    notifier_env,
    signal_recipients,
)
from tests.notifier_e2e.stream_standin import StreamStandin, signal_message
from tests.notifier_e2e.test_kill_restart import CrashingDiscord, Notifier, entries

pytestmark = pytest.mark.timeout(300)

PAIR = "EUR/AUD"
TIMEFRAME = market_pb2.TIMEFRAME_D1  # apart from the other notifier tests' traders
CLAIM_SECONDS = 2.0  # the killed replica's claims lapse this soon
IN_FLIGHT = DiscordSettings.model_fields["notifier_send_concurrency"].default


async def test_two_replicas_send_each_dm_once_and_a_survivor_finishes_a_killed_ones_work(
    auth: AuthStack, tmp_path: Path
) -> None:
    if not auth.settings.storage.database_url:
        pytest.skip("replicas share a PostgreSQL ledger (make run refuses them on SQLite)")
    await link_traders(
        auth, 60, pairs=[PAIR], timeframes=[TIMEFRAME], min_confidence=0.1, notify_discord=True
    )
    recipients = set(await signal_recipients(auth, PAIR, TIMEFRAME, 0.8))
    assert len(recipients) >= 60
    name, url = await create_postgres_database()
    await asyncio.to_thread(upgrade, "notifier", make_settings(tmp_path, database_url=url))
    engine = create_engine(make_settings(tmp_path, database_url=url))
    token = load_service_token(auth.settings)
    streams = StreamStandin(token)
    await streams.start()
    discord = CrashingDiscord(kill_at=50)
    processes: list[NotifierProcess] = []
    try:
        async with running_standin_server(discord):
            replicas = []
            for shard in range(2):
                workdir = tmp_path / f"replica-{shard + 1}"
                workdir.mkdir()
                env = notifier_env(
                    api_base=discord.api_base,
                    auth_target=auth.address,
                    stream_target=streams.target,
                    service_token=token,
                    database_url=url,
                    var_dir=workdir,
                    discord_shard_id=str(shard),
                    discord_shard_count="2",
                    notifier_claim_seconds=str(CLAIM_SECONDS),
                )
                process = NotifierProcess(env, workdir)
                processes.append(process)
                replica = Notifier(process, Ledger(session_factory(engine)), discord, streams)
                await replica.start()
                replicas.append(replica)
            victim, survivor = replicas
            discord.victim = victim.process
            await survivor.until(lambda: discord.shards == [[0, 2], [1, 2]], "two shards")

            signals = [
                signal_message(f"r{n}", PAIR, "1d", confidence=0.8, entry=1.7 + n / 100)
                for n in range(1, 4)
            ]
            for signal in signals:
                await streams.publish(signal)
            await survivor.until(lambda: discord.unanswered, "the kill mid fan-out")
            await survivor.until(
                lambda: all(len(discord.dms_to(user)) >= 3 for user in recipients),
                "three DMs to every trader",
            )
            await survivor.until(survivor.all_sent, "every delivery marked sent")

            shown = {f"{s.entry_price:.5f}" for s in signals}
            for user in recipients:
                assert sorted(entries(discord, user)) == sorted(shown), user
            assert await survivor.ledger.counts() == {"sent": 3 * len(recipients)}
            # Each DM was asked of Discord once — both replicas followed the stream and
            # owed every signal — except those in flight at the kill (at most one per
            # user the victim was sending to at once), which the survivor sent again
            # with their nonces (Discord answered with the first message).
            posts = Counter(
                (request.body or {}).get("nonce")
                for request in discord.requests
                if request.method == "POST"
                and request.path.endswith("/messages")
                and request.status == 200
            )
            again = {nonce for nonce, count in posts.items() if count > 1}
            assert len(again) <= IN_FLIGHT, again
            assert len(posts) == 3 * len(recipients)
    finally:
        for process in processes:
            await asyncio.to_thread(process.stop)
        await streams.stop()
        await engine.dispose()
        await drop_postgres_database(name)

"""Several notifier replicas on one ledger (AIFX_REPLICAS): each delivery is recorded
once and sent once however the replicas race, a user's DMs stay in order, a dead
replica's claims lapse to a survivor, and a pass that stopped early gives its claims
back at once."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import pytest

from common.db import create_engine, session_factory
from common.migrations import upgrade
from notifier.fanout import Sender, SignalFanout
from notifier.ledger import Delivery, Ledger
from notifier.ports import Outcome
from tests.infra import eventually
from tests.notifier.test_fanout import Closed, FakeDiscord, Recipients, signal

REPLICAS = 3
PEOPLE = [(f"u{n}", f"{1000 + n}") for n in range(12)]


@pytest.fixture(scope="module")
def migrated(backend_settings):
    upgrade("notifier", backend_settings)
    return backend_settings


@pytest.fixture
async def engines(migrated):
    """One engine (one connection pool, as in its own process) per replica."""
    made = [create_engine(migrated) for _ in range(REPLICAS)]
    ledger = Ledger(session_factory(made[0]))
    for delivery in await ledger.pending(100_000):  # earlier tests' leftovers
        await ledger.mark_sent(delivery.id)
    yield made
    for engine in made:
        await engine.dispose()


class SlowDiscord(FakeDiscord):
    """Every send yields to the other replicas first, so their passes interleave."""

    async def send(self, delivery: Delivery) -> Outcome:
        await asyncio.sleep(0)
        return await super().send(delivery)


async def test_racing_replicas_record_once_and_send_each_dm_once_in_order(engines):
    ledgers = [Ledger(session_factory(engine)) for engine in engines]
    signals = [signal() for _ in range(8)]
    recipients = Recipients(PEOPLE)

    async def follow(ledger: Ledger) -> list[int]:
        fanout = SignalFanout(ledger, recipients)
        return [await fanout.owe(s) for s in signals]

    # Every replica follows the same stream and owes every signal at about once.
    owed = await asyncio.gather(*(follow(ledger) for ledger in ledgers))
    assert sum(map(sum, owed)) == len(signals) * len(PEOPLE)

    discord, closed = SlowDiscord(), Closed()
    senders = [Sender(ledger, discord, closed, concurrency=4) for ledger in ledgers]

    async def drain(sender: Sender) -> int:
        total = 0
        while sent := await sender.send_pending(limit=10):
            total += sent
        return total

    sent = await asyncio.gather(*(drain(sender) for sender in senders))
    assert sum(sent) == len(signals) * len(PEOPLE)
    # Not one request twice (the nonce would hide a double send from users; the claims
    # keep it from happening at all), and more than one replica did the work.
    assert max(Counter(discord.requests).values()) == 1
    assert sum(1 for n in sent if n) > 1
    for _, discord_id in PEOPLE:
        nonces = [nonce for user, nonce in discord.requests if user == discord_id]
        assert nonces == [nonce_of(s.id, discord_id) for s in signals], discord_id
    assert await ledgers[0].pending() == []


def nonce_of(signal_id: str, discord_id: str) -> str:
    """The nonce of the DM of `signal_id` to `discord_id` (the ledger derives it from
    the delivery's key)."""
    key = f"signal:{signal_id}:{discord_id}"
    return Delivery(0, key, "signal", signal_id, "", discord_id, {}, False, 0).nonce


async def test_a_dead_replicas_claims_lapse_to_a_survivor(engines):
    short = timedelta(milliseconds=300)
    dead, survivor = (Ledger(session_factory(e), lease=short) for e in engines[:2])
    await SignalFanout(dead, Recipients(PEOPLE[:3])).owe(signal())
    claimed = await dead.claim(100)
    assert len(claimed) == 3
    # Held: the survivor gets nothing of those users while the lease runs...
    assert await survivor.claim(100) == []
    # ...and all of it once the lease has run out, the dead replica never back.
    retaken = await eventually(lambda: survivor.claim(100), "the lapsed claims retaken")
    assert sorted(d.id for d in retaken) == sorted(d.id for d in claimed)


async def test_a_restarted_replica_takes_its_own_claims_back_at_once(engines):
    before = Ledger(session_factory(engines[0]), owner="shard-0-of-2")
    await SignalFanout(before, Recipients(PEOPLE[:3])).owe(signal())
    claimed = await before.claim(100)  # then killed, its 60 s lease running
    other = Ledger(session_factory(engines[1]), owner="shard-1-of-2")
    assert await other.claim(100) == []
    again = Ledger(session_factory(engines[2]), owner="shard-0-of-2")
    retaken = await again.claim(100)
    assert sorted(d.id for d in retaken) == sorted(d.id for d in claimed)
    for delivery in retaken:
        await again.mark_sent(delivery.id)


async def test_a_pass_that_stops_early_gives_its_claims_back(engines):
    first, second = (Ledger(session_factory(e)) for e in engines[:2])
    await SignalFanout(first, Recipients(PEOPLE[:4])).owe(signal())
    discord = FakeDiscord()
    discord.failing = True  # Discord struggles: the pass ends after the first try
    assert await Sender(first, discord, Closed(), concurrency=1).send_pending() == 0
    # Not left to a 60 s lease: another replica sends them now.
    discord.failing = False
    assert await Sender(second, discord, Closed()).send_pending() == 4
    assert await first.pending() == []


async def test_a_replica_does_not_take_a_user_another_is_sending_to(engines):
    first, second = (Ledger(session_factory(e)) for e in engines[:2])
    fanout = SignalFanout(first, Recipients(PEOPLE[:1]))
    await fanout.owe(signal())
    [held] = await first.claim(100)
    await fanout.owe(signal())  # a newer DM to the same user
    assert await second.claim(100) == []  # sent after the first, by the same replica
    await first.mark_sent(held.id)
    [newer] = await second.claim(100)
    assert newer.id > held.id


class GatedDiscord(FakeDiscord):
    """Holds every send until the test opens the gate: a pass slower than its lease."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def send(self, delivery: Delivery) -> Outcome:
        self.requests.append((delivery.discord_user_id, "asked"))
        await self.gate.wait()
        self.requests.pop()
        return await super().send(delivery)


async def test_a_pass_slower_than_its_lease_leaves_what_another_replica_took(engines):
    short = timedelta(milliseconds=300)
    slow, survivor = (Ledger(session_factory(e), lease=short) for e in engines[:2])
    for _ in range(3):
        await SignalFanout(slow, Recipients(PEOPLE[:1])).owe(signal())
    stuck = GatedDiscord()
    slow_pass = asyncio.create_task(Sender(slow, stuck, Closed()).send_pending())
    await eventually(lambda: stuck.requests, "the slow pass's first DM in flight")
    # Its claims lapse while that DM hangs; the survivor takes and sends all three (the
    # one in flight again, under its nonce)...
    discord = FakeDiscord()
    sender = Sender(survivor, discord, Closed())
    assert await eventually(sender.send_pending, "the lapsed claims sent by the survivor") == 3
    stuck.gate.set()
    # ...and the slow pass, once its DM returns, sends nothing the survivor took.
    assert await slow_pass == 1
    assert len(stuck.requests) == 1
    assert await slow.pending() == []

"""Signals to DMs through the ledger, with the Discord side and the recipients faked at
the ports: each recipient owed once, sent in order with a stable nonce, a crash between
sending and marking costing no duplicate, closed DMs given up on at once, and a
struggling Discord delaying, never dropping."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections import Counter

import pytest

from common.db import create_engine, session_factory
from common.migrations import upgrade
from notifier.fanout import SIGNALS, Sender, SignalFanout
from notifier.ledger import Delivery, Ledger
from notifier.messages import SignalView
from notifier.ports import Outcome, Recipient, Sent, TryLater, Unreachable
from tests.notifier.test_messages import view


@pytest.fixture(scope="module")
def migrated(backend_settings):
    upgrade("notifier", backend_settings)  # sync: alembic runs its own event loop
    return backend_settings


@pytest.fixture
async def ledger(migrated):
    engine = create_engine(migrated)
    ledger = Ledger(session_factory(engine))
    # Earlier tests' deliveries on the shared database are not this test's business.
    for delivery in await ledger.pending(100_000):
        await ledger.mark_sent(delivery.id)
    yield ledger
    await engine.dispose()


class Recipients:
    def __init__(self, people: list[tuple[str, str]]) -> None:
        self.people = people

    async def for_signal(self, signal: SignalView) -> list[Recipient]:
        return [Recipient(user, discord_id) for user, discord_id in self.people]


class FakeDiscord:
    """DMs as Discord treats them: a repeated nonce to one user creates nothing new."""

    def __init__(self) -> None:
        self.created: dict[tuple[str, str], str] = {}
        self.requests: list[tuple[str, str]] = []
        self.closed: set[str] = set()
        self.failing = False
        self.failing_for: set[str] = set()  # users whose DMs fail for now
        self._ids = itertools.count(1)

    async def send(self, delivery: Delivery) -> Outcome:
        self.requests.append((delivery.discord_user_id, delivery.nonce))
        if self.failing or delivery.discord_user_id in self.failing_for:
            return TryLater("503 from Discord")
        if delivery.discord_user_id in self.closed:
            return Unreachable("403 50007: Cannot send messages to this user")
        key = (delivery.discord_user_id, delivery.nonce)
        if key not in self.created:
            self.created[key] = str(next(self._ids))
        return Sent(self.created[key])


class Closed:
    def __init__(self) -> None:
        self.users: list[str] = []

    async def dms_closed(self, discord_user_id: str) -> None:
        self.users.append(discord_user_id)

    def known_closed(self, discord_user_id: str) -> bool:
        return discord_user_id in self.users


def signal(signal_id: str | None = None) -> SignalView:
    """A EUR/USD 1h sell from the model, with an id of its own."""
    return view(
        id=signal_id or uuid.uuid4().hex[:12],
        pair="EUR/USD",
        timeframe="1h",
        action="sell",
        confidence=0.71,
        entry=1.11234,
        stop_loss=1.11534,
        take_profit=1.10634,
        model="lstm v1",
    )


PEOPLE = [("u1", "111"), ("u2", "222"), ("u3", "333")]


async def test_each_recipient_gets_one_dm_per_signal_even_when_read_twice(ledger):
    fanout = SignalFanout(ledger, Recipients(PEOPLE))
    discord, closed = FakeDiscord(), Closed()
    first = signal()
    assert await fanout.owe(first) == 3
    assert await fanout.owe(first) == 0  # the stream replayed it after a restart
    assert await fanout.resume_after() == first.id
    assert await Sender(ledger, discord, closed).send_pending() == 3
    assert await Sender(ledger, discord, closed).send_pending() == 0
    # One each (users are sent to concurrently, so in any order between them).
    assert sorted(user for user, _ in discord.requests) == ["111", "222", "333"]
    assert len(discord.created) == 3


async def test_a_crash_between_sending_and_marking_costs_no_duplicate(ledger):
    fanout = SignalFanout(ledger, Recipients(PEOPLE))
    discord = FakeDiscord()
    await fanout.owe(signal())
    # The notifier sent the first DM, then died before recording it as sent.
    [first, *_] = await ledger.pending()
    await discord.send(first)
    # Restarted: everything pending is sent, the first again with the same nonce.
    assert await Sender(ledger, discord, Closed()).send_pending() == 3
    assert len(discord.requests) == 4 and len(discord.created) == 3


async def test_closed_dms_are_given_up_on_at_once(ledger):
    fanout = SignalFanout(ledger, Recipients(PEOPLE))
    discord, closed = FakeDiscord(), Closed()
    discord.closed.add("222")
    for _ in range(3):
        await fanout.owe(signal())
    assert await Sender(ledger, discord, closed).send_pending() == 6
    # One refused request for that user, not one per signal.
    assert [user for user, _ in discord.requests].count("222") == 1
    assert closed.users == ["222"] and await ledger.pending() == []
    # Owed while the refusal was being recorded, sent in a later pass: not asked again.
    await fanout.owe(signal())
    assert await Sender(ledger, discord, closed).send_pending() == 2
    assert [user for user, _ in discord.requests].count("222") == 1
    assert await ledger.pending() == []


async def test_deliveries_are_counted_by_outcome(ledger):
    from notifier.metrics import DELIVERIES

    def counts() -> list[float]:
        return [DELIVERIES.labels(o)._value.get() for o in ("sent", "unreachable", "retry")]

    before = counts()
    fanout = SignalFanout(ledger, Recipients(PEOPLE))
    discord, closed = FakeDiscord(), Closed()
    discord.closed.add("222")
    await fanout.owe(signal())
    await Sender(ledger, discord, closed).send_pending()
    discord.failing = True
    await fanout.owe(signal())
    await Sender(ledger, discord, closed).send_pending()
    sent, unreachable, retry = (a - b for a, b in zip(counts(), before, strict=True))
    assert (sent, unreachable) == (2, 1) and retry >= 1


async def test_a_struggling_discord_delays_and_never_drops(ledger):
    fanout = SignalFanout(ledger, Recipients(PEOPLE))
    discord = FakeDiscord()
    await fanout.owe(signal())
    discord.failing = True
    assert await Sender(ledger, discord, Closed()).send_pending() == 0
    assert len(await ledger.pending()) == 3  # nothing given up on
    discord.failing = False
    assert await Sender(ledger, discord, Closed()).send_pending() == 3
    assert await ledger.cursor(SIGNALS) is not None


class InFlight(FakeDiscord):
    """FakeDiscord whose DMs all wait until `expected` are in flight at once (or a
    second has passed: then the test fails on `most`), noting the most in flight overall
    and whether one user ever had two."""

    def __init__(self, expected: int) -> None:
        super().__init__()
        self.now: Counter[str] = Counter()
        self.most = 0
        self.one_user_twice = False
        self._expected = expected
        self._reached = asyncio.Event()

    async def send(self, delivery: Delivery) -> Outcome:
        user = delivery.discord_user_id
        self.now[user] += 1
        self.one_user_twice |= self.now[user] > 1
        self.most = max(self.most, sum(self.now.values()))
        if self.most >= self._expected:
            self._reached.set()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reached.wait(), 1.0)
            await asyncio.sleep(0)
            return await super().send(delivery)
        finally:
            self.now[user] -= 1


MANY = [(f"u{n}", str(900 + n)) for n in range(6)]


async def test_several_users_are_sent_to_at_once_each_in_order(ledger):
    fanout = SignalFanout(ledger, Recipients(MANY))
    first, second = signal(), signal()
    await fanout.owe(first)
    await fanout.owe(second)
    discord = InFlight(expected=4)
    assert await Sender(ledger, discord, Closed(), concurrency=4).send_pending() == 12
    assert discord.most == 4 and not discord.one_user_twice
    for _, discord_id in MANY:
        nonces = [nonce for user, nonce in discord.requests if user == discord_id]
        assert nonces == [_nonce(first, discord_id), _nonce(second, discord_id)]


def _nonce(signal_view: SignalView, discord_id: str) -> str:
    """The nonce of the delivery of `signal_view` to `discord_id`."""
    return Delivery(0, f"signal:{signal_view.id}:{discord_id}", "", "", "", "", {}, False, 0).nonce


async def test_a_transient_failure_lets_the_dms_in_flight_finish_and_starts_no_more(ledger):
    fanout = SignalFanout(ledger, Recipients(MANY))
    await fanout.owe(signal())
    discord = InFlight(expected=2)
    discord.failing_for.add(MANY[1][1])
    assert await Sender(ledger, discord, Closed(), concurrency=2).send_pending() == 1
    assert sorted(user for user, _ in discord.requests) == sorted([MANY[0][1], MANY[1][1]])
    assert len(await ledger.pending()) == 5  # the failed one included: tried again later

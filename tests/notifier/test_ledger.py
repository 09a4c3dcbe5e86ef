"""The notifier's delivery ledger on both backends: owed once however often recorded,
recorded with the cursor all or nothing, pending oldest first, a nonce per delivery."""

from __future__ import annotations

import uuid

import pytest

from common.db import create_engine, session_factory
from common.migrations import upgrade
from notifier.ledger import NONCE_LENGTH, Ledger, Owed


@pytest.fixture(scope="module")
def migrated(backend_settings):
    upgrade("notifier", backend_settings)  # sync: alembic runs its own event loop
    return backend_settings


@pytest.fixture(scope="module")
async def ledger(migrated):
    backend_settings = migrated
    engine = create_engine(backend_settings)
    yield Ledger(session_factory(engine))
    await engine.dispose()


def owed(source: str, recipients: range, kind: str = "signal") -> list[Owed]:
    return [
        Owed(kind, source, f"user-{n}", f"{900000 + n}", {"title": f"{kind} {source}"})
        for n in recipients
    ]


async def test_a_signal_is_owed_once_to_each_recipient_with_the_cursor(ledger):
    stream = f"signals-{uuid.uuid4().hex[:8]}"
    source = uuid.uuid4().hex
    assert await ledger.cursor(stream) is None
    assert await ledger.record(stream, "41", owed(source, range(3))) == 3
    assert await ledger.cursor(stream) == "41"
    # Read again after a restart from an older cursor: nothing owed twice.
    assert await ledger.record(stream, "41", owed(source, range(5))) == 2
    mine = [d for d in await ledger.pending(10_000) if d.source_id == source]
    assert sorted(d.discord_user_id for d in mine) == [f"{900000 + n}" for n in range(5)]
    assert [d.id for d in mine] == sorted(d.id for d in mine)


async def test_sent_and_unreachable_leave_pending_and_nonces_are_stable(ledger):
    source = uuid.uuid4().hex
    await ledger.record("signals-x", "1", owed(source, range(3)))
    first, second, third = [d for d in await ledger.pending(10_000) if d.source_id == source]
    assert len(first.nonce) == NONCE_LENGTH and first.nonce != second.nonce
    await ledger.attempt_failed(third.id, "429 retry later")
    await ledger.mark_sent(first.id)
    await ledger.mark_unreachable(second.id, "403 50007: DMs closed")
    left = [d for d in await ledger.pending(10_000) if d.source_id == source]
    assert [(d.id, d.attempts, d.nonce) for d in left] == [(third.id, 1, third.nonce)]
    await ledger.mark_sent(first.id)  # a second mark changes nothing
    counts = await ledger.counts()
    assert counts["sent"] >= 1 and counts["unreachable"] >= 1


async def test_the_same_event_of_another_kind_is_a_separate_delivery(ledger):
    source = uuid.uuid4().hex
    assert await ledger.record("events", "7", owed(source, range(1), "take_profit_hit")) == 1
    assert await ledger.record("events", "7", owed(source, range(1), "position_closed")) == 1

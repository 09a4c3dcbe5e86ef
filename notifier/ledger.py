"""The delivery ledger: every DM the notifier owes, recorded before it is sent and
marked after, with the cursor of the stream it came from. Plain Python over the
notifier's tables: no gRPC, no Discord.

Why it never loses or doubles a DM:
- The deliveries of a signal (or position event) and the stream cursor past it are
  written in one transaction: after a crash the notifier either has all of them owed or
  reads the signal again from the old cursor. A delivery's `key` is unique, so reading a
  signal twice owes nothing twice.
- Sending works from what is pending, oldest first; a delivery becomes `sent` only after
  Discord answered. One that was sent just before a crash, but not yet marked, is sent
  again with the same `nonce` (derived from its key); Discord, with `enforce_nonce`,
  returns the first message instead of creating a second.

Several notifiers share one ledger (`AIFX_REPLICAS`), and each delivery is sent by one:
- Recording is idempotent across replicas (INSERT … ON CONFLICT DO NOTHING on the
  unique key; the cursor is an upsert), so every replica may follow the streams.
- Sending starts with a claim: one UPDATE takes the oldest unclaimed pending deliveries
  (`SELECT … FOR UPDATE SKIP LOCKED`), stamping them with the replica's id and a lease.
  Claims are taken one replica at a time (a transaction-scoped advisory lock on
  PostgreSQL; SQLite has one writer anyway), and never of a user another replica is
  sending to, so a user's DMs still go out in order. A replica that dies leaves its
  claims to lapse after the lease; the nonce covers a DM it sent but did not mark.
  A replica's id is its Discord shard, so when it is restarted it takes its claims
  back at once.
- A pass may take longer than the lease (Discord's rate limits pace it), so each DM's
  claim is renewed just before it is sent: one whose claim lapsed and was taken by
  another replica is left to that replica, and only the DMs actually in flight when a
  replica dies are ever sent twice (with their nonces).

Writes take turns on SQLite (common.db.write_transaction): the sender marks several
deliveries at once, and SQLite's own busy wait would stall each for up to 100 ms.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.db import commit_in_id_order, upsert_insert, write_transaction
from common.time import utcnow
from notifier.models import CursorRow, DeliveryRow

PENDING, SENT, UNREACHABLE = "pending", "sent", "unreachable"
NONCE_LENGTH = 25  # Discord's limit
DM, CHANNEL = "dm", "channel"


@dataclass(frozen=True)
class Owed:
    """A message owed to one Discord user for one signal or position event."""

    kind: str  # "signal", "take_profit_hit", "stop_loss_hit", "position_opened", ...
    source_id: str
    user_id: str
    discord_user_id: str
    payload: dict[str, Any] = field(default_factory=dict)
    silent: bool = False
    target: str = DM  # DM: discord_user_id is a user; CHANNEL: a server's channel id

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.source_id}:{self.discord_user_id}"


@dataclass(frozen=True)
class Delivery:
    id: int
    key: str
    kind: str
    source_id: str
    user_id: str
    discord_user_id: str
    payload: dict[str, Any]
    silent: bool
    attempts: int
    target: str = "dm"

    @property
    def nonce(self) -> str:
        """The same for every attempt of this delivery, different for any other."""
        digest = hashlib.sha256(self.key.encode()).digest()
        return base64.b32encode(digest).decode().rstrip("=")[:NONCE_LENGTH]


def _delivery(row: DeliveryRow) -> Delivery:
    return Delivery(
        id=row.id,
        key=row.key,
        kind=row.kind,
        source_id=row.source_id,
        user_id=row.user_id,
        discord_user_id=row.discord_user_id,
        payload=dict(row.payload),
        silent=row.silent,
        attempts=row.attempts,
        target=row.target,
    )


CLAIM_LEASE = timedelta(seconds=60)
# pg_advisory_xact_lock key that turns claims into one-at-a-time ("AIFXCLAM").
CLAIM_LOCK_KEY = 0x4149_4658_434C_414D


class Ledger:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        lease: timedelta = CLAIM_LEASE,
        owner: str | None = None,
    ) -> None:
        self._sessions = sessions
        self._lease = lease
        # This replica, in the claims it takes (at most 36 characters). Stable across
        # restarts (the server passes its Discord shard) so a restarted replica takes
        # back what it held at once instead of after the lease.
        self.owner = owner or str(uuid.uuid4())

    async def cursor(self, stream: str) -> str | None:
        """Where `stream` was left (None: never read)."""
        async with self._sessions() as session:
            row = await session.get(CursorRow, stream)
        return None if row is None else row.position

    async def record(self, stream: str, position: str, owed: Sequence[Owed]) -> int:
        """Owe `owed` (those not owed already) and move `stream`'s cursor to `position`,
        all or nothing; how many deliveries are new."""
        now = utcnow()
        unique = {o.key: o for o in owed}
        async with write_transaction(self._sessions) as session:
            insert = upsert_insert(session)
            new = 0
            if unique:
                result = await session.execute(
                    insert(DeliveryRow)
                    .values(
                        [
                            {
                                "key": o.key,
                                "kind": o.kind,
                                "source_id": o.source_id,
                                "user_id": o.user_id,
                                "discord_user_id": o.discord_user_id,
                                "payload": o.payload,
                                "silent": o.silent,
                                "target": o.target,
                                "status": PENDING,
                                "attempts": 0,
                                "created_at": now,
                            }
                            for o in unique.values()
                        ]
                    )
                    .on_conflict_do_nothing(index_elements=["key"])
                    .returning(DeliveryRow.id)
                )
                new = len(result.all())
            await session.execute(
                insert(CursorRow)
                .values(stream=stream, position=position, updated_at=now)
                .on_conflict_do_update(
                    index_elements=["stream"],
                    set_={"position": position, "updated_at": now},
                )
            )
        return new

    async def pending(self, limit: int = 100) -> list[Delivery]:
        """The oldest deliveries not yet sent (nor given up on)."""
        async with self._sessions() as session:
            result = await session.execute(
                select(DeliveryRow)
                .where(DeliveryRow.status == PENDING)
                .order_by(DeliveryRow.id)
                .limit(limit)
            )
            return [_delivery(row) for row in result.scalars()]

    async def claim(self, limit: int = 100) -> list[Delivery]:
        """The oldest pending deliveries no other replica holds, up to `limit`, now this
        replica's to send for its lease (see the module docstring)."""
        now = utcnow()
        held_by_others = (
            select(DeliveryRow.discord_user_id)
            .where(
                DeliveryRow.status == PENDING,
                DeliveryRow.claimed_by != self.owner,
                DeliveryRow.claimed_until > now,
            )
            .scalar_subquery()
        )
        free = (
            select(DeliveryRow.id)
            .where(
                DeliveryRow.status == PENDING,
                or_(
                    DeliveryRow.claimed_until.is_(None),
                    DeliveryRow.claimed_until <= now,
                    # Left by this replica's previous life (a replica runs one pass at
                    # a time, and each pass gives back what it did not send).
                    DeliveryRow.claimed_by == self.owner,
                ),
                DeliveryRow.discord_user_id.not_in(held_by_others),
            )
            .order_by(DeliveryRow.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        async with write_transaction(self._sessions) as session:
            await commit_in_id_order(session, CLAIM_LOCK_KEY)
            result = await session.execute(
                update(DeliveryRow)
                .where(DeliveryRow.id.in_(free))
                .values(claimed_by=self.owner, claimed_until=now + self._lease)
                .returning(DeliveryRow)
            )
            claimed = [_delivery(row) for row in result.scalars()]
        return sorted(claimed, key=lambda delivery: delivery.id)

    async def renew(self, delivery_id: int) -> bool:
        """Extend this replica's claim on a delivery it is about to send; False when the
        claim is no longer this replica's (it lapsed and another replica took it) or the
        delivery is no longer pending, so the caller must not send it."""
        async with write_transaction(self._sessions) as session:
            result = await session.execute(
                update(DeliveryRow)
                .where(
                    DeliveryRow.id == delivery_id,
                    DeliveryRow.claimed_by == self.owner,
                    DeliveryRow.status == PENDING,
                )
                .values(claimed_until=utcnow() + self._lease)
            )
        return int(result.rowcount) == 1  # type: ignore[attr-defined]

    async def release(self) -> int:
        """Give back this replica's claims on what it did not send (a pass that stopped
        early), so any replica may try them on its next pass; how many."""
        async with write_transaction(self._sessions) as session:
            result = await session.execute(
                update(DeliveryRow)
                .where(DeliveryRow.claimed_by == self.owner, DeliveryRow.status == PENDING)
                .values(claimed_by=None, claimed_until=None)
            )
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def mark_sent(self, delivery_id: int) -> None:
        await self._finish(delivery_id, SENT, None)

    async def mark_unreachable(self, delivery_id: int, reason: str) -> None:
        """Discord will not take it (the user closed their DMs): never retried."""
        await self._finish(delivery_id, UNREACHABLE, reason)

    async def give_up_on(self, discord_user_id: str, reason: str) -> int:
        """Every pending delivery to a user Discord refuses DMs to, marked unreachable
        (asking again would only add to the invalid requests Discord bans bots for)."""
        async with write_transaction(self._sessions) as session:
            result = await session.execute(
                update(DeliveryRow)
                .where(
                    DeliveryRow.discord_user_id == discord_user_id,
                    DeliveryRow.status == PENDING,
                )
                .values(status=UNREACHABLE, error=reason)
            )
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def attempt_failed(self, delivery_id: int, reason: str) -> None:
        """A transient failure: still pending, tried again later."""
        async with write_transaction(self._sessions) as session:
            await session.execute(
                update(DeliveryRow)
                .where(DeliveryRow.id == delivery_id)
                .values(attempts=DeliveryRow.attempts + 1, error=reason[:2000])
            )

    async def _finish(self, delivery_id: int, status: str, reason: str | None) -> None:
        async with write_transaction(self._sessions) as session:
            await session.execute(
                update(DeliveryRow)
                .where(DeliveryRow.id == delivery_id, DeliveryRow.status == PENDING)
                .values(
                    status=status,
                    sent_at=utcnow() if status == SENT else None,
                    attempts=DeliveryRow.attempts + 1,
                    error=reason,
                )
            )

    async def counts(self) -> dict[str, int]:
        """Deliveries by status (for metrics, health and tests)."""
        async with self._sessions() as session:
            result = await session.execute(
                select(DeliveryRow.status, func.count()).group_by(DeliveryRow.status)
            )
            return {status: int(n) for status, n in result.all()}

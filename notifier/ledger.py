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

Writes take turns on SQLite (common.db.write_transaction): the sender marks several
deliveries at once, and SQLite's own busy wait would stall each for up to 100 ms.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.db import write_transaction
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


class Ledger:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

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
            known: set[str] = set()
            if unique:
                result = await session.execute(
                    select(DeliveryRow.key).where(DeliveryRow.key.in_(list(unique)))
                )
                known = set(result.scalars())
            new = [o for key, o in unique.items() if key not in known]
            session.add_all(
                DeliveryRow(
                    key=o.key,
                    kind=o.kind,
                    source_id=o.source_id,
                    user_id=o.user_id,
                    discord_user_id=o.discord_user_id,
                    payload=o.payload,
                    silent=o.silent,
                    target=o.target,
                    status=PENDING,
                    attempts=0,
                    created_at=now,
                )
                for o in new
            )
            cursor = await session.get(CursorRow, stream)
            if cursor is None:
                session.add(CursorRow(stream=stream, position=position, updated_at=now))
            else:
                cursor.position, cursor.updated_at = position, now
        return len(new)

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

"""Positions, their events and monitoring snapshots in the database (SQLite or
PostgreSQL).

Three rules make the service safe with several replicas and racing requests:

- Opening with an idempotency key is one INSERT ... ON CONFLICT (user_id,
  idempotency_key) DO NOTHING: the database decides which of two concurrent duplicates
  creates the position; the other reads it back and returns it (or ALREADY_EXISTS when
  its request differs).
- Every change is conditional on the row's `version` and `status = 'open'` (compare and
  set, never read-then-write), so a position closes exactly once whoever races to close
  it, and a watcher never closes on levels the user has just moved.
- Every change writes its event in the same transaction. On PostgreSQL those
  transactions first take one advisory lock, so event ids commit in increasing order: a
  reader that has seen id n has seen every id below it, which is what lets a stream
  resume "after id n" without missing an event another replica was committing.
"""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    bindparam,
    delete,
    insert,
    literal,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common import pagination
from common.db import commit_in_id_order, upsert_insert, write_transaction
from common.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
)
from common.time import as_utc
from position_svc.models import EventRow, PositionRow, SnapshotRow
from position_svc.position_codec import (
    NAMES,
    position_document,
    position_fields,
    position_from_fields,
)
from position_svc.positions import CLOSE_EVENT, EventType, Position, PositionEvent, Status

# Key of the advisory lock that orders event commits on PostgreSQL ("AIFXPOSE").
_EVENT_ORDER_LOCK_KEY = 0x4149_4658_504F_5345
_FILTER_NAMES = "status and pair"
# What a close writes besides the status and version.
_CLOSE_FIELDS = (
    "close_reason",
    "result",
    "exit_price",
    "pips",
    "realized_pnl",
    "realized_pnl_usd",
    "close_time",
    "update_time",
)


@dataclass(frozen=True)
class Close:
    """A close to write: `position` as the closer saw it (its version is the condition),
    `closed` the settled copy (pnl.settle)."""

    position: Position
    closed: Position


@dataclass(frozen=True)
class Snapshot:
    position_id: str
    time: datetime
    price: Decimal
    pips: Decimal
    unrealized_pnl: Decimal


def _from_row(row: PositionRow) -> Position:
    return position_from_fields({name: getattr(row, name) for name in NAMES})


def _event_from_row(row: EventRow) -> PositionEvent:
    return PositionEvent(
        id=int(row.id),
        type=EventType(row.type),
        position=position_from_fields(row.position),
        time=as_utc(row.time),
    )


def _event_values(event_type: EventType, position: Position) -> dict[str, Any]:
    return {
        "user_id": position.user_id,
        "position_id": position.id,
        "type": event_type.value,
        "time": as_utc(position.update_time),
        "position": position_document(position),
    }


def _list_fingerprint(status: Status | None, pair: str | None) -> str:
    return pagination.fingerprint({"status": status and status.value, "pair": pair})


class PositionRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @contextlib.asynccontextmanager
    async def _writing(self, events: bool = True) -> AsyncIterator[AsyncSession]:
        """A write transaction (common.db.write_transaction); `events` when it writes
        events, which then commit in id order (common.db.commit_in_id_order)."""
        async with write_transaction(self._sessions) as session:
            if events:
                await commit_in_id_order(session, _EVENT_ORDER_LOCK_KEY)
            yield session

    async def _write_events(
        self, session: AsyncSession, changes: Sequence[tuple[EventType, Position]]
    ) -> builtins.list[PositionEvent]:
        """Insert one event per change (at most one change per position), timed at the
        change (the position's update_time).

        The ids come back matched by position id, not by RETURNING order: asking
        SQLAlchemy for rows in parameter order (sort_by_parameter_order) makes it insert
        row by row on SQLite, one round trip per event (70 ms for the 300 closes of one
        busy tick)."""
        statement = insert(EventRow).returning(EventRow.id, EventRow.position_id)
        rows = await session.execute(
            statement, [_event_values(kind, position) for kind, position in changes]
        )
        ids = {position_id: int(event_id) for event_id, position_id in rows}
        if len(ids) != len(changes):
            raise ValueError("one event per position and call")
        return [
            PositionEvent(
                id=ids[position.id], type=kind, position=position, time=as_utc(position.update_time)
            )
            for kind, position in changes
        ]

    async def open(
        self, position: Position, idempotency_key: str | None, request_fingerprint: str | None
    ) -> tuple[Position, PositionEvent | None]:
        """Store a new position and its OPENED event. With an idempotency key already
        used by this user: the stored position and no event when `request_fingerprint`
        matches, ALREADY_EXISTS when it does not."""
        values = {
            **position_fields(position),
            "idempotency_key": idempotency_key,
            "request_fingerprint": request_fingerprint,
        }
        async with self._writing() as session:
            statement = (
                upsert_insert(session)(PositionRow)
                .values(**values)
                .on_conflict_do_nothing(index_elements=["user_id", "idempotency_key"])
                .returning(PositionRow.id)
            )
            created = (await session.execute(statement)).scalar_one_or_none()
            if created is None:
                existing = (
                    await session.execute(
                        select(PositionRow).where(
                            PositionRow.user_id == position.user_id,
                            PositionRow.idempotency_key == idempotency_key,
                        )
                    )
                ).scalar_one()
                if existing.request_fingerprint != request_fingerprint:
                    raise AlreadyExists(
                        f"idempotency_key '{idempotency_key}' was already used for a "
                        f"different request (position {existing.id}); use a new key for a "
                        "new position",
                        reason="IDEMPOTENCY_KEY_REUSED",
                    )
                return _from_row(existing), None
            (event,) = await self._write_events(session, [(EventType.OPENED, position)])
        return position, event

    async def get(self, user_id: str, position_id: str) -> Position:
        """The user's position; NOT_FOUND when it does not exist or is someone else's."""
        async with self._sessions() as session:
            row = await session.get(PositionRow, position_id)
        if row is None or row.user_id != user_id:
            raise NotFound(f"position {position_id} not found", reason="POSITION_NOT_FOUND")
        return _from_row(row)

    async def list(
        self, user_id: str, status: Status | None, pair: str | None, size: int, page_token: str
    ) -> tuple[builtins.list[Position], str]:
        """A page of the user's positions, newest open_time first, and the next page's
        token ('' on the last page)."""
        query: Select[Any] = select(PositionRow).where(PositionRow.user_id == user_id)
        if status is not None:
            query = query.where(PositionRow.status == status.value)
        if pair is not None:
            query = query.where(PositionRow.pair == pair)
        filters = _list_fingerprint(status, pair)
        if page_token:
            cursor = pagination.decode_page_token(page_token, filters, _FILTER_NAMES)
            try:
                after_time, after_id = datetime.fromisoformat(cursor[0]), str(cursor[1])
            except (TypeError, ValueError, IndexError, KeyError):
                raise InvalidArgument(
                    [FieldViolation("page_token", "is not a token this service issued")]
                ) from None
            query = query.where(
                tuple_(PositionRow.open_time, PositionRow.id)
                < tuple_(literal(after_time), literal(after_id))
            )
        query = query.order_by(PositionRow.open_time.desc(), PositionRow.id.desc()).limit(size + 1)
        async with self._sessions() as session:
            rows = builtins.list((await session.execute(query)).scalars())
        page = [_from_row(row) for row in rows[:size]]
        next_token = ""
        if len(rows) > size:
            last = page[-1]
            next_token = pagination.encode_page_token(
                [as_utc(last.open_time).isoformat(), last.id], filters
            )
        return page, next_token

    async def update_levels(self, current: Position, updated: Position) -> PositionEvent:
        """Replace the levels of `current` (as read, by its version) with `updated`'s and
        write the UPDATED event. FAILED_PRECONDITION when it was closed or changed
        meanwhile."""
        changed = replace(updated, version=current.version + 1)
        async with self._writing() as session:
            result = await session.execute(
                update(PositionRow)
                .where(
                    PositionRow.id == current.id,
                    PositionRow.version == current.version,
                    PositionRow.status == Status.OPEN.value,
                )
                .values(
                    stop_loss=changed.stop_loss,
                    take_profit=changed.take_profit,
                    update_time=as_utc(changed.update_time),
                    version=changed.version,
                )
                .returning(PositionRow.id)
            )
            if result.scalar_one_or_none() is None:
                raise FailedPrecondition(
                    f"position {current.id} was closed or changed meanwhile; read it again",
                    reason="POSITION_CHANGED",
                )
            (event,) = await self._write_events(session, [(EventType.UPDATED, changed)])
        return event

    async def close(self, closes: Sequence[Close]) -> builtins.list[PositionEvent]:
        """Close every position of `closes` that is still open at the version its closer
        saw, in one transaction; the events of those this call closed (the others were
        closed or changed by someone else first, and are left alone)."""
        if not closes:
            return []
        wanted = {close.position.id: close for close in closes}
        async with self._writing() as session:
            claimed = await session.execute(
                update(PositionRow)
                .where(
                    # The plain id list lets PostgreSQL find the rows by primary key; on
                    # the (id, version) pairs alone it scans the table (100 ms at 10,000
                    # open positions).
                    PositionRow.id.in_(list(wanted)),
                    tuple_(PositionRow.id, PositionRow.version).in_(
                        [(c.position.id, c.position.version) for c in closes]
                    ),
                    PositionRow.status == Status.OPEN.value,
                )
                .values(status=Status.CLOSED.value, version=PositionRow.version + 1)
                .returning(PositionRow.id)
            )
            won = [wanted[position_id] for position_id in claimed.scalars()]
            if not won:
                return []
            details = [
                {"b_id": c.position.id, **{name: values[name] for name in _CLOSE_FIELDS}}
                for c in won
                for values in [position_fields(c.closed)]
            ]
            table = PositionRow.__table__  # Core executemany, one UPDATE per closed row
            assert isinstance(table, Table)
            await session.execute(
                update(table)
                .where(table.c.id == bindparam("b_id"))
                .values({name: bindparam(name) for name in _CLOSE_FIELDS}),
                details,
            )
            changes: builtins.list[tuple[EventType, Position]] = []
            for c in won:
                closed = replace(c.closed, version=c.position.version + 1)
                assert closed.close_reason is not None
                changes.append((CLOSE_EVENT[closed.close_reason], closed))
            return await self._write_events(session, changes)

    async def open_positions(self, pairs: Sequence[str] | None = None) -> builtins.list[Position]:
        """Every open position (of `pairs`), for the watcher's start and sweeps."""
        query = select(PositionRow).where(PositionRow.status == Status.OPEN.value)
        if pairs:
            query = query.where(PositionRow.pair.in_(sorted(pairs)))
        async with self._sessions() as session:
            return [_from_row(row) for row in (await session.execute(query)).scalars()]

    async def closed_between(
        self, user_id: str, since: datetime | None, until: datetime, pair: str | None
    ) -> builtins.list[Position]:
        """The user's positions closed in [since, until), oldest close first."""
        conditions: builtins.list[ColumnElement[bool]] = [
            PositionRow.user_id == user_id,
            PositionRow.status == Status.CLOSED.value,
            PositionRow.close_time < as_utc(until),
        ]
        if since is not None:
            conditions.append(PositionRow.close_time >= as_utc(since))
        if pair is not None:
            conditions.append(PositionRow.pair == pair)
        query = (
            select(PositionRow)
            .where(and_(*conditions))
            .order_by(PositionRow.close_time, PositionRow.id)
        )
        async with self._sessions() as session:
            return [_from_row(row) for row in (await session.execute(query)).scalars()]

    async def events_after(
        self, after_id: int, limit: int, user_id: str | None = None
    ) -> builtins.list[PositionEvent]:
        """Events with id > after_id (of one user, or all), oldest first, at most
        `limit`."""
        query = select(EventRow).where(EventRow.id > after_id)
        if user_id is not None:
            query = query.where(EventRow.user_id == user_id)
        query = query.order_by(EventRow.id).limit(limit)
        async with self._sessions() as session:
            return [_event_from_row(row) for row in (await session.execute(query)).scalars()]

    async def last_event_id(self) -> int:
        """The highest event id (0 when none): where live delivery starts."""
        query = select(EventRow.id).order_by(EventRow.id.desc()).limit(1)
        async with self._sessions() as session:
            return int((await session.execute(query)).scalar_one_or_none() or 0)

    async def record_snapshots(
        self, snapshots: Sequence[Snapshot], forget_before: datetime | None = None
    ) -> None:
        """Store `snapshots` and delete those taken before `forget_before` (a sweep of
        10,000 open positions a minute would otherwise add 14 million rows a day)."""
        async with self._writing(events=False) as session:
            if snapshots:
                await session.execute(
                    insert(SnapshotRow), [snapshot.__dict__ for snapshot in snapshots]
                )
            if forget_before is not None:
                await session.execute(
                    delete(SnapshotRow).where(SnapshotRow.time < as_utc(forget_before))
                )

    async def snapshots_of(self, position_id: str) -> builtins.list[Snapshot]:
        query = (
            select(SnapshotRow)
            .where(SnapshotRow.position_id == position_id)
            .order_by(SnapshotRow.time, SnapshotRow.id)
        )
        async with self._sessions() as session:
            return [
                Snapshot(row.position_id, as_utc(row.time), row.price, row.pips, row.unrealized_pnl)
                for row in (await session.execute(query)).scalars()
            ]

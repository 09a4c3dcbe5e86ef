"""Signal history in the database (SQLite or PostgreSQL), and the SignalReader port.

`store` is one INSERT ... ON CONFLICT (pair, timeframe, candle_time, replay_lap) DO NOTHING
RETURNING id: the unique constraint decides which of several schedulers stores a
candle's signal, never a read-then-write. On PostgreSQL the insert first takes a
transaction-scoped advisory lock, so signals commit in id order: a reader that has seen
id n has seen every id below it, which is what lets streams resume "after id n" without
missing a signal another replica was committing at that instant. (SQLite serialises
writers anyway.) Signals are a handful per candle close; the lock costs nothing.

Lists are AIP-158 pages, newest first (by id, i.e. creation order). The page token is
opaque (common.pagination) and carries the last id returned and a fingerprint of
the filter, so a token replayed with other filters is refused instead of silently
paging through a different result.
"""

from __future__ import annotations

import builtins
import dataclasses
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common import pagination
from common.db import commit_in_id_order, upsert_insert
from common.errors import FieldViolation, InvalidArgument
from common.market import Timeframe
from common.pagination import effective_page_size, fingerprint
from common.time import as_utc
from signal_svc.models import SignalRow
from signal_svc.ports import SignalFilter
from signal_svc.signal_codec import signal_fields, signal_from_fields
from signal_svc.signals import Signal

# Key of the advisory lock that orders signal commits on PostgreSQL ("AIFXSIGN").
_ORDER_LOCK_KEY = 0x4149_4658_5349_474E


def _row_values(signal: Signal) -> dict[str, Any]:
    """The columns of a new row: every field but the id the database assigns."""
    values = signal_fields(signal)
    del values["id"]
    return values


def _from_row(row: SignalRow) -> Signal:
    return signal_from_fields({column: getattr(row, column) for column in _COLUMNS})


_COLUMNS = tuple(column.key for column in SignalRow.__table__.columns)


def _filtered(query: Select[Any], wanted: SignalFilter) -> Select[Any]:
    conditions: builtins.list[ColumnElement[bool]] = []
    if wanted.pairs:
        conditions.append(SignalRow.pair.in_(sorted(wanted.pairs)))
    if wanted.timeframes:
        conditions.append(SignalRow.timeframe.in_(sorted(t.value for t in wanted.timeframes)))
    if wanted.actions:
        conditions.append(SignalRow.action.in_(sorted(a.value for a in wanted.actions)))
    if wanted.min_confidence > 0:
        conditions.append(SignalRow.confidence >= wanted.min_confidence)
    if wanted.since is not None:
        conditions.append(SignalRow.created_at >= as_utc(wanted.since))
    return query.where(and_(*conditions)) if conditions else query


_FILTER_NAMES = "pair, timeframe, action and since"


def filter_fingerprint(wanted: SignalFilter) -> str:
    """A short digest of the filter, stable across processes (for page tokens)."""
    return fingerprint(
        {
            "pairs": sorted(wanted.pairs),
            "timeframes": sorted(t.value for t in wanted.timeframes),
            "actions": sorted(a.value for a in wanted.actions),
            "min_confidence": wanted.min_confidence,
            "since": None if wanted.since is None else as_utc(wanted.since).isoformat(),
        }
    )


def encode_page_token(last_id: int, wanted: SignalFilter) -> str:
    return pagination.encode_page_token(last_id, filter_fingerprint(wanted))


def decode_page_token(token: str, wanted: SignalFilter) -> int:
    """The last id of the previous page; InvalidArgument (field page_token) when the
    token is malformed or was issued for other filters."""
    last_id = pagination.decode_page_token(token, filter_fingerprint(wanted), _FILTER_NAMES)
    if not isinstance(last_id, int) or isinstance(last_id, bool) or last_id < 1:
        raise InvalidArgument([FieldViolation("page_token", "is not a token this service issued")])
    return last_id


class SignalRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def store(self, signal: Signal) -> Signal | None:
        """Store a signal; it with its id, or None when that candle's signal is already
        stored (by this or another scheduler)."""
        values = _row_values(signal)
        async with self._sessions() as session, session.begin():
            await commit_in_id_order(session, _ORDER_LOCK_KEY)
            statement = (
                upsert_insert(session)(SignalRow)
                .values(**values)
                .on_conflict_do_nothing(
                    index_elements=["pair", "timeframe", "candle_time", "replay_lap"]
                )
                .returning(SignalRow.id)
            )
            new_id = (await session.execute(statement)).scalar_one_or_none()
        if new_id is None:
            return None
        return dataclasses.replace(signal, id=int(new_id))

    async def latest(self, pair: str, timeframe: Timeframe) -> Signal | None:
        """The signal of the newest candle of (pair, timeframe) on the replay's latest lap
        (a looping replay plays the same candles again), or None."""
        query = (
            select(SignalRow)
            .where(SignalRow.pair == pair, SignalRow.timeframe == timeframe.value)
            .order_by(
                SignalRow.replay_lap.desc(), SignalRow.candle_time.desc(), SignalRow.id.desc()
            )
            .limit(1)
        )
        async with self._sessions() as session:
            row = (await session.execute(query)).scalar_one_or_none()
        return None if row is None else _from_row(row)

    async def get(self, signal_id: int) -> Signal | None:
        async with self._sessions() as session:
            row = await session.get(SignalRow, signal_id)
        return None if row is None else _from_row(row)

    async def list(
        self, wanted: SignalFilter, page_size: int = 0, page_token: str = ""
    ) -> tuple[list[Signal], str]:
        """A page of matching signals, newest first, and the next page's token ('' on
        the last page). InvalidArgument for a bad page_size or page_token."""
        size = effective_page_size(page_size)
        query = _filtered(select(SignalRow), wanted)
        if page_token:
            query = query.where(SignalRow.id < decode_page_token(page_token, wanted))
        query = query.order_by(SignalRow.id.desc()).limit(size + 1)
        async with self._sessions() as session:
            rows = list((await session.execute(query)).scalars())
        page = [_from_row(row) for row in rows[:size]]
        next_token = encode_page_token(page[-1].id, wanted) if len(rows) > size else ""
        return page, next_token

    async def signals_after(
        self, after_id: int, wanted: SignalFilter, limit: int
    ) -> builtins.list[Signal]:
        """Stored signals with id > after_id matching `wanted`, oldest first (at most
        `limit`). The SignalReader port of the streams' replay."""
        query = (
            _filtered(select(SignalRow), wanted)
            .where(SignalRow.id > after_id)
            .order_by(SignalRow.id.asc())
            .limit(limit)
        )
        async with self._sessions() as session:
            rows = (await session.execute(query)).scalars()
            return [_from_row(row) for row in rows]

    async def last_id(self) -> int:
        """The highest stored id (0 when none): where a live stream starts."""
        async with self._sessions() as session:
            query = select(SignalRow.id).order_by(SignalRow.id.desc()).limit(1)
            value = (await session.execute(query)).scalar_one_or_none()
        return int(value or 0)


__all__ = [
    "SignalRepository",
    "decode_page_token",
    "effective_page_size",
    "encode_page_token",
    "filter_fingerprint",
]

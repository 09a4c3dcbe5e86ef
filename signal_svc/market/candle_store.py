"""Candles in the database (table signal_candles), with a cache of each series' latest
bars in Redis (or in process when Redis is not configured or is down).

- `upsert` writes bars with one `INSERT ... ON CONFLICT (pair, timeframe, open_time)
  DO UPDATE` per chunk (PostgreSQL's and SQLite's dialect inserts): writing the same bar
  twice leaves one row holding the newest values.
- `latest` answers from the cache when it holds enough bars, from the database otherwise
  (and then refills the cache). Only bars closed by `closed_by` are returned, so a
  replica whose replay clock is behind never shows a bar "from its future" that another
  replica (or a previous run) stored.
- The cache of a series (key `<redis_prefix>market:candles:<pair>:<timeframe>`, JSON) is
  rewritten from the database after every write to that series, so it never holds what
  the database does not. Losing Redis only costs the cache (see common.kv).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.candles import TIMEFRAME_SECONDS, Candles
from common.db import upsert_insert
from common.kv import KeyValueStore, MemoryStore
from common.market import Timeframe
from common.time import as_utc
from signal_svc.models import CandleRow
from signal_svc.ports import CandleClosed

log = structlog.get_logger(__name__)

# Bars kept in the cache per series: the most GetCandles returns.
CACHE_BARS = 1000
CACHE_TTL_SECONDS = 6 * 3600.0
# Rows per INSERT: 9 parameters each stays under SQLite's oldest limit of 999.
UPSERT_CHUNK = 100
_UPDATED = ("open", "high", "low", "close", "volume", "source")


@dataclass(frozen=True)
class StoredCandles:
    """Bars of one series, oldest first, and the source of the newest (None if empty)."""

    candles: Candles
    source: str | None
    from_cache: bool = False

    def __len__(self) -> int:
        return len(self.candles)


def empty_candles(pair: str, timeframe: Timeframe) -> Candles:
    nothing = np.zeros(0, np.float64)
    return Candles(
        pair, timeframe, np.zeros(0, np.int64), nothing, nothing, nothing, nothing, nothing
    )


def candles_from_bars(pair: str, timeframe: Timeframe, bars: Sequence[Sequence[float]]) -> Candles:
    """Candles from [open_time, open, high, low, close, volume] rows, oldest first."""
    if not bars:
        return empty_candles(pair, timeframe)
    table = np.asarray(bars, dtype=np.float64)
    return Candles(
        pair,
        timeframe,
        table[:, 0].astype(np.int64),
        table[:, 1].copy(),
        table[:, 2].copy(),
        table[:, 3].copy(),
        table[:, 4].copy(),
        table[:, 5].copy(),
    )


def _epoch(moment: datetime) -> int:
    return int(as_utc(moment).timestamp())


def _moment(epoch: int | float) -> datetime:
    return datetime.fromtimestamp(int(epoch), UTC)


class CandleStore:
    """Stored candles with a cache of the latest `CACHE_BARS` per series."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        cache: KeyValueStore | None = None,
        *,
        cache_bars: int = CACHE_BARS,
        cache_ttl_seconds: float = CACHE_TTL_SECONDS,
    ) -> None:
        self._sessions = sessions
        self._cache = cache if cache is not None else MemoryStore()
        self._cache_bars = cache_bars
        self._cache_ttl = cache_ttl_seconds

    @staticmethod
    def cache_key(pair: str, timeframe: Timeframe) -> str:
        return f"market:candles:{pair}:{timeframe.value}"

    async def upsert(self, candles: Candles, source: str) -> int:
        """Insert or update every bar of `candles` (keyed by pair, timeframe, open
        time), then refresh the series' cache. Returns the number of bars written."""
        if not len(candles):
            return 0
        rows = [
            {
                "pair": candles.pair,
                "timeframe": candles.timeframe.value,
                "open_time": _moment(candles.times[i]),
                "open": float(candles.open[i]),
                "high": float(candles.high[i]),
                "low": float(candles.low[i]),
                "close": float(candles.close[i]),
                "volume": float(candles.volume[i]),
                "source": source,
            }
            for i in range(len(candles))
        ]
        async with self._sessions() as session:
            insert = upsert_insert(session)
            for start in range(0, len(rows), UPSERT_CHUNK):
                statement = insert(CandleRow).values(rows[start : start + UPSERT_CHUNK])
                statement = statement.on_conflict_do_update(
                    index_elements=["pair", "timeframe", "open_time"],
                    set_={name: statement.excluded[name] for name in _UPDATED},
                )
                await session.execute(statement)
            await session.commit()
        await self.refresh_cache(candles.pair, candles.timeframe)
        return len(rows)

    async def latest(
        self,
        pair: str,
        timeframe: Timeframe,
        limit: int,
        *,
        closed_by: float | None = None,
    ) -> StoredCandles:
        """The newest `limit` stored bars, oldest first, of those closed by market time
        `closed_by` (epoch seconds; None: all)."""
        limit = max(0, limit)
        cached = await self._read_cache(pair, timeframe)
        if cached is not None:
            bars, source, whole = cached
            kept = self._closed(bars, timeframe, closed_by)
            # Enough bars, or the cache holds the whole series: the database has no more.
            if len(kept) >= limit or whole:
                return self._result(
                    pair,
                    timeframe,
                    kept[len(kept) - limit :] if limit else [],
                    source,
                    from_cache=True,
                )
        else:
            bars, source = await self.refresh_cache(pair, timeframe)
            kept = self._closed(bars, timeframe, closed_by)
            if len(kept) >= limit or len(bars) < self._cache_bars:
                return self._result(
                    pair, timeframe, kept[len(kept) - limit :] if limit else [], source
                )
        bars, source = await self._query(pair, timeframe, limit, closed_by)
        return self._result(pair, timeframe, bars, source)

    async def refresh_cache(
        self, pair: str, timeframe: Timeframe
    ) -> tuple[list[list[float]], str | None]:
        """Rewrite the series' cache from the database; returns what was cached."""
        bars, source = await self._query(pair, timeframe, self._cache_bars, None)
        if not bars:  # nothing stored yet: nothing worth caching
            return bars, source
        payload = json.dumps(
            {"source": source, "whole": len(bars) < self._cache_bars, "bars": bars}
        )
        await self._cache.set(self.cache_key(pair, timeframe), payload, self._cache_ttl)
        return bars, source

    async def _read_cache(
        self, pair: str, timeframe: Timeframe
    ) -> tuple[list[list[float]], str | None, bool] | None:
        raw = await self._cache.get(self.cache_key(pair, timeframe))
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            return data["bars"], data["source"], bool(data["whole"])
        except (ValueError, KeyError, TypeError):
            log.warning(
                "unreadable candle cache entry ignored", pair=pair, timeframe=timeframe.value
            )
            return None

    async def _query(
        self, pair: str, timeframe: Timeframe, limit: int, closed_by: float | None
    ) -> tuple[list[list[float]], str | None]:
        query = (
            select(CandleRow)
            .where(CandleRow.pair == pair, CandleRow.timeframe == timeframe.value)
            .order_by(CandleRow.open_time.desc())
            .limit(limit)
        )
        if closed_by is not None:
            last_open = int(closed_by) - TIMEFRAME_SECONDS[timeframe]
            query = query.where(CandleRow.open_time <= _moment(last_open))
        async with self._sessions() as session:
            rows = (await session.scalars(query)).all()
        bars = [
            [_epoch(r.open_time), r.open, r.high, r.low, r.close, r.volume] for r in reversed(rows)
        ]
        return bars, (rows[0].source if rows else None)

    @staticmethod
    def _closed(
        bars: list[list[float]], timeframe: Timeframe, closed_by: float | None
    ) -> list[list[float]]:
        if closed_by is None:
            return bars
        last_open = closed_by - TIMEFRAME_SECONDS[timeframe]
        end = len(bars)
        while end and bars[end - 1][0] > last_open:
            end -= 1
        return bars[:end]

    @staticmethod
    def _result(
        pair: str,
        timeframe: Timeframe,
        bars: list[list[float]],
        source: str | None,
        *,
        from_cache: bool = False,
    ) -> StoredCandles:
        return StoredCandles(
            candles_from_bars(pair, timeframe, bars), source if bars else None, from_cache
        )

    async def close(self) -> None:
        await self._cache.close()


class CandleRecorder:
    """Stores each closed bar as the feed delivers it (the last bar of the event)."""

    def __init__(self, store: CandleStore) -> None:
        self.store = store
        self.recorded = 0

    async def record(self, event: CandleClosed) -> None:
        bar = event.candles.tail(1)
        await self.store.upsert(bar, event.source)
        self.recorded += 1

"""Where the offline replay is, kept in the database so that a restarted signal_svc
continues the replay where it stopped instead of starting the history over (and serving,
for minutes, "latest" signals of a market time it has gone back from).

One row per replayed history, keyed by a fingerprint of it (source, series and their
spans): a different history (another CSV, a new version of the bundled data) starts from
its own beginning. The position is written every few seconds while the replay runs and
once more at shutdown; after a crash the replay resumes from the last write, a few
seconds of market history early — closes already stored are stored once (the database
refuses a second signal for a candle), so nothing is duplicated.
"""

from __future__ import annotations

import hashlib
import json

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.db import upsert_insert
from common.time import utcnow
from signal_svc.market.replay import ReplayFeed
from signal_svc.models import ReplayStateRow


def history_key(feed: ReplayFeed) -> str:
    """A fingerprint of what `feed` replays."""
    spans = [
        [pair, timeframe.value, int(candles.times[0]), int(candles.times[-1]), len(candles)]
        for (pair, timeframe), candles in sorted(feed.all_series().items())
    ]
    text = json.dumps({"source": feed.source, "series": spans}, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class ReplayPositions:
    """The stored position (market time, lap) of each replayed history."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def load(self, history: str) -> tuple[float, int] | None:
        async with self._sessions() as session:
            row = await session.get(ReplayStateRow, history)
        return None if row is None else (float(row.market_time), int(row.lap))

    async def save(self, history: str, market_time: float, lap: int) -> None:
        values = {"market_time": market_time, "lap": lap, "updated_at": utcnow()}
        async with self._sessions() as session, session.begin():
            statement = upsert_insert(session)(ReplayStateRow).values(history=history, **values)
            await session.execute(
                statement.on_conflict_do_update(index_elements=["history"], set_=values)
            )

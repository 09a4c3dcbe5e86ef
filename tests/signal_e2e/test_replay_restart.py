"""The replay across signal_svc restarts (a real server, built as server.py builds it,
stopped and started again on the same database): it continues where it stopped, says so
when its history runs out, and — looping — plays the history again with one signal per
candle per lap.

Each server here has a database and Redis prefix of its own (tests/signal_e2e/
own_service.py); the package's replay keeps running beside them.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

from grpc_health.v1 import health_pb2
from sqlalchemy import select

from aifx.signal.v1 import signal_pb2
from common.db import create_engine, session_factory
from common.settings import Settings
from signal_svc.market.facade import offline_history
from signal_svc.market.replay import ReplayFeed
from signal_svc.market.replay_state import ReplayPositions, history_key
from signal_svc.models import SignalRow
from tests.infra import eventually
from tests.signal_e2e.conftest import REPLAY_SPEED, SignalEdge
from tests.signal_e2e.own_service import SignalService, own_settings, serving

HOUR = 3600.0


@contextlib.asynccontextmanager
async def replay_positions(settings: Settings) -> AsyncIterator[ReplayPositions]:
    """The stored replay positions of `settings`' database."""
    engine = create_engine(settings)
    try:
        yield ReplayPositions(session_factory(engine))
    finally:
        await engine.dispose()


def replayed(settings: Settings) -> ReplayFeed:
    """The replay a server of `settings` plays (to know its history's key and end)."""
    offline = offline_history(settings)
    return ReplayFeed(offline.series, speed=settings.market.replay_speed, source=offline.source)


async def move_to_the_end(settings: Settings, before_end: float) -> None:
    """Store a replay position `before_end` market seconds before the end of its
    history (as a long run would have left it)."""
    feed = replayed(settings)
    async with replay_positions(settings) as positions:
        await positions.save(history_key(feed), feed.end - before_end, 0)


async def test_a_restarted_service_continues_the_replay_where_it_stopped(
    signal_edge: SignalEdge, tmp_path: Path
) -> None:
    async with own_settings(signal_edge, tmp_path) as settings:
        async with serving(settings, signal_edge) as first:
            start = (await first.replay()).start_time.ToSeconds()

            async def played_a_day() -> float | None:
                now = (await first.replay()).market_time.ToSeconds()
                return now if now >= start + 24 * HOUR else None

            seen = await eventually(played_a_day, "a market day played")
            # Signals follow the replay once it has taken up its position: from then on
            # the stop stores where it is.
            await eventually(lambda: _signals(settings, lap=0, count=1), "the first signal")
        history = history_key(replayed(settings))
        async with replay_positions(settings) as positions:
            stored = await positions.load(history)
            assert stored is not None and stored[1] == 0
            assert stored[0] >= seen  # written at the stop, not only every few seconds
            # As if the first run had played two years before it stopped.
            later = start + 2 * 365 * 24 * HOUR
            await positions.save(history, later, 0)

        started = time.monotonic()
        async with serving(settings, signal_edge) as second:

            async def resumed() -> signal_pb2.ReplayState | None:
                replay = await second.replay()
                return replay if replay.market_time.ToSeconds() >= later else None

            replay = await eventually(resumed, "the replay to take up at the stored position")
            # Replaying from the start could not have got this far in the time taken.
            assert later - start > REPLAY_SPEED * (time.monotonic() - started)
            assert replay.start_time.ToSeconds() == start and replay.lap == 0
            assert not replay.finished


async def test_a_replay_that_does_not_loop_says_when_its_history_has_run_out(
    signal_edge: SignalEdge, tmp_path: Path
) -> None:
    async with own_settings(signal_edge, tmp_path) as settings:
        await move_to_the_end(settings, before_end=48 * HOUR)
        async with serving(settings, signal_edge) as server:
            assert not (await server.replay()).finished

            async def not_serving() -> bool:
                status = await server.health_of("replay")
                return status == health_pb2.HealthCheckResponse.NOT_SERVING

            await eventually(not_serving, "the replay health check to say NOT_SERVING")
            replay = await server.replay()
            assert replay.finished and not replay.loops and replay.lap == 0
            assert replay.market_time.ToSeconds() >= replay.end_time.ToSeconds()


async def test_a_looping_replay_starts_again_with_one_signal_per_candle_per_lap(
    signal_edge: SignalEdge, tmp_path: Path
) -> None:
    async with own_settings(signal_edge, tmp_path) as settings:
        settings = settings.replace(replay_loop=True)
        async with serving(settings, signal_edge):
            # Lap 0 from the start: some EUR/USD hours get their signal.
            await eventually(lambda: _signals(settings, lap=0, count=5), "lap 0 signals")
        await move_to_the_end(settings, before_end=24 * HOUR)
        async with serving(settings, signal_edge) as again:
            await eventually(
                lambda: _lap_of(again, 1), "the replay to start again as lap 1", within=20.0
            )
            assert await again.health_of("replay") == health_pb2.HealthCheckResponse.SERVING
            # Lap 1 replays the hours lap 0 did: the same candles get a signal again.
            await eventually(lambda: _signals(settings, lap=1, count=5), "lap 1 signals")
        rows = await _signal_keys(settings)
    per_candle = Counter(rows)
    assert max(per_candle.values()) == 1  # one signal per candle per lap
    hours = {(candle, lap) for pair, tf, candle, lap in rows if (pair, tf) == ("EUR/USD", "1h")}
    twice = {candle for candle, lap in hours if lap == 0} & {c for c, lap in hours if lap == 1}
    assert twice, "no EUR/USD hour signalled in both laps"


async def _lap_of(server: SignalService, lap: int) -> bool:
    return (await server.replay()).lap == lap


async def _signal_keys(settings: Settings) -> list[tuple[str, str, object, int]]:
    engine = create_engine(settings)
    try:
        async with session_factory(engine)() as session:
            result = await session.execute(
                select(
                    SignalRow.pair, SignalRow.timeframe, SignalRow.candle_time, SignalRow.replay_lap
                )
            )
            return [tuple(row) for row in result.all()]  # type: ignore[misc]
    finally:
        await engine.dispose()


async def _signals(settings: Settings, lap: int, count: int) -> bool:
    keys = await _signal_keys(settings)
    return sum(1 for *_, row_lap in keys if row_lap == lap) >= count

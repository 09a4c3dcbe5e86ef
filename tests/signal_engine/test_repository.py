"""Signal history on SQLite and PostgreSQL: one signal per candle, pages and tokens,
filters, and the replay read of the streams."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

import pytest

from common.candles import Candles
from common.errors import InvalidArgument
from common.market import Timeframe
from signal_svc.engine import SignalEngine
from signal_svc.ports import SignalFilter
from signal_svc.repository import SignalRepository, encode_page_token
from signal_svc.signals import Action, Signal
from tests.infra import make_settings
from tests.signal_engine.helpers import closed


@pytest.fixture(scope="module")
async def real_signals(hours: Candles, four_hours: Candles, tmp_path_factory) -> list[Signal]:
    """Rules-only signals of 40 real 1h closes and 10 real 4h closes, created a minute
    apart in candle order."""
    engine = SignalEngine(make_settings(tmp_path_factory.mktemp("repository")).strategy, None)
    events = [closed(hours, end) for end in range(4000, 4400, 10)]
    events += [closed(four_hours, end) for end in range(1200, 1250, 5)]
    signals = await engine.evaluate_many(events)
    start = signals[0].created_at
    return [
        dataclasses.replace(s, created_at=start + timedelta(minutes=i))
        for i, s in enumerate(signals)
    ]


@pytest.fixture
async def stored(signal_db, real_signals) -> list[Signal]:
    result = []
    for signal in real_signals:
        saved = await signal_db.repository.store(signal)
        assert saved is not None
        result.append(saved)
    return result


async def test_store_returns_the_signal_with_its_id_and_refuses_a_second_for_the_candle(
    signal_db, real_signals
) -> None:
    first, second = real_signals[:2]
    saved = await signal_db.repository.store(first)
    assert saved is not None and saved.id > 0
    assert dataclasses.replace(saved, id=0) == first
    # Another scheduler's signal for the same candle (different content) is refused.
    again = dataclasses.replace(first, action=Action.SELL, confidence=0.99)
    assert await signal_db.repository.store(again) is None
    assert await signal_db.repository.get(saved.id) == saved
    later = await signal_db.repository.store(second)
    assert later is not None and later.id > saved.id


async def test_concurrent_stores_of_one_candle_keep_exactly_one(signal_db, real_signals):
    signal = real_signals[7]
    results = await asyncio.gather(*(signal_db.repository.store(signal) for _ in range(8)))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    page, _ = await signal_db.repository.list(SignalFilter(), 500)
    assert [s.id for s in page] == [winners[0].id]


async def test_stored_signals_read_back_whole(signal_db, stored) -> None:
    for signal in stored[:5]:
        assert await signal_db.repository.get(signal.id) == signal


async def test_latest_is_the_newest_candle_of_the_series(signal_db, stored) -> None:
    one_hour = [s for s in stored if s.timeframe is Timeframe.H1]
    four_hour = [s for s in stored if s.timeframe is Timeframe.H4]
    assert await signal_db.repository.latest("EUR/USD", Timeframe.H1) == one_hour[-1]
    assert await signal_db.repository.latest("EUR/USD", Timeframe.H4) == four_hour[-1]
    assert await signal_db.repository.latest("EUR/USD", Timeframe.D1) is None
    assert await signal_db.repository.latest("GBP/USD", Timeframe.H1) is None


async def test_pages_walk_the_history_newest_first(signal_db, stored) -> None:
    repository: SignalRepository = signal_db.repository
    seen: list[Signal] = []
    token = ""
    pages = 0
    while True:
        page, token = await repository.list(SignalFilter(), 7, token)
        pages += 1
        seen.extend(page)
        if not token:
            break
    assert pages == 8  # 50 signals by 7
    assert seen == sorted(stored, key=lambda s: s.id, reverse=True)
    page, token = await repository.list(SignalFilter(), 50)
    assert len(page) == 50 and token == ""  # exactly one full page: no empty next page


async def test_page_size_defaults_and_caps(signal_db, stored) -> None:
    repository = signal_db.repository
    page, token = await repository.list(SignalFilter(), 0)
    assert len(page) == 50 and not token
    page, _ = await repository.list(SignalFilter(), 10_000)
    assert len(page) == 50
    with pytest.raises(InvalidArgument) as error:
        await repository.list(SignalFilter(), -1)
    assert error.value.violations[0].field == "page_size"


async def test_filters_pair_timeframe_action_and_since(signal_db, stored) -> None:
    repository = signal_db.repository
    four = SignalFilter(timeframes=frozenset({Timeframe.H4}))
    page, _ = await repository.list(four, 100)
    assert [s.id for s in page] == [s.id for s in reversed(stored) if s.timeframe is Timeframe.H4]
    for action in Action:
        wanted = SignalFilter(actions=frozenset({action}), pairs=frozenset({"EUR/USD"}))
        page, _ = await repository.list(wanted, 100)
        assert [s.id for s in page] == [s.id for s in reversed(stored) if s.action is action]
    assert {s.action for s in stored} == set(Action)  # real data gave every action
    since = stored[30].created_at
    page, _ = await repository.list(SignalFilter(since=since), 100)
    assert [s.id for s in page] == [s.id for s in reversed(stored[30:])]
    page, _ = await repository.list(SignalFilter(pairs=frozenset({"GBP/USD"})), 100)
    assert page == []


async def test_a_token_is_only_good_with_the_filters_it_was_issued_for(signal_db, stored) -> None:
    repository = signal_db.repository
    one_hour = SignalFilter(timeframes=frozenset({Timeframe.H1}))
    first, token = await repository.list(one_hour, 5)
    second, _ = await repository.list(one_hour, 5, token)
    assert second[0].id < first[-1].id
    with pytest.raises(InvalidArgument) as error:
        await repository.list(SignalFilter(timeframes=frozenset({Timeframe.H4})), 5, token)
    assert error.value.violations[0].field == "page_token"
    assert "other filters" in error.value.violations[0].description
    for bad in ("garbage!", "eyJ2IjoxfQ", encode_page_token(5, one_hour)[:-3] + "AAA"):
        with pytest.raises(InvalidArgument) as error:
            await repository.list(one_hour, 5, bad)
        assert error.value.violations[0].field == "page_token"


async def test_signals_after_replays_oldest_first_with_filter_and_limit(signal_db, stored) -> None:
    repository = signal_db.repository
    after = stored[9].id
    got = await repository.signals_after(after, SignalFilter(), 15)
    assert got == stored[10:25]
    buys = SignalFilter(actions=frozenset({Action.BUY}), min_confidence=0.5)
    got = await repository.signals_after(0, buys, 100)
    assert got == [s for s in stored if s.action is Action.BUY and s.confidence >= 0.5]
    assert await repository.signals_after(stored[-1].id, SignalFilter(), 10) == []
    assert await repository.last_id() == stored[-1].id

"""`Market`: what the servicer and the server use of market data — the feed, stored
candles, prices, the pairs on offer — and the background work that keeps them current.

Domain code: raises `common.errors` (NotFound, Unavailable), never imports grpc.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.candles import TIMEFRAME_SECONDS, Candles
from common.errors import NotFound, Unavailable
from common.kv import KeyValueStore, create_store
from common.market import Timeframe, normalize_pair
from common.market_data import MarketDataError, load_yahoo_history, yahoo_session
from common.settings import Settings
from common.shutdown import run_together
from signal_svc.market.candle_store import CandleRecorder, CandleStore, StoredCandles
from signal_svc.market.live import LiveFeed
from signal_svc.market.prices import PriceHub
from signal_svc.market.replay import ReplayFeed
from signal_svc.market.replay_state import ReplayPositions, history_key
from signal_svc.market.series import OfflineHistory, csv_history, default_history
from signal_svc.ports import CandleClosed, MarketData, PriceTick

log = structlog.get_logger(__name__)

# GetCandles bounds: 0 means DEFAULT_CANDLES; more than MAX_CANDLES is capped.
DEFAULT_CANDLES = 100
MAX_CANDLES = 1000
# Bars written to storage per series when the market starts.
BACKFILL_BARS = MAX_CANDLES
# How often the replay's position is stored (real seconds): a crash replays at most this
# much again (at the demo speed of 3600, a few market hours).
REMEMBER_SECONDS = 2.0


class Feed(MarketData, Protocol):
    """What `Market` needs of a feed beyond `MarketData` (ReplayFeed and LiveFeed)."""

    source: str

    def offered(self) -> dict[str, list[Timeframe]]: ...

    def now(self) -> float: ...

    def tick_pairs(self) -> list[str]: ...

    def ticks(self) -> AsyncIterator[PriceTick]: ...

    def latest_tick(self, pair: str) -> PriceTick | None: ...


@dataclass(frozen=True)
class SeriesInfo:
    """One series of a pair on offer: its bars' kind, where they come from, the span of
    offline bars (epoch seconds of the first and last open time), and whether signals
    are produced at its closes."""

    timeframe: Timeframe
    closes_only: bool
    source: str
    origin: str
    first_bar: int | None
    last_bar: int | None
    signals: bool


@dataclass(frozen=True)
class ReplayState:
    """Where the offline replay is (epoch seconds of market time)."""

    market_time: float
    start_time: float
    end_time: float
    speed: float
    finished: bool
    loops: bool
    lap: int


@dataclass(frozen=True)
class PairInfo:
    """A pair on offer (see ListPairs)."""

    pair: str
    base_currency: str
    quote_currency: str
    pip_size: float
    online: bool
    offline: bool
    sources: list[str]
    timeframes: list[Timeframe]
    offline_start: int | None = None  # epoch seconds: open time of the first offline bar
    offline_end: int | None = None  # open time of the last offline bar
    series: tuple[SeriesInfo, ...] = ()


def pip_size(pair: str) -> float:
    """0.01 for JPY quotes, else 0.0001."""
    return 0.01 if pair.endswith("/JPY") else 0.0001


@dataclass
class Market:
    """The market-data facade. Build it with `build_market`; start `run()` as a
    background task; `close()` at shutdown."""

    feed: Feed
    store: CandleStore
    prices: PriceHub
    offline: OfflineHistory | None = None
    mode: str = "replay"
    signal_pairs: Sequence[str] = ()
    signal_timeframes: Sequence[Timeframe] = ()
    heartbeat_seconds: float = 15.0
    backfill_bars: int = BACKFILL_BARS
    # Where the replay is kept across restarts (replay mode); None: always from the start.
    positions: ReplayPositions | None = None
    recorder: CandleRecorder = field(init=False)
    ready: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    # Set once a replay has taken up where an earlier run stopped (at once for live
    # data): consumers of closes start after it.
    resumed: asyncio.Event = field(init=False, default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.recorder = CandleRecorder(self.store)
        self._seed_prices()

    def _seed_prices(self) -> None:
        """The price at the current market time is known before the first tick."""
        for pair in self.feed.tick_pairs():
            tick = self.feed.latest_tick(pair)
            if tick is not None:
                self.prices.seed(tick)

    # --- where the replay is -------------------------------------------------------------

    async def resume(self) -> None:
        """Continue the replay where an earlier run stopped (its stored position), then
        set `resumed`. A database that cannot be read means starting from the start."""
        feed = self.feed
        if isinstance(feed, ReplayFeed) and self.positions is not None:
            try:
                stored = await self.positions.load(history_key(feed))
            except Exception:
                log.exception("replay position not readable; starting from the beginning")
                stored = None
            if stored is not None:
                feed.resume(*stored)
                self._seed_prices()
                log.info(
                    "replay resumed",
                    market_time=datetime.fromtimestamp(feed.now(), UTC).isoformat(),
                    lap=feed.lap,
                    finished=feed.finished,
                )
        self.resumed.set()

    async def remember_position(self) -> None:
        """Store where the replay is every REMEMBER_SECONDS (replay mode)."""
        while True:
            await asyncio.sleep(REMEMBER_SECONDS)
            await self.save_position()

    async def save_position(self) -> None:
        """Store where the replay is now (a replay that has taken up its position; call
        at shutdown before stopping the background work: a task cancelled inside a
        SQLite write can hold the database's lock until its connection is dropped)."""
        feed = self.feed
        if not isinstance(feed, ReplayFeed) or self.positions is None:
            return
        if not self.resumed.is_set():  # not taken up yet: nothing new to keep
            return
        lap, market_time = feed.position()
        try:
            await self.positions.save(history_key(feed), market_time, lap)
        except Exception:  # the next write (or the next run's start) copes
            log.exception("storing the replay position failed")

    def replay_running(self) -> bool:
        """False once a replay that does not loop has run out of history (the "replay"
        health check); True for live data."""
        return not (isinstance(self.feed, ReplayFeed) and self.feed.finished)

    def market_data_flowing(self) -> bool:
        """False while a live series' latest poll brought no data (the "market_data"
        health check; which series and why are in the log); True for a replay."""
        return not (isinstance(self.feed, LiveFeed) and self.feed.failing())

    # --- what is offered ---------------------------------------------------------------

    def offered(self) -> dict[str, list[Timeframe]]:
        return self.feed.offered()

    def describe_offer(self) -> str:
        offered = self.offered()
        if not offered:
            return "no pairs"
        return "; ".join(
            f"{pair} ({', '.join(tf.value for tf in tfs)})" for pair, tfs in sorted(offered.items())
        )

    def _where(self) -> str:
        return "offline" if self.mode == "replay" else "from the live provider"

    def require_pair(self, pair: str) -> list[Timeframe]:
        """The pair's timeframes, or NotFound naming what is offered."""
        timeframes = self.offered().get(pair)
        if not timeframes:
            raise NotFound(
                f"no market data for {pair} {self._where()}; offered: {self.describe_offer()}",
                reason="NO_MARKET_DATA",
            )
        return timeframes

    def require_series(self, pair: str, timeframe: Timeframe) -> None:
        if timeframe not in self.require_pair(pair):
            raise NotFound(
                f"no {timeframe.value} market data for {pair} {self._where()}; "
                f"offered: {self.describe_offer()}",
                reason="NO_MARKET_DATA",
            )

    def pairs(self) -> list[PairInfo]:
        """Pairs with market data, sorted by pair."""
        offline_series = self.offline.series if self.offline else {}
        infos = []
        for pair, timeframes in sorted(self.offered().items()):
            base, quote = pair.split("/")
            offline_bars = [c for (p, _), c in offline_series.items() if p == pair and len(c)]
            offline = bool(offline_bars)
            shortest = (
                min(offline_bars, key=lambda c: TIMEFRAME_SECONDS[c.timeframe]) if offline else None
            )
            if self.mode == "replay":
                online, sources = False, [self.feed.source]
            else:
                online = bool(getattr(self.feed, "online", {}).get(pair, False))
                sources = [self.feed.source]
            produced = (
                [tf for tf in self.signal_timeframes if tf in timeframes]
                if pair in self.signal_pairs
                else []
            )
            infos.append(
                PairInfo(
                    pair=pair,
                    base_currency=base,
                    quote_currency=quote,
                    pip_size=pip_size(pair),
                    online=online,
                    offline=offline,
                    sources=sources,
                    timeframes=produced,
                    offline_start=int(shortest.times[0]) if shortest is not None else None,
                    offline_end=int(shortest.times[-1]) if shortest is not None else None,
                    series=tuple(self._series_info(pair, tf, produced) for tf in timeframes),
                )
            )
        return infos

    def _series_info(
        self, pair: str, timeframe: Timeframe, produced: Sequence[Timeframe]
    ) -> SeriesInfo:
        bars = self.offline.series.get((pair, timeframe)) if self.offline else None
        replayed = self.mode == "replay" and bars is not None and len(bars) > 0
        origin = (
            self.offline.origins.get((pair, timeframe), "")
            if replayed and self.offline
            else "Yahoo Finance through yfinance"
        )
        return SeriesInfo(
            timeframe=timeframe,
            closes_only=self.closes_only(pair, timeframe),
            source=self.feed.source,
            origin=origin,
            first_bar=int(bars.times[0]) if replayed and bars is not None else None,
            last_bar=int(bars.times[-1]) if replayed and bars is not None else None,
            signals=timeframe in produced,
        )

    def closes_only(self, pair: str, timeframe: Timeframe) -> bool:
        """Whether the series' bars are single prices (fixings) rather than traded bars."""
        bars = self.offline.series.get((pair, timeframe)) if self.offline else None
        return self.mode == "replay" and bars is not None and bars.closes_only

    def replay_state(self) -> ReplayState | None:
        """Where the replay is; None for live data."""
        if not isinstance(self.feed, ReplayFeed):
            return None
        feed = self.feed
        lap, market_time = feed.position()
        return ReplayState(
            market_time=market_time,
            start_time=feed.start,
            end_time=feed.end,
            speed=feed.clock.speed,
            finished=feed.finished,
            loops=feed.loop,
            lap=lap,
        )

    # --- queries -------------------------------------------------------------------------

    async def candles(self, pair: str, timeframe: Timeframe, limit: int) -> StoredCandles:
        """The newest `limit` closed candles, oldest first: from storage (and its cache);
        when storage has fewer, from the feed (e.g. before the first backfill).
        NotFound for a series not offered, Unavailable when the source is unreachable
        and nothing is stored."""
        self.require_series(pair, timeframe)
        stored = await self.store.latest(pair, timeframe, limit, closed_by=self.feed.now())
        if len(stored) >= limit:
            return stored
        try:
            fetched = await self.feed.history(pair, timeframe, limit)
        except MarketDataError as exc:  # MarketDataUnavailable: the source is unreachable
            if len(stored):
                return stored
            raise Unavailable(str(exc), reason="MARKET_DATA_UNAVAILABLE") from None
        if len(fetched) > len(stored):
            return StoredCandles(fetched, self.feed.source)
        return stored

    async def price(self, pair: str) -> PriceTick:
        """The latest price of `pair`. NotFound for a pair not offered, Unavailable when
        no price is known yet (live source unreachable)."""
        self.require_pair(pair)
        tick = self.prices.latest(pair) or self.feed.latest_tick(pair)
        if tick is not None:
            return tick
        # A pair without ticks of its own (live: not polled): its newest closed bar.
        shortest = self.offered()[pair][0]
        try:
            bars = await self.feed.history(pair, shortest, 1)
        except MarketDataError as exc:
            raise Unavailable(str(exc), reason="MARKET_DATA_UNAVAILABLE") from None
        if not len(bars):
            raise Unavailable(f"no price for {pair} yet", reason="MARKET_DATA_UNAVAILABLE")
        return _tick_of(bars, self.feed.source)

    # --- background work -----------------------------------------------------------------

    async def backfill(self) -> None:
        """Store the history closed so far of every series signals are produced for
        (idempotent). Other series are read from the feed when asked for (the replay
        holds its whole history in memory; live data is fetched on demand), which keeps
        a start with sixteen replayed series from writing 16,000 bars at once."""
        for pair, timeframes in self.offered().items():
            if pair not in self.signal_pairs:
                continue
            for timeframe in timeframes:
                if timeframe not in self.signal_timeframes:
                    continue
                try:
                    candles = await self.feed.history(pair, timeframe, self.backfill_bars)
                    await self.store.upsert(candles, self.feed.source)
                except MarketDataError as exc:
                    log.warning(
                        "backfill skipped", pair=pair, timeframe=timeframe.value, error=str(exc)
                    )

    async def record_closes(self) -> None:
        """Store every closed bar the feed delivers (until the feed ends)."""
        async for event in self.feed.closes():
            await self._record(event)

    async def _record(self, event: CandleClosed) -> None:
        try:
            await self.recorder.record(event)
        except Exception:  # a database hiccup must not end recording
            log.exception(
                "storing a closed candle failed", pair=event.pair, timeframe=event.timeframe.value
            )

    async def publish_prices(self) -> None:
        """Publish every price tick of the feed to the subscribers."""
        async for tick in self.feed.ticks():
            self.prices.publish(tick)

    async def run(self) -> None:
        """The market's background work: backfill storage, then record closes and
        publish prices until cancelled (or the replay ends; the first failure of either
        stops the other and is raised).

        Not a TaskGroup: recording writes to Redis all the time and can lose a
        cancellation on Python 3.11, and a TaskGroup cancels its children only once,
        so shutdown could wait forever. `run_together` cancels them until they end, and
        `run` ends only after both have (see common.shutdown)."""
        await self.resume()
        try:
            await self.backfill()
        except Exception:
            log.exception("candle backfill failed; continuing with live recording")
        self.ready.set()
        await run_together(
            {
                "market-record-closes": self.record_closes(),
                "market-publish-prices": self.publish_prices(),
                "market-remember-replay": self.remember_position(),
            }
        )

    async def close(self) -> None:
        self.prices.close()
        closer: Callable | None = getattr(self.feed, "close", None)
        if closer is not None:
            with contextlib.suppress(Exception):
                await closer()
        await self.store.close()


def _tick_of(bars: Candles, source: str) -> PriceTick:
    last = len(bars) - 1
    return PriceTick(
        pair=bars.pair,
        price=float(bars.close[last]),
        high=float(bars.high[last]),
        low=float(bars.low[last]),
        time=datetime.fromtimestamp(int(bars.times[last]) + TIMEFRAME_SECONDS[bars.timeframe], UTC),
        source=source,
    )


def offline_history(settings: Settings) -> OfflineHistory:
    """The user's CSV (settings.market.market_data_csv) when set, else the default
    history: the bundled EUR/USD hours and the ECB's daily rates."""
    if settings.market.market_data_csv:
        default_pair = (
            normalize_pair(settings.market.signal_pairs[0])
            if settings.market.signal_pairs
            else "EUR/USD"
        )
        return csv_history(settings.market.market_data_csv, default_pair)
    return default_history()


def yahoo_loader(base_url: str) -> Callable[..., Candles]:
    """load_yahoo_history, asking `base_url` in Yahoo's place when one is set."""
    if not base_url:
        return load_yahoo_history
    return functools.partial(load_yahoo_history, session=yahoo_session(base_url))


def build_market(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    *,
    feed: Feed | None = None,
    cache: KeyValueStore | None = None,
) -> Market:
    """The market of `settings`:

    - replay mode (default): the CSV of settings.market.market_data_csv, or the bundled history,
      replayed at settings.market.replay_speed from 300 bars in; only those pairs are offered;
    - live mode: Yahoo Finance for settings.market.signal_pairs (every timeframe on demand;
      settings.market.signal_timeframes polled every `market_data_poll_seconds`).

    Candles are cached in Redis (under settings.storage.redis_prefix) when Redis is
    configured, in process otherwise. Raises MarketDataError for an unusable CSV file.
    """
    pairs = [normalize_pair(p) for p in settings.market.signal_pairs]
    timeframes = [Timeframe(tf) for tf in settings.market.signal_timeframes]
    offline: OfflineHistory | None
    if feed is None:
        if settings.market.market_data_mode == "live":
            try:
                offline = offline_history(settings)
            except MarketDataError as exc:
                log.warning("no offline history", error=str(exc))
                offline = None
            feed = LiveFeed(
                {pair: list(Timeframe) for pair in pairs},
                [(pair, tf) for pair in pairs for tf in timeframes],
                poll_seconds=settings.market.market_data_poll_seconds,
                loader=yahoo_loader(settings.market.yahoo_base_url),
            )
        else:
            offline = offline_history(settings)
            feed = ReplayFeed(
                offline.series,
                speed=settings.market.replay_speed,
                source=offline.source,
                origins=offline.origins,
                loop=settings.market.replay_loop,
            )
    else:
        offline = (
            OfflineHistory(feed.all_series(), feed.source, feed.origins)
            if isinstance(feed, ReplayFeed)
            else None
        )
    mode = "live" if isinstance(feed, LiveFeed) else "replay"
    return Market(
        feed=feed,
        store=CandleStore(sessions, cache if cache is not None else create_store(settings.storage)),
        prices=PriceHub(settings.streams.subscriber_buffer),
        offline=offline,
        mode=mode,
        signal_pairs=pairs,
        signal_timeframes=timeframes,
        heartbeat_seconds=settings.streams.stream_heartbeat_seconds,
        positions=ReplayPositions(sessions),
    )

"""`Market`: what the servicer and the server use of market data — the feed, stored
candles, prices, the pairs on offer — and the background work that keeps them current.

Domain code: raises `common.errors` (NotFound, Unavailable), never imports grpc.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from common.market_data import MarketDataError
from common.settings import Settings
from common.shutdown import run_together
from signal_svc.market.candle_store import CandleRecorder, CandleStore, StoredCandles
from signal_svc.market.live import LiveFeed
from signal_svc.market.prices import PriceHub
from signal_svc.market.replay import ReplayFeed
from signal_svc.market.series import OfflineHistory, bundled_history, csv_history
from signal_svc.ports import CandleClosed, MarketData, PriceTick

log = structlog.get_logger(__name__)

# GetCandles bounds: 0 means DEFAULT_CANDLES; more than MAX_CANDLES is capped.
DEFAULT_CANDLES = 100
MAX_CANDLES = 1000
# Bars written to storage per series when the market starts.
BACKFILL_BARS = MAX_CANDLES


class Feed(MarketData, Protocol):
    """What `Market` needs of a feed beyond `MarketData` (ReplayFeed and LiveFeed)."""

    source: str

    def offered(self) -> dict[str, list[Timeframe]]: ...

    def now(self) -> float: ...

    def tick_pairs(self) -> list[str]: ...

    def ticks(self) -> AsyncIterator[PriceTick]: ...

    def latest_tick(self, pair: str) -> PriceTick | None: ...


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
    recorder: CandleRecorder = field(init=False)
    ready: asyncio.Event = field(init=False, default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.recorder = CandleRecorder(self.store)
        # The price at the current market time is known before the first tick.
        for pair in self.feed.tick_pairs():
            tick = self.feed.latest_tick(pair)
            if tick is not None:
                self.prices.seed(tick)

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
                )
            )
        return infos

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
        """Store the history closed so far of every offered series (idempotent)."""
        for pair, timeframes in self.offered().items():
            if self.mode != "replay" and pair not in self.signal_pairs:
                continue
            for timeframe in timeframes:
                if self.mode != "replay" and timeframe not in self.signal_timeframes:
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
        try:
            await self.backfill()
        except Exception:
            log.exception("candle backfill failed; continuing with live recording")
        self.ready.set()
        await run_together(
            {
                "market-record-closes": self.record_closes(),
                "market-publish-prices": self.publish_prices(),
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
    """The user's CSV (settings.market.market_data_csv) when set, else the bundled history."""
    if settings.market.market_data_csv:
        default_pair = (
            normalize_pair(settings.market.signal_pairs[0])
            if settings.market.signal_pairs
            else "EUR/USD"
        )
        return csv_history(settings.market.market_data_csv, default_pair)
    return bundled_history()


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
            )
        else:
            offline = offline_history(settings)
            feed = ReplayFeed(
                offline.series, speed=settings.market.replay_speed, source=offline.source
            )
    else:
        offline = (
            OfflineHistory(feed.all_series(), feed.source) if isinstance(feed, ReplayFeed) else None
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
    )

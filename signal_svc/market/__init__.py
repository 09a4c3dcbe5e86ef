"""Market data of the signal service (section 1 of issue 4).

    feed (ReplayFeed | LiveFeed) ──closes()──▶ scheduler (engine)
                                 ├─closes()──▶ Market.record_closes ──▶ CandleStore (DB + cache)
                                 └─ticks()───▶ Market.publish_prices ──▶ PriceHub ──▶ streams

`build_market(settings, sessions)` gives a `Market`: `.feed` (signal_svc.ports.MarketData:
`history`, `closes`; plus `ticks`), `.store` (CandleStore), `.prices` (PriceHub).
Start `market.run()` as a background task (backfills storage, then records closes and
publishes prices) and `await market.close()` at shutdown.

Modules: `series` (the real offline history: bundled or CSV), `replay` (ReplayClock,
ReplayFeed), `live` (LiveFeed over Yahoo Finance), `candle_store` (CandleStore,
CandleRecorder), `prices` (PriceHub), `facade` (Market, build_market).
"""

from signal_svc.market.candle_store import CandleRecorder, CandleStore, StoredCandles
from signal_svc.market.facade import (
    BACKFILL_BARS,
    DEFAULT_CANDLES,
    MAX_CANDLES,
    Market,
    PairInfo,
    build_market,
    offline_history,
    pip_size,
)
from signal_svc.market.live import LiveFeed
from signal_svc.market.prices import PriceHub, PriceSubscription
from signal_svc.market.replay import ReplayClock, ReplayFeed
from signal_svc.market.series import (
    OfflineHistory,
    bundled_history,
    csv_history,
    default_history,
)

__all__ = [
    "BACKFILL_BARS",
    "DEFAULT_CANDLES",
    "MAX_CANDLES",
    "CandleRecorder",
    "CandleStore",
    "LiveFeed",
    "Market",
    "OfflineHistory",
    "PairInfo",
    "PriceHub",
    "PriceSubscription",
    "ReplayClock",
    "ReplayFeed",
    "StoredCandles",
    "build_market",
    "bundled_history",
    "csv_history",
    "default_history",
    "offline_history",
    "pip_size",
]

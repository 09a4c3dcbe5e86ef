"""The 5,000 real EUR/USD hourly bars that the `backtesting` package ships: AIFX's
offline history, read from the installed package (never copied into the repository)."""

from __future__ import annotations

from common.candles import Candles
from common.market import Timeframe
from common.market_data._core import MarketDataError, aggregate_hourly, frame_to_candles

_TIMEFRAMES = [Timeframe.H1, Timeframe.H4, Timeframe.D1]


def bundled_pairs() -> dict[str, list[Timeframe]]:
    """What the bundled history can provide offline."""
    return {"EUR/USD": list(_TIMEFRAMES)}


def load_bundled_history(pair: str = "EUR/USD", timeframe: Timeframe = Timeframe.H1) -> Candles:
    """The 5,000 real EUR/USD hourly bars (2017-04-19 to 2018-02-07) that `backtesting`
    ships, read from the installed package; 4h and 1d bars are aggregated from them.
    Their timestamps carry no zone; they are taken as UTC."""
    if pair != "EUR/USD" or timeframe not in _TIMEFRAMES:
        offered = ", ".join(
            f"{p} {', '.join(t.value for t in tfs)}" for p, tfs in bundled_pairs().items()
        )
        why = (
            " (the bundled bars are hourly; shorter bars cannot be made from them)"
            if pair == "EUR/USD" and timeframe == Timeframe.M15
            else ""
        )
        raise MarketDataError(
            f"no bundled history for {pair} {timeframe.value}{why}; offline data: {offered}"
        )
    from backtesting.test import EURUSD

    frame = EURUSD
    if timeframe != Timeframe.H1:
        frame = aggregate_hourly(frame, timeframe)
    return frame_to_candles(frame, pair, timeframe)

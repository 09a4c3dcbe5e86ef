"""Training labels: the direction of the move over the next `horizon` bars, with a hold
band where the move is too small to trade.

A move counts as up (buy) or down (sell) only when it exceeds `band_atr` times the
ATR(14) at the decision bar; anything smaller is hold. Scaling the band by ATR keeps
"too small to trade" meaningful in quiet and volatile periods alike.
"""

from __future__ import annotations

import numpy as np

from common import indicators

# Class indices of the model's output, in this order everywhere.
CLASSES = ("sell", "hold", "buy")
SELL, HOLD, BUY = 0, 1, 2
UNLABELLED = -1


def direction_labels(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, horizon: int, band_atr: float
) -> np.ndarray:
    """int64 label per bar; UNLABELLED where the future or the ATR is not known."""
    atr = indicators.atr(high, low, close, 14)
    labels = np.full(close.shape, UNLABELLED, dtype=np.int64)
    future = np.full(close.shape, np.nan)
    future[:-horizon] = close[horizon:]
    move = future - close
    band = band_atr * atr
    known = ~np.isnan(move) & ~np.isnan(band)
    labels[known] = HOLD
    labels[known & (move > band)] = BUY
    labels[known & (move < -band)] = SELL
    return labels

"""Training data: real candles → model samples, labels and a chronological split.

A sample is one decision bar `t`: its input is the window of `history` candles ending at
`t` (features from `inference.features`, exactly as the inference service computes
them), its label the direction of the close over the next `horizon` bars
(`inference.labels`). Sample `t` therefore touches candles `t - history + 1` to
`t + horizon`.

The split is chronological (train, then validation, then test) with a purge gap between
the parts: the first decision bar of a part is at least `history + horizon` bars after
the last one of the part before, so no candle, whether an input, an indicator's warm-up
or a label's future, is shared across a boundary. (The indicators' warm-up bars count
too: they shape the features, and sharing them would let neighbouring samples on either
side of a boundary see the same prices.) The scaler is fitted on the training part only.

No TensorFlow here: this module is unit-tested from the runtime environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from common import indicators
from common.candles import Candles
from common.market import Timeframe, normalize_pair
from common.market_data import MarketDataError, load_bundled_history
from inference.features import Scaler, WindowSpec, sliding_windows, window_features
from inference.labels import BUY, HOLD, SELL, UNLABELLED, direction_labels

# Defaults, recorded with every model (see the pipeline's --help for the reasons).
DEFAULT_HORIZON = 4
DEFAULT_HOLD_BAND = 0.5
DEFAULT_FRACTIONS = (0.70, 0.15, 0.15)
SPLIT_NAMES = ("train", "validation", "test")

# The technical-rule baseline's thresholds (see `technical_rule`).
RULE_RSI_LOW, RULE_RSI_MID, RULE_RSI_HIGH = 30.0, 50.0, 70.0


class DataError(ValueError):
    """The data cannot make a training set (too short, unknown pair, ...)."""


def load_candles(pair: str, timeframe: str, max_bars: int | None = None) -> tuple[Candles, str]:
    """Real candles for `pair`/`timeframe` and a description of where they came from.

    The bundled EUR/USD history (the `backtesting` package's 5,000 real hourly bars) is
    the offline source. `max_bars` keeps only the most recent bars (a smoke run).
    """
    try:
        normalized = normalize_pair(pair)
        frame = Timeframe(timeframe)
    except ValueError as exc:
        raise DataError(str(exc)) from exc
    try:
        candles = load_bundled_history(normalized, frame)
    except MarketDataError as exc:
        raise DataError(str(exc)) from exc
    source = (
        f"bundled history: {len(candles)} real {normalized} {frame.value} bars shipped with "
        "the `backtesting` package (backtesting.test.EURUSD)"
    )
    if max_bars is not None:
        if max_bars <= 0:
            raise DataError("--max-bars must be positive")
        candles = candles.tail(max_bars)
    return candles, source


def iso(epoch_seconds: int | np.integer) -> str:
    """UTC ISO 8601 of a bar time, e.g. 2017-04-19T09:00:00Z."""
    return datetime.fromtimestamp(int(epoch_seconds), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Samples:
    """Every labelled window of a series, oldest first.

    `bars[i]` is sample i's decision bar (index into the candles), `features[i]` its
    unscaled model input [lookback, features], `labels[i]` its class.
    """

    candles: Candles
    spec: WindowSpec
    horizon: int
    hold_band_atr: float
    bars: np.ndarray  # int64 [n]
    features: np.ndarray  # float64 [n, lookback, n_features]
    labels: np.ndarray  # int64 [n]
    all_labels: np.ndarray  # int64 [len(candles)]: the label of every bar (or UNLABELLED)

    def __len__(self) -> int:
        return int(self.bars.shape[0])

    @property
    def purge_gap(self) -> int:
        """Least distance in bars between decision bars on either side of a boundary."""
        return self.spec.history + self.horizon

    def span(self, index: np.ndarray) -> tuple[int, int]:
        """First and last candle index that the samples `index` touch."""
        return (
            int(self.bars[index[0]]) - self.spec.history + 1,
            int(self.bars[index[-1]]) + self.horizon,
        )


def build_samples(
    candles: Candles, spec: WindowSpec, horizon: int, hold_band_atr: float
) -> Samples:
    """Features and labels of every window whose label is known."""
    if horizon < 1:
        raise DataError("the horizon must be at least one bar")
    if hold_band_atr < 0:
        raise DataError("the hold band must not be negative")
    if len(candles) < spec.history + horizon + 1:
        raise DataError(
            f"{len(candles)} candles are too few: one sample needs {spec.history} for its "
            f"window and {horizon} after it for its label"
        )
    all_labels = direction_labels(candles.high, candles.low, candles.close, horizon, hold_band_atr)
    ohlc, times = sliding_windows(candles, spec)
    bars = np.arange(spec.history - 1, len(candles), dtype=np.int64)
    keep = all_labels[bars] != UNLABELLED
    bars = bars[keep]
    features = window_features(ohlc[keep], times[keep], spec)
    return Samples(
        candles=candles,
        spec=spec,
        horizon=horizon,
        hold_band_atr=hold_band_atr,
        bars=bars,
        features=features,
        labels=all_labels[bars],
        all_labels=all_labels,
    )


@dataclass(frozen=True)
class Split:
    """Positions (into `Samples`) of the train, validation and test samples."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray

    def parts(self) -> dict[str, np.ndarray]:
        return {"train": self.train, "validation": self.validation, "test": self.test}


def chronological_split(
    bars: np.ndarray, gap: int, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
) -> Split:
    """Split consecutive decision bars into train/validation/test, in time order, with
    `bars[first of next part] - bars[last of part] >= gap`.

    The bars left over after the two gaps are shared out by `fractions`.
    """
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1.0) > 1e-9:
        raise DataError("split fractions must be three positive numbers summing to 1")
    if bars.size and np.any(np.diff(bars) != 1):
        raise DataError("decision bars must be consecutive")
    skipped = gap - 1  # samples dropped at each boundary
    usable = len(bars) - 2 * skipped
    n_train = round(fractions[0] * usable)
    n_validation = round(fractions[1] * usable)
    n_test = usable - n_train - n_validation
    if min(n_train, n_validation, n_test) < 1:
        raise DataError(
            f"{len(bars)} samples are too few for a train/validation/test split with a "
            f"purge gap of {gap} bars at each boundary; use more bars"
        )
    positions = np.arange(len(bars))
    validation_start = n_train + skipped
    test_start = validation_start + n_validation + skipped
    return Split(
        train=positions[:n_train],
        validation=positions[validation_start : validation_start + n_validation],
        test=positions[test_start:],
    )


@dataclass(frozen=True)
class PreparedData:
    """Scaled model inputs and labels of each split, and what produced them."""

    samples: Samples
    split: Split
    scaler: Scaler
    inputs: dict[str, np.ndarray]  # split name → float32 [n, lookback, features]
    labels: dict[str, np.ndarray]  # split name → int64 [n]


def prepare(
    samples: Samples, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
) -> PreparedData:
    """Split `samples`, fit the scaler on the training part only, scale every part."""
    split = chronological_split(samples.bars, samples.purge_gap, fractions)
    scaler = Scaler.fit(samples.features[split.train])
    inputs = {name: scaler.transform(samples.features[idx]) for name, idx in split.parts().items()}
    labels = {name: samples.labels[idx] for name, idx in split.parts().items()}
    return PreparedData(samples, split, scaler, inputs, labels)


def split_summary(samples: Samples, split: Split) -> dict[str, dict[str, object]]:
    """Per split: sample count, decision-bar dates, candles touched and class shares."""
    summary: dict[str, dict[str, object]] = {}
    times = samples.candles.times
    for name, index in split.parts().items():
        first, last = samples.span(index)
        labels = samples.labels[index]
        summary[name] = {
            "samples": len(index),
            "first_decision": iso(times[samples.bars[index[0]]]),
            "last_decision": iso(times[samples.bars[index[-1]]]),
            "first_candle": iso(times[first]),
            "last_candle": iso(times[last]),
            "class_shares": {
                "sell": float(np.mean(labels == SELL)),
                "hold": float(np.mean(labels == HOLD)),
                "buy": float(np.mean(labels == BUY)),
            },
        }
    return summary


# --- baselines' raw signals -----------------------------------------------------------


def persistence_signal(samples: Samples) -> np.ndarray:
    """ "Same as last move": at decision bar t, the label of the move that has just
    completed, from t - horizon to t (same hold band, ATR at t - horizon). Known at t."""
    previous = samples.all_labels[samples.bars - samples.horizon]
    return np.where(previous == UNLABELLED, HOLD, previous)


def technical_rule(close: np.ndarray) -> np.ndarray:
    """A classic momentum rule per bar, from MACD(12, 26, 9) and RSI(14) at the bar:

    buy   when the MACD histogram is above zero and 50 < RSI < 70 (momentum up, not
          overbought);
    sell  when the histogram is below zero and 30 < RSI < 50 (momentum down, not
          oversold);
    hold  otherwise (no agreement, or stretched beyond 30/70, or indicators undefined).
    """
    _line, _signal, histogram = indicators.macd(close)
    rsi = indicators.rsi(close, 14)
    with np.errstate(invalid="ignore"):
        buy = (histogram > 0) & (rsi > RULE_RSI_MID) & (rsi < RULE_RSI_HIGH)
        sell = (histogram < 0) & (rsi < RULE_RSI_MID) & (rsi > RULE_RSI_LOW)
    out = np.full(close.shape, HOLD, dtype=np.int64)
    out[buy] = BUY
    out[sell] = SELL
    return out


def technical_signal(samples: Samples) -> np.ndarray:
    """The technical rule at each sample's decision bar (indicators over the series up
    to that bar: they only look back)."""
    return technical_rule(samples.candles.close)[samples.bars]

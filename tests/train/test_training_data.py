"""The training pipeline's TensorFlow-free parts: samples and splits on the real bundled
history, baselines, metrics on hand-made cases, temperature scaling, the model card.

Synthetic numbers appear only as probabilities and logits for checking metric code;
every price here is real (the EUR/USD hours the `backtesting` package ships).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from common.market import Timeframe
from common.market_data import load_bundled_history
from common.settings import REPO_ROOT
from inference.features import Scaler, WindowSpec, last_window, window_features
from inference.labels import BUY, HOLD, SELL, UNLABELLED, direction_labels
from inference.model_format import ModelMetadata
from inference.training import data, evaluation, report

SPEC = WindowSpec()


@pytest.fixture(scope="module")
def candles():
    return load_bundled_history("EUR/USD", Timeframe.H1).tail(1500)


@pytest.fixture(scope="module")
def samples(candles):
    return data.build_samples(candles, SPEC, horizon=4, hold_band_atr=0.5)


@pytest.fixture(scope="module")
def prepared(samples):
    return data.prepare(samples)


def test_training_modules_do_not_import_tensorflow():
    """Everything but inference.training.model loads without TensorFlow (checked in a
    fresh interpreter: other tests may load the TF Serving protobuf stubs, which live in
    a package named `tensorflow`)."""
    code = (
        "import sys\n"
        "import inference.training.pipeline, inference.training.report\n"
        "loaded = [m for m in ('tensorflow', 'keras', 'tf2onnx') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT, timeout=60)


# --- samples --------------------------------------------------------------------------


def test_samples_are_every_labelled_window(candles, samples):
    # the first decision bar has a full window behind it; the last has `horizon` after it
    assert samples.bars[0] == SPEC.history - 1
    assert samples.bars[-1] == len(candles) - 1 - 4
    assert np.all(np.diff(samples.bars) == 1)
    assert samples.features.shape == (len(samples), SPEC.lookback, 14)
    assert set(np.unique(samples.labels)) <= {SELL, HOLD, BUY}


def test_sample_features_are_what_serving_computes(candles, samples):
    """Train/serve parity: the window ending at a decision bar, fed through the serving
    path (`last_window`), gives the sample's features exactly."""
    for position in (0, len(samples) // 2, len(samples) - 1):
        bar = int(samples.bars[position])
        ohlc, times = last_window(candles.slice(0, bar + 1), SPEC)
        np.testing.assert_array_equal(
            window_features(ohlc, times, SPEC)[0], samples.features[position]
        )


def test_sample_labels_are_the_direction_over_the_horizon(candles, samples):
    labels = direction_labels(candles.high, candles.low, candles.close, 4, 0.5)
    np.testing.assert_array_equal(samples.labels, labels[samples.bars])
    position = len(samples) // 3
    bar = int(samples.bars[position])
    move = candles.close[bar + 4] - candles.close[bar]
    expected = BUY if move > 0 else SELL
    if samples.labels[position] != HOLD:
        assert samples.labels[position] == expected


def test_too_few_candles_is_a_clear_error(candles):
    with pytest.raises(data.DataError, match="too few"):
        data.build_samples(candles.tail(SPEC.history), SPEC, 4, 0.5)
    short = data.build_samples(candles.tail(600), SPEC, 4, 0.5)
    with pytest.raises(data.DataError, match="purge gap"):
        data.prepare(short)


def test_load_candles_refuses_unknown_data():
    with pytest.raises(data.DataError, match="no bundled history"):
        data.load_candles("GBP/USD", "1h")
    with pytest.raises(data.DataError, match="not a currency pair"):
        data.load_candles("nonsense", "1h")
    candles, source = data.load_candles("eurusd", "1h", max_bars=1200)
    assert len(candles) == 1200 and "backtesting" in source


# --- the split ------------------------------------------------------------------------


def test_split_is_chronological_with_a_purge_gap(samples, prepared):
    split = prepared.split
    train, validation, test = split.train, split.validation, split.test
    gap = SPEC.history + 4
    assert samples.purge_gap == gap
    # in time order, contiguous inside each part
    for part in (train, validation, test):
        assert np.all(np.diff(part) == 1)
    assert train[-1] < validation[0] < validation[-1] < test[0]
    # decision bars far enough apart ...
    assert samples.bars[validation[0]] - samples.bars[train[-1]] == gap
    assert samples.bars[test[0]] - samples.bars[validation[-1]] == gap
    # ... that no candle (window, warm-up or label future) is shared across a boundary
    spans = [samples.span(part) for part in (train, validation, test)]
    assert spans[0][1] < spans[1][0] and spans[1][1] < spans[2][0]
    # the rest is shared 70/15/15, every usable sample used
    usable = len(samples) - 2 * (gap - 1)
    assert len(train) + len(validation) + len(test) == usable
    assert abs(len(train) / usable - 0.70) < 0.01
    assert abs(len(validation) / usable - 0.15) < 0.01


def test_split_arithmetic_on_plain_bars():
    split = data.chronological_split(np.arange(100, 200), gap=5, fractions=(0.5, 0.25, 0.25))
    assert (len(split.train), len(split.validation), len(split.test)) == (46, 23, 23)
    assert split.validation[0] - split.train[-1] == 5
    assert split.test[0] - split.validation[-1] == 5
    assert split.test[-1] == 99
    with pytest.raises(data.DataError, match="consecutive"):
        data.chronological_split(np.array([1, 2, 4]), gap=1)
    with pytest.raises(data.DataError, match="fractions"):
        data.chronological_split(np.arange(10), gap=1, fractions=(0.5, 0.5, 0.5))


def test_scaler_is_fitted_on_the_training_split_only(samples, prepared):
    train_only = Scaler.fit(samples.features[prepared.split.train])
    np.testing.assert_array_equal(prepared.scaler.mean, train_only.mean)
    np.testing.assert_array_equal(prepared.scaler.std, train_only.std)
    everything = Scaler.fit(samples.features)
    assert not np.allclose(prepared.scaler.mean, everything.mean)
    scaled = prepared.inputs["train"].reshape(-1, 14)
    assert scaled.dtype == np.float32
    np.testing.assert_allclose(scaled.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_array_equal(
        prepared.inputs["test"], prepared.scaler.transform(samples.features[prepared.split.test])
    )


def test_split_summary_names_dates_and_shares(samples, prepared):
    summary = data.split_summary(samples, prepared.split)
    assert list(summary) == ["train", "validation", "test"]
    assert summary["train"]["last_candle"] < summary["validation"]["first_candle"]
    assert summary["validation"]["last_candle"] < summary["test"]["first_candle"]
    for part in summary.values():
        assert sum(part["class_shares"].values()) == pytest.approx(1.0)
        assert part["first_decision"].endswith("Z")


# --- baselines ------------------------------------------------------------------------


def test_persistence_is_the_label_of_the_move_just_completed(samples):
    signal = data.persistence_signal(samples)
    np.testing.assert_array_equal(signal, samples.all_labels[samples.bars - 4])
    # known at decision time: the previous move ends exactly at the decision bar
    position = 10
    bar = int(samples.bars[position])
    move = samples.candles.close[bar] - samples.candles.close[bar - 4]
    if signal[position] == BUY:
        assert move > 0
    if signal[position] == SELL:
        assert move < 0


def test_technical_rule_definition():
    # a steady rise: MACD histogram > 0 but RSI 100 (overbought) → hold;
    # real data exercises the buy/sell branches below
    rising = np.linspace(1.0, 1.5, 120)
    assert data.technical_rule(rising)[-1] == HOLD
    close = load_bundled_history().close
    rule = data.technical_rule(close)
    from common import indicators

    histogram = indicators.macd(close)[2]
    rsi = indicators.rsi(close, 14)
    buy, sell = rule == BUY, rule == SELL
    assert buy.any() and sell.any() and (rule == HOLD).any()
    assert np.all(histogram[buy] > 0) and np.all((rsi[buy] > 50) & (rsi[buy] < 70))
    assert np.all(histogram[sell] < 0) and np.all((rsi[sell] > 30) & (rsi[sell] < 50))
    assert np.all(rule[:33] == HOLD)  # indicators undefined


def test_majority_baseline_uses_training_frequencies():
    train = np.array([HOLD, HOLD, BUY, SELL, HOLD, BUY])
    predicted, probabilities = evaluation.majority_baseline(train, 3)
    np.testing.assert_array_equal(predicted, [HOLD] * 3)
    np.testing.assert_allclose(probabilities, [[1 / 6, 3 / 6, 2 / 6]] * 3)


def test_signal_probabilities_are_train_conditional_frequencies():
    train_signal = np.array([BUY, BUY, BUY, SELL, HOLD])
    train_labels = np.array([BUY, BUY, SELL, SELL, HOLD])
    probabilities = evaluation.signal_probabilities(
        train_signal, train_labels, np.array([BUY, SELL, HOLD])
    )
    # add-one smoothed counts: after BUY signals (sell 1, hold 0, buy 2) → (2, 1, 3)/6
    np.testing.assert_allclose(probabilities[0], [2 / 6, 1 / 6, 3 / 6])
    np.testing.assert_allclose(probabilities[1], [2 / 4, 1 / 4, 1 / 4])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)


# --- metrics on hand-made cases --------------------------------------------------------


def test_accuracy_and_balanced_accuracy():
    labels = np.array([0, 0, 0, 0, 1, 2])
    predicted = np.array([0, 0, 0, 0, 0, 2])
    assert evaluation.accuracy(predicted, labels) == pytest.approx(5 / 6)
    assert evaluation.balanced_accuracy(predicted, labels) == pytest.approx((1 + 0 + 1) / 3)


def test_log_loss_and_brier():
    uniform = np.full((4, 3), 1 / 3)
    labels = np.array([0, 1, 2, 1])
    assert evaluation.log_loss(uniform, labels) == pytest.approx(np.log(3))
    assert evaluation.brier_score(uniform, labels) == pytest.approx(2 / 3)
    perfect = np.eye(3)[labels]
    assert evaluation.log_loss(perfect, labels) == pytest.approx(0.0, abs=1e-12)
    assert evaluation.brier_score(perfect, labels) == 0.0
    confident_wrong = np.eye(3)[[1, 2, 0, 0]]
    assert evaluation.brier_score(confident_wrong, labels) == pytest.approx(2.0)
    assert evaluation.log_loss(confident_wrong, labels) == pytest.approx(-np.log(1e-15))
    mixed = np.array([[0.5, 0.25, 0.25]])
    assert evaluation.log_loss(mixed, np.array([1])) == pytest.approx(np.log(4))
    assert evaluation.brier_score(mixed, np.array([1])) == pytest.approx(0.25 + 0.5625 + 0.0625)


def test_expected_calibration_error():
    # 10 samples at confidence 0.8: 8 right → calibrated; 5 right → ECE 0.3
    probabilities = np.tile([0.8, 0.1, 0.1], (10, 1))
    eight_right = np.array([0] * 8 + [1] * 2)
    assert evaluation.expected_calibration_error(probabilities, eight_right) == pytest.approx(0)
    five_right = np.array([0] * 5 + [2] * 5)
    assert evaluation.expected_calibration_error(probabilities, five_right) == pytest.approx(0.3)
    # two bins: 0.5-confident pair (1 right) and 0.9-confident pair (both right):
    # |0.5 - 0.5| * 2/4 + |1.0 - 0.9| * 2/4 = 0.05
    probabilities = np.array(
        [[0.5, 0.3, 0.2], [0.5, 0.3, 0.2], [0.05, 0.9, 0.05], [0.05, 0.9, 0.05]]
    )
    labels = np.array([0, 1, 1, 1])
    assert evaluation.expected_calibration_error(probabilities, labels) == pytest.approx(0.05)
    bins = evaluation.reliability_bins(probabilities, labels)
    assert bins.counts.sum() == 4 and len(bins.counts) == 15
    # a confidence of exactly 1.0 lands in the last bin, not past it
    assert evaluation.reliability_bins(np.eye(3), np.arange(3)).counts[-1] == 3


def test_signal_accuracy_counts_confident_buys_and_sells_only():
    probabilities = np.array(
        [
            [0.7, 0.2, 0.1],  # sell 0.7, right
            [0.1, 0.2, 0.7],  # buy 0.7, wrong
            [0.1, 0.8, 0.1],  # hold: never a signal
            [0.1, 0.35, 0.55],  # buy below the threshold
        ]
    )
    labels = np.array([SELL, HOLD, HOLD, BUY])
    predicted, confidence = probabilities.argmax(1), probabilities.max(1)
    result = evaluation.signal_accuracy(predicted, labels, confidence, 0.6)
    assert result == {"threshold": 0.6, "count": 2, "buy": 1, "sell": 1, "accuracy": 0.5}
    every = evaluation.signal_accuracy(predicted, labels, None, 0.6)
    assert every["count"] == 3 and every["accuracy"] == pytest.approx(2 / 3)
    none = evaluation.signal_accuracy(predicted, labels, confidence, 0.95)
    assert none["count"] == 0 and none["accuracy"] is None


def test_temperature_scaling_recovers_a_known_temperature():
    rng = np.random.default_rng(7)
    logits = rng.normal(0.0, 3.0, size=(20_000, 3))
    true_temperature = 2.5
    probabilities = evaluation.softmax(logits, true_temperature)
    cumulative = probabilities.cumsum(axis=1)
    labels = (rng.random((len(logits), 1)) > cumulative).sum(axis=1)
    fitted = evaluation.fit_temperature(logits, labels)
    assert fitted == pytest.approx(true_temperature, rel=0.05)
    # and it is the minimum: nearby temperatures do worse
    best = evaluation.log_loss(evaluation.softmax(logits, fitted), labels)
    for other in (fitted * 0.9, fitted * 1.1):
        assert evaluation.log_loss(evaluation.softmax(logits, other), labels) > best


def test_softmax_with_temperature():
    logits = np.array([[1.0, 2.0, 3.0]])
    np.testing.assert_allclose(evaluation.softmax(logits).sum(), 1.0)
    np.testing.assert_allclose(evaluation.softmax(logits, 1e6), [[1 / 3] * 3], atol=1e-6)
    np.testing.assert_allclose(evaluation.softmax(logits * 2, 2.0), evaluation.softmax(logits))


def test_compare_reports_better_worse_and_unclear():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, 600)
    good = np.where(rng.random(600) < 0.8, labels, (labels + 1) % 3)
    good_p = np.full((600, 3), 0.1)
    good_p[np.arange(600), good] = 0.8
    uniform = np.full((600, 3), 1 / 3)
    chance = rng.integers(0, 3, 600)
    better = evaluation.compare(labels, good, good_p, chance, uniform, block=24)
    assert better["accuracy"] == "better" and better["log_loss"] == "better" and better["beats"]
    worse = evaluation.compare(labels, chance, uniform, good, good_p, block=24)
    assert worse["accuracy"] == "worse" and not worse["beats"]
    same = evaluation.compare(labels, chance, uniform, chance, uniform, block=24)
    assert same["accuracy"] == "no clear difference" and not same["beats"]
    low, high = better["accuracy_gain"]["ci95"]
    assert low < better["accuracy_gain"]["mean"] < high


# --- the model card -------------------------------------------------------------------


def _fake_metadata(prepared, samples, beats: bool) -> ModelMetadata:
    """Metadata as the pipeline writes it, with metrics from made-up probabilities (the
    card's wording is under test, not a model)."""
    from inference.training.pipeline import evaluate_all

    rng = np.random.default_rng(0)
    test_logits = rng.normal(size=(len(prepared.labels["test"]), 3))
    metrics, _curves = evaluate_all(prepared, test_logits, 1.3, 0.6, 24, 0)
    metrics["calibration"] = {
        "method": "temperature_scaling",
        "temperature": 1.3,
        "validation_log_loss_before": 1.1,
        "validation_log_loss_after": 1.09,
    }
    if beats:
        for comparison in metrics["comparisons"].values():
            comparison.update(accuracy="better", log_loss="better", beats=True)
    summary = data.split_summary(samples, prepared.split)
    return ModelMetadata(
        model_name="lstm",
        version=7,
        created_at="2026-01-01T00:00:00Z",
        feature_names=["a", "b"],
        lookback=60,
        warmup=200,
        scaler=prepared.scaler.to_dict(),
        horizon=4,
        hold_band_atr=0.5,
        classes=["sell", "hold", "buy"],
        temperature=1.3,
        pairs=["EUR/USD"],
        timeframes=["1h"],
        data={
            "source": "bundled",
            "pair": "EUR/USD",
            "timeframe": "1h",
            "bars": 1500,
            "start": "2017-11-01T00:00:00Z",
            "end": "2018-02-07T15:00:00Z",
            "fractions": {"train": 0.7, "validation": 0.15, "test": 0.15},
            "purge_gap_bars": 264,
            "splits": summary,
        },
        training={
            "units": 32,
            "dropout": 0.2,
            "parameters_count": 9203,
            "learning_rate": 0.001,
            "batch_size": 64,
            "epochs": 40,
            "patience": 6,
            "epochs_run": 9,
            "best_epoch": 3,
            "best_val_loss": 1.08,
            "class_weight_reason": "none",
            "seed": 42,
            "seconds": 40.0,
            "fit_seconds": 20.0,
            "versions": {"tensorflow": "2.21.0", "keras": "3", "tf2onnx": "1.17.0"},
            "onnx_opset": 17,
            "onnx_max_abs_diff": 1e-7,
        },
        metrics=metrics,
    )


def test_model_card_states_plainly_when_there_is_no_edge(prepared, samples):
    card = report.render_card(_fake_metadata(prepared, samples, beats=False))
    assert "**No demonstrated edge.**" in card
    assert card.count("| **no**") == 3 and "**yes**" not in card
    for title in report.BASELINE_TITLES.values():
        assert title in card
    assert "| **LSTM (calibrated)** |" in card
    assert "purge gap of 264 bars" in card
    assert "beats all three baselines" not in card


def test_model_card_claims_an_edge_only_when_every_comparison_shows_one(prepared, samples):
    card = report.render_card(_fake_metadata(prepared, samples, beats=True))
    assert "beats all three baselines" in card
    assert "No demonstrated edge" not in card
    assert card.count("| **yes** |") == 3


def test_metrics_json_has_the_model_and_three_baselines(prepared, samples, tmp_path):
    metadata = _fake_metadata(prepared, samples, beats=False)
    report.write_metrics(tmp_path, metadata.metrics)
    import json

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["baselines"]) == {"majority_class", "persistence", "technical_rules"}
    for entry in [metrics["model"], *metrics["baselines"].values()]:
        assert set(entry) >= {
            "accuracy",
            "balanced_accuracy",
            "log_loss",
            "brier_score",
            "expected_calibration_error",
        }
    assert metrics["thresholded"]["threshold"] == 0.6
    assert metrics["test_samples"] == len(prepared.labels["test"])


def test_unlabelled_bars_never_become_samples(candles):
    samples = data.build_samples(candles, SPEC, horizon=12, hold_band_atr=1.0)
    assert UNLABELLED not in samples.labels
    assert samples.bars[-1] == len(candles) - 1 - 12

"""`make train ARGS="--dataset ecb-daily"` end to end, tiny: the walk-forward pipeline in
the training environment on the real ECB fixings, one held-out year, one epoch, the
pooled-vs-per-pair measurement on one pair; then, from the runtime environment, what the
inference service and the backtest need from the version it wrote."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from common.market_data.ecb import load_ecb_history
from common.settings import Settings
from inference.features import DAILY_CLOSES, DAILY_FEATURE_NAMES, model_input
from inference.model_format import CARD_FILE, METRICS_FILE, ONNX_FILE, ModelMetadata
from tests.train.training_run import train_tiny

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Settings, str]:
    arguments = ["--dataset", "ecb-daily", "--epochs", "1", "--units", "8"]
    arguments += ["--test-years", "2026", "--compare-pairs", "EUR/USD"]
    return train_tiny(tmp_path_factory.mktemp("train-daily"), arguments)


def test_writes_a_daily_version_the_inference_service_can_serve(trained):
    base, _settings, _output = trained
    version_dir = base / "1"
    metadata = ModelMetadata.read(version_dir)
    assert (metadata.model_name, metadata.timeframes) == ("lstm_daily", ["1d"])
    assert metadata.feature_set == DAILY_CLOSES
    assert metadata.feature_names == list(DAILY_FEATURE_NAMES)
    assert {"EUR/USD", "GBP/USD", "USD/JPY", "GBP/JPY"} <= set(metadata.pairs)
    assert metadata.training["onnx_max_abs_diff"] <= 1e-5
    assert metadata.test_start.startswith("2026-01-")
    # The served input of a real fixing series, through the exported model.
    candles = load_ecb_history(["GBP/JPY"])["GBP/JPY"].tail(metadata.window.history)
    inputs = model_input(candles, metadata.window, metadata.fitted_scaler())
    session = onnxruntime.InferenceSession(str(version_dir / ONNX_FILE))
    (probabilities,) = session.run(None, {metadata.input_name: inputs})
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_the_card_and_metrics_hold_the_walk_forward_and_the_comparison(trained):
    base, _settings, _output = trained
    metrics = json.loads((base / "1" / METRICS_FILE).read_text())
    assert list(metrics["walk_forward"]) and metrics["pooled_vs_per_pair"]
    assert (base / "1" / "heldout_predictions.csv").is_file()
    card = (base / "1" / CARD_FILE).read_text()
    assert "Walk-forward" in card and "Pooled or per-pair?" in card and "Per pair" in card

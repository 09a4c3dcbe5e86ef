"""`make train` end to end, tiny: the real pipeline in the training environment
(.train-venv, TensorFlow) on the last 1,200 real EUR/USD hours for one epoch, then, from
the runtime environment (no TensorFlow), everything a server needs from the version it
wrote.

Needs `.train-venv` (`make train-setup`): skipped without it on a laptop, a failure
under CI, which builds it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from common.market import Timeframe
from common.market_data import load_bundled_history
from common.settings import REPO_ROOT, Settings
from inference.features import sliding_windows, window_features
from inference.model_format import (
    CARD_FILE,
    INPUT_NAME,
    METRICS_FILE,
    ONNX_FILE,
    OUTPUT_NAME,
    RELIABILITY_FILE,
    ModelMetadata,
    complete_versions,
)
from inference.training import runs
from tests.train.training_run import train_tiny


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Settings, str]:
    return train_tiny(
        tmp_path_factory.mktemp("train"),
        ["--max-bars", "1200", "--epochs", "1", "--units", "8"],
    )


pytestmark = pytest.mark.timeout(600)


def test_writes_a_complete_version(trained):
    base, _settings, output = trained
    assert complete_versions(base) == [1]
    assert [p.name for p in base.iterdir()] == ["1"]  # no staging folder left behind
    version_dir = base / "1"
    assert str(version_dir) in output
    for name in ("saved_model.pb", "variables", ONNX_FILE, CARD_FILE, RELIABILITY_FILE):
        assert (version_dir / name).exists(), name
    assert (version_dir / RELIABILITY_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metadata = ModelMetadata.read(version_dir)
    assert metadata.version == 1 and metadata.model_name == "lstm"
    assert metadata.classes == ["sell", "hold", "buy"]
    assert (metadata.lookback, metadata.warmup, metadata.horizon) == (60, 200, 4)
    assert metadata.temperature > 0
    assert metadata.pairs == ["EUR/USD"] and metadata.timeframes == ["1h"]
    assert metadata.data["bars"] == 1200
    assert metadata.training["onnx_max_abs_diff"] <= 1e-5
    card = (version_dir / CARD_FILE).read_text()
    assert "Model card" in card and "Does it beat the baselines?" in card


def test_metrics_cover_the_model_and_three_baselines(trained):
    base, _settings, _output = trained
    metrics = json.loads((base / "1" / METRICS_FILE).read_text())
    assert set(metrics["baselines"]) == {"majority_class", "persistence", "technical_rules"}
    for entry in [metrics["model"], *metrics["baselines"].values()]:
        for key in ("accuracy", "balanced_accuracy", "log_loss", "brier_score"):
            assert np.isfinite(entry[key])
        assert 0 <= entry["expected_calibration_error"] <= 1
    assert metrics["thresholded"]["threshold"] == 0.6
    assert metrics["thresholded"]["count"] >= 0
    assert ModelMetadata.read(base / "1").metrics == metrics


def test_onnx_model_serves_real_features(trained):
    """What the model server does: onnxruntime on model.onnx, fed the shared feature
    module's tensor for real candles, scaled with the saved scaler."""
    base, _settings, _output = trained
    metadata = ModelMetadata.read(base / "1")
    candles = load_bundled_history("EUR/USD", Timeframe.H1).tail(metadata.window.history + 4)
    ohlc, times = sliding_windows(candles, metadata.window)
    inputs = metadata.fitted_scaler().transform(window_features(ohlc, times, metadata.window))
    session = onnxruntime.InferenceSession(
        str(base / "1" / ONNX_FILE), providers=["CPUExecutionProvider"]
    )
    assert [i.name for i in session.get_inputs()] == [INPUT_NAME]
    assert [o.name for o in session.get_outputs()] == [OUTPUT_NAME]
    (probabilities,) = session.run([OUTPUT_NAME], {INPUT_NAME: inputs})
    assert probabilities.shape == (5, 3)
    assert np.all(probabilities >= 0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_run_is_recorded_as_succeeded(trained):
    _base, settings, _output = trained
    recorded = runs.list_runs(settings)
    assert len(recorded) == 1
    run = recorded[0]
    assert run.status == runs.SUCCEEDED and run.error is None
    assert run.model_name == "lstm" and run.version == 1
    assert run.finished_at is not None and run.finished_at >= run.started_at
    assert run.parameters["epochs"] == 1 and run.parameters["max_bars"] == 1200
    assert "backtesting" in run.data_source
    assert run.data_start < run.data_end
    assert set(run.metrics["baselines"]) == {"majority_class", "persistence", "technical_rules"}


def test_a_failed_run_is_recorded_and_leaves_no_version(tmp_path):
    """Too little data for the purge-gapped split: the run fails before TensorFlow is
    needed (so this runs in the runtime environment), says why, and is recorded."""
    settings = Settings.load(
        var_dir=tmp_path / "var", database_url=f"sqlite+aiosqlite:///{tmp_path}/aifx.db"
    )
    env = {
        **os.environ,
        "AIFX_VAR_DIR": str(settings.general.var_dir),
        "AIFX_DATABASE_URL": settings.storage.database_url,
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "inference.training",
            "--max-bars",
            "600",
            "--model-base-path",
            str(tmp_path / "models"),
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "purge gap" in result.stderr
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())
    (run,) = runs.list_runs(settings)
    assert run.status == runs.FAILED and run.finished_at is not None
    assert "DataError" in run.error and "purge gap" in run.error

"""`python -m backtest MODEL_DIR` as `make train` runs it after a daily training: on a
small copy of the committed daily version (two pairs, its 2026 held-out year), and its
refusals."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import structlog

from backtest.__main__ import HELDOUT_FILE, main
from common.settings import REPO_ROOT
from inference.model_format import CARD_FILE, METADATA_FILE, METRICS_FILE

DAILY = REPO_ROOT / "models" / "lstm_daily" / "1"
PAIRS = ["EUR/USD", "USD/JPY"]


@pytest.fixture(autouse=True)
def logging_restored():
    """main() quiets structlog process-wide, as a command should; the tests after these
    run in the same process and log at their own levels."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def small_version(tmp_path: Path) -> Path:
    """models/lstm_daily/1's metadata, metrics and card, with the held-out predictions
    of two pairs in 2026 only."""
    version = tmp_path / "lstm_daily" / "1"
    version.mkdir(parents=True)
    for name in (METRICS_FILE, CARD_FILE):
        shutil.copy(DAILY / name, version / name)
    metadata = json.loads((DAILY / METADATA_FILE).read_text())
    (version / METADATA_FILE).write_text(json.dumps({**metadata, "pairs": PAIRS}))
    with (DAILY / HELDOUT_FILE).open() as source, (version / HELDOUT_FILE).open("w") as target:
        rows = csv.DictReader(source)
        writer = csv.DictWriter(target, fieldnames=rows.fieldnames or [])
        writer.writeheader()
        writer.writerows(r for r in rows if r["pair"] in PAIRS and r["test_year"] == "2026")
    return version


def test_the_backtest_writes_its_tables_once_into_metrics_and_card(small_version, capsys):
    assert main([str(small_version.parent)]) == 0  # a base folder: its latest version
    metrics = json.loads((small_version / METRICS_FILE).read_text())
    backtest = metrics["backtest"]
    printed = capsys.readouterr().out
    assert "2026" in printed and "Buy and hold" in printed
    assert main([str(small_version), "--threshold", "0"]) == 0  # again: replaced, not added
    card = (small_version / CARD_FILE).read_text()
    assert card.count("## Backtest of the engine's trading rule") == 1
    again = json.loads((small_version / METRICS_FILE).read_text())["backtest"]
    assert again != backtest  # threshold 0 trades the model's calls


def test_a_version_without_held_out_predictions_is_refused_clearly():
    with pytest.raises(SystemExit) as refused:
        main([str(REPO_ROOT / "models" / "lstm" / "1")])
    assert f"has no {HELDOUT_FILE}" in str(refused.value)


def test_a_folder_without_versions_and_a_bad_threshold_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as refused:
        main([str(tmp_path)])
    assert "neither a model version nor a folder of versions" in str(refused.value)
    with pytest.raises(SystemExit):
        main([str(DAILY), "--threshold", "1.5"])
    assert "--threshold is a confidence from 0 to 1" in capsys.readouterr().err

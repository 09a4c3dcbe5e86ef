"""The on-disk layout of a model version, shared by training, the model server and the
inference service.

    models/<model_name>/<version>/   TF Serving layout: one folder per version
        saved_model.pb, variables/   the Keras SavedModel (tensorflow_model_server loads it)
        model.onnx                   the same model for onnxruntime (our model server)
        aifx_metadata.json           what is needed to build inputs and read outputs
        metrics.json, MODEL_CARD.md, reliability.png

A version folder is complete only when `aifx_metadata.json` exists: training writes it
last (atomically), so a server polling the base path never loads a half-written version.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from inference.features import HOURLY_OHLC, Scaler, WindowSpec

METADATA_FILE = "aifx_metadata.json"
ONNX_FILE = "model.onnx"
METRICS_FILE = "metrics.json"
CARD_FILE = "MODEL_CARD.md"
RELIABILITY_FILE = "reliability.png"
INPUT_NAME = "candles"
OUTPUT_NAME = "output_0"
SIGNATURE = "serving_default"


@dataclass
class ModelMetadata:
    """What serving needs to know about a trained version, and what it was trained on.

    `metrics` is metrics.json's content: per-model evaluation on the held-out test
    split ({"model": {...}, "baselines": {name: {...}}, "thresholded": {...}}).
    """

    model_name: str
    version: int
    created_at: str  # ISO 8601, UTC
    feature_names: list[str]
    lookback: int
    warmup: int
    scaler: dict[str, list[float]]
    horizon: int
    hold_band_atr: float
    classes: list[str]
    temperature: float
    pairs: list[str]
    timeframes: list[str]
    data: dict[str, Any]
    training: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    input_name: str = INPUT_NAME
    output_name: str = OUTPUT_NAME
    # Which of inference.features' feature sets the model reads (absent in version 1 of
    # the hourly model, which predates the daily one).
    feature_set: str = HOURLY_OHLC

    @property
    def window(self) -> WindowSpec:
        return WindowSpec(self.lookback, self.warmup, self.feature_set)

    @property
    def test_start(self) -> str:
        """When the held-out data that `metrics` scores begins (ISO 8601): the test
        split's first decision, or for a walk-forward version (the daily model) the first
        held-out year's, since its metrics pool every held-out year."""
        folds = self.data.get("folds")
        if folds:
            return str(folds[min(folds)]["test"]["first_decision"])
        return str(self.data["test_start"])

    def fitted_scaler(self) -> Scaler:
        return Scaler.from_dict(self.scaler)

    def write(self, version_dir: Path) -> None:
        """Write atomically: this file marks the version as complete."""
        tmp = version_dir / (METADATA_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True))
        os.replace(tmp, version_dir / METADATA_FILE)

    @classmethod
    def read(cls, version_dir: Path) -> ModelMetadata:
        return cls(**json.loads((version_dir / METADATA_FILE).read_text()))


def read_documents(version_dir: Path) -> tuple[str, bytes]:
    """The model card (Markdown) and reliability plot (PNG) training wrote beside a
    version; empty for one that has none (an older or hand-made version)."""
    card, plot = version_dir / CARD_FILE, version_dir / RELIABILITY_FILE
    return (
        card.read_text(encoding="utf-8") if card.is_file() else "",
        plot.read_bytes() if plot.is_file() else b"",
    )


def complete_versions(base_path: Path) -> list[int]:
    """Version numbers under `base_path` whose folders are complete, ascending."""
    if not base_path.is_dir():
        return []
    return sorted(
        int(entry.name)
        for entry in base_path.iterdir()
        if entry.name.isdigit() and (entry / METADATA_FILE).is_file()
    )


def next_version(base_path: Path) -> int:
    """The version number a new training run writes (any existing folder counts)."""
    existing = (
        [int(e.name) for e in base_path.iterdir() if e.name.isdigit()]
        if (base_path.is_dir())
        else []
    )
    return max(existing, default=0) + 1

"""Small ONNX models in the served layout, built with onnx.helper, so model server tests
and the benchmark never depend on a trained model.

The graph has the shape of the real export (tf2onnx's native LSTM op): candles
[N, lookback, features] -> LSTM -> last hidden state -> dense -> softmax -> output_0
[N, 3]. Weights are seeded by the version number, so versions answer differently.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from inference.features import FEATURE_NAMES
from inference.model_format import INPUT_NAME, ONNX_FILE, OUTPUT_NAME, ModelMetadata

LOOKBACK = 60
FEATURES = len(FEATURE_NAMES)
CLASSES = ["sell", "hold", "buy"]


def lstm_model(
    seed: int, *, lookback: int = LOOKBACK, features: int = FEATURES, hidden: int = 32
) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)

    def weights(name: str, *shape: int, scale: float) -> onnx.TensorProto:
        return numpy_helper.from_array(
            (rng.standard_normal(shape) * scale).astype(np.float32), name
        )

    initializers = [
        weights("W", 1, 4 * hidden, features, scale=0.5 / np.sqrt(features)),
        weights("R", 1, 4 * hidden, hidden, scale=0.5 / np.sqrt(hidden)),
        weights("B", 1, 8 * hidden, scale=0.1),
        weights("dense_w", hidden, len(CLASSES), scale=1.0 / np.sqrt(hidden)),
        weights("dense_b", len(CLASSES), scale=0.1),
        numpy_helper.from_array(np.array([0], np.int64), "squeeze_axes"),
    ]
    nodes = [
        helper.make_node("Transpose", [INPUT_NAME], ["time_major"], perm=[1, 0, 2]),
        helper.make_node("LSTM", ["time_major", "W", "R", "B"], ["", "last_h"], hidden_size=hidden),
        helper.make_node("Squeeze", ["last_h", "squeeze_axes"], ["hidden"]),
        helper.make_node("MatMul", ["hidden", "dense_w"], ["logits_raw"]),
        helper.make_node("Add", ["logits_raw", "dense_b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], [OUTPUT_NAME], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        f"aifx_test_lstm_{seed}",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", lookback, features])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", len(CLASSES)])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def metadata(
    version: int, *, model_name: str = "lstm", lookback: int = LOOKBACK, **overrides: Any
) -> ModelMetadata:
    """An hourly model's metadata; `overrides` replace fields (a daily model's
    feature_set, feature_names, pairs, timeframes, scaler)."""
    hourly = ModelMetadata(
        model_name=model_name,
        version=version,
        created_at=datetime.now(UTC).isoformat(),
        feature_names=list(FEATURE_NAMES),
        lookback=lookback,
        warmup=200,
        scaler={"mean": [0.0] * FEATURES, "std": [1.0] * FEATURES},
        horizon=4,
        hold_band_atr=0.25,
        classes=list(CLASSES),
        temperature=1.0,
        pairs=["EUR/USD"],
        timeframes=["1h"],
        data={"source": "test model built with onnx.helper"},
        training={"seed": version},
    )
    return dataclasses.replace(hourly, **overrides)


def write_version(
    base_path: Path,
    version: int,
    *,
    complete: bool = True,
    model_name: str = "lstm",
    described: dict[str, Any] | None = None,
    **kw: int,
) -> Path:
    """models/<name>/<version>/ with model.onnx, then (if `complete`) aifx_metadata.json
    last, as training writes it; `described` overrides metadata fields."""
    folder = base_path / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(lstm_model(version, **kw), str(folder / ONNX_FILE))
    if complete:
        lookback = kw.get("lookback", LOOKBACK)
        metadata(version, model_name=model_name, lookback=lookback, **(described or {})).write(
            folder
        )
    return folder

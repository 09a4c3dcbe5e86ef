"""The Keras LSTM: build, train, bake in the calibration, export, convert, check.

The only module of AIFX that imports TensorFlow; it runs in the training environment
(`make train-setup`), never in the runtime `.venv`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # no C++ info/warning chatter
# oneDNN's CPU kernels may reorder floating-point sums between runs; without them the
# same seed gives the same weights (and TensorFlow prints no notice about it).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import keras
import numpy as np
import tensorflow as tf

from inference.labels import CLASSES
from inference.model_format import INPUT_NAME, OUTPUT_NAME, SIGNATURE

ONNX_OPSET = 17
PARITY_TOLERANCE = 1e-5


def versions() -> dict[str, str]:
    import tf2onnx

    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tf2onnx": tf2onnx.__version__,
    }


def make_deterministic(seed: int) -> None:
    """Same seed, same data → same weights: seeds Python, numpy and TensorFlow, and asks
    TensorFlow for deterministic kernels."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def build_model(lookback: int, n_features: int, units: int, dropout: float) -> keras.Model:
    """Two stacked LSTMs (units, units // 2) with dropout between, and a dense layer
    giving one logit per class. Plain LSTM layers (no recurrent dropout) keep the
    fused kernel, which tf2onnx turns into ONNX's native LSTM op."""
    inputs = keras.Input(shape=(lookback, n_features), name=INPUT_NAME)
    x = keras.layers.LSTM(units, return_sequences=True, name="lstm_1")(inputs)
    x = keras.layers.Dropout(dropout, name="dropout_1")(x)
    x = keras.layers.LSTM(max(1, units // 2), name="lstm_2")(x)
    x = keras.layers.Dropout(dropout, name="dropout_2")(x)
    logits = keras.layers.Dense(len(CLASSES), name="logits")(x)
    return keras.Model(inputs, logits, name="lstm_direction")


@dataclass
class TrainingHistory:
    epochs_run: int = 0
    best_epoch: int = 0
    best_val_loss: float = float("inf")
    stopped_early: bool = False
    seconds: float = 0.0
    epochs: list[dict[str, float]] = field(default_factory=list)


class _EarlyStopAndReport(keras.callbacks.Callback):
    """One line per epoch; stops after `patience` epochs without a lower validation loss
    and always restores the best epoch's weights at the end (Keras' EarlyStopping only
    restores them when it stopped early)."""

    def __init__(self, patience: int, total_epochs: int, history: TrainingHistory) -> None:
        super().__init__()
        self.patience = patience
        self.total = total_epochs
        self.history_ = history
        self.best_weights: list[np.ndarray] | None = None
        self.wait = 0
        self.started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        logs = logs or {}
        record = {
            "epoch": epoch + 1,
            "loss": float(logs["loss"]),
            "accuracy": float(logs.get("accuracy", float("nan"))),
            "val_loss": float(logs["val_loss"]),
            "val_accuracy": float(logs.get("val_accuracy", float("nan"))),
            "elapsed_seconds": time.monotonic() - self.started,
        }
        history = self.history_
        history.epochs.append(record)
        history.epochs_run = epoch + 1
        improved = record["val_loss"] < history.best_val_loss - 1e-6
        if improved:
            history.best_val_loss = record["val_loss"]
            history.best_epoch = epoch + 1
            self.best_weights = self.model.get_weights()
            self.wait = 0
        else:
            self.wait += 1
        print(
            f"  epoch {epoch + 1:>3}/{self.total}  loss {record['loss']:.4f}  "
            f"acc {record['accuracy']:.3f}  val_loss {record['val_loss']:.4f}  "
            f"val_acc {record['val_accuracy']:.3f}  {record['elapsed_seconds']:6.1f}s"
            + ("  *best" if improved else ""),
            flush=True,
        )
        if self.wait >= self.patience:
            history.stopped_early = True
            self.model.stop_training = True

    def on_train_end(self, logs: dict[str, float] | None = None) -> None:
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)
        self.history_.seconds = time.monotonic() - self.started


def train(
    model: keras.Model,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_validation: np.ndarray,
    y_validation: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    patience: int,
    learning_rate: float,
    class_weight: dict[int, float] | None,
    seed: int,
) -> TrainingHistory:
    """Fit on logits with cross-entropy; early stopping on the validation loss."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate, clipnorm=1.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    history = TrainingHistory()
    # tf.data pipelines of our own: a seeded reshuffle each epoch (deterministic), and no
    # parallel map stage (Keras' own adapter for arrays logs a spurious TF op warning).
    train_data = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train))
        .shuffle(len(x_train), seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
    )
    validation_data = tf.data.Dataset.from_tensor_slices((x_validation, y_validation)).batch(512)
    model.fit(
        train_data,
        validation_data=validation_data,
        epochs=epochs,
        shuffle=False,  # train_data reshuffles itself
        class_weight=class_weight,
        callbacks=[_EarlyStopAndReport(patience, epochs, history)],
        verbose=0,
    )
    return history


def logits(model: keras.Model, inputs: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """The model's outputs in inference mode (dropout off), float64."""
    chunks = [
        model(tf.constant(inputs[start : start + batch_size]), training=False).numpy()
        for start in range(0, len(inputs), batch_size)
    ]
    return np.concatenate(chunks).astype(np.float64)


def calibrated_model(model: keras.Model, temperature: float) -> keras.Model:
    """The served model: softmax(logits / temperature), so the probabilities that leave
    the model server are already calibrated."""
    inputs = keras.Input(shape=model.input_shape[1:], name=INPUT_NAME)
    scaled = keras.layers.Rescaling(1.0 / temperature, name="temperature")(model(inputs))
    probabilities = keras.layers.Softmax(name="probabilities")(scaled)
    return keras.Model(inputs, probabilities, name="lstm_direction_calibrated")


def export_saved_model(model: keras.Model, directory: Path) -> None:
    """TF Serving layout: saved_model.pb + variables/ in `directory`, signature
    `serving_default` taking `candles` and returning `output_0`."""
    model.export(str(directory), format="tf_saved_model", verbose=False)


def convert_to_onnx(saved_model_dir: Path, onnx_path: Path) -> None:
    """tf2onnx on the SavedModel (the same graph TF Serving would run)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tf2onnx.convert",
            "--saved-model",
            str(saved_model_dir),
            "--signature_def",
            SIGNATURE,
            "--opset",
            str(ONNX_OPSET),
            "--output",
            str(onnx_path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 or not onnx_path.is_file():
        raise RuntimeError(f"tf2onnx failed (exit {result.returncode}):\n{result.stderr[-3000:]}")


def onnx_saved_model_difference(
    saved_model_dir: Path, onnx_path: Path, inputs: np.ndarray
) -> float:
    """Largest absolute difference between the SavedModel's serving signature and the
    ONNX model (onnxruntime) on `inputs`."""
    import onnxruntime

    loaded = tf.saved_model.load(str(saved_model_dir))
    signature = loaded.signatures[SIGNATURE]
    expected = signature(**{INPUT_NAME: tf.constant(inputs)})[OUTPUT_NAME].numpy()
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()]
    if names != ([INPUT_NAME], [OUTPUT_NAME]):
        raise RuntimeError(f"ONNX model has inputs/outputs {names}, expected candles/output_0")
    actual = session.run([OUTPUT_NAME], {INPUT_NAME: inputs})[0]
    if actual.shape != expected.shape:
        raise RuntimeError(f"ONNX output shape {actual.shape}, SavedModel {expected.shape}")
    return float(np.max(np.abs(actual.astype(np.float64) - expected.astype(np.float64))))

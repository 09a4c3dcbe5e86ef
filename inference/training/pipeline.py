"""`python -m inference.training`: train, calibrate, evaluate and export one version.

Order of a run:
 1. migrate the inference service's tables and record the run as "running";
 2. load real candles, build samples, split chronologically with purge gaps, fit the
    scaler on train;
 3. train the LSTM (fixed seeds, early stopping on validation loss, best weights);
 4. fit temperature scaling on the validation split;
 5. evaluate the calibrated model and the three baselines on the test split;
 6. build the version in a temporary folder next to the target: SavedModel with the
    temperature baked in, model.onnx, a parity check (fails the run above 1e-5),
    metrics.json, reliability.png, MODEL_CARD.md, and aifx_metadata.json last; then
    rename it to models/<name>/<version>/ in one step;
 7. record the run as "succeeded" with its metrics (or "failed" with the error).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from common.settings import Settings, get_settings
from inference.features import FEATURE_NAMES, WindowSpec
from inference.labels import CLASSES, HOLD
from inference.model_format import ONNX_FILE, RELIABILITY_FILE, ModelMetadata, next_version
from inference.training import daily, report, runs
from inference.training import data as data_module
from inference.training import evaluation as ev

# Model defaults: the lowest validation loss among a handful of settings tried on the
# bundled EUR/USD hours (units 16/32/64, learning rate 1e-4 to 1e-3, dropout 0.2/0.4,
# batch 64/128); the test split played no part in the choice. The differences were small
# (validation log loss 1.072 to 1.080): no setting found much signal.
DEFAULTS = {
    "epochs": 40,
    "batch_size": 64,
    "patience": 6,
    "learning_rate": 3e-4,
    "units": 64,
    "dropout": 0.4,
    "seed": 42,
    "threshold": 0.6,
    "bootstrap_block": 24,
}
# Class weights only when the training split is clearly imbalanced: weighting shifts the
# model's priors away from the true class frequencies, which temperature scaling (one
# scalar) cannot undo, so with near-balanced classes it would cost calibration for nothing.
IMBALANCE_RATIO = 1.5
BOOTSTRAP_RESAMPLES = 2000
TRAINING_PARAMETERS = (
    "epochs", "batch_size", "patience", "learning_rate", "units", "dropout", "seed",
    "class_weights",
)  # fmt: skip


# `--dataset ecb-daily` (the pooled daily model, see inference.training.walkforward):
# not tuned, chosen so that every walk-forward fold trains within the runtime budget of
# `make train` on two cores (about 8 s an epoch on ~85,000 samples). A smaller network
# than the hourly one (the daily classes carry less signal per sample, and seven folds
# must fit), a larger batch, and a shorter patience.
DAILY_DEFAULTS = {
    "epochs": 15,
    "batch_size": 256,
    "patience": 3,
    "learning_rate": 1e-3,
    "units": 32,
    "dropout": 0.3,
    "seed": 42,
    # StrategySettings has no minimum confidence; 0.5 is its lowest strength threshold
    # ("moderate"), fixed before any held-out result was seen. Calibrated three-class
    # probabilities of daily moves rarely reach the hourly model's 0.6.
    "threshold": 0.5,
    "bootstrap_block": 10,  # trading days (x the number of pairs: samples); 2 horizons
    "lookback": daily.DAILY_LOOKBACK,
    "warmup": daily.DAILY_WARMUP,
    "horizon": daily.DAILY_HORIZON,
    "hold_band": daily.DAILY_HOLD_BAND,
    "model_name": "lstm_daily",
}
HOURLY_DEFAULTS = {
    **DEFAULTS,
    "lookback": WindowSpec().lookback,
    "warmup": WindowSpec().warmup,
    "horizon": data_module.DEFAULT_HORIZON,
    "hold_band": data_module.DEFAULT_HOLD_BAND,
}
BUNDLED_HOURLY, ECB_DAILY = "bundled-hourly", "ecb-daily"


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except those that depend on --dataset (None until resolved; their
    help says both)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def _both(key: str) -> str:
    return f"(default: {HOURLY_DEFAULTS[key]} hourly, {DAILY_DEFAULTS[key]} daily)"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    settings = get_settings()
    parser = argparse.ArgumentParser(
        prog="python -m inference.training",
        description=(
            "Train the LSTM on real candles, calibrate it, evaluate it against baselines "
            "on a held-out period and write the next model version (SavedModel in the TF "
            "Serving layout, model.onnx, metrics.json, MODEL_CARD.md, reliability.png). "
            "--dataset ecb-daily trains the pooled daily model `lstm_daily` on the ECB "
            "rates of every pair instead, with a walk-forward evaluation over held-out "
            "years (see inference/training/walkforward.py)."
        ),
        formatter_class=_HelpFormatter,
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset",
        choices=[BUNDLED_HOURLY, ECB_DAILY],
        default=BUNDLED_HOURLY,
        help="bundled-hourly: the bundled EUR/USD hours (model `lstm`); ecb-daily: the "
        "ECB's daily reference rates of all pairs, pooled (model `lstm_daily`)",
    )
    data.add_argument("--pair", default="EUR/USD", help="currency pair (bundled-hourly)")
    data.add_argument(
        "--timeframe",
        default="1h",
        choices=["15m", "1h", "4h", "1d"],
        help="bar length (bundled-hourly)",
    )
    data.add_argument(
        "--max-bars", type=int, default=None, help="use only the most recent N bars (smoke runs)"
    )
    data.add_argument(
        "--lookback", type=int, default=None, help=f"bars the model reads {_both('lookback')}"
    )
    data.add_argument(
        "--warmup",
        type=int,
        default=None,
        help=f"bars before the lookback that let the indicators settle {_both('warmup')}",
    )
    data.add_argument(
        "--horizon",
        type=int,
        default=None,
        help="bars ahead the label looks: 4 h on hourly bars (a few hours' trade), 5 days "
        f"on daily ones (a trading week) {_both('horizon')}",
    )
    data.add_argument(
        "--hold-band",
        type=float,
        default=None,
        help="hold band in multiples of ATR(14): smaller moves are 'hold' (0.5 gives "
        "near-balanced classes on EUR/USD 1h with horizon 4, and moves under half an ATR "
        "hardly pay for the spread; on the daily fixings, 1.0 with horizon 5 gives about "
        f"36 / 28 / 37 %% sell / hold / buy before 2019) {_both('hold_band')}",
    )
    data.add_argument(
        "--test-years",
        type=int,
        nargs="+",
        default=list(daily.DAILY_TEST_YEARS),
        help="ecb-daily: the held-out years of the walk-forward evaluation, one fold each; "
        "the version exported is the last fold's model",
    )
    data.add_argument(
        "--compare-pairs",
        nargs="*",
        default=None,
        help="ecb-daily: pairs on which per-pair models are trained to compare with the "
        "pooled one (default: every pair; give none to skip)",
    )
    model = parser.add_argument_group("model and training")
    model.add_argument(
        "--units", type=int, default=None, help=f"first LSTM's units {_both('units')}"
    )
    model.add_argument(
        "--dropout", type=float, default=None, help=f"after each LSTM {_both('dropout')}"
    )
    model.add_argument("--epochs", type=int, default=None, help=f"at most {_both('epochs')}")
    model.add_argument(
        "--patience",
        type=int,
        default=None,
        help=f"epochs without a lower validation loss before stopping {_both('patience')}",
    )
    model.add_argument(
        "--batch-size", type=int, default=None, help=f"training batch {_both('batch_size')}"
    )
    model.add_argument(
        "--learning-rate", type=float, default=None, help=f"Adam's {_both('learning_rate')}"
    )
    model.add_argument(
        "--class-weights",
        choices=["auto", "on", "off"],
        default="auto",
        help=f"auto: balanced weights only if the largest training class is over "
        f"{IMBALANCE_RATIO}x the smallest",
    )
    model.add_argument(
        "--seed", type=int, default=None, help=f"seeds every random number {_both('seed')}"
    )
    evaluation = parser.add_argument_group("evaluation and output")
    evaluation.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="trading threshold: buy/sell signals need at least this calibrated confidence "
        f"{_both('threshold')}",
    )
    evaluation.add_argument(
        "--bootstrap-block",
        type=int,
        default=None,
        help="block length of the bootstrap behind the model-vs-baseline intervals: "
        f"samples (hourly) or trading days of every pair (daily) {_both('bootstrap_block')}",
    )
    evaluation.add_argument(
        "--model-name",
        default=None,
        help=f"model name in the metadata (default: {settings.model.model_name} hourly, "
        f"{DAILY_DEFAULTS['model_name']} daily)",
    )
    evaluation.add_argument(
        "--model-base-path",
        type=Path,
        default=None,
        help="folder of the model's versions (TF Serving's --model_base_path; default: "
        f"{settings.model.model_base_path} hourly, models/lstm_daily beside it daily)",
    )
    args = parser.parse_args(argv)
    daily_run = args.dataset == ECB_DAILY
    defaults: dict[str, Any] = dict(DAILY_DEFAULTS) if daily_run else dict(HOURLY_DEFAULTS)
    defaults.setdefault("model_name", settings.model.model_name)
    defaults["model_base_path"] = (
        settings.model.model_base_path.parent / str(DAILY_DEFAULTS["model_name"])
        if daily_run
        else settings.model.model_base_path
    )
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for name in ("epochs", "batch_size", "patience", "units", "lookback", "horizon"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 <= args.dropout < 1:
        parser.error("--dropout must be in [0, 1)")
    if not 0 < args.threshold <= 1:
        parser.error("--threshold must be in (0, 1]")
    if daily_run and args.max_bars is not None:
        parser.error("--max-bars is for the hourly data; use --test-years for a short daily run")
    return args


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def say(message: str) -> None:
    print(message, flush=True)


class Clock:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def __str__(self) -> str:
        return f"[{time.monotonic() - self.started:6.1f}s]"


def class_weights(labels: np.ndarray, mode: str) -> tuple[dict[int, float] | None, str]:
    counts = np.bincount(labels, minlength=len(CLASSES))
    ratio = counts.max() / max(counts.min(), 1)
    shares = ", ".join(f"{c} {n / counts.sum():.0%}" for c, n in zip(CLASSES, counts, strict=True))
    use = mode == "on" or (mode == "auto" and ratio > IMBALANCE_RATIO)
    if not use:
        why = (
            f"none (training classes {shares}: largest/smallest {ratio:.2f}, not above "
            f"{IMBALANCE_RATIO}; weighting would bias the probabilities for nothing)"
            if mode == "auto"
            else f"none (turned off; training classes {shares})"
        )
        return None, why
    weights = {k: float(counts.sum() / (len(CLASSES) * max(n, 1))) for k, n in enumerate(counts)}
    listed = ", ".join(f"{CLASSES[k]} {w:.2f}" for k, w in weights.items())
    return weights, f"balanced ({listed}; training classes {shares})"


def baseline_predictions(
    y_train: np.ndarray,
    persistence: tuple[np.ndarray, np.ndarray],
    rule: tuple[np.ndarray, np.ndarray],
    n_test: int,
    *,
    always_hold: bool = False,
) -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
    """Each baseline's hard signal and probabilities on the test samples, and how it
    predicts. `persistence` and `rule` are the raw signals (train, test); every
    probability is a lookup fitted on the training split only. `always_hold` adds the
    no-trade baseline (the daily model's trading comparison)."""
    majority_predicted, majority_probabilities = ev.majority_baseline(y_train, n_test)
    majority_class = CLASSES[int(majority_predicted[0])] if n_test else "?"
    baselines: dict[str, tuple[np.ndarray, np.ndarray, str]] = {}
    if always_hold:
        hold = np.full(n_test, HOLD, dtype=np.int64)
        baselines["always_hold"] = (
            hold,
            ev.signal_probabilities(np.full(len(y_train), HOLD), y_train, hold),
            "always 'hold' (never trades); probabilities are the training split's class "
            "frequencies.",
        )
    baselines["majority_class"] = (
        majority_predicted,
        majority_probabilities,
        f"always '{majority_class}', the most frequent class of the training split; "
        "probabilities are the training split's class frequencies.",
    )
    baselines["persistence"] = (
        persistence[1],
        ev.signal_probabilities(persistence[0], y_train, persistence[1]),
        "the label of the move that has just completed (close[t - horizon] → close[t], "
        "same hold band); probabilities are the training split's class frequencies after "
        "each such previous move.",
    )
    baselines["technical_rules"] = (
        rule[1],
        ev.signal_probabilities(rule[0], y_train, rule[1]),
        "buy when the MACD(12, 26, 9) histogram is above 0 and 50 < RSI(14) < 70, sell "
        "when it is below 0 and 30 < RSI(14) < 50, otherwise hold; probabilities are the "
        "training split's class frequencies for each rule signal.",
    )
    return baselines


def score_predictions(
    y_test: np.ndarray,
    probabilities: np.ndarray,
    uncalibrated: np.ndarray,
    baselines: dict[str, tuple[np.ndarray, np.ndarray, str]],
    threshold: float,
    block: int,
    seed: int,
) -> dict[str, Any]:
    """The model's and each baseline's scores on held-out samples, and the paired
    block-bootstrap comparison of the model with each baseline (metrics.json's shape)."""
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    metrics: dict[str, Any] = {
        "split": "test",
        "test_samples": len(y_test),
        "classes": list(CLASSES),
        "model": ev.score(probabilities, y_test),
        "model_uncalibrated": ev.score(uncalibrated, y_test),
        "thresholded": ev.signal_accuracy(predicted, y_test, confidence, threshold),
        "model_signals": ev.signal_accuracy(predicted, y_test, None, threshold),
        "confident": ev.confident_accuracy(probabilities, y_test, threshold),
        "baselines": {},
        "comparisons": {},
        "bootstrap": {"block": block, "resamples": BOOTSTRAP_RESAMPLES, "seed": seed},
    }
    for name, (hard, probs, description) in baselines.items():
        entry: dict[str, object] = {
            **ev.score(probs, y_test, predicted=hard),
            "signals": ev.signal_accuracy(hard, y_test, None, threshold),
            "description": description,
        }
        metrics["baselines"][name] = entry
        metrics["comparisons"][name] = ev.compare(
            y_test, predicted, probabilities, hard, probs, block, seed=seed
        )
    return metrics


def evaluate_all(
    prepared: data_module.PreparedData,
    test_logits: np.ndarray,
    temperature: float,
    threshold: float,
    block: int,
    seed: int,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """metrics.json's content, and the probability arrays behind the reliability plot."""
    samples, split = prepared.samples, prepared.split
    y_train, y_test = prepared.labels["train"], prepared.labels["test"]
    probabilities = ev.softmax(test_logits, temperature)
    uncalibrated = ev.softmax(test_logits)
    persistence = data_module.persistence_signal(samples)
    rule = data_module.technical_signal(samples)
    baselines = baseline_predictions(
        y_train,
        (persistence[split.train], persistence[split.test]),
        (rule[split.train], rule[split.test]),
        len(y_test),
    )
    metrics = score_predictions(
        y_test, probabilities, uncalibrated, baselines, threshold, block, seed
    )
    curves = {"LSTM, calibrated": probabilities, "LSTM, before calibration": uncalibrated}
    return metrics, curves


@dataclass
class Fitted:
    """A trained network, its training history and its temperature."""

    network: Any
    history: Any
    temperature: float
    calibration: dict[str, Any]
    validation_logits: np.ndarray


def fit_and_calibrate(
    tf_model: Any,
    lookback: int,
    n_features: int,
    data: dict[str, tuple[np.ndarray, np.ndarray]],
    args: argparse.Namespace,
    class_weight: dict[int, float] | None,
    clock: Clock,
) -> Fitted:
    """Train a fresh, seeded LSTM on data["train"] with early stopping on
    data["validation"] (inputs, labels), then fit its temperature on the validation
    split. The one training-and-calibration routine of every model AIFX trains."""
    (x_train, y_train), (x_validation, y_validation) = data["train"], data["validation"]
    tf_model.make_deterministic(args.seed)
    network = tf_model.build_model(lookback, n_features, args.units, args.dropout)
    say(
        f"{clock} training: {network.count_params():,} parameters, up to {args.epochs} "
        f"epochs, batch {args.batch_size}, early stopping patience {args.patience}"
    )
    history = tf_model.train(
        network,
        x_train,
        y_train,
        x_validation,
        y_validation,
        epochs=args.epochs,
        batch_size=args.batch_size,
        patience=args.patience,
        learning_rate=args.learning_rate,
        class_weight=class_weight,
        seed=args.seed,
    )
    say(
        f"{clock} kept epoch {history.best_epoch} of {history.epochs_run} "
        f"(validation loss {history.best_val_loss:.4f})"
    )
    validation_logits = tf_model.logits(network, x_validation)
    temperature = ev.fit_temperature(validation_logits, y_validation)
    calibration = {
        "method": "temperature_scaling",
        "fitted_on": "validation",
        "temperature": temperature,
        "validation_log_loss_before": ev.log_loss(ev.softmax(validation_logits), y_validation),
        "validation_log_loss_after": ev.log_loss(
            ev.softmax(validation_logits, temperature), y_validation
        ),
    }
    say(
        f"{clock} temperature T = {temperature:.3f}: validation log loss "
        f"{calibration['validation_log_loss_before']:.4f} → "
        f"{calibration['validation_log_loss_after']:.4f}"
    )
    return Fitted(network, history, temperature, calibration, validation_logits)


def export_version(
    tf_model: Any,
    network: Any,
    temperature: float,
    staging: Path,
    test_inputs: np.ndarray,
    clock: Clock,
) -> float:
    """SavedModel (temperature baked in) and model.onnx into `staging`; fails unless the
    two agree within the parity tolerance on the test inputs. Returns the largest
    difference."""
    say(f"{clock} exporting SavedModel (TF Serving layout) to {staging.name}/")
    tf_model.export_saved_model(tf_model.calibrated_model(network, temperature), staging)
    onnx_path = staging / ONNX_FILE
    say(f"{clock} converting to ONNX with tf2onnx (opset {tf_model.ONNX_OPSET})")
    tf_model.convert_to_onnx(staging, onnx_path)
    difference = tf_model.onnx_saved_model_difference(staging, onnx_path, test_inputs)
    say(
        f"{clock} ONNX vs SavedModel on {len(test_inputs)} test inputs: max |diff| {difference:.2e}"
    )
    if not difference <= tf_model.PARITY_TOLERANCE:  # NaN fails too
        raise RuntimeError(
            f"ONNX export differs from the SavedModel by {difference:.3e} "
            f"(limit {tf_model.PARITY_TOLERANCE:g})"
        )
    return difference


def training_record(
    parameters: dict[str, Any],
    class_weight: dict[int, float] | None,
    class_weight_reason: str,
    fitted: Fitted,
    tf_model: Any,
    clock: Clock,
    difference: float,
    run_id: str,
) -> dict[str, Any]:
    """The metadata's `training` section for the exported network."""
    history = fitted.history
    return {
        **{key: parameters[key] for key in TRAINING_PARAMETERS},
        "class_weight": {CLASSES[k]: w for k, w in (class_weight or {}).items()},
        "class_weight_reason": class_weight_reason,
        "parameters_count": int(fitted.network.count_params()),
        "epochs_run": history.epochs_run,
        "best_epoch": history.best_epoch,
        "best_val_loss": history.best_val_loss,
        "stopped_early": history.stopped_early,
        "history": history.epochs,
        "fit_seconds": history.seconds,
        "seconds": time.monotonic() - clock.started,
        "onnx_opset": tf_model.ONNX_OPSET,
        "onnx_max_abs_diff": difference,
        "calibration_method": "temperature_scaling",
        "versions": tf_model.versions(),
        "run_id": run_id,
    }


def finalise_version(
    staging: Path,
    base_path: Path,
    metadata: ModelMetadata,
    labels: np.ndarray,
    curves: dict[str, np.ndarray],
    title: str,
    threshold: float,
) -> Path:
    """metrics.json, reliability.png, MODEL_CARD.md, then aifx_metadata.json (last: it
    marks the version complete), then rename the staging folder to
    <base_path>/<version> in one step. Returns the version folder."""
    report.write_metrics(staging, metadata.metrics)
    report.plot_reliability(staging / RELIABILITY_FILE, labels, curves, title, threshold=threshold)
    report.write_card(staging, metadata)
    metadata.write(staging)  # last: marks the version complete
    target = base_path / str(metadata.version)
    os.rename(staging, target)  # fails if someone else wrote this version meanwhile
    return target


def run(args: argparse.Namespace) -> Path:
    if args.dataset == ECB_DAILY:
        from inference.training.walkforward import run_daily

        return run_daily(args)
    settings, clock, base_path, version, run_id = begin_run(args)
    spec = WindowSpec(lookback=args.lookback, warmup=args.warmup)
    parameters = run_parameters(args)
    staging: Path | None = None
    try:
        candles, source = data_module.load_candles(args.pair, args.timeframe, args.max_bars)
        data_start, data_end = data_module.iso(candles.times[0]), data_module.iso(candles.times[-1])
        runs.record_data(settings, run_id, source, int(candles.times[0]), int(candles.times[-1]))
        say(f"{clock} data: {source}; using {len(candles)} bars, {data_start} → {data_end}")
        samples = data_module.build_samples(candles, spec, args.horizon, args.hold_band)
        prepared = data_module.prepare(samples)
        summary = data_module.split_summary(samples, prepared.split)
        for name, part in summary.items():
            say(
                f"{clock}   {name:<10} {part['samples']:>5} samples, decisions "
                f"{part['first_decision']} → {part['last_decision']}"
            )
        say(f"{clock}   purge gap {samples.purge_gap} bars at each boundary")
        class_weight, class_weight_reason = class_weights(
            prepared.labels["train"], args.class_weights
        )
        say(f"{clock} class weights: {class_weight_reason}")

        say(f"{clock} importing TensorFlow")
        from inference.training import model as tf_model

        fitted = fit_and_calibrate(
            tf_model,
            spec.lookback,
            len(FEATURE_NAMES),
            {k: (prepared.inputs[k], prepared.labels[k]) for k in ("train", "validation")},
            args,
            class_weight,
            clock,
        )
        test_logits = tf_model.logits(fitted.network, prepared.inputs["test"])
        temperature = fitted.temperature
        metrics, curves = evaluate_all(
            prepared, test_logits, temperature, args.threshold, args.bootstrap_block, args.seed
        )
        metrics["calibration"] = fitted.calibration

        base_path.mkdir(parents=True, exist_ok=True)
        staging = base_path / f".tmp-{version}-{run_id[:8]}"
        difference = export_version(
            tf_model, fitted.network, temperature, staging, prepared.inputs["test"], clock
        )
        training = training_record(
            parameters, class_weight, class_weight_reason, fitted, tf_model, clock, difference,
            run_id,
        )  # fmt: skip
        metadata = ModelMetadata(
            model_name=args.model_name,
            version=version,
            created_at=_now_iso(),
            feature_names=list(FEATURE_NAMES),
            lookback=spec.lookback,
            warmup=spec.warmup,
            scaler=prepared.scaler.to_dict(),
            horizon=args.horizon,
            hold_band_atr=args.hold_band,
            classes=list(CLASSES),
            temperature=temperature,
            pairs=[candles.pair],
            timeframes=[candles.timeframe.value],
            data={
                "source": source,
                "pair": candles.pair,
                "timeframe": candles.timeframe.value,
                "bars": len(candles),
                "start": data_start,
                "end": data_end,
                "test_start": summary["test"]["first_decision"],
                "fractions": dict(
                    zip(data_module.SPLIT_NAMES, data_module.DEFAULT_FRACTIONS, strict=True)
                ),
                "purge_gap_bars": samples.purge_gap,
                "splits": summary,
            },
            training=training,
            metrics=metrics,
        )
        target = finalise_version(
            staging,
            base_path,
            metadata,
            prepared.labels["test"],
            curves,
            f"{args.model_name} v{version}: reliability on the test split "
            f"({len(prepared.labels['test'])} samples)",
            args.threshold,
        )
        staging = None
        runs.finish_run(settings, run_id, metrics=metrics)
    except BaseException as exc:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        record_failure(settings, run_id, exc)
        raise

    summarise(target, metadata, clock)
    return target


class RunStart(NamedTuple):
    settings: Settings
    clock: Clock
    base_path: Path
    version: int
    run_id: str


def begin_run(args: argparse.Namespace) -> RunStart:
    """The start every training run shares: migrate the inference tables, pick the next
    version under the base path, and record the run as "running"."""
    settings = get_settings()
    clock = Clock()
    base_path: Path = args.model_base_path.resolve()
    say(f"{clock} migrating the inference tables on the configured database")
    runs.migrate(settings)
    version = next_version(base_path)
    run_id = runs.start_run(
        settings, model_name=args.model_name, version=version, parameters=run_parameters(args)
    )
    say(f"{clock} training run {run_id}: {args.model_name} version {version} → {base_path}")
    return RunStart(settings, clock, base_path, version, run_id)


def run_parameters(args: argparse.Namespace) -> dict[str, Any]:
    """The run's options as recorded in the database (paths as strings)."""
    return {
        key: (str(value) if isinstance(value, Path) else value)
        for key, value in sorted(vars(args).items())
    }


def record_failure(settings: Any, run_id: str, exc: BaseException) -> None:
    """Mark the run failed with `exc` (a failure to record it is printed, not raised:
    the original error matters more)."""
    error = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
    try:
        runs.finish_run(settings, run_id, error=error)
    except Exception as record_error:
        print(f"could not record the failure: {record_error}", file=sys.stderr)


def summarise(target: Path, metadata: ModelMetadata, clock: Clock) -> None:
    m = metadata.metrics
    say(f"{clock} done: {target}")
    say("")
    say(f"{'test split':<40}{'accuracy':>9}{'bal.acc':>9}{'logloss':>9}{'brier':>8}{'ECE':>8}")
    rows = [("LSTM (calibrated)", m["model"])] + [
        (report.TITLES.get(name, name), entry) for name, entry in m["baselines"].items()
    ]
    for title, entry in rows:
        say(
            f"{title[:39]:<40}{entry['accuracy']:>9.3f}{entry['balanced_accuracy']:>9.3f}"
            f"{entry['log_loss']:>9.4f}{entry['brier_score']:>8.4f}"
            f"{entry['expected_calibration_error']:>8.4f}"
        )
    t = m["thresholded"]
    accuracy = "n/a" if t["accuracy"] is None else f"{t['accuracy']:.3f}"
    say(f"signals with confidence >= {t['threshold']:g}: {t['count']}, accuracy {accuracy}")
    for name, comparison in m["comparisons"].items():
        say(
            f"vs {name}: accuracy {comparison['accuracy']}, log loss {comparison['log_loss']}"
            f" → {'beats it' if comparison['beats'] else 'no demonstrated edge'}"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except data_module.DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; no version written", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        print("training failed; no version written", file=sys.stderr)
        return 1
    return 0

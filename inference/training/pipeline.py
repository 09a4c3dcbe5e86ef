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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from common.settings import get_settings
from inference.features import FEATURE_NAMES, WindowSpec
from inference.labels import CLASSES
from inference.model_format import ONNX_FILE, RELIABILITY_FILE, ModelMetadata, next_version
from inference.training import data as data_module
from inference.training import evaluation as ev
from inference.training import report, runs

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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    settings = get_settings()
    parser = argparse.ArgumentParser(
        prog="python -m inference.training",
        description=(
            "Train the LSTM on real candles, calibrate it, evaluate it against baselines "
            "on a held-out period and write the next model version (SavedModel in the TF "
            "Serving layout, model.onnx, metrics.json, MODEL_CARD.md, reliability.png)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    data = parser.add_argument_group("data")
    data.add_argument("--pair", default="EUR/USD", help="currency pair")
    data.add_argument(
        "--timeframe", default="1h", choices=["15m", "1h", "4h", "1d"], help="bar length"
    )
    data.add_argument(
        "--max-bars", type=int, default=None, help="use only the most recent N bars (smoke runs)"
    )
    data.add_argument(
        "--lookback", type=int, default=WindowSpec().lookback, help="bars the model reads"
    )
    data.add_argument(
        "--warmup",
        type=int,
        default=WindowSpec().warmup,
        help="bars before the lookback that let the indicators settle",
    )
    data.add_argument(
        "--horizon",
        type=int,
        default=data_module.DEFAULT_HORIZON,
        help="bars ahead the label looks (4 h on hourly bars: a few hours' trade)",
    )
    data.add_argument(
        "--hold-band",
        type=float,
        default=data_module.DEFAULT_HOLD_BAND,
        help="hold band in multiples of ATR(14): smaller moves are 'hold' (0.5 gives "
        "near-balanced classes on EUR/USD 1h with horizon 4, and moves under half an ATR "
        "hardly pay for the spread)",
    )
    model = parser.add_argument_group("model and training")
    model.add_argument("--units", type=int, default=DEFAULTS["units"], help="first LSTM's units")
    model.add_argument("--dropout", type=float, default=DEFAULTS["dropout"], help="after each LSTM")
    model.add_argument("--epochs", type=int, default=DEFAULTS["epochs"], help="at most")
    model.add_argument(
        "--patience",
        type=int,
        default=DEFAULTS["patience"],
        help="epochs without a lower validation loss before stopping",
    )
    model.add_argument(
        "--batch-size", type=int, default=DEFAULTS["batch_size"], help="training batch"
    )
    model.add_argument(
        "--learning-rate", type=float, default=DEFAULTS["learning_rate"], help="Adam's"
    )
    model.add_argument(
        "--class-weights",
        choices=["auto", "on", "off"],
        default="auto",
        help=f"auto: balanced weights only if the largest training class is over "
        f"{IMBALANCE_RATIO}x the smallest",
    )
    model.add_argument(
        "--seed", type=int, default=DEFAULTS["seed"], help="seeds every random number"
    )
    evaluation = parser.add_argument_group("evaluation and output")
    evaluation.add_argument(
        "--threshold",
        type=float,
        default=DEFAULTS["threshold"],
        help="trading threshold: buy/sell signals need at least this calibrated confidence",
    )
    evaluation.add_argument(
        "--bootstrap-block",
        type=int,
        default=DEFAULTS["bootstrap_block"],
        help="block length (samples) of the bootstrap behind the model-vs-baseline intervals",
    )
    evaluation.add_argument(
        "--model-name", default=settings.model.model_name, help="model name in the metadata"
    )
    evaluation.add_argument(
        "--model-base-path",
        type=Path,
        default=settings.model.model_base_path,
        help="folder of the model's versions (TF Serving's --model_base_path)",
    )
    args = parser.parse_args(argv)
    for name in ("epochs", "batch_size", "patience", "units", "lookback", "horizon"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 <= args.dropout < 1:
        parser.error("--dropout must be in [0, 1)")
    if not 0 < args.threshold <= 1:
        parser.error("--threshold must be in (0, 1]")
    return args


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _say(message: str) -> None:
    print(message, flush=True)


class _Clock:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def __str__(self) -> str:
        return f"[{time.monotonic() - self.started:6.1f}s]"


def _class_weights(labels: np.ndarray, mode: str) -> tuple[dict[int, float] | None, str]:
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
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)

    majority_predicted, majority_probabilities = ev.majority_baseline(y_train, len(y_test))
    persistence = data_module.persistence_signal(samples)
    rule = data_module.technical_signal(samples)
    majority_class = CLASSES[int(majority_predicted[0])] if len(y_test) else "?"
    baselines = {
        "majority_class": (
            majority_predicted,
            majority_probabilities,
            f"always '{majority_class}', the most frequent class of the training split; "
            "probabilities are the training split's class frequencies.",
        ),
        "persistence": (
            persistence[split.test],
            ev.signal_probabilities(persistence[split.train], y_train, persistence[split.test]),
            "the label of the move that has just completed (close[t - horizon] → close[t], "
            "same hold band); probabilities are the training split's class frequencies after "
            "each such previous move.",
        ),
        "technical_rules": (
            rule[split.test],
            ev.signal_probabilities(rule[split.train], y_train, rule[split.test]),
            "buy when the MACD(12, 26, 9) histogram is above 0 and 50 < RSI(14) < 70, sell "
            "when it is below 0 and 30 < RSI(14) < 50, otherwise hold; probabilities are the "
            "training split's class frequencies for each rule signal.",
        ),
    }
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
    curves = {"LSTM, calibrated": probabilities, "LSTM, before calibration": uncalibrated}
    return metrics, curves


def _export(
    tf_model: Any,
    network: Any,
    temperature: float,
    staging: Path,
    prepared: data_module.PreparedData,
    clock: _Clock,
) -> float:
    """SavedModel (temperature baked in) and model.onnx into `staging`; fails unless the
    two agree within the parity tolerance on the test inputs. Returns the largest
    difference."""
    _say(f"{clock} exporting SavedModel (TF Serving layout) to {staging.name}/")
    tf_model.export_saved_model(tf_model.calibrated_model(network, temperature), staging)
    onnx_path = staging / ONNX_FILE
    _say(f"{clock} converting to ONNX with tf2onnx (opset {tf_model.ONNX_OPSET})")
    tf_model.convert_to_onnx(staging, onnx_path)
    test_inputs = prepared.inputs["test"]
    difference = tf_model.onnx_saved_model_difference(staging, onnx_path, test_inputs)
    _say(
        f"{clock} ONNX vs SavedModel on {len(test_inputs)} test inputs: max |diff| {difference:.2e}"
    )
    if not difference <= tf_model.PARITY_TOLERANCE:  # NaN fails too
        raise RuntimeError(
            f"ONNX export differs from the SavedModel by {difference:.3e} "
            f"(limit {tf_model.PARITY_TOLERANCE:g})"
        )
    return difference


def run(args: argparse.Namespace) -> Path:
    settings = get_settings()
    clock = _Clock()
    base_path: Path = args.model_base_path.resolve()
    spec = WindowSpec(lookback=args.lookback, warmup=args.warmup)
    parameters = {
        key: (str(value) if isinstance(value, Path) else value)
        for key, value in sorted(vars(args).items())
    }
    _say(f"{clock} migrating the inference tables on the configured database")
    runs.migrate(settings)
    version = next_version(base_path)
    run_id = runs.start_run(
        settings, model_name=args.model_name, version=version, parameters=parameters
    )
    _say(f"{clock} training run {run_id}: {args.model_name} version {version} → {base_path}")
    staging: Path | None = None
    try:
        candles, source = data_module.load_candles(args.pair, args.timeframe, args.max_bars)
        data_start, data_end = data_module.iso(candles.times[0]), data_module.iso(candles.times[-1])
        runs.record_data(settings, run_id, source, int(candles.times[0]), int(candles.times[-1]))
        _say(f"{clock} data: {source}; using {len(candles)} bars, {data_start} → {data_end}")
        samples = data_module.build_samples(candles, spec, args.horizon, args.hold_band)
        prepared = data_module.prepare(samples)
        summary = data_module.split_summary(samples, prepared.split)
        for name, part in summary.items():
            _say(
                f"{clock}   {name:<10} {part['samples']:>5} samples, decisions "
                f"{part['first_decision']} → {part['last_decision']}"
            )
        _say(f"{clock}   purge gap {samples.purge_gap} bars at each boundary")
        class_weight, class_weight_reason = _class_weights(
            prepared.labels["train"], args.class_weights
        )
        _say(f"{clock} class weights: {class_weight_reason}")

        _say(f"{clock} importing TensorFlow")
        from inference.training import model as tf_model

        tf_model.make_deterministic(args.seed)
        network = tf_model.build_model(spec.lookback, len(FEATURE_NAMES), args.units, args.dropout)
        _say(
            f"{clock} training: {network.count_params():,} parameters, up to {args.epochs} "
            f"epochs, batch {args.batch_size}, early stopping patience {args.patience}"
        )
        history = tf_model.train(
            network,
            prepared.inputs["train"],
            prepared.labels["train"],
            prepared.inputs["validation"],
            prepared.labels["validation"],
            epochs=args.epochs,
            batch_size=args.batch_size,
            patience=args.patience,
            learning_rate=args.learning_rate,
            class_weight=class_weight,
            seed=args.seed,
        )
        _say(
            f"{clock} kept epoch {history.best_epoch} of {history.epochs_run} "
            f"(validation loss {history.best_val_loss:.4f})"
        )

        validation_logits = tf_model.logits(network, prepared.inputs["validation"])
        test_logits = tf_model.logits(network, prepared.inputs["test"])
        temperature = ev.fit_temperature(validation_logits, prepared.labels["validation"])
        y_validation = prepared.labels["validation"]
        calibration = {
            "method": "temperature_scaling",
            "fitted_on": "validation",
            "temperature": temperature,
            "validation_log_loss_before": ev.log_loss(ev.softmax(validation_logits), y_validation),
            "validation_log_loss_after": ev.log_loss(
                ev.softmax(validation_logits, temperature), y_validation
            ),
        }
        _say(
            f"{clock} temperature T = {temperature:.3f}: validation log loss "
            f"{calibration['validation_log_loss_before']:.4f} → "
            f"{calibration['validation_log_loss_after']:.4f}"
        )
        metrics, curves = evaluate_all(
            prepared, test_logits, temperature, args.threshold, args.bootstrap_block, args.seed
        )
        metrics["calibration"] = calibration

        base_path.mkdir(parents=True, exist_ok=True)
        staging = base_path / f".tmp-{version}-{run_id[:8]}"
        difference = _export(tf_model, network, temperature, staging, prepared, clock)

        training = {
            **{key: parameters[key] for key in TRAINING_PARAMETERS},
            "class_weight": {CLASSES[k]: w for k, w in (class_weight or {}).items()},
            "class_weight_reason": class_weight_reason,
            "parameters_count": int(network.count_params()),
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
        report.write_metrics(staging, metrics)
        report.plot_reliability(
            staging / RELIABILITY_FILE,
            prepared.labels["test"],
            curves,
            f"{args.model_name} v{version}: reliability on the test split "
            f"({len(prepared.labels['test'])} samples)",
            threshold=args.threshold,
        )
        report.write_card(staging, metadata)
        metadata.write(staging)  # last: marks the version complete
        target = base_path / str(version)
        os.rename(staging, target)  # fails if someone else wrote this version meanwhile
        staging = None
        runs.finish_run(settings, run_id, metrics=metrics)
    except BaseException as exc:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        error = (
            "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
        )
        try:
            runs.finish_run(settings, run_id, error=error)
        except Exception as record_error:  # the original error matters more
            print(f"could not record the failure: {record_error}", file=sys.stderr)
        raise

    _summarise(target, metadata, clock)
    return target


def _summarise(target: Path, metadata: ModelMetadata, clock: _Clock) -> None:
    m = metadata.metrics
    _say(f"{clock} done: {target}")
    _say("")
    _say(f"{'test split':<40}{'accuracy':>9}{'bal.acc':>9}{'logloss':>9}{'brier':>8}{'ECE':>8}")
    rows = [("LSTM (calibrated)", m["model"])] + [
        (report.BASELINE_TITLES.get(name, name), entry) for name, entry in m["baselines"].items()
    ]
    for title, entry in rows:
        _say(
            f"{title[:39]:<40}{entry['accuracy']:>9.3f}{entry['balanced_accuracy']:>9.3f}"
            f"{entry['log_loss']:>9.4f}{entry['brier_score']:>8.4f}"
            f"{entry['expected_calibration_error']:>8.4f}"
        )
    t = m["thresholded"]
    accuracy = "n/a" if t["accuracy"] is None else f"{t['accuracy']:.3f}"
    _say(f"signals with confidence >= {t['threshold']:g}: {t['count']}, accuracy {accuracy}")
    for name, comparison in m["comparisons"].items():
        _say(
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

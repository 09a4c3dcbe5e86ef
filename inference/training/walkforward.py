"""`python -m inference.training --dataset ecb-daily`: the pooled daily model
`lstm_daily`, evaluated walk-forward over held-out years.

Order of a run:
 1. record the run; load the ECB daily series of every pair and pool their samples
    (`daily.build_pooled`: `daily_closes` features, direction labels over `horizon`
    days with the close-to-close ATR hold band);
 2. for each held-out year, oldest first: the fold's purged train / validation / test
    parts (`daily.walk_forward_fold`), a scaler fitted on its training part, a fresh
    seeded LSTM trained with early stopping on validation and its temperature fitted on
    validation (`pipeline.fit_and_calibrate`, the hourly model's routine), then the
    calibrated model and the baselines scored on the year (`pipeline.score_predictions`);
 3. on the last fold, per-pair models trained on the same split, to measure pooled
    against per-pair by validation log loss;
 4. every held-out year's calibrated probabilities are scored together, per pair and
    written to heldout_predictions.csv (what `python -m backtest` trades on);
 5. the last fold's model (trained on everything before the last held-out year) is the
    version: SavedModel, model.onnx and the parity check, metrics.json, reliability.png
    (all held-out years), MODEL_CARD.md, aifx_metadata.json last, renamed into place.

The backtest of the engine's trading rule is a runtime package (`backtest`, no
TensorFlow) that the inference package must not import: `make train` runs it on the new
version right after this (see the Makefile), and it adds its results to the version's
metrics.json and MODEL_CARD.md.
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from inference.features import DAILY_FEATURE_NAMES, Scaler
from inference.labels import CLASSES
from inference.model_format import ModelMetadata
from inference.training import daily, pipeline, runs
from inference.training import data as data_module
from inference.training import evaluation as ev

HELDOUT_FILE = "heldout_predictions.csv"
HELDOUT_COLUMNS = ("pair", "candle_time", "test_year", "sell", "hold", "buy", "label")

say = pipeline.say


def _baselines(
    pooled: daily.PooledSamples, train: np.ndarray, test: np.ndarray
) -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
    return pipeline.baseline_predictions(
        pooled.labels[train],
        (pooled.persistence[train], pooled.persistence[test]),
        (pooled.technical[train], pooled.technical[test]),
        len(test),
        always_hold=True,
    )


def _per_pair_table(
    pooled: daily.PooledSamples,
    index: np.ndarray,
    probabilities: np.ndarray,
    baselines: dict[str, tuple[np.ndarray, np.ndarray, str]],
) -> dict[str, dict[str, Any]]:
    """Per pair over every held-out year: count, the model's and each baseline's
    accuracy and log loss."""
    y = pooled.labels[index]
    pairs = pooled.pair_index[index]
    table: dict[str, dict[str, Any]] = {}
    for k, pair in enumerate(pooled.pairs):
        mask = pairs == k
        if not mask.any():
            continue
        entry: dict[str, Any] = {
            "samples": int(mask.sum()),
            "model": {
                "accuracy": ev.accuracy(probabilities[mask].argmax(axis=1), y[mask]),
                "log_loss": ev.log_loss(probabilities[mask], y[mask]),
            },
        }
        for name, (hard, probs, _description) in baselines.items():
            entry[name] = {
                "accuracy": ev.accuracy(hard[mask], y[mask]),
                "log_loss": ev.log_loss(probs[mask], y[mask]),
            }
        table[pair] = entry
    return table


def _pooled_vs_per_pair(
    tf_model: Any,
    pooled: daily.PooledSamples,
    fold: daily.Fold,
    pooled_fit: pipeline.Fitted,
    pairs: list[str],
    args: argparse.Namespace,
    clock: pipeline.Clock,
) -> dict[str, Any]:
    """On the last fold's split: each pair's own model (own scaler, same settings)
    against the pooled model, by log loss on that pair's validation samples, before and
    after each model's own temperature scaling (fitted on the validation set it is then
    scored on, identically for both, so the calibrated column is in-sample)."""
    y_validation = pooled.labels[fold.validation]
    pooled_raw = ev.softmax(pooled_fit.validation_logits)
    pooled_calibrated = ev.softmax(pooled_fit.validation_logits, pooled_fit.temperature)
    rows: dict[str, dict[str, float | int]] = {}
    for pair in pairs:
        k = pooled.pairs.index(pair)
        train = fold.train[pooled.pair_index[fold.train] == k]
        in_validation = pooled.pair_index[fold.validation] == k
        validation = fold.validation[in_validation]
        say(f"{clock} per-pair model {pair}: {len(train)} train, {len(validation)} validation")
        scaler = Scaler.fit(pooled.features[train])
        own = pipeline.fit_and_calibrate(
            tf_model,
            pooled.spec.lookback,
            len(DAILY_FEATURE_NAMES),
            {
                "train": (scaler.transform(pooled.features[train]), pooled.labels[train]),
                "validation": (
                    scaler.transform(pooled.features[validation]),
                    pooled.labels[validation],
                ),
            },
            args,
            None,
            clock,
        )
        y = y_validation[in_validation]
        rows[pair] = {
            "validation_samples": len(validation),
            "pooled_log_loss": ev.log_loss(pooled_raw[in_validation], y),
            "per_pair_log_loss": ev.log_loss(ev.softmax(own.validation_logits), y),
            "pooled_log_loss_calibrated": ev.log_loss(pooled_calibrated[in_validation], y),
            "per_pair_log_loss_calibrated": ev.log_loss(
                ev.softmax(own.validation_logits, own.temperature), y
            ),
            "per_pair_epochs_run": own.history.epochs_run,
        }
    if not rows:
        return {"pairs": {}, "measured": False}
    weights = np.array([r["validation_samples"] for r in rows.values()], dtype=float)

    def mean(key: str) -> float:
        return float(np.average([r[key] for r in rows.values()], weights=weights))

    summary = {
        key: mean(key)
        for key in (
            "pooled_log_loss", "per_pair_log_loss",
            "pooled_log_loss_calibrated", "per_pair_log_loss_calibrated",
        )
    }  # fmt: skip
    pooled_wins = sum(r["pooled_log_loss"] <= r["per_pair_log_loss"] for r in rows.values())
    return {
        "measured": True,
        "fold_test_year": fold.test_year,
        "pairs": rows,
        "mean": summary,
        "pairs_where_pooled_is_at_least_as_good": int(pooled_wins),
        "pooled_better": summary["pooled_log_loss"] <= summary["per_pair_log_loss"],
    }


def _write_heldout(
    path: Path,
    pooled: daily.PooledSamples,
    index: np.ndarray,
    years: np.ndarray,
    probabilities: np.ndarray,
) -> None:
    """One row per held-out sample: pair, candle_time (open time of the decision day's
    bar, 00:00 UTC of the fixing's date), test year, calibrated sell/hold/buy, label."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HELDOUT_COLUMNS)
        for row, i in enumerate(index):
            writer.writerow(
                [
                    pooled.pairs[pooled.pair_index[i]],
                    data_module.iso(pooled.decision_time[i]),
                    int(years[row]),
                    *(f"{p:.8f}" for p in probabilities[row]),
                    CLASSES[int(pooled.labels[i])],
                ]
            )


def run_daily(args: argparse.Namespace) -> Path:
    settings, clock, base_path, version, run_id = pipeline.begin_run(args)
    spec = daily.daily_spec(args.lookback, args.warmup)
    parameters = pipeline.run_parameters(args)
    test_years = sorted(set(args.test_years))
    staging: Path | None = None
    try:
        series, source = daily.load_ecb()
        first = min(int(c.times[0]) for c in series.values())
        last = max(int(c.times[-1]) for c in series.values())
        runs.record_data(settings, run_id, source, first, last)
        say(f"{clock} data: {source}; {data_module.iso(first)} → {data_module.iso(last)}")
        pooled = daily.build_pooled(series, spec, args.horizon, args.hold_band)
        folds = [daily.walk_forward_fold(pooled, year) for year in test_years]
        block = args.bootstrap_block * len(pooled.pairs)
        say(
            f"{clock} {len(pooled)} pooled samples of {len(pooled.pairs)} pairs; "
            f"{len(folds)} folds holding out {', '.join(map(str, test_years))}"
        )
        say(f"{clock} importing TensorFlow")
        from inference.training import model as tf_model

        fold_records: list[dict[str, Any]] = []
        held_index: list[np.ndarray] = []
        held_years: list[np.ndarray] = []
        held_probabilities: list[np.ndarray] = []
        held_uncalibrated: list[np.ndarray] = []
        held_baselines: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        descriptions: dict[str, str] = {}
        final: tuple[Any, ...] = ()
        for fold in folds:
            summary = {k: daily.part_summary(pooled, v) for k, v in fold.parts().items()}
            say(f"{clock} fold {fold.test_year}:")
            for name, part in summary.items():
                say(
                    f"{clock}   {name:<10} {part['samples']:>6} samples, decisions "
                    f"{part['first_decision'][:10]} → {part['last_decision'][:10]}, "
                    f"candles {part['first_candle'][:10]} → {part['last_candle'][:10]}"
                )
            prepared = daily.prepare_fold(pooled, fold)
            class_weight, class_weight_reason = pipeline.class_weights(
                prepared.labels["train"], args.class_weights
            )
            fitted = pipeline.fit_and_calibrate(
                tf_model,
                spec.lookback,
                len(DAILY_FEATURE_NAMES),
                {k: (prepared.inputs[k], prepared.labels[k]) for k in ("train", "validation")},
                args,
                class_weight,
                clock,
            )
            logits = tf_model.logits(fitted.network, prepared.inputs["test"])
            probabilities = ev.softmax(logits, fitted.temperature)
            uncalibrated = ev.softmax(logits)
            baselines = _baselines(pooled, fold.train, fold.test)
            metrics = pipeline.score_predictions(
                prepared.labels["test"],
                probabilities,
                uncalibrated,
                baselines,
                args.threshold,
                block,
                args.seed,
            )
            fold_records.append(
                {
                    "test_year": fold.test_year,
                    "splits": summary,
                    "calibration": fitted.calibration,
                    "epochs_run": fitted.history.epochs_run,
                    "best_epoch": fitted.history.best_epoch,
                    "fit_seconds": fitted.history.seconds,
                    "class_weight_reason": class_weight_reason,
                    "metrics": metrics,
                }
            )
            say(
                f"{clock} {fold.test_year}: model accuracy {metrics['model']['accuracy']:.3f}"
                f" log loss {metrics['model']['log_loss']:.4f}; beats "
                + ", ".join(n for n, c in metrics["comparisons"].items() if c["beats"])
                + " (of "
                + ", ".join(metrics["comparisons"])
                + ")"
            )
            held_index.append(fold.test)
            held_years.append(np.full(len(fold.test), fold.test_year))
            held_probabilities.append(probabilities)
            held_uncalibrated.append(uncalibrated)
            for name, (hard, probs, description) in baselines.items():
                held_baselines.setdefault(name, []).append((hard, probs))
                descriptions[name] = description
            final = (fold, prepared, fitted, class_weight, class_weight_reason)

        fold, prepared, fitted, class_weight, class_weight_reason = final
        compare_pairs = list(pooled.pairs) if args.compare_pairs is None else args.compare_pairs
        comparison = _pooled_vs_per_pair(tf_model, pooled, fold, fitted, compare_pairs, args, clock)

        index = np.concatenate(held_index)
        years = np.concatenate(held_years)
        probabilities = np.concatenate(held_probabilities)
        uncalibrated = np.concatenate(held_uncalibrated)
        all_baselines = {
            name: (
                np.concatenate([h for h, _p in parts]),
                np.concatenate([p for _h, p in parts]),
                descriptions[name],
            )
            for name, parts in held_baselines.items()
        }
        y = pooled.labels[index]
        metrics = pipeline.score_predictions(
            y, probabilities, uncalibrated, all_baselines, args.threshold, block, args.seed
        )
        metrics["split"] = "walk-forward held-out years"
        metrics["calibration"] = fitted.calibration
        metrics["walk_forward"] = fold_records
        metrics["per_pair"] = _per_pair_table(pooled, index, probabilities, all_baselines)
        metrics["pooled_vs_per_pair"] = comparison
        metrics["heldout_predictions"] = {"file": HELDOUT_FILE, "rows": len(index)}

        base_path.mkdir(parents=True, exist_ok=True)
        staging = base_path / f".tmp-{version}-{run_id[:8]}"
        difference = pipeline.export_version(
            tf_model, fitted.network, fitted.temperature, staging, prepared.inputs["test"], clock
        )
        _write_heldout(staging / HELDOUT_FILE, pooled, index, years, probabilities)
        training = pipeline.training_record(
            parameters, class_weight, class_weight_reason, fitted, tf_model, clock, difference,
            run_id,
        )  # fmt: skip
        training["exported_fold"] = fold.test_year
        training["fold_seconds"] = [r["fit_seconds"] for r in fold_records]
        metadata = ModelMetadata(
            model_name=args.model_name,
            version=version,
            created_at=pipeline._now_iso(),
            feature_names=list(DAILY_FEATURE_NAMES),
            lookback=spec.lookback,
            warmup=spec.warmup,
            scaler=prepared.scaler.to_dict(),
            horizon=args.horizon,
            hold_band_atr=args.hold_band,
            classes=list(CLASSES),
            temperature=fitted.temperature,
            pairs=list(pooled.pairs),
            timeframes=["1d"],
            feature_set=spec.feature_set,
            data={
                "source": source,
                "dataset": "ecb-daily",
                "timeframe": "1d",
                "pairs": list(pooled.pairs),
                "days": {p: len(c) for p, c in series.items()},
                "samples": len(pooled),
                "start": data_module.iso(first),
                "end": data_module.iso(last),
                "test_years": test_years,
                "validation_days": daily.VALIDATION_DAYS,
                "purge_gap_bars": spec.history + args.horizon,
                "splits": fold_records[-1]["splits"],
                "folds": {r["test_year"]: r["splits"] for r in fold_records},
            },
            training=training,
            metrics=metrics,
        )
        target = pipeline.finalise_version(
            staging,
            base_path,
            metadata,
            y,
            {"LSTM, calibrated": probabilities, "LSTM, before calibration": uncalibrated},
            f"{args.model_name} v{version}: reliability, held-out {test_years[0]} to "
            f"{test_years[-1]} ({len(y)} samples)",
            args.threshold,
        )
        staging = None
        runs.finish_run(settings, run_id, metrics=metrics)
    except BaseException as exc:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        pipeline.record_failure(settings, run_id, exc)
        raise
    pipeline.summarise(target, metadata, clock)
    return target

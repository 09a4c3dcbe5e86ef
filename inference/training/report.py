"""What a training run leaves in its version folder besides the model: `metrics.json`,
`MODEL_CARD.md` and `reliability.png`.

The card is rendered from the version's `ModelMetadata` alone (which carries the
metrics), so it always says what the metadata says. matplotlib is imported only by
`plot_reliability`, and only the training environment has it.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from inference.model_format import (
    CARD_FILE,
    METADATA_FILE,
    METRICS_FILE,
    ONNX_FILE,
    RELIABILITY_FILE,
    ModelMetadata,
)
from inference.training.evaluation import ECE_BINS, reliability_bins

BASELINE_TITLES = {
    "majority_class": "Majority class",
    "persistence": "Persistence (same as last move)",
    "technical_rules": "Technical rule (MACD histogram + RSI)",
}
# Every baseline's title: the hourly model's three, and the daily model's no-trade one.
TITLES = {"always_hold": "Always hold", **BASELINE_TITLES}
METRIC_COLUMNS = (
    ("accuracy", "Accuracy ↑"),
    ("balanced_accuracy", "Balanced acc. ↑"),
    ("log_loss", "Log loss ↓"),
    ("brier_score", "Brier ↓"),
    ("expected_calibration_error", "ECE ↓"),
)


def write_metrics(version_dir: Path, metrics: dict[str, Any]) -> None:
    (version_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def _count(n: int) -> str:
    return ("zero", "one", "two", "three", "four", "five")[n] if n <= 5 else str(n)


def _num(value: float) -> str:
    return f"{value:.4f}"


def _signed_pct(value: float) -> str:
    return f"{100 * value:+.1f}"


def _date(iso: str) -> str:
    """2017-04-19T09:00:00Z → 2017-04-19 09:00 UTC."""
    moment = datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ")
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _metrics_row(name: str, entry: dict[str, Any]) -> str:
    cells = [name]
    for key, _title in METRIC_COLUMNS:
        value = entry[key]
        cells.append(_pct(value) if "accuracy" in key else _num(value))
    return "| " + " | ".join(cells) + " |"


def _interval(gain: dict[str, Any], scale: float, digits: int) -> str:
    low, high = (scale * v for v in gain["ci95"])
    return f"{scale * gain['mean']:+.{digits}f} ({low:+.{digits}f} to {high:+.{digits}f})"


def _beats(comparison: dict[str, Any]) -> str:
    if comparison["beats"]:
        return "**yes**"
    if "worse" in (comparison["accuracy"], comparison["log_loss"]):
        return "**no** (worse)"
    return "**no**"


def _findings(comparisons: dict[str, Any], verdict: str) -> list[str]:
    """E.g. "accuracy against the majority class baseline, +5.9 points (95 % interval
    +1.0 to +9.8)", for each comparison whose verdict is `verdict`."""

    def said(gain: dict[str, Any], scale: float, digits: int, unit: str) -> str:
        low, high = (f"{scale * v:+.{digits}f}" for v in gain["ci95"])
        return f"{scale * gain['mean']:+.{digits}f}{unit} (95 % interval {low} to {high})"

    found = []
    for name, c in comparisons.items():
        title = TITLES.get(name, name).split(" (")[0].lower()
        if c["accuracy"] == verdict:
            gain = said(c["accuracy_gain"], 100, 1, " points")
            found.append(f"accuracy against the {title} baseline, {gain}")
        if c["log_loss"] == verdict:
            gain = said(c["log_loss_gain"], 1, 4, "")
            found.append(f"log loss against the {title} baseline, {gain}")
    return found


def _results_table(m: dict[str, Any]) -> list[str]:
    """The model's and the baselines' headline metrics, one row each."""
    out: list[str] = []
    add = out.append
    add("| Predictor | " + " | ".join(title for _k, title in METRIC_COLUMNS) + " |")
    add("| --- |" + " ---: |" * len(METRIC_COLUMNS))
    add(_metrics_row("**LSTM (calibrated)**", m["model"]))
    add(_metrics_row("LSTM before calibration (T = 1)", m["model_uncalibrated"]))
    for name, entry in m["baselines"].items():
        add(_metrics_row(TITLES.get(name, name), entry))
    return out


def _comparison_section(m: dict[str, Any]) -> list[str]:
    """ "Does it beat the baselines?": the paired block-bootstrap gains and verdicts."""
    comparisons = m["comparisons"]
    out: list[str] = []
    add = out.append
    add("## Does it beat the baselines?")
    add("")
    add(
        "Paired differences on the test samples, with 95 % intervals from a moving-block "
        f"bootstrap ({m['bootstrap']['resamples']} resamples, blocks of "
        f"{m['bootstrap']['block']} samples, because neighbouring samples share bars). "
        '"Better" or "worse" only when the interval excludes zero.'
    )
    add("")
    add(
        "| Baseline | Accuracy gain, points | Verdict | Log-loss gain | Verdict | "
        "Beats it on both? |"
    )
    add("| --- | ---: | --- | ---: | --- | --- |")
    for name, c in comparisons.items():
        add(
            f"| {TITLES.get(name, name)} | {_interval(c['accuracy_gain'], 100, 1)} | "
            f"{c['accuracy']} | {_interval(c['log_loss_gain'], 1, 4)} | {c['log_loss']} | "
            f"{_beats(c)} |"
        )
    add("")
    add(
        "Gains are model minus baseline for accuracy and baseline minus model for log "
        "loss, so positive always favours the model; the interval follows each mean."
    )
    add("")

    return out


def _architecture(training: dict[str, Any]) -> str:
    """The network, as both cards describe it."""
    return (
        f"Keras LSTM({training['units']}) → dropout {training['dropout']:g} → "
        f"LSTM({max(1, training['units'] // 2)}) → dropout → dense(3) logits; "
        f"{training['parameters_count']:,} parameters"
    )


def render_card(metadata: ModelMetadata) -> str:
    """MODEL_CARD.md for a trained version."""
    m = metadata.metrics
    data = metadata.data
    training = metadata.training
    splits = data["splits"]
    thresholded = m["thresholded"]
    comparisons = m["comparisons"]
    beaten = [name for name, c in comparisons.items() if c["beats"]]
    not_beaten = [name for name in comparisons if name not in beaten]

    out: list[str] = []
    add = out.append
    add(f"# Model card — `{metadata.model_name}` version {metadata.version}")
    add("")
    add(
        f"An LSTM that reads the last {metadata.lookback} {', '.join(metadata.timeframes)} "
        f"candles of {', '.join(metadata.pairs)} and gives calibrated probabilities that the "
        f"close {metadata.horizon} bars later is above (buy), within (hold) or below (sell) "
        f"a band of ±{metadata.hold_band_atr:g} x ATR(14) around the last close. "
        f"Trained {_date(metadata.created_at)}."
    )
    add("")
    add("## Bottom line")
    add("")
    if not not_beaten:
        add(
            "On the held-out test period the model beats all three baselines on both "
            "accuracy and log loss, by margins outside the 95 % bootstrap intervals. "
            "That is one period of one pair: it is evidence, not a guarantee."
        )
    else:
        which = (
            f"any of the {_count(len(comparisons))} baselines"
            if len(not_beaten) == len(comparisons)
            else f"{_count(len(not_beaten))} of the {_count(len(comparisons))} baselines"
        )
        add(
            f"**No demonstrated edge.** On the held-out test period the model does not beat "
            f"{which} on both accuracy and log loss by a margin the test data can tell apart "
            "from chance. Do not read its signals as a proven trading edge."
        )
        better, worse = _findings(comparisons, "better"), _findings(comparisons, "worse")
        if better:
            add("")
            add(
                "Where the model is clearly better (its gain over the baseline): "
                + "; ".join(better)
                + "."
            )
        if worse:
            add("")
            add(
                "Where the model is clearly worse (its gain over the baseline): "
                + "; ".join(worse)
                + "."
            )
    add("")
    add(
        f"Test split: {m['test_samples']} samples, "
        f"{_date(splits['test']['first_decision'])} to {_date(splits['test']['last_decision'])}."
        f" Model accuracy {_pct(m['model']['accuracy'])}, log loss "
        f"{_num(m['model']['log_loss'])}; signals clearing the "
        f"{thresholded['threshold']:g} confidence threshold: {thresholded['count']}"
        + (
            f", {_pct(thresholded['accuracy'])} of them right."
            if thresholded["count"]
            else " (none, so no thresholded accuracy)."
        )
    )
    add("")

    add("## Results on the held-out test split")
    add("")
    out.extend(_results_table(m))
    add("")
    shares = splits["test"]["class_shares"]
    add(
        "Test-split class shares: "
        + ", ".join(f"{k} {_pct(shares[k])}" for k in ("sell", "hold", "buy"))
        + f". Chance level for balanced accuracy is {_pct(1 / len(metadata.classes))}; a log "
        f"loss of ln 3 = {np.log(3):.4f} is what uniform probabilities score."
    )
    add("")
    add("How each baseline predicts, and where its probabilities come from:")
    add("")
    for name, entry in m["baselines"].items():
        add(f"- **{TITLES.get(name, name)}**: {entry['description']}")
    add("")
    add(
        "Accuracy and balanced accuracy score each predictor's own signal; log loss, Brier "
        "and ECE score its probabilities. For baselines with a hard signal the "
        "probabilities are the training split's class frequencies for that signal "
        "(add-one smoothed), so those three columns measure how informative the signal "
        "is, not a confidence the rule itself claims."
    )
    add("")

    add("## Trading signals above the confidence threshold")
    add("")
    add(
        f"A signal is a buy or sell whose calibrated probability is at least "
        f"{thresholded['threshold']:g}."
    )
    add("")
    add("| Predictor | Signals | Buy / sell | Right |")
    add("| --- | ---: | ---: | ---: |")
    add(
        f"| LSTM, confidence ≥ {thresholded['threshold']:g} | {thresholded['count']} | "
        f"{thresholded['buy']} / {thresholded['sell']} | {_pct(thresholded['accuracy'])} |"
    )
    every = m["model_signals"]
    add(
        f"| LSTM, every buy/sell | {every['count']} | {every['buy']} / {every['sell']} | "
        f"{_pct(every['accuracy'])} |"
    )
    for name, entry in m["baselines"].items():
        s = entry["signals"]
        add(
            f"| {TITLES.get(name, name)}, every buy/sell | {s['count']} | "
            f"{s['buy']} / {s['sell']} | {_pct(s['accuracy'])} |"
        )
    add("")
    confident = m["confident"]
    by_class = ", ".join(f"{n} {k}" for k, n in confident["by_class"].items() if n)
    add(
        f"Over all classes, hold included, {confident['count']} of {m['test_samples']} test "
        f"predictions reached {confident['threshold']:g}"
        + (
            f" ({by_class}), {_pct(confident['accuracy'])} of them right"
            if confident["count"]
            else ""
        )
        + f". The model's confidence averaged {confident['mean_confidence']:.2f} and "
        f"peaked at {confident['max_confidence']:.2f}."
    )
    add("")
    add(
        "A buy or sell counts as right only when the move really went beyond the hold band "
        "in that direction; a signal followed by a move inside the band counts as wrong."
    )
    add("")

    out.extend(_comparison_section(m))
    add("## Calibration")
    add("")
    cal = m["calibration"]
    add(
        f"Temperature scaling fitted on the validation split: T = {cal['temperature']:.3f} "
        f"(validation log loss {cal['validation_log_loss_before']:.4f} → "
        f"{cal['validation_log_loss_after']:.4f}). The exported model computes "
        "softmax(logits / T), so the probabilities served are the calibrated ones. "
        f"Test ECE {_num(m['model_uncalibrated']['expected_calibration_error'])} before, "
        f"{_num(m['model']['expected_calibration_error'])} after. "
        f"`{RELIABILITY_FILE}` is the reliability diagram on the test split "
        f"({ECE_BINS} bins of top-class confidence)."
    )
    add("")

    add("## Data")
    add("")
    add(f"- Source: {data['source']}. Real prices only.")
    add(
        f"- Candles used: {data['bars']}, {_date(data['start'])} to {_date(data['end'])} "
        f"({data['pair']} {data['timeframe']})."
    )
    add(
        f"- Chronological split {data['fractions']['train']:.0%} / "
        f"{data['fractions']['validation']:.0%} / {data['fractions']['test']:.0%} of the "
        f"samples left after a purge gap of {data['purge_gap_bars']} bars "
        f"(window {metadata.lookback + metadata.warmup} + horizon {metadata.horizon}) at "
        "each boundary, so no candle (input, indicator warm-up or label) is shared across "
        "splits:"
    )
    add("")
    add("| Split | Samples | Decision bars | Candles touched | Sell / hold / buy |")
    add("| --- | ---: | --- | --- | --- |")
    for name in ("train", "validation", "test"):
        s = splits[name]
        shares = s["class_shares"]
        add(
            f"| {name} | {s['samples']} | {_date(s['first_decision'])} → "
            f"{_date(s['last_decision'])} | {_date(s['first_candle'])} → "
            f"{_date(s['last_candle'])} | {_pct(shares['sell'])} / {_pct(shares['hold'])} / "
            f"{_pct(shares['buy'])} |"
        )
    add("")

    add("## Inputs and labels")
    add("")
    add(
        f"- Input `{metadata.input_name}`: float32 [batch, {metadata.lookback}, "
        f"{len(metadata.feature_names)}], the features of `inference/features.py` over the "
        f"last {metadata.lookback} candles, computed from {metadata.lookback + metadata.warmup}"
        f" candles ({metadata.warmup} warm up the indicators), standardised with the "
        "training split's mean and standard deviation (saved in `aifx_metadata.json`)."
    )
    add(f"- Features: {', '.join(f'`{n}`' for n in metadata.feature_names)}.")
    add(
        f"- Output `{metadata.output_name}`: float32 [batch, {len(metadata.classes)}], "
        f"probabilities of {', '.join(metadata.classes)} (in that order)."
    )
    add(
        f"- Label of decision bar t: close[t + {metadata.horizon}] - close[t] above "
        f"+{metadata.hold_band_atr:g} x ATR(14)[t] → buy, below -{metadata.hold_band_atr:g} x "
        "ATR(14)[t] → sell, otherwise hold."
    )
    add("")

    add("## Training")
    add("")
    add(f"- {_architecture(training)}.")
    add(
        f"- Adam (learning rate {training['learning_rate']:g}, clipnorm 1), cross-entropy, "
        f"batch {training['batch_size']}, up to {training['epochs']} epochs with early "
        f"stopping on validation loss (patience {training['patience']}); ran "
        f"{training['epochs_run']} epochs, kept the weights of epoch {training['best_epoch']} "
        f"(validation loss {training['best_val_loss']:.4f})."
    )
    add(
        f"- Class weights: {training['class_weight_reason']}. Seed {training['seed']}, "
        "deterministic TensorFlow ops."
    )
    add(
        "- The test split was used for nothing but the numbers above: early stopping and "
        "the temperature used the validation split, and the default hyper-parameters were "
        "chosen by validation loss."
    )
    add(
        f"- Took {training['seconds']:.0f} s in all (fitting {training['fit_seconds']:.0f} s) "
        f"with TensorFlow {training['versions']['tensorflow']}, Keras "
        f"{training['versions']['keras']}, tf2onnx {training['versions']['tf2onnx']}."
    )
    add(
        f"- Exported as a TF Serving SavedModel (signature `serving_default`) and as "
        f"`{ONNX_FILE}` (opset {training['onnx_opset']}); on the test inputs the two differ "
        f"by at most {training['onnx_max_abs_diff']:.1e} (limit 1e-5)."
    )
    add("")

    add("## Limitations")
    add("")
    add(
        f"- One pair, one timeframe, about {data['bars']} bars "
        f"({_date(data['start'])[:10]} to {_date(data['end'])[:10]}); the test period is "
        f"{m['test_samples']} overlapping samples, so differences of a few points are "
        "within noise (see the intervals above)."
    )
    add(
        "- Labels ignore spread, slippage and the stop-loss/take-profit path: a right "
        "direction is not a profitable trade."
    )
    add(
        "- Calibration is fitted on one validation period just before the test period; "
        "calibration and accuracy drift as market regimes change. Retrain and re-check."
    )
    add(
        "- The baselines are simple on purpose. Beating them is the least a model must "
        "do; failing to beat them means the model adds nothing they do not."
    )
    add("- Not investment advice.")
    add("")
    add(
        f"Files: `saved_model.pb` + `variables/` (TF Serving), `{ONNX_FILE}`, "
        f"`{METADATA_FILE}`, `{METRICS_FILE}`, `{CARD_FILE}`, `{RELIABILITY_FILE}`."
    )
    return "\n".join(out) + "\n"


def write_card(version_dir: Path, metadata: ModelMetadata) -> None:
    """The walk-forward card for a model evaluated over held-out years (the daily
    model), the single-split card otherwise."""
    walk_forward = "walk_forward" in metadata.metrics
    text = render_daily_card(metadata) if walk_forward else render_card(metadata)
    (version_dir / CARD_FILE).write_text(text)


def _short(name: str) -> str:
    return TITLES.get(name, name).split(" (")[0]


def _year_tables(folds: list[dict[str, Any]]) -> list[str]:
    """Per held-out year: accuracy and log loss of the model and each baseline, and the
    paired log-loss verdict against each baseline."""
    names = list(folds[0]["metrics"]["baselines"])
    out: list[str] = []
    add = out.append
    add(
        "| Year | Samples | Model acc. | "
        + " | ".join(f"{_short(n)} acc." for n in names)
        + " | Model log loss | "
        + " | ".join(f"{_short(n)} log loss" for n in names)
        + " |"
    )
    add("| --- | ---: |" + " ---: |" * (2 * len(names) + 2))
    for fold in folds:
        m = fold["metrics"]
        cells = [str(fold["test_year"]), str(m["test_samples"]), _pct(m["model"]["accuracy"])]
        cells += [_pct(m["baselines"][n]["accuracy"]) for n in names]
        cells.append(_num(m["model"]["log_loss"]))
        cells += [_num(m["baselines"][n]["log_loss"]) for n in names]
        add("| " + " | ".join(cells) + " |")
    add("")
    add(
        "Paired gains of the model over each baseline in that year (accuracy points; log "
        "loss, positive favours the model), with 95 % block-bootstrap intervals:"
    )
    add("")
    add("| Year | " + " | ".join(f"vs {_short(n)}" for n in names) + " |")
    add("| --- |" + " --- |" * len(names))
    for fold in folds:
        c = fold["metrics"]["comparisons"]
        cells = [str(fold["test_year"])]
        for n in names:
            cells.append(
                f"acc {_interval(c[n]['accuracy_gain'], 100, 1)} {c[n]['accuracy']}; "
                f"log loss {_interval(c[n]['log_loss_gain'], 1, 4)} {c[n]['log_loss']}"
            )
        add("| " + " | ".join(cells) + " |")
    return out


def render_daily_card(metadata: ModelMetadata) -> str:
    """MODEL_CARD.md of a walk-forward version (the pooled daily model)."""
    m = metadata.metrics
    data = metadata.data
    training = metadata.training
    folds: list[dict[str, Any]] = m["walk_forward"]
    years = [f["test_year"] for f in folds]
    comparisons = m["comparisons"]
    out: list[str] = []
    add = out.append
    add(f"# Model card — `{metadata.model_name}` version {metadata.version}")
    add("")
    add(
        f"A pooled LSTM that reads the last {metadata.lookback} daily fixings of any of "
        f"{len(metadata.pairs)} pairs ({', '.join(metadata.pairs)}) through the pair-agnostic "
        f"`{metadata.feature_set}` features and gives calibrated probabilities that the "
        f"fixing {metadata.horizon} business days later is above (buy), within (hold) or "
        f"below (sell) a band of ±{metadata.hold_band_atr:g} x ATR(14) around the last "
        f"fixing (ATR on closes only: the mean absolute close-to-close change). "
        f"Trained {_date(metadata.created_at)}."
    )
    add("")
    add(
        f"This version is the model of the last walk-forward fold: trained on everything "
        f"before {years[-1]} (purged), validated on the most recent year before that, and "
        f"scored on {years[-1]}. The results below are the walk-forward evaluation: "
        f"{len(folds)} held-out years ({years[0]} to {years[-1]}), each scored by a model "
        "trained only on data before it."
    )
    add("")

    add("## Bottom line")
    add("")
    beaten = [n for n, c in comparisons.items() if c["beats"]]
    ll_better = {
        n: sum(f["metrics"]["comparisons"][n]["log_loss"] == "better" for f in folds)
        for n in comparisons
    }
    ll_worse = {
        n: sum(f["metrics"]["comparisons"][n]["log_loss"] == "worse" for f in folds)
        for n in comparisons
    }
    if len(beaten) == len(comparisons):
        add(
            "Over all held-out years together the model beats every baseline on both "
            "accuracy and log loss, by margins outside the 95 % bootstrap intervals."
        )
    else:
        add(
            f"**No demonstrated edge over every baseline.** Over all held-out years "
            f"together the model beats {_count(len(beaten))} of the "
            f"{_count(len(comparisons))} baselines on both accuracy and log loss"
            + (f" ({', '.join(_short(n).lower() for n in beaten)})" if beaten else "")
            + ". Do not read its signals as a proven trading edge."
        )
    better, worse = _findings(comparisons, "better"), _findings(comparisons, "worse")
    if better:
        add("")
        add("Clearly better, all years pooled: " + "; ".join(better) + ".")
    if worse:
        add("")
        add("Clearly worse, all years pooled: " + "; ".join(worse) + ".")
    add("")
    add(
        "Year by year (is the edge stable?): the log loss is clearly better than "
        + "; ".join(
            f"{_short(n).lower()} in {ll_better[n]} of {len(folds)} years "
            f"(clearly worse in {ll_worse[n]})"
            for n in comparisons
        )
        + "."
    )
    add("")
    add(
        f"All held-out years: {m['test_samples']} samples; model accuracy "
        f"{_pct(m['model']['accuracy'])}, log loss {_num(m['model']['log_loss'])} (uniform "
        f"probabilities score ln 3 = {np.log(3):.4f})."
    )
    add("")

    add("## Walk-forward: each held-out year")
    add("")
    add(
        "Each year is scored by the fold trained before it; accuracy scores each "
        "predictor's own signal, log loss its probabilities (for the baselines: the "
        "fold's training-split class frequencies given the signal)."
    )
    add("")
    out.extend(_year_tables(folds))
    add("")

    add(f"## All held-out years together ({years[0]} to {years[-1]})")
    add("")
    out.extend(_results_table(m))
    add("")
    add("How each baseline predicts, and where its probabilities come from:")
    add("")
    for name, entry in m["baselines"].items():
        add(f"- **{TITLES.get(name, name)}**: {entry['description']}")
    add("")
    out.extend(_comparison_section(m))
    add(
        f"Samples are ordered by day and then pair, so a block of {m['bootstrap']['block']} "
        f"samples is about {m['bootstrap']['block'] // len(metadata.pairs)} consecutive "
        "trading days of every pair: the resampling keeps both the overlap of neighbouring "
        "days' label horizons and the co-movement of pairs on the same day."
    )
    add("")

    add("## Per pair (all held-out years)")
    add("")
    names = list(m["baselines"])
    add(
        "| Pair | Samples | Model acc. | Model log loss | "
        + " | ".join(f"{_short(n)} acc. / log loss" for n in names)
        + " |"
    )
    add("| --- | ---: | ---: | ---: |" + " ---: |" * len(names))
    for pair, entry in m["per_pair"].items():
        cells = [
            pair,
            str(entry["samples"]),
            _pct(entry["model"]["accuracy"]),
            _num(entry["model"]["log_loss"]),
        ]
        cells += [f"{_pct(entry[n]['accuracy'])} / {_num(entry[n]['log_loss'])}" for n in names]
        add("| " + " | ".join(cells) + " |")
    add("")

    add("## Pooled or per-pair?")
    add("")
    cmp = m["pooled_vs_per_pair"]
    if cmp.get("measured"):
        mean = cmp["mean"]
        add(
            f"Measured on the {cmp['fold_test_year']} fold's split (same train and "
            f"validation days): one model per pair (own scaler, same settings) against the "
            f"pooled model, by log loss on each pair's validation samples. Sample-weighted "
            f"mean over {len(cmp['pairs'])} pairs: pooled {mean['pooled_log_loss']:.4f}, "
            f"per-pair {mean['per_pair_log_loss']:.4f} before calibration; "
            f"{mean['pooled_log_loss_calibrated']:.4f} against "
            f"{mean['per_pair_log_loss_calibrated']:.4f} after each model's temperature "
            f"(fitted on that same validation data, so in-sample for both). The pooled "
            f"model is at least as good on {cmp['pairs_where_pooled_is_at_least_as_good']} "
            f"of {len(cmp['pairs'])} pairs."
        )
        add("")
        add(
            "| Pair | Validation samples | Pooled log loss | Per-pair log loss | Pooled, "
            "calibrated | Per-pair, calibrated |"
        )
        add("| --- | ---: | ---: | ---: | ---: | ---: |")
        for pair, r in cmp["pairs"].items():
            add(
                f"| {pair} | {r['validation_samples']} | {r['pooled_log_loss']:.4f} | "
                f"{r['per_pair_log_loss']:.4f} | {r['pooled_log_loss_calibrated']:.4f} | "
                f"{r['per_pair_log_loss_calibrated']:.4f} |"
            )
        add("")
        if cmp["pooled_better"]:
            add(
                "**Choice: pooled.** It scores at least as well as per-pair models on "
                "average, and one served model covers every pair (features are returns "
                "and ratios, so pairs of any price level share them)."
            )
        else:
            add(
                "**Choice: pooled, although per-pair models scored a lower mean "
                "validation log loss.** Serving keeps one model name for every pair; the "
                "difference above is what that choice costs."
            )
    else:
        add("Not measured in this run (no pairs given to --compare-pairs).")
    add("")

    add("## Trading signals above the confidence threshold")
    add("")
    t = m["thresholded"]
    every = m["model_signals"]
    add(
        f"Buy or sell predictions with calibrated probability ≥ {t['threshold']:g} over "
        f"all held-out years: {t['count']} ({t['buy']} buy / {t['sell']} sell), "
        f"{_pct(t['accuracy'])} right. Every buy/sell prediction: {every['count']}, "
        f"{_pct(every['accuracy'])} right. The model's confidence averaged "
        f"{m['confident']['mean_confidence']:.2f} and peaked at "
        f"{m['confident']['max_confidence']:.2f}. A buy or sell is right only when the move "
        "went beyond the hold band that way."
    )
    add("")

    add("## Calibration")
    add("")
    add(
        "Each fold's temperature is fitted on its own validation year; the exported model "
        "computes softmax(logits / T) with the last fold's T = "
        f"{m['calibration']['temperature']:.3f}. Per fold:"
    )
    add("")
    add("| Fold (test year) | T | Validation log loss before → after | Test ECE after |")
    add("| --- | ---: | --- | ---: |")
    for f in folds:
        cal = f["calibration"]
        add(
            f"| {f['test_year']} | {cal['temperature']:.3f} | "
            f"{cal['validation_log_loss_before']:.4f} → {cal['validation_log_loss_after']:.4f}"
            f" | {_num(f['metrics']['model']['expected_calibration_error'])} |"
        )
    add("")
    add(
        f"`{RELIABILITY_FILE}`: reliability diagram over every held-out year's calibrated "
        f"probabilities ({ECE_BINS} bins of top-class confidence); ECE "
        f"{_num(m['model_uncalibrated']['expected_calibration_error'])} before, "
        f"{_num(m['model']['expected_calibration_error'])} after calibration."
    )
    add("")

    add("## Data and folds")
    add("")
    add(f"- Source: {data['source']}. Real fixings only; nothing interpolated.")
    add(
        f"- {data['samples']} pooled samples, fixings {_date(data['start'])[:10]} to "
        f"{_date(data['end'])[:10]}."
    )
    add(
        f"- Purge: a sample touches the fixings from {metadata.lookback + metadata.warmup - 1}"
        f" days before its decision day (window and warm-up) to {metadata.horizon} days "
        f"after it (label); a part before a boundary keeps only samples whose touched "
        f"fixings all precede the earliest fixing any sample after the boundary touches, "
        f"for all pairs together (a gap of {data['purge_gap_bars']} business days, the "
        "same for every pair since they share the ECB's days). Validation is the last "
        f"{data['validation_days']} calendar days of decisions before the test year's "
        "purge; training is everything before validation's purge."
    )
    add("")
    add("| Fold | Part | Samples | Decision days | Fixings touched | Sell / hold / buy |")
    add("| --- | --- | ---: | --- | --- | --- |")
    for f in folds:
        for part in ("train", "validation", "test"):
            sp = f["splits"][part]
            sh = sp["class_shares"]
            add(
                f"| {f['test_year']} | {part} | {sp['samples']} | "
                f"{sp['first_decision'][:10]} → {sp['last_decision'][:10]} | "
                f"{sp['first_candle'][:10]} → {sp['last_candle'][:10]} | "
                f"{_pct(sh['sell'])} / {_pct(sh['hold'])} / {_pct(sh['buy'])} |"
            )
    add("")

    add("## Inputs, labels and why these settings")
    add("")
    add(
        f"- Input `{metadata.input_name}`: float32 [batch, {metadata.lookback}, "
        f"{len(metadata.feature_names)}], feature set `{metadata.feature_set}` "
        f"({', '.join(f'`{n}`' for n in metadata.feature_names)}), computed from "
        f"{metadata.lookback + metadata.warmup} fixings and standardised with the last "
        "fold's training mean and standard deviation (in `aifx_metadata.json`)."
    )
    add(
        f"- Label of decision day t: fixing[t + {metadata.horizon}] - fixing[t] above "
        f"+{metadata.hold_band_atr:g} x ATR(14)[t] → buy, below -{metadata.hold_band_atr:g} x "
        "ATR(14)[t] → sell, otherwise hold; ATR(14) on closes only is the Wilder-smoothed "
        "absolute close-to-close change (the documented substitute for a true range)."
    )
    add(
        f"- Horizon {metadata.horizon} days: one trading week, the scale of the engine's "
        "trades (stop-loss 1.5 and take-profit 3 ATR away take days, not hours, to reach "
        f"on daily fixings). Band {metadata.hold_band_atr:g} ATR: a week's move smaller "
        "than one typical day's change is noise; it gives near-balanced classes (about "
        "36 / 28 / 37 % sell / hold / buy on the fixings before 2019)."
    )
    add(
        f"- Lookback {metadata.lookback} days (six weeks; the features already summarise "
        f"up to 50 days through SMA(50) and 20-day returns) and warm-up {metadata.warmup} "
        "days: enough for the indicators to settle (Wilder's smoothing decays to "
        "(13/14)^100 ≈ 6e-4), half of the hourly model's 200 so that each purge gap costs "
        "about six months of data rather than eleven. Training and serving compute "
        "features from the same number of fixings, so the shorter warm-up is not a "
        "train/serve difference."
    )
    add("")

    add("## Training")
    add("")
    add(
        f"- {_architecture(training)}; Adam (learning rate "
        f"{training['learning_rate']:g}, clipnorm 1), batch {training['batch_size']}, up to "
        f"{training['epochs']} epochs, early stopping on validation loss (patience "
        f"{training['patience']}); seed {training['seed']}, deterministic ops. Not tuned: "
        "chosen so that every fold fits the runtime budget."
    )
    add(
        "- Epochs per fold (best / run): "
        + ", ".join(f"{f['test_year']}: {f['best_epoch']}/{f['epochs_run']}" for f in folds)
        + f". Class weights (last fold): {training['class_weight_reason']}."
    )
    add(
        f"- The whole run took {training['seconds']:.0f} s with TensorFlow "
        f"{training['versions']['tensorflow']}, tf2onnx {training['versions']['tf2onnx']}; "
        f"SavedModel and `{ONNX_FILE}` (opset {training['onnx_opset']}) differ by at most "
        f"{training['onnx_max_abs_diff']:.1e} on the last fold's test inputs (limit 1e-5)."
    )
    add("")

    add("## Limitations")
    add("")
    add(
        "- ECB fixings are one price a day at about 14:15 CET, not traded quotes: no "
        "spread, no intraday path. Labels ignore costs, and the backtest below exits only "
        "at fixings (close-only semantics)."
    )
    add(
        "- Pairs share currencies (EUR, USD, JPY...), so the samples of one day are far "
        "from independent: the intervals above resample whole days for that reason."
    )
    add(
        f"- {years[-1]} is held out as far as the data goes ({_date(data['end'])[:10]}); "
        "a partial year has fewer samples and wider intervals."
    )
    add("- Not investment advice.")
    add("")
    add(
        f"Files: `saved_model.pb` + `variables/` (TF Serving), `{ONNX_FILE}`, "
        f"`{METADATA_FILE}`, `{METRICS_FILE}`, `{CARD_FILE}`, `{RELIABILITY_FILE}`, "
        f"`{m['heldout_predictions']['file']}` (the calibrated held-out probabilities of "
        "every walk-forward test day, what the backtest trades on)."
    )
    return "\n".join(out) + "\n"


def plot_reliability(
    path: Path,
    labels: np.ndarray,
    curves: dict[str, np.ndarray],
    title: str,
    threshold: float | None = None,
) -> None:
    """Reliability diagram: accuracy against mean top-class confidence per bin for each
    named probability array in `curves`, the diagonal, and below it how many samples
    each bin of the first curve holds; a dashed line marks the trading threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from inference.training.evaluation import expected_calibration_error

    figure, (top, bottom) = plt.subplots(
        2, 1, figsize=(6.4, 7.2), gridspec_kw={"height_ratios": [3, 1]}, sharex=True
    )
    top.plot([0, 1], [0, 1], color="0.6", linestyle=":", label="perfectly calibrated")
    styles = [("tab:blue", "-", "o"), ("tab:orange", "--", "s"), ("tab:green", "-.", "^")]
    first_bins = None
    for (name, probabilities), (color, line, marker) in zip(curves.items(), styles, strict=False):
        bins = reliability_bins(probabilities, labels)
        first_bins = first_bins or bins
        filled = bins.counts > 0
        ece = expected_calibration_error(probabilities, labels)
        top.plot(
            bins.confidence[filled],
            bins.accuracy[filled],
            color=color,
            linestyle=line,
            marker=marker,
            label=f"{name} (ECE {ece:.3f})",
        )
    if threshold is not None:
        for axis in (top, bottom):
            axis.axvline(threshold, color="tab:red", linestyle="--", linewidth=1)
        top.text(
            threshold + 0.01, 0.03, f"trading threshold {threshold:g}", color="tab:red", fontsize=9
        )
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy in bin")
    top.set_title(title)
    top.legend(loc="upper left")
    top.grid(alpha=0.3)
    assert first_bins is not None
    centers = (first_bins.edges[:-1] + first_bins.edges[1:]) / 2
    bottom.bar(
        centers, first_bins.counts, width=1.0 / len(centers) * 0.9, color="tab:blue", alpha=0.7
    )
    bottom.set_xlabel("top-class confidence (15 equal-width bins)")
    bottom.set_ylabel(f"samples\n({next(iter(curves))})")
    bottom.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)

"""Scoring predictions: metrics, baselines, temperature scaling and paired comparisons.

Plain numpy (no TensorFlow, no scipy), so it is unit-tested from the runtime environment.
Probabilities are [n, 3] arrays in `inference.labels.CLASSES` order (sell, hold, buy).

Metrics (all on the held-out test split):
    accuracy                   share of samples whose predicted class is right
    balanced_accuracy          mean recall over the classes present in the truth
    log_loss                   mean -ln p(true class), probabilities clipped at 1e-15
    brier_score                mean squared distance of the probability vector from the
                               one-hot truth, summed over classes (0 to 2)
    expected_calibration_error top-class confidence in 15 equal-width bins:
                               sum over bins of (bin share) x |accuracy - mean confidence|
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inference.labels import BUY, CLASSES, SELL

N_CLASSES = len(CLASSES)
ECE_BINS = 15
EPSILON = 1e-15


# --- probabilities --------------------------------------------------------------------


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def one_hot(labels: np.ndarray, n_classes: int = N_CLASSES) -> np.ndarray:
    return np.eye(n_classes)[np.asarray(labels)]


# --- metrics --------------------------------------------------------------------------


def accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.asarray(predicted) == np.asarray(labels)))


def balanced_accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    """Mean per-class recall over the classes that occur in `labels`."""
    recalls = [np.mean(predicted[labels == k] == k) for k in np.unique(labels)]
    return float(np.mean(recalls))


def log_loss(probabilities: np.ndarray, labels: np.ndarray) -> float:
    p = probabilities[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(p, EPSILON, 1.0))))


def brier_score(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.sum((probabilities - one_hot(labels)) ** 2, axis=1)))


@dataclass(frozen=True)
class ReliabilityBins:
    """Per equal-width confidence bin: sample count, mean confidence, accuracy (NaN for
    empty bins)."""

    edges: np.ndarray  # [bins + 1]
    counts: np.ndarray  # [bins]
    confidence: np.ndarray  # [bins]
    accuracy: np.ndarray  # [bins]


def reliability_bins(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS
) -> ReliabilityBins:
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bin b holds (edges[b], edges[b+1]]; a confidence of exactly 0 goes to the first.
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(which, confidence, bins) / counts
        mean_accuracy = np.bincount(which, correct.astype(float), bins) / counts
    return ReliabilityBins(edges, counts, mean_confidence, mean_accuracy)


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS
) -> float:
    table = reliability_bins(probabilities, labels, bins)
    filled = table.counts > 0
    gaps = np.abs(table.accuracy[filled] - table.confidence[filled])
    return float(np.sum(table.counts[filled] * gaps) / len(labels))


def signal_accuracy(
    predicted: np.ndarray, labels: np.ndarray, confidence: np.ndarray | None, threshold: float
) -> dict[str, float | int | None]:
    """Accuracy of the trading signals: buy or sell predictions whose confidence (top-class
    probability) is at least `threshold` (`confidence=None`: every buy/sell prediction,
    for baselines that give hard signals). Accuracy is None when there are none."""
    is_signal = (predicted == BUY) | (predicted == SELL)
    if confidence is not None:
        is_signal &= confidence >= threshold
    count = int(is_signal.sum())
    return {
        "threshold": threshold if confidence is not None else None,
        "count": count,
        "buy": int((is_signal & (predicted == BUY)).sum()),
        "sell": int((is_signal & (predicted == SELL)).sum()),
        "accuracy": accuracy(predicted[is_signal], labels[is_signal]) if count else None,
    }


def confident_accuracy(
    probabilities: np.ndarray, labels: np.ndarray, threshold: float
) -> dict[str, object]:
    """All predictions (hold included) whose top-class probability is at least
    `threshold`: how many, how many of each class, how many right; and the largest
    and mean confidence over every sample."""
    confidence = probabilities.max(axis=1)
    predicted = probabilities.argmax(axis=1)
    sure = confidence >= threshold
    count = int(sure.sum())
    return {
        "threshold": threshold,
        "count": count,
        "by_class": {name: int((sure & (predicted == k)).sum()) for k, name in enumerate(CLASSES)},
        "accuracy": accuracy(predicted[sure], labels[sure]) if count else None,
        "max_confidence": float(confidence.max()) if len(confidence) else None,
        "mean_confidence": float(confidence.mean()) if len(confidence) else None,
    }


def score(
    probabilities: np.ndarray, labels: np.ndarray, predicted: np.ndarray | None = None
) -> dict[str, float]:
    """The five headline metrics. `predicted` defaults to the most probable class;
    baselines with a hard signal pass it (accuracy scores the signal, the probability
    metrics score the probabilities)."""
    if predicted is None:
        predicted = probabilities.argmax(axis=1)
    return {
        "accuracy": accuracy(predicted, labels),
        "balanced_accuracy": balanced_accuracy(predicted, labels),
        "log_loss": log_loss(probabilities, labels),
        "brier_score": brier_score(probabilities, labels),
        "expected_calibration_error": expected_calibration_error(probabilities, labels),
    }


# --- temperature scaling --------------------------------------------------------------


def fit_temperature(
    logits: np.ndarray,
    labels: np.ndarray,
    low: float = 0.05,
    high: float = 100.0,
    tolerance: float = 1e-6,
) -> float:
    """The temperature T minimising the log loss of softmax(logits / T).

    The loss is convex in 1/T, hence unimodal in log T: a golden-section search over
    log T in [low, high] finds the minimum.
    """
    logits = np.asarray(logits, dtype=np.float64)

    def loss(log_t: float) -> float:
        return log_loss(softmax(logits, float(np.exp(log_t))), labels)

    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = np.log(low), np.log(high)
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = loss(c), loss(d)
    while b - a > tolerance:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = loss(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = loss(d)
    return float(np.exp((a + b) / 2.0))


# --- baselines ------------------------------------------------------------------------


def class_frequencies(labels: np.ndarray, smoothing: float = 1.0) -> np.ndarray:
    """Class shares with add-`smoothing` counts (no class gets probability 0)."""
    counts = np.bincount(labels, minlength=N_CLASSES).astype(float) + smoothing
    return counts / counts.sum()


def majority_baseline(train_labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Always the training split's most frequent class; its probabilities are the
    training split's class frequencies (what such a predictor honestly knows)."""
    frequencies = class_frequencies(train_labels, smoothing=0.0)
    majority = int(np.argmax(frequencies))
    return np.full(n, majority, dtype=np.int64), np.tile(frequencies, (n, 1))


def signal_probabilities(
    train_signal: np.ndarray, train_labels: np.ndarray, signal: np.ndarray
) -> np.ndarray:
    """Honest probabilities for a hard-signal baseline: for each signal value, the class
    frequencies observed on the training split when it gave that signal (add-one
    smoothed). A lookup fitted on train only, so it is calibrated in-sample and says how
    much the signal tells about the outcome, without adding anything to it."""
    table = np.stack([class_frequencies(train_labels[train_signal == k]) for k in range(N_CLASSES)])
    return table[signal]


# --- comparison -----------------------------------------------------------------------


def block_bootstrap_mean(
    values: np.ndarray, block: int, resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of per-sample `values` with a 95 % interval from a moving block bootstrap
    (blocks of `block` consecutive samples keep the autocorrelation that overlapping
    label horizons and shared input bars give neighbouring samples).
    Returns (mean, low, high)."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    block = max(1, min(block, n))
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n - block + 1, size=(resamples, int(np.ceil(n / block))))
    index = (starts[..., None] + np.arange(block)).reshape(resamples, -1)[:, :n]
    low, high = np.percentile(values[index].mean(axis=1), [2.5, 97.5])
    return float(values.mean()), float(low), float(high)


def _verdict(low: float, high: float) -> str:
    if low > 0:
        return "better"
    if high < 0:
        return "worse"
    return "no clear difference"


def compare(
    labels: np.ndarray,
    model_predicted: np.ndarray,
    model_probabilities: np.ndarray,
    baseline_predicted: np.ndarray,
    baseline_probabilities: np.ndarray,
    block: int,
    seed: int = 0,
) -> dict[str, object]:
    """Does the model beat a baseline on the test split? Paired per-sample gains of the
    model over the baseline in accuracy (correct minus correct) and in log loss
    (baseline's minus model's), each with a 95 % block-bootstrap interval, and a plain
    verdict per metric: "better" / "worse" when the interval excludes zero, else "no
    clear difference". `beats` only when the model is better on both."""
    rows = np.arange(len(labels))

    def nll(p: np.ndarray) -> np.ndarray:
        return -np.log(np.clip(p[rows, labels], EPSILON, 1.0))

    accuracy_gain = block_bootstrap_mean(
        (model_predicted == labels).astype(float) - (baseline_predicted == labels),
        block,
        seed=seed,
    )
    log_loss_gain = block_bootstrap_mean(
        nll(baseline_probabilities) - nll(model_probabilities), block, seed=seed
    )
    accuracy_verdict = _verdict(*accuracy_gain[1:])
    log_loss_verdict = _verdict(*log_loss_gain[1:])
    return {
        "accuracy_gain": {"mean": accuracy_gain[0], "ci95": list(accuracy_gain[1:])},
        "log_loss_gain": {"mean": log_loss_gain[0], "ci95": list(log_loss_gain[1:])},
        "accuracy": accuracy_verdict,
        "log_loss": log_loss_verdict,
        "beats": accuracy_verdict == "better" and log_loss_verdict == "better",
    }

"""Classification quality of a model against verified labels: accuracy, per-class P/R/F1,
confusion matrix, expected calibration error and the confidence histogram.

Pure functions over arrays so the same numbers come out of an asset, a test and a notebook.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from contract.vocabulary import CONDITIONS


@dataclass(frozen=True)
class ClassMetrics:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class ClassificationReport:
    samples: int
    accuracy: float
    macro_f1: float
    per_class: dict[str, ClassMetrics]
    confusion: list[list[int]]
    """Rows: verified (true) class; columns: predicted class; both in ``labels`` order."""
    labels: tuple[str, ...]
    expected_calibration_error: float
    histogram: dict[str, list[float]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """Weighted mean |accuracy - confidence| over equal-width confidence bins (Guo et al. 2017)."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    if confidence.size == 0:
        return 0.0
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            error += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(min(error, 1.0))


def confidence_histogram(
    confidence: np.ndarray, correct: np.ndarray, bins: int = 10
) -> dict[str, list[float]]:
    """Counts of correct and wrong predictions per confidence bin, plus the bin edges."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    right, _ = np.histogram(confidence[correct], bins=edges)
    wrong, _ = np.histogram(confidence[~correct], bins=edges)
    return {"edges": edges.round(4).tolist(), "correct": right.tolist(), "wrong": wrong.tolist()}


def classification_report(
    verified: Sequence[str],
    predicted: Sequence[str],
    confidence: Sequence[float],
    labels: tuple[str, ...] = CONDITIONS,
) -> ClassificationReport:
    """All the numbers of one evaluation; an empty input yields zeros rather than an error."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    y_true = np.asarray(verified, dtype=object)
    y_pred = np.asarray(predicted, dtype=object)
    conf = np.asarray(confidence, dtype=np.float64)
    if not (len(y_true) == len(y_pred) == len(conf)):
        raise ValueError(
            f"lengths differ: {len(y_true)} verified, {len(y_pred)} predicted, {len(conf)} confidences"
        )
    unknown = (set(y_true) | set(y_pred)) - set(labels)
    if unknown:
        raise ValueError(f"unknown labels {sorted(unknown)}; expected {list(labels)}")
    if len(y_true) == 0:
        empty = ClassMetrics(0.0, 0.0, 0.0, 0)
        zero = [[0] * len(labels) for _ in labels]
        return ClassificationReport(
            0,
            0.0,
            0.0,
            dict.fromkeys(labels, empty),
            zero,
            labels,
            0.0,
            confidence_histogram(conf, np.zeros(0, bool)),
        )
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=list(labels), zero_division=0
    )
    present = support > 0
    correct = y_true == y_pred
    return ClassificationReport(
        samples=len(y_true),
        accuracy=float(accuracy_score(y_true, y_pred)),
        macro_f1=float(np.mean(f1[present])) if present.any() else 0.0,
        per_class={
            label: ClassMetrics(float(precision[i]), float(recall[i]), float(f1[i]), int(support[i]))
            for i, label in enumerate(labels)
        },
        confusion=confusion_matrix(y_true, y_pred, labels=list(labels)).tolist(),
        labels=labels,
        expected_calibration_error=expected_calibration_error(conf, correct),
        histogram=confidence_histogram(conf, correct),
    )

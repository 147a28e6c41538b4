"""Metrics per task, each with the direction in which it is better: what a problem's primary metric,
the pipeline's condition, model selection and promotion compare.

A model's output is the class-probability matrix (n rows x k classes, in ``Schema.label_values``
order) for classification and the predicted values for regression; ``y`` holds class indices or
target values. Binary metrics at a threshold (accuracy, precision, ...) use the problem's decision
threshold on the positive class's probability. All from scikit-learn.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


class _SklearnMetrics:
    """sklearn.metrics, imported on first use: the control plane reads this catalogue (names,
    directions, ranges) to check settings, and importing scikit-learn would cost it a second."""

    def __getattr__(self, name: str) -> Any:
        from sklearn import metrics

        return getattr(metrics, name)


skm = _SklearnMetrics()


@dataclass(frozen=True)
class Metric:
    name: str
    direction: str  # higher | lower
    low: float
    high: float
    compute: Callable[[np.ndarray, np.ndarray, float], float]
    doc: str
    descriptive: bool = False
    """Reported, never a model's quality: not a primary metric."""

    def check_threshold(self, value: Any) -> str | None:
        """Why ``value`` cannot be this metric's registration threshold, or None."""
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return f"must be a number, got {value!r}"
        if not self.low <= value <= self.high:
            return f"{value} is outside {self.name}'s range {self.low}..{self.high}"
        return None


def _positive(out: np.ndarray) -> np.ndarray:
    return out[:, 1]


def _labels(out: np.ndarray, threshold: float) -> np.ndarray:
    return (_positive(out) >= threshold).astype(int)


def _clip(p: np.ndarray) -> np.ndarray:
    return np.clip(p, 1e-15, 1 - 1e-15)


_INF = math.inf
BINARY = (
    Metric("auc", "higher", 0, 1, lambda y, o, t: skm.roc_auc_score(y, _positive(o)), "ROC AUC"),
    Metric("average_precision", "higher", 0, 1, lambda y, o, t: skm.average_precision_score(y, _positive(o)),
           "area under the precision-recall curve"),
    Metric("accuracy", "higher", 0, 1, lambda y, o, t: skm.accuracy_score(y, _labels(o, t)), "at the threshold"),
    Metric("balanced_accuracy", "higher", 0, 1, lambda y, o, t: skm.balanced_accuracy_score(y, _labels(o, t)),
           "mean recall of both classes"),
    Metric("precision", "higher", 0, 1,
           lambda y, o, t: skm.precision_score(y, _labels(o, t), zero_division=0), "of the positive class"),
    Metric("recall", "higher", 0, 1,
           lambda y, o, t: skm.recall_score(y, _labels(o, t), zero_division=0), "of the positive class"),
    Metric("f1", "higher", 0, 1, lambda y, o, t: skm.f1_score(y, _labels(o, t), zero_division=0),
           "of the positive class"),
    Metric("log_loss", "lower", 0, _INF, lambda y, o, t: skm.log_loss(y, _clip(_positive(o)), labels=[0, 1]),
           "cross-entropy"),
    Metric("brier", "lower", 0, 1, lambda y, o, t: skm.brier_score_loss(y, _positive(o)), "mean squared error of P"),
    Metric("positive_rate", "higher", 0, 1, lambda y, o, t: float(np.mean(_labels(o, t))),
           "share predicted positive", descriptive=True),
)
MULTICLASS = (
    Metric("accuracy", "higher", 0, 1, lambda y, o, t: skm.accuracy_score(y, o.argmax(axis=1)), "top-1"),
    Metric("balanced_accuracy", "higher", 0, 1, lambda y, o, t: skm.balanced_accuracy_score(y, o.argmax(axis=1)),
           "mean recall over classes"),
    Metric("f1_macro", "higher", 0, 1,
           lambda y, o, t: skm.f1_score(y, o.argmax(axis=1), average="macro", zero_division=0), "unweighted mean F1"),
    Metric("auc_ovr", "higher", 0, 1,
           lambda y, o, t: skm.roc_auc_score(y, o, multi_class="ovr", labels=list(range(o.shape[1]))),
           "one-vs-rest ROC AUC, macro average"),
    Metric("log_loss", "lower", 0, _INF,
           lambda y, o, t: skm.log_loss(y, np.clip(o, 1e-15, 1), labels=list(range(o.shape[1]))), "cross-entropy"),
)
REGRESSION = (
    Metric("rmse", "lower", 0, _INF, lambda y, o, t: skm.root_mean_squared_error(y, o), "root mean squared error"),
    Metric("mae", "lower", 0, _INF, lambda y, o, t: skm.mean_absolute_error(y, o), "mean absolute error"),
    Metric("median_ae", "lower", 0, _INF, lambda y, o, t: skm.median_absolute_error(y, o), "median absolute error"),
    Metric("r2", "higher", -_INF, 1, lambda y, o, t: skm.r2_score(y, o), "coefficient of determination"),
)
BY_TASK: dict[str, tuple[Metric, ...]] = {"binary": BINARY, "multiclass": MULTICLASS, "regression": REGRESSION}


DRAFT_PRIMARY: dict[str, tuple[str, float]] = {
    "binary": ("auc", 0.7), "multiclass": ("balanced_accuracy", 0.6), "regression": ("r2", 0.2),
}
"""What `mlops problem init` drafts per task: a scale-free metric and a starting bar a person must confirm."""


def names(task: str) -> list[str]:
    return [m.name for m in BY_TASK[task]]


def primary_names(task: str) -> list[str]:
    """The metrics a problem may choose as its primary one."""
    return [m.name for m in BY_TASK[task] if not m.descriptive]


def model_quality(task: str, values: dict[str, float], weighted_f1: float | None = None,
                  confusion: Any = None) -> dict[str, Any]:
    """The metrics in the layout SageMaker's model registry shows for ModelMetrics.ModelQuality
    (binary_classification_metrics, multiclass_classification_metrics or regression_metrics)."""
    def entry(v: float) -> dict[str, Any]:
        return {"value": v, "standard_deviation": "NaN"}

    if task == "binary":
        tn, fp, fn, tp = (int(v) for v in np.asarray(confusion).ravel())
        return {"binary_classification_metrics": {
            **{k: entry(values[k]) for k in ("auc", "accuracy", "precision", "recall", "f1")},
            "confusion_matrix": {"0": {"0": tn, "1": fp}, "1": {"0": fn, "1": tp}}}}
    if task == "multiclass":
        return {"multiclass_classification_metrics": {
            "accuracy": entry(values["accuracy"]), "weighted_f1": entry(float(weighted_f1 or 0.0)),
            "confusion_matrix": {str(i): {str(j): int(v) for j, v in enumerate(row)}
                                 for i, row in enumerate(np.asarray(confusion))}}}
    return {"regression_metrics": {"mse": entry(values["rmse"] ** 2), "rmse": entry(values["rmse"]),
                                   "r2": entry(values["r2"]), "mae": entry(values["mae"])}}


def spec(task: str, name: str) -> Metric:
    for m in BY_TASK[task]:
        if m.name == name:
            return m
    raise KeyError(f"{name!r} is not a {task} metric; {task} metrics: {names(task)}")


def compute(task: str, y: np.ndarray, output: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Every metric of the task, plus ``rows``. A classification split missing a class has no AUC:
    NaN there (and the pipeline condition fails on it rather than passing)."""
    out: dict[str, float] = {}
    for m in BY_TASK[task]:
        try:
            out[m.name] = float(m.compute(y, output, threshold))
        except ValueError:
            out[m.name] = math.nan
    out["rows"] = float(len(y))
    return out


def one(task: str, name: str, y: np.ndarray, output: np.ndarray, threshold: float = 0.5) -> float:
    return float(spec(task, name).compute(y, output, threshold))

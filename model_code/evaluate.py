"""Evaluate step: score the test split with the trained model; write ``evaluation.json`` and plots.

Command line (SageMaker processing job)::

    python -m model_code.evaluate [--model /opt/ml/processing/input/model]   # model.tar.gz or model.joblib
                                  [--test /opt/ml/processing/input/test]
                                  [--output /opt/ml/processing/output/evaluation]

``<output>/evaluation.json`` (format ``mlops-stack/evaluation`` v1) works as a SageMaker
PropertyFile; JsonGet paths:

    primary_metric.value       the problem's primary metric on the test split (the pipeline's
                               condition); primary_metric.name, primary_metric.direction
    metrics.<name>.value       every metric of the task (model_code/metrics.py), and metrics.rows.value

The model registry's ModelMetrics.ModelQuality layout repeats them per task:
``binary_classification_metrics`` (auc, accuracy, precision, recall, f1, confusion matrix),
``multiclass_classification_metrics`` (accuracy, weighted f1, confusion matrix) or
``regression_metrics`` (mse, rmse, r2, mae). Also: ``task``, ``confusion_matrix`` (classification:
{tn, fp, fn, tp} for binary, rows of counts per actual class otherwise), ``threshold``, ``model``
{sha256, content_sha256, mlflow_run_id}, ``test_data`` {files: {name: sha256}, rows}, ``plots``,
``permutation_importance`` (the artifact's, on the validation split; measured here on the test split
for a model whose training skipped it, a tuning trial's).

Plots (PNG, matplotlib Agg): roc.png (binary), confusion_matrix.png (classification),
predicted_vs_actual.png (regression), feature_importance.png (permutation importance on the
validation split, stored in the artifact by train).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import auc as area_under  # noqa: E402
from sklearn.metrics import confusion_matrix, f1_score, roc_curve  # noqa: E402

from model_code import metrics as task_metrics  # noqa: E402
from model_code.data import read_split, sha256_file  # noqa: E402
from model_code.model import LoadedModel, decide, load_model  # noqa: E402
from model_code.problem import Problem  # noqa: E402
from model_code.schema import DataError  # noqa: E402
from model_code.tracking import TrackingError, tracking  # noqa: E402

EVALUATION_FORMAT = "mlops-stack/evaluation"
EVALUATION_FORMAT_VERSION = 1
EVALUATION_NAME = "evaluation.json"
DEFAULT_MODEL = Path("/opt/ml/processing/input/model")
DEFAULT_TEST = Path("/opt/ml/processing/input/test")
DEFAULT_OUTPUT = Path("/opt/ml/processing/output/evaluation")


def plot_roc(y: np.ndarray, scores: np.ndarray, path: Path) -> None:
    fpr, tpr, _ = roc_curve(y, scores)
    auc = float(area_under(fpr, tpr))
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    ax.plot(fpr, tpr, label=f"model (AUC = {auc:.3f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, test split")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_confusion(cm: np.ndarray, labels: Sequence[str], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(4.5, 4), dpi=100)
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center",
                color="white" if v > cm.max() / 2 else "black")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="predicted", ylabel="actual", title="Confusion matrix, test split")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_predicted(y: np.ndarray, predicted: np.ndarray, label: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    ax.scatter(y, predicted, s=8, alpha=0.6)
    low, high = float(min(y.min(), predicted.min())), float(max(y.max(), predicted.max()))
    ax.plot([low, high], [low, high], linestyle="--", color="grey", label="perfect")
    ax.set(xlabel=f"actual {label}", ylabel="predicted", title="Predicted vs actual, test split")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_importance(importance: dict[str, Any], path: Path) -> None:
    items = sorted(importance["features"].items(), key=lambda kv: kv[1]["mean"])
    names = [k for k, _ in items]
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(names) + 1.2), dpi=100)
    ax.barh(names, [v["mean"] for _, v in items], xerr=[v["std"] for _, v in items], color="tab:blue")
    ax.set(xlabel=f"drop in {importance['scoring']} when permuted",
           title=f"Permutation importance ({importance['split']} split)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _weighted_f1(y: np.ndarray, predicted: np.ndarray) -> float:
    return float(f1_score(y, predicted, average="weighted", zero_division=0))


@dataclass(frozen=True)
class Scored:
    """A model's metrics on a test split (the one computation Evaluate and the champion comparison share)."""

    values: dict[str, float]
    test_data: dict[str, Any]
    """{files: {name: sha256}, rows}"""
    test: pd.DataFrame
    y: np.ndarray
    output: np.ndarray


def score_split(model: LoadedModel, test_path: Path) -> Scored:
    """Score `test_path` (a split preprocess wrote) with `model`: every metric of its task."""
    schema, task = model.schema, model.task
    test, digest = read_split(test_path, schema)
    y = test[schema.label].to_numpy()
    if schema.is_classification and len(np.unique(y)) < len(schema.label_values):
        raise DataError(f"{test_path}: the test split must hold every class {list(schema.label_values)} of "
                        f"{schema.label!r} to compute the {task} metrics")
    out = model.output(test[schema.feature_names])
    return Scored(task_metrics.compute(task, y, out, model.threshold), digest, test, y, out)


def evaluate(model: LoadedModel, test_path: Path, output: Path) -> dict[str, Any]:
    schema, task = model.schema, model.task
    problem = Problem.from_dict(model.artifact["problem"])
    scored = score_split(model, test_path)
    test, digest, y, out, values = scored.test, scored.test_data, scored.y, scored.output, scored.values
    threshold = model.threshold
    predicted = decide(out, task, threshold)

    output.mkdir(parents=True, exist_ok=True)
    plots = {"feature_importance": "feature_importance.png"}
    cm = None
    if schema.is_classification:
        cm = confusion_matrix(y, predicted, labels=list(range(len(schema.label_values))))
        plots["confusion_matrix"] = "confusion_matrix.png"
        plot_confusion(cm, [f"{v} ({i})" if task == "binary" else str(v)
                            for i, v in enumerate(schema.label_values)], output / plots["confusion_matrix"])
    if task == "binary":
        plots["roc"] = "roc.png"
        plot_roc(y, out[:, 1], output / plots["roc"])
    if task == "regression":
        plots["predicted_vs_actual"] = "predicted_vs_actual.png"
        plot_predicted(y, predicted, schema.label, output / plots["predicted_vs_actual"])
    importance = model.artifact.get("permutation_importance")
    if not importance:  # a tuning trial's model: measured here, on the test split, with train's settings
        from model_code.train import importances

        importance = importances(model.estimator, problem, test[schema.feature_names], y,
                                 model.artifact["hyperparameters"], "test")
    plot_importance(importance, output / plots["feature_importance"])

    mlflow_info = model.artifact.get("mlflow") or {}
    confusion: Any = None
    if cm is not None:
        confusion = dict(zip(("tn", "fp", "fn", "tp"), (int(v) for v in cm.ravel()), strict=True)) \
            if task == "binary" else [[int(v) for v in row] for row in cm]
    report = {
        "format": EVALUATION_FORMAT,
        "format_version": EVALUATION_FORMAT_VERSION,
        "task": task,
        "primary_metric": {"name": problem.primary_metric, "direction": problem.direction,
                           "value": values[problem.primary_metric]},
        "metrics": {k: {"value": v} for k, v in values.items()},
        **task_metrics.model_quality(task, values, _weighted_f1(y, predicted) if task == "multiclass" else None, cm),
        "confusion_matrix": confusion,
        "threshold": threshold,
        "model": {"sha256": sha256_file(model.path), "content_sha256": model.artifact.get("content_sha256"),
                  "mlflow_run_id": mlflow_info.get("run_id"),
                  # what a stack with serveRuntime=onnx asks of a package it is promoted (mlops/release.py)
                  "onnx": "exported" if (model.artifact.get("onnx") or {}).get("exported") else "none"},
        "test_data": digest,
        "plots": plots,
        "permutation_importance": importance,
    }
    (output / EVALUATION_NAME).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    log_test_metrics(mlflow_info, values)
    return report


def log_test_metrics(mlflow_info: dict[str, Any], metrics: dict[str, float], prefix: str = "test_") -> None:
    """The test-split metrics as `<prefix><name>` on the MLflow run that trained the model (if it was tracked)."""
    if not mlflow_info.get("run_id") or not mlflow_info.get("tracking_uri"):
        return
    with tracking(mlflow_info["tracking_uri"]) as mlflow:
        from mlflow.entities import Metric

        client = mlflow.MlflowClient()
        stamp = int(time.time() * 1000)
        client.log_batch(mlflow_info["run_id"], metrics=[
            Metric(f"{prefix}{name}", float(value), stamp, 0) for name, value in sorted(metrics.items())])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m model_code.evaluate", description="Evaluate on the test split.")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                   help="model.joblib, model.tar.gz, or a folder holding one")
    p.add_argument("--test", type=Path, default=DEFAULT_TEST, help="test folder or CSV")
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"folder for {EVALUATION_NAME} and plots")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        model = load_model(args.model)
        report = evaluate(model, args.test, args.output)
    except (DataError, FileNotFoundError, ValueError, TrackingError) as exc:
        print(f"evaluate failed: {exc}", file=sys.stderr)
        return 1
    primary = report["primary_metric"]
    print(f"evaluate: test {primary['name']}={primary['value']:.4f} ({report['metrics']['rows']['value']:.0f} rows); "
          f"wrote {args.output / EVALUATION_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

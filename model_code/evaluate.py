"""Evaluate step: score the test split with the trained model; write ``evaluation.json`` and plots.

Command line (SageMaker processing job)::

    python -m model_code.evaluate [--model /opt/ml/processing/input/model]   # model.tar.gz or model.joblib
                                  [--test /opt/ml/processing/input/test]
                                  [--output /opt/ml/processing/output/evaluation]

``<output>/evaluation.json`` (format ``mlops-stack/evaluation`` v1) works as a SageMaker
PropertyFile; JsonGet paths:

    metrics.auc.value          ROC AUC on the test split (the pipeline's condition metric)
    metrics.accuracy.value     at the model's threshold
    metrics.precision.value, metrics.recall.value, metrics.f1.value
    metrics.log_loss.value, metrics.brier.value, metrics.positive_rate.value, metrics.rows.value

``binary_classification_metrics`` repeats auc/accuracy/precision/recall/f1 (and the confusion
matrix) in the layout SageMaker's model registry expects for ModelMetrics.ModelQuality. Also:
``confusion_matrix`` {tn, fp, fn, tp}, ``threshold``, ``model`` {sha256, content_sha256, mlflow_run_id},
``test_data`` {files: {name: sha256}, rows}, ``plots`` (file names).

Plots (PNG, matplotlib Agg): roc.png, confusion_matrix.png, feature_importance.png (permutation
importance on the validation split, stored in the artifact by train).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from sklearn.metrics import confusion_matrix, roc_curve  # noqa: E402

from model_code.data import read_split, sha256_file  # noqa: E402
from model_code.model import LoadedModel, load_model  # noqa: E402
from model_code.schema import DataError  # noqa: E402
from model_code.tracking import TrackingError, tracking  # noqa: E402
from model_code.train import classification_metrics  # noqa: E402

EVALUATION_FORMAT = "mlops-stack/evaluation"
EVALUATION_FORMAT_VERSION = 1
EVALUATION_NAME = "evaluation.json"
DEFAULT_MODEL = Path("/opt/ml/processing/input/model")
DEFAULT_TEST = Path("/opt/ml/processing/input/test")
DEFAULT_OUTPUT = Path("/opt/ml/processing/output/evaluation")


def plot_roc(y: np.ndarray, scores: np.ndarray, auc: float, path: Path) -> None:
    fpr, tpr, _ = roc_curve(y, scores)
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


def evaluate(model: LoadedModel, test_path: Path, output: Path) -> dict[str, Any]:
    schema = model.schema
    test, digest = read_split(test_path, schema)
    y = test[schema.label].to_numpy()
    if len(np.unique(y)) < 2:
        raise DataError(f"{test_path}: the test split must hold both classes of {schema.label!r} to compute AUC")
    scores = model.predict_proba(test[schema.feature_names])
    threshold = model.threshold
    metrics = classification_metrics(y, scores, threshold)
    cm = confusion_matrix(y, (scores >= threshold).astype(int), labels=[0, 1])
    tn, fp, fn, tp = (int(v) for v in cm.ravel())

    output.mkdir(parents=True, exist_ok=True)
    plots = {"roc": "roc.png", "confusion_matrix": "confusion_matrix.png",
             "feature_importance": "feature_importance.png"}
    plot_roc(y, scores, metrics["auc"], output / plots["roc"])
    plot_confusion(cm, ["<=50K (0)", ">50K (1)"], output / plots["confusion_matrix"])
    plot_importance(model.artifact["permutation_importance"], output / plots["feature_importance"])

    mlflow_info = model.artifact.get("mlflow") or {}
    report = {
        "format": EVALUATION_FORMAT,
        "format_version": EVALUATION_FORMAT_VERSION,
        "metrics": {k: {"value": v} for k, v in metrics.items()},
        "binary_classification_metrics": {
            **{k: {"value": metrics[k], "standard_deviation": "NaN"}
               for k in ("auc", "accuracy", "precision", "recall", "f1")},
            "confusion_matrix": {"0": {"0": tn, "1": fp}, "1": {"0": fn, "1": tp}},
        },
        "confusion_matrix": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
        "threshold": threshold,
        "model": {"sha256": sha256_file(model.path), "content_sha256": model.artifact.get("content_sha256"),
                  "mlflow_run_id": mlflow_info.get("run_id")},
        "test_data": digest,
        "plots": plots,
    }
    (output / EVALUATION_NAME).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    log_test_metrics(mlflow_info, metrics)
    return report


def log_test_metrics(mlflow_info: dict[str, Any], metrics: dict[str, float]) -> None:
    """The test-split metrics as `test_<name>` on the MLflow run that trained the model (if it was tracked)."""
    if not mlflow_info.get("run_id") or not mlflow_info.get("tracking_uri"):
        return
    with tracking(mlflow_info["tracking_uri"]) as mlflow:
        from mlflow.entities import Metric

        client = mlflow.MlflowClient()
        stamp = int(time.time() * 1000)
        client.log_batch(mlflow_info["run_id"], metrics=[
            Metric(f"test_{name}", float(value), stamp, 0) for name, value in sorted(metrics.items())])


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
    m = report["metrics"]
    print(f"evaluate: test auc={m['auc']['value']:.4f} accuracy={m['accuracy']['value']:.4f}; "
          f"wrote {args.output / EVALUATION_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

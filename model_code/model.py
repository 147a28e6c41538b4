"""The model and its single self-describing artifact, ``model.joblib``.

The artifact is a joblib file holding one plain dict (format ``mlops-stack/model`` v1)::

    {
      "format": "mlops-stack/model", "format_version": 2,
      "estimator": sklearn Pipeline (model_code/estimators.py: "columns" encoding -> "model"), the
                   candidate model selection kept, fitted on the train split only; it takes a
                   DataFrame of the raw feature columns (canonical dtypes, see schema.coerce)
      "task": "binary" | "multiclass" | "regression",
      "problem": Problem.to_dict()      # the declaration: metrics, candidates, the schema again
      "schema": Schema.to_dict()        # feature names, types, ranges, categories, classes: request checks
      "feature_names": [...], "label": "income_gt_50k", "positive_label": 1, "threshold": 0.5,
      "hyperparameters": {...},          # typed values actually used, "estimator": the candidate kept
      "selection": {...} | None,         # cross-validation of the candidates (train.py)
      "metrics": {"validation": {<the task's metrics>, "rows": ...}},
      "permutation_importance": {"split": "validation", "scoring": "roc_auc", "n_repeats": 5,
                                 "features": {name: {"mean": ..., "std": ...}}},
      "prediction_baseline": {...},     # baseline.prediction_stats of validation scores
      "onnx": {"exported": true, "file": "model.onnx", "sha256": ..., "parity": {...}, ...}
              | {"exported": false, "reason": ...},   # the edge export beside this file (model_code/edge/)
      "data": {"train": {"files": {name: sha256}, "rows": n}, "validation": {...}},
      "versions": {"python": ..., "sklearn": ..., "numpy": ..., "pandas": ..., "joblib": ...},
      "provenance": {"MLOPS_GIT_SHA": ..., ...},   # whichever were set
      "mlflow": {"tracking_uri": ..., "run_id": ..., "experiment_id": ...} | None,
      "content_sha256": content_digest(...)   # equal for equal models, whatever the run metadata
    }

When the problem has its own module (model_code/problem_module.py), the file holds the estimator
pickled apart (``estimator_pickle``): the module is installed from the source the artifact embeds
(``problem.module``) before the estimator that refers to it is unpickled.

Load it with ``load_model(path)`` (a path to ``model.joblib``, to a folder holding it, or to the
``model.tar.gz`` SageMaker makes of the model folder). Loading unpickles: only load artifacts
from your own model bucket (the pipeline records their sha256).
"""

from __future__ import annotations

import atexit
import hashlib
import pickle
import platform
import shutil
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import sklearn
from sklearn.pipeline import Pipeline

from model_code.problem_module import ProblemModule, install
from model_code.schema import DataError, NumericFeature, Schema, coerce

MODEL_FORMAT = "mlops-stack/model"
MODEL_FORMAT_VERSION = 2
MODEL_FILENAME = "model.joblib"


def versions() -> dict[str, str]:
    return {"python": platform.python_version(), "sklearn": sklearn.__version__, "numpy": np.__version__,
            "pandas": pd.__version__, "joblib": joblib.__version__}


def content_digest(artifact: dict[str, Any]) -> str:
    """sha256 of what decides predictions: the fitted estimator, schema and threshold.

    The artifact file's own sha256 also covers run metadata (MLflow run id, provenance), so two
    runs on the same data and seed differ there; this digest is equal exactly when the models are.
    """
    decisive = (artifact["estimator"], artifact["schema"], artifact["threshold"], artifact["feature_names"])
    return hashlib.sha256(pickle.dumps(decisive, protocol=5)).hexdigest()


def save_artifact(artifact: dict[str, Any], model_dir: Path) -> Path:
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / MODEL_FILENAME
    if (artifact.get("problem") or {}).get("module"):
        artifact = {**artifact, "estimator": None, "estimator_pickle": pickle.dumps(artifact["estimator"], protocol=5)}
    joblib.dump(artifact, path, compress=3)
    return path


@dataclass
class LoadedModel:
    """A loaded artifact: schema-checked scoring plus the artifact's metadata."""

    artifact: dict[str, Any]
    path: Path

    @property
    def schema(self) -> Schema:
        return Schema.from_dict(self.artifact["schema"])

    @property
    def estimator(self) -> Pipeline:
        return self.artifact["estimator"]

    @property
    def threshold(self) -> float:
        return float(self.artifact["threshold"])

    @property
    def task(self) -> str:
        return self.artifact.get("task", "binary")

    def check_records(self, frame: pd.DataFrame, source: str = "request") -> pd.DataFrame:
        """Coerce a request frame to the schema and reject what the model must not see: absent
        columns, non-numeric text, values outside ranges. Unknown categories and missing values
        are allowed (the model treats both as missing); drift monitoring reports them."""
        schema = self.schema
        x = coerce(frame, schema, source=source, require_label=False)
        for f in schema.features:
            if isinstance(f, NumericFeature):
                v = x[f.name]
                bad = v.notna() & ((v < f.minimum) | (v > f.maximum))
                if bad.any():
                    rows = np.flatnonzero(bad.to_numpy())[:20].tolist()
                    raise DataError(f"{source}: {f.name!r} must be within [{f.minimum}, {f.maximum}]; "
                                    f"rows {rows} are not")
        return x[schema.feature_names]

    def output(self, frame: pd.DataFrame | Sequence[Mapping[str, Any]]) -> np.ndarray:
        """What the metrics take (model_code/metrics.py): class probabilities (rows x classes) for
        classification, values for regression, per row of raw records (DataFrame or list of dicts)."""
        if not isinstance(frame, pd.DataFrame):
            frame = pd.DataFrame(list(frame))
        return estimator_output(self.estimator, self.task, self.check_records(frame))

    def predict_proba(self, frame: pd.DataFrame | Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Positive-class probability per row (binary models)."""
        if self.task != "binary":
            raise TypeError(f"predict_proba is the positive-class probability of a binary model; this is {self.task}")
        return self.output(frame)[:, 1]

    def predict(self, frame: pd.DataFrame | Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Class indices (classification: see Schema.label_output for their values) or values."""
        return decide(self.output(frame), self.task, self.threshold)


def estimator_output(estimator: Any, task: str, x: Any) -> np.ndarray:
    """The metrics' input from a fitted estimator: predict_proba for classification, predict otherwise."""
    if task == "regression":
        return np.asarray(estimator.predict(x), dtype=np.float64)
    return np.asarray(estimator.predict_proba(x), dtype=np.float64)


def decide(output: np.ndarray, task: str, threshold: float) -> np.ndarray:
    """Predictions from outputs: the positive class at the threshold (binary), the most probable
    class (multiclass), the value (regression)."""
    if task == "binary":
        return (output[:, 1] >= threshold).astype(int)
    if task == "multiclass":
        return output.argmax(axis=1)
    return output


def _from_tar(path: Path) -> Path:
    target = Path(tempfile.mkdtemp(prefix="model-"))
    atexit.register(shutil.rmtree, target, True)
    with tarfile.open(path) as tar:
        tar.extractall(target, filter="data")  # rejects absolute paths, links out of target
    found = sorted(target.rglob(MODEL_FILENAME))
    if not found:
        raise FileNotFoundError(f"{path}: no {MODEL_FILENAME} inside the archive")
    return found[0]


def resolve_model_path(path: Path) -> Path:
    """model.joblib itself, a folder holding model.joblib or model.tar.gz, or a model.tar.gz."""
    path = Path(path)
    if path.is_dir():
        if (path / MODEL_FILENAME).is_file():
            return path / MODEL_FILENAME
        if (path / "model.tar.gz").is_file():
            return _from_tar(path / "model.tar.gz")
        raise FileNotFoundError(f"{path}: holds neither {MODEL_FILENAME} nor model.tar.gz")
    if path.name.endswith((".tar.gz", ".tgz")):
        return _from_tar(path)
    if not path.is_file():
        raise FileNotFoundError(f"model artifact {path} does not exist")
    return path


def load_model(path: Path) -> LoadedModel:
    resolved = resolve_model_path(path)
    artifact = joblib.load(resolved)
    if not isinstance(artifact, dict) or artifact.get("format") != MODEL_FORMAT:
        raise ValueError(f"{resolved}: not a {MODEL_FORMAT} artifact")
    if artifact.get("format_version") != MODEL_FORMAT_VERSION:
        raise ValueError(f"{resolved}: format_version {artifact.get('format_version')!r}, "
                         f"this code reads {MODEL_FORMAT_VERSION}")
    if "estimator_pickle" in artifact:
        install(ProblemModule.from_dict(artifact["problem"]["module"]))
        artifact["estimator"] = pickle.loads(artifact.pop("estimator_pickle"))
    return LoadedModel(artifact=artifact, path=resolved)


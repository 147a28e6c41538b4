"""The model and its single self-describing artifact, ``model.joblib``.

The artifact is a joblib file holding one plain dict (format ``mlops-stack/model`` v1)::

    {
      "format": "mlops-stack/model", "format_version": 1,
      "estimator": sklearn Pipeline(OrdinalEncoder for categoricals -> HistGradientBoostingClassifier),
                   fitted on the train split only; predict_proba takes a DataFrame of the raw
                   feature columns (canonical dtypes, see schema.coerce)
      "schema": Schema.to_dict()        # feature names, types, ranges, categories: request checks
      "feature_names": [...], "label": "income_gt_50k", "positive_label": 1, "threshold": 0.5,
      "hyperparameters": {...},          # typed values actually used
      "metrics": {"validation": {"auc": ..., "accuracy": ..., "log_loss": ..., ...}},
      "permutation_importance": {"split": "validation", "scoring": "roc_auc", "n_repeats": 5,
                                 "features": {name: {"mean": ..., "std": ...}}},
      "prediction_baseline": {...},     # baseline.prediction_stats of validation scores
      "data": {"train": {"files": {name: sha256}, "rows": n}, "validation": {...}},
      "versions": {"python": ..., "sklearn": ..., "numpy": ..., "pandas": ..., "joblib": ...},
      "provenance": {"MLOPS_GIT_SHA": ..., ...},   # whichever were set
      "mlflow": {"tracking_uri": ..., "run_id": ..., "experiment_id": ...} | None,
      "content_sha256": content_digest(...)   # equal for equal models, whatever the run metadata
    }

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
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from model_code.schema import DataError, NumericFeature, Schema, coerce

MODEL_FORMAT = "mlops-stack/model"
MODEL_FORMAT_VERSION = 1
MODEL_FILENAME = "model.joblib"


def build_estimator(schema: Schema, hp: Mapping[str, Any]) -> Pipeline:
    """Categoricals -> ordinal codes (unknown/missing -> NaN) -> gradient boosting with native
    categorical splits. Numeric columns pass through (NaN is handled natively)."""
    cat = [f.name for f in schema.categorical]
    num = [f.name for f in schema.numeric]
    encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan,
                             encoded_missing_value=np.nan, dtype=np.float64)
    columns = ColumnTransformer([("cat", encoder, cat), ("num", "passthrough", num)],
                                verbose_feature_names_out=False)
    clf = HistGradientBoostingClassifier(
        learning_rate=hp["learning_rate"], max_iter=hp["max_iter"], max_leaf_nodes=hp["max_leaf_nodes"],
        max_depth=hp["max_depth"], min_samples_leaf=hp["min_samples_leaf"],
        l2_regularization=hp["l2_regularization"], early_stopping=hp["early_stopping"],
        validation_fraction=hp["validation_fraction"], n_iter_no_change=hp["n_iter_no_change"],
        categorical_features=list(range(len(cat))), random_state=hp["seed"],
    )
    return Pipeline([("columns", columns), ("model", clf)])


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

    def predict_proba(self, frame: pd.DataFrame | Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Positive-class probability per row of raw records (DataFrame or list of dicts)."""
        if not isinstance(frame, pd.DataFrame):
            frame = pd.DataFrame(list(frame))
        x = self.check_records(frame)
        return self.estimator.predict_proba(x)[:, 1]

    def predict(self, frame: pd.DataFrame | Sequence[Mapping[str, Any]]) -> np.ndarray:
        return (self.predict_proba(frame) >= self.threshold).astype(int)


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
    return LoadedModel(artifact=artifact, path=resolved)


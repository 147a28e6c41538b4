"""Train step: fit the model on the train channel, score the validation channel, write one
self-describing artifact (``$SM_MODEL_DIR/model.joblib``, see model_code/model.py) and, when
``MLFLOW_TRACKING_URI`` is set, log the run to MLflow.

SageMaker container contract (the local executor maps the same paths to a run folder)::

    train channel       $SM_CHANNEL_TRAIN       (/opt/ml/input/data/train)       CSV with label
    validation channel  $SM_CHANNEL_VALIDATION  (/opt/ml/input/data/validation)  CSV with label
    hyperparameters     $SM_INPUT_CONFIG_DIR/hyperparameters.json  (every value a string)
    model               $SM_MODEL_DIR/model.joblib                 (/opt/ml/model)
    side outputs        $SM_OUTPUT_DATA_DIR/metrics.json           (/opt/ml/output/data)
    failure reason      $SM_OUTPUT_DIR/failure                     (/opt/ml/output), on error

Command line: ``python -m model_code.train [--train DIR] [--validation DIR] [--model-dir DIR]
[--hyperparameters FILE] [--learning-rate 0.05 ...]``. Precedence: defaults < hyperparameters.json <
command-line options. SageMaker's own keys (``sagemaker_*``, ``_tuning_objective_metric``) are
ignored; any other unknown key is an error.

Data errors (bad types, missing columns, a split with one class) stop the step before anything
is written to the model folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from model_code import env
from model_code.baseline import prediction_stats
from model_code.data import read_split, sha256_file
from model_code.model import (
    MODEL_FORMAT,
    MODEL_FORMAT_VERSION,
    build_estimator,
    content_digest,
    save_artifact,
    versions,
)
from model_code.schema import ADULT, DataError, Schema
from model_code.tracking import TrackingError, tracking

HYPERPARAMETERS_FILE = "hyperparameters.json"
IGNORED_PREFIXES = ("sagemaker_", "_tuning_objective_metric")


class HyperparameterError(ValueError):
    """A hyperparameter is unknown, unparsable or out of range."""


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"true", "1", "yes"}:
        return True
    if lowered in {"false", "0", "no"}:
        return False
    raise ValueError("expected true/false")


@dataclass(frozen=True)
class Hyperparameter:
    name: str
    type: Callable[[str], Any]
    default: Any
    check: Callable[[Any], bool]
    rule: str
    doc: str


HYPERPARAMETERS: tuple[Hyperparameter, ...] = (
    Hyperparameter("learning_rate", float, 0.1, lambda v: 0 < v <= 1, "0 < x <= 1", "boosting shrinkage"),
    Hyperparameter("max_iter", int, 300, lambda v: v >= 1, ">= 1", "maximum boosting iterations"),
    Hyperparameter("max_leaf_nodes", int, 31, lambda v: v >= 2, ">= 2", "leaves per tree"),
    Hyperparameter("max_depth", int, 0, lambda v: v >= 0, ">= 0", "tree depth limit; 0 = unlimited"),
    Hyperparameter("min_samples_leaf", int, 20, lambda v: v >= 1, ">= 1", "minimum rows per leaf"),
    Hyperparameter("l2_regularization", float, 0.0, lambda v: v >= 0, ">= 0", "L2 penalty on leaf values"),
    Hyperparameter("early_stopping", _parse_bool, True, lambda v: True, "true/false",
                   "stop when an internal holdout of the train split stops improving"),
    Hyperparameter("validation_fraction", float, 0.1, lambda v: 0 < v < 1, "0 < x < 1",
                   "share of train rows held out for early stopping"),
    Hyperparameter("n_iter_no_change", int, 10, lambda v: v >= 1, ">= 1", "early-stopping patience"),
    Hyperparameter("seed", int, 42, lambda v: v >= 0, ">= 0", "random state (early-stopping split, permutations)"),
    Hyperparameter("threshold", float, 0.5, lambda v: 0 < v < 1, "0 < x < 1", "decision threshold on P(positive)"),
    Hyperparameter("permutation_repeats", int, 5, lambda v: v >= 1, ">= 1",
                   "repeats of permutation importance on the validation split"),
    Hyperparameter("permutation_max_rows", int, 5000, lambda v: v >= 100, ">= 100",
                   "permutation importance uses a seeded sample of at most this many validation rows"),
)
_BY_NAME = {h.name: h for h in HYPERPARAMETERS}


def _parse_one(name: str, raw: Any, origin: str) -> Any:
    spec = _BY_NAME[name]
    text = raw if isinstance(raw, str) else json.dumps(raw)
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':  # the SageMaker SDK JSON-encodes values
        text = json.loads(text)
    try:
        value = spec.type(text)
    except ValueError:
        raise HyperparameterError(f"{origin}: hyperparameter {name}={raw!r} is not a valid "
                                  f"{getattr(spec.type, '__name__', 'value')} ({spec.rule})") from None
    if not spec.check(value):
        raise HyperparameterError(f"{origin}: hyperparameter {name}={value!r} must be {spec.rule}")
    return value


def resolve_hyperparameters(file_values: Mapping[str, Any] | None = None,
                            overrides: Mapping[str, Any] | None = None,
                            origin: str = "hyperparameters.json") -> dict[str, Any]:
    """Defaults, then values from hyperparameters.json (strings), then typed/str overrides."""
    hp = {h.name: h.default for h in HYPERPARAMETERS}
    for source, values in ((origin, file_values or {}), ("command line", overrides or {})):
        for key, raw in values.items():
            if key.startswith(IGNORED_PREFIXES):
                continue
            name = key.replace("-", "_")
            if name not in _BY_NAME:
                raise HyperparameterError(f"{source}: unknown hyperparameter {key!r}; known: {sorted(_BY_NAME)}")
            hp[name] = _parse_one(name, raw, source)
    return hp


def read_hyperparameters_file(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; an absent file means no values (SageMaker omits it when empty)."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise HyperparameterError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise HyperparameterError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def estimator_params(hp: Mapping[str, Any]) -> dict[str, Any]:
    params = dict(hp)
    params["max_depth"] = hp["max_depth"] or None
    return params


def classification_metrics(y: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    pred = (scores >= threshold).astype(int)
    return {
        "auc": float(roc_auc_score(y, scores)),
        "accuracy": float(accuracy_score(y, pred)),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "log_loss": float(log_loss(y, np.clip(scores, 1e-15, 1 - 1e-15), labels=[0, 1])),
        "brier": float(brier_score_loss(y, scores)),
        "positive_rate": float(pred.mean()),
        "rows": float(len(y)),
    }


def _check_split(frame: pd.DataFrame, schema: Schema, name: str, where: Path) -> None:
    classes = sorted(frame[schema.label].unique().tolist())
    if classes != sorted(schema.label_values):
        raise DataError(f"{where}: the {name} split must hold both classes {list(schema.label_values)} "
                        f"of {schema.label!r}; found {classes} in {len(frame)} row(s)")


@dataclass(frozen=True)
class TrainPaths:
    train: Path
    validation: Path
    model_dir: Path
    output_data_dir: Path
    hyperparameters: Path

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TrainPaths:
        return cls(
            train=env.SM_CHANNEL_TRAIN.get(environ),
            validation=env.SM_CHANNEL_VALIDATION.get(environ),
            model_dir=env.SM_MODEL_DIR.get(environ),
            output_data_dir=env.SM_OUTPUT_DATA_DIR.get(environ),
            hyperparameters=env.SM_INPUT_CONFIG_DIR.get(environ) / HYPERPARAMETERS_FILE,
        )


def train(paths: TrainPaths, hp: Mapping[str, Any], schema: Schema = ADULT,
          environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Fit, evaluate on validation, log to MLflow if configured, write the artifact.

    Returns the summary written to ``metrics.json``.
    """
    train_df, train_digest = read_split(paths.train, schema)
    val_df, val_digest = read_split(paths.validation, schema)
    _check_split(train_df, schema, "train", paths.train)
    _check_split(val_df, schema, "validation", paths.validation)
    features = schema.feature_names
    x_train, y_train = train_df[features], train_df[schema.label].to_numpy()
    x_val, y_val = val_df[features], val_df[schema.label].to_numpy()

    started = time.perf_counter()
    estimator = build_estimator(schema, estimator_params(hp)).fit(x_train, y_train)
    fit_seconds = time.perf_counter() - started
    scores = estimator.predict_proba(x_val)[:, 1]
    metrics = classification_metrics(y_val, scores, hp["threshold"])
    metrics["fit_seconds"] = fit_seconds
    metrics["iterations"] = float(estimator.named_steps["model"].n_iter_)

    # Importance is an estimate: a seeded sample keeps its cost flat as the validation split grows.
    sample = np.random.default_rng(hp["seed"]).permutation(len(x_val))[: hp["permutation_max_rows"]]
    sample.sort()
    imp = permutation_importance(estimator, x_val.iloc[sample], y_val[sample], scoring="roc_auc",
                                 n_repeats=hp["permutation_repeats"], random_state=hp["seed"], n_jobs=1)
    importance = {
        "split": "validation", "scoring": "roc_auc", "n_repeats": hp["permutation_repeats"], "rows": len(sample),
        "features": {f: {"mean": float(m), "std": float(s)}
                     for f, m, s in zip(features, imp.importances_mean, imp.importances_std, strict=True)},
    }
    artifact: dict[str, Any] = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "estimator": estimator,
        "schema": schema.to_dict(),
        "feature_names": features,
        "label": schema.label,
        "positive_label": schema.positive_label,
        "threshold": hp["threshold"],
        "hyperparameters": dict(hp),
        "metrics": {"validation": metrics},
        "permutation_importance": importance,
        "prediction_baseline": prediction_stats(scores, hp["threshold"]),
        "data": {"train": train_digest, "validation": val_digest},
        "versions": versions(),
        "provenance": env.provenance(environ),
        "mlflow": None,
    }
    artifact["content_sha256"] = content_digest(artifact)

    tracking_uri = env.MLFLOW_TRACKING_URI.get(environ)
    if tracking_uri:
        model_path = log_to_mlflow(artifact, paths.model_dir, x_val, scores, tracking_uri,
                                   env.MLFLOW_EXPERIMENT_NAME.get(environ))
    else:
        model_path = save_artifact(artifact, paths.model_dir)

    summary = {
        "metrics": {"validation": metrics},
        "hyperparameters": dict(hp),
        "data": artifact["data"],
        "model": {"path": str(model_path), "sha256": sha256_file(model_path),
                  "content_sha256": artifact["content_sha256"]},
        "mlflow": artifact["mlflow"],
        "permutation_importance": importance,
    }
    paths.output_data_dir.mkdir(parents=True, exist_ok=True)
    (paths.output_data_dir / "metrics.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary


def log_to_mlflow(artifact: dict[str, Any], model_dir: Path, x_val: pd.DataFrame, scores: np.ndarray,
                  tracking_uri: str, experiment: str) -> Path:
    """Log params, metrics, digests, importances and the model; return the saved artifact path.

    mlflow is imported here only, so the step runs without it when tracking is off.
    """
    with tracking(tracking_uri) as mlflow:
        mlflow.set_experiment(experiment)
        return _log_run(mlflow, artifact, model_dir, x_val, scores, tracking_uri)


def _log_run(mlflow: Any, artifact: dict[str, Any], model_dir: Path, x_val: pd.DataFrame, scores: np.ndarray,
             tracking_uri: str) -> Path:
    import cloudpickle  # an MLflow dependency
    import mlflow.sklearn
    from mlflow.models import infer_signature

    with mlflow.start_run() as run:
        artifact["mlflow"] = {"tracking_uri": tracking_uri, "run_id": run.info.run_id,
                              "experiment_id": run.info.experiment_id}
        mlflow.log_params(artifact["hyperparameters"])
        mlflow.log_metrics({f"validation_{k}": v for k, v in artifact["metrics"]["validation"].items()})
        tags = {f"data.{split}.{name}.sha256": digest
                for split, info in artifact["data"].items() for name, digest in info["files"].items()}
        tags.update({f"data.{split}.rows": str(info["rows"]) for split, info in artifact["data"].items()})
        tags.update({f"provenance.{k}": v for k, v in artifact["provenance"].items()})
        tags["model.format"] = f"{MODEL_FORMAT} v{MODEL_FORMAT_VERSION}"
        mlflow.set_tags(tags)
        mlflow.log_dict(artifact["permutation_importance"], "permutation_importance.json")
        mlflow.log_dict(artifact["prediction_baseline"], "prediction_baseline.json")
        mlflow.log_dict(artifact["schema"], "schema.json")
        example = x_val.head(50).astype(object).where(x_val.head(50).notna(), None)
        # Explicit requirements: MLflow's inference would re-import the model in a subprocess.
        requirements = [f"{dist}=={version}" for dist, version in (
            ("scikit-learn", artifact["versions"]["sklearn"]), ("numpy", artifact["versions"]["numpy"]),
            ("pandas", artifact["versions"]["pandas"]), ("cloudpickle", cloudpickle.__version__))]
        mlflow.sklearn.log_model(
            artifact["estimator"], name="model", serialization_format="cloudpickle",
            signature=infer_signature(example, scores[:50]), pip_requirements=requirements,
        )
        path = save_artifact(artifact, model_dir)
        mlflow.log_artifact(str(path), artifact_path="artifact")
    return path


def write_failure(message: str, environ: Mapping[str, str] | None = None) -> None:
    """SageMaker reads /opt/ml/output/failure into the job's FailureReason."""
    out = env.SM_OUTPUT_DIR.get(environ)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "failure").write_text(message[:1000] + "\n")
    except OSError as exc:  # outside a container the default path is usually not writable
        print(f"(could not write failure reason to {out}: {exc})", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m model_code.train", description="Train the model.")
    p.add_argument("--train", type=Path, help="train folder or CSV (default $SM_CHANNEL_TRAIN)")
    p.add_argument("--validation", type=Path, help="validation folder or CSV (default $SM_CHANNEL_VALIDATION)")
    p.add_argument("--model-dir", type=Path, help="output folder for model.joblib (default $SM_MODEL_DIR)")
    p.add_argument("--output-data-dir", type=Path, help="folder for metrics.json (default $SM_OUTPUT_DATA_DIR)")
    p.add_argument("--hyperparameters", type=Path,
                   help="hyperparameters.json (default $SM_INPUT_CONFIG_DIR/hyperparameters.json)")
    for h in HYPERPARAMETERS:
        p.add_argument(f"--{h.name.replace('_', '-')}", f"--{h.name}", dest=h.name, default=None, metavar="VALUE",
                       help=f"{h.doc} (default {h.default}; {h.rule})")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    defaults = TrainPaths.from_env()
    paths = TrainPaths(
        train=args.train or defaults.train,
        validation=args.validation or defaults.validation,
        model_dir=args.model_dir or defaults.model_dir,
        output_data_dir=args.output_data_dir or defaults.output_data_dir,
        hyperparameters=args.hyperparameters or defaults.hyperparameters,
    )
    overrides = {h.name: getattr(args, h.name) for h in HYPERPARAMETERS if getattr(args, h.name) is not None}
    try:
        hp = resolve_hyperparameters(read_hyperparameters_file(paths.hyperparameters), overrides,
                                     origin=str(paths.hyperparameters))
        summary = train(paths, hp)
    except (DataError, HyperparameterError, TrackingError) as exc:
        print(f"train failed: {exc}", file=sys.stderr)
        write_failure(f"train failed: {exc}")
        return 1
    m = summary["metrics"]["validation"]
    print(f"train: validation auc={m['auc']:.4f} accuracy={m['accuracy']:.4f}; model {summary['model']['path']}"
          + (f"; mlflow run {summary['mlflow']['run_id']}" if summary["mlflow"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

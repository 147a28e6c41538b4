"""Train step: choose among the problem's candidate estimators by cross-validation on the train
channel, fit the best on it, score the validation channel, write one self-describing artifact
(``$SM_MODEL_DIR/model.joblib``, see model_code/model.py) and, when ``MLFLOW_TRACKING_URI`` is
set, log the run to MLflow (each cross-validated candidate as a child run).

SageMaker container contract (the local executor maps the same paths to a run folder)::

    train channel       $SM_CHANNEL_TRAIN       (/opt/ml/input/data/train)       CSV with label
    validation channel  $SM_CHANNEL_VALIDATION  (/opt/ml/input/data/validation)  CSV with label
    hyperparameters     $SM_INPUT_CONFIG_DIR/hyperparameters.json  (every value a string)
    model               $SM_MODEL_DIR/model.joblib                 (/opt/ml/model)
    side outputs        $SM_OUTPUT_DATA_DIR/metrics.json           (/opt/ml/output/data)
    failure reason      $SM_OUTPUT_DIR/failure                     (/opt/ml/output), on error

Command line: ``python -m model_code.train [--problem DIR] [--train DIR] [--validation DIR]
[--model-dir DIR] [--hyperparameters FILE] [--learning-rate 0.05 ...]``. The problem is
model_code/problem.py's (``--problem``, else $MLOPS_PROBLEM_DIR, else the bundle's).

Hyperparameters: the generic ones below (``HYPERPARAMETERS``) and each candidate's estimator
parameters (model_code/estimators.py), as ``<param>`` (every candidate that has it) or
``<candidate>__<param>`` (that one). Precedence: estimator defaults < the problem's ``params`` <
hyperparameters.json < command-line options. ``candidate`` restricts the choice to one candidate.
SageMaker's own keys (``sagemaker_*``, ``_tuning_objective_metric``) are ignored; any other
unknown key is an error.

Data errors (bad types, missing columns, a split with one class) stop the step before anything
is written to the model folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.inspection import permutation_importance
from sklearn.model_selection import KFold, StratifiedKFold

from model_code import edge, env, estimators, metrics
from model_code.baseline import prediction_stats
from model_code.data import read_split, sha256_file
from model_code.estimators import Param, parse_bool
from model_code.model import (
    MODEL_FORMAT,
    MODEL_FORMAT_VERSION,
    content_digest,
    estimator_output,
    save_artifact,
    versions,
)
from model_code.problem import Problem, ProblemError, step_problem
from model_code.problem_module import ModuleError, ProblemModule
from model_code.schema import DataError, Schema
from model_code.tracking import TrackingError, tracking

HYPERPARAMETERS_FILE = "hyperparameters.json"
IGNORED_PREFIXES = ("sagemaker_", "_tuning_objective_metric", "mlops_code_")
SEPARATOR = "__"
OBJECTIVE_PREFIX = "objective validation:"
"""train prints `objective validation:<primary metric>=<value>`: a tuning job's objective metric."""


class HyperparameterError(ValueError):
    """A hyperparameter is unknown, unparsable or out of range."""


HYPERPARAMETERS: tuple[Param, ...] = (
    Param("seed", int, 42, lambda v: v >= 0, ">= 0", "random state (folds, estimators, permutations)"),
    Param("threshold", float, None, lambda v: 0 < v < 1, "0 < x < 1",
          "binary: decision threshold on P(positive) (default: the problem's)"),
    Param("cv_folds", int, None, lambda v: v >= 2, ">= 2",
          "cross-validation folds when several candidates compete (default: the problem's)"),
    Param("candidate", str, "", lambda v: True, "a candidate's name, or empty for all",
          "train only this candidate (a tuning job's trial)"),
    Param("importance", parse_bool, True, lambda v: True, "true/false",
          "permutation importance on the validation split (a tuning job's trials skip it: evaluate computes it "
          "for the model kept)"),
    Param("permutation_repeats", int, 5, lambda v: v >= 1, ">= 1",
          "repeats of permutation importance on the validation split"),
    Param("permutation_max_rows", int, 5000, lambda v: v >= 100, ">= 100",
          "permutation importance uses a seeded sample of at most this many validation rows"),
)
"""The generic hyperparameters; the estimators' own come from the problem's candidates."""
_GENERIC = {h.name: h for h in HYPERPARAMETERS}


def _text(raw: Any) -> str:
    text = raw if isinstance(raw, str) else json.dumps(raw)
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':  # the SageMaker SDK JSON-encodes values
        text = json.loads(text)
    return text


def _typed(spec: Param, raw: Any, origin: str) -> Any:
    try:
        return estimators.parse_value(spec, _text(raw))
    except ValueError as exc:
        raise HyperparameterError(f"{origin}: hyperparameter {exc}") from None


def resolve_hyperparameters(file_values: Mapping[str, Any] | None = None,
                            overrides: Mapping[str, Any] | None = None,
                            origin: str = "hyperparameters.json", problem: Problem | None = None) -> dict[str, Any]:
    """The generic values, plus ``candidates``: {candidate: {param: value}} (every value typed)."""
    problem = problem or step_problem()
    hp: dict[str, Any] = {h.name: h.default for h in HYPERPARAMETERS}
    hp["threshold"], hp["cv_folds"] = problem.decision_threshold, problem.cv_folds
    kinds = {c.name: problem.kind(c) for c in problem.candidates}
    params = {c.name: estimators.resolve_params(kinds[c.name], c.params) for c in problem.candidates}
    for source, values in ((origin, file_values or {}), ("command line", overrides or {})):
        for key, raw in values.items():
            if key.startswith(IGNORED_PREFIXES):
                continue
            name = key.replace("-", "_") if SEPARATOR not in key else key
            if name in _GENERIC:
                hp[name] = _typed(_GENERIC[name], raw, source)
                continue
            candidate, sep, param = name.rpartition(SEPARATOR)
            targets = [candidate] if sep else [c for c in params if kinds[c].param(name) is not None]
            if sep and (candidate not in params or kinds[candidate].param(param) is None):
                targets = []
            if not targets:
                known = sorted({*_GENERIC, *(p.name for k in kinds.values() for p in k.params),
                                *(f"{c}{SEPARATOR}{p.name}" for c, k in kinds.items() for p in k.params)})
                raise HyperparameterError(f"{source}: unknown hyperparameter {key!r}; known: {known}")
            for target in targets:
                spec = kinds[target].param(param if sep else name)
                params[target][spec.name] = _typed(spec, raw, source)  # type: ignore[union-attr]
    if hp["candidate"] and hp["candidate"] not in params:
        raise HyperparameterError(f"hyperparameter candidate={hp['candidate']!r} is not one of {sorted(params)}")
    hp["candidates"] = params
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


def _check_split(frame: pd.DataFrame, schema: Schema, name: str, where: Path) -> None:
    if not schema.is_classification:
        if len(frame) < 2:
            raise DataError(f"{where}: the {name} split has {len(frame)} row(s); at least 2 are needed")
        return
    present = sorted(frame[schema.label].unique().tolist())
    if present != list(range(len(schema.label_values))):
        found = [schema.label_values[i] for i in present]
        raise DataError(f"{where}: the {name} split must hold every class {list(schema.label_values)} "
                        f"of {schema.label!r}; found {found} in {len(frame)} row(s)")


def _folds(schema: Schema, y: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    if schema.is_classification:
        smallest = int(np.bincount(y).min())
        splitter: Any = StratifiedKFold(min(folds, max(smallest, 2)), shuffle=True, random_state=seed)
        return list(splitter.split(np.zeros(len(y)), y))
    return list(KFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y))))


def select_candidate(problem: Problem, hp: Mapping[str, Any], x: pd.DataFrame, y: np.ndarray) -> dict[str, Any]:
    """Cross-validate every candidate on the train split by the primary metric; the best is kept.

    The same folds for every candidate; the winner is the best mean, ties to the first declared.
    One candidate is kept without cross-validation (nothing to compare).
    """
    names = [hp["candidate"]] if hp["candidate"] else [c.name for c in problem.candidates]
    if len(names) == 1:
        return {"chosen": names[0], "metric": problem.primary_metric, "folds": 0, "candidates": {}}
    schema, folds = problem.schema, _folds(problem.schema, y, hp["cv_folds"], hp["seed"])
    results: dict[str, Any] = {}
    for name in names:
        candidate = problem.candidate(name)
        params = hp["candidates"][name]
        base = problem.build(candidate, params, hp["seed"])
        scores, started = [], time.perf_counter()
        for train_idx, test_idx in folds:
            fitted = clone(base).fit(x.iloc[train_idx], y[train_idx])
            out = estimator_output(fitted, schema.task, x.iloc[test_idx])
            scores.append(metrics.one(schema.task, problem.primary_metric, y[test_idx], out, hp["threshold"]))
        results[name] = {"estimator": candidate.estimator, "params": dict(params), "scores": scores,
                         "mean": float(np.mean(scores)), "std": float(np.std(scores)),
                         "seconds": time.perf_counter() - started}
    chosen = names[0]
    for name in names[1:]:
        if problem.better(results[name]["mean"], results[chosen]["mean"]):
            chosen = name
    return {"chosen": chosen, "metric": problem.primary_metric, "folds": len(folds), "candidates": results}


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


def importances(estimator: Any, problem: Problem, x: pd.DataFrame, y: np.ndarray, hp: Mapping[str, Any],
                split: str) -> dict[str, Any]:
    """Permutation importance of each feature on the primary metric, over a seeded sample of `split`:
    an estimate whose cost stays flat as the split grows."""
    sample = np.random.default_rng(hp["seed"]).permutation(len(x))[: hp["permutation_max_rows"]]
    sample.sort()
    imp = permutation_importance(estimator, x.iloc[sample], y[sample],
                                 scoring=_importance_scorer(problem, hp["threshold"]),
                                 n_repeats=hp["permutation_repeats"], random_state=hp["seed"], n_jobs=1)
    return {
        "split": split, "scoring": problem.primary_metric, "n_repeats": hp["permutation_repeats"],
        "rows": len(sample),
        "features": {f: {"mean": float(m), "std": float(s)}
                     for f, m, s in zip(x.columns, imp.importances_mean, imp.importances_std, strict=True)},
    }


def _importance_scorer(problem: Problem, threshold: float) -> Any:
    sign = 1.0 if problem.direction == "higher" else -1.0  # permutation_importance wants higher is better

    def score(estimator: Any, x: pd.DataFrame, y: np.ndarray) -> float:
        out = estimator_output(estimator, problem.task, x)
        return sign * metrics.one(problem.task, problem.primary_metric, y, out, threshold)

    return score


def train(paths: TrainPaths, hp: Mapping[str, Any], problem: Problem | None = None,
          environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Select, fit, evaluate on validation, log to MLflow if configured, write the artifact.

    Returns the summary written to ``metrics.json``.
    """
    problem = problem or step_problem()
    schema = problem.schema
    train_df, train_digest = read_split(paths.train, schema)
    val_df, val_digest = read_split(paths.validation, schema)
    _check_split(train_df, schema, "train", paths.train)
    _check_split(val_df, schema, "validation", paths.validation)
    features = schema.feature_names
    x_train, y_train = train_df[features], train_df[schema.label].to_numpy()
    x_val, y_val = val_df[features], val_df[schema.label].to_numpy()

    selection = select_candidate(problem, hp, x_train, y_train)
    chosen = problem.candidate(selection["chosen"])
    params = hp["candidates"][chosen.name]
    started = time.perf_counter()
    estimator = problem.build(chosen, params, hp["seed"]).fit(x_train, y_train)
    fit_seconds = time.perf_counter() - started
    output = estimator_output(estimator, schema.task, x_val)
    threshold = hp["threshold"]
    validation = metrics.compute(schema.task, y_val, output, threshold)
    validation["fit_seconds"] = fit_seconds
    iterations = getattr(estimator.named_steps["model"], "n_iter_", None)
    if iterations is not None:
        validation["iterations"] = float(np.max(iterations))

    importance = importances(estimator, problem, x_val, y_val, hp, "validation") if hp["importance"] else None
    onnx_export = edge.export(estimator, schema, paths.model_dir, x_val)
    used = {k: v for k, v in hp.items() if k != "candidates"} | {"estimator": chosen.estimator,
                                                                "candidate": chosen.name} | params
    artifact: dict[str, Any] = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "estimator": estimator,
        "task": schema.task,
        "problem": problem.to_dict(),
        "schema": schema.to_dict(),
        "feature_names": features,
        "label": schema.label,
        "positive_label": schema.positive_label,
        "threshold": threshold,
        "hyperparameters": used,
        "selection": selection,
        "metrics": {"validation": validation},
        "permutation_importance": importance,
        "prediction_baseline": prediction_stats(output, schema.task, threshold, schema.label_values),
        "onnx": onnx_export,
        "data": {"train": train_digest, "validation": val_digest},
        "versions": versions(),
        "provenance": env.provenance(environ),
        "mlflow": None,
    }
    artifact["content_sha256"] = content_digest(artifact)

    tracking_uri = env.MLFLOW_TRACKING_URI.get(environ)
    if tracking_uri:
        model_path = log_to_mlflow(artifact, paths.model_dir, x_val, output, tracking_uri,
                                   env.MLFLOW_EXPERIMENT_NAME.get(environ))
    else:
        model_path = save_artifact(artifact, paths.model_dir)

    summary = {
        "metrics": {"validation": validation},
        "primary_metric": {"name": problem.primary_metric, "direction": problem.direction,
                           "value": validation[problem.primary_metric]},
        "hyperparameters": used,
        "selection": selection,
        "data": artifact["data"],
        "model": {"path": str(model_path), "sha256": sha256_file(model_path),
                  "content_sha256": artifact["content_sha256"]},
        "mlflow": artifact["mlflow"],
        "permutation_importance": importance,
        "onnx": onnx_export,
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
        if artifact["permutation_importance"]:
            mlflow.log_dict(artifact["permutation_importance"], "permutation_importance.json")
        mlflow.log_dict(artifact["prediction_baseline"], "prediction_baseline.json")
        mlflow.log_dict(artifact["schema"], "schema.json")
        mlflow.log_dict(artifact["problem"], "problem.json")
        _log_candidates(mlflow, artifact["selection"])
        example = x_val.head(50).astype(object).where(x_val.head(50).notna(), None)
        # Explicit requirements: MLflow's inference would re-import the model in a subprocess.
        requirements = [f"{dist}=={version}" for dist, version in (
            ("scikit-learn", artifact["versions"]["sklearn"]), ("numpy", artifact["versions"]["numpy"]),
            ("pandas", artifact["versions"]["pandas"]), ("cloudpickle", cloudpickle.__version__))]
        declared = (artifact["problem"] or {}).get("module")
        module = sys.modules.get(ProblemModule.from_dict(declared).name) if declared else None
        if module is not None:  # the MLflow model then loads without the problem's module installed
            cloudpickle.register_pickle_by_value(module)
        try:
            mlflow.sklearn.log_model(
                artifact["estimator"], name="model", serialization_format="cloudpickle",
                signature=infer_signature(example, scores[:50]), pip_requirements=requirements,
            )
        finally:
            if module is not None:
                cloudpickle.unregister_pickle_by_value(module)
        path = save_artifact(artifact, model_dir)
        mlflow.log_artifact(str(path), artifact_path="artifact")
        if (artifact.get("onnx") or {}).get("exported"):
            mlflow.log_artifact(str(model_dir / artifact["onnx"]["file"]), artifact_path="artifact")
    return path


def _log_candidates(mlflow: Any, selection: Mapping[str, Any]) -> None:
    """One child run per cross-validated candidate: its parameters and fold scores."""
    for name, result in selection["candidates"].items():
        with mlflow.start_run(run_name=f"candidate-{name}", nested=True):
            mlflow.log_params({"candidate": name, "estimator": result["estimator"], **result["params"]})
            mlflow.log_metrics({f"cv_{selection['metric']}_mean": result["mean"],
                                f"cv_{selection['metric']}_std": result["std"], "cv_seconds": result["seconds"]})
            mlflow.set_tags({"candidate.chosen": str(name == selection["chosen"]).lower()})


def write_failure(message: str, environ: Mapping[str, str] | None = None) -> None:
    """SageMaker reads /opt/ml/output/failure into the job's FailureReason."""
    out = env.SM_OUTPUT_DIR.get(environ)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "failure").write_text(message[:1000] + "\n")
    except OSError as exc:  # outside a container the default path is usually not writable
        print(f"(could not write failure reason to {out}: {exc})", file=sys.stderr)


def build_parser(problem: Problem | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m model_code.train", description="Train the model.")
    p.add_argument("--problem", type=Path, help="problem folder (default $MLOPS_PROBLEM_DIR, else the bundle's)")
    p.add_argument("--train", type=Path, help="train folder or CSV (default $SM_CHANNEL_TRAIN)")
    p.add_argument("--validation", type=Path, help="validation folder or CSV (default $SM_CHANNEL_VALIDATION)")
    p.add_argument("--model-dir", type=Path, help="output folder for model.joblib (default $SM_MODEL_DIR)")
    p.add_argument("--output-data-dir", type=Path, help="folder for metrics.json (default $SM_OUTPUT_DATA_DIR)")
    p.add_argument("--hyperparameters", type=Path,
                   help="hyperparameters.json (default $SM_INPUT_CONFIG_DIR/hyperparameters.json)")
    for h in (*HYPERPARAMETERS, *estimator_options(problem)):
        p.add_argument(f"--{h.name.replace('_', '-')}", f"--{h.name}", dest=h.name, default=None, metavar="VALUE",
                       help=f"{h.doc} (default {h.default}; {h.rule})")
    return p


def estimator_options(problem: Problem | None) -> list[Param]:
    """The candidates' parameters, once per name (an option sets it on every candidate that has it)."""
    seen: dict[str, Param] = {}
    for c in problem.candidates if problem else ():
        for param in problem.kind(c).params:
            seen.setdefault(param.name, param)
    return [q for q in seen.values() if q.name not in _GENERIC]


def main(argv: Sequence[str] | None = None) -> int:
    known, _ = _problem_arg().parse_known_args(argv)
    try:
        problem = step_problem(known.problem)
    except ProblemError as exc:
        print(f"train failed: {exc}", file=sys.stderr)
        write_failure(f"train failed: {exc}")
        return 1
    args = build_parser(problem).parse_args(argv)
    defaults = TrainPaths.from_env()
    paths = TrainPaths(
        train=args.train or defaults.train,
        validation=args.validation or defaults.validation,
        model_dir=args.model_dir or defaults.model_dir,
        output_data_dir=args.output_data_dir or defaults.output_data_dir,
        hyperparameters=args.hyperparameters or defaults.hyperparameters,
    )
    names = [h.name for h in (*HYPERPARAMETERS, *estimator_options(problem))]
    overrides = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    try:
        hp = resolve_hyperparameters(read_hyperparameters_file(paths.hyperparameters), overrides,
                                     origin=str(paths.hyperparameters), problem=problem)
        summary = train(paths, hp, problem)
    except (DataError, HyperparameterError, TrackingError, ModuleError) as exc:
        print(f"train failed: {exc}", file=sys.stderr)
        write_failure(f"train failed: {exc}")
        return 1
    primary = summary["primary_metric"]
    chosen = summary["selection"]["chosen"]
    # the objective a SageMaker tuning job reads from the log (pipelines/training.py: objective_metric)
    print(f"{OBJECTIVE_PREFIX}{primary['name']}={primary['value']!r}")
    print(f"train: candidate {chosen}, validation {primary['name']}={primary['value']:.4f}; "
          f"model {summary['model']['path']}"
          + (f"; mlflow run {summary['mlflow']['run_id']}" if summary["mlflow"] else ""))
    return 0


def _problem_arg() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--problem", type=Path)
    return p


if __name__ == "__main__":
    sys.exit(main())

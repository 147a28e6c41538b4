"""`mlops problem init` and `mlops problem check`: a draft declaration from a CSV, and a check of a
declaration against its sample data (model_code/problem.py documents the format).

`init` infers what data can tell (column types, ranges with a margin, categories, missing shares,
the task from the label) and says what it cannot: where the data came from, whether the ranges
and categories are the domain's or only this sample's, which metric and threshold the business
needs. It writes `<out>/problem.yaml`, the sample data and a dataset card to complete.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pandas as pd
import yaml

from mlops.settings import REPO_ROOT, StackSettings
from model_code import metrics
from model_code.data import read_csv_input
from model_code.problem import PROBLEM_FILE, PROBLEM_FORMAT, PROBLEM_FORMAT_VERSION, Problem, load_problem
from model_code.schema import DataError
from model_code.validate import validate_frame

TASK_CHOICES = ("auto", "binary", "multiclass", "regression")
MAX_CLASSES = 20
"""An integer or text label with at most this many values is a class label (task auto)."""
MAX_CATEGORIES = 200
RANGE_MARGIN = 0.1
"""Declared ranges extend the observed one by this share of its span on each side."""
CANDIDATES = [
    {"name": "gbm", "estimator": "hist_gradient_boosting",
     "space": {"learning_rate": {"low": 0.02, "high": 0.3, "scale": "log"},
               "max_leaf_nodes": {"low": 7, "high": 63}}},
    {"name": "forest", "estimator": "random_forest", "params": {"n_estimators": 100},
     "space": {"min_samples_leaf": {"low": 1, "high": 20}}},
    {"name": "linear", "estimator": "linear", "space": {"alpha": {"low": 0.001, "high": 100.0, "scale": "log"}}},
]


class ProblemInitError(ValueError):
    """The data cannot give a draft (no such label column, an empty file, ...)."""


@dataclass
class Draft:
    folder: Path
    document: dict[str, Any]
    inferred: list[str] = field(default_factory=list)
    to_check: list[str] = field(default_factory=list)


def _numbers(values: pd.Series) -> pd.Series | None:
    parsed = pd.Series(pd.to_numeric(values, errors="coerce"), index=values.index)
    return parsed if parsed.notna().sum() == values.notna().sum() else None


def _bounds(values: pd.Series, integer: bool) -> tuple[float, float]:
    low, high = float(values.min()), float(values.max())
    span = (high - low) or max(abs(high), 1.0)
    lo, hi = low - RANGE_MARGIN * span, high + RANGE_MARGIN * span
    if low >= 0 > lo:  # a non-negative quantity stays non-negative
        lo = 0.0
    if integer:
        return float(math.floor(lo)), float(math.ceil(hi))
    return float(f"{lo:.6g}"), float(f"{hi:.6g}")


def _feature(name: str, raw: pd.Series, draft: Draft) -> dict[str, Any]:
    missing = float(raw.isna().mean())
    entry: dict[str, Any] = {"name": name}
    numbers = _numbers(raw)
    if numbers is not None and numbers.notna().any():
        present = numbers.dropna()
        integer = bool((present == present.round()).all())
        low, high = _bounds(present, integer)
        entry |= {"type": "int" if integer else "float",
                  "minimum": int(low) if integer else low, "maximum": int(high) if integer else high}
        draft.inferred.append(f"{name}: {entry['type']} in [{present.min():g}, {present.max():g}] observed, "
                              f"declared [{entry['minimum']}, {entry['maximum']}]")
        if integer and present.nunique() <= 2:
            draft.to_check.append(f"features {name}: an integer with {present.nunique()} value(s); if it is a "
                                  f"code, declare it type: category")
    else:
        categories = sorted(raw.dropna().astype(str).unique().tolist())
        entry |= {"type": "category", "categories": categories}
        draft.inferred.append(f"{name}: category with {len(categories)} value(s)")
        draft.to_check.append(f"features {name}: are {len(categories)} categories every value the domain has? "
                              "Values outside them are scored as missing and reported as drift")
        if len(categories) > MAX_CATEGORIES:
            draft.to_check.append(f"features {name}: {len(categories)} categories is a lot; an identifier "
                                  "column should be dropped from the data")
    if missing:
        entry["max_missing_share"] = round(min(1.0, missing + 0.05), 4)
        draft.inferred.append(f"{name}: missing in {missing:.2%} of rows, declared up to "
                              f"{entry['max_missing_share']:.2%}")
    return entry


def _task(raw: pd.Series, task: str, label: str) -> str:
    numbers = _numbers(raw)
    distinct = raw.dropna().nunique()
    if task != "auto":
        if task != "regression" and distinct > MAX_CLASSES * 5:
            raise ProblemInitError(f"label {label!r} has {distinct} distinct values: not a {task} label")
        if task == "regression" and numbers is None:
            raise ProblemInitError(f"label {label!r} holds text: a regression label must be numeric")
        return task
    if distinct < 2:
        raise ProblemInitError(f"label {label!r} has {distinct} distinct value(s): nothing to learn")
    integer = numbers is not None and bool((numbers.dropna() == numbers.dropna().round()).all())
    if numbers is None or (integer and distinct <= MAX_CLASSES):
        return "binary" if distinct == 2 else "multiclass"
    return "regression"


def _classes(raw: pd.Series) -> list[Any]:
    numbers = _numbers(raw)
    if numbers is not None and bool((numbers.dropna() == numbers.dropna().round()).all()):
        return sorted(int(v) for v in numbers.dropna().unique())
    return sorted(raw.dropna().astype(str).unique().tolist())


def draft_problem(data: Path, label: str, task: str, out: Path, name: str | None = None) -> Draft:
    """Infer a declaration from ``data``; nothing is written (see ``write_draft``)."""
    if task not in TASK_CHOICES:
        raise ProblemInitError(f"--task {task!r} is not one of {', '.join(TASK_CHOICES)}")
    try:
        frame = read_csv_input(data).frame
    except DataError as exc:
        raise ProblemInitError(str(exc)) from None
    if label not in frame.columns:
        raise ProblemInitError(f"{data}: no column {label!r} for --label; columns: {list(frame.columns)}")
    target = cast(pd.Series, frame[label])
    if bool(target.isna().any()):
        raise ProblemInitError(f"{data}: label {label!r} is missing in {int(target.isna().sum())} row(s)")
    draft = Draft(out, {})
    kind = _task(target, task, label)
    slug = (name or out.resolve().name).lower().replace("_", "-")
    doc: dict[str, Any] = {"format": PROBLEM_FORMAT, "format_version": PROBLEM_FORMAT_VERSION, "name": slug,
                           "task": kind, "description": f"Predict {label} (drafted by mlops problem init)"}
    if kind == "regression":
        values = pd.Series(pd.to_numeric(target), index=target.index)
        low, high = _bounds(values, integer=False)
        doc["label"] = {"name": label, "minimum": low, "maximum": high}
        draft.inferred.append(f"task regression: {label} in [{float(values.min()):g}, {float(values.max()):g}] "
                              "observed")
    else:
        classes = _classes(target)
        doc["label"] = {"name": label, "classes": classes}
        if kind == "binary":
            doc["label"] |= {"positive": classes[-1], "decision_threshold": 0.5}
            draft.to_check.append(f"label.positive: {classes[-1]!r} is the class the model scores; is it the one "
                                  "that matters?")
        shares = target.astype(str).value_counts(normalize=True)
        draft.inferred.append(f"task {kind}: {len(classes)} classes of {label}, shares "
                              + ", ".join(f"{k} {v:.1%}" for k, v in shares.items()))
    doc["features"] = [_feature(str(c), cast(pd.Series, frame[c]), draft) for c in frame.columns if c != label]
    rows = len(frame)
    rules: dict[str, Any] = {"min_rows": max(20, min(1000, rows // 2)), "max_duplicate_share": 0.01}
    if kind != "regression":
        rarest = float(target.astype(str).value_counts(normalize=True).min())
        rules["min_class_share"] = round(min(rarest / 2, 1 / len(doc["label"]["classes"])), 4)
    doc["rules"] = rules
    draft.inferred.append(f"rules: {rows} rows here; a dataset needs at least {rules['min_rows']}")
    metric, threshold = metrics.DRAFT_PRIMARY[kind]
    doc["metrics"] = {"primary": metric, "direction": metrics.spec(kind, metric).direction, "threshold": threshold}
    draft.to_check.append(f"metrics: {metric} >= {threshold} is a starting point; set the metric and the bar a "
                          "model must clear to be registered")
    doc["model"] = {"cv_folds": 3, "candidates": CANDIDATES}
    suffix = ".csv.gz" if data.name.endswith(".gz") else ".csv"
    doc["data"] = {"sample": f"data{suffix}", "card": "DATASET.md"}
    draft.to_check.append("DATASET.md: where the data comes from, its licence, known biases, what a row is")
    draft.document = doc
    return draft


def _card(draft: Draft, data: Path) -> str:
    doc = draft.document
    lines = [f"# Dataset card: {doc['name']}", "", f"**Task.** {doc['task']}: {doc['description']}.", "",
             "## What data can tell (inferred by `mlops problem init` from "
             f"`{data.name}`)", ""]
    lines += [f"- {line}" for line in draft.inferred]
    lines += ["", "## What a person must write", ""]
    lines += [f"- [ ] {line}" for line in draft.to_check]
    return "\n".join(lines) + "\n"


def write_draft(draft: Draft, data: Path, *, force: bool = False) -> Path:
    """``problem.yaml``, the sample data and the dataset card under the draft's folder."""
    out = draft.folder
    target = out / PROBLEM_FILE
    if target.exists() and not force:
        raise ProblemInitError(f"{target} exists; pass --force to overwrite it")
    out.mkdir(parents=True, exist_ok=True)
    header = "# Drafted by `mlops problem init`: check every line marked in DATASET.md, then `mlops problem check`.\n"
    target.write_text(header + yaml.safe_dump(draft.document, sort_keys=False, allow_unicode=True, width=110))
    if data.resolve() != (out / draft.document["data"]["sample"]).resolve():
        shutil.copyfile(data, out / draft.document["data"]["sample"])
    (out / "DATASET.md").write_text(_card(draft, data))
    return target


@dataclass
class CheckResult:
    problem: Problem
    violations: list[str]
    warnings: list[str]
    rows: int


def check_problem(folder: Path) -> CheckResult:
    """Load the declaration (ProblemError names each field) and validate its sample data against it."""
    problem = load_problem(folder)
    sample = problem.sample_path
    if sample is None:
        return CheckResult(problem, [], ["data.sample is not declared: nothing to check the declaration against"], 0)
    rows = read_csv_input(sample)
    report = validate_frame(rows, problem.schema).report
    violations = [f"[{v['check']}] {v['message']}" for v in report["violations"]]
    if problem.module is not None and not violations:
        violations = check_module(problem, rows.frame)
    return CheckResult(problem, violations, [f"[{w['check']}] {w['message']}" for w in report["warnings"]],
                       report["input"]["rows"])


MODULE_CHECK_ROWS = 2000
"""The sample rows the problem's module is tried on: enough to fit, few enough to answer at once."""


def check_module(problem: Problem, frame: pd.DataFrame) -> list[str]:
    """Run the problem's own module as train would (the declaration's reading never runs it): each
    derived feature on the sample, and each estimator of the module fitted with its declared
    parameters on the first rows and scoring them. One violation per failure, naming the field."""
    from model_code import estimators
    from model_code.features import derive
    from model_code.model import estimator_output
    from model_code.schema import coerce

    data = coerce(frame.head(MODULE_CHECK_ROWS), problem.schema, source=str(problem.sample_path))
    x: pd.DataFrame = data.loc[:, problem.schema.feature_names]
    y = data[problem.schema.label].to_numpy()
    found: list[str] = []
    try:
        derive(x, problem.derived, problem.module)
    except Exception as exc:  # noqa: BLE001 -- the data scientist's code: any failure is reported
        found.append(f"[module] derived: {exc}")
        return found
    for i, candidate in enumerate(problem.candidates):
        if not candidate.estimator.startswith(estimators.MODULE_PREFIX):
            continue
        try:
            params = estimators.resolve_params(problem.kind(candidate), candidate.params)
            model = problem.build(candidate, params, 0).fit(x, y)
            estimator_output(model, problem.task, x.head(5))
        except Exception as exc:  # noqa: BLE001 -- the data scientist's code: any failure is reported
            found.append(f"[module] model.candidates[{i}] ({candidate.estimator}): {type(exc).__name__}: {exc}")
    return found


def settings_for(settings: StackSettings, folder: Path | None) -> StackSettings:
    """The stack's settings with another problem (`--problem`): its declaration, its own threshold
    (the stack's evaluationMinMetric is a bar on the stack's problem's metric). Checked like a stack file."""
    if folder is None:
        return settings
    resolved = folder.resolve()
    if resolved == settings.problem_dir.resolve():
        return settings
    try:
        problem = resolved.relative_to(REPO_ROOT).as_posix()
    except ValueError:
        problem = str(resolved)
    return dataclasses.replace(settings, problem=problem, evaluation_min_metric="")

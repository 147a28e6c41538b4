"""The problem declaration: one folder, owned by the data scientist, that every step reads.

``<dir>/problem.yaml`` (format ``mlops-stack/problem`` v1) declares the data, the task, the rules
a dataset must meet, the candidate estimators and the metrics; the sample data and its card sit
next to it. No generic step names a feature, the label or a metric: they read them from here.

::

    format: mlops-stack/problem
    format_version: 1
    name: adult-income                 # lowercase, digits, '-'
    task: binary                       # binary | multiclass | regression
    label:                             # classification: classes (positive: the class scored, binary)
      name: income_gt_50k              # regression: minimum, maximum of the target
      classes: [0, 1]
      positive: 1
      decision_threshold: 0.5          # binary: P(positive) at or above it predicts positive
    features:
      - {name: age, type: int, minimum: 16, maximum: 100, max_missing_share: 0.0, description: ...}
      - {name: workclass, type: category, categories: [Private, ...], max_missing_share: 0.1}
    rules: {min_rows: 1000, max_duplicate_share: 0.01, min_class_share: 0.1}
    metrics:
      primary: auc                     # one of the task's metrics (model_code/metrics.py)
      direction: higher                # must be the metric's own direction (a guard against typos)
      threshold: 0.75                  # the pipeline registers a model only if its test value clears it
    module: custom.py                  # optional, model_code/problem_module.py: the problem's own Python
    derived:                           # model_code/features.py: computed inside the model (no skew)
      - {name: capital_net, expression: capital_gain - capital_loss}
      - {name: age_band, function: age_band}          # a function of the module
    model:
      cv_folds: 3                      # cross-validation on the train split when there are several candidates
      candidates:                      # model_code/estimators.py: kinds and their parameters
        - {name: gbm, estimator: hist_gradient_boosting, params: {max_iter: 300}}
        - {name: knn, estimator: "module:knn", params: {n_neighbors: 25}}  # a function of the module
    data: {sample: data.csv.gz, card: DATASET.md}

Every error names the file and the field (``problem.yaml: features[3].maximum: ...``); all of
them are reported at once. The declaration travels with the code: ``pipelines/bundle.py`` puts the
folder beside ``model_code/`` in the code bundle as ``problem/``, and every model artifact embeds
the parsed declaration, so a server needs nothing but the artifact.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_code import env, estimators, metrics
from model_code.features import DerivedFeature, check_expression
from model_code.problem_module import ModuleError, ProblemModule, check_derive_function, read_module
from model_code.schema import CategoricalFeature, Feature, NumericFeature, Schema

PROBLEM_FORMAT = "mlops-stack/problem"
PROBLEM_FORMAT_VERSION = 1
PROBLEM_FILE = "problem.yaml"
TASKS = ("binary", "multiclass", "regression")
_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_PROBLEM = _ROOT / "problem"
"""Where the code bundle carries the problem (beside model_code/)."""
DEFAULT_PROBLEM = _ROOT / "problems" / "adult"
"""The repository's default problem, the Adult census (absent inside the image: the bundle carries one)."""
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_FEATURE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")


class ProblemError(ValueError):
    """A declaration is invalid: ``problems`` holds one line per field at fault."""

    def __init__(self, source: str, problems: list[str]):
        self.source, self.problems = source, problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


@dataclass(frozen=True)
class Candidate:
    name: str
    estimator: str
    params: Mapping[str, Any]
    space: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "estimator": self.estimator, "params": dict(self.params),
                "space": {k: dict(v) for k, v in self.space.items()}}


@dataclass(frozen=True)
class Problem:
    """A parsed, checked declaration. ``schema`` carries the features, label and dataset rules."""

    schema: Schema
    description: str
    primary_metric: str
    direction: str
    metric_threshold: float
    decision_threshold: float
    candidates: tuple[Candidate, ...]
    cv_folds: int
    derived: tuple[DerivedFeature, ...] = ()
    module: ProblemModule | None = None
    folder: Path | None = None
    sample: str = ""
    card: str = ""

    @property
    def name(self) -> str:
        return self.schema.name

    @property
    def task(self) -> str:
        return self.schema.task

    @property
    def metric_names(self) -> list[str]:
        return metrics.names(self.task)

    @property
    def sample_path(self) -> Path | None:
        return self.folder / self.sample if self.folder and self.sample else None

    @property
    def card_path(self) -> Path | None:
        return self.folder / self.card if self.folder and self.card else None

    def candidate(self, name: str) -> Candidate:
        for c in self.candidates:
            if c.name == name:
                return c
        raise KeyError(f"problem {self.name!r} has no candidate {name!r}; candidates: "
                       f"{[c.name for c in self.candidates]}")

    def kind(self, candidate: Candidate) -> estimators.Kind:
        """The candidate's estimator kind (built in, or a function of the problem's module)."""
        return estimators.kind_of(candidate.estimator, self.module)

    def build(self, candidate: Candidate, params: Mapping[str, Any], seed: int) -> Any:
        """The candidate's unfitted pipeline, derived features first."""
        return estimators.build(self.kind(candidate), self.schema, params, seed, self.derived, self.module)

    def hyperparameter_texts(self) -> dict[str, str]:
        """``<candidate>__<param>`` -> the declared value (else the estimator's default), as the text
        SageMaker passes in hyperparameters.json (train reads it back)."""
        values: dict[str, str] = {}
        for c in self.candidates:
            for name, value in estimators.resolve_params(self.kind(c), c.params).items():
                values[f"{c.name}__{name}"] = str(value).lower() if isinstance(value, bool) else str(value)
        return values

    def better(self, a: float, b: float) -> bool:
        """Whether metric value ``a`` beats ``b`` in the primary metric's direction."""
        return a > b if self.direction == "higher" else a < b

    def clears(self, value: float, threshold: float | None = None) -> bool:
        """Whether a test value clears the registration threshold (the declared one by default)."""
        bar = self.metric_threshold if threshold is None else threshold
        return value >= bar if self.direction == "higher" else value <= bar

    def to_dict(self) -> dict[str, Any]:
        """The declaration as plain data (what a model artifact embeds); ``from_dict`` reads it back."""
        return {
            "format": PROBLEM_FORMAT, "format_version": PROBLEM_FORMAT_VERSION,
            "schema": self.schema.to_dict(), "description": self.description,
            "metrics": {"primary": self.primary_metric, "direction": self.direction,
                        "threshold": self.metric_threshold},
            "decision_threshold": self.decision_threshold, "cv_folds": self.cv_folds,
            "candidates": [c.to_dict() for c in self.candidates], "sample": self.sample, "card": self.card,
            "derived": [d.to_dict() for d in self.derived],
            "module": self.module.to_dict() if self.module else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Problem:
        m = data["metrics"]
        return cls(
            schema=Schema.from_dict(data["schema"]), description=data.get("description", ""),
            primary_metric=m["primary"], direction=m["direction"], metric_threshold=float(m["threshold"]),
            decision_threshold=float(data["decision_threshold"]), cv_folds=int(data["cv_folds"]),
            candidates=tuple(Candidate(c["name"], c["estimator"], c["params"], c.get("space", {}))
                             for c in data["candidates"]),
            sample=data.get("sample", ""), card=data.get("card", ""),
            derived=tuple(DerivedFeature.from_dict(d) for d in data.get("derived", [])),
            module=ProblemModule.from_dict(data["module"]) if data.get("module") else None,
        )


# --- reading ----------------------------------------------------------------------------------------


class _Reader:
    """Typed access to a YAML mapping that records every problem with the field's path."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def mapping(self, value: Any, where: str, allowed: set[str], required: set[str] = frozenset()) -> dict:
        if not isinstance(value, dict):
            self.fail(where, f"must be a mapping, got {type(value).__name__}")
            return {}
        for key in value:
            if key not in allowed:
                close = [a for a in sorted(allowed) if a[:3] == str(key)[:3]]
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.fail(f"{where}.{key}" if where else str(key), f"unknown key{hint}; known: {sorted(allowed)}")
        for key in sorted(required - set(value)):
            self.fail(f"{where}.{key}" if where else key, "is required")
        return value

    def number(self, value: Any, where: str, *, integer: bool = False, low: float = -math.inf,
               high: float = math.inf) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float) or (integer and not isinstance(value, int)):
            self.fail(where, f"must be {'an integer' if integer else 'a number'}, got {value!r}")
            return None
        if not math.isfinite(value) or not low <= value <= high:
            self.fail(where, f"{value} is outside {low}..{high}")
            return None
        return value

    def text(self, value: Any, where: str, pattern: re.Pattern[str] | None = None, what: str = "") -> str:
        if not isinstance(value, str) or not value:
            self.fail(where, f"must be a non-empty string, got {value!r}")
            return ""
        if pattern and not pattern.match(value):
            self.fail(where, f"{value!r} is not {what}")
        return value


def _feature(r: _Reader, raw: Any, where: str) -> Feature | None:
    f = r.mapping(raw, where, {"name", "type", "minimum", "maximum", "categories", "max_missing_share",
                               "description"}, {"name", "type"})
    if not f:
        return None
    name = r.text(f.get("name"), f"{where}.name", _FEATURE_NAME, "a column name (letters, digits, _ . -)")
    kind = f.get("type")
    missing = r.number(f.get("max_missing_share", 0.0), f"{where}.max_missing_share", low=0.0, high=1.0) or 0.0
    description = str(f.get("description", ""))
    if kind in ("int", "float"):
        for key in ("minimum", "maximum"):
            if key not in f:
                r.fail(f"{where}.{key}", f"is required for a {kind} feature")
        if "categories" in f:
            r.fail(f"{where}.categories", f"only category features have categories ({name!r} is {kind})")
        low = r.number(f.get("minimum", 0), f"{where}.minimum", integer=kind == "int")
        high = r.number(f.get("maximum", 0), f"{where}.maximum", integer=kind == "int")
        if low is not None and high is not None and low >= high:
            r.fail(f"{where}.maximum", f"{high} must be above minimum {low}")
        return NumericFeature(name, kind, low or 0, high or 0, missing, description)
    if kind == "category":
        cats = f.get("categories")
        if not isinstance(cats, list) or not cats:
            r.fail(f"{where}.categories", "must be a non-empty list for a category feature")
            return None
        for key in ("minimum", "maximum"):
            if key in f:
                r.fail(f"{where}.{key}", f"only int and float features have a range ({name!r} is a category)")
        texts = [str(c) for c in cats]
        if len(set(texts)) != len(texts):
            r.fail(f"{where}.categories", f"repeats {sorted({c for c in texts if texts.count(c) > 1})}")
        return CategoricalFeature(name, tuple(texts), missing, description)
    r.fail(f"{where}.type", f"{kind!r} is not one of int, float, category")
    return None


def _label(r: _Reader, raw: Any, task: str) -> dict[str, Any]:
    if task == "regression":
        lab = r.mapping(raw, "label", {"name", "minimum", "maximum", "description"}, {"name", "minimum", "maximum"})
        low = r.number(lab.get("minimum", 0), "label.minimum")
        high = r.number(lab.get("maximum", 1), "label.maximum")
        if low is not None and high is not None and low >= high:
            r.fail("label.maximum", f"{high} must be above minimum {low}")
        return {"label": r.text(lab.get("name"), "label.name", _FEATURE_NAME, "a column name"),
                "label_values": (), "positive_label": None, "label_minimum": low, "label_maximum": high}
    keys = {"name", "classes", "description"} | ({"positive", "decision_threshold"} if task == "binary" else set())
    lab = r.mapping(raw, "label", keys, {"name", "classes"} | ({"positive"} if task == "binary" else set()))
    classes = lab.get("classes")
    values: list[Any] = []
    if not isinstance(classes, list) or any(isinstance(c, bool) or not isinstance(c, int | str) for c in classes):
        r.fail("label.classes", f"must be a list of integers or strings, got {classes!r}")
    elif len({str(c) for c in classes}) != len(classes):
        r.fail("label.classes", f"repeats a class: {classes}")
    elif task == "binary" and len(classes) != 2:
        r.fail("label.classes", f"a binary task has exactly 2 classes, got {len(classes)}")
    elif task == "multiclass" and len(classes) < 3:
        r.fail("label.classes", f"a multiclass task has at least 3 classes, got {len(classes)} (use task: binary)")
    else:
        values = list(classes)
    positive = lab.get("positive")
    if task == "binary" and values:
        if positive not in values:
            r.fail("label.positive", f"{positive!r} is not one of the classes {values}")
        else:  # the scored class is the second: predict_proba's column 1
            values = [v for v in values if v != positive] + [positive]
    return {"label": r.text(lab.get("name"), "label.name", _FEATURE_NAME, "a column name"),
            "label_values": tuple(values), "positive_label": positive if task == "binary" else None,
            "label_minimum": None, "label_maximum": None}


def _derived(r: _Reader, raw: Any, numeric: set[str], taken: set[str],
             module: ProblemModule | None) -> tuple[DerivedFeature, ...]:
    """``derived:``, each an expression over numeric features and the derived ones before it, or a
    function of the problem's module."""
    if not isinstance(raw, list):
        r.fail("derived", f"must be a list, got {type(raw).__name__}")
        return ()
    out: list[DerivedFeature] = []
    known = set(numeric)
    for i, item in enumerate(raw):
        where = f"derived[{i}]"
        d = r.mapping(item, where, {"name", "expression", "function", "description"}, {"name"})
        if not d:
            continue
        name = r.text(d.get("name"), f"{where}.name", _FEATURE_NAME, "a column name")
        if name in taken:
            r.fail(f"{where}.name", f"{name!r} is already a column")
        expression, function = "", ""
        if ("expression" in d) == ("function" in d):
            r.fail(where, "needs exactly one of expression (arithmetic) or function (of the problem's module)")
        elif "expression" in d:
            expression = r.text(d.get("expression"), f"{where}.expression")
            if expression and (problem := check_expression(expression, known)):
                r.fail(f"{where}.expression", problem)
        else:
            function = r.text(d.get("function"), f"{where}.function")
            if module is None:
                r.fail(f"{where}.function", "the problem declares no module (module: <file>.py) to hold it")
            elif function:
                try:
                    check_derive_function(module, function)
                except ModuleError as exc:
                    r.fail(f"{where}.function", str(exc))
        taken.add(name)
        known.add(name)
        out.append(DerivedFeature(name, expression, str(d.get("description", "")), function))
    return tuple(out)


def _candidates(r: _Reader, raw: Any, module: ProblemModule | None) -> tuple[tuple[Candidate, ...], int]:
    model = r.mapping(raw, "model", {"cv_folds", "candidates"}, {"candidates"})
    folds = r.number(model.get("cv_folds", 3), "model.cv_folds", integer=True, low=2, high=20)
    listed = model.get("candidates")
    if not isinstance(listed, list) or not listed:
        r.fail("model.candidates", "must be a non-empty list")
        return (), int(folds or 3)
    out: list[Candidate] = []
    for i, item in enumerate(listed):
        where = f"model.candidates[{i}]"
        c = r.mapping(item, where, {"name", "estimator", "params", "space"}, {"name", "estimator"})
        if not c:
            continue
        name = r.text(c.get("name"), f"{where}.name", re.compile(r"^[a-z][a-z0-9_]{0,31}$"),
                      "a candidate name (lowercase letters, digits, _)")
        kind = c.get("estimator")
        try:
            spec = estimators.kind_of(str(kind), module)
        except (KeyError, ModuleError) as exc:
            r.fail(f"{where}.estimator", str(exc.args[0]))
            continue
        params, space = c.get("params") or {}, c.get("space") or {}
        for problem in estimators.check_params(spec, params, space):
            r.fail(where, problem)
        out.append(Candidate(name, spec.name, dict(params), {k: dict(v) for k, v in space.items()}
                             if isinstance(space, dict) else {}))
    names = [c.name for c in out]
    for n in sorted({n for n in names if names.count(n) > 1}):
        r.fail("model.candidates", f"name {n!r} is used twice")
    return tuple(out), int(folds or 3)


def _module(r: _Reader, raw: Any, folder: Path | None) -> ProblemModule | None:
    """``module:``, the problem's own Python file, read (its source is checked to parse, never run here)."""
    if raw is None:
        return None
    file = r.text(raw, "module")
    if not file:
        return None
    if folder is None:
        r.fail("module", "a module is read from the problem's folder, and this declaration has none")
        return None
    try:
        return read_module(folder, file)
    except ModuleError as exc:
        r.fail("module", str(exc))
        return None


def parse_problem(document: Any, source: str = PROBLEM_FILE, folder: Path | None = None, *,
                  check_files: bool = True) -> Problem:
    """Check a parsed ``problem.yaml`` document; raises ProblemError listing every field at fault.
    ``check_files``: the declared sample and card must exist in ``folder`` (the code bundle leaves the
    sample out: a step's data is its input)."""
    r = _Reader()
    doc = r.mapping(document, "", {"format", "format_version", "name", "task", "description", "label", "features",
                                   "rules", "metrics", "model", "data", "derived", "module"},
                    {"format", "format_version", "name", "task", "label", "features", "metrics", "model"})
    if not doc:
        raise ProblemError(source, r.problems)
    if doc.get("format") != PROBLEM_FORMAT or doc.get("format_version") != PROBLEM_FORMAT_VERSION:
        r.fail("format", f"expected format {PROBLEM_FORMAT} and format_version {PROBLEM_FORMAT_VERSION}, got "
               f"{doc.get('format')!r} v{doc.get('format_version')!r}")
    name = r.text(doc.get("name"), "name", _NAME, "a problem name (lowercase letters, digits, -)")
    task = doc.get("task")
    if task not in TASKS:
        r.fail("task", f"{task!r} is not one of {', '.join(TASKS)}")
        raise ProblemError(source, r.problems)
    label = _label(r, doc.get("label"), task)
    listed = doc.get("features")
    features: list[Feature] = []
    if not isinstance(listed, list) or not listed:
        r.fail("features", "must be a non-empty list")
    else:
        for i, raw in enumerate(listed):
            f = _feature(r, raw, f"features[{i}]")
            if f is not None:
                features.append(f)
    names = [f.name for f in features]
    for n in sorted({n for n in names if names.count(n) > 1}):
        r.fail("features", f"{n!r} is declared twice")
    if label["label"] in names:
        r.fail("label.name", f"{label['label']!r} is also a feature")

    module = _module(r, doc.get("module"), folder)
    derived = _derived(r, doc.get("derived", []), {f.name for f in features if isinstance(f, NumericFeature)},
                       set(names) | {label["label"]}, module)
    rule_keys = {"min_rows", "max_duplicate_share"} | ({"min_class_share"} if task != "regression" else set())
    rules = r.mapping(doc.get("rules", {}), "rules", rule_keys)
    min_rows = r.number(rules.get("min_rows", 1000), "rules.min_rows", integer=True, low=20) or 1000
    dup = r.number(rules.get("max_duplicate_share", 0.01), "rules.max_duplicate_share", low=0, high=1)
    n_classes = max(len(label["label_values"]), 2)
    min_share = r.number(rules.get("min_class_share", 0.0 if task == "regression" else 0.01),
                         "rules.min_class_share", low=0, high=1 / n_classes)

    m = r.mapping(doc.get("metrics"), "metrics", {"primary", "direction", "threshold"},
                  {"primary", "direction", "threshold"})
    primary = m.get("primary")
    direction = m.get("direction")
    threshold = m.get("threshold")
    if primary not in metrics.primary_names(task):
        r.fail("metrics.primary", f"{primary!r} is not a {task} metric; {task} metrics: "
               f"{metrics.primary_names(task)}")
    else:
        spec = metrics.spec(task, primary)
        if direction != spec.direction:
            r.fail("metrics.direction", f"{primary} is better {spec.direction}, not {direction!r}")
        problem = spec.check_threshold(threshold)
        if problem:
            r.fail("metrics.threshold", problem)
    decision = 0.5
    if task == "binary" and isinstance(doc.get("label"), dict):
        decision = r.number(doc["label"].get("decision_threshold", 0.5), "label.decision_threshold",
                            low=1e-9, high=1 - 1e-9) or 0.5
    candidates, folds = _candidates(r, doc.get("model"), module)
    data = r.mapping(doc.get("data", {}), "data", {"sample", "card"})
    for key in ("sample", "card"):
        value = data.get(key, "")
        if value and check_files and folder is not None and not (folder / str(value)).is_file():
            r.fail(f"data.{key}", f"{folder / str(value)} does not exist")
    if r.problems:
        raise ProblemError(source, r.problems)
    schema = Schema(
        name=name, features=tuple(features), task=task, label=label["label"],
        label_values=label["label_values"], positive_label=label["positive_label"],
        label_minimum=label["label_minimum"], label_maximum=label["label_maximum"], min_rows=int(min_rows),
        max_duplicate_share=float(dup if dup is not None else 0.01), min_minority_share=float(min_share or 0.0),
    )
    return Problem(schema=schema, description=str(doc.get("description", "")), primary_metric=primary,
                   direction=direction, metric_threshold=float(threshold), decision_threshold=float(decision),
                   candidates=candidates, cv_folds=folds, derived=derived, module=module, folder=folder,
                   sample=str(data.get("sample", "")),
                   card=str(data.get("card", "")))


def load_problem(folder: Path | str, *, check_files: bool = True) -> Problem:
    """Read and check ``<folder>/problem.yaml`` (or a path to the file itself); see parse_problem."""
    import yaml  # the image installs PyYAML; imported here so artifacts load without it

    path = Path(folder)
    if path.is_dir():
        path = path / PROBLEM_FILE
    if not path.is_file():
        raise ProblemError(str(path), [f"no {PROBLEM_FILE}: a problem is a folder holding one"])
    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=_unique_key_loader())
    except (yaml.YAMLError, UnicodeDecodeError, ValueError) as exc:
        raise ProblemError(str(path), [f"not valid YAML: {exc}"]) from None
    return parse_problem(document, str(path), path.parent, check_files=check_files)


@functools.cache
def _unique_key_loader() -> type:
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        """SafeLoader that refuses a key given twice (PyYAML would keep the last silently)."""

    def construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)  # type: ignore[arg-type]
            if key in seen:
                raise ValueError(f"line {key_node.start_mark.line + 1}: key {key!r} is given twice")
            seen.add(key)
        return loader.construct_mapping(node, deep=deep)

    UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return UniqueKeyLoader


def resolve_problem_dir(given: Path | str | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """The problem folder a step reads: ``given``, else $MLOPS_PROBLEM_DIR, else the bundle's
    ``problem/``, else the repository's default problem."""
    for candidate in (given, env.MLOPS_PROBLEM_DIR.get(environ)):
        if candidate:
            return Path(candidate)
    return BUNDLED_PROBLEM if (BUNDLED_PROBLEM / PROBLEM_FILE).is_file() else DEFAULT_PROBLEM


def step_problem(given: Path | str | None = None) -> Problem:
    """The problem a step runs: its folder need not hold the sample data (the bundle's does not)."""
    return load_problem(resolve_problem_dir(given), check_files=False)

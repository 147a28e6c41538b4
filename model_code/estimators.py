"""The estimator kinds a problem's candidates choose from, their parameters and search spaces.

Each kind builds one scikit-learn Pipeline per task (a classifier for binary and multiclass, a
regressor for regression) whose steps are ``columns`` (the feature encoding) and ``model``:

- ``hist_gradient_boosting``: categoricals as ordinal codes with native categorical splits,
  numerics passed through (missing values handled by the trees).
- ``random_forest``: the same encoding; the trees route missing values themselves.
- ``linear``: logistic regression or ridge, on one-hot categoricals (missing is a category of its
  own, unknown values are all-zero) and standardised numerics (missing imputed by the median).

A problem's own module (model_code/problem_module.py) adds kinds: ``estimator: module:<function>``
names a function of it, ``def <function>(columns: Columns, seed: int, *, <param>: int = 3, ...)``,
that returns an unfitted scikit-learn estimator. Its keyword-only parameters are the candidate's
parameters (typed by their annotations, read from the source). The estimator is fitted on the
feature frame (the schema's columns as ``schema.coerce`` types them, then the derived ones) and
the label (class indices 0..k-1 for classification, values for regression); it must have
``predict_proba`` (classification) or ``predict`` (regression).

A parameter's value in a problem (``params``) or a hyperparameter overrides its default. A search
space (``space``) gives, per parameter, ``{low, high}`` and optionally ``scale: log``; tuning draws
from it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from model_code.features import DerivedFeature
from model_code.problem_module import ModuleError, ProblemModule, signature
from model_code.schema import Schema

if TYPE_CHECKING:  # scikit-learn is imported by the builders: the control plane reads the parameter specs only
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline


def parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"true", "1", "yes"}:
        return True
    if lowered in {"false", "0", "no"}:
        return False
    raise ValueError("expected true/false")


@dataclass(frozen=True)
class Param:
    """One typed parameter: parsed from text (SageMaker passes strings), checked against ``rule``."""

    name: str
    type: Callable[[str], Any]
    default: Any
    check: Callable[[Any], bool]
    rule: str
    doc: str


_HGB = (
    Param("learning_rate", float, 0.1, lambda v: 0 < v <= 1, "0 < x <= 1", "boosting shrinkage"),
    Param("max_iter", int, 300, lambda v: v >= 1, ">= 1", "maximum boosting iterations"),
    Param("max_leaf_nodes", int, 31, lambda v: v >= 2, ">= 2", "leaves per tree"),
    Param("max_depth", int, 0, lambda v: v >= 0, ">= 0", "tree depth limit; 0 = unlimited"),
    Param("min_samples_leaf", int, 20, lambda v: v >= 1, ">= 1", "minimum rows per leaf"),
    Param("l2_regularization", float, 0.0, lambda v: v >= 0, ">= 0", "L2 penalty on leaf values"),
    Param("early_stopping", parse_bool, True, lambda v: True, "true/false",
          "stop when an internal holdout of the train split stops improving"),
    Param("validation_fraction", float, 0.1, lambda v: 0 < v < 1, "0 < x < 1",
          "share of train rows held out for early stopping"),
    Param("n_iter_no_change", int, 10, lambda v: v >= 1, ">= 1", "early-stopping patience"),
)
_FOREST = (
    Param("n_estimators", int, 200, lambda v: v >= 1, ">= 1", "trees"),
    Param("max_depth", int, 0, lambda v: v >= 0, ">= 0", "tree depth limit; 0 = unlimited"),
    Param("min_samples_leaf", int, 1, lambda v: v >= 1, ">= 1", "minimum rows per leaf"),
    Param("max_features", float, 0.5, lambda v: 0 < v <= 1, "0 < x <= 1", "share of features tried per split"),
)
_LINEAR = (
    Param("alpha", float, 1.0, lambda v: v > 0, "> 0", "L2 penalty (ridge alpha; logistic C = 1/alpha)"),
    Param("max_iter", int, 1000, lambda v: v >= 1, ">= 1", "solver iterations"),
)


def _numeric(schema: Schema, derived: Sequence[DerivedFeature]) -> list[str]:
    return [*(f.name for f in schema.numeric), *(d.name for d in derived)]


def _ordinal_columns(schema: Schema, derived: Sequence[DerivedFeature]) -> tuple[ColumnTransformer, int]:
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OrdinalEncoder

    cat = [f.name for f in schema.categorical]
    encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan,
                             encoded_missing_value=np.nan, dtype=np.float64)
    columns = ColumnTransformer([("cat", encoder, cat), ("num", "passthrough", _numeric(schema, derived))],
                                verbose_feature_names_out=False)
    return columns, len(cat)


# The losses the builders fit with (scikit-learn's defaults): the ONNX export (model_code/edge) has the
# link of each (identity, the sigmoid or the softmax of the raw score) and refuses any other.
HGB_DEFAULT_LOSSES = frozenset({"squared_error", "log_loss"})


def _hgb(schema: Schema, p: Mapping[str, Any], seed: int, derived: Sequence[DerivedFeature]) -> Pipeline:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.pipeline import Pipeline

    columns, n_cat = _ordinal_columns(schema, derived)
    kind = HistGradientBoostingRegressor if schema.task == "regression" else HistGradientBoostingClassifier
    model = kind(
        learning_rate=p["learning_rate"], max_iter=p["max_iter"], max_leaf_nodes=p["max_leaf_nodes"],
        max_depth=p["max_depth"] or None, min_samples_leaf=p["min_samples_leaf"],
        l2_regularization=p["l2_regularization"], early_stopping=p["early_stopping"],
        validation_fraction=p["validation_fraction"], n_iter_no_change=p["n_iter_no_change"],
        categorical_features=list(range(n_cat)) if n_cat else None, random_state=seed,
    )
    return Pipeline([("columns", columns), ("model", model)])


def _forest(schema: Schema, p: Mapping[str, Any], seed: int, derived: Sequence[DerivedFeature]) -> Pipeline:
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    from sklearn.pipeline import Pipeline

    columns, _ = _ordinal_columns(schema, derived)
    kind = RandomForestRegressor if schema.task == "regression" else RandomForestClassifier
    model = kind(n_estimators=p["n_estimators"], max_depth=p["max_depth"] or None,
                 min_samples_leaf=p["min_samples_leaf"], max_features=p["max_features"], random_state=seed, n_jobs=1)
    return Pipeline([("columns", columns), ("model", model)])


def _linear(schema: Schema, p: Mapping[str, Any], seed: int, derived: Sequence[DerivedFeature]) -> Pipeline:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    parts: list[tuple[str, Any, list[str]]] = []
    if schema.categorical:
        parts.append(("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value="(missing)"),
                                           OneHotEncoder(handle_unknown="ignore")),
                      [f.name for f in schema.categorical]))
    if _numeric(schema, derived):
        parts.append(("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
                      _numeric(schema, derived)))
    columns = ColumnTransformer(parts, verbose_feature_names_out=False)
    if schema.task == "regression":
        model: Any = Ridge(alpha=p["alpha"], max_iter=p["max_iter"])
    else:
        model = LogisticRegression(C=1.0 / p["alpha"], max_iter=p["max_iter"], random_state=seed)
    return Pipeline([("columns", columns), ("model", model)])


@dataclass(frozen=True)
class Columns:
    """What an estimator function of a problem's module is told about the frame it will be fitted on."""

    task: str
    numeric: tuple[str, ...]
    """The numeric features, then the derived ones (float64, NaN where missing)."""
    categorical: tuple[str, ...]
    categories: Mapping[str, tuple[str, ...]]
    """The declared categories per categorical feature (values outside them may arrive: unknown)."""
    classes: tuple[Any, ...]
    """Classification: the class values; the label the estimator sees is their index."""


@dataclass(frozen=True)
class Kind:
    name: str
    params: tuple[Param, ...]
    build: Callable[[Schema, Mapping[str, Any], int, Sequence[DerivedFeature]], Pipeline]

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)


KINDS: dict[str, Kind] = {
    "hist_gradient_boosting": Kind("hist_gradient_boosting", _HGB, _hgb),
    "random_forest": Kind("random_forest", _FOREST, _forest),
    "linear": Kind("linear", _LINEAR, _linear),
}
MODULE_PREFIX = "module:"
"""``estimator: module:<function>``: a function of the problem's own module."""
_TYPES: dict[str, Callable[[str], Any]] = {"int": int, "float": float, "bool": parse_bool, "str": str}


def _module_kind(module: ProblemModule, function: str) -> Kind:
    params = tuple(Param(p.name, _TYPES[p.type], p.default, lambda v: True, f"a {p.type}", f"{function}() parameter")
                   for p in signature(module, function))

    def build_module(schema: Schema, p: Mapping[str, Any], seed: int, derived: Sequence[DerivedFeature]) -> Pipeline:
        from sklearn.pipeline import Pipeline

        from model_code.problem_module import function as module_function

        columns = Columns(schema.task, tuple(_numeric(schema, derived)), tuple(f.name for f in schema.categorical),
                          {f.name: f.categories for f in schema.categorical}, tuple(schema.label_values))
        model = module_function(module, function)(columns, seed, **p)
        needed = "predict" if schema.task == "regression" else "predict_proba"
        missing = [m for m in ("fit", needed) if not callable(getattr(model, m, None))]
        if missing:
            raise ModuleError(f"{module.file}: {function}() returned {type(model).__name__}, which has no "
                              f"{' or '.join(missing)}: a {schema.task} estimator needs fit and {needed}")
        return Pipeline([("model", model)])

    return Kind(f"{MODULE_PREFIX}{function}", params, build_module)


def kind_of(estimator: str, module: ProblemModule | None = None) -> Kind:
    """The kind a candidate's ``estimator`` names: built in, or ``module:<function>`` of ``module``.
    KeyError or ModuleError say why there is none."""
    if estimator.startswith(MODULE_PREFIX):
        if module is None:
            raise ModuleError(f"{estimator!r} names a function of the problem's module, and the problem "
                              f"declares no module (module: <file>.py)")
        return _module_kind(module, estimator[len(MODULE_PREFIX):])
    if estimator not in KINDS:
        raise KeyError(f"{estimator!r} is not one of {sorted(KINDS)} nor {MODULE_PREFIX}<function>")
    return KINDS[estimator]


def parse_value(spec: Param, raw: Any) -> Any:
    """A typed value from a declared (YAML) or text (hyperparameters.json) value; ValueError says why."""
    if isinstance(raw, bool) and spec.type is not parse_bool:
        raise ValueError(f"{spec.name}={raw!r} is not a valid {getattr(spec.type, '__name__', 'value')}")
    text = raw if isinstance(raw, str) else ("true" if raw is True else "false" if raw is False else repr(raw))
    try:
        value = spec.type(text.strip())
    except ValueError:
        raise ValueError(f"{spec.name}={raw!r} is not a valid {getattr(spec.type, '__name__', 'value')} "
                         f"({spec.rule})") from None
    if not spec.check(value):
        raise ValueError(f"{spec.name}={value!r} must be {spec.rule}")
    return value


def check_params(spec: Kind, params: Any, space: Any) -> list[str]:
    """Problems with a candidate's declared ``params`` and ``space``, each naming the parameter."""
    kind, problems = spec.name, []
    if not isinstance(params, dict):
        return [f"params: must be a mapping, got {type(params).__name__}"]
    for name, raw in params.items():
        p = spec.param(name)
        if p is None:
            problems.append(f"params.{name}: unknown parameter of {kind}; known: {[q.name for q in spec.params]}")
            continue
        try:
            parse_value(p, raw)
        except ValueError as exc:
            problems.append(f"params.{name}: {exc}")
    if not isinstance(space, dict):
        return [*problems, f"space: must be a mapping, got {type(space).__name__}"]
    for name, bounds in space.items():
        p = spec.param(name)
        if p is None or p.type not in (int, float):
            problems.append(f"space.{name}: not a numeric parameter of {kind}")
            continue
        if not isinstance(bounds, dict) or set(bounds) - {"low", "high", "scale"} or not {"low", "high"} <= set(bounds):
            problems.append(f"space.{name}: expected {{low: .., high: .., scale: linear|log}}, got {bounds!r}")
            continue
        try:
            low, high = parse_value(p, bounds["low"]), parse_value(p, bounds["high"])
        except ValueError as exc:
            problems.append(f"space.{name}: {exc}")
            continue
        if low >= high:
            problems.append(f"space.{name}: low {low} must be below high {high}")
        scale = bounds.get("scale", "linear")
        if scale not in ("linear", "log") or (scale == "log" and low <= 0):
            problems.append(f"space.{name}: scale {scale!r} must be linear, or log with low > 0")
    return problems


def resolve_params(spec: Kind, declared: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults of ``spec`` overridden by already checked declared values, typed."""
    values = {p.name: p.default for p in spec.params}
    for name, raw in declared.items():
        values[name] = parse_value(spec.param(name), raw)  # type: ignore[arg-type]
    return values


def build(kind: Kind, schema: Schema, params: Mapping[str, Any], seed: int,
          derived: Sequence[DerivedFeature] = (), module: ProblemModule | None = None) -> Pipeline:
    """The candidate's pipeline; with derived features, a first step computes them (model_code/derive_step.py)."""
    pipeline = kind.build(schema, params, seed, derived)
    if not derived:
        return pipeline
    from sklearn.pipeline import Pipeline

    from model_code.derive_step import Derive

    return Pipeline([("derive", Derive(tuple(derived), module)), *pipeline.steps])

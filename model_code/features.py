"""Derived features: declared once in the problem (``derived:``), computed by the model itself.

Each is an arithmetic expression over the problem's numeric features and the derived features
declared before it, e.g. ``{name: bmi_x_bp, expression: bmi * bp}``: numbers, ``+ - * / ** %``,
parentheses and pandas' math functions (``log1p``, ``sqrt``, ``abs``, ...). The expression is
checked against that grammar when the declaration is read, and evaluated by pandas
(``DataFrame.eval``) inside the fitted model, as its first step (``model_code/derive_step.py``): training, evaluation
and serving run the same code on the same raw features, so they cannot skew. Missing inputs give
a missing value, which the estimators handle like any other.

What arithmetic cannot say, a function of the problem's own module can
(``{name: age_band, function: age_band}``, model_code/problem_module.py): it takes the feature
frame (raw features and the derived ones before it) and returns one number per row. It runs in the
same place, the model's first step, with the module's source pickled inside that step.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from model_code.problem_module import ModuleError, ProblemModule
from model_code.problem_module import function as module_function

FUNCTIONS = frozenset({"sin", "cos", "exp", "log", "expm1", "log1p", "sqrt", "sinh", "cosh", "tanh", "arcsin",
                       "arccos", "arctan", "arccosh", "arcsinh", "arctanh", "abs", "arctan2", "log10"})
"""The math functions pandas.eval knows."""
_OPERATORS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.Mod, ast.USub, ast.UAdd)


@dataclass(frozen=True)
class DerivedFeature:
    name: str
    expression: str = ""
    description: str = ""
    function: str = ""
    """A function of the problem's module, instead of an expression."""

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "expression": self.expression, "description": self.description}
        return out | {"function": self.function} if self.function else out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DerivedFeature:
        return cls(data["name"], data.get("expression", ""), data.get("description", ""), data.get("function", ""))


def check_expression(expression: str, known: set[str]) -> str | None:
    """Why ``expression`` is not arithmetic over ``known`` columns, or None."""
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as exc:
        return f"{expression!r} is not an expression ({exc.msg})"
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if node.id not in known and node.id not in FUNCTIONS:
                return f"{node.id!r} is not a numeric feature declared before it; known: {sorted(known)}"
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS or node.keywords:
                return f"only the math functions {sorted(FUNCTIONS)} may be called"
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                return f"{node.value!r}: only numbers may appear as constants"
        elif not isinstance(node, (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Load, *_OPERATORS)):
            return f"{type(node).__name__} is not allowed: only arithmetic on features"
    return None


def derive(frame: pd.DataFrame, derived: Sequence[DerivedFeature],
           module: ProblemModule | None = None) -> pd.DataFrame:
    """``frame`` with each derived feature added as a float64 column (in declaration order)."""
    if not derived:
        return frame
    out = frame.copy()
    for feature in derived:
        with np.errstate(all="ignore"):  # log of 0, division by 0: a missing or infinite value, as numpy gives
            values = _function_values(out, feature, module) if feature.function else \
                out.eval(feature.expression, engine="python")
        column = np.asarray(values, dtype=np.float64)
        out[feature.name] = np.where(np.isfinite(column), column, np.nan)
    return out


def _function_values(frame: pd.DataFrame, feature: DerivedFeature, module: ProblemModule | None) -> Any:
    if module is None:
        raise ModuleError(f"derived feature {feature.name!r}: function {feature.function!r} needs the problem's module")
    values = module_function(module, feature.function)(frame.copy())
    try:
        column = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ModuleError(f"derived feature {feature.name!r}: {module.file}: {feature.function}() must return "
                          f"numbers, got {type(values).__name__}") from None
    if column.shape != (len(frame),):
        raise ModuleError(f"derived feature {feature.name!r}: {module.file}: {feature.function}() returned shape "
                          f"{column.shape} for {len(frame)} rows; expected one number per row")
    return column

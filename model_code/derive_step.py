"""The model's first step when its problem declares derived features (model_code/features.py).

A module of its own: the fitted model pickles this class by name, and scikit-learn is imported only
where a model is built or loaded, never by the control plane reading a declaration.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from model_code.features import DerivedFeature, derive
from model_code.problem_module import ProblemModule


class Derive(TransformerMixin, BaseEstimator):
    """Adds the derived features to the raw feature frame; stateless (fit learns nothing). ``module``
    (its source) travels inside the step when a derived feature is a function of the problem's module."""

    def __init__(self, derived: tuple[DerivedFeature, ...] = (), module: ProblemModule | None = None) -> None:
        self.derived = derived
        self.module = module

    def fit(self, x: pd.DataFrame, y: Any = None) -> Derive:
        return self

    def transform(self, x: pd.DataFrame) -> pd.DataFrame:
        return derive(x, self.derived, self.module)

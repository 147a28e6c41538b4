"""Wine's own Python: an estimator and a derived feature that problem.yaml cannot express.

problem.yaml names them (``module: custom.py``; ``estimator: module:nearest_neighbours``;
``derived: [{name: colour_band, function: colour_band}]``). The contracts are in
model_code/problem_module.py: the platform reads the estimator's hyperparameters from the signature
below without running this file; train, evaluate and serve import it, and every model artifact
carries its source, so a server needs nothing but the artifact.
"""

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


def colour_band(frame):
    """Colour intensity in bands of 3 (0: below 3, 1: 3 to 6, 2: 6 to 9, 3: 9 and above); a
    missing intensity stays missing."""
    intensity = frame["color_intensity"].to_numpy(dtype=float)
    return np.where(np.isnan(intensity), np.nan, np.digitize(intensity, [3.0, 6.0, 9.0]))


class ClipOutliers(TransformerMixin, BaseEstimator):
    """Standardised values beyond +-limit become the limit: one extreme measurement cannot dominate a
    distance. A class of this module inside the fitted model: the model artifact and the MLflow model
    carry this file's source for it."""

    def __init__(self, limit: float = 5.0):
        self.limit = limit

    def fit(self, x, y=None):
        return self

    def transform(self, x):
        return np.clip(x, -self.limit, self.limit)


def nearest_neighbours(columns, seed, *, n_neighbors: int = 15, weights: str = "distance"):
    """k nearest neighbours on standardised numerics (missing: the median, outliers clipped) and one-hot
    categoricals. ``seed`` is unused: the neighbours are deterministic."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    parts = [("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), list(columns.numeric))]
    if columns.categorical:
        onehot = OneHotEncoder(categories=[list(columns.categories[c]) for c in columns.categorical],
                               handle_unknown="ignore")
        parts.append(("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value="(missing)"), onehot),
                      list(columns.categorical)))
    kind = KNeighborsRegressor if columns.task == "regression" else KNeighborsClassifier
    return make_pipeline(ColumnTransformer(parts), ClipOutliers(), kind(n_neighbors=n_neighbors, weights=weights))

"""Wine's own Python: an estimator and a derived feature that problem.yaml cannot express.

problem.yaml names them (``module: custom.py``; ``estimator: module:nearest_neighbours``;
``derived: [{name: colour_band, function: colour_band}]``). The contracts are in
model_code/problem_module.py: the platform reads the estimator's hyperparameters from the signature
below without running this file; train, evaluate and serve import it, and every model artifact
carries its source, so a server needs nothing but the artifact.
"""

import numpy as np


def colour_band(frame):
    """Colour intensity in bands of 3 (0: below 3, 1: 3 to 6, 2: 6 to 9, 3: 9 and above); a
    missing intensity stays missing."""
    intensity = frame["color_intensity"].to_numpy(dtype=float)
    return np.where(np.isnan(intensity), np.nan, np.digitize(intensity, [3.0, 6.0, 9.0]))


def nearest_neighbours(columns, seed, *, n_neighbors: int = 15, weights: str = "distance"):
    """k nearest neighbours on standardised numerics (missing: the median) and one-hot categoricals.
    ``seed`` is unused: the neighbours are deterministic."""
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
    return make_pipeline(ColumnTransformer(parts), kind(n_neighbors=n_neighbors, weights=weights))

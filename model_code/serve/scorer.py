"""Scoring validated features: one vectorised call per request, with a checked fast path."""

from __future__ import annotations

import copy
import math
import os
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from model_code.schema import NumericFeature
from model_code.serve.protocol import Features

if TYPE_CHECKING:
    from model_code.model import LoadedModel


# --- scoring ------------------------------------------------------------------------------------------
class Scorer:
    """The model's output for validated features, one vectorised call per request: the positive
    class's probability (binary), the class-probability matrix (multiclass), the value (regression).

    Fast path: when the fitted pipeline has the known shape (OrdinalEncoder on the categoricals,
    passthrough numerics, then the classifier), the classifier's input matrix is built directly
    from the encoder's fitted categories, skipping the per-call DataFrame/ColumnTransformer
    overhead (most of a single-row request's time). It is used only if it reproduces the
    pipeline's output exactly on a probe batch covering every category, missing values, unknown
    values and the range bounds; otherwise the pipeline scores a DataFrame.
    """

    def __init__(self, model: LoadedModel) -> None:
        self.schema = model.schema
        self.estimator = model.estimator
        self.threshold = model.threshold
        self.task = model.task
        self._codes: dict[str, dict[str, float]] | None = None
        self._order: list[str] = []
        self._classifier: Any = None
        self._inner_skipped = False
        self.fast = self._try_fast_path()

    def _frame(self, x: Features) -> pd.DataFrame:
        data: dict[str, Any] = {}
        for f in self.schema.features:
            if f.name in x.numeric:
                data[f.name] = x.numeric[f.name]
            else:
                data[f.name] = np.array([np.nan if v is None else v for v in x.categorical[f.name]], dtype=object)
        return pd.DataFrame(data, columns=self.schema.feature_names)

    def _output(self, model: Any, x: Any) -> np.ndarray:
        if self.task == "regression":
            return np.asarray(model.predict(x), dtype=np.float64)
        proba = model.predict_proba(x)
        return proba[:, 1] if self.task == "binary" else proba

    def _pipeline_scores(self, x: Features) -> np.ndarray:
        return self._output(self.estimator, self._frame(x))

    def _fast_matrix(self, x: Features) -> np.ndarray:
        assert self._codes is not None
        matrix = np.empty((x.rows, len(self._order)), dtype=np.float64)
        for j, name in enumerate(self._order):
            codes = self._codes.get(name)
            if codes is None:
                matrix[:, j] = x.numeric[name]
            else:
                get = codes.get
                matrix[:, j] = [get(v, math.nan) for v in x.categorical[name]]  # type: ignore[arg-type]
        return matrix

    def _fast_scores(self, x: Features) -> np.ndarray:
        return self._output(self._classifier, self._fast_matrix(x))

    def _pipeline_matrix(self, x: Features) -> np.ndarray:
        """What the pipeline hands its classifier's trees, through both encoders when the classifier has its own."""
        matrix = self.estimator.named_steps["columns"].transform(self._frame(x))
        inner = getattr(self.estimator.named_steps["model"], "_preprocessor", None)
        return np.asarray(inner.transform(matrix) if inner is not None and self._inner_skipped else matrix,
                          dtype=np.float64)

    def score(self, x: Features) -> np.ndarray:
        return self._fast_scores(x) if self.fast else self._pipeline_scores(x)

    def _try_fast_path(self) -> bool:
        try:
            steps = dict(self.estimator.named_steps)
            columns, classifier = steps["columns"], steps["model"]
            fitted = [(n, t, list(c)) for n, t, c in columns.transformers_ if not (t == "drop" or len(c) == 0)]
            (cat_name, encoder, cat_cols), (num_name, passthrough, num_cols) = fitted
        except (AttributeError, KeyError, TypeError, ValueError):
            return False
        if (cat_name, num_name) != ("cat", "num") or type(encoder).__name__ != "OrdinalEncoder":
            return False
        if getattr(passthrough, "func", None) is not None and passthrough != "passthrough":
            return False
        if hasattr(classifier, "feature_names_in_"):
            return False
        codes: dict[str, dict[str, float]] = {}
        for name, cats in zip(cat_cols, encoder.categories_, strict=True):
            codes[name] = {c: float(i) for i, c in enumerate(cats) if isinstance(c, str)}
        self._codes, self._order, self._classifier = codes, [*cat_cols, *num_cols], classifier
        self._inner_skipped = False
        try:
            self._skip_inner_encoder()
        except Exception:  # noqa: BLE001 -- an optimisation: the classifier keeps its own encoder
            self._codes, self._order, self._classifier = codes, [*cat_cols, *num_cols], classifier
        probe = self._probe()
        # the same matrix for every category, missing and unknown value, and the range bounds (the codes are
        # per value, so each value once proves them all), and the same scores
        try:
            same = np.array_equal(self._fast_matrix(probe), self._pipeline_matrix(probe), equal_nan=True) and \
                np.array_equal(self._fast_scores(probe), self._pipeline_scores(probe))
        except Exception:  # noqa: BLE001 -- an optimisation: any failure means the pipeline scores
            same = False
        if not same:
            self._codes = None
        return same

    def _skip_inner_encoder(self) -> None:
        """HistGradientBoosting encodes its categorical columns again, with a ColumnTransformer of its own
        (`_preprocessor`), at each call: most of a single-row request's time, in sklearn's per-call
        checks. Composing both encoders into the codes above and giving the classifier (a copy) no
        preprocessor of its own scores the same matrix; the probe in `_try_fast_path` proves it, else
        the pipeline scores."""
        assert self._codes is not None
        inner = getattr(self._classifier, "_preprocessor", None)
        if inner is None:
            return
        (_, encoder, cat_mask), (_, numeric, num_mask) = [t for t in inner.transformers_ if t[0] != "remainder"]
        if type(encoder).__name__ != "OrdinalEncoder" or type(numeric).__name__ != "FunctionTransformer":
            raise TypeError("an inner preprocessor of another shape")
        cat_idx, num_idx = np.flatnonzero(cat_mask), np.flatnonzero(num_mask)
        order = [self._order[i] for i in cat_idx] + [self._order[i] for i in num_idx]
        codes = {}
        for j, i in enumerate(cat_idx):
            name = self._order[i]
            position = {float(c): float(k) for k, c in enumerate(encoder.categories_[j]) if not np.isnan(c)}
            codes[name] = {value: position.get(code, math.nan) for value, code in self._codes[name].items()}
        classifier = copy.copy(self._classifier)
        classifier._preprocessor = None
        self._codes, self._order, self._classifier, self._inner_skipped = codes, order, classifier, True

    def _probe(self) -> Features:
        n = max([len(f.categories) + 2 for f in self.schema.categorical] + [8])
        numeric, categorical = {}, {}
        for f in self.schema.features:
            if isinstance(f, NumericFeature):
                cycle = [f.minimum, f.maximum, (f.minimum + f.maximum) / 2, math.nan, f.minimum + 1]
                numeric[f.name] = np.array([cycle[i % len(cycle)] for i in range(n)], dtype=np.float64)
            else:
                cycle = [*f.categories, None, "<unknown>"]
                categorical[f.name] = [cycle[i % len(cycle)] for i in range(n)]
        return Features(numeric, categorical, n)  # type: ignore[arg-type]


class OnnxScorer:
    """Scores as ``Scorer`` does, with onnxruntime on the model's ONNX export (MLOPS_SERVE_RUNTIME=onnx).

    The session is opened in each worker at its first request, not before the server forks: an
    onnxruntime session's threads and allocator are not shared across fork. Opening it once at load
    proves the file (present, the recorded sha256, a graph onnxruntime runs) before serving starts.
    """

    fast = False

    def __init__(self, model: LoadedModel) -> None:
        from model_code import edge

        self.schema = model.schema
        self.threshold = model.threshold
        self.task = model.task
        self._load = lambda: edge.load(model.path, model.artifact, self.schema)
        self._load()  # fails at startup, saying why, rather than at the first request
        self._session: Any = None
        self._pid = 0

    def score(self, x: Features) -> np.ndarray:
        from model_code import edge

        if self._session is None or self._pid != os.getpid():
            self._session, self._pid = self._load(), os.getpid()
        output = self._session.run(edge.feeds(self.schema, x.numeric, x.categorical))
        return output[:, 1] if self.task == "binary" else output

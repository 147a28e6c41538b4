"""Drift baseline: per-feature reference statistics, one documented JSON format.

preprocess computes it on the training split only; the drift job computes the same statistics on
captured traffic with ``numeric_shares``/``categorical_shares`` (the same binning) and compares.

Format ``mlops-stack/drift-baseline`` v1::

    {
      "format": "mlops-stack/drift-baseline",
      "format_version": 1,
      "schema": "adult-income",
      "source": {"split": "train", "rows": 34189, "seed": 42, "sha256": "<sha256 of train.csv>"},
      "features": {
        "<numeric feature>": {
          "kind": "numeric",
          "count": 34189,              # non-missing values
          "missing_share": 0.0,        # missing / rows
          "mean": 38.6, "std": 13.7, "min": 17.0, "max": 90.0,
          "quantiles": {"0.01": 17.0, "0.05": ..., "0.25": ..., "0.5": ..., "0.75": ..., "0.95": ..., "0.99": ...},
          "percentiles": [17.0, ...],  # the quantile function at the 100 midpoints (i + 0.5) / 100:
                                       # the drift job's Wasserstein distance (absent in older files)
          "bin_edges": [22.0, 26.0, ...],   # strictly increasing interior cut points (train deciles, deduped)
          "bin_shares": [0.1, ...]          # len(bin_edges) + 1 shares of non-missing values, sum 1;
                                            # bin i = (edge[i-1], edge[i]], first from -inf, last to +inf
        },
        "<categorical feature>": {
          "kind": "categorical",
          "count": 32230, "missing_share": 0.057,
          "frequencies": {"Private": 0.78, ...}   # shares of non-missing values over the categories
                                                  # seen in train (sum 1); anything else is "unseen"
        }
      },
      "label": {"name": "income_gt_50k", "shares": {"0": 0.76, "1": 0.24}},   # classification: share
                           # per class value; regression: the numeric statistics of the target
      "prediction": null   # filled by train when it knows the model: same shape as a numeric feature,
                           # for the model's score on the validation split (prediction_stats), plus "task"
    }

All floats are rounded to 10 significant digits so the file is byte-stable across platforms.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from model_code.schema import NumericFeature, Schema

BASELINE_FORMAT = "mlops-stack/drift-baseline"
BASELINE_FORMAT_VERSION = 1
BASELINE_NAME = "baseline.json"
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
PERCENTILES = tuple((i + 0.5) / 100 for i in range(100))
N_BINS = 10


def _r(x: float) -> float:
    return float(f"{float(x):.10g}")


def numeric_bin_edges(values: np.ndarray, n_bins: int = N_BINS) -> list[float]:
    """Interior cut points at the deciles of ``values`` (NaN ignored), duplicates removed."""
    v = values[~np.isnan(values)]
    if len(v) == 0:
        return []
    qs = np.quantile(v, np.linspace(0, 1, n_bins + 1)[1:-1])
    return [_r(e) for e in np.unique(qs)]


def numeric_shares(values: np.ndarray, edges: list[float]) -> list[float]:
    """Share of non-missing values in each bin defined by ``edges`` (see the format above)."""
    v = values[~np.isnan(values)]
    counts = np.bincount(np.searchsorted(np.asarray(edges, dtype=float), v, side="left"),
                         minlength=len(edges) + 1)
    total = counts.sum()
    return [_r(c / total) if total else 0.0 for c in counts]


def categorical_shares(values: pd.Series, categories: list[str]) -> tuple[dict[str, float], float]:
    """(share per known category, share of unseen categories), over non-missing values."""
    v = values.dropna().astype(str)
    if len(v) == 0:
        return {c: 0.0 for c in categories}, 0.0
    counts = v.value_counts()
    shares = {c: _r(counts.get(c, 0) / len(v)) for c in categories}
    unseen = _r(1.0 - counts.reindex(categories, fill_value=0).sum() / len(v))
    return shares, unseen


def numeric_stats(values: np.ndarray) -> dict[str, Any]:
    values = np.asarray(values, dtype=float)
    v = values[~np.isnan(values)]
    stats: dict[str, Any] = {
        "kind": "numeric",
        "count": int(len(v)),
        "missing_share": _r(1 - len(v) / len(values)) if len(values) else 0.0,
    }
    if len(v):
        edges = numeric_bin_edges(v)
        stats.update(
            mean=_r(v.mean()), std=_r(v.std()), min=_r(v.min()), max=_r(v.max()),
            quantiles={str(q): _r(x) for q, x in zip(QUANTILES, np.quantile(v, QUANTILES), strict=True)},
            percentiles=[_r(x) for x in np.quantile(v, PERCENTILES)],
            bin_edges=edges, bin_shares=numeric_shares(v, edges),
        )
    return stats


def categorical_stats(values: pd.Series) -> dict[str, Any]:
    present = values.dropna().astype(str)
    counts = present.value_counts()
    order = sorted(counts.index, key=lambda c: (-counts[c], c))
    return {
        "kind": "categorical",
        "count": int(len(present)),
        "missing_share": _r(1 - len(present) / len(values)) if len(values) else 0.0,
        "frequencies": {c: _r(counts[c] / len(present)) for c in order},
    }


def compute_baseline(train: pd.DataFrame, schema: Schema, source: dict[str, Any]) -> dict[str, Any]:
    """The baseline of a training split in canonical dtypes (see ``schema.coerce``)."""
    features: dict[str, Any] = {}
    for f in schema.features:
        if isinstance(f, NumericFeature):
            features[f.name] = numeric_stats(train[f.name].to_numpy(dtype=float))
        else:
            features[f.name] = categorical_stats(train[f.name])
    if schema.is_classification:  # the split holds class indices; the shares are keyed by class value
        shares = train[schema.label].value_counts(normalize=True)
        label = {"name": schema.label,
                 "shares": {str(v): _r(shares.get(i, 0.0)) for i, v in enumerate(schema.label_values)}}
    else:
        label = {"name": schema.label, **numeric_stats(train[schema.label].to_numpy(dtype=float))}
    return {
        "format": BASELINE_FORMAT,
        "format_version": BASELINE_FORMAT_VERSION,
        "schema": schema.name,
        "source": source,
        "features": features,
        "label": label,
        "prediction": None,
    }


def prediction_stats(output: np.ndarray, task: str = "binary", threshold: float = 0.5,
                     classes: tuple[Any, ...] = ()) -> dict[str, Any]:
    """The reference for prediction drift, from the model's output on the validation split: the
    positive-class probability (binary, plus the positive rate at the threshold), the predicted
    value (regression), or (multiclass) the share of each predicted class, keyed by class value, in
    the shape of a categorical feature's statistics."""
    if task == "binary":
        scores = output[:, 1] if output.ndim == 2 else output
        stats = numeric_stats(scores)
        stats["positive_rate"] = _r(float(np.mean(scores >= threshold))) if len(scores) else 0.0
        stats["threshold"] = threshold
    elif task == "multiclass":
        counts = np.bincount(output.argmax(axis=1), minlength=output.shape[1]) / max(len(output), 1)
        names = [str(c) for c in classes] if classes else [str(i) for i in range(output.shape[1])]
        stats = {"kind": "categorical", "count": int(len(output)), "missing_share": 0.0,
                 "frequencies": {n: _r(float(c)) for n, c in zip(names, counts, strict=True)}}
    else:
        stats = numeric_stats(output)
    stats["task"] = task
    return stats


def dumps(baseline: dict[str, Any]) -> str:
    return json.dumps(baseline, indent=2, sort_keys=True) + "\n"


def load_baseline(path: Path) -> dict[str, Any]:
    data = json.loads(Path(path).read_text())
    if data.get("format") != BASELINE_FORMAT or data.get("format_version") != BASELINE_FORMAT_VERSION:
        raise ValueError(f"{path}: not a {BASELINE_FORMAT} v{BASELINE_FORMAT_VERSION} file "
                         f"(format={data.get('format')!r}, format_version={data.get('format_version')!r})")
    return data

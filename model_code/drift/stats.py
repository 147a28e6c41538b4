"""The statistics of a comparison: PSI, and p-values on scipy (Kolmogorov-Smirnov, chi-square, two proportions)."""

from __future__ import annotations

import math

import numpy as np

# scipy.special, not scipy.stats: the same functions (stats' distributions call them), a third of the import
from scipy import special

from model_code.drift.core import PSI_EPSILON


def psi(baseline: np.ndarray, current: np.ndarray, eps: float = PSI_EPSILON) -> float:
    b = np.maximum(np.asarray(baseline, dtype=float), eps)
    c = np.maximum(np.asarray(current, dtype=float), eps)
    return float(np.sum((c - b) * np.log(c / b)))


def ks_pvalue(d: float, n: float, m: float) -> float:
    """Two-sample Kolmogorov-Smirnov p-value of a statistic measured on the baseline's bins (no samples, so no
    exact test): Kolmogorov's limiting distribution (scipy's kolmogorov, kstwobign's survival function) with
    Stephens' small-sample correction."""
    if n <= 0 or m <= 0:
        return 1.0
    ne = n * m / (n + m)
    return float(special.kolmogorov((math.sqrt(ne) + 0.12 + 0.11 / math.sqrt(ne)) * d))


def chi2_sf(x: float, dof: int) -> float:
    return 1.0 if dof <= 0 else float(special.chdtrc(dof, x))  # chi2.sf(x, dof)


def chi2_homogeneity(baseline_counts: np.ndarray, current_counts: np.ndarray) -> tuple[float, float, int]:
    """Chi-square test that two count vectors come from the same distribution: (stat, p, dof)."""
    table = np.vstack([baseline_counts, current_counts]).astype(float)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0, 0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    rare = expected.min(axis=0) < 5   # the approximation needs expected counts >= 5: pool the rest
    if rare.sum() > 1:
        table = np.hstack([table[:, ~rare], table[:, rare].sum(axis=1, keepdims=True)])
        if table.shape[1] < 2:
            return 0.0, 1.0, 0
        expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    stat = float(((table - expected) ** 2 / expected).sum())
    dof = table.shape[1] - 1
    return stat, chi2_sf(stat, dof), dof


def two_proportion_pvalue(k1: float, n1: float, k2: float, n2: float) -> float:
    if n1 <= 0 or n2 <= 0:
        return 1.0
    p = (k1 + k2) / (n1 + n2)
    se = math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0 if k1 / n1 == k2 / n2 else 0.0
    z = abs(k1 / n1 - k2 / n2) / se
    return math.erfc(z / math.sqrt(2))

"""Comparing a window of capture with the baseline: a verdict per feature and for the score."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from model_code import baseline as bl
from model_code.drift.core import UNSEEN, WASSERSTEIN_MIN_STD, CaptureData, CaptureError, Thresholds
from model_code.drift.stats import chi2_homogeneity, ks_pvalue, psi, two_proportion_pvalue
from model_code.schema import NumericFeature, Schema


def _r(x: float) -> float:
    return float(f"{float(x):.6g}")


def _missing(base: dict[str, Any], missing: int, rows: int, base_rows: float, th: Thresholds) -> dict[str, Any]:
    share = missing / rows if rows else 0.0
    b = float(base.get("missing_share", 0.0))
    p = two_proportion_pvalue(b * base_rows, base_rows, missing, rows)
    delta = share - b
    return {"share": _r(share), "baseline_share": _r(b), "delta": _r(delta), "p_value": _r(p),
            "drifted": bool(p < th.p_value and abs(delta) >= th.missing_delta)}


def _verdict(out: dict[str, Any], th: Thresholds) -> None:
    reasons = []
    p = out["test"]["p_value"]
    if p < th.p_value and (out["psi"] >= th.psi or out["effect"]["value"] >= th.min_effect):
        which = []
        if out["psi"] >= th.psi:
            which.append(f"PSI {out['psi']:.3g} >= {th.psi}")
        if out["effect"]["value"] >= th.min_effect:
            which.append(f"{out['effect']['name']} {out['effect']['value']:.3g} >= {th.min_effect}")
        reasons.append(f"distribution: {' and '.join(which)}, {out['test']['name']} p={p:.3g} < {th.p_value}")
    m = out["missing"]
    if m["drifted"]:
        reasons.append(f"missing share {m['share']:.3g} vs baseline {m['baseline_share']:.3g} "
                       f"(|delta| >= {th.missing_delta}, p={m['p_value']:.3g})")
    out["reasons"] = reasons
    out["drifted"] = bool(reasons)


def compare_numeric(values: np.ndarray, base: dict[str, Any], base_rows: float, th: Thresholds) -> dict[str, Any]:
    values = np.asarray(values, dtype=float)
    present = values[~np.isnan(values)]
    n, nb = len(present), float(base.get("count", 0))
    edges = np.asarray(base.get("bin_edges", []), dtype=float)
    b_shares = np.asarray(base.get("bin_shares", [1.0]), dtype=float)
    counts = np.bincount(np.searchsorted(edges, present, side="left"), minlength=len(edges) + 1)
    c_shares = counts / n if n else np.zeros(len(counts))
    d = float(np.max(np.abs(np.cumsum(c_shares)[:-1] - np.cumsum(b_shares)[:-1]))) if len(edges) and n else 0.0
    labels = [f"<= {edges[0]:g}"] if len(edges) else ["all"]
    labels += [f"({lo:g}, {hi:g}]" for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    if len(edges):
        labels.append(f"> {edges[-1]:g}")
    out: dict[str, Any] = {
        "kind": "numeric", "rows": int(len(values)), "count": int(n),
        "psi": _r(psi(b_shares, c_shares)) if n else 0.0,
        "test": {"name": "ks", "statistic": _r(d), "p_value": _r(ks_pvalue(d, nb, n))},
        "effect": _numeric_effect(present, base, d),
        "missing": _missing(base, len(values) - n, len(values), base_rows, th),
        "distribution": {"labels": labels, "baseline": [_r(x) for x in b_shares],
                         "current": [_r(x) for x in c_shares]},
        "baseline": {k: base.get(k) for k in ("mean", "std", "min", "max")},
    }
    if n:
        qs = np.quantile(present, bl.QUANTILES)
        out["current"] = {"mean": _r(present.mean()), "std": _r(present.std()), "min": _r(present.min()),
                          "max": _r(present.max()),
                          "quantiles": {str(q): _r(x) for q, x in zip(bl.QUANTILES, qs, strict=True)}}
    _verdict(out, th)
    return out


def _numeric_effect(present: np.ndarray, base: dict[str, Any], ks_d: float) -> dict[str, Any]:
    percentiles = base.get("percentiles")
    if not percentiles or not len(present):
        return {"name": "ks_d", "value": _r(ks_d)}
    w = float(np.mean(np.abs(np.quantile(present, bl.PERCENTILES) - np.asarray(percentiles, dtype=float))))
    return {"name": "wasserstein", "value": _r(w / max(float(base.get("std") or 0.0), WASSERSTEIN_MIN_STD))}


def compare_categorical(counts: dict[str, int], missing: int, base: dict[str, Any], base_rows: float,
                        th: Thresholds) -> dict[str, Any]:
    freqs: dict[str, float] = base.get("frequencies", {})
    cats = list(freqs)
    n = sum(counts.values())
    known = np.array([counts.get(c, 0) for c in cats], dtype=float)
    unseen = {k: v for k, v in counts.items() if k not in freqs}
    unseen_n = float(sum(unseen.values()))
    cur = np.append(known, unseen_n)
    b_shares = np.append(np.array([freqs[c] for c in cats], dtype=float), 0.0)
    c_shares = cur / n if n else np.zeros(len(cur))
    stat, p, dof = chi2_homogeneity(b_shares * float(base.get("count", 0)), cur)
    tvd = float(0.5 * np.abs(c_shares - b_shares).sum()) if n else 0.0
    rows = n + missing
    out: dict[str, Any] = {
        "kind": "categorical", "rows": int(rows), "count": int(n),
        "psi": _r(psi(b_shares, c_shares)) if n else 0.0,
        "test": {"name": "chi2", "statistic": _r(stat), "p_value": _r(p), "dof": dof},
        "effect": {"name": "tvd", "value": _r(tvd)},
        "missing": _missing(base, missing, rows, base_rows, th),
        "distribution": {"labels": [*cats, UNSEEN], "baseline": [_r(x) for x in b_shares],
                         "current": [_r(x) for x in c_shares]},
        "unseen_share": _r(unseen_n / n) if n else 0.0,
        "unseen": [{"value": k, "count": v} for k, v in sorted(unseen.items(), key=lambda kv: (-kv[1], kv[0]))[:10]],
    }
    _verdict(out, th)
    return out


def _base_rows(base: dict[str, Any], default: float) -> float:
    share = float(base.get("missing_share", 0.0))
    count = float(base.get("count", 0))
    return count / (1 - share) if share < 1 and count else default


def compare(capture: CaptureData, baseline: dict[str, Any], schema: Schema,
            prediction_baseline: dict[str, Any] | None = None, thresholds: Thresholds = Thresholds(),
            ) -> dict[str, Any]:
    """Per-feature and prediction comparison; returns the report's statistical part."""
    # Bonferroni: one window runs a test per feature (and the score); without the correction a
    # 14-test window would raise a false alarm ~13% of the time at p < 0.01 when nothing changed
    n_tests = len(schema.features) + (1 if prediction_baseline else 0)
    th = replace(thresholds, p_value=thresholds.p_value / n_tests)
    features: dict[str, Any] = {}
    warnings: list[str] = []
    base_feats = baseline["features"]
    absent = [f.name for f in schema.features if f.name not in base_feats]
    if absent:
        raise CaptureError(f"baseline has no statistics for feature(s) {absent} of schema {schema.name!r}")
    src_rows = float((baseline.get("source") or {}).get("rows", 0) or 0)
    for f in schema.features:
        base = base_feats[f.name]
        if isinstance(f, NumericFeature):
            if base.get("kind") != "numeric":
                raise CaptureError(f"baseline feature {f.name!r} is {base.get('kind')!r}, the schema says numeric")
            features[f.name] = compare_numeric(capture.values(f.name), base, _base_rows(base, src_rows), th)
        else:
            if base.get("kind") != "categorical":
                raise CaptureError(f"baseline feature {f.name!r} is {base.get('kind')!r}, the schema says categorical")
            out = compare_categorical(capture.counts[f.name], capture.missing[f.name], base,
                                      _base_rows(base, src_rows), th)
            features[f.name] = out
            if out["unseen"]:
                shown = ", ".join(f"{u['value']!r} ({u['count']})" for u in out["unseen"][:5])
                warnings.append(f"{f.name}: {out['unseen_share']:.2%} of values are categories not seen in "
                                f"training: {shown}")
    prediction = None
    scores = capture.score_values()
    if prediction_baseline and prediction_baseline.get("kind") == "categorical" and capture.labels:
        # multiclass: the predicted classes' shares, tested like a categorical feature's
        prediction = compare_categorical(capture.labels, 0, prediction_baseline,
                                         float(prediction_baseline.get("count", 0)), th)
    elif prediction_baseline and len(scores):
        prediction = compare_numeric(scores, prediction_baseline, float(prediction_baseline.get("count", 0)), th)
        if "positive_rate" in prediction_baseline:  # binary: the share predicted positive at the threshold
            thr = float(prediction_baseline.get("threshold", 0.5))
            prediction["positive_rate"] = _r(float(np.mean(scores >= thr)))
            prediction["baseline_positive_rate"] = prediction_baseline.get("positive_rate")
    elif capture.predictions == 0 and capture.rows:
        warnings.append("no predictions in the capture (endpointOutput absent): prediction drift not checked")
    elif not prediction_baseline and capture.rows:
        warnings.append("no prediction baseline (give --model or --prediction-baseline): prediction drift not checked")
    violations = []
    for name, out in [*features.items(), *([("prediction", prediction)] if prediction else [])]:
        for reason in out["reasons"]:
            check = "missing" if reason.startswith("missing") else "distribution"
            violations.append({"feature": name, "check": check, "description": reason})
    drifted = [n for n, o in features.items() if o["drifted"]]
    return {
        "thresholds": {**thresholds.to_dict(), "tests": n_tests, "p_value_per_test": _r(th.p_value)},
        "drift_detected": bool(drifted) or bool(prediction and prediction["drifted"]),
        "summary": {"features": len(features), "features_drifted": len(drifted), "drifted": drifted,
                    "prediction_drifted": None if prediction is None else prediction["drifted"]},
        "features": features, "prediction": prediction, "violations": violations, "warnings": warnings,
    }

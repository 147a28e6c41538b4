"""Validate step: check raw CSV data against the problem's schema and write a JSON report.

Checks: column names, types (numeric text, integer values), ranges, allowed categories, missing
values per column, label values, duplicated rows, label balance and row count. Exit code 0 when
the data passes, 1 when any check fails (the report lists every violation), 2 when the input
cannot be read at all (the report says why).

Command line (SageMaker processing job; the local executor maps the paths)::

    python -m model_code.validate [--input /opt/ml/processing/input/data]
                                  [--output /opt/ml/processing/output/report] [--problem DIR]

Report ``<output>/validation_report.json`` (format ``mlops-stack/validation-report`` v1)::

    {
      "format": "mlops-stack/validation-report", "format_version": 1,
      "status": "passed" | "failed",
      "schema": "adult-income",
      "input": {"rows": 48842, "sha256": ...,        # model_code.data.dataset_digest of the files
                "files": [{"path": ..., "sha256": ..., "rows": ..., "first_row": 0}]},
      "violations": [
        {"check": "range", "column": "age", "message": "...", "count": 3,
         "rows": [12, 40, 977],                      # global 0-based data rows (first 20)
         "locations": [{"file": "a.csv", "row": 12, "line": 14}],  # line: 1-based, header = line 1
         "examples": [130, -1]}                      # offending values (first 5)
      ],
      "warnings": [ ...same shape, for findings under their thresholds... ],
      "profile": {
        "rows": 48842, "duplicate_rows": 52, "label": {"name": "income_gt_50k", "shares": {"0": .76, "1": .24}},
                                             # (regression: the label's min, max, mean)
        "columns": {
          "age": {"type": "numeric", "dtype": "int", "missing_share": 0.0, "min": 17, "max": 90,
                  "mean": 38.6, "std": 13.7},
          "workclass": {"type": "categorical", "missing_share": 0.057, "distinct": 8,
                        "top": {"Private": 0.736, "...": 0.1}}
        }
      }
    }

``check`` is one of: input, columns, type, range, category, missing, label, duplicates,
label_balance, row_count.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from model_code.data import CsvInput, dataset_digest, read_csv_input
from model_code.problem import ProblemError, step_problem
from model_code.schema import CategoricalFeature, DataError, NumericFeature, Schema

REPORT_FORMAT = "mlops-stack/validation-report"
REPORT_FORMAT_VERSION = 1
REPORT_NAME = "validation_report.json"
DEFAULT_INPUT = Path("/opt/ml/processing/input/data")
DEFAULT_OUTPUT = Path("/opt/ml/processing/output/report")
MAX_ROWS_LISTED = 20
MAX_EXAMPLES = 5


@dataclasses.dataclass
class Finding:
    check: str
    column: str | None
    message: str
    rows: np.ndarray = dataclasses.field(default_factory=lambda: np.array([], dtype=int))
    examples: list[Any] = dataclasses.field(default_factory=list)

    def to_dict(self, inp: CsvInput | None) -> dict[str, Any]:
        listed = [int(r) for r in self.rows[:MAX_ROWS_LISTED]]
        locations = []
        if inp is not None:
            for r in listed:
                path, row = inp.locate(r)
                locations.append({"file": path.name, "row": row, "line": row + 2})
        return {
            "check": self.check, "column": self.column, "message": self.message,
            "count": int(len(self.rows)), "rows": listed, "locations": locations,
            "examples": [_jsonable(v) for v in self.examples[:MAX_EXAMPLES]],
        }


@dataclasses.dataclass
class ValidationResult:
    report: dict[str, Any]

    @property
    def passed(self) -> bool:
        return self.report["status"] == "passed"

    @property
    def violations(self) -> list[dict[str, Any]]:
        return self.report["violations"]


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


def _rows_text(rows: np.ndarray) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:MAX_ROWS_LISTED])
    return shown + (f" (+{len(rows) - MAX_ROWS_LISTED} more)" if len(rows) > MAX_ROWS_LISTED else "")


def _check_numeric(f: NumericFeature, raw: pd.Series, out: list[Finding]) -> pd.Series:
    values = pd.to_numeric(raw, errors="coerce")
    present = raw.notna()
    text = present & values.isna()
    if text.any():
        rows = np.flatnonzero(text.to_numpy())
        out.append(Finding("type", f.name, f"column {f.name!r} must be numeric ({f.dtype}); "
                           f"{len(rows)} non-numeric value(s) at rows {_rows_text(rows)}",
                           rows, list(raw[text].head(MAX_EXAMPLES))))
    if f.dtype == "int":
        frac = values.notna() & (values != np.floor(values))
        if frac.any():
            rows = np.flatnonzero(frac.to_numpy())
            out.append(Finding("type", f.name, f"column {f.name!r} must hold integers; "
                               f"{len(rows)} fractional value(s) at rows {_rows_text(rows)}",
                               rows, list(raw[frac].head(MAX_EXAMPLES))))
    outside = values.notna() & ((values < f.minimum) | (values > f.maximum))
    if outside.any():
        rows = np.flatnonzero(outside.to_numpy())
        out.append(Finding("range", f.name, f"column {f.name!r} must be within [{f.minimum}, {f.maximum}]; "
                           f"{len(rows)} value(s) outside at rows {_rows_text(rows)}",
                           rows, list(values[outside].head(MAX_EXAMPLES))))
    return values


def _check_categorical(f: CategoricalFeature, raw: pd.Series, out: list[Finding]) -> None:
    unknown = raw.notna() & ~raw.isin(f.categories)
    if unknown.any():
        rows = np.flatnonzero(unknown.to_numpy())
        seen = sorted(set(raw[unknown].astype(str)))
        out.append(Finding("category", f.name, f"column {f.name!r} has {len(rows)} value(s) outside the "
                           f"allowed categories at rows {_rows_text(rows)}: {seen[:MAX_EXAMPLES]}",
                           rows, seen))


def _check_missing(name: str, raw: pd.Series, allowed: float, violations: list[Finding],
                   warnings: list[Finding]) -> None:
    missing = raw.isna()
    if not missing.any():
        return
    rows = np.flatnonzero(missing.to_numpy())
    share = len(rows) / len(raw)
    target = violations if share > allowed else warnings
    verdict = "exceeds" if share > allowed else "within"
    target.append(Finding("missing", name, f"column {name!r} is missing in {len(rows)} row(s) "
                          f"({share:.2%}, {verdict} the allowed {allowed:.2%}) at rows {_rows_text(rows)}", rows))


def _check_label(schema: Schema, raw: pd.Series, violations: list[Finding],
                 warnings: list[Finding]) -> dict[str, Any]:
    """Missing labels, values outside the classes (or the target's range), the class balance."""
    _check_missing(schema.label, raw, 0.0, violations, warnings)
    bad = schema.label_bad(raw)
    if bad.any():
        rows = np.flatnonzero(bad.to_numpy())
        violations.append(Finding("label", schema.label, f"label {schema.label!r} must be {schema.label_rule()}; "
                                  f"{len(rows)} other value(s) at rows {_rows_text(rows)}",
                                  rows, list(raw[bad].head(MAX_EXAMPLES))))
    if not schema.is_classification:
        values = pd.to_numeric(raw[~bad], errors="coerce").dropna()
        return {"min": float(values.min()), "max": float(values.max()), "mean": round(float(values.mean()), 6)} \
            if len(values) else {}
    index = schema.label_indices(raw).dropna()
    if not len(index):
        return {"shares": {}}
    counts = index.value_counts(normalize=True)
    shares = {str(v): round(float(counts.get(float(i), 0.0)), 6) for i, v in enumerate(schema.label_values)}
    rare = min(shares, key=lambda k: shares[k])
    if shares[rare] < schema.min_minority_share:
        violations.append(Finding(
            "label_balance", schema.label,
            f"label {schema.label!r} is imbalanced: class {rare} is {shares[rare]:.2%} of rows, "
            f"below the minimum {schema.min_minority_share:.2%}"))
    return {"shares": shares}


def profile(frame: pd.DataFrame, numeric: dict[str, pd.Series], schema: Schema) -> dict[str, Any]:
    """A short per-column profile: type, missing share, and range or top categories."""
    columns: dict[str, Any] = {}
    for f in schema.features:
        if f.name not in frame.columns:
            continue
        raw = frame[f.name]
        entry: dict[str, Any] = {"type": f.kind, "missing_share": round(float(raw.isna().mean()), 6)
                                 if len(raw) else 0.0}
        if isinstance(f, NumericFeature):
            v = numeric[f.name].dropna()
            entry["dtype"] = f.dtype
            if len(v):
                entry.update(min=float(v.min()), max=float(v.max()), mean=round(float(v.mean()), 6),
                             std=round(float(v.std(ddof=0)), 6))
        else:
            counts = raw.value_counts(dropna=True)
            entry["distinct"] = int(len(counts))
            entry["top"] = {str(k): round(float(c) / len(raw), 6) for k, c in counts.head(5).items()}
        columns[f.name] = entry
    extra = [c for c in frame.columns if c not in schema.columns]
    for c in extra:
        columns[c] = {"type": "unexpected", "missing_share": round(float(frame[c].isna().mean()), 6)}
    return {"rows": int(len(frame)), "columns": columns}


def validate_frame(inp: CsvInput, schema: Schema | None = None) -> ValidationResult:
    """Run every check on already-read input; return the report (never raises on bad data)."""
    schema = schema or step_problem().schema
    frame = inp.frame
    violations: list[Finding] = []
    warnings: list[Finding] = []

    missing_cols = [c for c in schema.columns if c not in frame.columns]
    extra_cols = [c for c in frame.columns if c not in schema.columns]
    if missing_cols:
        violations.append(Finding("columns", None, f"missing column(s) {missing_cols}; expected {schema.columns}"))
    if extra_cols:
        violations.append(Finding("columns", None, f"unexpected column(s) {extra_cols}; expected {schema.columns}"))

    numeric: dict[str, pd.Series] = {}
    for f in schema.features:
        if f.name not in frame.columns:
            continue
        raw = frame[f.name]
        if isinstance(f, NumericFeature):
            numeric[f.name] = _check_numeric(f, raw, violations)
        else:
            _check_categorical(f, raw, violations)
        _check_missing(f.name, raw, f.max_missing_share, violations, warnings)

    label_profile: dict[str, Any] = {}
    if schema.label in frame.columns:
        label_profile = _check_label(schema, frame[schema.label], violations, warnings)

    dup_mask = frame.duplicated(keep="first")
    dup_rows = np.flatnonzero(dup_mask.to_numpy())
    if len(dup_rows):
        share = len(dup_rows) / len(frame)
        target = violations if share > schema.max_duplicate_share else warnings
        verdict = "exceeds" if share > schema.max_duplicate_share else "within"
        target.append(Finding("duplicates", None, f"{len(dup_rows)} row(s) ({share:.2%}, {verdict} the allowed "
                              f"{schema.max_duplicate_share:.2%}) repeat an earlier row exactly, at rows "
                              f"{_rows_text(dup_rows)}", dup_rows))

    if len(frame) < schema.min_rows:
        violations.append(Finding("row_count", None,
                                  f"{len(frame)} row(s), fewer than the minimum {schema.min_rows}"))

    prof = profile(frame, numeric, schema)
    prof["duplicate_rows"] = int(len(dup_rows))
    prof["label"] = {"name": schema.label, **label_profile}
    report = {
        "format": REPORT_FORMAT,
        "format_version": REPORT_FORMAT_VERSION,
        "status": "failed" if violations else "passed",
        "schema": schema.name,
        "input": {
            "rows": int(len(frame)),
            "sha256": dataset_digest(inp.digests()),
            "files": [{"path": str(p), "sha256": d, "rows": int(_file_rows(inp, i)), "first_row": int(o)}
                      for i, (p, d, o) in enumerate(zip(inp.files, inp.digests().values(), inp.offsets,
                                                        strict=True))],
        },
        "violations": [v.to_dict(inp) for v in violations],
        "warnings": [w.to_dict(inp) for w in warnings],
        "profile": prof,
    }
    return ValidationResult(report)


def _file_rows(inp: CsvInput, i: int) -> int:
    end = inp.offsets[i + 1] if i + 1 < len(inp.offsets) else len(inp.frame)
    return end - inp.offsets[i]


def write_report(report: dict[str, Any], output: Path) -> Path:
    output.mkdir(parents=True, exist_ok=True)
    path = output / REPORT_NAME
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return path


def run(input_path: Path, output: Path, schema: Schema | None = None) -> tuple[int, Path]:
    """Validate ``input_path``, write the report under ``output``; return (exit code, report path)."""
    schema = schema or step_problem().schema
    try:
        inp = read_csv_input(input_path)
    except DataError as exc:
        report = {
            "format": REPORT_FORMAT, "format_version": REPORT_FORMAT_VERSION, "status": "failed",
            "schema": schema.name, "input": {"rows": 0, "files": []},
            "violations": [Finding("input", None, str(exc)).to_dict(None)], "warnings": [], "profile": {},
        }
        return 2, write_report(report, output)
    result = validate_frame(inp, schema)
    return (0 if result.passed else 1), write_report(result.report, output)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m model_code.validate",
                                description="Validate raw data against the schema; write a JSON report.")
    p.add_argument("--input", type=Path, default=DEFAULT_INPUT, help="CSV file or folder of CSV files")
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"folder for {REPORT_NAME}")
    p.add_argument("--problem", type=Path, help="problem folder (default $MLOPS_PROBLEM_DIR, else the bundle's)")
    p.add_argument("--min-rows", type=int, default=None, help="override the problem's rules.min_rows")
    p.add_argument("--max-duplicate-share", type=float, default=None,
                   help="override the problem's rules.max_duplicate_share")
    p.add_argument("--min-minority-share", type=float, default=None,
                   help="override the problem's rules.min_class_share")
    return p


def schema_from_args(args: argparse.Namespace, schema: Schema) -> Schema:
    overrides = {k: getattr(args, k) for k in ("min_rows", "max_duplicate_share", "min_minority_share")
                 if getattr(args, k) is not None}
    return dataclasses.replace(schema, **overrides)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        problem = step_problem(args.problem)
    except ProblemError as exc:
        print(f"validate failed: {exc}", file=sys.stderr)
        return 2
    code, path = run(args.input, args.output, schema_from_args(args, problem.schema))
    report = json.loads(path.read_text())
    for v in report["violations"]:
        print(f"violation [{v['check']}] {v['message']}", file=sys.stderr)
    print(f"validation {report['status']}: {len(report['violations'])} violation(s), "
          f"{len(report['warnings'])} warning(s); report {path}")
    return code


if __name__ == "__main__":
    sys.exit(main())

"""Preprocess step: deduplicate, split train/validation/test (seeded, stratified by class or by the
decile of a regression target), write the drift
baseline computed on the training split only.

Nothing is fitted on validation or test rows: the baseline statistics (quantile bins,
frequencies, label shares) come from the train split, and the model's own encoder is fitted by
train on the train split. Splits keep raw feature values, so the model artifact alone (which
contains its encoder) serves raw requests.

Command line (SageMaker processing job)::

    python -m model_code.preprocess [--input /opt/ml/processing/input/data]
                                    [--output /opt/ml/processing/output] [--problem DIR]
                                    [--seed 42] [--validation-share 0.15] [--test-share 0.15]

Outputs (each subfolder is one ProcessingOutput)::

    <output>/train/train.csv
    <output>/validation/validation.csv
    <output>/test/test.csv
    <output>/baseline/baseline.json      # format: see model_code/baseline.py

Same input + same seed -> byte-identical files. Exit code 1 (message names file, column, rows)
when the input does not fit the schema's types.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from model_code import baseline as bl
from model_code.data import read_csv_input
from model_code.problem import ProblemError, step_problem
from model_code.schema import DataError, NumericFeature, Schema, coerce

DEFAULT_INPUT = Path("/opt/ml/processing/input/data")
DEFAULT_OUTPUT = Path("/opt/ml/processing/output")
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class SplitConfig:
    seed: int = 42
    validation_share: float = 0.15
    test_share: float = 0.15

    def check(self) -> None:
        for name, v in (("validation_share", self.validation_share), ("test_share", self.test_share)):
            if not 0.0 < v < 1.0:
                raise ValueError(f"{name}={v} must be within (0, 1)")
        if self.validation_share + self.test_share >= 1.0:
            raise ValueError(f"validation_share + test_share = {self.validation_share + self.test_share} "
                             "leaves no training rows")


def split_indices(labels: np.ndarray, config: SplitConfig) -> dict[str, np.ndarray]:
    """Stratified, seeded split of row positions; each split keeps the input order."""
    config.check()
    rng = np.random.default_rng(config.seed)
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for value in np.unique(labels):
        idx = np.flatnonzero(labels == value)
        idx = idx[rng.permutation(len(idx))]
        n_val = round(len(idx) * config.validation_share)
        n_test = round(len(idx) * config.test_share)
        parts["validation"].append(idx[:n_val])
        parts["test"].append(idx[n_val:n_val + n_test])
        parts["train"].append(idx[n_val + n_test:])
    return {s: np.sort(np.concatenate(p)) for s, p in parts.items()}


def strata(schema: Schema, labels: np.ndarray) -> np.ndarray:
    """What the split stratifies on: the class index, or the decile of a regression target."""
    if schema.is_classification or len(labels) == 0:
        return labels
    edges = np.unique(np.quantile(labels, np.linspace(0.1, 0.9, 9)))
    return np.searchsorted(edges, labels, side="right")


def to_csv_bytes(frame: pd.DataFrame, schema: Schema) -> bytes:
    """Deterministic CSV: integer features without '.0', missing as empty cells, '\\n' line ends,
    classes written as their declared values (the frame holds class indices)."""
    out = frame.copy()
    for f in schema.features:
        if isinstance(f, NumericFeature) and f.dtype == "int":
            out[f.name] = out[f.name].round().astype("Int64")
    if schema.is_classification and schema.label in out.columns:
        out[schema.label] = np.asarray(schema.label_values, dtype=object)[out[schema.label].to_numpy()]
    return out.to_csv(index=False, lineterminator="\n").encode()


@dataclass(frozen=True)
class PreprocessResult:
    paths: dict[str, Path]
    rows: dict[str, int]
    duplicates_dropped: int


def preprocess(input_path: Path, output: Path, config: SplitConfig = SplitConfig(),
               schema: Schema | None = None) -> PreprocessResult:
    schema = schema or step_problem().schema
    inp = read_csv_input(input_path)
    source = ", ".join(str(p) for p in inp.files)
    frame = coerce(inp.frame, schema, source=source)
    before = len(frame)
    frame = frame.drop_duplicates(keep="first").reset_index(drop=True)
    dropped = before - len(frame)
    if len(frame) == 0:
        raise DataError(f"{source}: no rows to split")

    idx = split_indices(strata(schema, frame[schema.label].to_numpy()), config)
    paths: dict[str, Path] = {}
    digests: dict[str, dict] = {}
    for name in SPLITS:
        part = frame.iloc[idx[name]].reset_index(drop=True)
        data = to_csv_bytes(part, schema)
        path = output / name / f"{name}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        paths[name] = path
        digests[name] = {"rows": int(len(part)), "sha256": hashlib.sha256(data).hexdigest()}
        if schema.task == "binary":
            digests[name]["positive_share"] = bl._r(part[schema.label].mean()) if len(part) else 0.0

    train = frame.iloc[idx["train"]].reset_index(drop=True)
    source_info = {
        "split": "train", "rows": digests["train"]["rows"], "sha256": digests["train"]["sha256"],
        "seed": config.seed, "validation_share": config.validation_share, "test_share": config.test_share,
        "duplicates_dropped": dropped, "input_sha256": inp.digests(), "splits": digests,
    }
    baseline = bl.compute_baseline(train, schema, source_info)
    base_path = output / "baseline" / bl.BASELINE_NAME
    base_path.parent.mkdir(parents=True, exist_ok=True)
    base_path.write_text(bl.dumps(baseline))
    paths["baseline"] = base_path
    return PreprocessResult(paths=paths, rows={k: v["rows"] for k, v in digests.items()},
                            duplicates_dropped=dropped)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m model_code.preprocess",
                                description="Split data into train/validation/test and write the drift baseline.")
    p.add_argument("--input", type=Path, default=DEFAULT_INPUT, help="CSV file or folder of CSV files")
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                   help="root folder; writes train/, validation/, test/, baseline/ under it")
    p.add_argument("--problem", type=Path, help="problem folder (default $MLOPS_PROBLEM_DIR, else the bundle's)")
    p.add_argument("--seed", type=int, default=SplitConfig.seed)
    p.add_argument("--validation-share", type=float, default=SplitConfig.validation_share)
    p.add_argument("--test-share", type=float, default=SplitConfig.test_share)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = SplitConfig(args.seed, args.validation_share, args.test_share)
    try:
        config.check()
        result = preprocess(args.input, args.output, config, step_problem(args.problem).schema)
    except (DataError, ValueError, ProblemError) as exc:
        print(f"preprocess failed: {exc}", file=sys.stderr)
        return 1
    print(f"preprocess: rows {result.rows}, {result.duplicates_dropped} duplicate(s) dropped; "
          f"wrote {', '.join(str(p) for p in result.paths.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Data access shared by the steps: CSV input reading, digests, deterministic CSV writing, and
drift knobs (``Drift``) that a problem's synthetic generator applies to its columns (the Adult
census's is ``problems/adult/synthetic.py``).

Drift semantics (each knob touches only its own column; all other columns, including the label,
stay byte-identical to the undrifted sample of the same seed and row count):

* ``mean_shift={"<numeric>": 10}``: add 10 (in the column's own units) to every non-missing value.
* ``variance_scale={"<numeric>": 2}``: ``x -> c + 2 * (x - c)`` (standard deviation x2, variance
  x4), ``c`` the mean of the undrifted column (rounded for integer columns, so the mean moves by
  at most ``0.5 * |scale - 1|``).
* ``new_category={"<categorical>": ("<new value>", 0.2)}``: exactly ``round(0.2 * rows)`` rows get
  a category that the schema does not know.
* ``missing_surge={"<feature>": 0.5}``: exactly ``round(0.5 * rows)`` rows become missing (rows
  already missing stay missing).

Integer columns are rounded after a shift; drifted values are not clipped to the schema ranges,
so a large shift also produces out-of-range values (which ``validate`` reports).
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from model_code.schema import DataError, Schema, coerce

CSV_SUFFIXES = (".csv", ".csv.gz")


# --- digests and CSV input ---------------------------------------------------------------------
def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def dataset_digest(digests: Mapping[str, str]) -> str:
    """One sha256 for a dataset: over its files' names and sha256s (sorted by name), so the same files give the
    same digest wherever they were read (Validate's input, a DVC checkout: `mlops data checkout`)."""
    lines = "".join(f"{name} {digest}\n" for name, digest in sorted(digests.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def list_csv_files(path: Path) -> list[Path]:
    """A CSV file itself, or every ``*.csv``/``*.csv.gz`` in a folder (sorted, not recursive)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"input {path} does not exist")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(CSV_SUFFIXES))
    if not files:
        raise DataError(f"input folder {path} holds no *.csv or *.csv.gz file")
    return files


@dataclass(frozen=True)
class CsvInput:
    """Rows of one or more CSV files read as text, plus where each file's rows start."""

    frame: pd.DataFrame
    files: tuple[Path, ...]
    offsets: tuple[int, ...]  # global 0-based index of each file's first data row

    def locate(self, row: int) -> tuple[Path, int]:
        """Global 0-based row -> (file, 0-based data row within that file)."""
        i = int(np.searchsorted(np.asarray(self.offsets), row, side="right")) - 1
        return self.files[i], row - self.offsets[i]

    def digests(self) -> dict[str, str]:
        return {p.name: sha256_file(p) for p in self.files}


def read_csv_input(path: Path) -> CsvInput:
    """Read every CSV under ``path`` as strings (empty cell = missing); headers must agree."""
    files = list_csv_files(path)
    frames: list[pd.DataFrame] = []
    offsets: list[int] = []
    total = 0
    header: list[str] | None = None
    for f in files:
        try:
            df = pd.read_csv(f, dtype=str, keep_default_na=False, na_values=[""])
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
            raise DataError(f"{f}: cannot be read as CSV: {exc}") from exc
        if header is None:
            header = list(df.columns)
        elif list(df.columns) != header:
            raise DataError(f"{f}: header {list(df.columns)} differs from {files[0].name}'s {header}")
        frames.append(df)
        offsets.append(total)
        total += len(df)
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return CsvInput(frame=frame, files=tuple(files), offsets=tuple(offsets))


def read_split(path: Path, schema: Schema, *, require_label: bool = True) -> tuple[pd.DataFrame, dict]:
    """Read a split written by preprocess into canonical dtypes; also return its digests."""
    inp = read_csv_input(path)
    frame = pd.DataFrame(inp.frame)
    source = ", ".join(str(p) for p in inp.files)
    coerced = coerce(frame, schema, source=source, require_label=require_label)
    return coerced, {"files": inp.digests(), "rows": len(frame)}


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    """Deterministic CSV (``\\n`` line ends, no index); ``.gz`` paths are gzipped with mtime 0."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = frame.to_csv(index=False, lineterminator="\n").encode()
    if path.name.endswith(".gz"):
        text = gzip.compress(text, compresslevel=6, mtime=0)
    path.write_bytes(text)
    return path


# --- drift knobs ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Drift:
    """Drift knobs for ``synthesize``; see the module docstring for the exact semantics."""

    mean_shift: Mapping[str, float] = field(default_factory=dict)
    variance_scale: Mapping[str, float] = field(default_factory=dict)
    new_category: Mapping[str, tuple[str, float]] = field(default_factory=dict)
    missing_surge: Mapping[str, float] = field(default_factory=dict)

    def check(self, schema: Schema) -> None:
        numeric = {f.name for f in schema.numeric}
        categorical = {f.name: f for f in schema.categorical}
        for knob, names in (("mean_shift", self.mean_shift), ("variance_scale", self.variance_scale)):
            for name in names:
                if name not in numeric:
                    raise ValueError(f"{knob}: {name!r} is not a numeric feature; numeric: {sorted(numeric)}")
        for name, value in self.variance_scale.items():
            if value < 0:
                raise ValueError(f"variance_scale: {name}={value} must be >= 0")
        for name, (category, share) in self.new_category.items():
            if name not in categorical:
                raise ValueError(f"new_category: {name!r} is not a categorical feature; "
                                 f"categorical: {sorted(categorical)}")
            if category in categorical[name].categories:
                raise ValueError(f"new_category: {category!r} is already a category of {name!r}")
            _check_share("new_category", name, share)
        for name, share in self.missing_surge.items():
            if name not in schema.feature_names:
                raise ValueError(f"missing_surge: {name!r} is not a feature; features: {schema.feature_names}")
            _check_share("missing_surge", name, share)


def _check_share(knob: str, name: str, share: float) -> None:
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"{knob}: share for {name!r} is {share}, must be within [0, 1]")


def stream(seed: int, tag: str) -> np.random.Generator:
    """An independent random stream per (seed, purpose): one knob never shifts another's draws."""
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(tag.encode())]))


def apply_drift(data: dict[str, np.ndarray], drift: Drift, seed: int, n: int, schema: Schema) -> None:
    for name, shift in drift.mean_shift.items():
        data[name] = data[name] + shift
    for name, scale in drift.variance_scale.items():
        col = data[name]
        center = np.nanmean(col) if n else 0.0
        if schema.feature(name).dtype == "int":  # type: ignore[union-attr]
            center = np.rint(center)  # integer center: rounding the result then adds no bias
        data[name] = center + scale * (col - center)
    for f in schema.numeric:
        if f.dtype == "int" and (f.name in drift.mean_shift or f.name in drift.variance_scale):
            data[f.name] = np.rint(data[f.name])
    for name, (category, share) in drift.new_category.items():
        rows = stream(seed, f"new_category:{name}").choice(n, size=round(share * n), replace=False)
        col = data[name].copy()
        col[rows] = category
        data[name] = col
    for name, share in drift.missing_surge.items():
        rows = stream(seed, f"missing_surge:{name}").choice(n, size=round(share * n), replace=False)
        col = data[name].copy()
        col[rows] = np.nan
        data[name] = col

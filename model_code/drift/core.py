"""The drift job's shared terms: errors, thresholds, the time window, and what a window of capture holds."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from model_code.schema import NumericFeature, Schema

REPORT_FORMAT = "mlops-stack/drift-report"
REPORT_FORMAT_VERSION = 1
REPORT_JSON = "drift_report.json"
REPORT_HTML = "drift_report.html"
PSI_EPSILON = 1e-4
UNSEEN = "(unseen)"
WASSERSTEIN_MIN_STD = 1e-3   # Evidently's floor for the normalising standard deviation
MAX_METRICS_PER_REQUEST = 1000
BLOCK_RECORDS = 50_000
DEFAULT_OUTPUT = Path("/opt/ml/processing/output/drift")
HOUR_PATH = re.compile(r"(?:^|/)(\d{4})/(\d{2})/(\d{2})/(\d{2})/")


class CaptureError(ValueError):
    """Capture data that cannot be read or does not fit the schema; the message says where."""


class UsageError(ValueError):
    """Bad arguments (window, thresholds, missing namespace)."""


@dataclass(frozen=True)
class Thresholds:
    psi: float = 0.2
    p_value: float = 0.01
    min_effect: float = 0.1
    missing_delta: float = 0.05

    def to_dict(self) -> dict[str, float]:
        return {"psi": self.psi, "p_value": self.p_value, "min_effect": self.min_effect,
                "missing_delta": self.missing_delta, "psi_epsilon": PSI_EPSILON}


@dataclass(frozen=True)
class Window:
    start: datetime | None = None
    end: datetime | None = None

    def __post_init__(self) -> None:
        if self.start and self.end and self.start >= self.end:
            raise UsageError(f"window start {self.start.isoformat()} is not before end {self.end.isoformat()}")

    def hours(self) -> list[datetime] | None:
        """The hour folders intersecting the window, or None when the window is open."""
        if self.start is None or self.end is None:
            return None
        h = self.start.replace(minute=0, second=0, microsecond=0)
        out = []
        while h < self.end:
            out.append(h)
            h += timedelta(hours=1)
        return out

    def contains_hour(self, hour: datetime) -> bool:
        end = hour + timedelta(hours=1)
        return (self.start is None or end > self.start) and (self.end is None or hour < self.end)

    def to_dict(self) -> dict[str, str | None]:
        return {"start": iso(self.start), "end": iso(self.end)}


def iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(raw: str, what: str) -> datetime:
    try:
        t = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise UsageError(f"{what}: {raw!r} is not an ISO 8601 time (e.g. 2024-05-01T13:00:00Z)") from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


@dataclass
class CaptureData:
    """What the window held: numeric values, categorical counts, scores and bookkeeping.

    Numeric features keep their values (float64, NaN = missing); categorical features only their
    counts per value (missing counted apart), which keeps 1M rows at ~60 MB.
    """

    schema: Schema
    numeric: dict[str, list[np.ndarray]] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)
    scores: list[np.ndarray] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)
    """Predicted classes of a multiclass model (its endpointOutput is labels, not scores)."""
    rows: int = 0
    records: int = 0
    outside_window: int = 0
    files: int = 0

    def __post_init__(self) -> None:
        for f in self.schema.features:
            self.missing.setdefault(f.name, 0)
            if isinstance(f, NumericFeature):
                self.numeric.setdefault(f.name, [])
            else:
                self.counts.setdefault(f.name, {})

    def merge(self, other: CaptureData) -> None:
        for name, parts in other.numeric.items():
            self.numeric[name].extend(parts)
        for name, counts in other.counts.items():
            mine = self.counts[name]
            for k, v in counts.items():
                mine[k] = mine.get(k, 0) + v
        for name, n in other.missing.items():
            self.missing[name] += n
        self.scores.extend(other.scores)
        for k, v in other.labels.items():
            self.labels[k] = self.labels.get(k, 0) + v
        self.rows += other.rows
        self.records += other.records
        self.outside_window += other.outside_window
        self.files += other.files

    def values(self, name: str) -> np.ndarray:
        parts = self.numeric[name]
        return np.concatenate(parts) if parts else np.empty(0)

    def score_values(self) -> np.ndarray:
        return np.concatenate(self.scores) if self.scores else np.empty(0)

    @property
    def predictions(self) -> int:
        return sum(len(s) for s in self.scores) + sum(self.labels.values())


@dataclass
class Block:
    """Up to BLOCK_RECORDS records of one file read line by line with json, parsed together."""

    source: str
    lines: list[int] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    in_kinds: list[str] = field(default_factory=list)   # csv | json, per record
    in_texts: list[str] = field(default_factory=list)
    out_kinds: list[str] = field(default_factory=list)  # csv | json | none
    out_texts: list[str] = field(default_factory=list)


def where(block: Block, i: int) -> str:
    return f"{block.source} line {block.lines[i]} (eventId {block.events[i]!r})"



"""The exact join of labels to captured requests by inference id (the counts: model_code/quality/__init__.py)."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from model_code.quality.records import Captured, Label
from model_code.schema import Schema

CATEGORIES = ("matched", "missing", "earlier_window", "late", "later_window", "unknown_id", "duplicate", "conflicting",
              "invalid", "ambiguous_capture")
EXAMPLES = 10


@dataclass
class Joined:
    """The rows scored (features and label indices or values) and every label's and request's category."""

    rows: pd.DataFrame
    y: np.ndarray
    captured_records: int
    captured_rows: int
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 0))
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def note(self, category: str, example: str, n: int = 1) -> None:
        self.counts[category] += n
        if len(self.examples[category]) < EXAMPLES:
            self.examples[category].append(example)

    @property
    def matched_rows(self) -> int:
        return len(self.y)

    @property
    def coverage(self) -> float:
        return self.matched_rows / self.captured_rows if self.captured_rows else math.nan


def window_end_of(time: datetime, start: datetime, hours: int) -> datetime:
    """The end of the window (of ``hours``, tiling back from ``start``) that holds a time before ``start``."""
    back = math.floor((start - time) / timedelta(hours=hours))
    return start - timedelta(hours=hours * back)


def _label_problem(label: Label, request: Captured, schema: Schema) -> str | None:
    if len(label.values) != request.row_count:
        return f"{len(label.values)} labels for a request of {request.row_count} rows"
    raw = pd.Series(label.values, dtype=object)
    bad = raw.isna() | (raw.astype(str) == "") | schema.label_bad(raw)
    if bad.any():
        value = label.values[int(np.flatnonzero(bad.to_numpy())[0])]
        return f"label {value!r} is not {schema.label_rule()}"
    return None


def join(captured: list[Captured], labels: list[Label], schema: Schema, *, start: datetime, hours: int,
         label_delay: timedelta) -> Joined:
    """Join ``labels`` to the requests of the window ``[start, start + hours)``; ``captured`` also holds the
    lookback before it, to tell labels of earlier windows (on time or late) from ids never captured."""
    end = start + timedelta(hours=hours)
    by_id: dict[str, list[Captured]] = defaultdict(list)
    for request in captured:
        by_id[request.inference_id].append(request)
    in_window = [c for c in captured if start <= c.time < end]
    labels_of: dict[str, list[Label]] = defaultdict(list)
    for label in labels:
        labels_of[label.event_id].append(label)

    frames: list[pd.DataFrame] = []
    targets: list[np.ndarray] = []
    joined = Joined(pd.DataFrame(), np.empty(0), len(in_window), sum(c.row_count for c in in_window))
    for event_id, found in sorted(labels_of.items(), key=lambda kv: kv[0]):
        requests = by_id.get(event_id, [])
        where = found[0].where
        if not requests:
            joined.note("unknown_id", f"{where}: id {event_id!r} was not captured in the window nor the lookback",
                        len(found))
            continue
        if len(requests) > 1:
            joined.note("ambiguous_capture", f"{where}: id {event_id!r} was captured {len(requests)} times "
                        f"({requests[0].where}, {requests[1].where})", len(found))
            continue
        request = requests[0]
        if request.time >= end:  # its own window's job scores it (after its own deadline)
            joined.note("later_window", f"{where}: id {event_id!r} captured {request.time:%Y-%m-%dT%H:%M:%SZ}, "
                        "after this window", len(found))
            continue
        if request.time < start:  # its window's job scored it if it came on time; either way, not this one's
            first = min(found, key=lambda label: label.hour)
            deadline = window_end_of(request.time, start, hours) + label_delay
            category = "late" if first.hour >= deadline else "earlier_window"
            joined.note(category, f"{first.where}: id {event_id!r} captured {request.time:%Y-%m-%dT%H:%M:%SZ}, "
                        f"labelled in hour {first.hour:%Y-%m-%dT%H}Z (deadline {deadline:%Y-%m-%dT%H}Z)", len(found))
            continue
        problems = [(label, _label_problem(label, request, schema)) for label in found]
        valid = [label for label, problem in problems if problem is None]
        for label, problem in problems:
            if problem is not None:
                joined.note("invalid", f"{label.where}: id {event_id!r}: {problem}")
        if not valid:
            continue
        if len({tuple(map(str, label.values)) for label in valid}) > 1:
            joined.note("conflicting", f"{where}: id {event_id!r} has {len(valid)} labels that disagree", len(valid))
            continue
        first = min(valid, key=lambda label: label.hour)
        if len(valid) > 1:
            joined.note("duplicate", f"{valid[1].where}: id {event_id!r} labelled again", len(valid) - 1)
        joined.note("matched", f"{first.where}: id {event_id!r}")
        frames.append(request.rows)
        raw = pd.Series(first.values, dtype=object)
        targets.append((schema.label_indices(raw) if schema.is_classification else pd.to_numeric(raw)).to_numpy())
    labelled = {event_id for event_id in labels_of}
    for request in in_window:
        if request.inference_id not in labelled:
            joined.note("missing", f"{request.where}: id {request.inference_id!r} has no label yet")
    if frames:
        joined.rows = pd.concat(frames, ignore_index=True)
        joined.y = np.concatenate(targets)
        if schema.is_classification:
            joined.y = joined.y.astype(np.int64)
    return joined

"""Drift job: compare captured endpoint traffic with the training baseline.

Reads SageMaker data-capture JSONL for a time window (a local folder or ``s3://bucket/prefix``),
compares every feature and the model's score with the drift baseline written by preprocess
(``baseline.py``) and the model's ``prediction_baseline``, and writes a JSON report, a
self-contained HTML report and, when a namespace is given, CloudWatch metrics.

Command line (a SageMaker processing job, or locally)::

    python -m model_code drift --input DIR|s3://bucket/prefix --baseline baseline.json
        [--model model.tar.gz|model.joblib|DIR] [--prediction-baseline prediction_baseline.json]
        [--start 2024-05-01T12:00:00Z] [--end 2024-05-01T13:00:00Z] [--hours N]
        [--output /opt/ml/processing/output/drift]
        [--namespace mlops-stack/dev --endpoint NAME]     # CloudWatch metrics (or env, see below)
        [--psi 0.2] [--p-value 0.01] [--min-effect 0.1] [--missing-delta 0.05]
        [--workers N] [--fail-on-drift]

Exit codes: 0 the job ran (drift or not; an empty window is not an error), 1 bad input (capture
records that do not fit the schema, unreadable files, a bad baseline), 2 bad arguments,
3 drift detected and ``--fail-on-drift`` was given.

Window: ``--start`` (inclusive) and ``--end`` (exclusive) are ISO 8601 times (UTC unless an offset
is given); ``--hours N`` alone means the N full hours before the current hour. No window: all the
capture under ``--input``. Files are listed only under the ``yyyy/mm/dd/hh`` folders that intersect
the window (SageMaker's layout ``<prefix>/<endpoint>/<variant>/yyyy/mm/dd/hh/*.jsonl``; the prefix
may point at any level above the hour folders); every record is then filtered by its
``eventMetadata.inferenceTime``. Local files not in that layout are read whole and filtered the
same way. ``*.jsonl.partial`` files (being written) are ignored.

Capture records: ``captureData.endpointInput`` / ``endpointOutput`` with ``encoding`` CSV, JSON or
BASE64 (the content type then says CSV or JSON). Inputs: CSV rows in the schema's feature order,
with or without a header line (a header may order the columns differently; it must name exactly
the features), or JSON ``{"instances": [...]}`` of objects keyed by feature name (a missing key is a
missing value, an unknown key is an error) or arrays in feature order. Outputs: CSV, one score per
line (first field), or JSON ``{"predictions": [{"score": ..}, ..]}`` (or a list of numbers); the
number of predictions must match the number of input rows of the record. Anything else fails the
job naming the file, line, event id and what was expected.

Statistics (per feature; numeric on the baseline's decile bins, categorical on the baseline's
categories plus one "unseen" bucket):

- PSI = sum((c - b) * ln(c / b)) over bins, shares floored at ``PSI_EPSILON`` = 1e-4 (so a bin or
  category absent on one side contributes a finite amount; an unseen category at 1% adds ~0.046).
- Numeric test: two-sample Kolmogorov-Smirnov statistic evaluated at the baseline's cut points
  (the baseline stores exact cumulative shares there, so no distribution is reconstructed; the
  statistic is a lower bound of the full-resolution KS statistic), p-value from the asymptotic
  Kolmogorov distribution with n_eff = n_baseline * n_current / (n_baseline + n_current).
  Effect size: the Wasserstein distance between the baseline's and the current distribution
  (the mean absolute difference of their quantile functions at the 100 percentile midpoints the
  baseline stores), divided by the baseline's standard deviation (floored at 0.001): Evidently's
  "normed Wasserstein". It measures how far values moved in units of the feature's spread, which
  a shift within a decile bin or of the tails does not hide. Baselines written before percentiles
  were stored fall back to the KS statistic D.
- Categorical test: chi-square test of homogeneity on the 2 x K table (baseline counts =
  frequencies x baseline count, current counts; empty columns dropped, columns with an expected
  count below 5 pooled into one, as the approximation requires). Effect size: total
  variation distance (half the L1 distance of the shares, unseen bucket included).
- Missing share: two-proportion z-test of the missing share against the baseline's.

Verdict (``Thresholds``; every threshold is a command-line option):

- p-values are compared with ``p_value`` (0.01) divided by the number of tests of the window
  (features + the score: Bonferroni), so a window where nothing changed raises a false alarm
  with probability <= 1%, not ~13% (14 independent tests at 0.01).
- distribution drift: p < corrected ``p_value`` AND (PSI >= ``psi`` (0.2) OR effect >=
  ``min_effect`` (0.1)). Requiring both significance and size means a small window's noise (PSI
  of 50 rows is ~0.2 by chance) and a huge window's trivial differences (1M rows make p ~ 0 for
  a 0.5% shift) are not flagged.
- missing drift: p < corrected ``p_value`` AND |missing share - baseline| >= ``missing_delta``
  (0.05).
- a feature drifts if either holds; the score (prediction) is judged like a numeric feature;
  ``drift_detected`` = any feature or the prediction drifted. Unseen categories are reported
  (share and the most frequent values) and count towards the categorical statistics; they are
  not an error.

Report ``<output>/drift_report.json`` (format ``mlops-stack/drift-report`` v1)::

    {"format": "mlops-stack/drift-report", "format_version": 1,
     "status": "ok" | "no_data", "drift_detected": bool,
     "window": {"start": iso | null, "end": iso | null},
     "input": {"uri", "files", "records", "records_outside_window", "rows", "predictions"},
     "baseline": {"path", "schema", "rows", "sha256", "package_arn" | null},
     "prediction_baseline": {"source": "file" | "model" | "baseline", "path"} | null,
     "thresholds": {"psi", "p_value", "min_effect", "missing_delta", "psi_epsilon",
                    "tests", "p_value_per_test"},   # the last two when there was data
     "summary": {"features": 13, "features_drifted": 2, "drifted": [names],
                 "prediction_drifted": bool | null},
     "features": {name: FEATURE},
     "prediction": FEATURE (numeric, plus "positive_rate", "baseline_positive_rate") | null,
     "violations": [{"feature", "check": "distribution" | "missing", "description"}],
     "warnings": [str],
     "metrics": {"namespace", "endpoint", "published"} | null}

    FEATURE = {"kind": "numeric" | "categorical", "drifted": bool, "reasons": [str],
               "rows", "count" (non-missing), "psi", "test": {"name": "ks" | "chi2", "statistic",
               "p_value", "dof"?}, "effect": {"name": "wasserstein" | "ks_d" | "tvd", "value"},
               "missing": {"share", "baseline_share", "delta", "p_value", "drifted"},
               "distribution": {"labels": [..], "baseline": [shares], "current": [shares]},
               numeric: "current": {"mean", "std", "min", "max", "quantiles"},
                        "baseline": {"mean", "std", "min", "max"}
               categorical: "unseen_share", "unseen": [{"value", "count"}] (top 10)}

``<output>/drift_report.html``: one page, inline SVG charts (baseline vs current shares per
feature), no external assets.

CloudWatch (``--namespace`` or ``MLOPS_DRIFT_METRICS_NAMESPACE``, e.g. ``mlops-stack/dev``;
``--endpoint`` or ``MLOPS_DRIFT_ENDPOINT_NAME``; nothing is published without a namespace), one
``PutMetricData`` call per 1000 metrics, timestamp = window end (or now):

- dimensions ``Endpoint``: ``DriftDetected`` (0/1), ``FeaturesDrifted`` (count),
  ``CapturedRows`` (count), ``PredictionDriftScore`` (PSI) and ``PredictionDrifted`` (0/1) when
  scores and a prediction baseline exist;
- dimensions ``Endpoint``, ``Feature``: ``FeatureDriftScore`` (PSI), ``FeatureDrifted`` (0/1).

An empty window publishes only ``CapturedRows`` = 0: drift is unknown, not absent, so alarms on
``DriftDetected`` should treat missing data as not breaching, and a separate alarm on
``CapturedRows`` catches a silent endpoint. boto3 is imported only for s3:// inputs and metrics;
``AWS_ENDPOINT_URL`` (moto, local mode) and ``AWS_DEFAULT_REGION`` are honoured.

Python API: ``run_drift(DriftConfig(...)) -> DriftResult`` (``.report`` dict, ``.html`` str),
``read_capture(source, schema, window)``, ``compare(capture, baseline, schema, ...)``,
``publish_metrics(report, namespace, endpoint, client=None)``.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import operator
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from io import BytesIO, StringIO
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from model_code import baseline as bl
from model_code import env
from model_code.endpoint_source import EndpointSourceError
from model_code.schema import ADULT, NumericFeature, Schema

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
_HOUR_PATH = re.compile(r"(?:^|/)(\d{4})/(\d{2})/(\d{2})/(\d{2})/")


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
        return {"start": _iso(self.start), "end": _iso(self.end)}


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(raw: str, what: str) -> datetime:
    try:
        t = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise UsageError(f"{what}: {raw!r} is not an ISO 8601 time (e.g. 2024-05-01T13:00:00Z)") from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


# --- reading capture -------------------------------------------------------------------------
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
        self.rows += other.rows
        self.records += other.records
        self.outside_window += other.outside_window
        self.files += other.files

    def values(self, name: str) -> np.ndarray:
        parts = self.numeric[name]
        return np.concatenate(parts) if parts else np.empty(0)

    def score_values(self) -> np.ndarray:
        return np.concatenate(self.scores) if self.scores else np.empty(0)


@dataclass
class _Block:
    """Up to BLOCK_RECORDS records of one file read line by line with json, parsed together."""

    source: str
    lines: list[int] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    inputs: list[tuple[str, str]] = field(default_factory=list)   # (kind csv|json, text)
    outputs: list[tuple[str, str]] = field(default_factory=list)


def _where(block: _Block, i: int) -> str:
    return f"{block.source} line {block.lines[i]} (eventId {block.events[i]!r})"


def _payload(obj: Any, side: str, source: str, line: int) -> tuple[str, str]:
    if not isinstance(obj, dict):
        raise CaptureError(f"{source} line {line}: captureData.{side} is missing or not an object")
    data, encoding = obj.get("data"), str(obj.get("encoding", "")).upper()
    ctype = str(obj.get("observedContentType", "")).split(";")[0].strip().lower()
    if not isinstance(data, str):
        raise CaptureError(f"{source} line {line}: captureData.{side}.data is missing or not a string")
    if encoding == "BASE64":
        try:
            data = base64.b64decode(data, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError) as exc:
            raise CaptureError(f"{source} line {line}: captureData.{side}.data is not base64 "
                               f"UTF-8 text: {exc}") from None
        encoding = "JSON" if ctype.endswith("json") else "CSV" if ctype.endswith("csv") else ""
    if encoding == "CSV":
        return "csv", data
    if encoding == "JSON":
        return "json", data
    raise CaptureError(f"{source} line {line}: captureData.{side}: cannot read encoding "
                       f"{obj.get('encoding')!r} with content type {ctype!r}; expected CSV, JSON, or "
                       "BASE64 of text/csv or application/json")


def _iter_records(lines: Iterable[tuple[int, str]], source: str, window: Window, acc: CaptureData,
                  ) -> Iterator[_Block]:
    """Blocks of the (line number, text) lines, each record read with json."""
    start = _iso(window.start) if window.start else None
    end = _iso(window.end) if window.end else None
    block = _Block(source)
    loads = json.loads
    for lineno, line in lines:
        if not line or line.isspace():
            continue
        try:
            rec = loads(line)
            cap = rec["captureData"]
            meta = rec.get("eventMetadata") or {}
            t = meta.get("inferenceTime", "")
        except (ValueError, KeyError, TypeError, AttributeError):
            raise CaptureError(f"{source} line {lineno}: not a SageMaker data-capture record (expected a "
                               "JSON object with captureData.endpointInput/endpointOutput)") from None
        if start is not None or end is not None:
            if not isinstance(t, str):
                raise CaptureError(f"{source} line {lineno}: eventMetadata.inferenceTime {t!r} is not an "
                                   "ISO 8601 time")
            if len(t) == 20 and t[-1] == "Z":   # the format SageMaker and serve write: compare as text
                ts = t
            else:
                try:
                    ts = _iso(parse_time(t, "inferenceTime")) or ""
                except UsageError:
                    raise CaptureError(f"{source} line {lineno}: eventMetadata.inferenceTime {t!r} is "
                                       "not an ISO 8601 time") from None
            if (start is not None and ts < start) or (end is not None and ts >= end):
                acc.outside_window += 1
                continue
        block.lines.append(lineno)
        block.events.append(meta.get("eventId", "?"))
        inp, out = cap.get("endpointInput"), cap.get("endpointOutput")
        # fast path for the common case (CSV text), the general one in _payload
        if type(inp) is dict and inp.get("encoding") == "CSV" and type(data := inp.get("data")) is str:
            block.inputs.append(("csv", data))
        else:
            block.inputs.append(_payload(inp, "endpointInput", source, lineno))
        if out is None:
            block.outputs.append(("none", ""))
        elif type(out) is dict and out.get("encoding") == "CSV" and type(data := out.get("data")) is str:
            block.outputs.append(("csv", data))
        else:
            block.outputs.append(_payload(out, "endpointOutput", source, lineno))
        if len(block.lines) >= BLOCK_RECORDS:
            yield block
            block = _Block(source)
    if block.lines:
        yield block


def _token_index(tokens: list[str], q: int, *path: str) -> int | None:
    """Index (within one line's q quote-delimited tokens) of the string value at key ``path``,
    e.g. ("endpointInput", "data"): the first ``path[-1]`` key after ``path[0]``'s key."""
    try:
        k = tokens.index(path[0], 0, q)
        for key in path[1:]:
            k = tokens.index(key, k + 1, q)
    except ValueError:
        return None
    return k + 2 if k + 2 < q and tokens[k + 1] == ":" else None


# The fast path. SageMaker and serve write every record of a file compactly with the same keys in
# the same order; real-time invocations are mostly one CSV row (with or without a trailing
# newline). Such lines are read on the raw bytes with numpy. One line of the chunk, parsed with
# json, gives the layout: its string values are the variable parts, everything between them (keys,
# punctuation, the encodings and modes) the constant parts. A line with the same number of quotes
# whose constant parts are byte for byte the layout's, and whose variable parts hold no escape
# (but a trailing newline in a payload) and no control character, is a record json would read the
# same way; its payloads are cut out with the others at once and read by pandas' C parser. Every
# other line (JSON or BASE64 payloads, several rows per record, escapes, another layout, times not
# in SageMaker's format) is read with json by _iter_records, and so is every fast line when pandas
# rejects one of them: the messages that name file, line and event come from one place.
_FAST_PATHS = (("endpointInput", "data"), ("endpointInput", "encoding"), ("endpointInput", "mode"),
               ("endpointOutput", "data"), ("endpointOutput", "encoding"), ("endpointOutput", "mode"),
               ("eventMetadata", "inferenceTime"))
_FAST_VALUES = {("endpointInput", "encoding"): "CSV", ("endpointInput", "mode"): "INPUT",
                ("endpointOutput", "encoding"): "CSV", ("endpointOutput", "mode"): "OUTPUT"}
_TIME_WIDTH = len("2024-05-01T12:00:00Z")


@dataclass(frozen=True)
class _Layout:
    values: dict[tuple[str, str], int]    # _FAST_PATHS -> token index (token k: between quotes k-1 and k)
    constants: list[tuple[int, int, bytes]]   # (from quote, to quote, bytes): -1 = line start, quotes = line end
    controls: int                         # control characters in the constant parts (e.g. a CR before the LF)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate key")   # json keeps the last, the token cut the first: no fast path
    return dict(pairs)


def _fast_layout(line: bytes) -> _Layout | None:
    """The layout of one line, if it is one compact capture record with CSV payloads."""
    try:
        text = line.decode("utf-8")
        rec = json.loads(text, object_pairs_hook=_unique_keys)
        cap = rec["captureData"]
        objects = {"endpointInput": cap["endpointInput"], "endpointOutput": cap["endpointOutput"],
                   "eventMetadata": rec["eventMetadata"]}
    except (ValueError, KeyError, TypeError):
        return None
    tokens = text.split('"')
    q = len(tokens) - 1
    values: dict[tuple[str, str], int] = {}
    for side, key in _FAST_PATHS:
        k = _token_index(tokens, q, side, key)
        value = objects[side].get(key) if isinstance(objects[side], dict) else None
        # json's value must be the token itself (json.dumps escapes only what the file escaped)
        if k is None or not isinstance(value, str) or json.dumps(value, ensure_ascii=False)[1:-1] != tokens[k]:
            return None
        if _FAST_VALUES.get((side, key), value) != value:
            return None
        values[side, key] = k
    variable = [k for k in range(1, q) if tokens[k - 1] == ":" and k not in
                {values[p] for p in _FAST_VALUES}]
    quote_at = [i for i, c in enumerate(line) if c == 34]
    constants = []
    for a, b in zip([None, *variable], [*variable, None], strict=True):
        lo = 0 if a is None else quote_at[a]             # from the closing quote of a variable part
        hi = len(line) if b is None else quote_at[b - 1] + 1   # to the opening quote of the next
        constants.append((-1 if a is None else a, q if b is None else b - 1, line[lo:hi]))
    controls = sum(c < 32 for _, _, part in constants for c in part)
    return _Layout(values, constants, controls)


def _gather(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> bytes:
    """The byte ranges [start, start + length) of buf, each followed by a newline."""
    ends = np.cumsum(lengths + 1)
    idx = np.arange(ends[-1]) - np.repeat(ends - lengths - 1 - starts, lengths + 1)
    out = buf[idx]
    out[ends - 1] = 10
    return out.tobytes()


def _read_fast_payloads(inputs: bytes, outputs: bytes, schema: Schema) -> tuple[pd.DataFrame, np.ndarray] | None:
    """One CSV row and one score per line -> (features, scores); None if a line is not that."""
    names = schema.feature_names
    if not (_field_counts(inputs[:-1]) == len(names)).all():
        return None
    # skipping spaces costs a third of the parse: only when a field starts with one (as json's path does)
    spaces = inputs.startswith(b" ") or b", " in inputs or b"\n " in inputs
    try:
        frame = pd.read_csv(BytesIO(inputs), header=None, names=names, dtype=_dtypes(schema), na_values=[""],
                            keep_default_na=False, skipinitialspace=spaces, engine="c")
        scores = pd.read_csv(BytesIO(outputs), header=None, usecols=[0], dtype="float64",
                             engine="c").iloc[:, 0].to_numpy()
    except ValueError:   # includes UnicodeDecodeError
        return None
    if len(scores) != len(frame) or any(f.name in frame[f.name].cat.categories for f in schema.categorical):
        return None   # a header line, or a blank score
    return frame, scores


def _per_line(positions: np.ndarray, nl: np.ndarray) -> np.ndarray:
    """How many of the sorted byte positions fall on each line (nl: the lines' end positions)."""
    return np.diff(np.searchsorted(positions, nl), prepend=0)


def _read_fast(chunk: bytes, nl: np.ndarray, schema: Schema, window: Window, acc: CaptureData) -> list[int]:
    """Read the fast lines (see above) of a chunk into acc; return the indexes of the other lines.

    ``chunk``: whole lines each ending with a newline; ``nl``: the newlines' positions."""
    n = len(nl)
    everything = list(range(n))
    if not (chunk.isascii() or _utf8(chunk)):
        return everything   # (json names the line that is not UTF-8)
    buf = np.frombuffer(chunk, dtype=np.uint8)
    quotes = np.flatnonzero(buf == 34)
    per_line = _per_line(quotes, nl)
    if not per_line.any():
        return everything
    q = int(np.bincount(per_line[per_line > 0]).argmax())
    cand = np.flatnonzero(per_line == q)
    backslashes = _per_line(np.flatnonzero(buf == 92), nl)[cand]
    line_start = np.concatenate(([0], nl[:-1] + 1))
    model = cand[np.argmin(backslashes)]   # a line without escapes if there is one
    layout = _fast_layout(chunk[line_start[model]:nl[model]])
    if layout is None:
        return everything
    # quote positions: tok[k] holds every candidate line's k-th quote
    tok = np.ascontiguousarray(quotes[np.repeat(per_line == q, per_line)].reshape(-1, q).T)
    # the 8 bytes from every position as one little-endian number (8 zero bytes past the end, so a
    # word starts anywhere in the chunk): 8 bytes are one compare
    words = np.ndarray(shape=(len(chunk),), dtype="<u8", buffer=chunk + bytes(8), strides=(1,))

    def position(quote: int) -> np.ndarray:
        return line_start[cand] if quote == -1 else nl[cand] if quote == q else tok[quote]

    ok = np.ones(len(cand), dtype=bool)
    for a, b, part in layout.constants:   # the constant parts, byte for byte
        start = position(a)
        ok &= position(b) + (b != q) - start == len(part)
        for off in {*range(0, len(part) - 8, 8), max(len(part) - 8, 0)}:
            piece = part[off:off + 8]
            word = words[np.minimum(start + off, len(chunk) - 1)]   # (a line too short for the part)
            ok &= (word & ((1 << 8 * len(piece)) - 1)) == int.from_bytes(piece, "little")
    # the variable parts: no control character, no escape but a payload's trailing newline
    controls = np.count_nonzero(buf < 32) - n
    if controls != layout.controls * len(cand):
        ok &= _per_line(np.flatnonzero((buf < 32) & (buf != 10)), nl)[cand] == layout.controls
    payload = {}
    escapes = np.zeros(len(cand), dtype=np.int64)
    for side in ("endpointInput", "endpointOutput"):
        k = layout.values[side, "data"]
        start, end = tok[k - 1] + 1, tok[k]
        esc = (end - start >= 2) & (buf[end - 2] == 92) & (buf[end - 1] == 110)
        escapes += esc
        payload[side] = (start, end - start - 2 * esc)
        ok &= payload[side][1] > 0
    ok &= backslashes == escapes
    take = ok
    if window.start or window.end:
        k = layout.values["eventMetadata", "inferenceTime"]
        start, end = tok[k - 1] + 1, tok[k]
        times = np.ascontiguousarray(buf[np.minimum(start[:, None] + np.arange(_TIME_WIDTH), len(buf) - 1)])
        take = ok & (end - start == _TIME_WIDTH) & (times[:, -1] == ord("Z")) & (times < 128).all(axis=1)
        times = times.view(f"S{_TIME_WIDTH}").ravel()
        inside = np.ones(len(cand), dtype=bool)
        if window.start:
            inside &= times >= (_iso(window.start) or "").encode()
        if window.end:
            inside &= times < (_iso(window.end) or "").encode()
        acc.outside_window += int((take & ~inside).sum())
        ok, take = take, take & inside
    if take.any():
        (si, li), (so, lo) = payload["endpointInput"], payload["endpointOutput"]
        parsed = _read_fast_payloads(_gather(buf, si[take], li[take]), _gather(buf, so[take], lo[take]), schema)
        if parsed is None:
            ok = ok & ~take   # read these lines with json: its messages name the line at fault
        else:
            frame, scores = parsed
            _accumulate(frame, schema, acc)
            acc.records += len(frame)
            acc.scores.append(scores)
    done = np.zeros(n, dtype=bool)
    done[cand[ok]] = True
    return np.flatnonzero(~done).tolist()


def _utf8(chunk: bytes) -> bool:
    try:
        chunk.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _chunks(fh: Any, size: int = 1 << 23) -> Iterator[bytes]:
    """Read a binary file in ~8 MB chunks of whole lines (the last may lack its newline)."""
    rest = b""
    while True:
        data = fh.read(size)
        if not data:
            break
        data = rest + data
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            rest = data
            continue
        rest = data[cut:]
        yield data[:cut]
    if rest:
        yield rest


def _lines(chunk: bytes, ends: np.ndarray, indexes: list[int], first: int, source: str,
           ) -> Iterator[tuple[int, str]]:
    """(line number, text) of the chunk's lines at ``indexes``; ``first`` numbers its first line."""
    for i in indexes:
        raw = chunk[ends[i - 1] + 1 if i else 0:ends[i]]
        try:
            yield first + i, raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CaptureError(f"{source} line {first + i}: not UTF-8 text: {exc}") from None


def _field_counts(text: str | bytes) -> np.ndarray:
    """Fields per line of CSV text (vectorized; the csv module when quotes are present)."""
    if isinstance(text, str):
        if '"' in text:
            import csv

            return np.array([len(r) for r in csv.reader(StringIO(text))], dtype=np.int64)
        text = text.encode()
    b = np.frombuffer(text, dtype=np.uint8)
    ends = np.append(np.flatnonzero(b == 10), len(b))
    commas_before = np.searchsorted(np.flatnonzero(b == 44), ends)
    return np.diff(commas_before, prepend=0) + 1


def _parse_csv_inputs(block: _Block, idx: list[int], schema: Schema,
                      names: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """CSV payloads of records ``idx`` -> (frame in feature order, rows per record).

    Records without a header (or with the schema's header) are joined and parsed at once; records
    whose header orders the columns differently are parsed per distinct header.
    """
    texts: list[str] = [block.inputs[i][1] for i in idx]
    joined = "\n".join(texts)
    if joined.count("\n") == len(texts) - 1 and "\r" not in joined and all(texts):
        # every record is one line: parse the lot at once, unless a line is a header (it fails the
        # numeric columns, or shows up as a category named like its feature)
        counts = _field_counts(joined)
        if (counts == len(names)).all():
            try:
                frame = pd.read_csv(StringIO(joined), header=None, names=names, dtype=_dtypes(schema),
                                    na_values=[""], keep_default_na=False, skipinitialspace=True, engine="c")
            except ValueError:
                frame = None
            if frame is not None and not any(f.name in frame[f.name].cat.categories for f in schema.categorical):
                return frame, np.ones(len(texts), dtype=np.int64)
    first_names = set(names)
    header_line = ",".join(names)
    texts = []
    groups: dict[str, list[int]] = {"": []}   # header ("" = schema order) -> positions in idx
    for pos, i in enumerate(idx):
        text = _lines_of(block.inputs[i][1].rstrip("\r\n"), block, i, "endpointInput")
        key = ""
        if text.split(",", 1)[0].strip().strip('"') in first_names:   # the first line is a header
            head, _, text = text.partition("\n")
            if head.replace('"', "").replace(" ", "") != header_line:
                key = head
        texts.append(text)
        groups.setdefault(key, []).append(pos)
    rows = np.array([t.count("\n") + 1 if t else 0 for t in texts], dtype=np.int64)
    frames = []
    for head, positions in groups.items():
        cols = names
        if head:
            cols = [c.strip().strip('"') for c in head.split(",")]
            missing = [c for c in names if c not in cols]
            unexpected = [c for c in cols if c not in names]
            if missing or unexpected or len(cols) != len(set(cols)):
                raise CaptureError(f"{_where(block, idx[positions[0]])}: CSV header does not match the schema "
                                   f"{schema.name!r}: missing {missing}, unexpected {unexpected}; "
                                   f"expected the columns {names}")
        positions = [p for p in positions if texts[p]]
        if not positions:
            continue
        text = "\n".join(texts[p] for p in positions)
        group_rows = rows[positions]
        counts = _field_counts(text)
        bad = np.flatnonzero(counts != len(cols))
        if len(bad):
            rec = idx[positions[int(np.searchsorted(np.cumsum(group_rows), bad[0], side="right"))]]
            raise CaptureError(f"{_where(block, rec)}: a CSV row has {counts[bad[0]]} fields, the "
                               f"schema {schema.name!r} has {len(cols)} features {cols} "
                               f"({len(bad)} such row(s) in this block)")
        frames.append(_read_features(text, cols, schema, block, [idx[p] for p in positions], group_rows))
    if not frames:
        return pd.DataFrame({n: pd.Series(dtype=float) for n in names}), rows
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return frame, rows


def _dtypes(schema: Schema) -> dict[str, str]:
    return {f.name: ("float64" if isinstance(f, NumericFeature) else "category") for f in schema.features}


def _read_features(text: str, cols: list[str], schema: Schema, block: _Block, recs: list[int],
                   rows: np.ndarray) -> pd.DataFrame:
    try:
        return pd.read_csv(StringIO(text), header=None, names=cols, dtype=_dtypes(schema), na_values=[""],
                           keep_default_na=False, skipinitialspace=True, engine="c")[
            schema.feature_names]
    except ValueError:
        pass
    raw = pd.read_csv(StringIO(text), header=None, names=cols, dtype=str, na_values=[""],
                      keep_default_na=False, skipinitialspace=True)
    for f in schema.numeric:
        num = pd.to_numeric(raw[f.name], errors="coerce")
        bad = np.flatnonzero((raw[f.name].notna() & num.isna()).to_numpy())
        if len(bad):
            rec = recs[int(np.searchsorted(np.cumsum(rows), bad[0], side="right"))]
            raise CaptureError(f"{_where(block, rec)}: feature {f.name!r} must be numeric, got "
                               f"{raw[f.name].iloc[bad[0]]!r} ({len(bad)} such row(s) in this block)")
    raise CaptureError(f"{block.source}: CSV payloads could not be parsed")  # pragma: no cover


def _parse_json_inputs(block: _Block, idx: list[int], schema: Schema) -> tuple[pd.DataFrame, np.ndarray]:
    names = schema.feature_names
    allowed = set(names) | {schema.label}
    every_feature = operator.itemgetter(*names)
    records: list[Any] = []
    rows = np.zeros(len(idx), dtype=np.int64)
    for pos, i in enumerate(idx):
        try:
            doc = json.loads(block.inputs[i][1])
        except ValueError as exc:
            raise CaptureError(f"{_where(block, i)}: endpointInput is not valid JSON: {exc}") from None
        inst = doc.get("instances") if isinstance(doc, dict) else doc
        if not isinstance(inst, list):
            raise CaptureError(f"{_where(block, i)}: endpointInput JSON must be {{\"instances\": [...]}}")
        for k, item in enumerate(inst):
            if isinstance(item, dict):
                if not item.keys() <= allowed:
                    unexpected = sorted(set(item) - allowed)
                    raise CaptureError(f"{_where(block, i)}: instance {k} has unexpected field(s) "
                                       f"{unexpected}; the schema {schema.name!r} has {names}")
                try:
                    records.append(every_feature(item))
                except KeyError:   # a missing key is a missing value
                    records.append([item.get(n) for n in names])
            elif isinstance(item, list):
                if len(item) != len(names):
                    raise CaptureError(f"{_where(block, i)}: instance {k} has {len(item)} values, the "
                                       f"schema {schema.name!r} has {len(names)} features {names}")
                records.append(item)
            else:
                raise CaptureError(f"{_where(block, i)}: instance {k} is neither an object nor an array")
        rows[pos] = len(inst)
    columns = list(zip(*records, strict=True)) if records else [()] * len(names)
    out = {}
    for f, values in zip(schema.features, columns, strict=True):
        if isinstance(f, NumericFeature):
            try:   # numbers and None (missing): straight to float64
                out[f.name] = np.array(values, dtype="float64")
                continue
            except (TypeError, ValueError):
                pass
            col = pd.Series(values, dtype=object)
            num = pd.to_numeric(col, errors="coerce")
            bad = np.flatnonzero((col.notna() & num.isna()).to_numpy())
            if len(bad):
                rec = idx[int(np.searchsorted(np.cumsum(rows), bad[0], side="right"))]
                raise CaptureError(f"{_where(block, rec)}: feature {f.name!r} must be numeric, got "
                                   f"{col.iloc[bad[0]]!r}")
            out[f.name] = num.astype("float64")
        else:
            out[f.name] = pd.Categorical(values)
    return pd.DataFrame(out), rows


def _lines_of(text: str, block: _Block, i: int, side: str) -> str:
    """CSV payload text with LF line ends (CRLF accepted; a lone CR would split a row for pandas)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n")
        if "\r" in text:
            raise CaptureError(f"{_where(block, i)}: {side} CSV has a carriage return inside a line")
    return text


def _scores(text: str) -> bool:
    """Whether every line of CSV output text starts with a number."""
    try:
        for line in text.split("\n"):
            float(line.split(",", 1)[0])
    except ValueError:
        return False
    return True


def _parse_outputs(block: _Block, rows_in: np.ndarray) -> np.ndarray | None:
    kinds = {k for k, _ in block.outputs}
    if kinds == {"none"}:
        return None
    scores: list[np.ndarray] = []
    rows_out = np.zeros(len(block.outputs), dtype=np.int64)
    csv_idx = [i for i, (k, _) in enumerate(block.outputs) if k == "csv"]
    if csv_idx:
        texts = [block.outputs[i][1] for i in csv_idx]
        text = "\n".join(texts)
        if text.count("\n") == len(texts) - 1 and "\r" not in text and all(texts):
            rows_out[csv_idx] = 1   # one score per record
        else:
            texts = [_lines_of(t.strip(), block, i, "endpointOutput") for i, t in zip(csv_idx, texts, strict=True)]
            for i, t in zip(csv_idx, texts, strict=True):
                rows_out[i] = t.count("\n") + 1 if t else 0
            text = "\n".join(t for t in texts if t)
        if text:
            try:
                scores.append(pd.read_csv(StringIO(text), header=None, usecols=[0], dtype="float64",
                                          engine="c").iloc[:, 0].to_numpy())
            except ValueError:
                at = next((k for k, t in enumerate(texts) if not _scores(t)), 0)
                raise CaptureError(f"{_where(block, csv_idx[at])}: endpointOutput CSV is not one score per line "
                                   f"(got {texts[at][:80]!r})") from None
    for i, (kind, text) in enumerate(block.outputs):
        if kind != "json":
            continue
        try:
            doc = json.loads(text)
            preds = doc.get("predictions") if isinstance(doc, dict) else doc
            values = [p["score"] if isinstance(p, dict) else p for p in preds]
            scores.append(np.asarray(values, dtype="float64"))
        except (ValueError, TypeError, KeyError, AttributeError):
            raise CaptureError(f"{_where(block, i)}: endpointOutput JSON must be "
                               "{\"predictions\": [{\"score\": ...}, ...]}") from None
        rows_out[i] = len(values)
    has = np.array([k != "none" for k, _ in block.outputs])
    bad = np.flatnonzero(has & (rows_out != rows_in))
    if len(bad):
        i = int(bad[0])
        raise CaptureError(f"{_where(block, i)}: {rows_in[i]} input row(s) but {rows_out[i]} prediction(s)")
    return np.concatenate(scores) if scores else np.empty(0)


def _parse_block(block: _Block, schema: Schema, acc: CaptureData) -> None:
    names = schema.feature_names
    csv_idx = [i for i, (k, _) in enumerate(block.inputs) if k == "csv"]
    json_idx = [i for i, (k, _) in enumerate(block.inputs) if k == "json"]
    rows_in = np.zeros(len(block.inputs), dtype=np.int64)
    frames = []
    if csv_idx:
        frame, rows = _parse_csv_inputs(block, csv_idx, schema, names)
        rows_in[csv_idx] = rows
        frames.append(frame)
    if json_idx:
        frame, rows = _parse_json_inputs(block, json_idx, schema)
        rows_in[json_idx] = rows
        frames.append(frame)
    scores = _parse_outputs(block, rows_in)
    if scores is not None and len(scores):
        acc.scores.append(scores)
    acc.records += len(block.inputs)
    for frame in frames:
        _accumulate(frame, schema, acc)


def _accumulate(frame: pd.DataFrame, schema: Schema, acc: CaptureData) -> None:
    """Add a frame of feature rows (numeric float64, categorical category) to acc."""
    acc.rows += len(frame)
    for f in schema.features:
        col = frame[f.name]
        if isinstance(f, NumericFeature):
            values = col.to_numpy(dtype="float64")
            acc.numeric[f.name].append(values)
            acc.missing[f.name] += int(np.isnan(values).sum())
        else:
            codes = col.cat.codes.to_numpy() if isinstance(col.dtype, pd.CategoricalDtype) else None
            if codes is None:
                col = col.astype("category")
                codes = col.cat.codes.to_numpy()
            counts = np.bincount(codes + 1, minlength=len(col.cat.categories) + 1)
            acc.missing[f.name] += int(counts[0])
            mine = acc.counts[f.name]
            for cat, n in zip(col.cat.categories, counts[1:], strict=True):
                if n:
                    key = str(cat)
                    mine[key] = mine.get(key, 0) + int(n)


def read_chunks(chunks: Iterable[bytes], source: str, schema: Schema = ADULT, window: Window = Window()) -> CaptureData:
    """Parse one capture file, given as chunks of whole lines (see _chunks), into a CaptureData."""
    acc = CaptureData(schema)
    acc.files = 1

    def others() -> Iterator[tuple[int, str]]:   # the lines the fast path left, across chunks
        first = 1
        for chunk in chunks:
            if not chunk.endswith(b"\n"):   # a last line without its newline is still a line
                chunk += b"\n"
            nl = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == 10)
            yield from _lines(chunk, nl, _read_fast(chunk, nl, schema, window, acc), first, source)
            first += len(nl)

    for block in _iter_records(others(), source, window, acc):
        _parse_block(block, schema, acc)
    return acc


# --- sources: local folders and S3 ---------------------------------------------------------------
def _hour_of(rel: str) -> datetime | None:
    m = _HOUR_PATH.search(rel)
    if not m:
        return None
    y, mo, d, h = (int(x) for x in m.groups())
    try:
        return datetime(y, mo, d, h, tzinfo=UTC)
    except ValueError:
        return None


def list_local(root: Path, window: Window) -> list[Path]:
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise CaptureError(f"capture input {root} does not exist")
    files = []
    for path in sorted(root.rglob("*.jsonl")):
        hour = _hour_of(path.relative_to(root).as_posix())
        if hour is None or window.contains_hour(hour):
            files.append(path)
    return files


def _s3_split(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    if not bucket:
        raise UsageError(f"{uri!r} is not an s3://bucket/prefix URI")
    return bucket, prefix.rstrip("/") + "/" if prefix else ""


def aws_client(service: str) -> Any:
    """A boto3 client honouring AWS_ENDPOINT_URL (moto, local mode) and AWS_DEFAULT_REGION."""
    import boto3

    return boto3.client(service, endpoint_url=env.AWS_ENDPOINT_URL.get(),
                        region_name=env.AWS_DEFAULT_REGION.get())


def _s3_keys(client: Any, bucket: str, prefix: str) -> Iterator[str]:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            yield obj["Key"]


def _s3_hour_roots(client: Any, bucket: str, prefix: str, depth: int = 0) -> list[str]:
    """Prefixes directly above the yyyy/ folders (the prefix itself, or endpoint/variant below)."""
    children = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        children += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    if any(re.fullmatch(r"\d{4}/", c[len(prefix):]) for c in children):
        return [prefix]
    if depth >= 3:
        return []
    return [r for c in children for r in _s3_hour_roots(client, bucket, c, depth + 1)]


def list_s3(uri: str, window: Window, client: Any = None) -> list[str]:
    client = client or aws_client("s3")
    bucket, prefix = _s3_split(uri)
    hours = window.hours()
    keys: list[str] = []
    if hours is None:
        keys = [k for k in _s3_keys(client, bucket, prefix)
                if k.endswith(".jsonl") and ((h := _hour_of(k[len(prefix):])) is None or window.contains_hour(h))]
    else:
        for root in _s3_hour_roots(client, bucket, prefix):
            for h in hours:
                keys += [k for k in _s3_keys(client, bucket, f"{root}{h:%Y/%m/%d/%H}/") if k.endswith(".jsonl")]
    return [f"s3://{bucket}/{k}" for k in sorted(keys)]


def _read_one(source: str, schema_dict: dict[str, Any], window: Window) -> CaptureData:
    schema = Schema.from_dict(schema_dict)
    if source.startswith("s3://"):
        bucket, _, key = source[len("s3://"):].partition("/")
        body = aws_client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        return read_chunks(_chunks(BytesIO(body)), source, schema, window)
    with open(source, "rb") as fh:
        return read_chunks(_chunks(fh), source, schema, window)


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def read_capture(source: str | Path, schema: Schema = ADULT, window: Window = Window(),
                 workers: int = 0) -> CaptureData:
    """Read every capture file of the window under a local folder/file or s3:// prefix.

    ``workers`` > 1 parses files in that many processes (0 = one per CPU, at most one per file).
    """
    src = str(source)
    files = list_s3(src, window) if src.startswith("s3://") else [str(p) for p in list_local(Path(src), window)]
    acc = CaptureData(schema)
    workers = min(workers or _cpus(), len(files))
    if workers <= 1:
        for f in files:
            acc.merge(_read_one(f, schema.to_dict(), window))
        return acc
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for part in pool.map(_read_one, files, [schema.to_dict()] * len(files), [window] * len(files)):
            acc.merge(part)
    return acc


# --- statistics --------------------------------------------------------------------------------
def psi(baseline: np.ndarray, current: np.ndarray, eps: float = PSI_EPSILON) -> float:
    b = np.maximum(np.asarray(baseline, dtype=float), eps)
    c = np.maximum(np.asarray(current, dtype=float), eps)
    return float(np.sum((c - b) * np.log(c / b)))


def ks_pvalue(d: float, n: float, m: float) -> float:
    """Two-sample Kolmogorov-Smirnov p-value of a statistic measured on the baseline's bins (no samples, so no
    exact test): Kolmogorov's limiting distribution (scipy's kstwobign) with Stephens' small-sample correction."""
    if n <= 0 or m <= 0:
        return 1.0
    ne = n * m / (n + m)
    return float(stats.kstwobign.sf((math.sqrt(ne) + 0.12 + 0.11 / math.sqrt(ne)) * d))


def chi2_sf(x: float, dof: int) -> float:
    return 1.0 if dof <= 0 else float(stats.chi2.sf(x, dof))


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


def compare(capture: CaptureData, baseline: dict[str, Any], schema: Schema = ADULT,
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
    if prediction_baseline and len(scores):
        prediction = compare_numeric(scores, prediction_baseline, float(prediction_baseline.get("count", 0)), th)
        thr = float(prediction_baseline.get("threshold", 0.5))
        prediction["positive_rate"] = _r(float(np.mean(scores >= thr)))
        prediction["baseline_positive_rate"] = prediction_baseline.get("positive_rate")
    elif len(scores) == 0 and capture.rows:
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


# --- metrics -------------------------------------------------------------------------------------
def metric_data(report: dict[str, Any], endpoint: str) -> list[dict[str, Any]]:
    """The CloudWatch datums of a report (see the module docstring)."""
    end = report["window"]["end"]
    now = datetime.now(UTC)
    ts = min(parse_time(end, "window end"), now) if end else now
    ep = [{"Name": "Endpoint", "Value": endpoint}]

    def datum(name: str, value: float, dims: list[dict[str, str]], unit: str = "None") -> dict[str, Any]:
        return {"MetricName": name, "Dimensions": dims, "Value": float(value), "Unit": unit, "Timestamp": ts}

    data = [datum("CapturedRows", report["input"]["rows"], ep, "Count")]
    if report["status"] == "no_data":
        return data
    data += [datum("DriftDetected", int(report["drift_detected"]), ep),
             datum("FeaturesDrifted", report["summary"]["features_drifted"], ep, "Count")]
    if report["prediction"]:
        data += [datum("PredictionDriftScore", report["prediction"]["psi"], ep),
                 datum("PredictionDrifted", int(report["prediction"]["drifted"]), ep)]
    for name, out in report["features"].items():
        dims = [*ep, {"Name": "Feature", "Value": name}]
        data += [datum("FeatureDriftScore", out["psi"], dims), datum("FeatureDrifted", int(out["drifted"]), dims)]
    return data


def publish_metrics(report: dict[str, Any], namespace: str, endpoint: str, client: Any = None) -> int:
    """put_metric_data in batches of at most 1000 datums; returns the number published."""
    data = metric_data(report, endpoint)
    client = client or aws_client("cloudwatch")
    for i in range(0, len(data), MAX_METRICS_PER_REQUEST):
        client.put_metric_data(Namespace=namespace, MetricData=data[i:i + MAX_METRICS_PER_REQUEST])
    return len(data)


# --- the job ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DriftConfig:
    input: str
    baseline: Path
    output: Path = DEFAULT_OUTPUT
    model: Path | None = None
    prediction_baseline: Path | None = None
    window: Window = Window()
    thresholds: Thresholds = Thresholds()
    namespace: str | None = None
    endpoint: str | None = None
    workers: int = 0
    schema: Schema | None = None
    package_arn: str | None = None
    """The model package the baseline came from (--baseline-from-endpoint); None for a baseline file."""


@dataclass
class DriftResult:
    report: dict[str, Any]
    html: str
    paths: dict[str, Path]


def _prediction_baseline(config: DriftConfig, baseline: dict[str, Any],
                         ) -> tuple[dict[str, Any] | None, dict | None, Schema | None]:
    if config.prediction_baseline:
        try:
            data = json.loads(Path(config.prediction_baseline).read_text())
        except (OSError, ValueError) as exc:
            raise CaptureError(f"prediction baseline {config.prediction_baseline}: {exc}") from None
        return data, {"source": "file", "path": str(config.prediction_baseline)}, None
    if config.model:
        from model_code.model import load_model

        try:
            model = load_model(config.model)
        except (OSError, ValueError) as exc:
            raise CaptureError(f"model {config.model}: {exc}") from None
        return (model.artifact.get("prediction_baseline"), {"source": "model", "path": str(config.model)},
                model.schema)
    if baseline.get("prediction"):
        return baseline["prediction"], {"source": "baseline", "path": str(config.baseline)}, None
    return None, None, None


def run_drift(config: DriftConfig) -> DriftResult:
    from model_code.drift_report import render_html

    try:
        baseline = bl.load_baseline(config.baseline)
    except (OSError, ValueError) as exc:
        raise CaptureError(f"baseline: {exc}") from None
    pred_base, pred_info, model_schema = _prediction_baseline(config, baseline)
    schema = config.schema or model_schema or ADULT
    if baseline.get("schema") != schema.name:
        raise CaptureError(f"baseline {config.baseline} is for schema {baseline.get('schema')!r}, "
                           f"the model/schema is {schema.name!r}")
    capture = read_capture(config.input, schema, config.window, config.workers)
    source = baseline.get("source") or {}
    report: dict[str, Any] = {
        "format": REPORT_FORMAT, "format_version": REPORT_FORMAT_VERSION,
        "status": "ok" if capture.rows else "no_data",
        "drift_detected": False,
        "window": config.window.to_dict(),
        "input": {"uri": config.input, "files": capture.files, "records": capture.records,
                  "records_outside_window": capture.outside_window, "rows": capture.rows,
                  "predictions": int(sum(len(s) for s in capture.scores))},
        "baseline": {"path": str(config.baseline), "schema": baseline.get("schema"),
                     "rows": source.get("rows"), "sha256": source.get("sha256"),
                     "package_arn": config.package_arn},
        "prediction_baseline": pred_info,
        "thresholds": config.thresholds.to_dict(),
        "summary": {"features": len(schema.features), "features_drifted": 0, "drifted": [],
                    "prediction_drifted": None},
        "features": {}, "prediction": None, "violations": [], "warnings": [], "metrics": None,
    }
    if capture.rows:
        report.update(compare(capture, baseline, schema, pred_base, config.thresholds))
    else:
        report["warnings"].append(
            f"no captured rows in the window {_iso(config.window.start) or '-inf'} .. "
            f"{_iso(config.window.end) or '+inf'} under {config.input} "
            f"({capture.files} file(s), {capture.outside_window} record(s) outside the window)")
    if config.namespace:
        if not config.endpoint:
            raise UsageError("publishing metrics needs an endpoint name (--endpoint or MLOPS_DRIFT_ENDPOINT_NAME)")
        report["metrics"] = {"namespace": config.namespace, "endpoint": config.endpoint}
        report["metrics"]["published"] = publish_metrics(report, config.namespace, config.endpoint)
    html = render_html(report)
    config.output.mkdir(parents=True, exist_ok=True)
    paths = {"json": config.output / REPORT_JSON, "html": config.output / REPORT_HTML}
    paths["json"].write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    paths["html"].write_text(html, encoding="utf-8")
    return DriftResult(report=report, html=html, paths=paths)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m model_code.drift",
                                description="Compare captured endpoint traffic with the training baseline.")
    p.add_argument("--input", required=True, help="capture folder/file or s3://bucket/prefix")
    p.add_argument("--baseline", type=Path, help="baseline.json written by preprocess (or --baseline-from-endpoint)")
    p.add_argument("--baseline-from-endpoint", action="store_true",
                   help="use the baseline and model of the package --endpoint serves now (the scheduled job)")
    p.add_argument("--model", type=Path, help="model artifact whose prediction_baseline to use")
    p.add_argument("--prediction-baseline", type=Path, help="prediction baseline JSON (overrides --model's)")
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                   help=f"folder for {REPORT_JSON} and {REPORT_HTML} (default: %(default)s)")
    p.add_argument("--start", help="window start, ISO 8601 (inclusive)")
    p.add_argument("--end", help="window end, ISO 8601 (exclusive)")
    p.add_argument("--hours", type=int, help="window length in hours (ending at --end or the current hour)")
    p.add_argument("--namespace", default=None,
                   help=f"CloudWatch namespace (default ${env.MLOPS_DRIFT_METRICS_NAMESPACE.name}); none: no metrics")
    p.add_argument("--endpoint", default=None,
                   help=f"Endpoint dimension (default ${env.MLOPS_DRIFT_ENDPOINT_NAME.name})")
    d = Thresholds()
    p.add_argument("--psi", type=float, default=d.psi,
                   help="a significant shift drifts from this PSI (default: %(default)s)")
    p.add_argument("--p-value", type=float, default=d.p_value,
                   help="significance level of the window, split over its tests (default: %(default)s)")
    p.add_argument("--min-effect", type=float, default=d.min_effect,
                   help="... or from this effect size: normed Wasserstein distance (numeric), total "
                        "variation distance (categorical) (default: %(default)s)")
    p.add_argument("--missing-delta", type=float, default=d.missing_delta,
                   help="a significant change of the missing share drifts from this much (default: %(default)s)")
    p.add_argument("--workers", type=int, default=0, help="parsing processes (0 = one per CPU)")
    p.add_argument("--fail-on-drift", action="store_true", help="exit 3 when drift is detected")
    return p


def window_from_args(start: str | None, end: str | None, hours: int | None, now: datetime | None = None) -> Window:
    s = parse_time(start, "--start") if start else None
    e = parse_time(end, "--end") if end else None
    if hours is not None:
        if hours <= 0:
            raise UsageError(f"--hours must be > 0, got {hours}")
        if s and e:
            raise UsageError("give at most two of --start, --end, --hours")
        if s:
            e = s + timedelta(hours=hours)
        else:
            e = e or (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
            s = e - timedelta(hours=hours)
    return Window(s, e)


def _from_endpoint(endpoint: str | None, target: Path) -> tuple[Path, Path, str]:
    """(baseline, model, package ARN) of what `endpoint` serves now, downloaded into `target`."""
    if not endpoint:
        raise UsageError("--baseline-from-endpoint needs --endpoint (or $MLOPS_DRIFT_ENDPOINT_NAME)")
    from botocore.exceptions import BotoCoreError, ClientError

    from model_code.endpoint_source import download, resolve

    try:
        served = resolve(aws_client("sagemaker"), endpoint)
        return (*download(aws_client("s3"), served, target), served.package_arn)
    except (ClientError, BotoCoreError) as exc:
        raise EndpointSourceError(f"resolving what endpoint {endpoint} serves: {exc}") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # What the endpoint serves is downloaded beside --output, not into it: a processing job uploads its
    # output to S3 after every run, and a copy of the model per scheduled run is waste.
    with tempfile.TemporaryDirectory(prefix="drift-served-") as served:
        return _main(args, Path(served))


def _main(args: argparse.Namespace, served: Path) -> int:
    package_arn = None
    try:
        if args.baseline_from_endpoint:
            args.baseline, args.model, package_arn = _from_endpoint(
                args.endpoint or env.MLOPS_DRIFT_ENDPOINT_NAME.get(), served
            )
        if args.baseline is None:
            raise UsageError("give --baseline, or --baseline-from-endpoint with --endpoint")
        window = window_from_args(args.start, args.end, args.hours)
        th = Thresholds(args.psi, args.p_value, args.min_effect, args.missing_delta)
        bad = [f"--{name} {value} must be {rule}" for name, value, ok, rule in (
            ("psi", th.psi, th.psi > 0, "> 0"), ("p-value", th.p_value, 0 < th.p_value < 1, "in (0, 1)"),
            ("min-effect", th.min_effect, 0 < th.min_effect <= 1, "in (0, 1]"),
            ("missing-delta", th.missing_delta, 0 < th.missing_delta <= 1, "in (0, 1]")) if not ok]
        if bad:
            raise UsageError("; ".join(bad))
        config = DriftConfig(
            input=args.input, baseline=args.baseline, output=args.output, model=args.model,
            prediction_baseline=args.prediction_baseline, window=window, thresholds=th,
            namespace=args.namespace or env.MLOPS_DRIFT_METRICS_NAMESPACE.get(),
            endpoint=args.endpoint or env.MLOPS_DRIFT_ENDPOINT_NAME.get(), workers=args.workers,
            package_arn=package_arn,
        )
    except (UsageError, env.EnvError) as exc:
        print(f"drift: {exc}", file=sys.stderr)
        return 2
    except EndpointSourceError as exc:
        print(f"drift failed: {exc}", file=sys.stderr)
        return 1
    try:
        result = run_drift(config)
    except UsageError as exc:
        print(f"drift: {exc}", file=sys.stderr)
        return 2
    except CaptureError as exc:
        print(f"drift failed: {exc}", file=sys.stderr)
        return 1
    r = result.report
    if r["status"] == "no_data":
        print(f"drift: no data: {r['warnings'][0]}; wrote {result.paths['json']}")
        return 0
    s = r["summary"]
    pred = {None: "not checked", True: "DRIFT", False: "ok"}[s["prediction_drifted"]]
    print(f"drift: {r['input']['rows']} rows in {r['input']['records']} records from {r['input']['files']} "
          f"file(s); {s['features_drifted']}/{s['features']} features drifted {s['drifted']}; "
          f"prediction {pred}; wrote {result.paths['json']}, {result.paths['html']}")
    for w in r["warnings"]:
        print(f"warning: {w}")
    if r["metrics"]:
        print(f"published {r['metrics']['published']} metrics to {r['metrics']['namespace']}")
    return 3 if args.fail_on_drift and r["drift_detected"] else 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m model_code serve``: the model behind SageMaker's bring-your-own-container contract.

SageMaker runs the image with the argument ``serve`` and talks HTTP to port 8080
(``SAGEMAKER_BIND_TO_PORT``); the model archive is extracted into ``/opt/ml/model``
(``SM_MODEL_DIR``; a folder holding model.joblib or model.tar.gz, or a path to either file).
Local mode runs the same entrypoint as a process on 127.0.0.1.

API
---
``GET /ping``
    200 ``{"status": "ok", ...model info}`` once every worker process has loaded the model; 503
    ``{"status": "loading", "workers_ready": k, "workers": n}`` before.
``POST /invocations``
    Request ``Content-Type``:

    * ``text/csv``: one row per line, the schema's 13 features in schema order, no label. A first
      line made of feature names is a header: then columns may come in any order and a label
      column is ignored. Empty fields are missing values.
    * ``application/json``: ``{"instances": [row, ...]}`` (or a bare ``[row, ...]``); a row is a
      list in schema order or an object keyed by feature name (the label key is ignored).
      ``null`` is a missing value; numbers may be JSON numbers or numeric strings. ``NaN`` and
      ``Infinity`` are not JSON and are refused (``bad_json``); a list where a number belongs is a
      ``type`` error; an integer too large for a float is ``out_of_range``, and one past Python's
      4,300-digit limit is ``bad_json``. In CSV, ``nan`` counts as missing like an empty field.

    Response in the ``Accept`` type (absent or ``*/*``: the request's type):

    * ``text/csv``: one positive-class probability per line, in request order.
    * ``application/json``: ``{"predictions": [{"score": p, "label": 0|1}, ...]}`` with
      ``label = score >= threshold`` (the threshold stored in the model artifact).

    Validation (the schema embedded in the model; rows are 0-based data rows, header excluded):
    wrong field count, unknown or absent columns, non-numeric values, fractional values of integer
    features, values outside the schema's range, and categories the model never saw are rejected
    with 400 (``MLOPS_SERVE_UNKNOWN_CATEGORIES=score`` scores unknown categories as missing instead,
    like ``LoadedModel.predict_proba``). Missing values are scored (the model handles them).
``GET /metrics``
    Prometheus text: ``mlops_serve_requests_total{handler,code}``,
    ``mlops_serve_request_duration_seconds{handler,code}`` (histogram), ``mlops_serve_rows_scored_total``,
    ``mlops_serve_capture_records_total{outcome=written|dropped|failed}``, ``mlops_serve_workers`` and
    ``mlops_serve_model_info{model_sha256, content_sha256, mlflow_run_id, git_sha, format_version,
    sklearn} 1`` (model_sha256: of model.joblib, as metrics.json / evaluation.json record it).
    Counters are shared by all worker processes.

Errors are JSON (``application/json``) whatever the Accept header::

    {"status": 400, "code": "unknown_category",
     "message": "field 'sex': value(s) ['M'] at row(s) [1] not among the categories ...",
     "errors": [{"code": "unknown_category", "field": "sex", "rows": [1], "message": "..."}]}

Codes: 400 (``invalid_input``-family codes: ``field_count``, ``missing_field``, ``unknown_field``,
``type``, ``not_integer``, ``out_of_range``, ``unknown_category``, ``empty_body``, ``bad_json``,
``bad_csv``, ``bad_encoding``, ``bad_content_length``), 404 unknown path, 405 wrong method, 406
unsupported Accept, 411 chunked body, 413 body over ``MLOPS_SERVE_MAX_PAYLOAD_BYTES`` (6 MiB),
415 unsupported Content-Type, 503 model not loaded. Bad input never gets a 5xx.

Process model
-------------
Standard library HTTP/1.1 server (keep-alive, TCP_NODELAY, one write per response), a thread per
connection, and ``SAGEMAKER_MODEL_SERVER_WORKERS`` pre-forked processes accepting on one listening
socket. Scoring is vectorised: one matrix per request. SIGTERM (or SIGINT): stop accepting, finish
in-flight requests (idle keep-alive connections are closed), flush data capture, exit 0 -- within
``MLOPS_SERVE_SHUTDOWN_TIMEOUT``. A worker that dies on its own stops the whole server (exit 1):
the platform (SageMaker's health check, the local loop) replaces the container.
Logs: one JSON line per request on stdout (``method, path, status, latency_ms, rows, worker``),
plus lifecycle events. Data capture: see ``model_code.capture``.
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import io
import json
import math
import multiprocessing
import os
import pickle
import select
import signal
import socket
import socketserver
import sys
import tarfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from model_code import env
from model_code.capture import CaptureConfig, CaptureWriter
from model_code.schema import CategoricalFeature, NumericFeature, Schema

if TYPE_CHECKING:
    from model_code.model import LoadedModel

CSV = "text/csv"
JSON = "application/json"
SUPPORTED = (CSV, JSON)
KEEPALIVE_SECONDS = 60.0
SOCKET_TIMEOUT_SECONDS = 60.0
MAX_ROWS_SHOWN = 10


# --- configuration ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ServeConfig:
    model_path: Path
    host: str = "0.0.0.0"
    port: int = 8080
    workers: int = 1
    max_payload_bytes: int = 6 * 1024 * 1024
    unknown_categories: str = "reject"
    shutdown_timeout: float = 30.0
    capture: CaptureConfig | None = None

    @classmethod
    def from_env(cls, environ: Any = None, **overrides: Any) -> ServeConfig:
        capture_dir = env.MLOPS_CAPTURE_DIR.get(environ)
        capture = None
        if capture_dir is not None:
            capture = CaptureConfig(
                directory=capture_dir,
                sampling_percentage=env.MLOPS_CAPTURE_SAMPLING_PERCENTAGE.get(environ),
                endpoint=env.MLOPS_CAPTURE_ENDPOINT_NAME.get(environ),
                variant=env.MLOPS_CAPTURE_VARIANT_NAME.get(environ),
                rotate_seconds=env.MLOPS_CAPTURE_ROTATE_SECONDS.get(environ),
            )
        workers = env.SAGEMAKER_MODEL_SERVER_WORKERS.get(environ)
        values: dict[str, Any] = {
            "model_path": env.SM_MODEL_DIR.get(environ),
            "host": env.MLOPS_SERVE_HOST.get(environ),
            "port": env.SAGEMAKER_BIND_TO_PORT.get(environ),
            "workers": workers or env.cpu_count(),
            "max_payload_bytes": env.MLOPS_SERVE_MAX_PAYLOAD_BYTES.get(environ),
            "unknown_categories": env.MLOPS_SERVE_UNKNOWN_CATEGORIES.get(environ),
            "shutdown_timeout": env.MLOPS_SERVE_SHUTDOWN_TIMEOUT.get(environ),
            "capture": capture,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


# --- structured logs ----------------------------------------------------------------------------
_log_lock = threading.Lock()


def log(event: str, level: str = "info", **fields: Any) -> None:
    """One JSON line on stdout (SageMaker ships container stdout to CloudWatch Logs)."""
    record = {"time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "level": level, "event": event,
              "worker": os.getpid(), **fields}
    line = json.dumps(record, default=str, separators=(",", ":")) + "\n"
    with _log_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


# --- request errors ---------------------------------------------------------------------------------
class RequestError(Exception):
    """A 4xx: what was wrong with the request, naming the field and rows where there are some."""

    def __init__(self, status: int, code: str, message: str,
                 errors: Sequence[dict[str, Any]] = (), close: bool = False) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.errors, self.close = status, code, message, list(errors), close

    def body(self) -> bytes:
        return json.dumps({"status": self.status, "code": self.code, "message": self.message,
                           "errors": self.errors}, default=str).encode()


def _field_error(code: str, field: str, rows: Sequence[int], message: str) -> dict[str, Any]:
    return {"code": code, "field": field, "rows": [int(r) for r in rows[:MAX_ROWS_SHOWN]],
            "message": message}


def _rows_text(rows: Sequence[int]) -> str:
    shown = [int(r) for r in rows[:MAX_ROWS_SHOWN]]
    more = f" (+{len(rows) - MAX_ROWS_SHOWN} more)" if len(rows) > MAX_ROWS_SHOWN else ""
    return f"row(s) {shown}{more}"


# --- content negotiation --------------------------------------------------------------------------
def media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def negotiate(accept: str | None, request_type: str) -> str | None:
    """The response type for an Accept header (None: nothing acceptable -> 406)."""
    if not accept or not accept.strip():
        return request_type
    best: tuple[float, int, str] | None = None
    for order, part in enumerate(accept.split(",")):
        pieces = [p.strip() for p in part.split(";")]
        media = pieces[0].lower()
        q = 1.0
        for param in pieces[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        choice = {"*/*": request_type, "text/*": CSV, "application/*": JSON, CSV: CSV, JSON: JSON}.get(media)
        if choice is None or q <= 0:
            continue
        if best is None or q > best[0]:
            best = (q, order, choice)
    return best[2] if best else None


# --- payload parsing: body -> columns of raw values ---------------------------------------------
@dataclass
class Batch:
    """Raw values per feature, in row order. ``source`` is csv or json (for type messages)."""

    columns: dict[str, list[Any]]
    rows: int
    source: str


def _decode(body: bytes) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RequestError(400, "bad_encoding", f"request body is not valid UTF-8 (byte {exc.start})") from exc


def parse_csv(body: bytes, schema: Schema) -> Batch:
    features = schema.feature_names
    try:
        rows = [r for r in csv.reader(io.StringIO(_decode(body))) if r]
    except csv.Error as exc:
        raise RequestError(400, "bad_csv", f"malformed CSV: {exc}") from exc
    if not rows:
        raise RequestError(400, "empty_body", "request body holds no CSV rows")
    first = [f.strip() for f in rows[0]]
    known = set(features)
    if known.intersection(first):  # a header row: columns by name
        allowed = known | {schema.label}
        unknown = [f for f in first if f not in allowed]
        absent = [f for f in features if f not in first]
        dupes = sorted({f for f in first if first.count(f) > 1})
        errors = ([_field_error("unknown_field", f, [], f"header: unknown column {f!r}") for f in unknown]
                  + [_field_error("missing_field", f, [], f"header: missing column {f!r}") for f in absent]
                  + [_field_error("duplicate_field", f, [], f"header: column {f!r} appears twice") for f in dupes])
        if errors:
            raise RequestError(400, errors[0]["code"], "; ".join(e["message"] for e in errors)
                               + f"; expected the columns {features}", errors)
        positions = [first.index(f) for f in features]
        data = rows[1:]
        if not data:
            raise RequestError(400, "empty_body", "CSV body holds a header but no data rows")
    else:
        positions = list(range(len(features)))
        first = features
        data = rows
    width = len(first)
    bad = [i for i, r in enumerate(data) if len(r) != width]
    if bad:
        i = bad[0]
        raise RequestError(400, "field_count",
                           f"{_rows_text(bad)}: expected {width} fields ({', '.join(first)}), "
                           f"row {i} has {len(data[i])}",
                           [_field_error("field_count", "*", bad, f"expected {width} fields")])
    transposed = list(zip(*data, strict=True))
    columns = {name: [v.strip() or None for v in transposed[pos]]
               for name, pos in zip(features, positions, strict=True)}
    return Batch(columns, len(data), "csv")


def _not_json(constant: str) -> Any:
    # Python's json module accepts NaN and Infinity; JSON has no such numbers, and a NaN must not pass as "missing".
    raise RequestError(400, "bad_json", f"invalid JSON: {constant} is not JSON (send null for a missing value)")


def parse_json(body: bytes, schema: Schema) -> Batch:
    features = schema.feature_names
    try:
        doc = json.loads(_decode(body), parse_constant=_not_json)
    except json.JSONDecodeError as exc:
        raise RequestError(400, "bad_json", f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    except RecursionError as exc:
        raise RequestError(400, "bad_json", "invalid JSON: nested too deeply") from exc
    except ValueError as exc:  # an integer past Python's digit limit (sys.set_int_max_str_digits)
        raise RequestError(400, "bad_json", f"invalid JSON: {exc}") from exc
    instances = doc.get("instances") if isinstance(doc, dict) else doc
    if not isinstance(instances, list):
        raise RequestError(400, "bad_json", 'JSON body must be {"instances": [row, ...]} '
                                            "with rows as lists or objects")
    if not instances:
        raise RequestError(400, "empty_body", '"instances" is empty')
    width, known, allowed = len(features), set(features), set(features) | {schema.label}
    rows: list[Sequence[Any]] = []
    for i, inst in enumerate(instances):
        if isinstance(inst, list):
            if len(inst) != width:
                raise RequestError(400, "field_count", f"row {i}: expected {width} values ({', '.join(features)}), "
                                   f"got {len(inst)}", [_field_error("field_count", "*", [i], "wrong value count")])
            rows.append(inst)
        elif isinstance(inst, dict):
            keys = inst.keys()
            if not known <= keys or not keys <= allowed:
                errors = ([_field_error("missing_field", f, [i], f"row {i}: missing field {f!r}")
                           for f in features if f not in keys]
                          + [_field_error("unknown_field", str(k), [i], f"row {i}: unknown field {k!r}")
                             for k in keys if k not in allowed])
                raise RequestError(400, errors[0]["code"], "; ".join(e["message"] for e in errors)
                                   + f"; expected the fields {features}", errors)
            rows.append([inst[f] for f in features])
        else:
            raise RequestError(400, "bad_json", f"row {i}: must be a list or an object, not {type(inst).__name__}",
                               [_field_error("type", "*", [i], "row must be a list or an object")])
    transposed = list(zip(*rows, strict=True))
    columns = {name: [None if v == "" else v for v in transposed[j]] for j, name in enumerate(features)}
    return Batch(columns, len(rows), "json")


# --- validation: raw columns -> typed arrays ----------------------------------------------------
@dataclass
class Features:
    numeric: dict[str, np.ndarray]          # float64, NaN = missing
    categorical: dict[str, list[str | None]]  # None = missing
    rows: int


def _to_float(name: str, values: list[Any]) -> np.ndarray:
    """One float per row (NaN = missing). Lists and booleans are not numbers; an integer too large for a
    float becomes +-inf, which the range check then names."""
    if not any(type(v) is bool for v in values):
        try:
            array = np.array([math.nan if v is None else v for v in values], dtype=np.float64)
        except (ValueError, TypeError, OverflowError):
            pass
        else:
            if array.ndim == 1:  # rows of equal-length lists make a matrix, not one number per row
                return array
    bad: list[int] = []
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        if v is None:
            out[i] = math.nan
            continue
        if type(v) is bool or not isinstance(v, (int, float, str)):
            bad.append(i)
            continue
        try:
            out[i] = float(v)
        except OverflowError:
            out[i] = math.inf if v > 0 else -math.inf
        except ValueError:
            bad.append(i)
    if not bad:
        return out
    message = (f"field {name!r} must be numeric; non-numeric value(s) at {_rows_text(bad)} "
               f"(e.g. {_example(values[bad[0]])})")
    raise RequestError(400, "type", message, [_field_error("type", name, bad, message)])


def _example(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if value.is_integer():
            value = int(value)
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def validate(batch: Batch, schema: Schema, reject_unknown_categories: bool) -> Features:
    """Types, integers, ranges and categories per the schema; every failing field is reported."""
    errors: list[dict[str, Any]] = []
    numeric: dict[str, np.ndarray] = {}
    categorical: dict[str, list[str | None]] = {}
    for f in schema.features:
        values = batch.columns[f.name]
        if isinstance(f, NumericFeature):
            try:
                arr = _to_float(f.name, values)
            except RequestError as exc:
                errors.extend(exc.errors)
                continue
            present = ~np.isnan(arr)
            if f.dtype == "int":
                frac = np.flatnonzero(present & np.isfinite(arr) & (arr != np.floor(arr)))
                if frac.size:
                    errors.append(_field_error("not_integer", f.name, frac.tolist(),
                                               f"field {f.name!r} must be an integer; fractional value(s) at "
                                               f"{_rows_text(frac.tolist())} (e.g. {_example(arr[frac[0]])})"))
                    continue
            outside = np.flatnonzero(present & ((arr < f.minimum) | (arr > f.maximum)))
            if outside.size:
                errors.append(_field_error("out_of_range", f.name, outside.tolist(),
                                           f"field {f.name!r} must be within [{f.minimum}, {f.maximum}]; "
                                           f"value(s) outside at {_rows_text(outside.tolist())} "
                                           f"(e.g. {_example(arr[outside[0]])})"))
                continue
            numeric[f.name] = arr
        else:
            assert isinstance(f, CategoricalFeature)
            wrong = [i for i, v in enumerate(values) if v is not None and not isinstance(v, str)]
            if wrong:
                errors.append(_field_error("type", f.name, wrong,
                                           f"field {f.name!r} must be a string (a category) or null; "
                                           f"got {_example(values[wrong[0]])} at {_rows_text(wrong)}"))
                continue
            if reject_unknown_categories:
                cats = _category_set(f.categories)
                unknown = [i for i, v in enumerate(values) if v is not None and v not in cats]
                if unknown:
                    seen = sorted({values[i] for i in unknown})[:MAX_ROWS_SHOWN]
                    errors.append(_field_error("unknown_category", f.name, unknown,
                                               f"field {f.name!r}: value(s) {seen} at {_rows_text(unknown)} not "
                                               f"among the categories {list(f.categories)}"))
                    continue
            categorical[f.name] = values
    if errors:
        more = f"; +{len(errors) - 5} more" if len(errors) > 5 else ""
        message = "; ".join(e["message"] for e in errors[:5]) + more
        raise RequestError(400, errors[0]["code"], message, errors)
    return Features(numeric, categorical, batch.rows)


@functools.lru_cache(maxsize=256)
def _category_set(categories: tuple[str, ...]) -> frozenset[str]:
    # keyed by the categories themselves: an id() key is reused once a schema is freed, and then
    # another feature's categories would judge this one's values
    return frozenset(categories)


# --- scoring ------------------------------------------------------------------------------------------
class Scorer:
    """Positive-class probabilities for validated features, one vectorised call per request.

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
        self._codes: dict[str, dict[str, float]] | None = None
        self._order: list[str] = []
        self._classifier: Any = None
        self.fast = self._try_fast_path()

    def _frame(self, x: Features) -> pd.DataFrame:
        data: dict[str, Any] = {}
        for f in self.schema.features:
            if f.name in x.numeric:
                data[f.name] = x.numeric[f.name]
            else:
                data[f.name] = np.array([np.nan if v is None else v for v in x.categorical[f.name]], dtype=object)
        return pd.DataFrame(data, columns=self.schema.feature_names)

    def _pipeline_scores(self, x: Features) -> np.ndarray:
        return self.estimator.predict_proba(self._frame(x))[:, 1]

    def _fast_scores(self, x: Features) -> np.ndarray:
        assert self._codes is not None
        matrix = np.empty((x.rows, len(self._order)), dtype=np.float64)
        for j, name in enumerate(self._order):
            codes = self._codes.get(name)
            if codes is None:
                matrix[:, j] = x.numeric[name]
            else:
                get = codes.get
                matrix[:, j] = [get(v, math.nan) for v in x.categorical[name]]  # type: ignore[arg-type]
        return self._classifier.predict_proba(matrix)[:, 1]

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
        probe = self._probe()
        try:
            same = np.array_equal(self._fast_scores(probe), self._pipeline_scores(probe))
        except (KeyError, ValueError, TypeError):
            same = False
        if not same:
            self._codes = None
        return same

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


# --- metrics shared by the worker processes -----------------------------------------------------
HANDLERS = ("invocations", "ping", "metrics", "other")
CODES = ("200", "400", "404", "405", "406", "411", "413", "415", "500", "503", "other")
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SCALARS = ("rows_scored", "capture_written", "capture_dropped", "capture_failed", "workers_ready")


class Metrics:
    """Counters in shared memory (created before the workers fork), guarded by one lock."""

    _per_series = 2 + len(BUCKETS)  # count, sum, one slot per finite bucket

    def __init__(self) -> None:
        self._lock = multiprocessing.Lock()
        size = len(HANDLERS) * len(CODES) * self._per_series + len(_SCALARS)
        self._values = multiprocessing.RawArray("d", size)
        self.info: dict[str, str] = {}
        self.workers = 1

    def _base(self, handler: str, code: int) -> int:
        h = HANDLERS.index(handler) if handler in HANDLERS else len(HANDLERS) - 1
        c = CODES.index(str(code)) if str(code) in CODES else len(CODES) - 1
        return (h * len(CODES) + c) * self._per_series

    def _scalar(self, name: str) -> int:
        return len(HANDLERS) * len(CODES) * self._per_series + _SCALARS.index(name)

    def observe(self, handler: str, code: int, seconds: float) -> None:
        base = self._base(handler, code)
        bucket = next((i for i, b in enumerate(BUCKETS) if seconds <= b), None)
        with self._lock:
            self._values[base] += 1
            self._values[base + 1] += seconds
            if bucket is not None:
                self._values[base + 2 + bucket] += 1

    def add(self, name: str, amount: float) -> None:
        with self._lock:
            self._values[self._scalar(name)] += amount

    def value(self, name: str) -> float:
        return self._values[self._scalar(name)]

    def render(self) -> str:
        with self._lock:
            values = list(self._values)
        out = ["# HELP mlops_serve_requests_total HTTP requests by handler and status code.",
               "# TYPE mlops_serve_requests_total counter"]
        series = []
        for handler in HANDLERS:
            for code in CODES:
                base = self._base(handler, int(code) if code.isdigit() else 0)
                if values[base]:
                    series.append((handler, code, base))
                    out.append(f'mlops_serve_requests_total{{handler="{handler}",code="{code}"}} {values[base]:.0f}')
        out += ["# HELP mlops_serve_request_duration_seconds Request latency (headers parsed to response ready).",
                "# TYPE mlops_serve_request_duration_seconds histogram"]
        for handler, code, base in series:
            labels = f'handler="{handler}",code="{code}"'
            cumulative = 0.0
            for i, b in enumerate(BUCKETS):
                cumulative += values[base + 2 + i]
                out.append(f'mlops_serve_request_duration_seconds_bucket{{{labels},le="{b}"}} {cumulative:.0f}')
            out.append(f'mlops_serve_request_duration_seconds_bucket{{{labels},le="+Inf"}} {values[base]:.0f}')
            out.append(f"mlops_serve_request_duration_seconds_sum{{{labels}}} {values[base + 1]!r}")
            out.append(f"mlops_serve_request_duration_seconds_count{{{labels}}} {values[base]:.0f}")
        rows = values[self._scalar("rows_scored")]
        out += ["# HELP mlops_serve_rows_scored_total Rows scored by /invocations.",
                "# TYPE mlops_serve_rows_scored_total counter", f"mlops_serve_rows_scored_total {rows:.0f}",
                "# HELP mlops_serve_capture_records_total Data-capture records by outcome.",
                "# TYPE mlops_serve_capture_records_total counter"]
        for outcome in ("written", "dropped", "failed"):
            v = values[self._scalar(f"capture_{outcome}")]
            out.append(f'mlops_serve_capture_records_total{{outcome="{outcome}"}} {v:.0f}')
        out += ["# HELP mlops_serve_workers Worker processes.", "# TYPE mlops_serve_workers gauge",
                f"mlops_serve_workers {self.workers}",
                "# HELP mlops_serve_workers_ready Worker processes that have loaded the model.",
                "# TYPE mlops_serve_workers_ready gauge",
                f"mlops_serve_workers_ready {values[self._scalar('workers_ready')]:.0f}"]
        if self.info:
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(self.info.items()))
            out += ["# HELP mlops_serve_model_info The model this worker serves.",
                    "# TYPE mlops_serve_model_info gauge", f"mlops_serve_model_info{{{labels}}} 1"]
        return "\n".join(out) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


# --- the application (one per worker process) ----------------------------------------------------
@dataclass
class Response:
    status: int
    content_type: str
    body: bytes
    rows: int = 0
    error: str | None = None
    close: bool = False


def _json_response(status: int, doc: Any) -> Response:
    return Response(status, JSON, json.dumps(doc).encode())


def _error_response(exc: RequestError) -> Response:
    return Response(exc.status, JSON, exc.body(), error=exc.message, close=exc.close)


class App:
    def __init__(self, config: ServeConfig, metrics: Metrics) -> None:
        self.config = config
        self.metrics = metrics
        self.scorer: Scorer | None = None
        self.schema: Schema | None = None
        self.info: dict[str, str] = {}
        self.capture: CaptureWriter | None = None
        if config.capture is not None:
            self.capture = CaptureWriter(
                config.capture,
                on_written=lambda n: metrics.add("capture_written", n),
                on_failed=self._capture_failed,
                on_dropped=self._capture_dropped,
            )

    def _capture_failed(self, n: int, reason: str) -> None:
        self.metrics.add("capture_failed", n)
        log("capture_failed", level="error", records=n, reason=reason)

    def _capture_dropped(self, n: int) -> None:
        self.metrics.add("capture_dropped", n)
        log("capture_dropped", level="warning", records=n, reason="capture queue full")

    def load(self) -> None:
        from model_code.model import load_model

        started = time.perf_counter()
        model = load_model(self.config.model_path)
        digest = hashlib.sha256()
        with open(model.path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        artifact = model.artifact
        mlflow = artifact.get("mlflow") or {}
        provenance = artifact.get("provenance") or {}
        self.info = {
            "model_sha256": digest.hexdigest(),
            "format_version": str(artifact.get("format_version")),
            "mlflow_run_id": str(mlflow.get("run_id") or ""),
            "git_sha": str(provenance.get("MLOPS_GIT_SHA") or ""),
            "sklearn": str((artifact.get("versions") or {}).get("sklearn") or ""),
        }
        if artifact.get("content_sha256"):  # the estimator's digest, equal for equal models
            self.info["content_sha256"] = str(artifact["content_sha256"])
        self.metrics.info = self.info
        scorer = Scorer(model)
        self.schema = model.schema
        self.scorer = scorer  # set last: this worker scores from here on
        self.metrics.add("workers_ready", 1)
        log("model_loaded", path=str(model.path), seconds=round(time.perf_counter() - started, 3),
            fast_path=scorer.fast, threshold=scorer.threshold, **self.info)

    def ping(self) -> Response:
        """200 once every worker has loaded the model: after the first 200, no request can land on
        a worker that would answer 503 (the workers share one listening socket)."""
        ready = self.metrics.value("workers_ready")
        if self.scorer is None or ready < self.metrics.workers:
            return _json_response(503, {"status": "loading", "workers_ready": int(ready),
                                        "workers": self.metrics.workers})
        return _json_response(200, {"status": "ok", **self.info})

    def invocations(self, content_type: str | None, accept: str | None, body: bytes) -> Response:
        scorer, schema = self.scorer, self.schema
        if scorer is None or schema is None:
            return _json_response(503, {"status": 503, "code": "loading", "message": "model not loaded yet",
                                        "errors": []})
        try:
            request_type = media_type(content_type)
            if request_type not in SUPPORTED:
                raise RequestError(415, "unsupported_content_type",
                                   f"Content-Type {content_type!r} is not supported; use one of {list(SUPPORTED)}")
            response_type = negotiate(accept, request_type)
            if response_type is None:
                raise RequestError(406, "not_acceptable",
                                   f"Accept {accept!r} matches none of {list(SUPPORTED)}")
            if not body.strip():
                raise RequestError(400, "empty_body", "request body is empty")
            batch = parse_csv(body, schema) if request_type == CSV else parse_json(body, schema)
            features = validate(batch, schema, self.config.unknown_categories == "reject")
        except RequestError as exc:
            return _error_response(exc)
        scores = scorer.score(features)
        if response_type == CSV:
            out = ("\n".join(map(repr, scores.tolist())) + "\n").encode()
        else:
            threshold = scorer.threshold
            out = json.dumps({"predictions": [{"score": s, "label": int(s >= threshold)}
                                              for s in scores.tolist()]}).encode()
        self.metrics.add("rows_scored", features.rows)
        if self.capture is not None and self.capture.sampled():
            self.capture.offer(request_type, body, response_type, out)
        return Response(200, response_type, out, rows=features.rows)


# --- HTTP ----------------------------------------------------------------------------------------------
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mlops-stack-serve"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = SOCKET_TIMEOUT_SECONDS
    server: Server

    def handle(self) -> None:
        self.close_connection = False
        while not self.close_connection:
            if not self._await_request():
                return
            self.handle_one_request()

    def _await_request(self) -> bool:
        """Wait for the next request on a keep-alive connection, giving up at shutdown or idle timeout."""
        poller = select.poll()
        poller.register(self.connection, select.POLLIN | select.POLLPRI)
        idle_until = time.monotonic() + KEEPALIVE_SECONDS
        while True:
            if poller.poll(200):  # bytes already sent are a request in flight, even while stopping
                return True
            if self.server.stopping.is_set() or time.monotonic() > idle_until:
                return False

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        log("http", level="warning", client=self.client_address[0], message=format % args)

    def _send(self, response: Response, started: float, handler: str) -> None:
        close = response.close or self.server.stopping.is_set()
        head = [f"HTTP/1.1 {response.status} {self.responses.get(response.status, ('',))[0]}",
                f"Content-Type: {response.content_type}", f"Content-Length: {len(response.body)}",
                f"Server: {self.server_version}"]
        if close:
            head.append("Connection: close")
            self.close_connection = True
        payload = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body
        seconds = time.perf_counter() - started
        # counted before the client can see the response: a /metrics read after it includes it
        self.server.metrics.observe(handler, response.status, seconds)
        try:
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True
        fields: dict[str, Any] = {"method": self.command, "path": self.path, "status": response.status,
                                  "latency_ms": round(seconds * 1000, 3), "rows": response.rows}
        if response.error:
            fields["error"] = response.error
        log("request", level="info" if response.status < 500 else "error", **fields)

    def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
        started = time.perf_counter()
        path = self.path.split("?", 1)[0]
        app = self.server.app
        if path == "/ping":
            self._send(app.ping(), started, "ping")
        elif path == "/metrics":
            text = self.server.metrics.render().encode()
            self._send(Response(200, "text/plain; version=0.0.4; charset=utf-8", text), started, "metrics")
        elif path == "/invocations":
            self._send(_error_response(RequestError(405, "method_not_allowed", "use POST /invocations")),
                       started, "invocations")
        else:
            self._send(_error_response(RequestError(404, "not_found", f"no route {path!r}; routes: "
                                                    "GET /ping, POST /invocations, GET /metrics")), started, "other")

    def do_POST(self) -> None:  # noqa: N802
        started = time.perf_counter()
        path = self.path.split("?", 1)[0]
        handler = "invocations" if path == "/invocations" else "other"
        try:
            body = self._read_body()
        except RequestError as exc:
            self._send(_error_response(exc), started, handler)
            return
        if body is None:  # client went away mid-body
            self.close_connection = True
            return
        if path != "/invocations":
            status, message = (405, "use GET") if path in ("/ping", "/metrics") else (404, f"no route {path!r}")
            self._send(_error_response(RequestError(status, "not_found" if status == 404 else "method_not_allowed",
                                                    message)), started, handler)
            return
        response = self.server.app.invocations(self.headers.get("Content-Type"), self.headers.get("Accept"), body)
        self._send(response, started, handler)

    def _not_allowed(self) -> None:
        started = time.perf_counter()
        try:
            self._read_body()
        except RequestError:
            self.close_connection = True
        self._send(_error_response(RequestError(405, "method_not_allowed",
                                                f"{self.command} is not supported; use GET /ping, GET /metrics, "
                                                "POST /invocations")), started, "other")

    do_PUT = do_DELETE = do_PATCH = _not_allowed  # noqa: N815

    def _read_body(self) -> bytes | None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            raise RequestError(411, "length_required", "chunked bodies are not supported; send Content-Length",
                               close=True)
        raw = self.headers.get("Content-Length")
        try:
            length = int(raw) if raw is not None else 0
            if length < 0:
                raise ValueError(raw)
        except ValueError as exc:
            raise RequestError(400, "bad_content_length", f"Content-Length {raw!r} is not a byte count",
                               close=True) from exc
        limit = self.server.app.config.max_payload_bytes
        if length > limit:
            raise RequestError(413, "payload_too_large",
                               f"request body of {length} bytes exceeds the limit of {limit} bytes "
                               "(MLOPS_SERVE_MAX_PAYLOAD_BYTES)", close=True)
        try:
            body = self.rfile.read(length) if length else b""
        except OSError:
            return None
        return body if len(body) == length else None


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """A TCP server on an already listening socket; tracks its connection threads for draining."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, sock: socket.socket, app: App, metrics: Metrics) -> None:
        super().__init__(sock.getsockname()[:2], Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.app, self.metrics = app, metrics
        self.stopping = threading.Event()
        self._connections: set[threading.Thread] = set()
        self._threads_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(target=self._run, args=(request, client_address), daemon=True)
        with self._threads_lock:
            self._connections.add(thread)
        thread.start()

    def _run(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._threads_lock:
                self._connections.discard(threading.current_thread())

    def drain(self, deadline: float) -> bool:
        """Wait for the connection threads (in-flight requests) until the deadline."""
        while True:
            with self._threads_lock:
                threads = list(self._connections)
            if not threads:
                return True
            for t in threads:
                t.join(max(0.0, deadline - time.monotonic()))
            if time.monotonic() >= deadline:
                with self._threads_lock:
                    return not self._connections


LOAD_ERRORS = (OSError, ValueError, KeyError, EOFError, pickle.UnpicklingError, tarfile.TarError)


def run_worker(config: ServeConfig, sock: socket.socket, metrics: Metrics) -> int:
    """One worker: serve at once (ping 503), load the model (ping 200), serve until SIGTERM, drain."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    app = App(config, metrics)
    server = Server(sock, app, metrics)
    loop = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="accept", daemon=True)
    loop.start()
    code = 0
    try:
        app.load()
    except LOAD_ERRORS as exc:
        log("model_load_failed", level="error", path=str(config.model_path), error=f"{type(exc).__name__}: {exc}")
        stop.set()
        code = 1
    while not stop.wait(0.5):
        pass
    log("stopping", reason="load failed" if code else "signal")
    deadline = time.monotonic() + config.shutdown_timeout
    server.stopping.set()
    server.shutdown()
    drained = server.drain(deadline)
    flushed = app.capture.close(max(0.0, deadline - time.monotonic())) if app.capture is not None else True
    server.server_close()
    log("stopped", drained=drained, capture_flushed=flushed)
    return code if drained and flushed else (code or 1)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=1024)
    # Non-blocking accept: every worker's selector wakes for a new connection but only one gets
    # it; the others must not block in accept() (they could never notice a shutdown request).
    sock.setblocking(False)
    return sock


def serve(config: ServeConfig) -> int:
    """Bind, then run one worker in-process or fork ``config.workers`` of them."""
    import model_code.model  # noqa: F401 -- imported once before forking (copy-on-write for the workers)

    sock = bind(config.host, config.port)
    metrics = Metrics()
    metrics.workers = config.workers
    log("listening", host=config.host, port=sock.getsockname()[1], workers=config.workers,
        model=str(config.model_path), capture=str(config.capture.directory) if config.capture else None)
    if config.workers == 1:
        return run_worker(config, sock, metrics)
    return _supervise(config, sock, metrics)


def _supervise(config: ServeConfig, sock: socket.socket, metrics: Metrics) -> int:
    children: dict[int, int] = {}
    stopping = False

    def forward(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            _kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for index in range(config.workers):
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                code = run_worker(config, sock, metrics)
            finally:
                sys.stdout.flush()
                os._exit(code)
        children[pid] = index
    code = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        children.pop(pid, None)
        exit_code = os.waitstatus_to_exitcode(status)
        if exit_code != 0 or not stopping:
            log("worker_exited", level="error" if exit_code else "warning", pid=pid, exit_code=exit_code)
            code = 1
            if not stopping:
                forward(signal.SIGTERM, None)
    sock.close()
    log("stopped", exit_code=code)
    return code


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


# --- command line ----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m model_code.serve",
        description="Serve the model over HTTP on SageMaker's container contract (GET /ping, POST /invocations, "
                    "GET /metrics). Options override the environment variables (python -m model_code env).")
    p.add_argument("--model", type=Path, help="model.joblib, model.tar.gz, or a folder holding one "
                   "(default: $SM_MODEL_DIR or /opt/ml/model)")
    p.add_argument("--host", help="address to bind (default: $MLOPS_SERVE_HOST or 0.0.0.0)")
    p.add_argument("--port", type=int, help="port (default: $SAGEMAKER_BIND_TO_PORT or 8080; 0 = any free port)")
    p.add_argument("--workers", type=int, help="worker processes (default: $SAGEMAKER_MODEL_SERVER_WORKERS, "
                   "else one per CPU)")
    return p


def main(argv: Sequence[str] | None = None, *, environ: Any = None) -> int:
    args = build_parser().parse_args(argv)
    env.limit_openmp_threads()  # before sklearn (and its OpenMP runtime) is imported
    if args.workers is not None and args.workers < 1:
        print("--workers must be >= 1", file=sys.stderr)
        return 2
    try:
        config = ServeConfig.from_env(environ, model_path=args.model, host=args.host, port=args.port,
                                      workers=args.workers)
    except env.EnvError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    return serve(config)



if __name__ == "__main__":
    sys.exit(main())

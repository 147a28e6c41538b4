"""The request protocol: errors as 4xx JSON, content negotiation, CSV/JSON parsing and validation against
the model's schema. Pure functions of the request: no server, no model."""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from model_code.schema import CategoricalFeature, NumericFeature, Schema

CSV = "text/csv"
JSON = "application/json"
JSONLINES = "application/jsonlines"
"""One JSON row per line: what Batch Transform splits with SplitType Line, and a line-per-row answer to it."""
SUPPORTED = (CSV, JSON, JSONLINES)
MAX_ROWS_SHOWN = 10


INFERENCE_ID_HEADER = "X-Amzn-SageMaker-Inference-Id"
"""How InvokeEndpoint's InferenceId reaches the container; captured with the record, echoed in the response."""
_INFERENCE_ID = re.compile(r"\A[\x21-\x7e][\x20-\x7e]{0,63}\Z")  # InvokeEndpoint's rule: 1-64 printable characters


def inference_id(header: str | None) -> str:
    """The request's InferenceId, or a new one; RequestError 400 for one InvokeEndpoint would refuse."""
    if header is None or header == "":
        return str(uuid.uuid4())
    if not _INFERENCE_ID.match(header):
        raise RequestError(400, "bad_inference_id", f"{INFERENCE_ID_HEADER} must be 1-64 printable ASCII "
                                                    f"characters, not starting with a space (got {_example(header)})")
    return header


# --- request errors ---------------------------------------------------------------------------------
class RequestError(Exception):
    """A 4xx: what was wrong with the request, naming the field and rows where there are some."""

    def __init__(
        self, status: int, code: str, message: str, errors: Sequence[dict[str, Any]] = (), close: bool = False
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.errors, self.close = status, code, message, list(errors), close

    def body(self) -> bytes:
        return json.dumps(
            {"status": self.status, "code": self.code, "message": self.message, "errors": self.errors}, default=str
        ).encode()


def _field_error(code: str, field: str, rows: Sequence[int], message: str) -> dict[str, Any]:
    return {"code": code, "field": field, "rows": [int(r) for r in rows[:MAX_ROWS_SHOWN]], "message": message}


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
        choice = {"*/*": request_type, "text/*": CSV, "application/*": JSON, CSV: CSV, JSON: JSON,
                  JSONLINES: JSONLINES}.get(media)
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
        errors = (
            [_field_error("unknown_field", f, [], f"header: unknown column {f!r}") for f in unknown]
            + [_field_error("missing_field", f, [], f"header: missing column {f!r}") for f in absent]
            + [_field_error("duplicate_field", f, [], f"header: column {f!r} appears twice") for f in dupes]
        )
        if errors:
            raise RequestError(
                400,
                errors[0]["code"],
                "; ".join(e["message"] for e in errors) + f"; expected the columns {features}",
                errors,
            )
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
        raise RequestError(
            400,
            "field_count",
            f"{_rows_text(bad)}: expected {width} fields ({', '.join(first)}), row {i} has {len(data[i])}",
            [_field_error("field_count", "*", bad, f"expected {width} fields")],
        )
    transposed = list(zip(*data, strict=True))
    columns = {
        name: [v.strip() or None for v in transposed[pos]] for name, pos in zip(features, positions, strict=True)
    }
    return Batch(columns, len(data), "csv")


def _not_json(constant: str) -> Any:
    # Python's json module accepts NaN and Infinity; JSON has no such numbers, and a NaN must not pass as "missing".
    raise RequestError(400, "bad_json", f"invalid JSON: {constant} is not JSON (send null for a missing value)")


def _load_json(text: str, where: str = "") -> Any:
    try:
        return json.loads(text, parse_constant=_not_json)
    except json.JSONDecodeError as exc:
        at = where or f"line {exc.lineno} "
        raise RequestError(400, "bad_json", f"invalid JSON at {at}column {exc.colno}: {exc.msg}") from exc
    except RecursionError as exc:
        raise RequestError(400, "bad_json", f"invalid JSON{' at ' + where.strip() if where else ''}: "
                                            "nested too deeply") from exc
    except ValueError as exc:  # an integer past Python's digit limit (sys.set_int_max_str_digits)
        raise RequestError(400, "bad_json", f"invalid JSON{' at ' + where.strip() if where else ''}: {exc}") from exc


def parse_json(body: bytes, schema: Schema) -> Batch:
    doc = _load_json(_decode(body))
    instances = doc.get("instances") if isinstance(doc, dict) else doc
    if not isinstance(instances, list):
        raise RequestError(400, "bad_json", 'JSON body must be {"instances": [row, ...]} with rows as lists or objects')
    if not instances:
        raise RequestError(400, "empty_body", '"instances" is empty')
    return _instances_batch(instances, schema)


def parse_jsonlines(body: bytes, schema: Schema) -> Batch:
    """One row per non-blank line (a list in schema order or an object keyed by feature); row i is the i-th
    non-blank line."""
    # newlines only: str.splitlines would also split on U+2028 and other separators a JSON string may hold
    lines = [line for line in _decode(body).split("\n") if line.strip()]
    if not lines:
        raise RequestError(400, "empty_body", "request body holds no JSON Lines rows")
    rows = []
    for i, line in enumerate(lines):
        try:
            rows.append(_load_json(line, f"row {i} "))
        except RequestError as exc:  # the row, so a caller (a batch job) can name its own line
            raise RequestError(400, exc.code, exc.message, [_field_error(exc.code, "*", [i], exc.message)]) from None
    return _instances_batch(rows, schema)


def _instances_batch(instances: list[Any], schema: Schema) -> Batch:
    features = schema.feature_names
    width, known, allowed = len(features), set(features), set(features) | {schema.label}
    rows: list[Sequence[Any]] = []
    for i, inst in enumerate(instances):
        if isinstance(inst, list):
            if len(inst) != width:
                raise RequestError(
                    400,
                    "field_count",
                    f"row {i}: expected {width} values ({', '.join(features)}), got {len(inst)}",
                    [_field_error("field_count", "*", [i], "wrong value count")],
                )
            rows.append(inst)
        elif isinstance(inst, dict):
            keys = inst.keys()
            if not known <= keys or not keys <= allowed:
                errors = [
                    _field_error("missing_field", f, [i], f"row {i}: missing field {f!r}")
                    for f in features
                    if f not in keys
                ] + [
                    _field_error("unknown_field", str(k), [i], f"row {i}: unknown field {k!r}")
                    for k in keys
                    if k not in allowed
                ]
                raise RequestError(
                    400,
                    errors[0]["code"],
                    "; ".join(e["message"] for e in errors) + f"; expected the fields {features}",
                    errors,
                )
            rows.append([inst[f] for f in features])
        else:
            raise RequestError(
                400,
                "bad_json",
                f"row {i}: must be a list or an object, not {type(inst).__name__}",
                [_field_error("type", "*", [i], "row must be a list or an object")],
            )
    transposed = list(zip(*rows, strict=True))
    columns = {name: [None if v == "" else v for v in transposed[j]] for j, name in enumerate(features)}
    return Batch(columns, len(rows), "json")


# --- validation: raw columns -> typed arrays ----------------------------------------------------
@dataclass
class Features:
    numeric: dict[str, np.ndarray]  # float64, NaN = missing
    categorical: dict[str, list[str | None]]  # None = missing
    rows: int


def _to_float(name: str, values: list[Any]) -> np.ndarray:
    """One float per row (NaN = missing, from an empty field or null only). Lists, booleans and "nan" are not
    numbers; an integer too large for a float becomes +-inf, which the range check then names."""
    if not any(type(v) is bool for v in values):
        try:
            array = np.array([math.nan if v is None else v for v in values], dtype=np.float64)
        except (ValueError, TypeError, OverflowError):
            pass
        else:
            # Rows of equal-length lists make a matrix, not one number per row; a NaN not from null is a "nan".
            if array.ndim == 1:
                nan = np.isnan(array)
                if not nan.any() or not any(values[i] is not None for i in np.flatnonzero(nan)):
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
        except OverflowError:  # only an int overflows (a huge numeric string is inf)
            out[i] = -math.inf if isinstance(v, int) and v < 0 else math.inf
        except ValueError:
            bad.append(i)
            continue
        if math.isnan(out[i]):  # "nan" is not a missing value: leave the field empty, or send null
            bad.append(i)
    if not bad:
        return out
    message = (
        f"field {name!r} must be numeric; non-numeric value(s) at {_rows_text(bad)} (e.g. {_example(values[bad[0]])})"
    )
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
                numeric[f.name] = _to_float(f.name, values)
            except RequestError as exc:
                errors.extend(exc.errors)
        else:
            assert isinstance(f, CategoricalFeature)
            wrong = [i for i, v in enumerate(values) if v is not None and not isinstance(v, str)]
            if wrong:
                errors.append(
                    _field_error(
                        "type",
                        f.name,
                        wrong,
                        f"field {f.name!r} must be a string (a category) or null; "
                        f"got {_example(values[wrong[0]])} at {_rows_text(wrong)}",
                    )
                )
                continue
            if reject_unknown_categories:
                cats = _category_set(f.categories)
                unknown = [i for i, v in enumerate(values) if v is not None and v not in cats]
                if unknown:
                    seen = sorted({values[i] for i in unknown})[:MAX_ROWS_SHOWN]
                    errors.append(
                        _field_error(
                            "unknown_category",
                            f.name,
                            unknown,
                            f"field {f.name!r}: value(s) {seen} at {_rows_text(unknown)} not "
                            f"among the categories {list(f.categories)}",
                        )
                    )
                    continue
            categorical[f.name] = values
    errors += _numeric_bounds(numeric, schema)
    if errors:
        order = {name: k for k, name in enumerate(schema.feature_names)}
        errors.sort(key=lambda e: order.get(e["field"], -1))  # schema order, as the fields were checked
        more = f"; +{len(errors) - 5} more" if len(errors) > 5 else ""
        message = "; ".join(e["message"] for e in errors[:5]) + more
        raise RequestError(400, errors[0]["code"], message, errors)
    return Features(numeric, categorical, batch.rows)


def _numeric_bounds(numeric: dict[str, np.ndarray], schema: Schema) -> list[dict[str, Any]]:
    """Integers and ranges of every numeric column checked at once (one matrix: a one-row request's cost
    is the number of numpy calls, not the rows); a column at fault is named, and dropped from `numeric`."""
    if not numeric:
        return []
    features = [f for f in schema.numeric if f.name in numeric]
    matrix = np.column_stack([numeric[f.name] for f in features])
    low, high, integer = _bounds(tuple((f.minimum, f.maximum, f.dtype == "int") for f in features))
    present = ~np.isnan(matrix)
    fractional = present & integer & np.isfinite(matrix) & (matrix != np.floor(matrix))
    outside = present & ~fractional & ((matrix < low) | (matrix > high))
    if not (fractional.any() or outside.any()):
        return []
    errors = []
    for j, f in enumerate(features):
        arr = matrix[:, j]
        frac, out = np.flatnonzero(fractional[:, j]), np.flatnonzero(outside[:, j])
        if frac.size:
            message = (f"field {f.name!r} must be an integer; fractional value(s) at {_rows_text(frac.tolist())} "
                       f"(e.g. {_example(arr[frac[0]])})")
            errors.append(_field_error("not_integer", f.name, frac.tolist(), message))
        elif out.size:
            message = (f"field {f.name!r} must be within [{f.minimum}, {f.maximum}]; value(s) outside at "
                       f"{_rows_text(out.tolist())} (e.g. {_example(arr[out[0]])})")
            errors.append(_field_error("out_of_range", f.name, out.tolist(), message))
        else:
            continue
        del numeric[f.name]
    return errors


@functools.lru_cache(maxsize=256)
def _bounds(spec: tuple[tuple[float, float, bool], ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(minimums, maximums, integer flags) of numeric columns, as rows to compare a matrix with."""
    low, high, integer = zip(*spec, strict=True)
    return np.array(low, dtype=np.float64), np.array(high, dtype=np.float64), np.array(integer, dtype=bool)


@functools.lru_cache(maxsize=256)
def _category_set(categories: tuple[str, ...]) -> frozenset[str]:
    # keyed by the categories themselves: an id() key is reused once a schema is freed, and then
    # another feature's categories would judge this one's values
    return frozenset(categories)

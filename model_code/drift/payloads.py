"""Capture payloads parsed a block at a time: CSV inputs with pandas, JSON inputs, the model's outputs."""

from __future__ import annotations

import json
import operator
from collections.abc import Sequence
from io import StringIO
from typing import Any

import msgspec
import numpy as np
import pandas as pd

from model_code.drift.core import Block, CaptureData, CaptureError, where
from model_code.schema import NumericFeature, Schema


def loads_payload(text: str) -> Any:
    """A JSON payload, by msgspec; what msgspec refuses but Python's json reads (NaN, Infinity, integers
    past 64 bits, which another model server may have written) by json, whose error is the one raised."""
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        return json.loads(text)


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


def _parse_csv_inputs(block: Block, idx: Sequence[int], schema: Schema,
                      names: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """CSV payloads of records ``idx`` -> (frame in feature order, rows per record).

    Records without a header (or with the schema's header) are joined and parsed at once; records
    whose header orders the columns differently are parsed per distinct header.
    """
    texts: list[str] = block.in_texts if len(idx) == len(block.in_texts) else [block.in_texts[i] for i in idx]
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
        text = _lines_of(block.in_texts[i].rstrip("\r\n"), block, i, "endpointInput")
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
                raise CaptureError(f"{where(block, idx[positions[0]])}: CSV header does not match the schema "
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
            raise CaptureError(f"{where(block, rec)}: a CSV row has {counts[bad[0]]} fields, the "
                               f"schema {schema.name!r} has {len(cols)} features {cols} "
                               f"({len(bad)} such row(s) in this block)")
        frames.append(_read_features(text, cols, schema, block, [idx[p] for p in positions], group_rows))
    if not frames:
        return pd.DataFrame({n: pd.Series(dtype=float) for n in names}), rows
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return frame, rows


def _dtypes(schema: Schema) -> dict[str, str]:
    return {f.name: ("float64" if isinstance(f, NumericFeature) else "category") for f in schema.features}


def _read_features(text: str, cols: list[str], schema: Schema, block: Block, recs: list[int],
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
            raise CaptureError(f"{where(block, rec)}: feature {f.name!r} must be numeric, got "
                               f"{raw[f.name].iloc[bad[0]]!r} ({len(bad)} such row(s) in this block)")
    raise CaptureError(f"{block.source}: CSV payloads could not be parsed")  # pragma: no cover


def _parse_json_inputs(block: Block, idx: Sequence[int], schema: Schema) -> tuple[pd.DataFrame, np.ndarray]:
    names = schema.feature_names
    allowed = set(names) | {schema.label}
    every_feature = operator.itemgetter(*names)
    records: list[Any] = []
    rows = np.zeros(len(idx), dtype=np.int64)
    for pos, i in enumerate(idx):
        try:
            doc = loads_payload(block.in_texts[i])
        except ValueError as exc:
            raise CaptureError(f"{where(block, i)}: endpointInput is not valid JSON: {exc}") from None
        inst = doc.get("instances") if isinstance(doc, dict) else doc
        if not isinstance(inst, list):
            raise CaptureError(f"{where(block, i)}: endpointInput JSON must be {{\"instances\": [...]}}")
        for k, item in enumerate(inst):
            if isinstance(item, dict):
                if not item.keys() <= allowed:
                    unexpected = sorted(set(item) - allowed)
                    raise CaptureError(f"{where(block, i)}: instance {k} has unexpected field(s) "
                                       f"{unexpected}; the schema {schema.name!r} has {names}")
                try:
                    records.append(every_feature(item))
                except KeyError:   # a missing key is a missing value
                    records.append([item.get(n) for n in names])
            elif isinstance(item, list):
                if len(item) != len(names):
                    raise CaptureError(f"{where(block, i)}: instance {k} has {len(item)} values, the "
                                       f"schema {schema.name!r} has {len(names)} features {names}")
                records.append(item)
            else:
                raise CaptureError(f"{where(block, i)}: instance {k} is neither an object nor an array")
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
                raise CaptureError(f"{where(block, rec)}: feature {f.name!r} must be numeric, got "
                                   f"{col.iloc[bad[0]]!r}")
            out[f.name] = num.astype("float64")
        else:
            out[f.name] = pd.Categorical(values)
    return pd.DataFrame(out), rows


def _lines_of(text: str, block: Block, i: int, side: str) -> str:
    """CSV payload text with LF line ends (CRLF accepted; a lone CR would split a row for pandas)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n")
        if "\r" in text:
            raise CaptureError(f"{where(block, i)}: {side} CSV has a carriage return inside a line")
    return text


def _scores(text: str) -> bool:
    """Whether every line of CSV output text starts with a number."""
    try:
        for line in text.split("\n"):
            float(line.split(",", 1)[0])
    except ValueError:
        return False
    return True


def _parse_labels(block: Block, rows_in: np.ndarray, acc: CaptureData) -> None:
    """A multiclass model's outputs: CSV, one predicted class per line; JSON, each prediction's "label"."""
    for i, (kind, text) in enumerate(zip(block.out_kinds, block.out_texts, strict=True)):
        if kind == "none":
            continue
        if kind == "csv":
            labels = [line.split(",", 1)[0] for line in _lines_of(text.strip(), block, i, "endpointOutput").split("\n")
                      if line] if text.strip() else []
        else:
            try:
                doc = loads_payload(text)
                preds = doc.get("predictions") if isinstance(doc, dict) else doc
                labels = [str(p["label"]) for p in preds]
            except (ValueError, TypeError, KeyError, AttributeError):
                raise CaptureError(f"{where(block, i)}: endpointOutput JSON of a multiclass model must be "
                                   "{\"predictions\": [{\"label\": ...}, ...]}") from None
        if len(labels) != rows_in[i]:
            raise CaptureError(f"{where(block, i)}: {rows_in[i]} input row(s) but {len(labels)} prediction(s)")
        for label in labels:
            acc.labels[label] = acc.labels.get(label, 0) + 1


def _parse_outputs(block: Block, rows_in: np.ndarray) -> np.ndarray | None:
    kinds = set(block.out_kinds)
    if kinds == {"none"}:
        return None
    scores: list[np.ndarray] = []
    rows_out = np.zeros(len(block.out_kinds), dtype=np.int64)
    csv_idx = _indexes(block.out_kinds, "csv")
    if csv_idx:
        texts = block.out_texts if len(csv_idx) == len(block.out_texts) else [block.out_texts[i] for i in csv_idx]
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
                raise CaptureError(f"{where(block, csv_idx[at])}: endpointOutput CSV is not one score per line "
                                   f"(got {texts[at][:80]!r})") from None
    for i in _indexes(block.out_kinds, "json") if "json" in kinds else ():
        text = block.out_texts[i]
        try:
            doc = loads_payload(text)
            preds = doc.get("predictions") if isinstance(doc, dict) else doc
            # binary: "score", regression: "value" (model_code/serve/app.py render)
            values = [(p["score"] if "score" in p else p["value"]) if isinstance(p, dict) else p for p in preds]
            scores.append(np.asarray(values, dtype="float64"))
        except (ValueError, TypeError, KeyError, AttributeError):
            raise CaptureError(f"{where(block, i)}: endpointOutput JSON must be "
                               "{\"predictions\": [{\"score\": ...}, ...]}") from None
        rows_out[i] = len(values)
    has = np.array([k != "none" for k in block.out_kinds]) if "none" in kinds else True
    bad = np.flatnonzero(has & (rows_out != rows_in))
    if len(bad):
        i = int(bad[0])
        raise CaptureError(f"{where(block, i)}: {rows_in[i]} input row(s) but {rows_out[i]} prediction(s)")
    return np.concatenate(scores) if scores else np.empty(0)


def _indexes(kinds: list[str], kind: str) -> Sequence[int]:
    """Where `kind` is in `kinds`: all of them at the cost of a count, the common case."""
    n = kinds.count(kind)
    if n == len(kinds):
        return range(n)
    return [i for i, k in enumerate(kinds) if k == kind] if n else []


def parse_block(block: Block, schema: Schema, acc: CaptureData) -> None:
    names = schema.feature_names
    csv_idx, json_idx = _indexes(block.in_kinds, "csv"), _indexes(block.in_kinds, "json")
    rows_in = np.zeros(len(block.in_kinds), dtype=np.int64)
    frames = []
    if csv_idx:
        frame, rows = _parse_csv_inputs(block, csv_idx, schema, names)
        rows_in[csv_idx] = rows
        frames.append(frame)
    if json_idx:
        frame, rows = _parse_json_inputs(block, json_idx, schema)
        rows_in[json_idx] = rows
        frames.append(frame)
    if schema.task == "multiclass":
        _parse_labels(block, rows_in, acc)
    else:
        scores = _parse_outputs(block, rows_in)
        if scores is not None and len(scores):
            acc.scores.append(scores)
    acc.records += len(block.in_kinds)
    for frame in frames:
        accumulate(frame, schema, acc)



def accumulate(frame: pd.DataFrame, schema: Schema, acc: CaptureData) -> None:
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



"""Reading what the quality job joins: captured requests (their inference id, time and feature rows)
and ground-truth records (their id, labels and upload hour), from a local folder or an S3 prefix
laid out by hour, as the drift job lists capture (model_code/drift/sources.py)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from model_code.drift.capture import decode_payload
from model_code.drift.core import CaptureError, Window, parse_time
from model_code.drift.sources import aws_client, hour_of, list_local, list_s3
from model_code.schema import Schema
from model_code.serve.protocol import RequestError, parse_csv, parse_json


@dataclass(frozen=True)
class Captured:
    """One captured request: its inference id, when it was served, and its feature rows (raw values)."""

    inference_id: str
    time: datetime
    rows: pd.DataFrame | None
    """None for a request outside the scored window: only its id and time are read."""
    where: str
    row_count: int = 0


@dataclass(frozen=True)
class Label:
    """One ground-truth record: the inference id it labels, its values (one per row), its upload hour."""

    event_id: str
    values: tuple[Any, ...]
    hour: datetime
    where: str


@dataclass
class Unreadable:
    """Lines that are not records of their format: counted and named (the first few), never a crash."""

    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, where: str, why: str) -> None:
        self.count += 1
        if len(self.examples) < 10:
            self.examples.append(f"{where}: {why}")


def _files(source: str, window: Window) -> list[str]:
    return list_s3(source, window) if source.startswith("s3://") else [str(p) for p in list_local(Path(source), window)]


def _lines(path: str) -> Iterator[tuple[int, bytes]]:
    if path.startswith("s3://"):
        bucket, _, key = path[len("s3://"):].partition("/")
        data = aws_client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    else:
        data = Path(path).read_bytes()
    for number, line in enumerate(data.split(b"\n"), start=1):
        if line.strip():
            yield number, line


def read_captured(source: str, window: Window, schema: Schema, bad: Unreadable, scored: Window) -> list[Captured]:
    """The requests captured in ``window`` (by eventMetadata.inferenceTime); the feature rows of those in
    ``scored`` only (the others are there to place their labels: earlier or later windows)."""
    out: list[Captured] = []
    for path in _files(source, window):
        for number, line in _lines(path):
            where = f"{path} line {number}"
            try:
                record = json.loads(line)
                meta = record.get("eventMetadata") or {}
                time = parse_time(str(meta.get("inferenceTime", "")), "inferenceTime")
                kind, text = decode_payload(record["captureData"].get("endpointInput"), "endpointInput", path, number)
            except (ValueError, KeyError, TypeError, AttributeError, CaptureError) as exc:
                bad.add(where, f"not a data-capture record ({exc})")
                continue
            if (window.start and time < window.start) or (window.end and time >= window.end):
                continue
            identity = meta.get("inferenceId")
            if not isinstance(identity, str) or not identity:
                bad.add(where, "the record has no eventMetadata.inferenceId: ground truth cannot join it")
                continue
            if (scored.start and time < scored.start) or (scored.end and time >= scored.end):
                out.append(Captured(identity, time, None, where))
                continue
            try:
                batch = (parse_json if kind == "json" else parse_csv)(text.encode(), schema)
            except RequestError as exc:
                bad.add(where, f"endpointInput: {exc.message}")
                continue
            out.append(Captured(identity, time, pd.DataFrame(batch.columns, columns=schema.feature_names), where,
                                batch.rows))
    return out


def _values(data: Any, encoding: str) -> tuple[Any, ...]:
    """The labels of one ground-truth record, one per row; ValueError says why there are none."""
    if not isinstance(data, str):
        raise ValueError("groundTruthData.data must be a string")
    if encoding == "CSV":
        rows = [r for r in csv.reader(io.StringIO(data)) if r]
        if any(len(r) != 1 for r in rows):
            raise ValueError("CSV ground truth holds one label per line")
        return tuple(r[0] for r in rows)
    if encoding == "JSON":
        value = json.loads(data)
        return tuple(value) if isinstance(value, list) else (value,)
    raise ValueError(f"groundTruthData.encoding {encoding!r} is not CSV or JSON")


def read_labels(source: str, window: Window, bad: Unreadable) -> list[Label]:
    """The ground-truth records uploaded in ``window`` (by their hour folder)."""
    out: list[Label] = []
    for path in _files(source, window):
        hour = hour_of(path[len("s3://"):] if path.startswith("s3://") else Path(path).as_posix())
        if hour is None or not window.contains_hour(hour):
            if hour is None:
                bad.add(path, "not under a yyyy/mm/dd/hh/ folder: its upload hour is unknown")
            continue
        for number, line in _lines(path):
            where = f"{path} line {number}"
            try:
                record = json.loads(line)
                truth, event = record["groundTruthData"], record["eventMetadata"]["eventId"]
                if not isinstance(event, str) or not event:
                    raise ValueError("eventMetadata.eventId must be a non-empty string")
                values = _values(truth.get("data"), str(truth.get("encoding", "CSV")).upper())
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                bad.add(where, f"not a ground-truth record ({exc})")
                continue
            out.append(Label(event, values, hour, where))
    return out

"""Batch Transform's data capture as drift input (``--batch-capture``), beside an endpoint's capture.

A transform job with a DataCaptureConfig writes no copy of its data: under DestinationS3Uri it writes manifests,
``input/yyyy/mm/dd/hh/<uuid>.json`` and ``output/yyyy/mm/dd/hh/<uuid>.json`` by the hour the job started, each a
ManifestFile JSON array ``[{"prefix": P}, "relative/key", ...]`` naming the objects it read or wrote (an empty
relative key: P is the object itself). That is the layout AWS's developer guide and its Model Monitor batch examples
show. The input objects give the feature rows (one record per non-blank line, CSV in the schema's order or JSON
Lines); an input's output is the object named ``<input name>.out`` (one prediction per line, in input order). An
input whose output is missing (its file failed) gives its rows without predictions. Each job of the window counts
what it scored: objects two jobs scored count twice, as they were scored twice.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from model_code.drift.capture import jsonlines_as_list, text_lines
from model_code.drift.core import Block, CaptureData, CaptureError, Window
from model_code.drift.payloads import parse_block
from model_code.drift.sources import aws_client, hour_of, s3_keys, s3_split
from model_code.schema import Schema

CHUNK_LINES = 50_000  # rows parsed at once: one object's lines, a chunk at a time


def _read(uri: str) -> bytes:
    if uri.startswith("s3://"):
        bucket, _, key = uri[len("s3://"):].partition("/")
        return aws_client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    return Path(uri).read_bytes()


def _manifests(uri: str, side: str, window: Window) -> list[str]:
    """The manifests of `side` (input or output) whose hour folder is in the window."""
    if uri.startswith("s3://"):
        bucket, prefix = s3_split(uri)
        root = f"{prefix}{side}/"
        keys = [k for k in s3_keys(aws_client("s3"), bucket, root) if k.endswith(".json")]
        return [f"s3://{bucket}/{k}" for k in sorted(keys) if _in_window(k[len(root):], window)]
    root_path = Path(uri) / side
    if not root_path.is_dir():
        return []
    return [str(p) for p in sorted(root_path.rglob("*.json")) if _in_window(p.relative_to(root_path).as_posix(),
                                                                             window)]


def _in_window(relative: str, window: Window) -> bool:
    hour = hour_of(relative)
    return hour is not None and window.contains_hour(hour)


def _objects(manifest: str) -> list[tuple[str, str]]:
    """(object URI, its name relative to the manifest's prefix) of every object a ManifestFile array names; an empty
    relative key names the prefix itself, known by its file name."""
    try:
        doc: Any = json.loads(_read(manifest))
        prefix = doc[0]["prefix"]
        relatives = doc[1:]
        if not isinstance(prefix, str) or not all(isinstance(r, str) for r in relatives):
            raise TypeError
    except (ValueError, TypeError, KeyError, IndexError):
        raise CaptureError(f'{manifest}: not a batch capture manifest ([{{"prefix": "s3://..."}}, "key", ...])') \
            from None
    return [(prefix + relative, relative or prefix.rstrip("/").rsplit("/", 1)[-1]) for relative in relatives]


def _lines(uri: str) -> list[str]:
    return text_lines(_read(uri).decode("utf-8", "replace"))


def _payload(lines: list[str]) -> tuple[str, str]:
    """(kind, text) of a chunk of records: JSON Lines as one JSON list, else CSV."""
    if lines and lines[0].lstrip()[:1] in ("[", "{"):
        return "json", jsonlines_as_list(lines)
    return "csv", "\n".join(lines)


def read_batch_capture(uri: str, schema: Schema, window: Window = Window()) -> CaptureData:
    """Every input object the window's batch jobs scored, with its predictions where its output exists."""
    acc = CaptureData(schema)
    # an output is `<input's relative key>.out` under the output prefix: paired by that relative key, which two inputs
    # of one job never share (their file names may)
    outputs = {relative: obj for manifest in _manifests(uri, "output", window) for obj, relative in _objects(manifest)}
    for manifest in _manifests(uri, "input", window):
        for obj, relative in _objects(manifest):
            acc.files += 1
            rows = _lines(obj)
            scored = outputs.get(f"{relative}.out")
            predictions = _lines(scored) if scored else None
            if predictions is not None and len(predictions) != len(rows):
                raise CaptureError(f"{obj}: {len(rows)} records but {len(predictions)} lines in {scored}")
            for at in range(0, len(rows), CHUNK_LINES):
                kind, text = _payload(rows[at:at + CHUNK_LINES])
                out_kind, out_text = _payload(predictions[at:at + CHUNK_LINES]) if predictions else ("none", "")
                block = Block(obj, lines=[at + 1], events=[manifest], in_kinds=[kind], in_texts=[text],
                              out_kinds=[out_kind], out_texts=[out_text])
                parse_block(block, schema, acc)
    return acc

"""Where capture comes from: a local folder or file, or an S3 prefix, listed by the window's hour folders
and read in parallel processes."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

from model_code import env
from model_code.drift.capture import chunks, read_chunks
from model_code.drift.core import HOUR_PATH, CaptureData, CaptureError, UsageError, Window
from model_code.schema import Schema


def hour_of(rel: str) -> datetime | None:
    m = HOUR_PATH.search(rel)
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
        hour = hour_of(path.relative_to(root).as_posix())
        if hour is None or window.contains_hour(hour):
            files.append(path)
    return files


def s3_split(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    if not bucket:
        raise UsageError(f"{uri!r} is not an s3://bucket/prefix URI")
    return bucket, prefix.rstrip("/") + "/" if prefix else ""


def aws_client(service: str) -> Any:
    """A boto3 client honouring AWS_ENDPOINT_URL (moto, local mode) and AWS_DEFAULT_REGION."""
    import boto3

    return boto3.client(service, endpoint_url=env.AWS_ENDPOINT_URL.get(),
                        region_name=env.AWS_DEFAULT_REGION.get())


def s3_keys(client: Any, bucket: str, prefix: str) -> Iterator[str]:
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
    bucket, prefix = s3_split(uri)
    hours = window.hours()
    keys: list[str] = []
    if hours is None:
        keys = [k for k in s3_keys(client, bucket, prefix)
                if k.endswith(".jsonl") and ((h := hour_of(k[len(prefix):])) is None or window.contains_hour(h))]
    else:
        for root in _s3_hour_roots(client, bucket, prefix):
            for h in hours:
                keys += [k for k in s3_keys(client, bucket, f"{root}{h:%Y/%m/%d/%H}/") if k.endswith(".jsonl")]
    return [f"s3://{bucket}/{k}" for k in sorted(keys)]


def read_one(source: str, schema_dict: dict[str, Any], window: Window) -> CaptureData:
    schema = Schema.from_dict(schema_dict)
    if source.startswith("s3://"):
        bucket, _, key = source[len("s3://"):].partition("/")
        body = aws_client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        return read_chunks(chunks(BytesIO(body)), source, schema, window)
    with open(source, "rb") as fh:
        return read_chunks(chunks(fh), source, schema, window)


def cpus() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def read_capture(source: str | Path, schema: Schema, window: Window = Window(),
                 workers: int = 0) -> CaptureData:
    """Read every capture file of the window under a local folder/file or s3:// prefix.

    ``workers`` > 1 parses files in that many processes (0 = one per CPU, at most one per file).
    """
    src = str(source)
    files = list_s3(src, window) if src.startswith("s3://") else [str(p) for p in list_local(Path(src), window)]
    acc = CaptureData(schema)
    workers = min(workers or cpus(), len(files))
    if workers <= 1:
        for f in files:
            acc.merge(read_one(f, schema.to_dict(), window))
        return acc
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for part in pool.map(read_one, files, [schema.to_dict()] * len(files), [window] * len(files)):
            acc.merge(part)
    return acc

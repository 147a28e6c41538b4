"""`mlops batch run --local`: a Batch Transform job of a registered model, on this machine, as SageMaker runs one.

What the transform job does with the model's container, done here against the same container:

1. start the image's `serve` (`serve_local`: the image, or a venv of its requirements) with the variables a
   transform job sets: SAGEMAKER_BATCH=true, SAGEMAKER_MAX_PAYLOAD_IN_MB, SAGEMAKER_BATCH_STRATEGY=MULTI_RECORD;
2. ask `GET /execution-parameters` how many requests it takes at once (MaxConcurrentTransforms);
3. read each input object (a file, or every file under a folder: S3Prefix, in key order), split it into records by
   line (SplitType Line; blank lines are no records) and pack the records into mini-batches of at most
   MaxPayloadInMB (BatchStrategy MultiRecord), at most MaxConcurrentTransforms in flight;
4. join the answers line by line (AssembleWith Line) into `<output>/<relative path>.out`: one line per record, in
   input order. A file's `.out` appears only once the whole file is scored (Batch Transform uploads no partial
   object), and a failed file fails the job, naming the file, its lines and the model's error;
5. capture the job as its DataCaptureConfig does, in the embedded AWS: the inputs and outputs under the data
   bucket's batch prefixes (where the scheduled job reads and writes them) and SageMaker's manifests of both under
   the capture bucket's `batch-datacapture/<endpoint>/{input,output}/yyyy/mm/dd/hh/`, where the drift job reads
   them (`mlops monitor run`, when the stack has a batchTransformSchedule).

Why by hand: the SageMaker SDK's local transform needs a Docker daemon, compose and S3; local mode already runs the
image's serve, so only the client side of the contract is written here (about as long as its description).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import boto3

from mlops.local import aws as local_aws
from mlops.naming import Names
from mlops.serve_local import LocalEndpoint, serve_local
from mlops.settings import StackSettings
from model_code import env
from pipelines.batch import batch_transform_request

MIB = 1024 * 1024
CONTENT_TYPES = ("text/csv", "application/jsonlines")


class BatchError(ValueError):
    """The job cannot run or a file failed: one line naming the file, its lines and the reason."""


@dataclass(frozen=True)
class BatchFile:
    source: Path
    relative: Path
    output: Path
    records: int


@dataclass(frozen=True)
class BatchResult:
    files: tuple[BatchFile, ...]
    mini_batches: int
    seconds: float
    model_package_arn: str
    mode: str  # container or process, as for the endpoint
    capture_uri: str  # the job's capture in the embedded AWS

    @property
    def records(self) -> int:
        return sum(f.records for f in self.files)


def input_files(source: Path) -> list[tuple[Path, Path]]:
    """(file, path relative to the input) for a file, or every file under a folder in key order, hidden ones
    excluded (S3 has no hidden objects, but a local folder has editor and OS leftovers)."""
    if source.is_file():
        return [(source, Path(source.name))]
    if not source.is_dir():
        raise BatchError(f"--input {source}: no such file or folder")
    files = sorted((p for p in source.rglob("*") if p.is_file() and not any(
        part.startswith(".") for part in p.relative_to(source).parts)), key=lambda p: p.relative_to(source).as_posix())
    if not files:
        raise BatchError(f"--input {source}: the folder holds no files")
    return [(p, p.relative_to(source)) for p in files]


def mini_batches(lines: list[tuple[int, bytes]], limit: int, source: Path) -> Iterator[list[tuple[int, bytes]]]:
    """Consecutive records, each list at most `limit` bytes with its newlines (MultiRecord)."""
    batch: list[tuple[int, bytes]] = []
    size = 0
    for number, record in lines:
        if len(record) + 1 > limit:
            raise BatchError(f"{source} line {number}: one record of {len(record)} bytes exceeds MaxPayloadInMB "
                             f"({limit // MIB} MB); raise --max-payload-mb (batchTransformMaxPayloadMb)")
        if batch and size + len(record) + 1 > limit:
            yield batch
            batch, size = [], 0
        batch.append((number, record))
        size += len(record) + 1
    if batch:
        yield batch


def _records(source: Path) -> list[tuple[int, bytes]]:
    """(1-based line number, line) of every non-blank line."""
    data = source.read_bytes()
    return [(i, line) for i, line in enumerate(data.splitlines(), start=1) if line.strip()]


def _score(endpoint: LocalEndpoint, batch: list[tuple[int, bytes]], source: Path, content_type: str,
           accept: str) -> list[bytes]:
    body = b"\n".join(record for _, record in batch) + b"\n"
    status, answer = endpoint.invoke(body, content_type=content_type, accept=accept, timeout=600)
    first, last = batch[0][0], batch[-1][0]
    if status != 200:
        raise BatchError(f"{source} lines {first}-{last}: the model answered {status}: {_reason(answer, batch)}")
    lines = answer.decode("utf-8").splitlines()
    if len(lines) != len(batch):
        hint = " (a CSV header? Batch Transform sends every line as a record: remove it)" \
            if len(lines) == len(batch) - 1 else ""
        raise BatchError(f"{source} lines {first}-{last}: {len(batch)} records but {len(lines)} answer lines{hint}")
    return [line.encode("utf-8") for line in lines]


def _reason(answer: bytes, batch: list[tuple[int, bytes]]) -> str:
    """The model's JSON error, its mini-batch rows given back as the file's line numbers."""
    try:
        error = json.loads(answer)
        message = str(error["message"])
        rows = sorted({row for e in error.get("errors", []) for row in e.get("rows", [])})
    except (ValueError, KeyError, TypeError):
        return answer[:300].decode("utf-8", "replace")
    lines = [batch[row][0] for row in rows if 0 <= row < len(batch)]
    return f"{message}{f' (file lines {lines})' if lines else ''}"


def transform(endpoint: LocalEndpoint, source: Path, target: Path, *, content_type: str, accept: str,
              max_payload_bytes: int, concurrency: int) -> tuple[int, int]:
    """Score one input object into `target` (written whole, or not at all); (records, mini-batches)."""
    batches = list(mini_batches(_records(source), max_payload_bytes, source))
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        answers = list(pool.map(lambda b: _score(endpoint, b, source, content_type, accept), batches))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_bytes(b"".join(line + b"\n" for lines in answers for line in lines))
    os.replace(partial, target)
    return sum(len(b) for b in batches), len(batches)


def run_batch(settings: StackSettings, *, state_dir: Path, source: Path, output: Path, model: str = "champion",
              content_type: str | None = None, accept: str | None = None, max_payload_mb: int | None = None,
              container: str = "auto") -> BatchResult:
    """The stack's transform job request (pipelines/batch.py: content type, payload, strategy) unless given;
    `model` as for `serve --local`."""
    job = batch_transform_request(settings, model_name="local", key_arn="local")
    content_type = content_type or job["TransformInput"]["ContentType"]
    if content_type not in CONTENT_TYPES:
        raise BatchError(f"--content-type {content_type!r}: Batch Transform splits {' or '.join(CONTENT_TYPES)} by "
                         "line")
    payload_mb = max_payload_mb if max_payload_mb is not None else job["MaxPayloadInMB"]
    if not 1 <= payload_mb <= 100:
        raise BatchError(f"--max-payload-mb {payload_mb}: MaxPayloadInMB is 1 to 100")
    files = input_files(source)
    if output.resolve().is_relative_to(source.resolve()) and source.is_dir():
        raise BatchError(f"--output {output} is inside --input {source}: a second run would score its own output")
    started, started_at = time.monotonic(), datetime.now(UTC)
    job_environment = {env.SAGEMAKER_BATCH.name: "true", env.SAGEMAKER_MAX_PAYLOAD_IN_MB.name: str(payload_mb),
                       env.SAGEMAKER_BATCH_STRATEGY.name: {"MultiRecord": "MULTI_RECORD"}[job["BatchStrategy"]]}
    with serve_local(settings, state_dir=state_dir, model=model, port=0, capture=False, container=container,
                     extra_environment=job_environment, purpose="batch") as endpoint:
        status, body = endpoint.get("/execution-parameters")
        concurrency = int(json.loads(body)["MaxConcurrentTransforms"]) if status == 200 else 1
        done: list[BatchFile] = []
        total_batches = 0
        for path, relative in files:
            target = output / relative.with_name(relative.name + ".out")
            records, batches = transform(endpoint, path, target, content_type=content_type,
                                         accept=accept or content_type, max_payload_bytes=payload_mb * MIB,
                                         concurrency=concurrency)
            done.append(BatchFile(path, relative, target, records))
            total_batches += batches
        capture_uri = capture(settings, state_dir, done, started_at)
        return BatchResult(tuple(done), total_batches, time.monotonic() - started, endpoint.package_arn,
                           endpoint.mode, capture_uri)


def capture(settings: StackSettings, state_dir: Path, files: list[BatchFile], started_at: datetime) -> str:
    """The job's data capture in the embedded AWS (see the module's step 5); the capture's S3 URI."""
    server = local_aws.running(state_dir)
    if server is None:
        raise BatchError(f"the embedded AWS of {state_dir} stopped during the batch run")
    names = Names.of(settings)
    data, bucket = names.bucket("data"), names.bucket("capture")
    hour = started_at.strftime("%Y/%m/%d/%H")
    sides = {"input": (settings.batch_transform_input_prefix, lambda f: f.source, lambda f: f.relative.as_posix()),
             "output": (settings.batch_transform_output_prefix, lambda f: f.output,
                        lambda f: f.relative.as_posix() + ".out")}
    with local_aws.environment(server):
        s3 = boto3.client("s3", region_name=settings.region)
        for side, (prefix, local, key) in sides.items():
            for done in files:
                s3.upload_file(str(local(done)), data, prefix + key(done))
            manifest = [{"prefix": f"s3://{data}/{prefix}"}, *(key(done) for done in files)]
            s3.put_object(Bucket=bucket, Key=f"{names.batch_capture_prefix}/{side}/{hour}/{uuid.uuid4()}.json",
                          Body=json.dumps(manifest).encode())
    return f"s3://{bucket}/{names.batch_capture_prefix}"

"""Data capture for ``serve``: SageMaker's capture format, written locally, off the request path.

One JSON line per captured invocation (SageMaker's ``eventVersion`` "0" layout)::

    {"captureData": {
        "endpointInput":  {"observedContentType": "text/csv", "mode": "INPUT",
                           "data": "<request body>", "encoding": "CSV"},
        "endpointOutput": {"observedContentType": "text/csv", "mode": "OUTPUT",
                           "data": "<response body>", "encoding": "CSV"}},
     "eventMetadata": {"eventId": "<uuid4>", "inferenceId": "<InferenceId>", "inferenceTime": "2024-05-01T13:04:05Z"},
     "eventVersion": "0"}

``encoding`` is ``CSV`` or ``JSON`` (the body verbatim, as text) following the content type, or
``BASE64`` for anything else. Files follow SageMaker's S3 layout with the capture folder standing
for ``s3://bucket/prefix``::

    <dir>/<endpoint>/<variant>/yyyy/mm/dd/hh/<MM>-<SS>-<mmm>-<uuid4>.jsonl      (UTC)

A file is written as ``<name>.jsonl.partial`` and renamed to ``<name>.jsonl`` when it is closed
(after ``rotate_seconds``, at the turn of the hour, at shutdown): a reader globbing ``*.jsonl``
sees only complete files. Only successful (200) invocations are captured, as SageMaker does.

The request thread only decides the sample and enqueues (never blocks: a full queue drops the
record and counts it); one writer thread per process serialises, writes and rotates. Write
errors are counted and logged, never raised into a request. Counts are exact: a record is
``written`` once the ``.jsonl`` holding it is renamed into place, else ``failed`` (a failed write
is cut back to the file's last complete record; a file with none is removed), so no ``.partial``
file outlives the writer and ``close`` returns False once any record has failed.

Where SageMaker captures nothing (a serverless endpoint), ``s3_uri`` makes the writer deliver each closed file
itself, to ``<s3_uri>/<endpoint>/<variant>/yyyy/mm/dd/hh/<name>.jsonl``, SageMaker's own layout, so the drift and
quality jobs read it unchanged: a record is then ``written`` once its file is uploaded (and removed here). An upload
that fails is retried at every later rotation and while idle; what is still not uploaded when the writer closes
(after a last attempt) is ``failed``.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import os
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

QUEUE_SIZE = 10_000
_STOP = object()


@dataclass(frozen=True)
class CaptureConfig:
    directory: Path
    sampling_percentage: float = 100.0
    endpoint: str = "local-endpoint"
    variant: str = "AllTraffic"
    rotate_seconds: float = 60.0
    s3_uri: str | None = None
    """s3://bucket/prefix the writer uploads closed files to (MLOPS_CAPTURE_S3_URI); None: they stay local."""


def encoding_of(content_type: str) -> str:
    if content_type == "text/csv":
        return "CSV"
    if content_type == "application/json":
        return "JSON"
    return "BASE64"


def _payload(content_type: str, body: bytes) -> dict[str, str]:
    encoding = encoding_of(content_type)
    if encoding == "BASE64":
        data = base64.b64encode(body).decode("ascii")
    else:
        data = body.decode("utf-8", errors="replace")
    return {"observedContentType": content_type, "data": data, "encoding": encoding}


def make_record(input_type: str, input_body: bytes, output_type: str, output_body: bytes,
                when: datetime, event_id: str | None = None, inference_id: str | None = None) -> dict[str, Any]:
    metadata = {"eventId": event_id or str(uuid.uuid4()), "inferenceTime": when.strftime("%Y-%m-%dT%H:%M:%SZ")}
    if inference_id:  # SageMaker records the InvokeEndpoint InferenceId: ground truth joins on it
        metadata["inferenceId"] = inference_id
    return {
        "captureData": {
            "endpointInput": {**_payload(input_type, input_body), "mode": "INPUT"},
            "endpointOutput": {**_payload(output_type, output_body), "mode": "OUTPUT"},
        },
        "eventMetadata": metadata,
        "eventVersion": "0",
    }


class CaptureWriter:
    """Buffered, rotating writer of capture records. ``offer`` is safe from any thread.

    Counting is exact: ``on_written`` counts a record only once the file holding it is closed and
    renamed to ``*.jsonl`` (the drift job can read it); a record whose write or file fails is counted
    by ``on_failed`` once, and its file is truncated back to its last complete record (or removed when
    nothing complete is left), so no ``.partial`` file is left behind and no partial line is published.
    """

    def __init__(self, config: CaptureConfig, on_written: Callable[[int], None],
                 on_failed: Callable[[int, str], None], on_dropped: Callable[[int], None]) -> None:
        self.config = config
        self._on_written, self._on_failed, self._on_dropped = on_written, on_failed, on_dropped
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_SIZE)
        self._fd: int | None = None
        self._path: Path | None = None
        self._records = 0  # complete records in the open file
        self._size = 0  # bytes of those records
        self._opened_at = 0.0
        self._hour: tuple[int, int, int, int] | None = None
        self._all_ok = True
        self._unpublished: list[tuple[Path, int]] = []  # closed files not yet uploaded (s3_uri), with their records
        self._s3: Any = None
        self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
        self._thread.start()

    def sampled(self) -> bool:
        pct = self.config.sampling_percentage
        return pct >= 100.0 or (pct > 0.0 and random.random() * 100.0 < pct)

    def offer(self, input_type: str, input_body: bytes, output_type: str, output_body: bytes,
              inference_id: str | None = None) -> None:
        """Enqueue one invocation (the caller already sampled it); never blocks, never raises."""
        try:
            self._queue.put_nowait((input_type, input_body, output_type, output_body, datetime.now(UTC), None,
                                    inference_id))
        except queue.Full:
            self._on_dropped(1)

    def close(self, timeout: float) -> bool:
        """Write what is queued and close the current file; False if that did not finish in time or any record
        since the writer started could not be made readable (the caller's exit status says capture lost data)."""
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            return False
        self._thread.join(timeout)
        return not self._thread.is_alive() and self._all_ok

    # --- writer thread ---------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=min(1.0, self.config.rotate_seconds))
            except queue.Empty:
                self._rotate_if_due(datetime.now(UTC))
                if self._unpublished:  # an upload that failed is retried while idle too
                    self._publish()
                continue
            batch = [item]
            while len(batch) < 1000:  # drain what is already queued: one write per batch
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(b is _STOP for b in batch)
            records = [b for b in batch if b is not _STOP]
            if records:
                self._write(records)
            if stop:
                self._close_file()
                if self._unpublished:
                    self._publish()  # the last attempt
                for path, records in self._unpublished:  # what the last attempt could not deliver
                    self._fail(records, f"capture file {path.name} was not uploaded to {self.config.s3_uri}")
                return

    @staticmethod
    def _write_bytes(fd: int, data: bytes) -> None:
        """All of `data` at the end of the file, or OSError (a full disk: ENOSPC, or a short write)."""
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            if written <= 0:
                raise OSError(errno.ENOSPC, "no space written")
            view = view[written:]

    def _write(self, records: list[tuple[Any, ...]]) -> None:
        try:
            data = "".join(json.dumps(make_record(*r), separators=(",", ":")) + "\n" for r in records).encode()
        except (TypeError, ValueError) as exc:
            self._fail(len(records), f"{type(exc).__name__}: {exc}")
            return
        self._rotate_if_due(records[0][4])
        try:
            if self._fd is None:
                self._open(records[0][4])
            assert self._fd is not None
            self._write_bytes(self._fd, data)
        except OSError as exc:
            self._fail(len(records), f"{type(exc).__name__}: {exc}")
            self._discard_tail()
            self._close_file()
            return
        self._records += len(records)
        self._size += len(data)

    def _fail(self, n: int, reason: str) -> None:
        self._all_ok = False
        self._on_failed(n, reason)

    def _open(self, when: datetime) -> None:
        c = self.config
        folder = (c.directory / c.endpoint / c.variant / f"{when:%Y}" / f"{when:%m}" / f"{when:%d}"
                  / f"{when:%H}")
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{when:%M-%S}-{when.microsecond // 1000:03d}-{uuid.uuid4()}.jsonl"
        self._path = folder / name
        self._fd = os.open(self._partial(self._path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._records = self._size = 0
        self._opened_at = time.monotonic()
        self._hour = (when.year, when.month, when.day, when.hour)

    @staticmethod
    def _partial(path: Path) -> Path:
        return path.with_name(path.name + ".partial")

    def _rotate_if_due(self, now: datetime) -> None:
        if self._fd is None:
            return
        hour = (now.year, now.month, now.day, now.hour)
        if hour != self._hour or time.monotonic() - self._opened_at >= self.config.rotate_seconds:
            self._close_file()

    def _discard_tail(self) -> None:
        """Cut the open file back to its last complete record (a failed write may have left part of a line)."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, self._size)
        except OSError as exc:
            self._abandon(f"truncating after a failed write: {type(exc).__name__}: {exc}")

    def _abandon(self, reason: str) -> None:
        """Give the open file up: its records are failed, the file removed."""
        fd, path, records = self._fd, self._path, self._records
        self._fd, self._path, self._records, self._size = None, None, 0, 0
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        if path is not None:
            with contextlib.suppress(OSError):
                self._partial(path).unlink()
        if records:
            self._fail(records, reason)

    def _close_file(self) -> None:
        if self._fd is None or self._path is None:
            return
        fd, path, records = self._fd, self._path, self._records
        if records == 0:  # nothing complete in it: no empty file for the drift job
            self._abandon("")
            return
        self._fd = None  # before close: a failed close must not be retried on an fd number reused by then
        try:
            os.close(fd)
            self._partial(path).rename(path)
        except OSError as exc:
            self._abandon(f"closing {path}: {type(exc).__name__}: {exc}")
            return
        self._path, self._records, self._size = None, 0, 0
        if self.config.s3_uri is None:
            self._on_written(records)
            return
        self._unpublished.append((path, records))
        self._publish()

    def _publish(self) -> None:
        """Upload every closed file not yet delivered, oldest first; keep those that fail for the next rotation."""
        import boto3
        from boto3.exceptions import Boto3Error
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError

        from model_code import env

        assert self.config.s3_uri is not None
        bucket, _, prefix = self.config.s3_uri.removeprefix("s3://").partition("/")
        if self._s3 is None:
            # bounded: an upload must not outlast serve's shutdown timeout, which would leave its records uncounted
            self._s3 = boto3.client("s3", endpoint_url=env.AWS_ENDPOINT_URL.get(),
                                    region_name=env.AWS_DEFAULT_REGION.get(),
                                    config=Config(connect_timeout=5, read_timeout=10,
                                                  retries={"max_attempts": 2, "mode": "standard"}))
        left = []
        for path, records in self._unpublished:
            key = "/".join(p for p in (prefix.strip("/"), path.relative_to(self.config.directory).as_posix()) if p)
            try:
                self._s3.upload_file(str(path), bucket, key)
            except (Boto3Error, BotoCoreError, ClientError, OSError):  # retried at the next rotation
                left.append((path, records))
                continue
            with contextlib.suppress(OSError):
                path.unlink()
            self._on_written(records)
        self._unpublished = left

"""Data capture for ``serve``: SageMaker's capture format, written locally, off the request path.

One JSON line per captured invocation (SageMaker's ``eventVersion`` "0" layout)::

    {"captureData": {
        "endpointInput":  {"observedContentType": "text/csv", "mode": "INPUT",
                           "data": "<request body>", "encoding": "CSV"},
        "endpointOutput": {"observedContentType": "text/csv", "mode": "OUTPUT",
                           "data": "<response body>", "encoding": "CSV"}},
     "eventMetadata": {"eventId": "<uuid4>", "inferenceTime": "2024-05-01T13:04:05Z"},
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
errors are counted and logged, never raised into a request.
"""

from __future__ import annotations

import base64
import json
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

QUEUE_SIZE = 10_000
_STOP = object()


@dataclass(frozen=True)
class CaptureConfig:
    directory: Path
    sampling_percentage: float = 100.0
    endpoint: str = "local-endpoint"
    variant: str = "AllTraffic"
    rotate_seconds: float = 60.0


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
                when: datetime, event_id: str | None = None) -> dict[str, Any]:
    return {
        "captureData": {
            "endpointInput": {**_payload(input_type, input_body), "mode": "INPUT"},
            "endpointOutput": {**_payload(output_type, output_body), "mode": "OUTPUT"},
        },
        "eventMetadata": {"eventId": event_id or str(uuid.uuid4()),
                          "inferenceTime": when.strftime("%Y-%m-%dT%H:%M:%SZ")},
        "eventVersion": "0",
    }


class CaptureWriter:
    """Buffered, rotating writer of capture records. ``offer`` is safe from any thread."""

    def __init__(self, config: CaptureConfig, on_written: Callable[[int], None],
                 on_failed: Callable[[int, str], None], on_dropped: Callable[[int], None]) -> None:
        self.config = config
        self._on_written, self._on_failed, self._on_dropped = on_written, on_failed, on_dropped
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_SIZE)
        self._file: IO[str] | None = None
        self._path: Path | None = None
        self._opened_at = 0.0
        self._hour: tuple[int, int, int, int] | None = None
        self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
        self._thread.start()

    def sampled(self) -> bool:
        pct = self.config.sampling_percentage
        return pct >= 100.0 or (pct > 0.0 and random.random() * 100.0 < pct)

    def offer(self, input_type: str, input_body: bytes, output_type: str, output_body: bytes) -> None:
        """Enqueue one invocation (the caller already sampled it); never blocks, never raises."""
        try:
            self._queue.put_nowait((input_type, input_body, output_type, output_body, datetime.now(UTC)))
        except queue.Full:
            self._on_dropped(1)

    def close(self, timeout: float) -> bool:
        """Write what is queued, close the current file; False if the writer did not finish in time."""
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            return False
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # --- writer thread ---------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=min(1.0, self.config.rotate_seconds))
            except queue.Empty:
                self._rotate_if_due(datetime.now(UTC))
                continue
            batch = [item]
            while len(batch) < 1000:  # drain what is already queued: one write + flush per batch
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
                return

    def _write(self, records: list[tuple[str, bytes, str, bytes, datetime]]) -> None:
        try:
            lines = [json.dumps(make_record(*r), separators=(",", ":")) + "\n" for r in records]
            self._rotate_if_due(records[0][4])
            if self._file is None:
                self._open(records[0][4])
            assert self._file is not None
            self._file.write("".join(lines))
            self._file.flush()
        except (OSError, TypeError, ValueError) as exc:
            self._on_failed(len(records), f"{type(exc).__name__}: {exc}")
            self._close_file()
            return
        self._on_written(len(records))

    def _open(self, when: datetime) -> None:
        c = self.config
        folder = (c.directory / c.endpoint / c.variant / f"{when:%Y}" / f"{when:%m}" / f"{when:%d}"
                  / f"{when:%H}")
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{when:%M-%S}-{when.microsecond // 1000:03d}-{uuid.uuid4()}.jsonl"
        self._path = folder / name
        self._file = open(self._path.with_name(name + ".partial"), "a", encoding="utf-8")  # noqa: SIM115
        self._opened_at = time.monotonic()
        self._hour = (when.year, when.month, when.day, when.hour)

    def _rotate_if_due(self, now: datetime) -> None:
        if self._file is None:
            return
        hour = (now.year, now.month, now.day, now.hour)
        if hour != self._hour or time.monotonic() - self._opened_at >= self.config.rotate_seconds:
            self._close_file()

    def _close_file(self) -> None:
        if self._file is None or self._path is None:
            return
        f, path = self._file, self._path
        self._file, self._path = None, None
        try:
            f.close()
            path.with_name(path.name + ".partial").rename(path)
        except OSError as exc:
            self._on_failed(0, f"closing {path}: {type(exc).__name__}: {exc}")

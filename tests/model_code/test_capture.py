"""Data capture on a failing disk: every record counted exactly once, nothing half-written published."""

from __future__ import annotations

import errno
import json
import re
import threading
from datetime import UTC, datetime
from pathlib import Path

from model_code.capture import CaptureConfig, CaptureWriter

BODY = b"39,State-gov,77516,Bachelors,13"


class Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.written = self.failed = self.dropped = 0
        self.reasons: list[str] = []

    def on_written(self, n: int) -> None:
        with self.lock:
            self.written += n

    def on_failed(self, n: int, reason: str) -> None:
        with self.lock:
            self.failed += n
            self.reasons.append(reason)

    def on_dropped(self, n: int) -> None:
        with self.lock:
            self.dropped += n


def _writer(tmp_path: Path, counts: Counts, rotate: float = 60.0) -> CaptureWriter:
    config = CaptureConfig(tmp_path / "capture", endpoint="e", variant="v", rotate_seconds=rotate)
    return CaptureWriter(config, counts.on_written, counts.on_failed, counts.on_dropped)


def _published(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for p in sorted((tmp_path / "capture").rglob("*.jsonl"))
            for line in p.read_text().splitlines()]


def _records(start: int, n: int) -> list[tuple]:
    when = datetime.now(UTC)
    return [("text/csv", BODY, "text/csv", b"0.5", when, None, f"id-{i}") for i in range(start, start + n)]


def test_a_full_disk_counts_each_record_once_and_leaves_no_partial_file(tmp_path: Path) -> None:
    """The disk fills mid-record: the complete records are published, the rest failed, nothing else.

    The writer's batches are driven directly (its thread stopped first), so which batch meets the full disk
    is fixed; the disk is `_write_bytes` with 5,000 bytes left: a short write, then ENOSPC."""
    counts = Counts()
    writer = _writer(tmp_path, counts)
    assert writer.close(10)  # the thread is gone: the test is the writer thread from here on
    budget = {"bytes": 5_000}
    real = CaptureWriter._write_bytes

    def disk(fd: int, data: bytes) -> None:
        room = budget["bytes"]
        if len(data) > room:
            real(fd, data[:room])
            budget["bytes"] = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        budget["bytes"] -= len(data)
        real(fd, data)

    writer._write_bytes = disk  # type: ignore[method-assign]
    offered = 0
    for _ in range(20):  # batches of 10 until well past the full disk
        writer._write(_records(offered, 10))
        offered += 10
    writer._close_file()
    published = _published(tmp_path)
    assert counts.written + counts.failed == offered == 200 and counts.dropped == 0
    assert counts.written == len(published) > 0 and counts.failed > 0
    assert [r["eventMetadata"]["inferenceId"] for r in published] == [f"id-{i}" for i in range(len(published))]
    assert not list((tmp_path / "capture").rglob("*.partial"))
    assert all("No space left on device" in reason for reason in counts.reasons if reason)
    assert writer.close(1) is False  # records failed: shutdown reports that capture lost data


def test_a_healthy_disk_counts_written_only_once_readable(tmp_path: Path) -> None:
    counts = Counts()
    writer = _writer(tmp_path, counts)
    assert writer.close(10)
    writer._write(_records(0, 25))
    assert counts.written == 0  # still in the open .partial file: the drift job cannot read it yet
    assert list((tmp_path / "capture").rglob("*.partial"))
    writer._close_file()
    assert counts.written == 25 == len(_published(tmp_path)) and counts.failed == 0
    assert not list((tmp_path / "capture").rglob("*.partial"))


def test_the_final_flush_through_offer_and_close(tmp_path: Path) -> None:
    counts = Counts()
    writer = _writer(tmp_path, counts)
    for i in range(30):
        writer.offer("text/csv", BODY, "text/csv", b"0.5", inference_id=f"id-{i}")
    assert writer.close(10) is True
    assert counts.written == 30 == len(_published(tmp_path))
    assert {r["eventMetadata"]["inferenceId"] for r in _published(tmp_path)} == {f"id-{i}" for i in range(30)}


def test_a_final_flush_that_fails_is_reported_by_close(tmp_path: Path) -> None:
    """The shutdown path: records offered, the disk full when the writer flushes them; close() says so."""
    counts = Counts()
    writer = _writer(tmp_path, counts)

    def full(fd: int, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    writer._write_bytes = full  # type: ignore[method-assign]
    for i in range(10):
        writer.offer("text/csv", BODY, "text/csv", b"0.5", inference_id=f"id-{i}")
    assert writer.close(10) is False
    assert (counts.written, counts.failed) == (0, 10)
    assert not [p for p in (tmp_path / "capture").rglob("*") if p.is_file()]


# --- delivering its own files to S3 (a serverless endpoint: SageMaker captures nothing there) ------------------
def _s3_writer(tmp_path: Path, counts: Counts, uri: str) -> CaptureWriter:
    config = CaptureConfig(tmp_path / "capture", endpoint="e", variant="v", s3_uri=uri)
    return CaptureWriter(config, counts.on_written, counts.on_failed, counts.on_dropped)


def test_closed_files_are_uploaded_in_sagemakers_layout_and_removed_here(tmp_path: Path, monkeypatch) -> None:
    import boto3
    from moto import mock_aws

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with mock_aws():
        s3 = boto3.client("s3", region_name="eu-west-1")
        s3.create_bucket(Bucket="cap", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        counts = Counts()
        writer = _s3_writer(tmp_path, counts, "s3://cap/datacapture")
        for record in _records(0, 5):
            writer.offer(*record[:4], inference_id=record[6])
        assert writer.close(10)
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="cap")["Contents"]]
        assert len(keys) == 1 and re.fullmatch(r"datacapture/e/v/\d{4}/\d\d/\d\d/\d\d/[^/]+\.jsonl", keys[0]), keys
        lines = s3.get_object(Bucket="cap", Key=keys[0])["Body"].read().decode().splitlines()
        assert [json.loads(line)["eventMetadata"]["inferenceId"] for line in lines] == [f"id-{i}" for i in range(5)]
        assert (counts.written, counts.failed) == (5, 0)
        assert not list((tmp_path / "capture").rglob("*.jsonl*"))


def test_an_upload_that_never_succeeds_is_failed_at_close_and_kept_here(tmp_path: Path, monkeypatch) -> None:
    from moto import mock_aws

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with mock_aws():  # no bucket: every upload fails
        counts = Counts()
        writer = _s3_writer(tmp_path, counts, "s3://missing/datacapture")
        for record in _records(0, 3):
            writer.offer(*record[:4])
        assert writer.close(10) is False
    assert (counts.written, counts.failed) == (0, 3) and "was not uploaded to s3://missing" in counts.reasons[0]
    assert len(_published(tmp_path)) == 3  # the records are still on disk: nothing lost silently

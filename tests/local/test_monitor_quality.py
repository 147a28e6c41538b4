"""`mlops monitor quality`: the stack's scheduled quality job run once locally, on the embedded AWS, with
the package the stack's endpoint serves (the fixtures of tests/local/test_monitor.py)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import boto3
import pytest

from mlops import monitor, monitor_quality
from mlops.naming import Names
from mlops.settings import StackSettings
from model_code.capture import make_record
from model_code.model import load_model
from problems.adult.synthetic import ADULT, synthesize
from tests.local.test_monitor import T0, Registered, registered, settings, state  # noqa: F401 -- fixtures

FEATURES = ADULT.feature_names


def _write_traffic(capture: Path, truth: Path, stack: StackSettings, rows: int = 120) -> None:
    """Single-row requests in the hour after T0 with inference ids, and labels for all but the last 20."""
    frame = synthesize(rows, seed=61)
    endpoint = Names.of(stack).endpoint
    requests, labels = [], []
    for i in range(rows):
        body = frame[FEATURES].iloc[[i]].to_csv(header=False, index=False).encode()
        record = make_record("text/csv", body, "text/csv", b"0.5", T0 + timedelta(minutes=10), inference_id=f"id-{i}")
        requests.append(json.dumps(record))
        if i < rows - 20:
            labels.append(json.dumps({"groundTruthData": {"data": str(frame[ADULT.label].iloc[i]), "encoding": "CSV"},
                                      "eventMetadata": {"eventId": f"id-{i}"}, "eventVersion": "0"}))
    labels.append(json.dumps({"groundTruthData": {"data": "1", "encoding": "CSV"},
                              "eventMetadata": {"eventId": "never-served"}, "eventVersion": "0"}))
    folder = capture / endpoint / "AllTraffic" / f"{T0:%Y/%m/%d/%H}"
    folder.mkdir(parents=True)
    (folder / "00-00-000-a.jsonl").write_text("\n".join(requests) + "\n")
    later = truth / f"{T0 + timedelta(hours=3):%Y/%m/%d/%H}"
    later.mkdir(parents=True)
    (later / "labels.jsonl").write_text("\n".join(labels) + "\n")


def test_a_local_quality_run_joins_scores_publishes_and_records(state: Path, tmp_path: Path,  # noqa: F811
                                                               settings: StackSettings,  # noqa: F811
                                                               registered: Registered) -> None:  # noqa: F811
    capture, truth = tmp_path / "capture", tmp_path / "truth"
    _write_traffic(capture, truth, settings)
    result = monitor_quality.run(settings, state, capture_dir=capture, ground_truth_dir=truth, start=T0)
    assert (result.window_start, result.metric) == ("2024-05-01T00:00:00Z", "auc")
    assert result.counts["matched"] == 100 and result.counts["missing"] == 20 and result.counts["unknown_id"] == 1
    assert result.labelled_rows == 100 and result.captured_rows == 120 and result.coverage == pytest.approx(100 / 120)
    assert result.bar == settings.quality_bar and result.value is not None
    report = json.loads(Path(result.report).read_text())
    model = load_model(registered.model_dir)
    assert report["inputs"]["model_content_sha256"] == model.artifact["content_sha256"]  # what the endpoint serves
    assert result.degraded == (result.value < settings.quality_bar)
    cloudwatch = boto3.client("cloudwatch", region_name=settings.region, endpoint_url=registered.server.endpoint_url,
                              aws_access_key_id="local", aws_secret_access_key="local")
    names = Names.of(settings)
    listed = cloudwatch.list_metrics(Namespace=names.metrics_namespace, MetricName="PrimaryMetric")["Metrics"]
    assert {"Name": "Metric", "Value": "auc"} in listed[0]["Dimensions"]
    [event] = [e for e in monitor.read_history(state) if e["event"] == "quality"]
    assert event["value"] == result.value and event["counts"] == result.counts


def test_a_missing_ground_truth_folder_or_baseline_is_named(state: Path, tmp_path: Path,  # noqa: F811
                                                           settings: StackSettings) -> None:  # noqa: F811
    with pytest.raises(monitor.MonitorError, match="ground-truth folder .* does not exist"):
        monitor_quality.run(settings, state, capture_dir=tmp_path, ground_truth_dir=tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(monitor.MonitorError, match="run `mlops monitor baseline` first"):
        monitor_quality.run(settings, tmp_path / "no-state", capture_dir=tmp_path, ground_truth_dir=tmp_path / "empty")


def test_the_default_window_is_the_schedules(settings: StackSettings) -> None:  # noqa: F811
    now = T0 + timedelta(days=3, minutes=15)
    start = monitor_quality.schedule_start(settings, now)
    assert start == T0 + timedelta(days=3) - timedelta(hours=settings.quality_label_delay_hours
                                                        + settings.quality_window_hours)

"""`mlops monitor quality`: the stack's scheduled quality job run once locally, on the embedded AWS, with
the package the stack's endpoint serves (the fixtures of tests/local/test_monitor.py)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import boto3
import numpy as np
import pytest

from mlops import monitor, monitor_quality
from mlops.naming import Names
from mlops.settings import StackSettings
from model_code.capture import make_record
from model_code.model import load_model
from problems.adult.synthetic import ADULT, synthesize
from tests.local.test_monitor import (  # noqa: F401 -- fixtures
    T0,
    FakePipeline,
    Registered,
    pipeline,
    registered,
    settings,
    state,
)

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


def _window(capture: Path, truth: Path, stack: StackSettings, hour: int, *, flipped: float, seed: int) -> None:
    """300 rows in 10-row requests captured in hour `hour` after T0, labelled an hour later; a share `flipped`
    of the labels no longer follows the features (a change the model cannot see in its inputs)."""
    frame = synthesize(300, seed=seed)
    flip = np.random.default_rng(seed).random(len(frame)) < flipped
    frame[ADULT.label] = np.where(flip, 1 - frame[ADULT.label], frame[ADULT.label])
    when = T0 + timedelta(hours=hour, minutes=5)
    requests, labels = [], []
    for n in range(0, len(frame), 10):
        part, identity = frame.iloc[n:n + 10], f"h{hour}-{n}"
        body = part[FEATURES].to_csv(header=False, index=False).encode()
        requests.append(json.dumps(make_record("text/csv", body, "text/csv", b"", when, inference_id=identity)))
        labels.append(json.dumps({"groundTruthData": {"data": "\n".join(map(str, part[ADULT.label])),
                                                      "encoding": "CSV"},
                                  "eventMetadata": {"eventId": identity}, "eventVersion": "0"}))
    folder = capture / Names.of(stack).endpoint / "AllTraffic" / f"{when:%Y/%m/%d/%H}"
    folder.mkdir(parents=True)
    (folder / "00-00-000-a.jsonl").write_text("\n".join(requests) + "\n")
    arrived = truth / f"{when + timedelta(hours=1):%Y/%m/%d/%H}"
    arrived.mkdir(parents=True)
    (arrived / "labels.jsonl").write_text("\n".join(labels) + "\n")


def test_the_quality_alarm_fires_on_m_of_n_worse_runs_and_retrains_once(  # noqa: F811
        state: Path, tmp_path: Path, settings: StackSettings, pipeline: FakePipeline) -> None:  # noqa: F811
    """Held-out labels, then three windows where a third of the labels flipped: 0, 1 (OK), 1 (ALARM: a retrain
    with Trigger quality), 1 (stays in ALARM: no second retrain)."""
    capture, truth = tmp_path / "capture", tmp_path / "truth"
    for hour, flipped in enumerate((0.0, 0.35, 0.35, 0.35)):
        _window(capture, truth, settings, hour, flipped=flipped, seed=70 + hour)
    results = []
    for hour in range(4):
        start = T0 + timedelta(hours=hour)
        pipeline.now = start + timedelta(hours=2)
        results.append(monitor_quality.run(settings, state, capture_dir=capture, ground_truth_dir=truth, start=start,
                                           now=start + timedelta(hours=2)))
    assert [r.datapoint for r in results] == [0, 1, 1, 1]
    assert [r.alarm_after for r in results] == ["OK", "OK", "ALARM", "ALARM"]
    assert [r.retrain.action for r in results] == ["none", "none", "started", "none"]
    assert results[2].retrain.status == "Succeeded" and "2 of the last 3 datapoints score worse than the bar" in \
        results[2].retrain.reason
    assert [c["trigger"] for c in pipeline.calls] == ["quality"]
    assert all(r.counts["matched"] == 30 and r.labelled_rows == 300 for r in results)
    status = monitor.status(settings, state, now=T0 + timedelta(hours=6))
    assert status.quality_alarm == "ALARM" and status.quality_values == [r.value for r in results[1:]]

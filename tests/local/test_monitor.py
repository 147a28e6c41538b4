"""The local monitoring loop: baseline from the embedded registry, the stack's scheduled drift job
(its request, run by the local executor) over capture files, the M-of-N alarm, retrain on
OK -> ALARM, the cooldown, missing data and failures.

One small model is trained in a step process and registered once per module (no pipeline run); each
test works on its own copy of the monitor state, on the module's embedded AWS. Retrains go to a
recording fake of `run_local`, which records its runs as the real one does (run.json, on the test's clock).
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from threadpoolctl import threadpool_limits

from mlops import monitor
from mlops.local import aws as local_aws
from mlops.local import drift_job
from mlops.local import pipeline as local_pipeline
from mlops.local.executions import start_execution
from mlops.local.pipeline import LocalRun
from mlops.naming import Names
from mlops.registry import PENDING, Aws, approve, get_package, update_package
from mlops.settings import StackSettings, load_stack
from model_code import baseline as bl
from model_code import drift as dr
from model_code.capture import make_record
from model_code.data import Drift, write_csv
from model_code.guard import check
from model_code.model import load_model
from model_code.preprocess import to_csv_bytes
from pipelines.monitoring import OUTPUT_PATH
from problems.adult.synthetic import ADULT, synthesize
from tests.local.helpers import train_model

FEATURES = ADULT.feature_names
T0 = datetime(2024, 5, 1, 0, 0, tzinfo=UTC)
ROWS_PER_RECORD = 50


@pytest.fixture(scope="module")
def settings() -> StackSettings:
    return dataclasses.replace(
        load_stack("dev"), drift_alarm_datapoints=2, drift_alarm_evaluation_periods=3, retrain_cooldown_hours=24
    )


def _sagemaker(server: local_aws.LocalAws, region: str) -> Any:
    return boto3.client("sagemaker", region_name=region, endpoint_url=server.endpoint_url,
                        aws_access_key_id="local", aws_secret_access_key="local")


def _s3(server: local_aws.LocalAws, region: str) -> Any:
    return boto3.client("s3", region_name=region, endpoint_url=server.endpoint_url,
                        aws_access_key_id="local", aws_secret_access_key="local")


@dataclass
class Registered:
    state: Path
    server: local_aws.LocalAws
    package_arn: str
    model_uri: str
    baseline_uri: str
    model_dir: Path
    snapshot: Path
    """The monitor folder right after `baseline` (monitored.json and the fetched files)."""

    def set_status(self, settings: StackSettings, status: str) -> None:
        """Through mlops.registry, which re-sends the metadata (moto drops what an update omits)."""
        with local_aws.environment(self.server):
            aws = Aws(endpoint_url=self.server.endpoint_url, max_attempts=1)
            if status == "Approved":
                approve(settings, self.package_arn, aws=aws)
            else:
                update_package(get_package(settings, self.package_arn, aws=aws), status=status, aws=aws)

    def register(self, settings: StackSettings, *, group: str | None = None, **metadata: str) -> str:
        properties = {"auc": "0.9000", "mlflow_run_id": "run-1", **metadata}
        return _sagemaker(self.server, settings.region).create_model_package(
            ModelPackageGroupName=group or Names.of(settings).model_package_group,
            InferenceSpecification={
                "Containers": [{"Image": "local", "ModelDataUrl": self.model_uri}],
                "SupportedContentTypes": ["text/csv"],
                "SupportedResponseMIMETypes": ["text/csv"],
            },
            ModelApprovalStatus="PendingManualApproval",
            CustomerMetadataProperties={k: v for k, v in properties.items() if v},
        )["ModelPackageArn"]


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory, settings: StackSettings) -> Iterator[Registered]:
    """The embedded AWS with the stack's buckets and group, and one package registered like the pipeline does."""
    state = tmp_path_factory.mktemp("state")
    work = tmp_path_factory.mktemp("model")
    server = local_aws.start(state, account_id=settings.account_id, region=settings.region)
    try:
        train_frame = synthesize(3000, seed=5)
        write_csv(train_frame, work / "train" / "train.csv")
        write_csv(synthesize(1000, seed=6), work / "validation" / "validation.csv")
        train_model(work, max_iter=40)
        (work / "baseline.json").write_text(
            bl.dumps(bl.compute_baseline(train_frame, ADULT, {"split": "train", "rows": len(train_frame)}))
        )
        with local_aws.environment(server):
            s3 = boto3.client("s3", region_name=settings.region)
            local_pipeline.bootstrap(settings, s3, boto3.client("sagemaker", region_name=settings.region))
            bucket = Names.of(settings).bucket("artifacts")
            s3.upload_file(str(work / "model.tar.gz"), bucket, "pipelines-x/Train/output/model.tar.gz")
            s3.upload_file(str(work / "baseline.json"), bucket, "pipelines-x/Preprocess/baseline/baseline.json")
        registered = Registered(
            state, server, "", f"s3://{bucket}/pipelines-x/Train/output/model.tar.gz",
            f"s3://{bucket}/pipelines-x/Preprocess/baseline/baseline.json", work / "model", state / "snapshot",
        )
        registered.package_arn = registered.register(settings, drift_baseline_uri=registered.baseline_uri)
        monitor.baseline(settings, state, now=T0)
        shutil.copytree(state / "monitor", registered.snapshot, ignore=shutil.ignore_patterns("history.jsonl", ".lock"))
        yield registered
    finally:
        local_aws.stop(state)


@pytest.fixture()
def state(tmp_path: Path, registered: Registered) -> Path:
    """A fresh state folder monitoring the registered package (no history), on the module's embedded AWS."""
    folder = tmp_path / "state"
    shutil.copytree(registered.snapshot, folder / "monitor")
    shutil.copy(registered.state / "aws.json", folder / "aws.json")
    return folder


@pytest.fixture()
def capture(tmp_path: Path) -> Path:
    folder = tmp_path / "capture"
    folder.mkdir()
    return folder


@pytest.fixture(scope="module")
def traffic(registered: Registered) -> dict[str, tuple[list[str], list[str]]]:
    """Request rows (CSV lines) and the model's scores: held-out data and data whose age moved by 15 years."""
    model = load_model(registered.model_dir)
    out = {}
    for name, frame in (("clean", synthesize(600, seed=77)),
                        ("drifted", synthesize(600, seed=78, drift=Drift(mean_shift={"age": 15})))):
        frame = frame[frame["age"].isna() | (frame["age"] <= 100)]  # the endpoint rejects the rest: never captured
        rows = to_csv_bytes(frame[FEATURES], ADULT).decode().split("\n")[1:len(frame) + 1]
        with threadpool_limits(limits=1):
            scores = [f"{s:.6f}" for s in model.predict_proba(frame[FEATURES])]
        out[name] = (rows, scores)
    return out


@pytest.fixture()
def write(capture: Path, settings: StackSettings, traffic) -> Any:
    """write(kind, when): capture records as serve writes them, in SageMaker's folder layout."""

    def write(kind: str, when: datetime) -> Path:
        rows, scores = traffic[kind]
        folder = capture / Names.of(settings).endpoint / "AllTraffic" / f"{when:%Y/%m/%d/%H}"
        folder.mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(0, len(rows), ROWS_PER_RECORD):
            record = make_record("text/csv", "\n".join(rows[i:i + ROWS_PER_RECORD]).encode(), "text/csv",
                                 "\n".join(scores[i:i + ROWS_PER_RECORD]).encode(), when)
            lines.append(json.dumps(record, separators=(",", ":")))
        path = folder / f"{when:%M-%S}-{kind}.jsonl"
        path.write_text("\n".join(lines) + "\n")
        return path

    return write


class FakePipeline:
    """Records `run_local` calls; records each run in its folder as the real one does.

    `now` is when the next run starts; `outcomes` the statuses of the next runs (then Succeeded).
    """

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.now = T0
        self.outcomes: list[str] = []

    def __call__(self, settings: StackSettings, *, state_dir: Path, data: Path | None = None,
                 trigger: str = "manual", **_: Any) -> LocalRun:
        execution_id = f"fake-{len(self.calls) + 1}"
        self.calls.append({"stack": settings.stack, "state_dir": state_dir, "data": data, "trigger": trigger})
        status = self.outcomes.pop(0) if self.outcomes else "Succeeded"
        run = LocalRun(execution_id=execution_id, stack=settings.stack, status=status, started=self.now.isoformat(),
                       seconds=1.0, steps=[], trigger=trigger,
                       package_arn=f"arn:aws:sagemaker:eu-west-1:123456789012:model-package/x/{len(self.calls)}"
                       if status == "Succeeded" else "")
        folder = state_dir / "runs" / execution_id
        folder.mkdir(parents=True)
        (folder / "run.json").write_text(json.dumps(dataclasses.asdict(run)))
        return run


@pytest.fixture()
def pipeline(monkeypatch: pytest.MonkeyPatch) -> FakePipeline:
    fake = FakePipeline()
    monkeypatch.setattr(local_pipeline, "run_local", fake)
    return fake


def hour(n: float) -> datetime:
    return T0 + timedelta(hours=n)


# --- contracts and the rule ----------------------------------------------------------------------


def test_the_drift_jobs_contracts_are_the_ones_model_code_writes() -> None:
    assert (drift_job.REPORT_FORMAT, drift_job.REPORT_FORMAT_VERSION) == (dr.REPORT_FORMAT, dr.REPORT_FORMAT_VERSION)
    assert (drift_job.REPORT_JSON, drift_job.REPORT_HTML) == (dr.REPORT_JSON, dr.REPORT_HTML)
    assert monitor.BASELINE_FORMAT == bl.BASELINE_FORMAT


def test_the_alarm_rule_is_m_of_the_last_n_with_missing_data_not_breaching(settings: StackSettings) -> None:
    rule = monitor.AlarmRule.of(settings)
    assert (rule.datapoints, rule.evaluation_periods, rule.cooldown) == (2, 3, timedelta(hours=24))
    assert rule.evaluate([1]) == ("OK", 1)
    assert rule.evaluate([1, 1]) == ("ALARM", 2)
    assert rule.evaluate([1, None, 1]) == ("ALARM", 2)
    assert rule.evaluate([1, 1, 0, 0]) == ("OK", 1)  # only the last 3 count
    assert rule.evaluate([1, None, None]) == ("OK", 1)
    assert rule.evaluate([None, None, None]) == ("OK", 0)
    assert monitor.AlarmRule(1, 1, timedelta(hours=1)).evaluate([1, 0]) == ("OK", 0)


# --- baseline --------------------------------------------------------------------------------------


def _served(registered: Registered, settings: StackSettings) -> str:
    """The model package the stack's endpoint serves in the embedded AWS, resolved as the drift job does."""
    from model_code.endpoint_source import resolve

    return resolve(_sagemaker(registered.server, settings.region), Names.of(settings).endpoint).package_arn


def test_baseline_fetches_the_drift_baseline_and_points_the_endpoint_at_the_package(
    registered: Registered, settings: StackSettings, tmp_path: Path
) -> None:
    record = json.loads((registered.snapshot / "monitored.json").read_text())
    assert record["package_arn"] == registered.package_arn
    assert record["selected_because"] == "latest registered (none approved)"
    assert record["baseline_uri"] == registered.baseline_uri and record["model_uri"] == registered.model_uri
    assert record["baseline_path"] == "1/baseline.json"
    assert record["mlflow_run_id"] == "run-1" and record["approval_status"] == "PendingManualApproval"
    assert json.loads((registered.snapshot / "1" / "baseline.json").read_text())["format"] == bl.BASELINE_FORMAT
    assert _served(registered, settings) == registered.package_arn

    # A newer registered package wins; an approved one wins over newer pending ones.
    state = tmp_path / "s"
    state.mkdir()
    shutil.copy(registered.state / "aws.json", state / "aws.json")  # the same embedded AWS
    newer = registered.register(settings, drift_baseline_uri=registered.baseline_uri)
    try:
        chosen = monitor.baseline(settings, state, now=T0)
        assert (chosen.package_arn, chosen.version) == (newer, 2)
        assert chosen.baseline_path == state / "monitor" / "2" / "baseline.json" and chosen.baseline_path.is_file()
        assert _served(registered, settings) == newer
        registered.set_status(settings, "Approved")
        chosen = monitor.baseline(settings, state, now=T0)
        assert (chosen.package_arn, chosen.selected_because) == (registered.package_arn, "latest approved")
        assert monitor.load_monitored(state) == chosen and _served(registered, settings) == registered.package_arn
        events = monitor.read_history(state)
        assert [(e["event"], e["version"]) for e in events] == [("baseline", 2), ("baseline", 1)]
    finally:
        registered.set_status(settings, PENDING)
        with local_aws.environment(registered.server):
            aws = Aws(endpoint_url=registered.server.endpoint_url, max_attempts=1)
            update_package(get_package(settings, newer, aws=aws), status="Rejected", aws=aws)
        monitor.baseline(settings, registered.state, now=T0)  # the endpoint serves the module's package again
    assert _served(registered, settings) == registered.package_arn


def test_baseline_names_what_is_missing(registered: Registered, settings: StackSettings, tmp_path: Path) -> None:
    with pytest.raises(monitor.MonitorError, match=r"embedded AWS of .* is not running .*mlops pipeline run --local"):
        monitor.baseline(settings, tmp_path / "nothing")

    state = tmp_path / "s"
    state.mkdir()
    shutil.copy(registered.state / "aws.json", state / "aws.json")
    qa = dataclasses.replace(settings, stack="qa")
    group = Names.of(qa).model_package_group
    with pytest.raises(monitor.MonitorError, match=f"no registered model to monitor: model package group {group} .* not found"):
        monitor.baseline(qa, state)
    _sagemaker(registered.server, settings.region).create_model_package_group(ModelPackageGroupName=group)
    with pytest.raises(monitor.MonitorError, match=f"no registered model in group {group} of stack qa"):
        monitor.baseline(qa, state)
    missing = registered.baseline_uri.replace("baseline.json", "gone.json")
    arn = registered.register(qa, group=group, drift_baseline_uri=missing)
    with pytest.raises(monitor.MonitorError, match=f"drift baseline of model package {arn} {missing} could not be "
                                                   "fetched from the embedded AWS: 404"):
        monitor.baseline(qa, state)
    arn = registered.register(qa, group=group)
    with pytest.raises(monitor.MonitorError, match=rf"model package {arn} has no drift baseline: "
                                                   r"CustomerMetadataProperties\['drift_baseline_uri'\] is missing"):
        monitor.baseline(qa, state)
    assert not (state / "monitor" / "monitored.json").exists()


# --- run -------------------------------------------------------------------------------------------


def test_held_out_traffic_is_no_drift(state: Path, capture: Path, settings: StackSettings, write, pipeline,
                                      registered: Registered) -> None:
    write("clean", hour(0.5))
    write("drifted", hour(-0.5))  # before the window: the job reads only the last driftWindowHours
    result = monitor.run(settings, state, capture, now=hour(1))
    point = result.datapoint
    assert (point.value, point.rows, point.features_drifted) == (0, 600, [])
    assert (point.window_start, point.window_end) == ("2024-05-01T00:00:00Z", "2024-05-01T01:00:00Z")
    assert (result.alarm_before, result.alarm_after, result.evaluated) == ("OK", "OK", [0])
    assert result.retrain.action == "none" and pipeline.calls == []
    job = state / "monitor" / "reports" / point.id / "steps" / drift_job.STEP
    assert Path(point.report) == job / OUTPUT_PATH.lstrip("/") / "drift_report.json" and Path(point.report_html).is_file()
    report = json.loads(Path(point.report).read_text())
    assert report["status"] == "ok" and report["prediction"]["drifted"] is False
    # The schedule's job: the baseline and the model of what the endpoint serves, the capture from S3.
    assert point.package_arn == report["baseline"]["package_arn"] == _served(registered, settings)
    assert report["prediction_baseline"]["source"] == "model"
    assert report["input"]["uri"] == f"s3://{Names.of(settings).bucket('capture')}/datacapture/{Names.of(settings).endpoint}"
    assert point.metrics_published > 0
    # SageMaker uploads the output folder, which holds the report and nothing the job downloaded.
    artifacts = Names.of(settings).bucket("artifacts")
    listed = _s3(registered.server, settings.region).list_objects_v2(
        Bucket=artifacts, Prefix=f"monitoring/{Names.of(settings).endpoint}/{point.id}/")
    assert sorted(o["Key"].rsplit("/", 1)[1] for o in listed["Contents"]) == ["drift_report.html", "drift_report.json"]
    [event] = monitor.read_history(state)
    assert event["event"] == "datapoint" and event["value"] == 0 and event["alarm_after"] == "OK"


def test_the_alarm_retrains_once_per_state_change_and_respects_the_cooldown(
    state: Path, capture: Path, settings: StackSettings, write, pipeline, tmp_path: Path
) -> None:
    data = tmp_path / "new-data.csv"
    data.write_text("new data\n")

    def step(kind: str, h: float) -> monitor.MonitorRun:
        write(kind, hour(h - 0.5))
        pipeline.now = hour(h)
        return monitor.run(settings, state, capture, now=hour(h), data=data)

    first = step("drifted", 1)
    assert first.datapoint.value == 1 and "age" in first.datapoint.features_drifted
    assert (first.alarm_after, first.breaching, first.retrain.action) == ("OK", 1, "none")

    second = step("drifted", 2)
    assert (second.alarm_before, second.alarm_after, second.evaluated) == ("OK", "ALARM", [1, 1])
    assert second.retrain.action == "started" and second.retrain.status == "Succeeded"
    assert second.retrain.execution_id == "fake-1" and second.retrain.triggered_at == "2024-05-01T02:00:00Z"
    assert pipeline.calls == [{"stack": "dev", "state_dir": state, "data": data, "trigger": "drift"}]

    third = step("drifted", 3)
    assert (third.alarm_before, third.alarm_after, third.retrain.action) == ("ALARM", "ALARM", "none")
    assert "a retrain starts only when the alarm enters ALARM" in third.retrain.reason
    assert step("clean", 4).alarm_after == "ALARM"  # [1, 1, 0]: still 2 of 3
    back = step("clean", 5)
    assert (back.alarm_before, back.alarm_after, back.evaluated) == ("ALARM", "OK", [1, 0, 0])

    assert step("drifted", 6).alarm_after == "OK"
    again = step("drifted", 7)
    assert (again.alarm_before, again.alarm_after) == ("OK", "ALARM")
    assert again.retrain.action == "skipped"
    assert again.retrain.reason == ("cooldown: fake-1 (drift) started at 2024-05-01T02:00:00+00:00; "
                                    "the next automatic retrain is allowed after 2024-05-02T02:00:00+00:00")
    assert again.retrain.next_allowed == "2024-05-02T02:00:00Z"
    assert len(pipeline.calls) == 1

    step("clean", 8)
    assert step("clean", 9).alarm_after == "OK"
    # Past the cooldown the next OK -> ALARM retrains; each window is the schedule's last hour.
    assert step("drifted", 26.5).datapoint.window_start == "2024-05-02T01:30:00Z"
    late = step("drifted", 27)
    assert (late.alarm_before, late.alarm_after, late.retrain.action) == ("OK", "ALARM", "started")
    assert late.retrain.execution_id == "fake-2" and len(pipeline.calls) == 2

    status = monitor.status(settings, state, now=hour(30))
    assert status.monitored is not None and status.monitored.version == 1
    assert [p.value for p in status.datapoints] == [0, 1, 1] and status.alarm == "ALARM"
    assert status.alarm_since == "2024-05-02T03:00:00Z"
    assert status.last_retrain is not None
    assert (status.last_retrain.execution_id, status.last_retrain.status) == ("fake-2", "Succeeded")
    assert status.next_retrain_allowed == hour(27 + 24)
    assert status.cooldown_remaining == timedelta(hours=21)
    printed = json.loads(json.dumps(monitor.as_dict(status)))
    assert printed["cooldown_remaining"] == 21 * 3600 and printed["next_retrain_allowed"] == "2024-05-03T03:00:00Z"
    assert printed["monitored"]["baseline_path"] == str(state / "monitor" / "1" / "baseline.json")
    assert printed["rule"] == {"datapoints": 2, "evaluation_periods": 3, "cooldown": 24 * 3600, "breach": "flag drift"}
    events = [e["event"] for e in monitor.read_history(state)]
    assert events.count("datapoint") == 11 and events.count("retrain") == events.count("retrain_result") == 2


def test_an_empty_window_is_a_missing_datapoint(state: Path, capture: Path, settings: StackSettings, write,
                                                 pipeline) -> None:
    empty = monitor.run(settings, state, capture, now=hour(1))
    assert (empty.datapoint.value, empty.datapoint.rows, empty.alarm_before, empty.alarm_after) == (None, 0, "OK", "OK")
    assert empty.retrain.action == "none"
    assert json.loads(Path(empty.datapoint.report).read_text())["status"] == "no_data"

    write("drifted", hour(1.5))
    assert monitor.run(settings, state, capture, now=hour(2), retrain=False).alarm_after == "OK"
    write("drifted", hour(2.5))
    fired = monitor.run(settings, state, capture, now=hour(3), retrain=False)
    assert (fired.alarm_after, fired.retrain.action) == ("ALARM", "skipped")
    assert "retraining is disabled" in fired.retrain.reason
    # Missing data never breaches: [1, 1, None] keeps the alarm, [1, None, None] clears it.
    held = monitor.run(settings, state, capture, now=hour(4))
    assert (held.datapoint.value, held.alarm_before, held.alarm_after) == (None, "ALARM", "ALARM")
    cleared = monitor.run(settings, state, capture, now=hour(5))
    assert (cleared.evaluated, cleared.alarm_after) == ([1, None, None], "OK")
    assert pipeline.calls == []
    status = monitor.status(settings, state, now=hour(5))
    assert [p.missing for p in status.datapoints] == [False, True, True]
    assert status.last_retrain is None and status.cooldown_remaining == timedelta(0)


def _record_run(state: Path, execution_id: str, started: datetime, status: str, trigger: str, stack: str = "dev") -> None:
    """A run folder as run_local leaves it."""
    run = LocalRun(execution_id=execution_id, stack=stack, status=status, started=started.isoformat(), seconds=1.0,
                   steps=[], trigger=trigger)
    (state / "runs" / execution_id).mkdir(parents=True)
    (state / "runs" / execution_id / "run.json").write_text(json.dumps(dataclasses.asdict(run)))


def test_the_cooldown_counts_the_runs_automatic_successes_even_without_history(
    state: Path, capture: Path, settings: StackSettings, write, pipeline
) -> None:
    # None of these holds a retrain back: a failed automatic run, a manual one, one of another stack,
    # one outside the window, and one recorded before runs carried their trigger (all were manual).
    _record_run(state, "failed", hour(0.25), "Failed", "drift")
    _record_run(state, "manual", hour(0.5), "Succeeded", "manual")
    _record_run(state, "qa", hour(0.5), "Succeeded", "drift", stack="qa")
    _record_run(state, "old", hour(-30), "Succeeded", "new-data")
    _record_run(state, "legacy", hour(0.5), "Succeeded", "drift")
    legacy = state / "runs" / "legacy" / "run.json"
    legacy.write_text(json.dumps({k: v for k, v in json.loads(legacy.read_text()).items() if k != "trigger"}))
    assert monitor.status(settings, state, now=hour(1)).cooldown_remaining == timedelta(0)
    _record_run(state, "20240501-000000-abcdef", hour(0.5), "Succeeded", "new-data")
    assert monitor.status(settings, state, now=hour(1)).cooldown_remaining == timedelta(hours=23, minutes=30)
    for h in (1, 2):
        write("drifted", hour(h - 0.5))
        result = monitor.run(settings, state, capture, now=hour(h))
    assert result.alarm_after == "ALARM" and result.retrain.action == "skipped"
    assert result.retrain.reason == ("cooldown: 20240501-000000-abcdef (new-data) started at 2024-05-01T00:30:00+00:00; "
                                     "the next automatic retrain is allowed after 2024-05-02T00:30:00+00:00")
    assert pipeline.calls == []
    assert monitor.status(settings, state, now=hour(2)).cooldown_remaining == timedelta(hours=22, minutes=30)


def test_a_failed_local_retrain_does_not_block_the_next_one_a_succeeded_one_does(
    state: Path, capture: Path, settings: StackSettings, write, pipeline
) -> None:
    pipeline.outcomes = ["Failed", "Succeeded"]

    def step(kind: str, h: float) -> monitor.MonitorRun:
        write(kind, hour(h - 0.5))
        pipeline.now = hour(h)
        return monitor.run(settings, state, capture, now=hour(h))

    step("drifted", 1)
    failed = step("drifted", 2)
    assert (failed.retrain.action, failed.retrain.status, failed.retrain.execution_id) == ("started", "Failed", "fake-1")
    assert monitor.status(settings, state, now=hour(2)).cooldown_remaining == timedelta(0)
    for kind, h in (("clean", 3), ("clean", 4), ("drifted", 5)):
        step(kind, h)
    retried = step("drifted", 6)  # 4 h after the failed retrain, well within its cooldown
    assert (retried.alarm_before, retried.alarm_after) == ("OK", "ALARM")
    assert (retried.retrain.action, retried.retrain.status, retried.retrain.execution_id) == ("started", "Succeeded", "fake-2")
    for kind, h in (("clean", 7), ("clean", 8), ("drifted", 9)):
        step(kind, h)
    blocked = step("drifted", 10)
    assert (blocked.alarm_before, blocked.alarm_after, blocked.retrain.action) == ("OK", "ALARM", "skipped")
    assert blocked.retrain.reason.startswith("cooldown: fake-2 (drift) started at 2024-05-01T06:00:00+00:00")
    assert [c["trigger"] for c in pipeline.calls] == ["drift", "drift"]
    assert monitor.status(settings, state, now=hour(10)).cooldown_remaining == timedelta(hours=20)


def test_a_retrain_without_a_result_counts_as_executing(state: Path, settings: StackSettings) -> None:
    """The monitor died during a retrain (or it is still running): the history holds no result."""
    history = state / "monitor" / "history.jsonl"
    history.write_text(json.dumps({"event": "retrain", "stack": "dev", "datapoint": "p1",
                                   "triggered_at": "2024-05-01T01:00:00Z", "data": ""}) + "\n")
    status = monitor.status(settings, state, now=hour(3))
    assert (status.next_retrain_allowed, status.cooldown_remaining) == (hour(25), timedelta(hours=22))
    with history.open("a") as out:
        out.write(json.dumps({"event": "retrain_result", "stack": "dev", "datapoint": "p1", "execution_id": "",
                              "status": "Error", "package_arn": "", "failure": "OSError: disk full"}) + "\n")
    assert monitor.status(settings, state, now=hour(3)).next_retrain_allowed is None


def test_the_monitor_and_the_guard_step_agree_on_the_same_runs(registered: Registered,
                                                              settings: StackSettings) -> None:
    """Each local run is an execution of the embedded AWS; at each start both rules judge a drift retrain."""
    names = Names.of(settings)
    sagemaker = _sagemaker(registered.server, settings.region)
    definition = json.dumps({"Version": "2020-12-01", "Parameters": [], "Steps": []})
    runs = [("manual", "Succeeded"), ("drift", "Failed"), ("drift", "Succeeded"), ("new-data", "Succeeded")]
    proceeds = []
    for trigger, outcome in runs:
        arn = start_execution(sagemaker, names.pipeline, definition, names.execution_role_arn, {"Trigger": trigger})
        started = sagemaker.describe_pipeline_execution(PipelineExecutionArn=arn)["CreationTime"]
        verdict = check(sagemaker, names.pipeline, arn, "drift", settings.retrain_cooldown_hours)
        # The monitor's clock has whole seconds: the next one, before which nothing else started.
        status = monitor.status(settings, registered.state, now=started + timedelta(seconds=1))
        assert status.next_retrain_allowed == verdict.until
        assert (status.cooldown_remaining == timedelta(0)) == verdict.proceed
        proceeds.append(verdict.proceed)
        _record_run(registered.state, arn.rsplit("/", 1)[-1], started, outcome, trigger)
    assert proceeds == [True, True, True, False]


def test_a_failed_drift_job_names_its_stderr_and_report_and_is_retried(
    state: Path, capture: Path, settings: StackSettings, write
) -> None:
    write("clean", hour(0.5))
    bad = capture / Names.of(settings).endpoint / "AllTraffic" / "2024/05/01/00" / "bad.jsonl"
    bad.write_text("this is not a capture record\n")
    with pytest.raises(monitor.MonitorError) as failure:
        monitor.run(settings, state, capture, now=hour(1))
    message = str(failure.value)
    assert message.startswith(f"drift job {Names.of(settings).drift_job_prefix}-")
    assert "exit code 1" in message and "not a SageMaker data-capture record" in message
    assert "bad.jsonl line 1" in message and "drift_report.json (not written)" in message
    assert [e["event"] for e in monitor.read_history(state)] == ["drift_failed"]
    assert monitor.status(settings, state).last_failure is not None

    bad.unlink()
    retried = monitor.run(settings, state, capture, now=hour(1) + timedelta(minutes=5))
    assert retried.datapoint.window_start == "2024-05-01T00:05:00Z"  # the schedule's window: the last hour
    assert retried.datapoint.rows == 600
    assert monitor.status(settings, state).last_failure is None


def test_run_names_what_is_missing(state: Path, capture: Path, settings: StackSettings, tmp_path: Path,
                                   write) -> None:
    with pytest.raises(monitor.MonitorError, match=r"capture folder .*state/capture does not exist"):
        monitor.run(settings, state, now=hour(1))  # the default: the local endpoint's <state>/capture
    with pytest.raises(monitor.MonitorError, match=r"no monitored model in .*: run `mlops monitor baseline` first"):
        monitor.run(settings, tmp_path / "empty", capture, now=hour(1))
    with pytest.raises(monitor.MonitorError, match=r"capture folder .*nowhere does not exist"):
        monitor.run(settings, state, tmp_path / "nowhere", now=hour(1))
    with pytest.raises(monitor.MonitorError, match=r"retrain data .*gone.csv: no such file or folder"):
        monitor.run(settings, state, capture, now=hour(1), data=tmp_path / "gone.csv")
    with pytest.raises(monitor.MonitorError, match="monitors stack dev, not qa"):
        monitor.run(dataclasses.replace(settings, stack="qa"), state, capture, now=hour(1))
    monitor.run(settings, state, capture, now=hour(2))
    with pytest.raises(monitor.MonitorError, match=r"now \(2024-05-01T01:00:00Z\) is not after the end of the "
                                                   r"previous window \(2024-05-01T02:00:00Z\)"):
        monitor.run(settings, state, capture, now=hour(1))
    with open(state / "monitor" / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        with pytest.raises(monitor.MonitorError, match="another `mlops monitor` is running"):
            monitor.run(settings, state, capture, now=hour(3))
    (state / "aws.json").unlink()
    with pytest.raises(monitor.MonitorError, match=r"the drift job reads the endpoint and its capture from AWS: "
                                                   r"the embedded AWS of .* is not running"):
        monitor.run(settings, state, capture, now=hour(3))


def test_the_job_publishes_drift_metrics_and_resolves_the_endpoint_at_run_time(
    state: Path, capture: Path, settings: StackSettings, registered: Registered, write
) -> None:
    write("drifted", hour(0.5))
    result = monitor.run(settings, state, capture, now=hour(1))
    assert result.datapoint.metrics_published > 0
    names = Names.of(settings)
    cloudwatch = boto3.client("cloudwatch", region_name=settings.region, endpoint_url=registered.server.endpoint_url,
                              aws_access_key_id="local", aws_secret_access_key="local")
    metrics = cloudwatch.list_metrics(Namespace=names.metrics_namespace, MetricName="DriftDetected")["Metrics"]
    assert {"Name": "Endpoint", "Value": names.endpoint} in metrics[0]["Dimensions"]

    # With no endpoint (an embedded AWS restarted since `monitor baseline`) the job names it and records nothing.
    sagemaker = _sagemaker(registered.server, settings.region)
    sagemaker.delete_endpoint(EndpointName=names.endpoint)
    try:
        with pytest.raises(monitor.MonitorError, match=f"resolving what endpoint {names.endpoint} serves"):
            monitor.run(settings, state, capture, now=hour(2))
    finally:
        monitor.baseline(settings, registered.state, now=T0)
    assert [e["event"] for e in monitor.read_history(state)] == ["datapoint", "drift_failed"]


def test_status_before_anything_ran(settings: StackSettings, tmp_path: Path) -> None:
    status = monitor.status(settings, tmp_path)
    assert (status.monitored, status.datapoints, status.alarm, status.last_retrain) == (None, [], "OK", None)
    assert status.cooldown_remaining == timedelta(0) and status.next_retrain_allowed is None
    assert status.rule == monitor.AlarmRule(2, 3, timedelta(hours=24))


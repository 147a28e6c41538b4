"""`mlops monitor baseline|run|status`: the drift alarm loop of local mode.

In AWS the loop is: the scheduled drift job publishes `DriftDetected` (0/1) to CloudWatch
(namespace `Names.metrics_namespace`, dimension `Endpoint`); an alarm goes to ALARM when M of the
last N datapoints breach (missing data = not breaching); EventBridge's "CloudWatch Alarm State
Change" rule starts the training pipeline when the alarm enters ALARM, behind a cooldown guard (at
most one retrain per cooldown window). Locally the same steps run on this machine, with the same
settings:

- the drift job is the stack's scheduled one: `pipelines.monitoring.drift_job_request`, run in the image
  by the local executor over the capture the local endpoint writes (default `<state>/capture`;
  SageMaker's layout `<capture>/<endpoint>/<variant>/yyyy/mm/dd/hh/*.jsonl`: when `<capture>/<stack's
  endpoint name>/` exists that folder is the endpoint's capture, else `<capture>` itself is), delivered
  to the embedded S3 first; it resolves the baseline of the package the endpoint serves and publishes
  the CloudWatch metrics to the embedded AWS (mlops/local/drift_job.py says what stands in for AWS);
- the alarm rule is `driftAlarmDatapoints` (M) of `driftAlarmEvaluationPeriods` (N);
- the retrain is `mlops.local.pipeline.run_local`, guarded by `retrainCooldownHours`.

Periods and datapoints
----------------------
One `run` = one tick of the drift schedule = one datapoint. Its window is the schedule's:
`[now - driftWindowHours, now)`. Run it once per `driftWindowHours` as the schedule does: runs closer
together evaluate overlapping windows, as a schedule faster than its window would in AWS. A window
without captured rows is a *missing* datapoint (`value` None): it never breaches, and, like
CloudWatch's `treat_missing_data=notBreaching`, it can let an ALARM clear when it pushes a breaching
datapoint out of the last N. Periods in which the loop did not run at all are not invented: the last
N datapoints are the last N runs.

A failed drift job records no datapoint (a `drift_failed` event instead); the error names the job,
its exit code, its log tail and the report path.

Alarm and retrain
-----------------
The alarm state after each datapoint is ALARM when at least M of the last N datapoints are 1, else OK
(no INSUFFICIENT_DATA: missing data is not breaching). A retrain starts only on a state change into
ALARM (what EventBridge delivers), never while the alarm stays in ALARM, and only when the cooldown
allows it. The cooldown is the pipeline's CooldownGuard rule itself (`model_code.guard.decide`),
applied to the local runs as the guard step sees them: a drift retrain starting now stops when an
automatically triggered run started within the last `retrainCooldownHours` and is still running or
succeeded; failed runs and manual ones do not count. The runs are the run folders' `run.json`
(`<state>/runs/<id>/`: trigger, start, real outcome), so a run is honoured even if the monitor's
history was reset, plus a retrain the history started whose result it does not hold yet (running,
or its monitor died), counted as Executing, as the embedded AWS reports it. Retrains run with
`Trigger=drift`, as EventBridge starts them, so the guard step inside the run applies the same rule.
An alarm skipped by the cooldown does not start a retrain later on its own: the alarm has to clear
and fire again (as in AWS, where the state change event is gone).

State (under `<state>/monitor/`)
--------------------------------
- `monitored.json`: the monitored package (ARN, version, approval status, why it was chosen,
  S3 URIs, the baseline's local path relative to `monitor/`, MLflow run id, baseline digest); the
  stack's endpoint in the embedded AWS serves it.
- `<package version>/baseline.json`: the package's drift baseline, fetched and checked by `baseline`.
- `history.jsonl`: one JSON object per line, append-only, `event` one of `baseline`, `datapoint`
  (window, value, rows, features drifted, report paths, alarm before/after, retrain decision),
  `drift_failed`, `retrain` (written before the pipeline starts) and `retrain_result`.
- `reports/<datapoint id>/steps/DriftJob/`: each drift job's folder as the executor lays it out
  (`logs.txt`, `opt/ml/processing/output/drift/drift_report.json|.html`), also uploaded to
  `s3://<artifacts>/monitoring/<endpoint>/<datapoint id>/` as SageMaker uploads a job's output.
- `.lock`: held by `baseline` and `run`, so two loops never trigger two retrains.

Errors are `MonitorError` (a ValueError), one message naming what is missing or failed. Time is
injectable (`now=`) everywhere: nothing here sleeps or reads the clock twice.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from mlops.local import aws as local_aws
from mlops.local import drift_job
from mlops.naming import Names
from mlops.registry import APPROVED, REJECTED, Aws, ModelPackage, ReleaseError, get_package, list_packages
from mlops.settings import StackSettings
from model_code import guard

MONITOR_DIR = "monitor"
CAPTURE_DIR = "capture"
"""`<state>/capture`: the local endpoint's capture root, the default input of `run`."""
MONITORED_FILE = "monitored.json"
HISTORY_FILE = "history.jsonl"
LOCK_FILE = ".lock"
RUN_RECORD = "run.json"
"""`<state>/runs/<execution id>/run.json`: a local run's record (mlops/local/pipeline.py)."""
BASELINE_FILE = "baseline.json"

# The drift baseline's contract (model_code/baseline.py; a test keeps them equal).
BASELINE_FORMAT = "mlops-stack/drift-baseline"

OK = "OK"
ALARM = "ALARM"

STARTED, SKIPPED, NONE = "started", "skipped", "none"
TRIGGER = guard.DRIFT
"""The Trigger parameter of the retrains the monitor starts, as EventBridge's drift rule passes it."""


class MonitorError(ValueError):
    """The monitoring loop cannot proceed; the message names what is missing or failed."""


# --- time -----------------------------------------------------------------------------------------


def _utc(now: datetime | None) -> datetime:
    """`now` (naive = UTC), or the clock; whole seconds, as the capture's inferenceTime has."""
    t = datetime.now(UTC) if now is None else now
    t = t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    return t.replace(microsecond=0)


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(value: str, where: str) -> datetime:
    try:
        t = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise MonitorError(f"{where}: {value!r} is not an ISO 8601 time") from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


# --- records ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlarmRule:
    """The drift alarm of a stack: M of N datapoints, and the retrain cooldown."""

    datapoints: int
    evaluation_periods: int
    cooldown: timedelta
    breach: str = "flag drift"
    """What a breaching datapoint says, in the rule's messages."""

    @classmethod
    def of(cls, settings: StackSettings) -> AlarmRule:
        return cls(
            settings.drift_alarm_datapoints,
            settings.drift_alarm_evaluation_periods,
            timedelta(hours=settings.retrain_cooldown_hours),
        )

    def window(self, values: list[int | None]) -> list[int | None]:
        """The datapoints the rule looks at: the last N (oldest first)."""
        return values[-self.evaluation_periods :]

    def evaluate(self, values: list[int | None]) -> tuple[str, int]:
        """(state, breaching datapoints) after the last of `values`; missing (None) is not breaching."""
        breaching = sum(1 for v in self.window(values) if v == 1)
        return (ALARM if breaching >= self.datapoints else OK), breaching

    def describe(self) -> str:
        hours = self.cooldown.total_seconds() / 3600
        return (
            f"ALARM when {self.datapoints} of the last {self.evaluation_periods} datapoints {self.breach}; "
            f"cooldown {hours:g} h"
        )


@dataclass(frozen=True)
class MonitorBaseline:
    """The monitored model package (the stack endpoint's) and its drift baseline, fetched and checked."""

    stack: str
    package_arn: str
    version: int
    approval_status: str
    selected_because: str
    baseline_uri: str
    model_uri: str
    baseline_path: Path
    baseline_sha256: str
    mlflow_run_id: str
    fetched_at: str

    def to_record(self, monitor_dir: Path) -> dict[str, Any]:
        return {**asdict(self), "baseline_path": str(self.baseline_path.relative_to(monitor_dir))}

    @classmethod
    def from_record(cls, record: dict[str, Any], monitor_dir: Path) -> MonitorBaseline:
        # Records of earlier versions held local model copies too; those fields are not read any more.
        values = {name: record[name] for name in cls.__dataclass_fields__}
        return cls(**{**values, "baseline_path": monitor_dir / record["baseline_path"]})


@dataclass(frozen=True)
class Datapoint:
    """One drift run: DriftDetected for one window (`value` None = missing: no captured rows)."""

    id: str
    window_start: str
    window_end: str
    value: int | None
    rows: int
    features_drifted: list[str]
    prediction_drifted: bool | None
    package_arn: str
    report: str
    report_html: str
    metrics_published: int

    @property
    def missing(self) -> bool:
        return self.value is None

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Datapoint:
        return cls(**{name: record[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Retrain:
    """What the alarm did about retraining: `action` started, skipped (with the reason) or none."""

    action: str
    reason: str
    triggered_at: str = ""
    next_allowed: str = ""
    execution_id: str = ""
    status: str = ""
    """The local run's status (Succeeded, Failed), Error when it could not run, Running until it ends."""
    package_arn: str = ""
    failure: str = ""


@dataclass(frozen=True)
class MonitorRun:
    """What one `run` did: the datapoint, the alarm before/after it, the retrain decision."""

    stack: str
    monitored: MonitorBaseline
    datapoint: Datapoint
    alarm_before: str
    alarm_after: str
    evaluated: list[int | None]
    """The last N datapoints the rule looked at, oldest first (None = missing)."""
    breaching: int
    rule: AlarmRule
    retrain: Retrain

    @property
    def state_changed(self) -> bool:
        return self.alarm_before != self.alarm_after


@dataclass(frozen=True)
class MonitorStatus:
    stack: str
    monitored: MonitorBaseline | None
    rule: AlarmRule
    datapoints: list[Datapoint]
    """The last N datapoints, oldest first."""
    alarm: str
    alarm_since: str
    """When the alarm entered its current state ("" if it never changed)."""
    last_retrain: Retrain | None
    next_retrain_allowed: datetime | None
    """When the cooldown in force ends; None when a drift retrain may start now."""
    cooldown_remaining: timedelta
    last_failure: dict[str, Any] | None = field(default=None)
    """The latest `drift_failed` event, if it came after the latest datapoint."""
    quality_alarm: str = OK
    """The quality alarm after the last `mlops monitor quality` run (mlops/monitor_quality.py)."""
    quality_values: list[float | None] = field(default_factory=list)
    """The primary metric of the quality runs the quality alarm looks at, oldest first (None: no labels)."""


def as_dict(record: Any) -> Any:
    """A result (MonitorRun, MonitorStatus, MonitorBaseline, ...) as JSON-ready data, for `--json` output."""
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        return {f.name: as_dict(getattr(record, f.name)) for f in dataclasses.fields(record)}
    if isinstance(record, dict):
        return {str(k): as_dict(v) for k, v in record.items()}
    if isinstance(record, list | tuple):
        return [as_dict(v) for v in record]
    if isinstance(record, Path):
        return str(record)
    if isinstance(record, datetime):
        return iso(record)
    if isinstance(record, timedelta):
        return record.total_seconds()
    return record


# --- the state folder ----------------------------------------------------------------------------------


def monitor_dir(state_dir: Path) -> Path:
    return state_dir / MONITOR_DIR


def history_path(state_dir: Path) -> Path:
    return monitor_dir(state_dir) / HISTORY_FILE


def read_history(state_dir: Path) -> list[dict[str, Any]]:
    """Every event of the history, in order."""
    path = history_path(state_dir)
    if not path.is_file():
        return []
    events = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError:
            raise MonitorError(f"{path} line {number}: not a JSON object") from None
        if not isinstance(event, dict) or "event" not in event:
            raise MonitorError(f"{path} line {number}: not a monitor event (no `event` key)")
        events.append(event)
    return events


def append_event(state_dir: Path, event: dict[str, Any]) -> None:
    path = history_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        out.write(json.dumps(event, sort_keys=True) + "\n")


def stack_events(settings: StackSettings, state_dir: Path) -> list[dict[str, Any]]:
    """The history of this stack (a state folder may have monitored another stack before)."""
    return [e for e in read_history(state_dir) if e.get("stack", settings.stack) == settings.stack]


def _datapoints(events: list[dict[str, Any]]) -> list[Datapoint]:
    return [Datapoint.from_record(e) for e in events if e["event"] == "datapoint"]


def _alarm_state(events: list[dict[str, Any]]) -> tuple[str, str]:
    """(state, since) after the last datapoint; OK and "" before the first."""
    state, since = OK, ""
    for event in events:
        if event["event"] == "datapoint":
            if event["alarm_after"] != state:
                since = event["window_end"]
            state = event["alarm_after"]
    return state, since


def _write_json(path: Path, data: Any) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    temporary.replace(path)


@contextmanager
def locked(state_dir: Path) -> Iterator[None]:
    folder = monitor_dir(state_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    with path.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise MonitorError(
                f"another `mlops monitor` is running on {state_dir} (it holds {path}); wait for it to finish"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def load_monitored(state_dir: Path) -> MonitorBaseline | None:
    path = monitor_dir(state_dir) / MONITORED_FILE
    if not path.is_file():
        return None
    try:
        return MonitorBaseline.from_record(json.loads(path.read_text()), monitor_dir(state_dir))
    except (ValueError, KeyError, TypeError) as error:
        raise MonitorError(
            f"{path}: not a monitored-package record ({error}); run `mlops monitor baseline` again"
        ) from None


# --- baseline --------------------------------------------------------------------------------------------


def _split_s3(uri: str, what: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise MonitorError(f"{what} {uri!r} is not an s3://bucket/key URI")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def _select_package(settings: StackSettings, aws: Aws) -> tuple[ModelPackage, str]:
    """The package the stack's endpoint serves: the pin, else the latest approved, else the latest registered."""
    group = Names.of(settings).model_package_group
    try:
        if settings.approved_model_package_arn:
            package = get_package(settings, settings.approved_model_package_arn, aws=aws)
            return package, "pinned by approvedModelPackageArn"
        packages = list_packages(settings, aws=aws)
    except ReleaseError as error:
        raise MonitorError(f"no registered model to monitor: {error}") from None
    approved = [p for p in packages if p.status == APPROVED]
    if approved:
        return approved[0], "latest approved"
    candidates = [p for p in packages if p.status != REJECTED]
    if candidates:
        return candidates[0], "latest registered (none approved)"
    if packages:
        raise MonitorError(
            f"no model to monitor in group {group} of stack {settings.stack}: all {len(packages)} package(s) "
            "are rejected"
        )
    raise MonitorError(
        f"no registered model in group {group} of stack {settings.stack}: run `mlops pipeline run --local` "
        "to train and register one"
    )


def _fetch(s3: Any, uri: str, target: Path, what: str) -> None:
    bucket, key = _split_s3(uri, what)
    temporary = target.with_name(target.name + ".part")
    try:
        s3.download_file(bucket, key, str(temporary))
    except ClientError as error:
        info = error.response.get("Error", {})
        raise MonitorError(
            f"{what} {uri} could not be fetched from the embedded AWS: {info.get('Code')}: {info.get('Message')}"
        ) from None
    except BotoCoreError as error:
        raise MonitorError(f"{what} {uri} could not be fetched from the embedded AWS: {error}") from None
    temporary.replace(target)


def embedded_aws(settings: StackSettings, state_dir: Path, why: str) -> local_aws.LocalAws:
    """The state folder's embedded AWS, running as the stack's account and region (`why` it is needed)."""
    server = local_aws.running(state_dir)
    if server is None:
        raise MonitorError(
            f"{why}: the embedded AWS of {state_dir} is not running (its registry lives in memory); "
            "run `mlops pipeline run --local` first"
        )
    if (server.account_id, server.region) != (settings.account_id, settings.region):
        raise MonitorError(
            f"the embedded AWS of {state_dir} runs as account {server.account_id} in {server.region}, not stack "
            f"{settings.stack}'s {settings.account_id} in {settings.region}"
        )
    return server


def baseline(settings: StackSettings, state_dir: Path, *, now: datetime | None = None) -> MonitorBaseline:
    """Choose the package to monitor, fetch and check its drift baseline into `<state>/monitor/<version>/`, and
    point the stack's endpoint in the embedded AWS at it."""
    server = embedded_aws(settings, state_dir, "no registered model")
    fetched_at = _utc(now)
    with locked(state_dir):
        with local_aws.environment(server):
            aws = Aws(endpoint_url=server.endpoint_url, max_attempts=2)
            package, why = _select_package(settings, aws)
            baseline_uri = package.metadata.get("drift_baseline_uri", "")
            if not baseline_uri:
                raise MonitorError(
                    f"model package {package.arn} has no drift baseline: "
                    "CustomerMetadataProperties['drift_baseline_uri'] is missing"
                )
            try:
                description = aws.sagemaker(settings.region).describe_model_package(ModelPackageName=package.arn)
            except (ClientError, BotoCoreError) as error:
                raise MonitorError(f"describing model package {package.arn}: {error}") from None
            containers = (description.get("InferenceSpecification") or {}).get("Containers") or [{}]
            model_uri = containers[0].get("ModelDataUrl", "")
            if not model_uri:
                raise MonitorError(
                    f"model package {package.arn} has no model artifact: "
                    "InferenceSpecification.Containers[0].ModelDataUrl is missing"
                )
            folder = monitor_dir(state_dir) / str(package.version)
            folder.mkdir(parents=True, exist_ok=True)
            s3 = aws.client("s3", settings.region)
            _fetch(s3, baseline_uri, folder / BASELINE_FILE, f"drift baseline of model package {package.arn}")
            data = (folder / BASELINE_FILE).read_bytes()
            try:
                document = json.loads(data)
            except ValueError:
                document = None
            if not isinstance(document, dict) or document.get("format") != BASELINE_FORMAT:
                raise MonitorError(
                    f"drift baseline {baseline_uri} of model package {package.arn} is not a {BASELINE_FORMAT} file"
                )
            # What `pulumi up` deploys in AWS: the endpoint serves the monitored package, so the drift job
            # (--baseline-from-endpoint) resolves it as the scheduled one does.
            try:
                drift_job.register_endpoint(settings, aws.sagemaker(settings.region), package.arn, package.version)
            except (ClientError, BotoCoreError) as error:
                endpoint = Names.of(settings).endpoint
                raise MonitorError(f"pointing endpoint {endpoint} at {package.arn}: {error}") from None
        monitored = MonitorBaseline(
            stack=settings.stack,
            package_arn=package.arn,
            version=package.version,
            approval_status=package.status,
            selected_because=why,
            baseline_uri=baseline_uri,
            model_uri=model_uri,
            baseline_path=folder / BASELINE_FILE,
            baseline_sha256=hashlib.sha256(data).hexdigest(),
            mlflow_run_id=package.metadata.get("mlflow_run_id", ""),
            fetched_at=iso(fetched_at),
        )
        _write_json(monitor_dir(state_dir) / MONITORED_FILE, monitored.to_record(monitor_dir(state_dir)))
        append_event(
            state_dir,
            {"event": "baseline", "time": iso(fetched_at), "stack": settings.stack, "package_arn": package.arn,
             "version": package.version, "selected_because": why},
        )  # fmt: skip
    return monitored


# --- the drift job ---------------------------------------------------------------------------------------


def capture_source(capture_dir: Path, endpoint: str) -> Path:
    """The endpoint's folder of the capture root when it has one, else the folder as given."""
    if not capture_dir.is_dir():
        raise MonitorError(f"capture folder {capture_dir} does not exist (is the local endpoint capturing there?)")
    own = capture_dir / endpoint
    return own if own.is_dir() else capture_dir


# --- cooldown and retrain ----------------------------------------------------------------------------------


def _executions(settings: StackSettings, state_dir: Path, events: list[dict[str, Any]]) -> list[guard.Execution]:
    """This stack's local runs as the guard step sees them (see "Alarm and retrain")."""
    executions = []
    for record in sorted((state_dir / "runs").glob(f"*/{RUN_RECORD}")):
        try:
            run = json.loads(record.read_text())
        except (OSError, ValueError):
            raise MonitorError(f"{record}: not a JSON run record") from None
        if not isinstance(run, dict) or not {"execution_id", "started", "status"} <= run.keys():
            raise MonitorError(f"{record}: not a local run record (no execution_id, started or status)")
        if run.get("stack", settings.stack) == settings.stack:
            # Runs recorded before they carried a trigger were all started as manual ones.
            executions.append(guard.Execution(run["execution_id"], parse_iso(run["started"], str(record)),
                                              run["status"], run.get("trigger", guard.MANUAL)))
    ended = {e["datapoint"] for e in events if e["event"] == "retrain_result"}
    executions += [
        guard.Execution(f"the retrain of datapoint {e['datapoint']}",
                        parse_iso(e["triggered_at"], str(history_path(state_dir))), guard.EXECUTING, TRIGGER)
        for e in events if e["event"] == "retrain" and e["datapoint"] not in ended
    ]  # fmt: skip
    return executions


def cooldown_verdict(settings: StackSettings, state_dir: Path, events: list[dict[str, Any]],
                     now: datetime) -> guard.Verdict:
    """The guard step's verdict on an automatic retrain starting `now` (every automatic trigger shares it)."""
    return guard.decide(TRIGGER, now, _executions(settings, state_dir, events), settings.retrain_cooldown_hours)


def decide_retrain(
    rule: AlarmRule, before: str, after: str, breaching: int, retrain: bool, now: datetime, cooldown: guard.Verdict
) -> Retrain:
    counted = f"{breaching} of the last {rule.evaluation_periods} datapoints {rule.breach} (alarm at {rule.datapoints})"
    if after != ALARM:
        return Retrain(NONE, f"alarm {after}: {counted}")
    if before == ALARM:
        return Retrain(NONE, f"alarm stays in ALARM ({counted}): a retrain starts only when the alarm enters ALARM")
    if not retrain:
        return Retrain(SKIPPED, f"alarm entered ALARM ({counted}) but retraining is disabled")
    if not cooldown.proceed:
        return Retrain(SKIPPED, cooldown.reason, next_allowed="" if cooldown.until is None else iso(cooldown.until))
    return Retrain(STARTED, f"alarm entered ALARM ({counted})", triggered_at=iso(now))


def start_retrain(
    settings: StackSettings, state_dir: Path, datapoint: Any, decision: Retrain, data: Path | None,
    container: str, trigger: str = TRIGGER,
) -> Retrain:
    """Record, then run, the local retrain `decision` started for `datapoint` (its `id`), with `trigger`."""
    from mlops.local import pipeline as local_pipeline

    append_event(
        state_dir,
        {"event": "retrain", "stack": settings.stack, "datapoint": datapoint.id,
         "triggered_at": decision.triggered_at, "data": "" if data is None else str(data)},
    )  # fmt: skip
    try:
        run = local_pipeline.run_local(settings, state_dir=state_dir, data=data, trigger=trigger, container=container)
    except (OSError, RuntimeError, ValueError) as error:
        outcome = Retrain(**{**asdict(decision), "status": "Error", "failure": f"{type(error).__name__}: {error}"})
    else:
        outcome = Retrain(
            **{**asdict(decision), "execution_id": run.execution_id, "status": run.status,
               "package_arn": run.package_arn, "failure": run.failure},
        )  # fmt: skip
    append_event(
        state_dir,
        {"event": "retrain_result", "stack": settings.stack, "datapoint": datapoint.id,
         "execution_id": outcome.execution_id, "status": outcome.status, "package_arn": outcome.package_arn,
         "failure": outcome.failure},
    )  # fmt: skip
    return outcome


# --- run ------------------------------------------------------------------------------------------------------


def run(
    settings: StackSettings,
    state_dir: Path,
    capture_dir: Path | None = None,
    *,
    now: datetime | None = None,
    retrain: bool = True,
    data: Path | None = None,
    container: str = "auto",
) -> MonitorRun:
    """One evaluation period: drift job -> datapoint -> alarm -> retrain on OK->ALARM past the cooldown.

    `capture_dir` defaults to `<state>/capture`, where the local endpoint (mlops/serve_local.py) captures;
    `data` is what a retrain trains on (default: the bundled sample, as `mlops pipeline run --local`).
    """
    capture_dir = state_dir / CAPTURE_DIR if capture_dir is None else capture_dir
    end = _utc(now)
    rule = AlarmRule.of(settings)
    if data is not None and not data.exists():
        raise MonitorError(f"retrain data {data}: no such file or folder")
    with locked(state_dir):
        monitored = load_monitored(state_dir)
        if monitored is None:
            raise MonitorError(f"no monitored model in {monitor_dir(state_dir)}: run `mlops monitor baseline` first")
        if monitored.stack != settings.stack:
            raise MonitorError(
                f"{monitor_dir(state_dir)} monitors stack {monitored.stack}, not {settings.stack}: "
                "run `mlops monitor baseline` for this stack"
            )
        events = stack_events(settings, state_dir)
        points = _datapoints(events)
        if points and parse_iso(points[-1].window_end, str(history_path(state_dir))) >= end:
            raise MonitorError(
                f"nothing to evaluate: now ({iso(end)}) is not after the end of the previous window "
                f"({points[-1].window_end})"
            )
        source = capture_source(capture_dir, Names.of(settings).endpoint)
        server = embedded_aws(settings, state_dir, "the drift job reads the endpoint and its capture from AWS")
        point_id = f"{end:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
        window_start = end - timedelta(hours=settings.drift_window_hours)
        try:
            with local_aws.environment(server):
                aws = Aws(endpoint_url=server.endpoint_url, max_attempts=2)
                job = drift_job.run(
                    settings, server, aws.client("s3", settings.region), aws.sagemaker(settings.region),
                    capture=source, end=end, execution_id=point_id,
                    work_dir=monitor_dir(state_dir) / "reports" / point_id, container=container, owner=state_dir,
                )  # fmt: skip
        except (drift_job.DriftJobError, ClientError, BotoCoreError) as error:
            append_event(
                state_dir,
                {"event": "drift_failed", "stack": settings.stack, "id": point_id,
                 "window_start": iso(window_start), "window_end": iso(end), "error": str(error)},
            )  # fmt: skip
            raise MonitorError(f"{error}") from None
        report = job.report
        has_data = report["status"] != "no_data"
        summary = report.get("summary") or {}
        datapoint = Datapoint(
            id=point_id,
            window_start=report["window"]["start"],
            window_end=report["window"]["end"],
            value=int(bool(report["drift_detected"])) if has_data else None,
            rows=int(report["input"]["rows"]),
            features_drifted=list(summary.get("drifted") or []),
            prediction_drifted=summary.get("prediction_drifted"),
            package_arn=report["baseline"].get("package_arn") or "",
            report=str(job.report_path),
            report_html=str(job.report_html),
            metrics_published=int((report.get("metrics") or {}).get("published") or 0),
        )
        before, _ = _alarm_state(events)
        evaluated = rule.window([p.value for p in points] + [datapoint.value])
        after, breaching = rule.evaluate(evaluated)
        cooldown = cooldown_verdict(settings, state_dir, events, end)
        decision = decide_retrain(rule, before, after, breaching, retrain, end, cooldown)
        append_event(
            state_dir,
            {"event": "datapoint", "stack": settings.stack, **asdict(datapoint), "evaluated": evaluated,
             "breaching": breaching, "alarm_before": before, "alarm_after": after,
             "retrain": {"action": decision.action, "reason": decision.reason}},
        )  # fmt: skip
        if decision.action == STARTED:
            decision = start_retrain(settings, state_dir, datapoint, decision, data, container)
    return MonitorRun(
        stack=settings.stack,
        monitored=monitored,
        datapoint=datapoint,
        alarm_before=before,
        alarm_after=after,
        evaluated=evaluated,
        breaching=breaching,
        rule=rule,
        retrain=decision,
    )


# --- status ---------------------------------------------------------------------------------------------------


def _last_retrain(events: list[dict[str, Any]]) -> Retrain | None:
    started = [e for e in events if e["event"] == "retrain"]
    if not started:
        return None
    last = started[-1]
    results = [e for e in events if e["event"] == "retrain_result" and e["datapoint"] == last["datapoint"]]
    result = results[-1] if results else {"status": "Running", "execution_id": "", "package_arn": "", "failure": ""}
    return Retrain(
        STARTED,
        f"drift alarm at datapoint {last['datapoint']}",
        triggered_at=last["triggered_at"],
        execution_id=result["execution_id"],
        status=result["status"],
        package_arn=result["package_arn"],
        failure=result["failure"],
    )


def status(settings: StackSettings, state_dir: Path, *, now: datetime | None = None) -> MonitorStatus:
    """The monitored package, the last N datapoints, the alarm, the last retrain and the cooldown left."""
    current = _utc(now)
    rule = AlarmRule.of(settings)
    events = stack_events(settings, state_dir)
    points = _datapoints(events)
    alarm, since = _alarm_state(events)
    next_allowed = cooldown_verdict(settings, state_dir, events, current).until
    remaining = timedelta(0) if next_allowed is None else next_allowed - current
    failures = [e for e in events if e["event"] == "drift_failed"]
    quality = [e for e in events if e["event"] == "quality"]
    unresolved = failures and (not points or failures[-1]["window_end"] > points[-1].window_end)
    last_failure = failures[-1] if unresolved else None
    monitored = load_monitored(state_dir)
    return MonitorStatus(
        stack=settings.stack,
        monitored=monitored if monitored is not None and monitored.stack == settings.stack else None,
        rule=rule,
        datapoints=points[-rule.evaluation_periods :],
        alarm=alarm,
        alarm_since=since,
        last_retrain=_last_retrain(events),
        next_retrain_allowed=next_allowed,
        cooldown_remaining=remaining,
        last_failure=last_failure,
        quality_alarm=quality[-1]["alarm_after"] if quality else OK,
        quality_values=[e["value"] for e in quality[-settings.quality_alarm_evaluation_periods:]],
    )

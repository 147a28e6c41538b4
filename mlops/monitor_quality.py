"""`mlops monitor quality`: the stack's scheduled quality job, run once in local mode.

What the quality schedule does in AWS (infra/components/monitoring.py), on this machine: the label
files under `<state>/ground-truth/yyyy/mm/dd/hh/` (Model Monitor's ground-truth format, one record
per request, keyed by its inference id) and the local endpoint's capture are delivered to the
embedded S3, and `pipelines.monitoring.quality_job_request` runs in the image through the local
executor (mlops/local/drift_job.py): it resolves the package the stack's endpoint serves (`mlops
monitor baseline` points it at the monitored one), joins, scores and publishes `PrimaryMetric`,
`LabelCoverage`, `LabelledRows` and the join counts to the embedded CloudWatch.

The window: `--start` (default the schedule's: the window whose labels are due now, i.e. the
`qualityWindowHours` ending `qualityLabelDelayHours` before the current hour). Each run is recorded
in the monitor's history (`quality` events: window, primary metric, coverage, counts, whether it is
worse than the stack's quality bar, the report paths).

The alarm: each run is a datapoint, 1 when the primary metric is worse than the stack's quality bar
(`qualityMinMetric`, else the registration bar) in the metric's direction, 0 when it is not, missing
when the window had no labelled rows or the metric is undefined there. The alarm is ALARM when
`qualityAlarmDatapoints` (M) of the last `qualityAlarmEvaluationPeriods` (N) runs are 1, and a
retrain (Trigger `quality`) starts when it enters ALARM and the cooldown shared with the drift
alarm allows it: the drift loop's rules (mlops/monitor.py, "Alarm and retrain"), on the quality events.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from mlops import monitor
from mlops.local import aws as local_aws
from mlops.local import drift_job
from mlops.naming import Names
from mlops.registry import Aws
from mlops.settings import StackSettings
from model_code import guard

GROUND_TRUTH_DIR = "ground-truth"


@dataclass(frozen=True)
class QualityRun:
    id: str
    window_start: str
    window_end: str
    metric: str
    value: float | None
    bar: float
    degraded: bool | None
    coverage: float | None
    labelled_rows: int
    captured_rows: int
    counts: dict[str, int]
    report: str
    report_html: str
    runner: str
    alarm_before: str = monitor.OK
    alarm_after: str = monitor.OK
    evaluated: list[int | None] = field(default_factory=list)
    breaching: int = 0
    retrain: monitor.Retrain = monitor.Retrain(monitor.NONE, "")

    @property
    def datapoint(self) -> int | None:
        return None if self.degraded is None else int(self.degraded)


def alarm_rule(settings: StackSettings) -> monitor.AlarmRule:
    return monitor.AlarmRule(settings.quality_alarm_datapoints, settings.quality_alarm_evaluation_periods,
                             timedelta(hours=settings.retrain_cooldown_hours), "score worse than the bar")


def schedule_start(settings: StackSettings, now: datetime) -> datetime:
    """The window a scheduled run at `now` scores: the one whose labels are due."""
    hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return hour - timedelta(hours=settings.quality_label_delay_hours + settings.quality_window_hours)


def run(settings: StackSettings, state_dir: Path, *, capture_dir: Path | None = None,
        ground_truth_dir: Path | None = None, start: datetime | None = None, now: datetime | None = None,
        container: str = "auto", retrain: bool = True, data: Path | None = None) -> QualityRun:
    """One tick of the quality schedule: the job, a datapoint, the M-of-N alarm, a retrain on OK -> ALARM."""
    capture_dir = state_dir / monitor.CAPTURE_DIR if capture_dir is None else capture_dir
    ground_truth_dir = state_dir / GROUND_TRUTH_DIR if ground_truth_dir is None else ground_truth_dir
    if not ground_truth_dir.is_dir():
        raise monitor.MonitorError(f"ground-truth folder {ground_truth_dir} does not exist: put the label files "
                                   "under <folder>/yyyy/mm/dd/hh/ (the hour they arrived)")
    now = datetime.now(UTC) if now is None else now
    start = schedule_start(settings, now) if start is None else start.astimezone(UTC)
    with monitor.locked(state_dir):
        monitored = monitor.load_monitored(state_dir)
        if monitored is None or monitored.stack != settings.stack:
            raise monitor.MonitorError(f"no monitored model of stack {settings.stack} in "
                                       f"{monitor.monitor_dir(state_dir)}: run `mlops monitor baseline` first")
        source = monitor.capture_source(capture_dir, Names.of(settings).endpoint)
        server = monitor.embedded_aws(settings, state_dir, "the quality job reads the endpoint, capture and labels")
        run_id = f"quality-{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
        try:
            with local_aws.environment(server):
                aws = Aws(endpoint_url=server.endpoint_url, max_attempts=2)
                job = drift_job.run_quality(
                    settings, server, aws.client("s3", settings.region), aws.sagemaker(settings.region),
                    capture=source, ground_truth=ground_truth_dir, start=start, execution_id=run_id,
                    work_dir=monitor.monitor_dir(state_dir) / "reports" / run_id, container=container,
                    owner=state_dir,
                )
        except (drift_job.DriftJobError, ClientError, BotoCoreError) as error:
            raise monitor.MonitorError(str(error)) from None
        report: dict[str, Any] = job.report
        primary = report["primary_metric"]
        result = QualityRun(
            id=run_id, window_start=report["window"]["start"], window_end=report["window"]["end"],
            metric=primary["name"], value=primary["value"], bar=report["threshold"], degraded=report["degraded"],
            coverage=report["coverage"], labelled_rows=report["matched_rows"],
            captured_rows=report["captured"]["rows"], counts=report["join"]["counts"], report=str(job.report_path),
            report_html=str(job.report_html), runner=job.runner,
        )
        events = monitor.stack_events(settings, state_dir)
        earlier = [e for e in events if e["event"] == "quality"]
        rule = alarm_rule(settings)
        before = earlier[-1]["alarm_after"] if earlier else monitor.OK
        evaluated = rule.window([e["datapoint"] for e in earlier] + [result.datapoint])
        after, breaching = rule.evaluate(evaluated)
        decision = monitor.decide_retrain(rule, before, after, breaching, retrain, now,
                                          monitor.cooldown_verdict(settings, state_dir, events, now))
        result = dataclasses.replace(result, alarm_before=before, alarm_after=after, evaluated=evaluated,
                                     breaching=breaching, retrain=decision)
        record = {k: v for k, v in dataclasses.asdict(result).items() if k != "retrain"}
        monitor.append_event(state_dir, {"event": "quality", "stack": settings.stack, **record,
                                         "datapoint": result.datapoint,
                                         "retrain": {"action": decision.action, "reason": decision.reason}})
        if decision.action == monitor.STARTED:
            outcome = monitor.start_retrain(settings, state_dir, result, decision, data, container, guard.QUALITY)
            result = dataclasses.replace(result, retrain=outcome)
    return result

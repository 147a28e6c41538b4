"""Cooldown guard: the first step of the training pipeline.

Automatic triggers (the drift and quality alarms, the retrain schedule, new data under the raw
prefix) start the pipeline through EventBridge, which cannot count. This step does: when the
execution was started by an automatic trigger and another automatically triggered execution of the
same pipeline started
earlier within the cooldown window and has not failed, this one stops here, naming that execution
and when the next automatic retrain is allowed. Manual starts (the default trigger) always pass:
a person asked for them. `decide` is the rule itself; local mode's monitoring loop applies it to
the local runs, so both stop the same retrains.

    python -m model_code guard --pipeline-name NAME --execution-arn ARN --trigger drift --cooldown-hours 24

Exit codes: 0 proceed, 1 cooldown (the execution stops), 2 bad arguments or AWS errors.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from model_code import env

MANUAL = "manual"
DRIFT = "drift"
QUALITY = "quality"
AUTOMATIC_TRIGGERS = (DRIFT, QUALITY, "schedule", "new-data")
EXECUTING = "Executing"
COUNTED_STATUSES = (EXECUTING, "Succeeded", "Stopping")


@dataclass(frozen=True)
class Execution:
    """What the rule needs to know of another execution of the pipeline."""

    id: str
    """Its ARN in SageMaker; in local mode the run's execution id."""
    started: datetime
    status: str
    trigger: str


@dataclass(frozen=True)
class Verdict:
    proceed: bool
    reason: str
    until: datetime | None = None
    """When stopped: the time after which the next automatic retrain is allowed."""


def decide(trigger: str, started: datetime, earlier: Iterable[Execution], cooldown_hours: float) -> Verdict:
    """The cooldown rule, for the guard step and for local mode's monitoring loop alike.

    An automatic `trigger` starting at `started` stops when another automatically triggered
    execution started within the `cooldown_hours` before it and is running or succeeded; `earlier`
    may hold any executions (later ones and ones outside the window are ignored here).
    """
    if trigger == MANUAL:
        return Verdict(True, "manual start: no cooldown")
    if trigger not in AUTOMATIC_TRIGGERS:
        raise ValueError(f"--trigger {trigger!r} is not one of {MANUAL}, {', '.join(AUTOMATIC_TRIGGERS)}")
    cooldown = timedelta(hours=cooldown_hours)
    # Earlier executions only: an execution never blocks itself, nor one started before it.
    counted = [e for e in earlier if started - cooldown < e.started < started
               and e.status in COUNTED_STATUSES and e.trigger in AUTOMATIC_TRIGGERS]
    if not counted:
        return Verdict(True, f"no automatic retrain in the last {cooldown_hours:g} h")
    # The latest one sets when the window is clear again.
    last = max(counted, key=lambda e: e.started)
    allowed = last.started + cooldown
    return Verdict(False, f"cooldown: {last.id} ({last.trigger}) started at {last.started.isoformat()}; the next "
                          f"automatic retrain is allowed after {allowed.isoformat()}", allowed)


def _trigger_of(sagemaker: Any, execution_arn: str) -> str:
    response = sagemaker.list_pipeline_parameters_for_execution(PipelineExecutionArn=execution_arn)
    parameters = {p["Name"]: p["Value"] for p in response.get("PipelineParameters", [])}
    return parameters.get("Trigger", MANUAL)


def check(sagemaker: Any, pipeline_name: str, execution_arn: str, trigger: str, cooldown_hours: int) -> Verdict:
    """`decide` for `execution_arn`, over the pipeline's executions as SageMaker reports them."""
    if trigger not in AUTOMATIC_TRIGGERS:  # manual proceeds, anything else is refused: no AWS call needed
        return decide(trigger, datetime.min, (), cooldown_hours)
    started: datetime = sagemaker.describe_pipeline_execution(PipelineExecutionArn=execution_arn)["CreationTime"]
    paginator = sagemaker.get_paginator("list_pipeline_executions")
    # CreatedAfter only saves calls in AWS; `decide` applies the window itself (moto ignores the filter).
    pages = paginator.paginate(PipelineName=pipeline_name, CreatedAfter=started - timedelta(hours=cooldown_hours),
                               SortBy="CreationTime", SortOrder="Descending")
    earlier = [
        Execution(s["PipelineExecutionArn"], s["StartTime"], s.get("PipelineExecutionStatus", ""),
                  _trigger_of(sagemaker, s["PipelineExecutionArn"]))
        for page in pages for s in page.get("PipelineExecutionSummaries", [])
        if s["PipelineExecutionArn"] != execution_arn
    ]
    return decide(trigger, started, earlier, cooldown_hours)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m model_code.guard", description=__doc__.splitlines()[0])
    p.add_argument("--pipeline-name", required=True)
    p.add_argument("--execution-arn", required=True)
    p.add_argument("--trigger", default=MANUAL, help=f"{MANUAL} (default), {', '.join(AUTOMATIC_TRIGGERS)}")
    p.add_argument("--cooldown-hours", type=int, required=True)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.trigger == MANUAL:
        print("proceed: manual start: no cooldown")
        return 0
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.client("sagemaker", region_name=env.AWS_DEFAULT_REGION.get() or None,
                          endpoint_url=env.AWS_ENDPOINT_URL.get() or None)
    try:
        verdict = check(client, args.pipeline_name, args.execution_arn, args.trigger, args.cooldown_hours)
    except (ValueError, ClientError, BotoCoreError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(("proceed: " if verdict.proceed else "stop: ") + verdict.reason, file=sys.stdout if verdict.proceed
          else sys.stderr)
    return 0 if verdict.proceed else 1


if __name__ == "__main__":
    sys.exit(main())

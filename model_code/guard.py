"""Cooldown guard: the first step of the training pipeline.

Automatic triggers (the drift alarm, new data landing under the raw prefix) start the pipeline
through EventBridge, which cannot count. This step does: when the execution was started by an
automatic trigger and another automatically triggered execution of the same pipeline started
earlier within the cooldown window and has not failed, this one stops here, naming that execution
and when the next automatic retrain is allowed. Manual starts (the default trigger) always pass:
a person asked for them.

    python -m model_code guard --pipeline-name NAME --execution-arn ARN --trigger drift --cooldown-hours 24

Exit codes: 0 proceed, 1 cooldown (the execution stops), 2 bad arguments or AWS errors.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from model_code import env

MANUAL = "manual"
AUTOMATIC_TRIGGERS = ("drift", "new-data")
COUNTED_STATUSES = ("Executing", "Succeeded", "Stopping")


@dataclass(frozen=True)
class Verdict:
    proceed: bool
    reason: str


def _trigger_of(sagemaker: Any, execution_arn: str) -> str:
    response = sagemaker.list_pipeline_parameters_for_execution(PipelineExecutionArn=execution_arn)
    parameters = {p["Name"]: p["Value"] for p in response.get("PipelineParameters", [])}
    return parameters.get("Trigger", MANUAL)


def check(sagemaker: Any, pipeline_name: str, execution_arn: str, trigger: str, cooldown_hours: int) -> Verdict:
    """Proceed unless an earlier automatic execution within the cooldown is running or succeeded."""
    if trigger == MANUAL:
        return Verdict(True, "manual start: no cooldown")
    if trigger not in AUTOMATIC_TRIGGERS:
        raise ValueError(f"--trigger {trigger!r} is not one of {MANUAL}, {', '.join(AUTOMATIC_TRIGGERS)}")
    own = sagemaker.describe_pipeline_execution(PipelineExecutionArn=execution_arn)
    started: datetime = own["CreationTime"]
    window_start = started - timedelta(hours=cooldown_hours)
    paginator = sagemaker.get_paginator("list_pipeline_executions")
    for page in paginator.paginate(PipelineName=pipeline_name, CreatedAfter=window_start, SortBy="CreationTime",
                                   SortOrder="Descending"):
        for summary in page.get("PipelineExecutionSummaries", []):
            other = summary["PipelineExecutionArn"]
            # Earlier executions only: of two started together, the first proceeds.
            if other == execution_arn or summary["StartTime"] >= started:
                continue
            if summary.get("PipelineExecutionStatus") not in COUNTED_STATUSES:
                continue
            other_trigger = _trigger_of(sagemaker, other)
            if other_trigger in AUTOMATIC_TRIGGERS:
                allowed = summary["StartTime"] + timedelta(hours=cooldown_hours)
                return Verdict(False, f"cooldown: {other} ({other_trigger}) started at "
                                      f"{summary['StartTime'].isoformat()}; the next automatic retrain is allowed "
                                      f"after {allowed.isoformat()}")
    return Verdict(True, f"no automatic retrain in the last {cooldown_hours} h")


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

"""The cooldown rule (`decide`), and the guard against moto: automatic triggers within the cooldown
stop, manual ones pass."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from model_code.guard import Execution, check, decide, main

PIPELINE = "mlops-stack-dev-training"
DEFINITION = json.dumps({"Version": "2020-12-01", "Parameters": [{"Name": "Trigger", "Type": "String",
                                                                    "DefaultValue": "manual"}], "Steps": []})

NOW = datetime(2024, 5, 2, 12, 0, tzinfo=UTC)


def ago(hours: float, status: str = "Succeeded", trigger: str = "drift") -> Execution:
    return Execution(f"run-{hours:g}h-{status}-{trigger}", NOW - timedelta(hours=hours), status, trigger)


def test_an_automatic_run_that_ran_or_runs_within_the_window_blocks() -> None:
    for status in ("Succeeded", "Executing", "Stopping"):
        verdict = decide("drift", NOW, [ago(3, status)], 24)
        assert not verdict.proceed and verdict.until == NOW + timedelta(hours=21)
        assert verdict.reason == (f"cooldown: run-3h-{status}-drift (drift) started at 2024-05-02T09:00:00+00:00; "
                                  "the next automatic retrain is allowed after 2024-05-03T09:00:00+00:00")
    assert not decide("new-data", NOW, [ago(1, trigger="new-data")], 24).proceed  # the triggers share one cooldown


def test_failed_and_stopped_automatic_runs_do_not_block() -> None:
    verdict = decide("drift", NOW, [ago(1, "Failed"), ago(2, "Stopped")], 24)
    assert verdict.proceed and verdict.until is None
    assert verdict.reason == "no automatic retrain in the last 24 h"


def test_runs_outside_the_window_and_manual_runs_do_not_block() -> None:
    assert decide("drift", NOW, [ago(24), ago(30), ago(1, trigger="manual")], 24).proceed
    assert not decide("drift", NOW, [ago(23.99)], 24).proceed


def test_later_and_simultaneous_executions_are_ignored() -> None:
    # Of two automatic starts, the later one stops, never the earlier one (nor one starting at once).
    assert decide("drift", NOW, [ago(-1), ago(0)], 24).proceed


def test_the_latest_blocking_run_says_when_the_window_clears() -> None:
    verdict = decide("drift", NOW, [ago(20), ago(2, "Executing"), ago(10)], 24)
    assert verdict.until == NOW + timedelta(hours=22) and verdict.reason.startswith("cooldown: run-2h-Executing-drift ")


def test_manual_starts_always_pass_and_unknown_triggers_are_refused() -> None:
    assert decide("manual", NOW, [ago(1), ago(0.1, "Executing")], 24) == decide("manual", NOW, [], 24)
    assert decide("manual", NOW, [ago(1)], 24).proceed
    with pytest.raises(ValueError, match="--trigger 'cron' is not one of manual, drift, quality, schedule, new-data"):
        decide("cron", NOW, [], 24)


@pytest.fixture
def sagemaker(aws):
    """The in-process SageMaker of the `aws` fixture (tests/model_code/conftest.py), with the pipeline."""
    client = boto3.client("sagemaker")
    client.create_pipeline(PipelineName=PIPELINE, PipelineDefinition=DEFINITION,
                           RoleArn="arn:aws:iam::123456789012:role/mlops-stack-dev-sagemaker-execution")
    return client


def _start(client, trigger: str) -> str:
    return client.start_pipeline_execution(
        PipelineName=PIPELINE, PipelineParameters=[{"Name": "Trigger", "Value": trigger}])["PipelineExecutionArn"]


def test_manual_starts_always_proceed(sagemaker) -> None:
    _start(sagemaker, "drift")
    second = _start(sagemaker, "manual")
    assert check(sagemaker, PIPELINE, second, "manual", 24).proceed
    assert main(["--pipeline-name", PIPELINE, "--execution-arn", second, "--cooldown-hours", "24"]) == 0


def test_first_automatic_retrain_proceeds_and_the_next_stops(sagemaker) -> None:
    first = _start(sagemaker, "drift")
    assert check(sagemaker, PIPELINE, first, "drift", 24).proceed
    second = _start(sagemaker, "new-data")
    verdict = check(sagemaker, PIPELINE, second, "new-data", 24)
    assert not verdict.proceed
    assert verdict.reason.startswith(f"cooldown: {first} (drift) started at ")
    assert "the next automatic retrain is allowed after" in verdict.reason


def test_earlier_manual_runs_do_not_count(sagemaker) -> None:
    _start(sagemaker, "manual")
    automatic = _start(sagemaker, "drift")
    assert check(sagemaker, PIPELINE, automatic, "drift", 24).proceed


def test_unknown_trigger_is_refused(sagemaker, capsys) -> None:
    execution = _start(sagemaker, "drift")
    assert main(["--pipeline-name", PIPELINE, "--execution-arn", execution, "--trigger", "cron",
                 "--cooldown-hours", "1"]) == 2
    assert "--trigger 'cron' is not one of manual, drift, quality, schedule, new-data" in capsys.readouterr().err


def test_the_quality_alarm_shares_the_cooldown_of_the_other_automatic_triggers() -> None:
    assert not decide("quality", NOW, [ago(2, trigger="drift")], 24).proceed
    assert not decide("drift", NOW, [ago(2, trigger="quality")], 24).proceed
    assert decide("quality", NOW, [ago(25, trigger="quality")], 24).proceed
    assert not decide("schedule", NOW, [ago(2, trigger="quality")], 24).proceed

"""Local runs as executions of the embedded AWS: registered by start_execution, Executing until the run
records its outcome, then that outcome, as the guard step reads them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from mlops.local import aws as local_aws
from mlops.local.executions import start_execution
from model_code.guard import check

PIPELINE = "mlops-stack-dev-training"
ROLE = "arn:aws:iam::123456789012:role/mlops-stack-dev-sagemaker-execution"
DEFINITION = json.dumps({"Version": "2020-12-01", "Parameters": [{"Name": "Trigger", "Type": "String",
                                                                    "DefaultValue": "manual"}], "Steps": []})


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Any]]:
    state = tmp_path_factory.mktemp("state")
    server = local_aws.start(state, account_id="123456789012", region="eu-west-1")
    try:
        yield state, boto3.client("sagemaker", region_name="eu-west-1", endpoint_url=server.endpoint_url,
                                  aws_access_key_id="local", aws_secret_access_key="local")
    finally:
        local_aws.stop(state)


def _finish(state: Path, arn: str, status: str) -> None:
    """What run_local does when a run ends: run.json in the run folder named by the execution id."""
    folder = state / "runs" / arn.rsplit("/", 1)[-1]
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"execution_id": folder.name, "status": status}))


def _statuses(sagemaker: Any) -> dict[str, str]:
    summaries = sagemaker.list_pipeline_executions(PipelineName=PIPELINE)["PipelineExecutionSummaries"]
    return {s["PipelineExecutionArn"]: s["PipelineExecutionStatus"] for s in summaries}


def test_an_execution_is_executing_until_its_run_records_the_outcome(embedded) -> None:
    state, sagemaker = embedded
    arn = start_execution(sagemaker, PIPELINE, DEFINITION, ROLE, {"Trigger": "drift"})
    assert arn.startswith(f"arn:aws:sagemaker:eu-west-1:123456789012:pipeline/{PIPELINE}/execution/")
    assert sagemaker.describe_pipeline_execution(PipelineExecutionArn=arn)["PipelineExecutionStatus"] == "Executing"
    assert _statuses(sagemaker)[arn] == "Executing"
    parameters = sagemaker.list_pipeline_parameters_for_execution(PipelineExecutionArn=arn)["PipelineParameters"]
    assert parameters == [{"Name": "Trigger", "Value": "drift"}]

    _finish(state, arn, "Failed")
    assert sagemaker.describe_pipeline_execution(PipelineExecutionArn=arn)["PipelineExecutionStatus"] == "Failed"
    assert _statuses(sagemaker)[arn] == "Failed"

    # The pipeline exists now: the next start updates it to the run's definition.
    changed = DEFINITION.replace("manual", "drift")
    other = start_execution(sagemaker, PIPELINE, changed, ROLE, {"Trigger": "manual"})
    assert sagemaker.describe_pipeline(PipelineName=PIPELINE)["PipelineDefinition"] == changed
    _finish(state, other, "Succeeded")
    assert {arn: "Failed", other: "Succeeded"}.items() <= _statuses(sagemaker).items()


def test_the_guard_step_sees_failed_local_runs_as_failed(embedded) -> None:
    state, sagemaker = embedded
    failed = start_execution(sagemaker, PIPELINE, DEFINITION, ROLE, {"Trigger": "drift"})
    _finish(state, failed, "Failed")
    retry = start_execution(sagemaker, PIPELINE, DEFINITION, ROLE, {"Trigger": "drift"})
    assert check(sagemaker, PIPELINE, retry, "drift", 24).proceed  # moto alone would report the failure Succeeded
    _finish(state, retry, "Succeeded")
    third = start_execution(sagemaker, PIPELINE, DEFINITION, ROLE, {"Trigger": "new-data"})
    verdict = check(sagemaker, PIPELINE, third, "new-data", 24)
    assert not verdict.proceed and verdict.reason.startswith(f"cooldown: {retry} (drift) started at ")

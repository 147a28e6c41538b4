"""The cooldown guard against moto: automatic triggers within the cooldown stop, manual ones pass."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from model_code.guard import check, main

PIPELINE = "mlops-stack-dev-training"
DEFINITION = json.dumps({"Version": "2020-12-01", "Parameters": [{"Name": "Trigger", "Type": "String",
                                                                    "DefaultValue": "manual"}], "Steps": []})


@pytest.fixture
def sagemaker(monkeypatch):
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with mock_aws():
        client = boto3.client("sagemaker", region_name="eu-west-1")
        client.create_pipeline(PipelineName=PIPELINE, PipelineDefinition=DEFINITION,
                               RoleArn="arn:aws:iam::123456789012:role/mlops-stack-dev-sagemaker-execution")
        yield client


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
    assert "--trigger 'cron' is not one of manual, drift, new-data" in capsys.readouterr().err

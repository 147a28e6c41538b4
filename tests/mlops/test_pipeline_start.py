"""`mlops pipeline start|definition` against moto: upsert the definition, start, wait."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import boto3
import pytest

from mlops.cli import EXIT_BAD_INPUT, EXIT_OK, main
from mlops.naming import Names
from mlops.pipeline import start, upsert
from mlops.registry import Aws, ReleaseError
from mlops.settings import StackSettings, load_stack
from tests.mlops.moto_aws import moto_aws


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    with moto_aws(monkeypatch) as aws:
        yield aws


@pytest.fixture
def dev() -> StackSettings:
    return load_stack("dev")


def _stack_key(settings: StackSettings) -> str:
    kms = boto3.client("kms", region_name=settings.region)
    key = kms.create_key(Description="stack key")["KeyMetadata"]
    kms.create_alias(AliasName=Names.of(settings).kms_alias, TargetKeyId=key["KeyId"])
    return key["Arn"]


def test_upsert_creates_then_updates_and_start_waits(aws: Aws, dev: StackSettings) -> None:
    key_arn = _stack_key(dev)
    names = Names.of(dev)
    arn = upsert(dev, "abc1234", aws=aws)
    sagemaker = aws.sagemaker(dev.region)
    described = sagemaker.describe_pipeline(PipelineName=names.pipeline)
    assert described["PipelineArn"] == arn
    definition = json.loads(described["PipelineDefinition"])
    text = described["PipelineDefinition"]
    assert key_arn in text and f"{names.ecr_repository}:abc1234" in text
    assert [s["Name"] for s in definition["Steps"]][:2] == ["CooldownGuard", "Validate"]
    assert described["RoleArn"].endswith(f":role/{names.execution_role}")

    assert upsert(dev, "def5678", aws=aws) == arn
    assert "def5678" in sagemaker.describe_pipeline(PipelineName=names.pipeline)["PipelineDefinition"]

    polled = []
    execution = start(dev, parameters={"Seed": "7"}, wait=True, poll_s=0, aws=aws, on_poll=polled.append)
    assert execution.arn.startswith(arn)
    assert execution.status in ("Executing", "Succeeded") and polled


def test_start_without_a_pipeline_says_how_to_get_one(aws: Aws, dev: StackSettings) -> None:
    with pytest.raises(ReleaseError, match="pipeline mlops-stack-dev-training of stack dev not found"):
        start(dev, aws=aws)


def test_start_with_aws_unreachable_is_one_line_not_a_traceback(dev: StackSettings) -> None:
    """A connection failure is a BotoCoreError, not a ClientError: it must still become a ReleaseError."""
    from botocore.exceptions import EndpointConnectionError

    class Unreachable:
        def start_pipeline_execution(self, **_: object) -> None:
            raise EndpointConnectionError(endpoint_url="https://api.sagemaker.eu-west-1.amazonaws.com/")

    class Offline(Aws):
        def sagemaker(self, region: str) -> Unreachable:  # type: ignore[override]
            return Unreachable()

    with pytest.raises(ReleaseError, match="starting pipeline mlops-stack-dev-training: Could not connect"):
        start(dev, aws=Offline())


def test_upsert_without_the_stack_key_names_it(aws: Aws, dev: StackSettings) -> None:
    with pytest.raises(ReleaseError, match="alias/mlops-stack-dev"):
        upsert(dev, "abc1234", aws=aws)


def test_cli_start_and_definition(capsys, aws: Aws, dev: StackSettings) -> None:
    _stack_key(dev)
    assert main(["pipeline", "start", "--stack", "dev", "--image-tag", "abc1234", "--parameter", "Seed=3"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "updated for image tag abc1234" in out and "execution arn:aws:sagemaker" in out
    assert main(["pipeline", "start", "--stack", "dev", "--parameter", "Seed"]) == EXIT_BAD_INPUT
    assert "'Seed' is not NAME=VALUE" in capsys.readouterr().err
    assert main(["pipeline", "definition", "--stack", "dev", "--image-tag", "abc1234"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["Parameters"][0]["Name"] == "InputDataUri"


def test_cli_start_on_a_dvc_revision_stages_its_versions_and_records_it(capsys, aws: Aws, dev: StackSettings,
                                                                          tmp_path) -> None:
    from tests.mlops.test_data_versions import commit_dvc_file, pushed

    _stack_key(dev)
    upsert(dev, "abc1234", aws=aws)
    s3, bucket = aws.client("s3", dev.region), Names.of(dev).bucket("data")
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": dev.region})
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    key = "dvc/datasets/adult-income/part-1.csv"
    version = s3.put_object(Bucket=bucket, Key=key, Body=b"age\n39\n")["VersionId"]
    s3.put_object(Bucket=bucket, Key=key, Body=b"age\n40\n")  # a newer push over the same key
    commit = commit_dvc_file(tmp_path, [pushed("part-1.csv", version)])

    args = ["pipeline", "start", "--stack", "dev", "--data-rev", "HEAD", "--dvc-repo", str(tmp_path)]
    assert main(args) == EXIT_OK
    out = capsys.readouterr().out
    staged = f"s3://{bucket}/revisions/adult-income/{commit}/"
    assert f"data: {staged} (DVC revision {commit}, 1 file(s))" in out
    assert s3.get_object(Bucket=bucket, Key=f"revisions/adult-income/{commit}/part-1.csv")["Body"].read() == \
        b"age\n39\n"
    arn = re.search(r"^execution (arn:\S+): ", out, re.M).group(1)  # type: ignore[union-attr]
    parameters = aws.sagemaker(dev.region).list_pipeline_parameters_for_execution(PipelineExecutionArn=arn)
    assert {p["Name"]: p["Value"] for p in parameters["PipelineParameters"]}.items() >= {
        "InputDataUri": staged, "DataRevision": commit}.items()

    assert main([*args, "--parameter", "InputDataUri=s3://elsewhere/"]) == EXIT_BAD_INPUT
    assert "give --data-rev or --parameter InputDataUri, not both" in capsys.readouterr().err
    assert main(["pipeline", "start", "--stack", "dev", "--parameter", f"DataRevision={commit}"]) == EXIT_BAD_INPUT
    assert "DataRevision is set by --data-rev" in capsys.readouterr().err

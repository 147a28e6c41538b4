"""mlops.comparison: the same-data comparison job `release promote` starts, as a request and as a SageMaker job."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops import comparison
from mlops.comparison import SageMakerJobs, SameData, job_request
from mlops.naming import Arns, Names
from mlops.registry import APPROVED, Aws, ReleaseError, describe_package
from mlops.settings import StackSettings
from model_code import champion
from tests.mlops.moto_aws import Registry, copy_stack_files, load, moto_aws


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    with moto_aws(monkeypatch) as aws:
        yield aws


@pytest.fixture
def dev(tmp_path: Path) -> StackSettings:
    return load(copy_stack_files(tmp_path)["dev"])


def test_the_request_scores_the_candidates_model_on_its_own_split_in_its_image(dev: StackSettings, aws: Aws) -> None:
    reg = Registry(dev, aws)
    pinned, candidate = reg.register(0.85, APPROVED), reg.register(0.9, APPROVED)
    package = describe_package(candidate, aws=aws)
    request = job_request(dev, package, pinned, 0.01, execution_id="e1")
    names = Names.of(dev)
    assert request["ProcessingJobName"] == f"{names.comparison_job_prefix}-e1"
    assert request["AppSpecification"]["ImageUri"] == package.image
    assert request["AppSpecification"]["ContainerEntrypoint"] == ["python", "-m", "model_code", "champion"]
    parsed = champion.build_parser().parse_args(request["AppSpecification"]["ContainerArguments"])
    assert (parsed.champion_package, parsed.min_improvement, parsed.region) == (pinned, 0.01, dev.region)
    inputs = {i["InputName"]: i["S3Input"] for i in request["ProcessingInputs"]}
    assert inputs["model"]["S3Uri"] == package.model_data_url and str(parsed.model) == inputs["model"]["LocalPath"]
    assert inputs["test"]["S3Uri"] == package.metadata["test_data_uri"] == "s3://artifacts/pipelines/run-2/Preprocess/test"
    assert str(parsed.test) == inputs["test"]["LocalPath"]
    assert request["RoleArn"] == names.execution_role_arn
    key = Arns(names).alias
    assert request["ProcessingOutputConfig"]["KmsKeyId"] == key
    assert request["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"] == key
    output = request["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]
    assert output["S3Uri"] == f"s3://{names.bucket('artifacts')}/promotion/comparisons/e1"
    assert str(parsed.output) == output["LocalPath"]


def test_the_report_contract_is_the_one_the_step_writes() -> None:
    assert comparison.REPORT_FORMAT == (champion.COMPARISON_FORMAT, champion.COMPARISON_FORMAT_VERSION)
    assert comparison.REPORT_NAME == champion.COMPARISON_NAME


def test_a_sagemaker_job_is_created_waited_for_and_its_report_read(dev: StackSettings, aws: Aws) -> None:
    """moto records the job and reports it Completed at once; its report is put where the job would write it."""
    reg = Registry(dev, aws)
    pinned, candidate = reg.register(0.85, APPROVED), reg.register(0.9, APPROVED)
    request = job_request(dev, describe_package(candidate, aws=aws), pinned, 0.0, execution_id="e2")
    s3 = aws.client("s3", dev.region)
    bucket = Names.of(dev).bucket("artifacts")
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": dev.region})
    report = {"format": champion.COMPARISON_FORMAT, "format_version": 1,
              "primary_metric": {"name": "auc", "direction": "higher"}, "challenger": {"value": 0.9},
              "champion": {"model_package_arn": pinned, "status": "scored", "value": 0.85, "reason": ""},
              "required": 0.85, "passed": True}
    s3.put_object(Bucket=bucket, Key="promotion/comparisons/e2/comparison.json", Body=json.dumps(report).encode())

    read = SageMakerJobs(aws, dev.region, poll_seconds=0)(request)

    assert read == report
    job = aws.sagemaker(dev.region).describe_processing_job(ProcessingJobName=request["ProcessingJobName"])
    assert job["ProcessingJobStatus"] == "Completed"
    assert job["AppSpecification"]["ContainerArguments"] == request["AppSpecification"]["ContainerArguments"]
    same = SameData.from_report(read, "s3://x/test", request["ProcessingJobName"])
    assert (same.candidate, same.pinned, same.required, same.passed) == (0.9, 0.85, 0.85, True)
    with pytest.raises(ReleaseError, match="wrote no mlops-stack/champion-comparison v1 report"):
        SameData.from_report({**report, "format_version": 2}, "s3://x/test", "j")


def test_a_source_stack_with_a_created_vpc_runs_its_comparison_job_there(dev: StackSettings, aws: Aws) -> None:
    """The ids EC2 gave the stack's VPC (tags and group name as infra/components/network.py declares them)."""
    from dataclasses import replace

    from mlops.settings import PROJECT

    source = replace(dev, vpc_create=True)
    ec2 = aws.client("ec2", dev.region)
    with pytest.raises(ReleaseError, match="0 security groups named mlops-stack-dev-workload carry its tags"):
        comparison.created_vpc(source, aws)
    tags = [{"Key": "project", "Value": PROJECT}, {"Key": "environment", "Value": dev.stack}]
    spec = lambda kind: [{"ResourceType": kind, "Tags": tags}]  # noqa: E731
    vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16", TagSpecifications=spec("vpc"))["Vpc"]["VpcId"]
    subnets = sorted(ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, TagSpecifications=spec("subnet"))["Subnet"]["SubnetId"]
                     for cidr in ("10.40.0.0/20", "10.40.16.0/20"))
    ec2.create_subnet(VpcId=vpc, CidrBlock="10.40.32.0/20")  # not the stack's: untagged
    other = ec2.create_vpc(CidrBlock="10.50.0.0/16", TagSpecifications=spec("vpc"))["Vpc"]["VpcId"]
    ec2.create_subnet(VpcId=other, CidrBlock="10.50.0.0/20", TagSpecifications=spec("subnet"))  # another VPC's
    group = ec2.create_security_group(GroupName=Names.of(dev).resource("workload", "ec2"), Description="w", VpcId=vpc,
                                      TagSpecifications=spec("security-group"))["GroupId"]

    found = comparison.created_vpc(source, aws)

    assert (list(found.subnets), list(found.security_groups)) == (subnets, [group])
    reg = Registry(dev, aws)
    pinned, candidate = reg.register(0.85, APPROVED), reg.register(0.9, APPROVED)
    request = job_request(source, describe_package(candidate, aws=aws), pinned, 0.0, execution_id="e3")
    assert "VpcConfig" not in request["NetworkConfig"]  # known only in AWS, once EC2 made the VPC
    with pytest.raises(ReleaseError):  # no report in the (absent) bucket: the job was created first
        SageMakerJobs(aws, dev.region, poll_seconds=0, source=source)(request)
    job = aws.sagemaker(dev.region).describe_processing_job(ProcessingJobName=request["ProcessingJobName"])
    assert job["NetworkConfig"]["VpcConfig"] == {"SecurityGroupIds": [group], "Subnets": subnets}

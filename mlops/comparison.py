"""Promotion on the same data: a candidate package and a stack's pinned model, scored on the candidate's test split.

Each package's recorded test metric is measured on its own split; after a drift retrain that is the
old population against the new one. `mlops release promote` therefore runs one processing job
(`pipelines.monitoring.comparison_job_request`: `python -m model_code champion` in the candidate's
image, with the source stack's execution role) that scores both on the split the candidate's pipeline
execution recorded (`test_data_uri` in its metadata), and promotes only when the candidate reaches
the pinned model's score plus the target's `promotionMinImprovement`: the rule, and the code, of the
pipeline's CheckChampion step.

Where the job runs: in AWS a SageMaker processing job in the source stack (`SageMakerJobs`: create,
wait, read the report from S3), in the source stack's VPC when it has one (a created VPC's ids are looked up
by the stack's tags: `created_vpc`); in local mode the same request through the local executor
(`mlops/local/comparison_job.py`).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlops.naming import Arns, Names
from mlops.registry import Aws, ModelPackage, ReleaseError, aws_call
from mlops.settings import PROJECT, StackSettings
from pipelines.monitoring import comparison_job_request
from pipelines.network import Vpc
from pipelines.training import TEST_DATA_URI_KEY

REPORT_FORMAT = ("mlops-stack/champion-comparison", 1)  # model_code/champion.py (a test keeps them equal)
REPORT_NAME = "comparison.json"
POLL_SECONDS = 15.0


@dataclass(frozen=True)
class SameData:
    """The comparison job's verdict."""

    metric: str
    candidate: float
    pinned: float | None
    """The pinned model's score on the candidate's split (None when it could not be compared: see `reason`)."""
    required: float
    passed: bool
    status: str
    reason: str
    test_data_uri: str
    job: str

    @classmethod
    def from_report(cls, report: dict[str, Any], test_data_uri: str, job: str) -> SameData:
        if (report.get("format"), report.get("format_version")) != REPORT_FORMAT:
            raise ReleaseError(f"comparison job {job} wrote no {REPORT_FORMAT[0]} v{REPORT_FORMAT[1]} report")
        champion = report["champion"]
        return cls(metric=report["primary_metric"]["name"], candidate=float(report["challenger"]["value"]),
                   pinned=None if champion["value"] is None else float(champion["value"]),
                   required=float(report["required"]), passed=bool(report["passed"]), status=champion["status"],
                   reason=champion.get("reason") or "", test_data_uri=test_data_uri, job=job)


Runner = Callable[[dict[str, Any]], dict[str, Any]]
"""Runs a comparison job request; returns its report (parsed comparison.json)."""


def job_request(source: StackSettings, candidate: ModelPackage, pinned_arn: str, min_improvement: float,
                execution_id: str | None = None) -> dict[str, Any]:
    """The comparison job of `candidate` against `pinned_arn` (ReleaseError when the candidate cannot be compared)."""
    test_uri = candidate.metadata.get(TEST_DATA_URI_KEY, "")
    missing = [what for what, value in (("test_data_uri metadata", test_uri), ("image", candidate.image),
                                        ("ModelDataUrl", candidate.model_data_url)) if not value]
    if missing:
        raise ReleaseError(f"model package {candidate.arn} records no {', no '.join(missing)}: it cannot be scored "
                           "against the target's model on the same data (registered before the pipeline recorded "
                           "its test split?); force to promote on its own metric")
    names = Names.of(source)
    return comparison_job_request(
        source, image_uri=candidate.image, model_data_url=candidate.model_data_url, test_data_uri=test_uri,
        champion_arn=pinned_arn, min_improvement=min_improvement, role_arn=names.execution_role_arn,
        key_arn=Arns(names).alias,
        execution_id=execution_id or f"{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}")


def compare(source: StackSettings, candidate: ModelPackage, pinned_arn: str, min_improvement: float,
            run: Runner) -> SameData:
    request = job_request(source, candidate, pinned_arn, min_improvement)
    test_uri = candidate.metadata[TEST_DATA_URI_KEY]
    return SameData.from_report(run(request), test_uri, request["ProcessingJobName"])


def created_vpc(settings: StackSettings, aws: Aws) -> Vpc:
    """The subnets and workload security group of the VPC a stack created (infra/components/network.py), found by the
    stack's tags and the group's name: the ids are EC2's, known only once it made them."""
    ec2, names = aws.client("ec2", settings.region), Names.of(settings)
    tagged = [{"Name": "tag:project", "Values": [PROJECT]}, {"Name": "tag:environment", "Values": [settings.stack]}]
    group_name = names.resource("workload", "ec2")
    groups = aws_call("finding the stack's workload security group", ec2.describe_security_groups,
                      Filters=[*tagged, {"Name": "group-name", "Values": [group_name]}])["SecurityGroups"]
    if len(groups) != 1:
        raise ReleaseError(f"stack {settings.stack} sets vpcCreate, but {len(groups)} security groups named "
                           f"{group_name} carry its tags in {settings.region} (1 expected): deploy the stack first "
                           "(pulumi up)")
    subnets = aws_call("finding the stack's subnets", ec2.describe_subnets,
                       Filters=[*tagged, {"Name": "vpc-id", "Values": [groups[0]["VpcId"]]}])["Subnets"]
    if not subnets:
        raise ReleaseError(f"stack {settings.stack}'s VPC {groups[0]['VpcId']} has no subnet carrying its tags")
    return Vpc(tuple(sorted(s["SubnetId"] for s in subnets)), (groups[0]["GroupId"],))


@dataclass
class SageMakerJobs:
    """Runs the request as a SageMaker processing job and reads its report from the job's S3 output; a source stack
    with a created VPC (`source`) runs it there, as its pipeline runs its CompareChampion step."""

    aws: Aws
    region: str
    poll_seconds: float = POLL_SECONDS
    source: StackSettings | None = None

    def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        sagemaker, name = self.aws.sagemaker(self.region), request["ProcessingJobName"]
        if self.source is not None and self.source.vpc_create:
            request = {**request, "NetworkConfig": {**request["NetworkConfig"],
                                                    "VpcConfig": created_vpc(self.source, self.aws).request()}}
        aws_call(f"creating comparison job {name}", sagemaker.create_processing_job, **request)
        try:
            while True:
                job = aws_call(f"describing comparison job {name}", sagemaker.describe_processing_job,
                               ProcessingJobName=name)
                status = job["ProcessingJobStatus"]
                if status in ("Completed", "Failed", "Stopped"):
                    break
                time.sleep(self.poll_seconds)
        except KeyboardInterrupt:  # a promotion interrupted leaves no job running
            aws_call(f"stopping comparison job {name}", sagemaker.stop_processing_job, ProcessingJobName=name)
            raise
        if status != "Completed":
            raise ReleaseError(f"comparison job {name} {status}: {job.get('FailureReason') or job.get('ExitMessage')}")
        uri = request["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"]
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        body = aws_call(f"reading the report of comparison job {name}", self.aws.client("s3", self.region).get_object,
                        Bucket=bucket, Key=f"{prefix}/{REPORT_NAME}")["Body"].read()
        return json.loads(body)

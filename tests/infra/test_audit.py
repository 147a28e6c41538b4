"""Audit (infra/components/audit.py): the stack's trail and its SageMaker log groups, and the rights each needs."""

from __future__ import annotations

import pytest

from mlops.naming import Arns, Names
from mlops.plan import Plan, plan_stack_file
from mlops.settings import StackSettings, load_stack, stack_file
from policies.offline import evaluate
from tests.infra.helpers import by_bucket, image_of, role_policies, statements

PACKAGE = "arn:aws:sagemaker:eu-west-1:111111111111:model-package/mlops-stack-dev/3"
SERVED = {"mlops-stack:approvedModelPackageArn": PACKAGE, "mlops-stack:approvedModelImageUri": image_of(PACKAGE)}
ORG_TRAIL = "arn:aws:cloudtrail:eu-west-1:999999999999:trail/acme-organization"


def _trail(plan: Plan) -> dict:
    (trail,) = plan.of_type("aws:cloudtrail/trail:Trail")
    return trail.inputs


def _key_statements(plan: Plan) -> dict[str, dict]:
    (key,) = plan.of_type("aws:kms/key:Key")
    return {s["Sid"]: s for s in statements(key.inputs["policy"])}


def test_the_trail_records_everything_encrypted_and_validated(plan: Plan, settings: StackSettings) -> None:
    names = Names.of(settings)
    trail = _trail(plan)
    assert trail["name"] == names.trail
    assert (trail["s3BucketName"], trail["s3KeyPrefix"]) == (names.bucket("logs"), "cloudtrail")
    assert trail["kmsKeyId"] == plan.outputs["kmsKeyArn"]
    assert trail["enableLogFileValidation"] is trail["isMultiRegionTrail"] is trail["includeGlobalServiceEvents"]
    assert trail["enableLogFileValidation"] is True
    (selector,) = trail["eventSelectors"]
    assert (selector["readWriteType"], selector["includeManagementEvents"]) == ("All", True)
    assert selector["dataResources"] == [{"type": "AWS::S3::Object", "values": [
        f"arn:aws:s3:::{names.bucket('data')}/", f"arn:aws:s3:::{names.bucket('artifacts')}/"]}]
    assert plan.outputs["auditTrailArn"] == Arns(names).trail


def test_cloudtrail_may_write_where_the_trail_writes_and_encrypt_for_this_trail_only(
        plan: Plan, settings: StackSettings) -> None:
    names, trail = Names.of(settings), _trail(plan)
    policy = by_bucket(plan, "aws:s3/bucketPolicy:BucketPolicy")[trail["s3BucketName"]]
    delivers = {s["Sid"]: s for s in statements(policy.inputs["policy"])}["CloudTrailDelivers"]
    assert delivers["Resource"] == (f"arn:aws:s3:::{trail['s3BucketName']}/{trail['s3KeyPrefix']}/AWSLogs/"
                                    f"{settings.account_id}/*")  # where CloudTrail puts a trail's files
    assert delivers["Condition"]["StringEquals"]["aws:SourceArn"] == plan.outputs["auditTrailArn"]
    key = _key_statements(plan)
    for sid in ("CloudTrailEncryptsStackTrail", "CloudTrailDescribesKey"):
        assert key[sid]["Principal"] == {"Service": "cloudtrail.amazonaws.com"}
        assert key[sid]["Condition"]["StringEquals"] == {"aws:SourceArn": Arns(names).trail}
    # DescribeKey carries no encryption context: under the context condition CreateTrail would be refused
    assert "StringLike" not in key["CloudTrailDescribesKey"]["Condition"]
    assert key["CloudTrailEncryptsStackTrail"]["Condition"]["StringLike"] == {
        "kms:EncryptionContext:aws:cloudtrail:arn": f"arn:aws:cloudtrail:*:{settings.account_id}:trail/*"}


def test_sagemaker_log_groups_expire_and_use_the_stack_key(settings: StackSettings) -> None:
    plan = plan_stack_file(stack_file(settings.stack), SERVED)
    groups = {r.inputs["name"]: r for r in plan.of_type("aws:cloudwatch/logGroup:LogGroup")}
    assert set(groups) == {"/aws/sagemaker/ProcessingJobs", "/aws/sagemaker/TrainingJobs",
                           f"/aws/sagemaker/Endpoints/{Names.of(settings).endpoint}"}
    for group in groups.values():
        assert group.inputs["retentionInDays"] == settings.log_retention_days
        assert group.inputs["kmsKeyId"] == plan.outputs["kmsKeyArn"]
        assert group.protect is settings.protect_resources
    logs = _key_statements(plan)["LogsEncryptSageMakerLogGroups"]
    assert logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"].endswith(":log-group:/aws/sagemaker/*")
    deploy = role_policies(plan)[Names.of(settings).deploy_role]
    (managed,) = [s for s in deploy["Statement"] if s["Sid"] == "ManageSageMakerLogGroups"]
    assert sorted(managed["Resource"]) == sorted(
        f"arn:aws:logs:{settings.region}:{settings.account_id}:log-group:{name}{tail}" for name in groups
        for tail in ("", ":*"))


def test_an_organization_trail_replaces_the_stacks_and_its_rights() -> None:
    plan = plan_stack_file(stack_file("prod"), {"mlops-stack:existingTrailArn": ORG_TRAIL})
    assert not plan.of_type("aws:cloudtrail/trail:Trail")
    assert plan.outputs["auditTrailArn"] == ORG_TRAIL
    assert "CloudTrailEncryptsStackTrail" not in _key_statements(plan)
    logs_policy = by_bucket(plan, "aws:s3/bucketPolicy:BucketPolicy")[Names.of(load_stack("prod")).bucket("logs")]
    assert not [s for s in statements(logs_policy.inputs["policy"]) if "cloudtrail" in str(s["Principal"])]
    deploy = role_policies(plan)["mlops-stack-prod-ci-deploy"]
    assert not [a for s in deploy["Statement"] for a in s["Action"] if a.startswith("cloudtrail:")]
    assert evaluate([r.as_json() for r in plan.resources]) == []


def test_a_second_stack_of_the_account_leaves_the_job_log_groups_to_the_first() -> None:
    plan = plan_stack_file(stack_file("dev"), {"mlops-stack:sagemakerJobLogGroups": "false"})
    assert not plan.of_type("aws:cloudwatch/logGroup:LogGroup")  # dev serves nothing yet: no endpoint group
    deploy = role_policies(plan)["mlops-stack-dev-ci-deploy"]
    (managed,) = [s for s in deploy["Statement"] if s["Sid"] == "ManageSageMakerLogGroups"]
    group = f"arn:aws:logs:eu-west-1:111111111111:log-group:/aws/sagemaker/Endpoints/{Names.of(load_stack('dev')).endpoint}"
    assert managed["Resource"] == [group, f"{group}:*"]


@pytest.mark.parametrize("stack_name", ["dev", "prod"])
def test_every_stack_is_audited_without_a_violation(stack_name: str) -> None:
    plan = plan_stack_file(stack_file(stack_name), {**SERVED, "mlops-stack:imageTag": "0123abc"})
    assert plan.of_type("aws:cloudtrail/trail:Trail")
    assert evaluate([r.as_json() for r in plan.resources]) == []

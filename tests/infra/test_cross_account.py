"""Prod deploys models dev registered: dev shares them with prod's account, prod's role reads them."""

from __future__ import annotations

import json

import pytest

from mlops.naming import Names
from mlops.plan import Plan, plan_stack_file
from mlops.settings import load_stack, stack_file
from tests.infra.helpers import image_of, statements

DEV_PACKAGE = "arn:aws:sagemaker:eu-west-1:111111111111:model-package/mlops-stack-dev/4"


@pytest.fixture(scope="module")
def dev_plan() -> Plan:
    return plan_stack_file(stack_file("dev"), {"mlops-stack:imageTag": "abc1234"})


@pytest.fixture(scope="module")
def prod_plan() -> Plan:
    return plan_stack_file(stack_file("prod"), {"mlops-stack:approvedModelPackageArn": DEV_PACKAGE,
                                                "mlops-stack:approvedModelImageUri": image_of(DEV_PACKAGE)})


def test_dev_shares_packages_image_and_artifacts_with_prod(dev_plan: Plan) -> None:
    dev, prod = load_stack("dev"), load_stack("prod")
    assert dev.model_consumers == [prod.account_id]
    consumer = {"AWS": [f"arn:aws:iam::{prod.account_id}:root"]}
    [group_policy] = dev_plan.of_type("aws:sagemaker/modelPackageGroupPolicy:ModelPackageGroupPolicy")
    [grant] = json.loads(group_policy.inputs["resourcePolicy"])["Statement"]
    assert grant["Principal"] == consumer
    assert set(grant["Action"]) == {"sagemaker:DescribeModelPackage", "sagemaker:DescribeModelPackageGroup",
                                    "sagemaker:ListModelPackages"}
    [repository_policy] = dev_plan.of_type("aws:ecr/repositoryPolicy:RepositoryPolicy")
    [pull] = json.loads(repository_policy.inputs["policy"])["Statement"]
    assert pull["Principal"] == consumer and "ecr:BatchGetImage" in pull["Action"]


def test_prod_execution_role_reads_the_pinned_dev_model(prod_plan: Plan) -> None:
    source = Names("dev", "111111111111", "eu-west-1")
    policy = next(r for r in prod_plan.of_type("aws:iam/rolePolicy:RolePolicy") if r.name == "access-execution-policy")
    by_sid = {s["Sid"]: s for s in statements(policy.inputs["policy"])}
    assert by_sid["DescribeSourceModel"]["Resource"] == [DEV_PACKAGE]
    assert by_sid["ReadSourceModelArtifacts"]["Resource"] == [f"arn:aws:s3:::{source.bucket('artifacts')}/pipelines/*"]
    assert by_sid["PullSourceModelImage"]["Resource"] == [
        f"arn:aws:ecr:eu-west-1:111111111111:repository/{source.ecr_repository}"]
    decrypt = by_sid["DecryptSourceModel"]
    assert decrypt["Condition"]["ForAnyValue:StringEquals"] == {"kms:ResourceAliases": [source.kms_alias]}


def test_no_cross_account_reads_without_a_foreign_pin(plan: Plan) -> None:
    policy = next(r for r in plan.of_type("aws:iam/rolePolicy:RolePolicy") if r.name == "access-execution-policy")
    assert not [s for s in statements(policy.inputs["policy"]) if "Source" in s["Sid"]]

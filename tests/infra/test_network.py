"""The stack's network (infra/components/network.py, pipelines/network.py): prod's jobs and endpoint in a VPC with no
way to the internet, every step isolated that calls nothing, and a stack naming existing subnets declaring none."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest

from mlops.naming import Names
from mlops.plan import Plan, plan_stack_file
from mlops.settings import load_stack, stack_file
from policies.offline import evaluate
from tests.infra.helpers import image_of, role_boundaries, role_policies

PACKAGE = "arn:aws:sagemaker:eu-west-1:111111111111:model-package/mlops-stack-dev/3"
EVERYTHING = {"mlops-stack:imageTag": "0123abc", "mlops-stack:approvedModelPackageArn": PACKAGE,
              "mlops-stack:approvedModelImageUri": image_of(PACKAGE)}
EXISTING = {"mlops-stack:vpcCreate": "false", "mlops-stack:vpcSubnetIds": "subnet-0123abcd,subnet-4567abcd",
            "mlops-stack:vpcSecurityGroupIds": "sg-0123abcd"}
ISOLATED = {"Validate", "Preprocess"}  # call nothing; Train and Evaluate log to MLflow, the others call SageMaker


@pytest.fixture(scope="module")
def prod() -> Plan:
    return plan_stack_file(stack_file("prod"), EVERYTHING)


def _one(plan: Plan, type_token: str) -> dict[str, Any]:
    (found,) = plan.of_type(type_token)
    return found.inputs


def _steps(plan: Plan) -> dict[str, dict[str, Any]]:
    definition = json.loads(_one(plan, "aws:sagemaker/pipeline:Pipeline")["pipelineDefinition"])
    found = {}
    for step in definition["Steps"]:
        found[step["Name"]] = step
        for nested in (*step["Arguments"].get("IfSteps", []), *step["Arguments"].get("ElseSteps", [])):
            found[nested["Name"]] = nested
    return found


def _job_network(step: dict[str, Any]) -> tuple[dict | None, bool]:
    """(VpcConfig, network isolation) of a Processing or Training step."""
    arguments = step["Arguments"]
    if step["Type"] == "Processing":
        return arguments["NetworkConfig"].get("VpcConfig"), bool(arguments["NetworkConfig"].get("EnableNetworkIsolation"))
    return arguments.get("VpcConfig"), bool(arguments.get("EnableNetworkIsolation"))


def test_prod_runs_in_a_vpc_with_no_way_to_the_internet(prod: Plan) -> None:
    settings = load_stack("prod")
    assert settings.protect_resources and settings.vpc_create
    vpc = _one(prod, "aws:ec2/vpc:Vpc")
    assert (vpc["cidrBlock"], vpc["enableDnsSupport"], vpc["enableDnsHostnames"]) == (settings.vpc_cidr, True, True)
    assert not [r for r in prod.resources if r.type.split("/")[-1].split(":")[0] in
                ("internetGateway", "natGateway", "egressOnlyInternetGateway", "route", "eip")]
    subnets = [r.inputs for r in prod.of_type("aws:ec2/subnet:Subnet")]
    assert len(subnets) == settings.vpc_availability_zones
    assert len({s["availabilityZone"] for s in subnets}) == len(subnets)
    assert all(s["mapPublicIpOnLaunch"] is False for s in subnets)
    assert all(ipaddress.ip_network(s["cidrBlock"]).subnet_of(ipaddress.ip_network(settings.vpc_cidr)) for s in subnets)
    (route_table,) = prod.of_type("aws:ec2/routeTable:RouteTable")
    assert "routes" not in route_table.inputs or route_table.inputs["routes"] == []  # the local route only
    assert len(prod.of_type("aws:ec2/routeTableAssociation:RouteTableAssociation")) == len(subnets)


def test_every_api_the_jobs_call_has_a_private_endpoint(prod: Plan) -> None:
    endpoints = {r.inputs["serviceName"]: r.inputs for r in prod.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")}
    region = "eu-west-1"
    interface = {f"com.amazonaws.{region}.{s}" for s in
                 ("sagemaker.api", "sagemaker.runtime", "ecr.api", "ecr.dkr", "logs", "monitoring", "sts", "kms")}
    assert set(endpoints) == interface | {f"com.amazonaws.{region}.s3", f"aws.sagemaker.{region}.experiments"}
    assert endpoints[f"com.amazonaws.{region}.s3"]["vpcEndpointType"] == "Gateway"
    subnets = {r.inputs["cidrBlock"] for r in prod.of_type("aws:ec2/subnet:Subnet")}
    for name in interface:
        assert endpoints[name]["vpcEndpointType"] == "Interface"
        assert endpoints[name]["privateDnsEnabled"] is True  # the SDKs' default endpoints resolve inside the VPC
        assert len(endpoints[name]["subnetIds"]) == len(subnets)


def test_security_groups_open_https_to_the_endpoints_and_s3_only(prod: Plan) -> None:
    groups = {r.inputs["name"]: r.inputs for r in prod.of_type("aws:ec2/securityGroup:SecurityGroup")}
    workload, endpoints = groups["mlops-stack-prod-workload"], groups["mlops-stack-prod-endpoints"]
    cidr = load_stack("prod").vpc_cidr
    outside = [rule for rule in workload["egress"] if not rule.get("self")]
    assert all((rule["protocol"], rule["fromPort"], rule["toPort"]) == ("tcp", 443, 443) for rule in outside)
    to_vpc, to_s3 = sorted(outside, key=lambda rule: "prefixListIds" in rule)
    assert to_vpc["cidrBlocks"] == [cidr]  # the interface endpoints
    assert len(to_s3["prefixListIds"]) == 1 and to_s3["prefixListIds"][0].startswith("pl-")  # the S3 gateway's
    assert not [rule for rule in (*workload["egress"], *endpoints["egress"]) if "0.0.0.0/0" in rule.get("cidrBlocks", [])]
    assert all(rule.get("self") for rule in workload["ingress"])  # members only (distributed training)
    (admitted,) = endpoints["ingress"]
    assert (admitted["fromPort"], admitted["securityGroups"]) == (443, prod.outputs["vpcSecurityGroupIds"])


def test_the_model_every_pipeline_job_and_every_scheduled_job_run_in_the_vpc(prod: Plan) -> None:
    subnets, groups = prod.outputs["vpcSubnetIds"], prod.outputs["vpcSecurityGroupIds"]
    assert len(subnets) == 2 and groups
    model = _one(prod, "aws:sagemaker/model:Model")
    assert model["vpcConfig"] == {"subnets": subnets, "securityGroupIds": groups}
    assert model["enableNetworkIsolation"] is True
    jobs = {name: step for name, step in _steps(prod).items() if step["Type"] in ("Processing", "Training")}
    assert set(jobs) >= {"CooldownGuard", "Validate", "Preprocess", "Train", "Evaluate", "CompareChampion"}
    for name, step in jobs.items():
        assert _job_network(step)[0] == {"SecurityGroupIds": groups, "Subnets": subnets}, name
    schedules = prod.of_type("aws:scheduler/schedule:Schedule")
    assert len(schedules) == 2  # drift, quality
    for schedule in schedules:
        request = json.loads(schedule.inputs["target"]["input"])
        assert request["NetworkConfig"]["VpcConfig"] == {"SecurityGroupIds": groups, "Subnets": subnets}
        assert "EnableNetworkIsolation" not in request["NetworkConfig"]  # they call S3, SageMaker, CloudWatch


@pytest.mark.parametrize("mlflow", [True, False])
def test_steps_that_call_nothing_run_network_isolated(mlflow: bool) -> None:
    plan = plan_stack_file(stack_file("dev"), {**EVERYTHING, "mlops-stack:mlflowEnabled": str(mlflow).lower()})
    isolated = {name for name, step in _steps(plan).items()
                if step["Type"] in ("Processing", "Training") and _job_network(step)[1]}
    assert isolated == ISOLATED | (set() if mlflow else {"Train", "Evaluate"})
    assert _one(plan, "aws:sagemaker/model:Model")["enableNetworkIsolation"] is True


def test_tuning_jobs_run_in_the_vpc_too() -> None:
    plan = plan_stack_file(stack_file("prod"), {**EVERYTHING, "mlops-stack:tuningMaxJobs": "4"})
    definition = _steps(plan)["Train"]["Arguments"]["TrainingJobDefinition"]
    assert definition["VpcConfig"] == {"SecurityGroupIds": plan.outputs["vpcSecurityGroupIds"],
                                       "Subnets": plan.outputs["vpcSubnetIds"]}


def test_existing_subnets_are_used_as_given_and_nothing_is_declared() -> None:
    plan = plan_stack_file(stack_file("prod"), {**EVERYTHING, **EXISTING})
    assert not [r for r in plan.resources if r.type.startswith("aws:ec2/")]
    expected = {"SecurityGroupIds": ["sg-0123abcd"], "Subnets": ["subnet-0123abcd", "subnet-4567abcd"]}
    assert _job_network(_steps(plan)["Validate"])[0] == expected
    assert _one(plan, "aws:sagemaker/model:Model")["vpcConfig"] == {"subnets": expected["Subnets"],
                                                                   "securityGroupIds": expected["SecurityGroupIds"]}
    assert evaluate([r.as_json() for r in plan.resources]) == []


def test_a_stack_outside_a_vpc_declares_no_network_and_no_ec2_rights(plans: dict[str, Plan]) -> None:
    dev = plans["dev"]
    assert not load_stack("dev").in_vpc
    assert not [r for r in dev.resources if r.type.startswith("aws:ec2/")]
    assert dev.outputs["vpcSubnetIds"] == []
    for role, policy in role_policies(dev).items():
        assert not [a for s in policy["Statement"] for a in s["Action"] if a.startswith("ec2:")], role


def test_only_the_execution_role_attaches_network_interfaces(prod: Plan) -> None:
    """SageMaker creates the jobs' and the endpoint's interfaces with the execution role; the boundary allows it."""
    n = Names.of(load_stack("prod"))
    for role, policy in role_policies(prod).items():
        attaches = [s for s in policy["Statement"] if "ec2:CreateNetworkInterface" in s["Action"]]
        assert bool(attaches) == (role == n.execution_role), role
    boundary = role_boundaries(prod)[n.execution_role]
    assert boundary is not None
    assert any("ec2:CreateNetworkInterface" in s["Action"] for s in boundary["Statement"])


def test_no_role_creates_a_job_or_model_outside_the_vpc(prod: Plan) -> None:
    """IAM, not only the plan: in a VPC stack every role that creates jobs or models names subnets, and the model is
    network-isolated in every stack (sagemaker:VpcSubnets, sagemaker:NetworkIsolation)."""
    from tests.infra.iam import allows

    n, policies = Names.of(load_stack("prod")), role_policies(prod)
    sm = f"arn:aws:sagemaker:{n.region}:{n.account_id}"
    subnets = {"sagemaker:VpcSubnets": prod.outputs["vpcSubnetIds"]}
    for role, action, resource in (
            (n.execution_role, "sagemaker:CreateProcessingJob", f"{sm}:processing-job/pipelines-x1y2-validate"),
            (n.execution_role, "sagemaker:CreateTrainingJob", f"{sm}:training-job/pipelines-x1y2-train"),
            (n.role("monitor-scheduler"), "sagemaker:CreateProcessingJob", f"{sm}:processing-job/{n.drift_job_prefix}-e1"),
            (n.deploy_role, "sagemaker:CreateProcessingJob", f"{sm}:processing-job/{n.comparison_job_prefix}-e1")):
        assert allows(policies[role], action, resource, subnets), (role, action)
        assert not allows(policies[role], action, resource, {}), (role, action)
    model = f"{sm}:model/{n.prefix}-abcd1234"
    assert allows(policies[n.deploy_role], "sagemaker:CreateModel", model,
                  {**subnets, "sagemaker:NetworkIsolation": "true"})
    assert not allows(policies[n.deploy_role], "sagemaker:CreateModel", model,
                      {**subnets, "sagemaker:NetworkIsolation": "false"})
    assert not allows(policies[n.deploy_role], "sagemaker:CreateModel", model, {"sagemaker:NetworkIsolation": "true"})

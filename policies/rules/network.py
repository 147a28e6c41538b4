"""Network rules: a protected stack runs every job and its endpoint in a VPC; nothing opens the network wide.

"Protected" is the stack whose stateful resources carry Pulumi's `protect` (settings: protectResources): the
stack that holds real data. Its SageMaker model, the processing, training and tuning jobs of its pipeline and
the jobs its schedules start must each name subnets and security groups (VpcConfig). Security groups never
admit or send traffic to or from the whole internet, and no stack declares an internet or NAT gateway: the
VPC reaches AWS through its endpoints only (infra/components/network.py).
"""

from __future__ import annotations

import json
from typing import Any

from pulumi_policy import (
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from ._common import InvalidDocument, as_list, dig, inputs, is_blank, is_unknown, parse_document, plain
from .monitoring import CREATE_PROCESSING_JOB, SCHEDULE
from .sagemaker import PIPELINE, models_by_variant_kind, pipeline_steps

MODEL = frozenset({"aws:sagemaker/model:Model"})
SECURITY_GROUP = frozenset({"aws:ec2/securityGroup:SecurityGroup"})
SECURITY_GROUP_RULES = frozenset({"aws:ec2/securityGroupRule:SecurityGroupRule",
                                  "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
                                  "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"})
GATEWAYS = frozenset({"aws:ec2/internetGateway:InternetGateway", "aws:ec2/natGateway:NatGateway",
                      "aws:ec2/egressOnlyInternetGateway:EgressOnlyInternetGateway"})
ANYWHERE = frozenset({"0.0.0.0/0", "::/0"})
# Where each step type holds its VpcConfig (CreateTrainingJob, CreateHyperParameterTuningJob, CreateProcessingJob).
_VPC_PATHS = {
    "Training": ("VpcConfig",),
    "Tuning": ("TrainingJobDefinition", "VpcConfig"),
    "Processing": ("NetworkConfig", "VpcConfig"),
}


def _missing(vpc: Any, subnets: str, groups: str) -> str | None:
    """Why `vpc` names no network, None when it does (or is unknown during preview)."""
    if is_unknown(vpc):
        return None
    if not isinstance(vpc, dict) or is_blank(vpc.get(subnets)) or is_blank(vpc.get(groups)):
        return f"sets no {subnets} and {groups}" if not isinstance(vpc, dict) else (
            f"has {subnets} {json.dumps(vpc.get(subnets))} and {groups} {json.dumps(vpc.get(groups))}")
    return None


def _pipeline_problems(props: dict[str, Any]) -> list[str]:
    try:
        doc = parse_document(props.get("pipelineDefinition"))
    except InvalidDocument:
        return []  # sagemaker-pipeline-steps-kms reports an unreadable definition
    if not doc or is_unknown(doc):
        return []
    found = []
    for name, kind, arguments in pipeline_steps(doc):
        path = _VPC_PATHS.get(kind)
        if path and (why := _missing(dig(arguments, *path), "Subnets", "SecurityGroupIds")):
            found.append(f'pipelineDefinition step "{name}" ({kind}): Arguments.{".".join(path)} {why}')
    return found


def _schedule_problems(props: dict[str, Any]) -> list[str]:
    target = props.get("target")
    request = dig(target, "input")
    if is_unknown(target) or is_unknown(request) or dig(target, "arn") != CREATE_PROCESSING_JOB:
        return []
    try:
        job = json.loads(request) if isinstance(request, str) else None
    except json.JSONDecodeError:
        job = None
    if not isinstance(job, dict):
        return ["target.input is not a CreateProcessingJob request (JSON object)"]
    why = _missing(dig(job, "NetworkConfig", "VpcConfig"), "Subnets", "SecurityGroupIds")
    return [f"target.input's NetworkConfig.VpcConfig {why}"] if why else []


def vpc_when_protected(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    if not any(resource.opts.protect for resource in args.resources):
        return
    for resource in args.resources:
        props = plain(resource.props)
        if resource.resource_type in MODEL:
            problems = [f"vpcConfig {why}"] if (why := _missing(props.get("vpcConfig"), "subnets",
                                                               "securityGroupIds")) else []
        elif resource.resource_type in PIPELINE:
            problems = _pipeline_problems(props)
        elif resource.resource_type in SCHEDULE:
            problems = _schedule_problems(props)
        else:
            continue
        for problem in problems:
            report_violation(f"{problem}: a stack with protected resources (protectResources) runs its model and "
                             "jobs in a VPC (vpcCreate or vpcSubnetIds)", resource.urn)


def _wide_rules(rules: Any) -> list[str]:
    return [cidr for rule in as_list(rules) if isinstance(rule, dict)
            for cidr in (*as_list(rule.get("cidrBlocks")), *as_list(rule.get("ipv6CidrBlocks")),
                         rule.get("cidrIpv4"), rule.get("cidrIpv6")) if cidr in ANYWHERE]


def security_groups_not_open(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if (props := inputs(args, SECURITY_GROUP)) is not None:
        for direction in ("ingress", "egress"):
            for cidr in _wide_rules(props.get(direction)):
                report_violation(f"{direction} rule open to {cidr}: name the VPC's range, a prefix list or a group",
                                 None)
    elif (props := inputs(args, SECURITY_GROUP_RULES)) is not None:
        for cidr in _wide_rules([props]):
            report_violation(f"rule open to {cidr}: name the VPC's range, a prefix list or a group", None)


def no_internet_gateways(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type in GATEWAYS:
        report_violation(f"{args.resource_type.rsplit(':', 1)[1]}: the stack's network reaches AWS through VPC "
                         "endpoints only, never the internet", None)


def model_network_isolation(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    served = models_by_variant_kind(args.resources)
    if served is None:
        return
    exempt = served[0] - served[1]  # SageMaker isolates no serverless endpoint
    for resource in args.resources:
        props = plain(resource.props) if resource.resource_type in MODEL else None
        if props is None or is_unknown(props.get("enableNetworkIsolation")) or is_unknown(props.get("name")) \
                or props.get("name") in exempt:
            continue
        if props.get("enableNetworkIsolation") is not True:
            report_violation("enableNetworkIsolation is not true: the serving container calls nothing (data capture "
                             "is SageMaker's), so it gets no network", resource.urn)


POLICIES = [
    StackValidationPolicy(
        name="network-vpc-when-protected",
        description="A stack with protected resources (protectResources) runs its SageMaker model, the Processing, "
        "Training and Tuning steps of its pipelines and the processing jobs its schedules start in a VPC: each "
        "names subnets and security groups.",
        validate=vpc_when_protected,
    ),
    ResourceValidationPolicy(
        name="network-security-groups-not-open",
        description="No security group or rule admits or sends traffic to 0.0.0.0/0 or ::/0.",
        validate=security_groups_not_open,
    ),
    ResourceValidationPolicy(
        name="network-no-internet-gateways",
        description="No internet, egress-only or NAT gateway: the stack's VPC reaches AWS through VPC endpoints.",
        validate=no_internet_gateways,
    ),
    StackValidationPolicy(
        name="sagemaker-model-network-isolation",
        description="SageMaker models run network-isolated (enableNetworkIsolation true), except a model only "
        "serverless variants serve (SageMaker isolates no serverless endpoint).",
        validate=model_network_isolation,
    ),
]

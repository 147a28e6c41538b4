"""Network: where the stack's jobs and endpoint run when the stack sets a VPC (settings: vpcCreate, vpcSubnetIds).

A created VPC has private subnets only, one per availability zone, with no NAT and no internet gateway:
its one route table holds the local route and the S3 gateway endpoint's. Every AWS API a job calls is an
interface endpoint with private DNS, so the SDKs' default endpoints resolve to addresses in the VPC:
- SageMaker API (the guard's ListPipelineExecutions, CompareChampion's DescribeModelPackage, MLflow's presigned
  URL) and runtime; MLflow's own (`aws.sagemaker.<region>.experiments`) when the stack has MLflow;
- ECR api and dkr (image pulls; the layers themselves come from S3, through the gateway);
- CloudWatch logs (every job's and the endpoint's log stream) and monitoring (the drift and quality metrics);
- STS (the SDKs' credential and identity calls) and KMS (the SDKs' client-side calls on encrypted objects).

Two security groups: the workload's (jobs and endpoint instances), whose egress is HTTPS to the endpoints' group
and to S3's prefix list plus all traffic among its own members (distributed training); and the endpoints', which
admits HTTPS from the workload's only. Nothing else leaves the VPC.

With existing subnets and groups (vpcSubnetIds, vpcSecurityGroupIds) nothing is declared: the ids are passed on.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from mlops.naming import Names
from mlops.settings import StackSettings
from pipelines.network import Vpc

HTTPS = 443
INTERFACE_SERVICES = ("sagemaker.api", "sagemaker.runtime", "ecr.api", "ecr.dkr", "logs", "monitoring", "sts", "kms")
MLFLOW_SERVICE = "aws.sagemaker.{region}.experiments"
"""SageMaker MLflow's PrivateLink service (docs: mlflow-interface-endpoint), named outside com.amazonaws."""


def interface_services(settings: StackSettings) -> list[str]:
    """The service names of the created VPC's interface endpoints."""
    names = [f"com.amazonaws.{settings.region}.{service}" for service in INTERFACE_SERVICES]
    return names + ([MLFLOW_SERVICE.format(region=settings.region)] if settings.mlflow_enabled else [])


def subnet_ranges(settings: StackSettings) -> list[str]:
    """One range per availability zone: the VPC's range split 4 bits smaller, the first ones taken."""
    network = ipaddress.IPv4Network(settings.vpc_cidr)
    subnets = network.subnets(prefixlen_diff=4)
    return [str(next(subnets)) for _ in range(settings.vpc_availability_zones)]


@dataclass(frozen=True)
class NetworkArgs:
    settings: StackSettings
    names: Names
    tags: dict[str, str]


class Network(pulumi.ComponentResource):
    """The subnets and security groups of the stack's jobs and endpoint (outputs), created or given."""

    subnet_ids: pulumi.Output[list[str]]
    security_group_ids: pulumi.Output[list[str]]
    key: str  # what the network is, from the settings alone: the model's name changes with it

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops-stack:network:Network", name, None, opts)
        settings, names = args.settings, args.names
        self.key = (f"created:{settings.vpc_cidr}:{settings.vpc_availability_zones}" if settings.vpc_create
                    else f"existing:{settings.vpc_subnet_ids}:{settings.vpc_security_group_ids}")
        if not settings.vpc_create:
            self.subnet_ids = pulumi.Output.from_input(settings.vpc_subnet_ids.split(","))
            self.security_group_ids = pulumi.Output.from_input(settings.vpc_security_group_ids.split(","))
            self.register_outputs({"subnetIds": self.subnet_ids, "securityGroupIds": self.security_group_ids})
            return
        child = pulumi.ResourceOptions(parent=self)
        tagged = lambda what: {**args.tags, "Name": names.resource(what, "ec2")}  # noqa: E731

        vpc = aws.ec2.Vpc(f"{name}-vpc", cidr_block=settings.vpc_cidr, enable_dns_support=True,
                          enable_dns_hostnames=True, tags=tagged("vpc"), opts=child)
        # Regular zones only: an opted-in Local or Wavelength zone offers neither SageMaker nor interface endpoints.
        zones = aws.get_availability_zones_output(
            state="available", filters=[aws.GetAvailabilityZonesFilterArgs(name="opt-in-status",
                                                                           values=["opt-in-not-required"])],
            opts=pulumi.InvokeOutputOptions(parent=self))
        route_table = aws.ec2.RouteTable(f"{name}-private-routes", vpc_id=vpc.id, tags=tagged("private"), opts=child)
        subnets = []
        for index, cidr in enumerate(subnet_ranges(settings)):
            subnet = aws.ec2.Subnet(
                f"{name}-private-{index}", vpc_id=vpc.id, cidr_block=cidr,
                availability_zone=zones.names.apply(lambda zone_names, i=index: _zone(zone_names, i, settings)),
                map_public_ip_on_launch=False, tags=tagged(f"private-{index}"), opts=child)
            aws.ec2.RouteTableAssociation(f"{name}-private-{index}-routes", subnet_id=subnet.id,
                                          route_table_id=route_table.id, opts=child)
            subnets.append(subnet)

        s3 = aws.ec2.VpcEndpoint(
            f"{name}-s3", vpc_id=vpc.id, service_name=f"com.amazonaws.{settings.region}.s3",
            vpc_endpoint_type="Gateway", route_table_ids=[route_table.id], tags=tagged("s3"), opts=child)
        workload = aws.ec2.SecurityGroup(
            f"{name}-workload", name=names.resource("workload", "ec2"), vpc_id=vpc.id,
            description="SageMaker jobs and endpoint: HTTPS to the VPC endpoints and S3, all traffic among members",
            ingress=[aws.ec2.SecurityGroupIngressArgs(protocol="-1", from_port=0, to_port=0, self=True,
                                                      description="members (distributed training)")],
            egress=[
                aws.ec2.SecurityGroupEgressArgs(protocol="-1", from_port=0, to_port=0, self=True,
                                                description="members (distributed training)"),
                aws.ec2.SecurityGroupEgressArgs(protocol="tcp", from_port=HTTPS, to_port=HTTPS,
                                                cidr_blocks=[settings.vpc_cidr], description="the interface endpoints"),
                aws.ec2.SecurityGroupEgressArgs(protocol="tcp", from_port=HTTPS, to_port=HTTPS,
                                                prefix_list_ids=[s3.prefix_list_id], description="S3 (gateway)"),
            ],
            tags=tagged("workload"), opts=child)
        endpoints = aws.ec2.SecurityGroup(
            f"{name}-endpoints", name=names.resource("endpoints", "ec2"), vpc_id=vpc.id,
            description="VPC interface endpoints: HTTPS from the workload only",
            ingress=[aws.ec2.SecurityGroupIngressArgs(protocol="tcp", from_port=HTTPS, to_port=HTTPS,
                                                      security_groups=[workload.id], description="the workload")],
            # an explicit rule replaces the default allow-all egress (the endpoints answer; they never call out)
            egress=[aws.ec2.SecurityGroupEgressArgs(protocol="tcp", from_port=HTTPS, to_port=HTTPS,
                                                    cidr_blocks=[settings.vpc_cidr], description="inside the VPC")],
            tags=tagged("endpoints"), opts=child)
        for service in interface_services(settings):
            short = service.split(f"{settings.region}.", 1)[1].replace(".", "-")  # sagemaker-api, experiments
            aws.ec2.VpcEndpoint(
                f"{name}-{short}", vpc_id=vpc.id, service_name=service, vpc_endpoint_type="Interface",
                private_dns_enabled=True, subnet_ids=[s.id for s in subnets], security_group_ids=[endpoints.id],
                tags=tagged(short), opts=child)

        self.subnet_ids = pulumi.Output.all(*[s.id for s in subnets]).apply(list)
        self.security_group_ids = workload.id.apply(lambda group: [group])
        self.register_outputs({"vpcId": vpc.id, "subnetIds": self.subnet_ids,
                               "securityGroupIds": self.security_group_ids})


def vpc_of(network: Network | None) -> pulumi.Output[Vpc | None]:
    """The network's ids as the job requests take them (pipelines/network.py), once known; None without one."""
    if network is None:
        return pulumi.Output.from_input(None)
    return pulumi.Output.all(network.subnet_ids, network.security_group_ids).apply(lambda ids: Vpc.of(*ids))


def _zone(zone_names: list[str], index: int, settings: StackSettings) -> str:
    if len(zone_names) < settings.vpc_availability_zones:
        raise ValueError(f"mlops-stack:vpcAvailabilityZones: {settings.vpc_availability_zones}, but {settings.region} "
                         f"has {len(zone_names)} available zones for this account")
    return zone_names[index]

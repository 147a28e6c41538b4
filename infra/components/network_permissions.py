"""What the CI deploy role needs to declare the stack's VPC (infra/components/network.py), and nothing wider."""

from __future__ import annotations

from infra.components.policy_documents import statement
from mlops.naming import Names
from mlops.settings import PROJECT

# EC2 resources the stack's VPC is made of, each created with the stack's tags (infra/components/network.py).
_NETWORK_CREATES = {"CreateVpc": "vpc", "CreateSubnet": "subnet", "CreateRouteTable": "route-table",
                    "CreateSecurityGroup": "security-group", "CreateVpcEndpoint": "vpc-endpoint"}
# What the provider does to them after creation: every one of these on a resource carrying the stack's tags.
_NETWORK_WRITES = [
    "ec2:AssociateRouteTable", "ec2:AuthorizeSecurityGroupEgress", "ec2:AuthorizeSecurityGroupIngress",
    "ec2:CreateTags", "ec2:DeleteRouteTable", "ec2:DeleteSecurityGroup", "ec2:DeleteSubnet", "ec2:DeleteTags",
    "ec2:DeleteVpc", "ec2:DeleteVpcEndpoints", "ec2:DescribeVpcAttribute", "ec2:DisassociateRouteTable",
    "ec2:ModifySubnetAttribute", "ec2:ModifyVpcAttribute", "ec2:ModifyVpcEndpoint", "ec2:RevokeSecurityGroupEgress",
    "ec2:RevokeSecurityGroupIngress",
    # the created resource's parents in a create request (a subnet's VPC, an endpoint's subnets and groups)
    *(f"ec2:{action}" for action in _NETWORK_CREATES if action != "CreateVpc"),
]
_NETWORK_READS = [
    "ec2:DescribeAvailabilityZones", "ec2:DescribeNetworkAcls", "ec2:DescribeNetworkInterfaces",
    "ec2:DescribePrefixLists", "ec2:DescribeRouteTables", "ec2:DescribeSecurityGroupRules",
    "ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVpcEndpoints",
    "ec2:DescribeVpcs",
]


def network_statements(names: Names) -> list[dict]:
    """The stack's VPC: each kind created only with the stack's tags, changed and deleted only when it carries them.
    One statement per create: a request tag on `vpc/*` would also let CreateSubnet into another team's VPC."""
    region_account = f"{names.region}:{names.account_id}"
    ec2 = lambda kind: f"arn:aws:ec2:{region_account}:{kind}/*"  # noqa: E731
    stack = {"StringEquals": {"aws:RequestTag/environment": names.stack, "aws:RequestTag/project": PROJECT}}
    tagged = {"StringEquals": {"aws:ResourceTag/environment": names.stack, "aws:ResourceTag/project": PROJECT}}
    return [
        *(statement(f"{action}Tagged", [f"ec2:{action}"], [ec2(kind)], stack)
          for action, kind in _NETWORK_CREATES.items()),
        statement("TagNetworkAtCreation", ["ec2:CreateTags"], [ec2(kind) for kind in _NETWORK_CREATES.values()],
                  {"StringEquals": {"ec2:CreateAction": sorted(_NETWORK_CREATES)}}),
        statement("ManageStackNetwork", _NETWORK_WRITES, [ec2(kind) for kind in _NETWORK_CREATES.values()], tagged),
        statement("ReadNetwork", _NETWORK_READS, "*"),
        # Interface endpoints with private DNS associate the VPC with the service's private hosted zone.
        statement("PrivateDnsOfEndpoints", ["route53:AssociateVPCWithHostedZone"], ["arn:aws:route53:::hostedzone/*"]),
    ]

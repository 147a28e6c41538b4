"""An attacker holding a stack's CI deploy role, decided by a policy evaluator we did not write.

The evaluator is NCC Group's PMapper (principalmapper 1.1.5): `local_check_authorization_full` evaluates an
identity's policies with explicit Deny, conditions (StringEquals, StringLike, Null, ForAnyValue, ...) and the
permissions boundary, as IAM does; its edge checkers (iam, sts, sagemaker, ec2, ssm) find which roles a
principal can become. Every document is the plan's.

What it cannot see, so each test states it: the request context is ours (which condition keys AWS sends
with a request, e.g. iam:PermissionsBoundary with CreateRole, comes from the Service Authorization
Reference, tests/infra/iam.py); KMS key policies are not evaluated (each victim key is assumed to delegate
to IAM, the attacker's best case); SCPs and session policies are absent (none in this project).
"""

from __future__ import annotations

import collections
import collections.abc

import pytest

# PMapper 1.1.5 (its last release) imports Mapping and MutableMapping from `collections`, which Python 3.10 removed;
# they are the same classes in collections.abc. Nothing else of it depends on the Python version.
collections.Mapping = collections.abc.Mapping  # type: ignore[attr-defined]
collections.MutableMapping = collections.abc.MutableMapping  # type: ignore[attr-defined]

from principalmapper.common import Node, Policy  # noqa: E402
from principalmapper.graphing import ec2_edges, iam_edges, sagemaker_edges, ssm_edges, sts_edges  # noqa: E402
from principalmapper.querying.query_interface import local_check_authorization_full  # noqa: E402

from infra.components.deploy_permissions import DEPLOY_POLICY_PURPOSES  # noqa: E402
from mlops.naming import Arns, Names  # noqa: E402
from mlops.plan import Plan, plan_stack_file  # noqa: E402
from mlops.settings import load_stack, stack_file, stack_names  # noqa: E402
from tests.infra.helpers import document, role_boundaries, role_policies  # noqa: E402

IMAGE_TAG = "0123abc"
ADMINISTRATOR = "arn:aws:iam::aws:policy/AdministratorAccess"
EVERYTHING = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


@pytest.fixture(scope="module", params=stack_names())
def stack(request) -> tuple[str, Plan]:
    """Each stack as CI deploys it: the pipeline and (dev's) served package declared."""
    dev_package = Arns(Names.of(load_stack("dev"))).model_package(3)
    plan = plan_stack_file(stack_file(request.param), {"mlops-stack:imageTag": IMAGE_TAG,
                                                       "mlops-stack:approvedModelPackageArn": dev_package})
    return request.param, plan


def _node(arn: str, policy: dict, boundary: dict | None, trust: dict | None = None, admin: bool = False) -> Node:
    name = arn.rsplit("/", 1)[1]
    return Node(arn, f"AROA{abs(hash(arn)) % 10**16:016d}", [Policy(arn, name, policy)], [], trust, None, 0, False,
                admin, Policy(arn.replace(":role/", ":policy/"), f"{name}-boundary", boundary) if boundary else None,
                False, {})


def _nodes(plan: Plan, names: Names) -> dict[str, Node]:
    trusts = {r.inputs["name"]: document(r.inputs["assumeRolePolicy"]) for r in plan.of_type("aws:iam/role:Role")}
    boundaries, policies = role_boundaries(plan), role_policies(plan)
    return {role: _node(Arns(names).role(role), policies[role], boundaries[role], trusts[role]) for role in trusts}


class Attacker:
    """The dev or prod deploy role, as PMapper evaluates it."""

    def __init__(self, plan: Plan, stack: str):
        self.settings = load_stack(stack)
        self.names = Names.of(self.settings)
        self.arns = Arns(self.names)
        self.nodes = _nodes(plan, self.names)
        self.node = self.nodes[self.names.deploy_role]
        self.boundary = self.arns.workload_boundary
        self.key = plan.outputs["kmsKeyArn"]

    def may(self, action: str, resource: str, context: dict | None = None) -> bool:
        return local_check_authorization_full(self.node, action, resource, context or {})


@pytest.fixture(scope="module")
def attacker(stack: tuple[str, Plan]) -> Attacker:
    return Attacker(stack[1], stack[0])


def test_it_creates_roles_only_with_the_workload_boundary(attacker: Attacker) -> None:
    scheduler = attacker.arns.role(attacker.names.role("monitor-scheduler"))  # a role the stack declares
    assert not attacker.may("iam:CreateRole", scheduler)  # no boundary
    assert not attacker.may("iam:CreateRole", scheduler, {"iam:PermissionsBoundary": ADMINISTRATOR})
    assert attacker.may("iam:CreateRole", scheduler, {"iam:PermissionsBoundary": attacker.boundary})  # it can pass
    # Only the roles the stack declares: not another name of its prefix, not a longer stack's (dev vs dev-eu).
    for other in (attacker.names.role("evil"), f"{attacker.names.prefix}-eu-ci-deploy"):
        assert not attacker.may("iam:CreateRole", attacker.arns.role(other),
                                {"iam:PermissionsBoundary": attacker.boundary})
        assert not attacker.may("iam:PutRolePermissionsBoundary", attacker.arns.role(other),
                                {"iam:PermissionsBoundary": attacker.boundary})
    assert not attacker.may("iam:CreateRole", f"arn:aws:iam::{attacker.settings.account_id}:role/someone-else",
                            {"iam:PermissionsBoundary": attacker.boundary})


@pytest.mark.parametrize("action", ["iam:PutRolePolicy", "iam:DeleteRolePolicy", "iam:UpdateAssumeRolePolicy",
                                    "iam:UpdateRole", "iam:DeleteRole", "iam:AttachRolePolicy"])
def test_it_writes_no_role_without_the_boundary(attacker: Attacker, action: str) -> None:
    """A role of the stack's name but no boundary (one made by hand, or from before the boundary) stays shut."""
    unbounded = attacker.arns.role(attacker.names.role("legacy"))
    assert not attacker.may(action, unbounded)
    assert not attacker.may(action, unbounded, {"iam:PermissionsBoundary": ADMINISTRATOR})


def test_it_may_not_lift_or_swap_a_boundary(attacker: Attacker) -> None:
    execution = attacker.names.execution_role_arn
    bounded = {"iam:PermissionsBoundary": attacker.boundary}
    assert attacker.may("iam:PutRolePolicy", execution, bounded)  # writing a bounded role's policy: allowed...
    assert not attacker.may("iam:DeleteRolePermissionsBoundary", execution, bounded)
    assert not attacker.may("iam:PutRolePermissionsBoundary", execution, {"iam:PermissionsBoundary": ADMINISTRATOR})
    assert not attacker.may("iam:AttachRolePolicy", execution, {**bounded, "iam:PolicyARN": ADMINISTRATOR})


def test_it_may_not_rewrite_the_ceiling_or_its_own_rights(attacker: Attacker) -> None:
    ceilings = [attacker.boundary,
                *(attacker.arns.policy(attacker.names.deploy_policy(p)) for p in DEPLOY_POLICY_PURPOSES)]
    for arn in ceilings:
        assert attacker.may("iam:GetPolicyVersion", arn)  # the provider's refresh
        for action in ("iam:CreatePolicyVersion", "iam:SetDefaultPolicyVersion", "iam:DeletePolicy",
                       "iam:DeletePolicyVersion"):
            assert not attacker.may(action, arn), (action, arn)
    own = attacker.arns.role(attacker.names.deploy_role)
    for action in ("iam:PutRolePolicy", "iam:AttachRolePolicy", "iam:DetachRolePolicy", "iam:UpdateAssumeRolePolicy",
                   "iam:PutRolePermissionsBoundary", "iam:DeleteRolePermissionsBoundary", "iam:UpdateRole"):
        assert not attacker.may(action, own, {"iam:PermissionsBoundary": attacker.boundary,
                                              "iam:PolicyARN": ADMINISTRATOR}), action


def test_it_passes_each_role_only_to_its_service(attacker: Attacker) -> None:
    names = attacker.names
    passes = {names.execution_role: "sagemaker", names.mlflow_role: "sagemaker",
              names.role("retrain-trigger"): "events", names.role("monitor-scheduler"): "scheduler"}
    for role, service in passes.items():
        arn = attacker.arns.role(role)
        assert attacker.may("iam:PassRole", arn, {"iam:PassedToService": f"{service}.amazonaws.com"}), role
        for other in ("lambda", "ec2", "glue", "codebuild", "sagemaker", "events", "scheduler"):
            if other != service:
                assert not attacker.may("iam:PassRole", arn, {"iam:PassedToService": f"{other}.amazonaws.com"})
        assert not attacker.may("iam:PassRole", arn)  # no PassedToService in the request: not a pass to a service
    assert not attacker.may("iam:PassRole", attacker.arns.role(names.role("evil")),
                            {"iam:PassedToService": "sagemaker.amazonaws.com"})


def test_it_cannot_take_a_key_by_tagging_it(attacker: Attacker) -> None:
    """kms:TagResource is allowed on "*" only while the key has no project tag (CreateKey's own tags); the stack
    key is managed by its ARN, so a victim key tagged like the stack's still grants nothing."""
    region, account = attacker.settings.region, attacker.settings.account_id
    victim = f"arn:aws:kms:{region}:{account}:key/11111111-2222-3333-4444-555555555555"
    stack_tags = {"aws:RequestTag/environment": attacker.settings.stack, "aws:RequestTag/project": "mlops-stack"}
    owned = {"aws:ResourceTag/project": "payments", "aws:ResourceTag/environment": "prod"}
    assert not attacker.may("kms:TagResource", victim, {**stack_tags, **owned})
    keys = {"aws:TagKeys": ["environment", "project"]}
    assert attacker.may("kms:TagResource", "*", {**stack_tags, **keys})  # CreateKey's tags
    assert not attacker.may("kms:TagResource", victim, {**stack_tags, "aws:TagKeys": ["environment", "project",
                                                                                       "data-classification"]})
    tagged = {"aws:ResourceTag/project": "mlops-stack", "aws:ResourceTag/environment": attacker.settings.stack}
    for action in ("kms:PutKeyPolicy", "kms:ScheduleKeyDeletion", "kms:Decrypt", "kms:CreateGrant",
                   "kms:UntagResource", "kms:CreateAlias", "kms:UpdateAlias"):
        assert not attacker.may(action, victim, tagged), action
        assert not attacker.may(action, victim, owned), action
    assert attacker.may("kms:PutKeyPolicy", attacker.key)  # its own key stays manageable


def test_a_role_it_writes_anything_into_can_do_no_more_than_the_workload(stack: tuple[str, Plan],
                                                                         attacker: Attacker) -> None:
    """The escalation the issue found: write a role any policy, run code under it. Under the boundary even "*" on
    "*" leaves only the workload's rights on the stack's resources."""
    boundary = role_boundaries(stack[1])[attacker.names.execution_role]
    assert boundary is not None
    captured = _node(attacker.names.execution_role_arn, EVERYTHING, boundary,
                     attacker.nodes[attacker.names.execution_role].trust_policy)
    account, region = attacker.settings.account_id, attacker.settings.region
    for action, resource in [
        ("iam:CreateRole", f"arn:aws:iam::{account}:role/x"),
        ("iam:PutRolePolicy", attacker.arns.role(attacker.names.deploy_role)),
        ("iam:AttachRolePolicy", attacker.names.execution_role_arn),
        ("iam:PassRole", attacker.arns.role(attacker.names.deploy_role)),
        ("sts:AssumeRole", f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole"),
        ("kms:PutKeyPolicy", attacker.key),
        ("kms:ScheduleKeyDeletion", attacker.key),
        ("s3:PutBucketPolicy", f"arn:aws:s3:::{attacker.names.bucket('data')}"),
        ("s3:GetObject", "arn:aws:s3:::someone-elses-bucket/secret.csv"),
        ("sagemaker:CreateNotebookInstance", f"arn:aws:sagemaker:{region}:{account}:notebook-instance/x"),
        ("sagemaker:DeleteModelPackageGroup", attacker.arns.model_package_group),
        ("ec2:RunInstances", "*"),
        ("lambda:CreateFunction", f"arn:aws:lambda:{region}:{account}:function:x"),
        ("secretsmanager:GetSecretValue", f"arn:aws:secretsmanager:{region}:{account}:secret:db"),
    ]:
        assert not local_check_authorization_full(captured, action, resource, {}), (action, resource)
    # What the workload does stays possible: the boundary is a ceiling, not a wall.
    assert local_check_authorization_full(captured, "s3:GetObject",
                                          f"arn:aws:s3:::{attacker.names.bucket('data')}/raw/x.csv", {})


def test_pmapper_finds_no_path_from_the_deploy_role_beyond_the_bounded_roles(stack: tuple[str, Plan],
                                                                             attacker: Attacker) -> None:
    """PMapper's own edge search over the stack's roles and an account administrator role: no role of the stack
    becomes the administrator or the deploy role, and what the deploy role becomes carries the boundary.

    PMapper's checkers ask with resource "*" and an empty context, so they understate: they see neither the
    designed path (promotion comparison jobs as the execution role, on named job ARNs only) nor writes to
    bounded roles (AWS sends the role's boundary as iam:PermissionsBoundary); the tests above ask those
    requests with their real resource and context."""
    account = attacker.settings.account_id
    administrator = _node(f"arn:aws:iam::{account}:role/Administrator", EVERYTHING, None, {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                       "Action": "sts:AssumeRole"}]}, admin=True)
    nodes = [*attacker.nodes.values(), administrator]
    edges = [edge for module in (iam_edges, sts_edges, sagemaker_edges, ec2_edges, ssm_edges)
             for edge in module.generate_edges_locally(nodes)]
    reached = {edge.destination.arn for edge in edges if edge.source is attacker.node}
    comparison = f"{attacker.arns.comparison_jobs.removesuffix('*')}e1"
    in_vpc = {"sagemaker:VpcSubnets": stack[1].outputs["vpcSubnetIds"]} if attacker.settings.in_vpc else {}
    assert attacker.may("sagemaker:CreateProcessingJob", comparison, in_vpc)  # the designed path, asked exactly
    if attacker.settings.in_vpc:  # ... and only inside the stack's VPC
        assert not attacker.may("sagemaker:CreateProcessingJob", comparison)
    boundaries = role_boundaries(stack[1])
    for arn in reached:
        assert boundaries[arn.rsplit("/", 1)[1]] is not None, f"the deploy role reaches {arn}, which has no boundary"
    assert not [edge for edge in edges if edge.destination is attacker.node], "a role can become the deploy role"
    assert administrator.arn not in {edge.destination.arn for edge in edges if not edge.source.is_admin}

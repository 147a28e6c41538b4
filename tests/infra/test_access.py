"""IAM promises: least privilege, no wildcard actions, OIDC trust pinned, no users or keys."""

from __future__ import annotations

from mlops.naming import Names
from mlops.plan import Plan
from mlops.settings import StackSettings
from tests.infra.helpers import as_list, document, image_of, role_boundaries, role_policies, statements
from tests.infra.iam import allows


def _roles(plan: Plan) -> dict[str, dict]:
    return {r.inputs["name"]: r.inputs for r in plan.of_type("aws:iam/role:Role")}


def test_no_users_keys_or_policies_but_the_stacks_own(plan: Plan, settings: StackSettings) -> None:
    """Managed policies: only the stack's own (the deploy role's, attached to it; the boundary), never AWS's."""
    names = Names.of(settings)
    types = {r.type for r in plan.resources}
    assert not {t for t in types if t.startswith(("aws:iam/user", "aws:iam/accessKey", "aws:iam/group"))}
    assert "aws:iam/policyAttachment:PolicyAttachment" not in types
    own = {f"arn:aws:iam::{settings.account_id}:policy/{r.inputs['name']}" for r in plan.of_type("aws:iam/policy:Policy")}
    attached = {(r.inputs["role"], r.inputs["policyArn"])
                for r in plan.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")}
    assert attached and {role for role, _ in attached} == {names.deploy_role}
    assert {arn for _, arn in attached} <= own
    for role in _roles(plan).values():
        assert not role.get("managedPolicyArns")


def test_every_role_but_the_deploy_role_carries_the_workload_boundary(plan: Plan, settings: StackSettings) -> None:
    names = Names.of(settings)
    boundary_arn = f"arn:aws:iam::{settings.account_id}:policy/{names.workload_boundary}"
    for name, role in _roles(plan).items():
        assert role.get("permissionsBoundary") == (None if name == names.deploy_role else boundary_arn), name


def test_no_wildcard_actions_in_any_allow(plan: Plan) -> None:
    documents = {**role_policies(plan), **{f"{r} boundary": b for r, b in role_boundaries(plan).items() if b}}
    for role, policy in documents.items():
        for statement in statements(policy):
            if statement["Effect"] == "Allow":
                wild = [a for a in as_list(statement["Action"]) if "*" in a]
                assert not wild, (role, statement["Sid"], wild)


def test_execution_role_is_scoped_to_this_stack(plan: Plan, settings: StackSettings) -> None:
    names = Names.of(settings)
    role = _roles(plan)[names.execution_role]
    [trust] = statements(role["assumeRolePolicy"])
    assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": settings.account_id}}
    policy = {s["Sid"]: s for s in statements(role_policies(plan)[names.execution_role])}
    assert policy["ReadWriteStackObjects"]["Resource"] == [
        f"arn:aws:s3:::{names.bucket(k)}/*" for k in ("data", "artifacts", "capture")
    ]
    assert policy["UseStackKey"]["Resource"] == [plan.outputs["kmsKeyArn"]]
    assert policy["PullModelImage"]["Resource"] == [
        f"arn:aws:ecr:{settings.region}:{settings.account_id}:repository/{names.ecr_repository}"
    ]
    assert policy["PassOwnRoleToSageMakerJobs"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
    }
    assert policy["PutStackMetrics"]["Condition"]["StringEquals"]["cloudwatch:namespace"][0] == names.metrics_namespace


def test_gitlab_oidc_provider(plan: Plan, settings: StackSettings) -> None:
    providers = plan.of_type("aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    if settings.gitlab_oidc_provider_arn:
        assert providers == []
    else:
        [provider] = providers
        assert provider.inputs["url"] == settings.gitlab_url
        assert provider.inputs["clientIdLists"] == ["sts.amazonaws.com"]


def test_deploy_role_trust_pins_audience_and_one_protected_ref(plan: Plan, settings: StackSettings) -> None:
    """Which GitLab pipelines may assume each stack's deploy role, decided as IAM decides on the token's claims."""
    names = Names.of(settings)
    trust = document(_roles(plan)[names.deploy_role]["assumeRolePolicy"])
    [statement] = statements(trust)
    assert statement["Principal"] == {"Federated": plan.outputs["oidcProviderArn"]}
    host, project = settings.gitlab_host, settings.gitlab_project_path

    def assumes(ref_type: str, ref: str, audience: str = "sts.amazonaws.com", path: str = project) -> bool:
        claims = {f"{host}:aud": audience, f"{host}:sub": f"project_path:{path}:ref_type:{ref_type}:ref:{ref}"}
        return allows(trust, "sts:AssumeRoleWithWebIdentity", f"arn:aws:iam::{settings.account_id}:role/x", claims)

    if settings.ci_protected_tag:  # prod: only its protected tags, never a main pipeline
        assert assumes("tag", settings.ci_protected_tag.replace("*", "2026-12-01"))
        assert not assumes("branch", settings.ci_protected_branch)
    else:  # dev: main only
        assert assumes("branch", settings.ci_protected_branch)
        assert not assumes("tag", "prod-2026-12-01")
    assert not assumes("branch", "feature/x")
    assert not assumes("branch", settings.ci_protected_branch, path="someone/else")
    assert not assumes("branch", settings.ci_protected_branch, audience="https://gitlab.com")


def test_prod_and_dev_trust_different_refs() -> None:
    from mlops.settings import load_stack

    dev, prod = load_stack("dev"), load_stack("prod")
    assert (dev.ci_protected_tag, prod.ci_protected_tag) == ("", "prod-*")


def test_deploy_role_cannot_escalate_itself(plan: Plan, settings: StackSettings) -> None:
    names = Names.of(settings)
    policy = {s["Sid"]: s for s in statements(role_policies(plan)[names.deploy_role])}
    deny = policy["NoSelfEscalation"]
    assert deny["Effect"] == "Deny"
    assert deny["Resource"] == [f"arn:aws:iam::{settings.account_id}:role/{names.deploy_role}"]
    assert {"iam:PutRolePolicy", "iam:AttachRolePolicy", "iam:UpdateAssumeRolePolicy"} <= set(deny["Action"])
    assert policy["ManageStackRoles"]["Resource"] == [
        f"arn:aws:iam::{settings.account_id}:role/mlops-stack-{settings.stack}-*"
    ]
    if settings.pulumi_state_bucket:
        assert policy["PulumiStateObjects"]["Resource"] == [f"arn:aws:s3:::{settings.pulumi_state_bucket}/*"]


def test_the_boundary_is_the_same_whatever_the_stack_serves() -> None:
    """CI may not write the boundary (a platform engineer does): so no promotion, rollback or image may change it.
    A boundary naming the pin made every prod deploy after a promotion fail on iam:CreatePolicyVersion."""
    from mlops.naming import Arns
    from mlops.plan import plan_stack_file
    from mlops.settings import load_stack, stack_file, stack_names

    dev = Arns(Names.of(load_stack("dev")))
    for stack in stack_names():
        documents = set()
        for overrides in ({}, {"mlops-stack:approvedModelPackageArn": dev.model_package(3),
                               "mlops-stack:approvedModelImageUri": image_of(dev.model_package(3))},
                          {"mlops-stack:approvedModelPackageArn": dev.model_package(7), "mlops-stack:imageTag": "0a1"},
                          {"mlops-stack:imageTag": "0b2"}):
            plan = plan_stack_file(stack_file(stack), overrides)
            [boundary] = [r for r in plan.of_type("aws:iam/policy:Policy")
                          if r.inputs["name"] == Names.of(load_stack(stack)).workload_boundary]
            documents.add(boundary.inputs["policy"])
        assert len(documents) == 1, stack

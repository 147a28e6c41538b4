"""IAM promises: least privilege, no wildcard actions, OIDC trust pinned, no users or keys."""

from __future__ import annotations

from mlops.naming import Names
from mlops.plan import Plan
from mlops.settings import StackSettings
from tests.infra.helpers import as_list, statements


def _roles(plan: Plan) -> dict[str, dict]:
    return {r.inputs["name"]: r.inputs for r in plan.of_type("aws:iam/role:Role")}


def _role_policies(plan: Plan) -> dict[str, dict]:
    return {r.inputs["role"]: r.inputs for r in plan.of_type("aws:iam/rolePolicy:RolePolicy")}


def test_no_iam_users_keys_or_managed_policy_attachments(plan: Plan) -> None:
    types = {r.type for r in plan.resources}
    assert not {t for t in types if t.startswith(("aws:iam/user", "aws:iam/accessKey", "aws:iam/group"))}
    assert "aws:iam/rolePolicyAttachment:RolePolicyAttachment" not in types
    assert "aws:iam/policyAttachment:PolicyAttachment" not in types
    for role in _roles(plan).values():
        assert not role.get("managedPolicyArns")


def test_no_wildcard_actions_in_any_allow(plan: Plan) -> None:
    for role, policy in _role_policies(plan).items():
        for statement in statements(policy["policy"]):
            if statement["Effect"] == "Allow":
                wild = [a for a in as_list(statement["Action"]) if "*" in a]
                assert not wild, (role, statement["Sid"], wild)


def test_execution_role_is_scoped_to_this_stack(plan: Plan, settings: StackSettings) -> None:
    names = Names.of(settings)
    role = _roles(plan)[names.execution_role]
    [trust] = statements(role["assumeRolePolicy"])
    assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": settings.account_id}}
    policy = {s["Sid"]: s for s in statements(_role_policies(plan)[names.execution_role]["policy"])}
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


def test_deploy_role_trust_pins_audience_and_subject(plan: Plan, settings: StackSettings) -> None:
    names = Names.of(settings)
    [trust] = statements(_roles(plan)[names.deploy_role]["assumeRolePolicy"])
    host = settings.gitlab_host
    assert trust["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert trust["Principal"] == {"Federated": plan.outputs["oidcProviderArn"]}
    assert trust["Condition"] == {
        "StringEquals": {
            f"{host}:aud": "sts.amazonaws.com",
            f"{host}:sub": (
                f"project_path:{settings.gitlab_project_path}:ref_type:branch:ref:{settings.ci_protected_branch}"
            ),
        }
    }


def test_deploy_role_cannot_escalate_itself(plan: Plan, settings: StackSettings) -> None:
    names = Names.of(settings)
    policy = {s["Sid"]: s for s in statements(_role_policies(plan)[names.deploy_role]["policy"])}
    deny = policy["NoSelfEscalation"]
    assert deny["Effect"] == "Deny"
    assert deny["Resource"] == [f"arn:aws:iam::{settings.account_id}:role/{names.deploy_role}"]
    assert {"iam:PutRolePolicy", "iam:AttachRolePolicy", "iam:UpdateAssumeRolePolicy"} <= set(deny["Action"])
    assert policy["ManageStackRoles"]["Resource"] == [
        f"arn:aws:iam::{settings.account_id}:role/mlops-stack-{settings.stack}-*"
    ]
    if settings.pulumi_state_bucket:
        assert policy["PulumiStateObjects"]["Resource"] == [f"arn:aws:s3:::{settings.pulumi_state_bucket}/*"]

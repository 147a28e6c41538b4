"""Access: least-privilege IAM for the stack.

- SageMaker execution role: what pipeline steps, training, endpoints and the drift job need, on
  this stack's buckets, key, repository, log groups and SageMaker resources only.
- MLflow role (when tracking is on): the managed tracking server's access to its artifact prefix.
- GitLab OIDC identity provider (or an existing one) and a CI deploy role per stack whose trust
  policy pins the token audience and the `sub` claim (project path + protected branch).

No `*` actions anywhere, no managed `*FullAccess` policies, no IAM users or access keys. Resource
`*` appears only for actions AWS does not scope to resources (noted where used).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.components.access_policies import (
    STS_AUDIENCE,
    execution_policy,
    mlflow_policy,
    oidc_trust_policy,
    service_trust_policy,
    source_model_statements,
)
from infra.components.boundary import workload_boundary
from infra.components.deploy_permissions import DEPLOY_POLICY_PURPOSES, deploy_policies
from mlops.naming import Arns, Names, source_of


@dataclass(frozen=True)
class AccessArgs:
    names: Names
    tags: dict[str, str]
    key_arn: pulumi.Input[str]
    gitlab_url: str
    gitlab_host: str
    gitlab_project_path: str
    ci_protected_branch: str
    ci_protected_tag: str
    existing_oidc_provider_arn: str  # empty: create the provider
    mlflow_enabled: bool
    metrics_namespace: str
    state_bucket: str
    secrets_key_arn: str
    # The package this stack's endpoint runs; when another stack registered it (prod pins dev's),
    # the execution role may read it there.
    served_model_package_arn: str = ""
    grafana_workspace_id: str = ""  # the deploy role provisions dashboards there (infra/components/grafana.py)
    in_vpc: bool = False  # the jobs and endpoint run in subnets: the execution role attaches them (network.py)
    serverless: bool = False  # endpointMode serverless: its model is not network-isolated (endpoint_modes.py)
    creates_vpc: bool = False  # the deploy role declares the VPC (infra/components/network.py)
    creates_trail: bool = True  # ... and the stack's trail (infra/components/audit.py)
    job_log_groups: bool = True  # ... and the account's SageMaker job log groups
    # The account whose packages this stack serves (settings: modelSourceAccountId).
    model_source_account_id: str = ""


class Access(pulumi.ComponentResource):
    boundary_arn: pulumi.Output[str]
    execution_role_arn: pulumi.Output[str]
    mlflow_role_arn: pulumi.Output[str] | None
    deploy_role_arn: pulumi.Output[str]
    oidc_provider_arn: pulumi.Output[str]

    def __init__(self, name: str, args: AccessArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops-stack:access:Access", name, None, opts)
        names = args.names
        arns = Arns(names)
        child = pulumi.ResourceOptions(parent=self)
        account = names.account_id

        source = source_of(args.served_model_package_arn) if args.served_model_package_arn else None
        source_reads: tuple[dict, ...] = ()
        if source is not None and (source.stack, source.account_id) != (names.stack, names.account_id):
            source_reads = tuple(source_model_statements(source, args.served_model_package_arn))
        # Every role but the deploy role carries it; the deploy role may write only roles that do.
        boundary = aws.iam.Policy(
            f"{name}-workload-boundary",
            name=names.workload_boundary,
            description="Permissions boundary: the most a role of this stack but the CI deploy role may do",
            policy=pulumi.Output.from_input(args.key_arn).apply(
                lambda key: pulumi.Output.json_dumps(
                    workload_boundary(arns, key, args.metrics_namespace, args.model_source_account_id, args.in_vpc)
                )
            ),
            tags=args.tags,
            opts=child,
        )
        self.boundary_arn = boundary.arn
        execution = aws.iam.Role(
            f"{name}-execution-role",
            name=names.execution_role,
            description="SageMaker pipeline steps, training, endpoints and drift jobs of this stack",
            assume_role_policy=pulumi.Output.json_dumps(service_trust_policy("sagemaker.amazonaws.com", account)),
            max_session_duration=3600,
            permissions_boundary=boundary.arn,
            tags=args.tags,
            opts=child,
        )
        execution_rights = aws.iam.RolePolicy(
            f"{name}-execution-policy",
            role=execution.name,
            policy=pulumi.Output.from_input(args.key_arn).apply(
                lambda key: pulumi.Output.json_dumps(execution_policy(arns, key, args.metrics_namespace, source_reads,
                                                                      args.in_vpc))
            ),
            opts=child,
        )
        # The ARN waits for the policy: a model, pipeline or schedule given this role is created (or updated to a
        # newly pinned package) only once the role may read what it needs, not as soon as the role exists.
        self.execution_role_arn = pulumi.Output.all(execution.arn, execution_rights.id).apply(lambda values: values[0])

        self.mlflow_role_arn = None
        if args.mlflow_enabled:
            mlflow = aws.iam.Role(
                f"{name}-mlflow-role",
                name=names.mlflow_role,
                description="SageMaker managed MLflow tracking server of this stack",
                assume_role_policy=pulumi.Output.json_dumps(service_trust_policy("sagemaker.amazonaws.com", account)),
                permissions_boundary=boundary.arn,
                tags=args.tags,
                opts=child,
            )
            aws.iam.RolePolicy(
                f"{name}-mlflow-policy",
                role=mlflow.name,
                policy=pulumi.Output.from_input(args.key_arn).apply(
                    lambda key: pulumi.Output.json_dumps(mlflow_policy(arns, key))
                ),
                opts=child,
            )
            self.mlflow_role_arn = mlflow.arn

        if args.existing_oidc_provider_arn:
            provider_arn: pulumi.Output[str] = pulumi.Output.from_input(args.existing_oidc_provider_arn)
        else:
            provider = aws.iam.OpenIdConnectProvider(
                f"{name}-gitlab-oidc",
                url=args.gitlab_url,
                client_id_lists=[STS_AUDIENCE],
                tags=args.tags,
                opts=child,
            )
            provider_arn = provider.arn
        # The provider ARN is derivable, so the deploy policy does not wait on the provider's creation.
        known_provider_arn = (
            args.existing_oidc_provider_arn or f"arn:aws:iam::{account}:oidc-provider/{args.gitlab_host}"
        )
        trusted_ref = f"tags {args.ci_protected_tag}" if args.ci_protected_tag else args.ci_protected_branch
        deploy = aws.iam.Role(
            f"{name}-deploy-role",
            name=names.deploy_role,
            description=f"GitLab CI of {args.gitlab_project_path} ({trusted_ref}) deploys this stack",
            assume_role_policy=provider_arn.apply(
                lambda arn: pulumi.Output.json_dumps(
                    oidc_trust_policy(
                        arn, args.gitlab_host, args.gitlab_project_path, args.ci_protected_branch, args.ci_protected_tag
                    )
                )
            ),
            max_session_duration=3600,
            tags=args.tags,
            opts=child,
        )
        # Managed, not inline: the deploy role's rights exceed the 10,240 characters of a role's inline policies.
        documents = pulumi.Output.from_input(args.key_arn).apply(
            lambda key: deploy_policies(
                arns,
                key_arn=key,
                oidc_provider_arn=known_provider_arn,
                state_bucket=args.state_bucket,
                secrets_key_arn=args.secrets_key_arn,
                tag_keys=tuple(args.tags),
                source_account_id=args.model_source_account_id,
                grafana_workspace_id=args.grafana_workspace_id,
                creates_vpc=args.creates_vpc,
                in_vpc=args.in_vpc,
                serverless=args.serverless,
                creates_trail=args.creates_trail,
                job_log_groups=args.job_log_groups,
            )
        )
        for purpose in DEPLOY_POLICY_PURPOSES:
            rights = aws.iam.Policy(
                f"{name}-deploy-{purpose}",
                name=names.deploy_policy(purpose),
                description=f"GitLab CI deploys this stack: {purpose}",
                policy=documents.apply(lambda docs, purpose=purpose: pulumi.Output.json_dumps(docs[purpose])),
                tags=args.tags,
                opts=child,
            )
            aws.iam.RolePolicyAttachment(
                f"{name}-deploy-{purpose}-attachment", role=deploy.name, policy_arn=rights.arn, opts=child
            )
        self.deploy_role_arn = deploy.arn
        self.oidc_provider_arn = provider_arn
        self.register_outputs(
            {
                "boundaryArn": self.boundary_arn,
                "executionRoleArn": self.execution_role_arn,
                "mlflowRoleArn": self.mlflow_role_arn,
                "deployRoleArn": self.deploy_role_arn,
                "oidcProviderArn": self.oidc_provider_arn,
            }
        )

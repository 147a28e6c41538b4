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

from infra.components.deploy_permissions import deploy_policy
from infra.components.policy_documents import document, statement
from mlops.naming import ENCRYPTED_BUCKET_KINDS, Arns, Names, source_of

STS_AUDIENCE = "sts.amazonaws.com"
SAGEMAKER_METRIC_NAMESPACES = (
    "/aws/sagemaker/Endpoints",
    "/aws/sagemaker/TrainingJobs",
    "/aws/sagemaker/ProcessingJobs",
)


def service_trust_policy(service: str, account_id: str) -> dict:
    """Trust for an AWS service, limited to calls made on behalf of this account (confused deputy)."""
    return document(
        {
            "Effect": "Allow",
            "Principal": {"Service": service},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
        }
    )


def gitlab_subject(project_path: str, branch: str, tag: str = "") -> str:
    """GitLab's ID-token `sub` claim for pipelines of `tag` (a pattern), else of `branch`, in `project_path`."""
    if tag:
        return f"project_path:{project_path}:ref_type:tag:ref:{tag}"
    return f"project_path:{project_path}:ref_type:branch:ref:{branch}"


def oidc_trust_policy(provider_arn: str, gitlab_host: str, project_path: str, branch: str, tag: str = "") -> dict:
    """Trust for pipelines of one protected ref: the branch, or (prod) only tags matching `tag`, never both.

    `sub` is the one claim naming the ref that AWS can condition on; a tag pattern needs StringLike.
    """
    subject = {f"{gitlab_host}:sub": gitlab_subject(project_path, branch, tag)}
    return document(
        {
            "Effect": "Allow",
            "Principal": {"Federated": provider_arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {
                "StringEquals": {f"{gitlab_host}:aud": STS_AUDIENCE, **({} if tag else subject)},
                **({"StringLike": subject} if tag else {}),
            },
        }
    )


def execution_policy(arns: Arns, key_arn: str, metrics_namespace: str, extra: tuple[dict, ...] = ()) -> dict:
    names = arns.names
    kinds = ENCRYPTED_BUCKET_KINDS
    return document(
        *extra,
        statement("ListStackBuckets", ["s3:GetBucketLocation", "s3:ListBucket"], arns.buckets(kinds)),
        statement(
            "ReadWriteStackObjects", ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"], arns.objects(kinds)
        ),
        statement(
            "UseStackKey",
            ["kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"],
            [key_arn],
        ),
        # GetAuthorizationToken is account-wide by design: it has no resource to scope to.
        statement("EcrLogin", ["ecr:GetAuthorizationToken"], "*"),
        statement(
            "PullModelImage",
            ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            [arns.repository],
        ),
        statement(
            "WriteJobLogs",
            ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
            [arns.log_groups, f"{arns.log_groups}:log-stream:*"],
        ),
        # PutMetricData has no resource; the namespace condition confines it to this stack's metrics and the
        # ones SageMaker's jobs and endpoints publish with this role (instance metrics of each kind).
        statement(
            "PutStackMetrics",
            ["cloudwatch:PutMetricData"],
            "*",
            {"StringEquals": {"cloudwatch:namespace": [metrics_namespace, *SAGEMAKER_METRIC_NAMESPACES]}},
        ),
        # Blue/green deployments with auto-rollback read the stack's alarms with the endpoint's role.
        statement("ReadRollbackAlarms", ["cloudwatch:DescribeAlarms"], [arns.scoped("cloudwatch", "alarm")]),
        statement(
            "RunPipelineJobs",
            [
                "sagemaker:AddTags",
                "sagemaker:CreateProcessingJob",
                "sagemaker:CreateTrainingJob",
                "sagemaker:DescribeProcessingJob",
                "sagemaker:DescribeTrainingJob",
                "sagemaker:StopProcessingJob",
                "sagemaker:StopTrainingJob",
            ],
            arns.jobs(),
        ),
        statement(
            "RegisterModels",
            [
                "sagemaker:AddTags",
                "sagemaker:CreateModelPackage",
                "sagemaker:DescribeModelPackage",
                "sagemaker:DescribeModelPackageGroup",
                "sagemaker:ListModelPackages",
                "sagemaker:DescribePipelineExecution",
                "sagemaker:ListPipelineExecutions",
                "sagemaker:ListPipelineParametersForExecution",
            ],
            arns.sagemaker("model-package-group", "model-package", "pipeline", "pipeline-execution"),
        ),
        statement(
            "TrackExperiments",
            # Exactly the REST calls MLflow 3.17's client makes for the Train and Evaluate steps (set_experiment,
            # start_run, log_params/metrics, set_tags, log_dict, sklearn.log_model: recorded against an MLflow
            # server), named as sagemaker-mlflow's IAM actions (POST logged-models is LogModel).
            [
                "sagemaker-mlflow:CreateExperiment",
                "sagemaker-mlflow:CreateRun",
                "sagemaker-mlflow:FinalizeLoggedModel",
                "sagemaker-mlflow:GetExperiment",
                "sagemaker-mlflow:GetExperimentByName",
                "sagemaker-mlflow:GetLoggedModel",
                "sagemaker-mlflow:GetMetricHistory",
                "sagemaker-mlflow:GetRun",
                "sagemaker-mlflow:LogBatch",
                "sagemaker-mlflow:LogModel",
                "sagemaker-mlflow:LogOutputs",
                "sagemaker-mlflow:UpdateRun",
            ],
            arns.sagemaker("mlflow-tracking-server"),
        ),
        statement(
            "ResolveServedModel",
            ["sagemaker:DescribeEndpoint", "sagemaker:DescribeEndpointConfig", "sagemaker:DescribeModel"],
            arns.sagemaker("endpoint", "endpoint-config", "model"),
        ),
        statement(
            "PassOwnRoleToSageMakerJobs",
            ["iam:PassRole"],
            [arns.role(names.execution_role)],
            {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        ),
    )


def source_model_statements(source: Names, package_arn: str) -> list[dict]:
    """What this stack's endpoint needs to run a package registered by another stack (prod pins dev's):
    its metadata, artifacts and image there, decrypted with that stack's key through S3 and ECR."""
    region_account = f"{source.region}:{source.account_id}"
    return [
        statement("DescribeSourceModel", ["sagemaker:DescribeModelPackage"], [package_arn]),
        statement(
            "ReadSourceModelArtifacts", ["s3:GetObject"], [f"arn:aws:s3:::{source.bucket('artifacts')}/pipelines/*"]
        ),
        statement(
            "PullSourceModelImage",
            ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            [f"arn:aws:ecr:{region_account}:repository/{source.ecr_repository}"],
        ),
        statement(
            "DecryptSourceModel",
            ["kms:Decrypt", "kms:DescribeKey"],
            [f"arn:aws:kms:{region_account}:key/*"],
            {
                "StringEquals": {
                    "kms:ViaService": [f"s3.{source.region}.amazonaws.com", f"ecr.{source.region}.amazonaws.com"]
                },
                "ForAnyValue:StringEquals": {"kms:ResourceAliases": [source.kms_alias]},
            },
        ),
    ]


def mlflow_policy(arns: Arns, key_arn: str) -> dict:
    artifacts = arns.names.bucket("artifacts")
    return document(
        statement("ListArtifacts", ["s3:GetBucketLocation", "s3:ListBucket"], [f"arn:aws:s3:::{artifacts}"]),
        statement(
            "ReadWriteMlflowArtifacts",
            ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
            [f"arn:aws:s3:::{artifacts}/mlflow/*"],
        ),
        statement("UseStackKey", ["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"], [key_arn]),
        statement(
            "RegisterMlflowModels",
            [
                "sagemaker:AddTags",
                "sagemaker:CreateModelPackage",
                "sagemaker:CreateModelPackageGroup",
                "sagemaker:DescribeModelPackage",
                "sagemaker:DescribeModelPackageGroup",
                "sagemaker:UpdateModelPackage",
            ],
            arns.sagemaker("model-package-group", "model-package"),
        ),
    )


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
    # The account whose packages this stack serves (settings: modelSourceAccountId).
    model_source_account_id: str = ""


class Access(pulumi.ComponentResource):
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
        execution = aws.iam.Role(
            f"{name}-execution-role",
            name=names.execution_role,
            description="SageMaker pipeline steps, training, endpoints and drift jobs of this stack",
            assume_role_policy=pulumi.Output.json_dumps(service_trust_policy("sagemaker.amazonaws.com", account)),
            max_session_duration=3600,
            tags=args.tags,
            opts=child,
        )
        execution_rights = aws.iam.RolePolicy(
            f"{name}-execution-policy",
            role=execution.name,
            policy=pulumi.Output.from_input(args.key_arn).apply(
                lambda key: pulumi.Output.json_dumps(execution_policy(arns, key, args.metrics_namespace, source_reads))
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
        aws.iam.RolePolicy(
            f"{name}-deploy-policy",
            role=deploy.name,
            policy=pulumi.Output.json_dumps(
                deploy_policy(
                    arns,
                    stack=names.stack,
                    oidc_provider_arn=known_provider_arn,
                    state_bucket=args.state_bucket,
                    secrets_key_arn=args.secrets_key_arn,
                    source_account_id=args.model_source_account_id,
                    grafana_workspace_id=args.grafana_workspace_id,
                )
            ),
            opts=child,
        )
        self.deploy_role_arn = deploy.arn
        self.oidc_provider_arn = provider_arn
        self.register_outputs(
            {
                "executionRoleArn": self.execution_role_arn,
                "mlflowRoleArn": self.mlflow_role_arn,
                "deployRoleArn": self.deploy_role_arn,
                "oidcProviderArn": self.oidc_provider_arn,
            }
        )

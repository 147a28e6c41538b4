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

from mlops.naming import ENCRYPTED_BUCKET_KINDS, Arns, Names, source_of
from mlops.settings import PROJECT

STS_AUDIENCE = "sts.amazonaws.com"


def _statement(
    sid: str, actions: list[str], resources: list | str, condition: dict | None = None, effect: str = "Allow"
) -> dict:
    statement = {"Sid": sid, "Effect": effect, "Action": sorted(actions), "Resource": resources}
    if condition:
        statement["Condition"] = condition
    return statement


def _document(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def service_trust_policy(service: str, account_id: str) -> dict:
    """Trust for an AWS service, limited to calls made on behalf of this account (confused deputy)."""
    return _document(
        {
            "Effect": "Allow",
            "Principal": {"Service": service},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
        }
    )


def gitlab_subject(project_path: str, branch: str) -> str:
    """GitLab's ID-token `sub` claim for pipelines of `branch` in `project_path`."""
    return f"project_path:{project_path}:ref_type:branch:ref:{branch}"


def oidc_trust_policy(provider_arn: str, gitlab_host: str, project_path: str, branch: str) -> dict:
    return _document(
        {
            "Effect": "Allow",
            "Principal": {"Federated": provider_arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {
                "StringEquals": {
                    f"{gitlab_host}:aud": STS_AUDIENCE,
                    f"{gitlab_host}:sub": gitlab_subject(project_path, branch),
                }
            },
        }
    )


def execution_policy(arns: Arns, key_arn: str, metrics_namespace: str, extra: tuple[dict, ...] = ()) -> dict:
    names = arns.names
    kinds = ENCRYPTED_BUCKET_KINDS
    return _document(
        *extra,
        _statement("ListStackBuckets", ["s3:GetBucketLocation", "s3:ListBucket"], arns.buckets(kinds)),
        _statement(
            "ReadWriteStackObjects", ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"], arns.objects(kinds)
        ),
        _statement(
            "UseStackKey",
            ["kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"],
            [key_arn],
        ),
        # GetAuthorizationToken is account-wide by design: it has no resource to scope to.
        _statement("EcrLogin", ["ecr:GetAuthorizationToken"], "*"),
        _statement(
            "PullModelImage",
            ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            [arns.repository],
        ),
        _statement(
            "WriteJobLogs",
            ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
            [arns.log_groups, f"{arns.log_groups}:log-stream:*"],
        ),
        # PutMetricData has no resource; the namespace condition confines it to this stack's metrics.
        _statement(
            "PutStackMetrics",
            ["cloudwatch:PutMetricData"],
            "*",
            {"StringEquals": {"cloudwatch:namespace": [metrics_namespace, "/aws/sagemaker/Endpoints"]}},
        ),
        _statement(
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
        _statement(
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
        _statement(
            "TrackExperiments",
            [
                "sagemaker-mlflow:AccessUI",
                "sagemaker-mlflow:CreateExperiment",
                "sagemaker-mlflow:CreateModelVersion",
                "sagemaker-mlflow:CreateRegisteredModel",
                "sagemaker-mlflow:CreateRun",
                "sagemaker-mlflow:GetExperiment",
                "sagemaker-mlflow:GetExperimentByName",
                "sagemaker-mlflow:GetModelVersion",
                "sagemaker-mlflow:GetRegisteredModel",
                "sagemaker-mlflow:GetRun",
                "sagemaker-mlflow:LogBatch",
                "sagemaker-mlflow:LogInputs",
                "sagemaker-mlflow:LogMetric",
                "sagemaker-mlflow:LogModel",
                "sagemaker-mlflow:LogParam",
                "sagemaker-mlflow:SearchExperiments",
                "sagemaker-mlflow:SearchRuns",
                "sagemaker-mlflow:SetTag",
                "sagemaker-mlflow:UpdateRun",
            ],
            arns.sagemaker("mlflow-tracking-server"),
        ),
        _statement(
            "ResolveServedModel",
            ["sagemaker:DescribeEndpoint", "sagemaker:DescribeEndpointConfig", "sagemaker:DescribeModel"],
            arns.sagemaker("endpoint", "endpoint-config", "model"),
        ),
        _statement(
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
        _statement("DescribeSourceModel", ["sagemaker:DescribeModelPackage"], [package_arn]),
        _statement(
            "ReadSourceModelArtifacts", ["s3:GetObject"], [f"arn:aws:s3:::{source.bucket('artifacts')}/pipelines/*"]
        ),
        _statement(
            "PullSourceModelImage",
            ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            [f"arn:aws:ecr:{region_account}:repository/{source.ecr_repository}"],
        ),
        _statement(
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
    return _document(
        _statement("ListArtifacts", ["s3:GetBucketLocation", "s3:ListBucket"], [f"arn:aws:s3:::{artifacts}"]),
        _statement(
            "ReadWriteMlflowArtifacts",
            ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
            [f"arn:aws:s3:::{artifacts}/mlflow/*"],
        ),
        _statement("UseStackKey", ["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"], [key_arn]),
        _statement(
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


# What `pulumi up` of this stack needs, per service. Reads are the provider's refresh calls.
_DEPLOY_S3 = [
    "s3:CreateBucket",
    "s3:DeleteBucket",
    "s3:DeleteBucketPolicy",
    "s3:GetAccelerateConfiguration",
    "s3:GetBucketAcl",
    "s3:GetBucketCORS",
    "s3:GetBucketLocation",
    "s3:GetBucketLogging",
    "s3:GetBucketObjectLockConfiguration",
    "s3:GetBucketOwnershipControls",
    "s3:GetBucketPolicy",
    "s3:GetBucketPublicAccessBlock",
    "s3:GetBucketRequestPayment",
    "s3:GetBucketTagging",
    "s3:GetBucketVersioning",
    "s3:GetBucketWebsite",
    "s3:GetEncryptionConfiguration",
    "s3:GetLifecycleConfiguration",
    "s3:GetReplicationConfiguration",
    "s3:ListBucket",
    "s3:ListBucketVersions",
    "s3:GetBucketNotification",
    "s3:PutBucketLogging",
    "s3:PutBucketNotification",
    "s3:PutBucketOwnershipControls",
    "s3:PutBucketPolicy",
    "s3:PutBucketPublicAccessBlock",
    "s3:PutBucketTagging",
    "s3:PutBucketVersioning",
    "s3:PutEncryptionConfiguration",
    "s3:PutLifecycleConfiguration",
]
_DEPLOY_OBJECTS = ["s3:DeleteObject", "s3:DeleteObjectVersion", "s3:GetObject", "s3:PutObject"]
_DEPLOY_KMS_KEY = [
    "kms:CreateGrant",
    "kms:Decrypt",
    "kms:DescribeKey",
    "kms:EnableKeyRotation",
    "kms:Encrypt",
    "kms:GenerateDataKey",
    "kms:GetKeyPolicy",
    "kms:GetKeyRotationStatus",
    "kms:ListResourceTags",
    "kms:PutKeyPolicy",
    "kms:ScheduleKeyDeletion",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:UpdateKeyDescription",
]
_DEPLOY_ECR = [
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:CompleteLayerUpload",
    "ecr:CreateRepository",
    "ecr:DeleteLifecyclePolicy",
    "ecr:DeleteRepository",
    "ecr:DescribeImages",
    "ecr:DescribeRepositories",
    "ecr:GetDownloadUrlForLayer",
    "ecr:GetLifecyclePolicy",
    "ecr:InitiateLayerUpload",
    "ecr:ListTagsForResource",
    "ecr:PutImage",
    "ecr:PutImageScanningConfiguration",
    "ecr:PutImageTagMutability",
    "ecr:PutLifecyclePolicy",
    "ecr:TagResource",
    "ecr:UntagResource",
    "ecr:UploadLayerPart",
]
_DEPLOY_ROLES = [
    "iam:CreateRole",
    "iam:DeleteRole",
    "iam:DeleteRolePolicy",
    "iam:GetRole",
    "iam:GetRolePolicy",
    "iam:ListAttachedRolePolicies",
    "iam:ListInstanceProfilesForRole",
    "iam:ListRolePolicies",
    "iam:PassRole",
    "iam:PutRolePolicy",
    "iam:TagRole",
    "iam:UntagRole",
    "iam:UpdateAssumeRolePolicy",
    "iam:UpdateRole",
]
_DEPLOY_OIDC = [
    "iam:AddClientIDToOpenIDConnectProvider",
    "iam:CreateOpenIDConnectProvider",
    "iam:DeleteOpenIDConnectProvider",
    "iam:GetOpenIDConnectProvider",
    "iam:TagOpenIDConnectProvider",
    "iam:UntagOpenIDConnectProvider",
    "iam:UpdateOpenIDConnectProviderThumbprint",
]
_DEPLOY_SAGEMAKER = [
    "sagemaker:AddTags",
    "sagemaker:CreateEndpoint",
    "sagemaker:CreateEndpointConfig",
    "sagemaker:CreateMlflowTrackingServer",
    "sagemaker:CreateModel",
    "sagemaker:CreateModelPackageGroup",
    "sagemaker:CreateMonitoringSchedule",
    "sagemaker:CreatePipeline",
    "sagemaker:DeleteEndpoint",
    "sagemaker:DeleteEndpointConfig",
    "sagemaker:DeleteMlflowTrackingServer",
    "sagemaker:DeleteModel",
    "sagemaker:DeleteModelPackageGroup",
    "sagemaker:DeleteMonitoringSchedule",
    "sagemaker:DeletePipeline",
    "sagemaker:DeleteTags",
    "sagemaker:DescribeEndpoint",
    "sagemaker:DescribeEndpointConfig",
    "sagemaker:DescribeMlflowTrackingServer",
    "sagemaker:DescribeModel",
    "sagemaker:DescribeModelPackage",
    "sagemaker:DescribeModelPackageGroup",
    "sagemaker:DescribeMonitoringSchedule",
    "sagemaker:DescribePipeline",
    "sagemaker:DescribePipelineExecution",
    "sagemaker:InvokeEndpoint",
    "sagemaker:ListModelPackages",
    "sagemaker:ListPipelineExecutions",
    "sagemaker:ListTags",
    "sagemaker:StartPipelineExecution",
    "sagemaker:UpdateEndpoint",
    "sagemaker:UpdateEndpointWeightsAndCapacities",
    "sagemaker:UpdateMlflowTrackingServer",
    "sagemaker:UpdateModelPackage",
    "sagemaker:UpdateMonitoringSchedule",
    "sagemaker:UpdatePipeline",
]
_DEPLOY_OPERATIONS = [
    "cloudwatch:DeleteAlarms",
    "cloudwatch:DeleteDashboards",
    "cloudwatch:DescribeAlarms",
    "cloudwatch:GetDashboard",
    "cloudwatch:ListTagsForResource",
    "cloudwatch:PutDashboard",
    "cloudwatch:PutMetricAlarm",
    "cloudwatch:TagResource",
    "cloudwatch:UntagResource",
    "events:DeleteRule",
    "events:DescribeRule",
    "events:ListTagsForResource",
    "events:ListTargetsByRule",
    "events:PutRule",
    "events:PutTargets",
    "events:RemoveTargets",
    "events:TagResource",
    "events:UntagResource",
    "scheduler:CreateSchedule",
    "scheduler:DeleteSchedule",
    "scheduler:GetSchedule",
    "scheduler:UpdateSchedule",
    "sns:CreateTopic",
    "sns:DeleteTopic",
    "sns:GetSubscriptionAttributes",
    "sns:GetTopicAttributes",
    "sns:ListTagsForResource",
    "sns:SetTopicAttributes",
    "sns:Subscribe",
    "sns:TagResource",
    "sns:Unsubscribe",
    "sns:UntagResource",
]
# Application Auto Scaling's Describe calls and KMS CreateKey have no resource-level scoping.
_DEPLOY_UNSCOPED = [
    "application-autoscaling:DeleteScalingPolicy",
    "application-autoscaling:DeregisterScalableTarget",
    "application-autoscaling:DescribeScalableTargets",
    "application-autoscaling:DescribeScalingPolicies",
    "application-autoscaling:PutScalingPolicy",
    "application-autoscaling:RegisterScalableTarget",
    "ecr:GetAuthorizationToken",
    "kms:ListAliases",
]
# The deploy role must not widen its own rights: changes to it need a platform engineer's credentials.
_SELF_MODIFICATION = [
    "iam:DeleteRolePolicy",
    "iam:PutRolePolicy",
    "iam:UpdateAssumeRolePolicy",
    "iam:AttachRolePolicy",
    "iam:PutRolePermissionsBoundary",
    "iam:DeleteRole",
]


def deploy_policy(arns: Arns, *, stack: str, oidc_provider_arn: str, state_bucket: str, secrets_key_arn: str) -> dict:
    names = arns.names
    region_account = f"{names.region}:{names.account_id}"
    statements = [
        _statement("ManageStackBuckets", _DEPLOY_S3, arns.buckets(("data", "artifacts", "capture", "logs"))),
        _statement("ManageStackObjects", _DEPLOY_OBJECTS, arns.objects(("data", "artifacts", "capture", "logs"))),
        _statement(
            "CreateTaggedKeys",
            ["kms:CreateKey", "kms:TagResource"],
            "*",
            {"StringEquals": {"aws:RequestTag/environment": stack, "aws:RequestTag/project": PROJECT}},
        ),
        _statement(
            "ManageStackKeys",
            _DEPLOY_KMS_KEY,
            [arns.keys],
            {"StringEquals": {"aws:ResourceTag/environment": stack, "aws:ResourceTag/project": "mlops-stack"}},
        ),
        _statement(
            "ManageStackKeyAlias", ["kms:CreateAlias", "kms:DeleteAlias", "kms:UpdateAlias"], [arns.alias, arns.keys]
        ),
        _statement("ManageStackRepository", _DEPLOY_ECR, [arns.repository]),
        _statement("ManageStackRoles", _DEPLOY_ROLES, [arns.roles]),
        _statement("ManageGitlabOidcProvider", _DEPLOY_OIDC, [oidc_provider_arn]),
        _statement(
            "ManageStackSageMaker",
            _DEPLOY_SAGEMAKER,
            arns.sagemaker(
                "endpoint",
                "endpoint-config",
                "model",
                "model-package-group",
                "model-package",
                "pipeline",
                "mlflow-tracking-server",
                "monitoring-schedule",
            ),
        ),
        _statement(
            "ManageStackOperations",
            _DEPLOY_OPERATIONS,
            [
                arns.scoped("cloudwatch", "alarm"),
                f"arn:aws:cloudwatch::{names.account_id}:dashboard/{names.prefix}*",
                arns.scoped("events", "rule", "/"),
                f"arn:aws:sns:{region_account}:{names.prefix}-*",
                f"arn:aws:scheduler:{region_account}:schedule/default/{names.prefix}-*",
            ],
        ),
        _statement("ManageScalingAndLogin", _DEPLOY_UNSCOPED, "*"),
        _statement(
            "CreateAutoScalingServiceRole",
            ["iam:CreateServiceLinkedRole"],
            "*",
            {"StringEquals": {"iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"}},
        ),
        _statement("NoSelfEscalation", _SELF_MODIFICATION, [arns.role(names.deploy_role)], effect="Deny"),
    ]
    if state_bucket:
        statements.append(
            _statement("PulumiStateBucket", ["s3:GetBucketLocation", "s3:ListBucket"], [f"arn:aws:s3:::{state_bucket}"])
        )
        statements.append(
            _statement(
                "PulumiStateObjects",
                ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
                [f"arn:aws:s3:::{state_bucket}/*"],
            )
        )
    if secrets_key_arn:
        statements.append(
            _statement(
                "PulumiSecretsProvider", ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"], [secrets_key_arn]
            )
        )
    return _document(*statements)


@dataclass(frozen=True)
class AccessArgs:
    names: Names
    tags: dict[str, str]
    key_arn: pulumi.Input[str]
    gitlab_url: str
    gitlab_host: str
    gitlab_project_path: str
    ci_protected_branch: str
    existing_oidc_provider_arn: str  # empty: create the provider
    mlflow_enabled: bool
    metrics_namespace: str
    state_bucket: str
    secrets_key_arn: str
    # The package this stack's endpoint runs; when another stack registered it (prod pins dev's),
    # the execution role may read it there.
    served_model_package_arn: str = ""


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
        aws.iam.RolePolicy(
            f"{name}-execution-policy",
            role=execution.name,
            policy=pulumi.Output.from_input(args.key_arn).apply(
                lambda key: pulumi.Output.json_dumps(execution_policy(arns, key, args.metrics_namespace, source_reads))
            ),
            opts=child,
        )
        self.execution_role_arn = execution.arn

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
        deploy = aws.iam.Role(
            f"{name}-deploy-role",
            name=names.deploy_role,
            description=f"GitLab CI of {args.gitlab_project_path} ({args.ci_protected_branch}) deploys this stack",
            assume_role_policy=provider_arn.apply(
                lambda arn: pulumi.Output.json_dumps(
                    oidc_trust_policy(arn, args.gitlab_host, args.gitlab_project_path, args.ci_protected_branch)
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

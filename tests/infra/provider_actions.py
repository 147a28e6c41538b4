"""The IAM actions the AWS provider (terraform-provider-aws v6, under pulumi-aws 7.51) calls per resource type.

Compiled from the Create, Read, Update and Delete functions in hashicorp/terraform-provider-aws
internal/service/<svc>/<resource>.go: v6 copies of s3/bucket.go, iam/role.go, iam/openid_connect_provider.go and
sagemaker/mlflow_tracking_server.go; late-v5 AWS-SDK-v2 copies (not re-checked against v6) of s3/object.go,
kms/key.go, kms/alias.go, sns/topic.go, sns/topic_subscription.go, sagemaker/endpoint.go and
appautoscaling/target.go. The other types (bucket sub-resources, ECR policies, dashboard, alarm, EventBridge
rule and target, schedule, the remaining SageMaker types, role policy, scaling policy) were not opened here:
their entries are the Put/Get/Delete calls of the resource's own API. Tags follow the tags interceptor: tags
passed to Create need the service's tag action, Read lists them (unless Read takes them from the Get output),
Update tags and untags. Covered: create, the read after it and on refresh, update of the inputs this plan
sets, delete with its waiters. Calls an AWS service makes on the caller's rights (KMS grants, PassRole,
target-tracking alarms) sit on the resource that triggers them, marked as AWS-documented, not provider code.
Not covered: imports, arguments the plan does not use (ACL grants, object lock, replication, website, key
disable/enable, ...), the provider's sts:GetCallerIdentity (needs no permission), the state backend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlops.naming import Names
from mlops.plan import PlannedResource as Resource
from mlops.plan import mock_ec2_id, mock_key_id
from mlops.settings import PROJECT

Arn = Callable[[Resource, Names], str | list[str]]  # a list: the same call authorized against each
Context = Callable[[Resource, Names], dict[str, Any]]


@dataclass(frozen=True)
class Target:
    """Actions authorized against one ARN, with the request's condition context where a policy may test it."""

    actions: tuple[str, ...]
    arn: Arn
    why: str
    context: Context | None = None
    only_with: str | None = None  # the call is made only when the resource sets this input


# --- ARN builders over a planned resource's inputs and the stack's names --------------------------------------
# A KMS key's ID is AWS's: the AWS managed aws/s3 key's.
AWS_S3_KEY_ID = "aaaaaaaa-0000-0000-0000-000000000003"
# Scalable targets get an ID from Application Auto Scaling; endpoint configs are named by content hash.
SCALABLE_TARGET_ID = "0123abcd"


def _ra(n: Names) -> str:
    return f"{n.region}:{n.account_id}"


def _input(*path: str | int) -> Callable[[Resource], Any]:
    def get(r: Resource) -> Any:
        value: Any = r.inputs
        for step in path:
            value = value[step]
        return value

    return get


def _bucket(r: Resource, n: Names) -> str:
    return f"arn:aws:s3:::{r.inputs['bucket']}"


def _any_object(r: Resource, n: Names) -> str:
    return f"arn:aws:s3:::{r.inputs['bucket']}/any/object"


def _object(r: Resource, n: Names) -> str:
    return f"arn:aws:s3:::{r.inputs['bucket']}/{r.inputs['key']}"


def _role(key: str) -> Arn:
    return lambda r, n: f"arn:aws:iam::{n.account_id}:role/{r.inputs[key]}"


def _arn_input(*path: str) -> Arn:
    return lambda r, n: _input(*path)(r)


def _key(*path: str | int) -> Arn:
    """The key a resource is encrypted with, from its input (an ARN, or a bare key ID)."""

    def arn(r: Resource, n: Names) -> str:
        value = str(_input(*path)(r))
        return value if value.startswith("arn:") else f"arn:aws:kms:{_ra(n)}:key/{value}"

    return arn


def _new_key(r: Resource, n: Names) -> str:
    """The key once created: its ID in the plan (the deploy role manages the stack's key by that ARN)."""
    return f"arn:aws:kms:{_ra(n)}:key/{mock_key_id(r.name)}"


def _star(r: Resource, n: Names) -> str:
    return "*"


def _sm(kind: str, key: str) -> Arn:
    """SageMaker ARNs carry the name in lower case."""
    return lambda r, n: f"arn:aws:sagemaker:{_ra(n)}:{kind}/{str(r.inputs[key]).lower()}"


def _ecr(key: str) -> Arn:
    return lambda r, n: f"arn:aws:ecr:{_ra(n)}:repository/{r.inputs[key]}"


def _alarm(r: Resource, n: Names) -> str:
    return f"arn:aws:cloudwatch:{_ra(n)}:alarm:{r.inputs['name']}"


def _rule(key: str) -> Arn:
    """A rule's ARN: `rule/<name>` on the default bus, `rule/<bus>/<name>` on a custom one (eventBusName)."""
    def arn(r: Resource, n: Names) -> str:
        bus = r.inputs.get("eventBusName")
        return f"arn:aws:events:{_ra(n)}:rule/{bus + '/' if bus and bus != 'default' else ''}{r.inputs[key]}"

    return arn


def _workspace(r: Resource, n: Names) -> str:
    return f"arn:aws:grafana:{_ra(n)}:/workspaces/{r.inputs['workspaceId']}"


def _bus(key: str) -> Arn:
    return lambda r, n: f"arn:aws:events:{_ra(n)}:event-bus/{r.inputs[key]}"


def _scalable_target(r: Resource, n: Names) -> str:
    return f"arn:aws:application-autoscaling:{_ra(n)}:scalable-target/{SCALABLE_TARGET_ID}"


def _scaled_endpoint(r: Resource, n: Names) -> str:
    return f"arn:aws:sagemaker:{_ra(n)}:endpoint/{str(r.inputs['resourceId']).split('/')[1].lower()}"


def _scaled_endpoint_config(r: Resource, n: Names) -> str:
    return f"arn:aws:sagemaker:{_ra(n)}:endpoint-config/{n.prefix}-abcd1234"


def _tracking_alarm(r: Resource, n: Names) -> str:
    return f"arn:aws:cloudwatch:{_ra(n)}:alarm:TargetTracking-{r.inputs['resourceId']}-AlarmHigh-5b7f"


def _ec2_own(kind: str) -> Arn:
    """The EC2 resource itself, by the id EC2 gives it (the plan's mock id)."""
    return lambda r, n: f"arn:aws:ec2:{_ra(n)}:{kind}/{mock_ec2_id(r.type, r.name)}"


def _ec2_input(kind: str, key: str) -> Arn:
    """The EC2 resources an input names by id (vpcId; subnetIds, securityGroupIds, routeTableIds)."""
    def arns(r: Resource, n: Names) -> list[str]:
        value = r.inputs[key]
        return [f"arn:aws:ec2:{_ra(n)}:{kind}/{one}" for one in (value if isinstance(value, list) else [value])]

    return arns


def _route53_zone(r: Resource, n: Names) -> str:
    return "arn:aws:route53:::hostedzone/Z0SERVICEPRIVATEZONE"


# --- Condition contexts -----------------------------------------------------------------------------------------
def _passed_to(service: str) -> Context:
    return lambda r, n: {"iam:PassedToService": f"{service}.amazonaws.com"}


def _boundary_of(key: str) -> Context:
    """iam:PermissionsBoundary of a write to the role named by input `key`: every role of the stack but the deploy
    role carries the workload boundary (tests/infra/test_access.py proves it of the plan)."""
    def context(r: Resource, n: Names) -> dict[str, Any]:
        boundary = f"arn:aws:iam::{n.account_id}:policy/{n.workload_boundary}"
        return {} if r.inputs[key] == n.deploy_role else {"iam:PermissionsBoundary": boundary}
    return context


def _request_tags(r: Resource, n: Names) -> dict[str, Any]:
    tags = r.inputs.get("tags", {})
    return {**{f"aws:RequestTag/{k}": v for k, v in tags.items()}, "aws:TagKeys": list(tags)}


def _resource_tags(r: Resource, n: Names) -> dict[str, Any]:
    return {f"aws:ResourceTag/{k}": v for k, v in r.inputs.get("tags", {}).items()}


def _created_by(action: str) -> Context:
    """Tags written by a create request's TagSpecifications: EC2 authorizes them as CreateTags with ec2:CreateAction."""
    return lambda r, n: {"ec2:CreateAction": action, **_request_tags(r, n)}


def _stack_network_tags(r: Resource, n: Names) -> dict[str, Any]:
    """The tags of the stack's VPC, subnets, groups and route tables (network.py tags each like every resource)."""
    return {"aws:ResourceTag/environment": n.stack, "aws:ResourceTag/project": PROJECT}


def _ec2_created(action: str, kind: str, parents: tuple[tuple[str, str], ...], reads: tuple[str, ...],
                 writes: tuple[str, ...], why: str) -> list[Target]:
    """An EC2 resource: `action` with TagSpecifications (the request tags, and CreateTags at creation), on its
    parents (the inputs naming them) too; `writes` (update, tags, delete) on itself; `reads` take no resource."""
    return [
        Target((f"ec2:{action}",), _ec2_own(kind), f"{action} with the stack's tags", _request_tags),
        Target(("ec2:CreateTags",), _ec2_own(kind), "TagSpecifications of the create", _created_by(action)),
        *(Target((f"ec2:{action}",), _ec2_input(parent, key), f"{action} names its {parent}", _stack_network_tags)
          for parent, key in parents),
        Target(("ec2:CreateTags", "ec2:DeleteTags", *writes), _ec2_own(kind), why, _stack_network_tags),
        Target(reads, _star, "Read, and the waiters"),
    ]


def _stack_key_tags(r: Resource, n: Names) -> dict[str, Any]:
    """The tags of the stack's key (storage.py tags it like every resource of the stack)."""
    return {"aws:ResourceTag/environment": n.stack, "aws:ResourceTag/project": PROJECT}


# --- Shared action sets -----------------------------------------------------------------------------------------
_SAGEMAKER_TAGS_READ = ("sagemaker:ListTags",)  # tags interceptor, Read
_SAGEMAKER_TAGS_WRITE = ("sagemaker:AddTags", "sagemaker:DeleteTags")  # AddTags also at create (Tags in input)


def _sagemaker(kind: str, key: str, create: str, describe: str, update: tuple[str, ...], delete: str,
               context: Context | None = None) -> Target:
    actions = (f"sagemaker:{create}", f"sagemaker:{describe}", *update, f"sagemaker:{delete}")
    why = f"sagemaker/{kind}: {create}+AddTags, {describe} (waiters and Read), ListTags, {delete}"
    return Target((*actions, *_SAGEMAKER_TAGS_READ, *_SAGEMAKER_TAGS_WRITE), _sm(kind, key), why, context)


def _model_request(r: Resource, n: Names) -> dict[str, Any]:
    """CreateModel's condition keys (Service Authorization Reference): network isolation and the VPC's subnets."""
    context: dict[str, Any] = {"sagemaker:NetworkIsolation": str(r.inputs.get("enableNetworkIsolation", False)).lower()}
    if r.inputs.get("vpcConfig"):
        context["sagemaker:VpcSubnets"] = r.inputs["vpcConfig"]["subnets"]
    return context


def _bucket_config(put: str, get: str, why: str) -> list[Target]:
    """Bucket sub-resources: Put on create/update, Get on the create waiter and Read, Delete via the Put action."""
    return [Target((put, get), _bucket, why)]


# fmt: off
PROVIDER_ACTIONS: dict[str, list[Target]] = {
    # s3/bucket.go: CreateBucket (ACL private needs no s3:PutBucketAcl), HeadBucket waiter, bucketCreateTags;
    # Read: HeadBucket, policy, ACL, CORS, website, versioning, accelerate, request payment, logging, lifecycle,
    # replication, encryption, object lock, GetBucketRegion (HeadBucket), tags; Delete: DeleteBucket, and with
    # force_destroy emptyBucket (ListObjectVersions, DeleteObjects of versions and delete markers).
    "aws:s3/bucket:Bucket": [
        Target(
            ("s3:CreateBucket", "s3:ListBucket", "s3:PutBucketTagging", "s3:GetBucketTagging", "s3:GetBucketPolicy",
             "s3:GetBucketAcl", "s3:GetBucketCORS", "s3:GetBucketWebsite", "s3:GetBucketVersioning",
             "s3:GetAccelerateConfiguration", "s3:GetBucketRequestPayment", "s3:GetBucketLogging",
             "s3:GetLifecycleConfiguration", "s3:GetReplicationConfiguration", "s3:GetEncryptionConfiguration",
             "s3:GetBucketObjectLockConfiguration", "s3:DeleteBucket", "s3:ListBucketVersions"),
            _bucket,
            "s3/bucket.go create, read, tags, delete (force_destroy lists versions)",
        ),
        Target(("s3:DeleteObject", "s3:DeleteObjectVersion"), _any_object, "force_destroy empties the bucket"),
    ],
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": _bucket_config(
        "s3:PutLifecycleConfiguration", "s3:GetLifecycleConfiguration",
        "PutBucketLifecycleConfiguration; Get (waiter, Read); DeleteBucketLifecycle is s3:PutLifecycleConfiguration",
    ),
    "aws:s3/bucketLogging:BucketLogging": _bucket_config(
        "s3:PutBucketLogging", "s3:GetBucketLogging", "PutBucketLogging (delete puts an empty status); GetBucketLogging"
    ),
    "aws:s3/bucketNotification:BucketNotification": _bucket_config(
        "s3:PutBucketNotification", "s3:GetBucketNotification",
        "Put/GetBucketNotificationConfiguration; delete puts an empty configuration",
    ),
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": _bucket_config(
        "s3:PutBucketOwnershipControls", "s3:GetBucketOwnershipControls",
        "Put/Get/DeleteBucketOwnershipControls (Delete is s3:PutBucketOwnershipControls)",
    ),
    "aws:s3/bucketPolicy:BucketPolicy": [
        Target(("s3:PutBucketPolicy", "s3:GetBucketPolicy", "s3:DeleteBucketPolicy"), _bucket,
               "PutBucketPolicy, GetBucketPolicy (waiter, Read), DeleteBucketPolicy"),
    ],
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": _bucket_config(
        "s3:PutBucketPublicAccessBlock", "s3:GetBucketPublicAccessBlock",
        "Put/Get/DeletePublicAccessBlock (Delete is s3:PutBucketPublicAccessBlock)",
    ),
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": _bucket_config(
        "s3:PutEncryptionConfiguration", "s3:GetEncryptionConfiguration",
        "Put/Get/DeleteBucketEncryption (Delete is s3:PutEncryptionConfiguration)",
    ),
    "aws:s3/bucketVersioning:BucketVersioning": _bucket_config(
        "s3:PutBucketVersioning", "s3:GetBucketVersioning",
        "PutBucketVersioning (delete suspends), GetBucketVersioning",
    ),
    # s3/object.go: PutObject (one part below 5 MiB) with Tagging and SSE-KMS; Read: HeadObject, then
    # setObjectKMSKeyID describes the AWS managed aws/s3 key to tell it from the object's key; tags interceptor
    # reads GetObjectTagging; Delete of an object with version_id: ListObjectVersions + DeleteObject(VersionId).
    "aws:s3/bucketObjectv2:BucketObjectv2": [
        Target(("s3:PutObject", "s3:PutObjectTagging", "s3:GetObject", "s3:GetObjectTagging",
                "s3:DeleteObjectVersion"), _object, "s3/object.go upload, HeadObject, tags, delete of versions"),
        Target(("s3:ListBucketVersions",), _bucket, "deleteAllObjectVersions lists the key's versions"),
        Target(("kms:GenerateDataKey",), _key("kmsKeyId"), "SSE-KMS PutObject: S3 asks KMS for a data key",
               _stack_key_tags),
        Target(("kms:DescribeKey",), lambda r, n: f"arn:aws:kms:{_ra(n)}:key/{AWS_S3_KEY_ID}",
               "Read: tfkms.FindKeyByID(alias/aws/s3), the AWS managed key (untagged)",
               lambda r, n: {"kms:ResourceAliases": ["alias/aws/s3"]}),
    ],
    # kms/key.go: CreateKey with Tags and Policy; updateKeyRotationEnabled (EnableKeyRotation + status waiter);
    # policy and tag propagation waiters; Read (findKeyInfo): DescribeKey, GetKeyPolicy, GetKeyRotationStatus,
    # ListResourceTags; Update: description, policy, rotation, tags; Delete: ScheduleKeyDeletion + DescribeKey.
    "aws:kms/key:Key": [
        Target(("kms:CreateKey", "kms:TagResource"), _star,
               "CreateKey with Tags: authorized on * before the key exists, on the request's tags", _request_tags),
        Target(("kms:EnableKeyRotation", "kms:GetKeyRotationStatus", "kms:GetKeyPolicy", "kms:ListResourceTags",
                "kms:DescribeKey", "kms:UpdateKeyDescription", "kms:PutKeyPolicy", "kms:TagResource",
                "kms:UntagResource", "kms:ScheduleKeyDeletion"), _new_key,
               "kms/key.go waiters, Read, Update, Delete on the new key", _resource_tags),
    ],
    # kms/alias.go: CreateAlias (alias and key), Read via ListAliases, UpdateAlias (alias, old and new key),
    # DeleteAlias (alias and key).
    "aws:kms/alias:Alias": [
        Target(("kms:CreateAlias", "kms:UpdateAlias", "kms:DeleteAlias"),
               lambda r, n: f"arn:aws:kms:{_ra(n)}:{r.inputs['name']}", "alias side of Create/Update/DeleteAlias"),
        Target(("kms:CreateAlias", "kms:UpdateAlias", "kms:DeleteAlias"), _key("targetKeyId"),
               "key side of Create/Update/DeleteAlias"),
        Target(("kms:ListAliases",), _star, "Read: findAliasByName pages ListAliases"),
    ],
    # iam/role.go: CreateRole with Tags (tags read back from GetRole); Read: GetRole, readRoleInlinePolicies
    # (ListRolePolicies + GetRolePolicy each), ListAttachedRolePolicies; Update: UpdateAssumeRolePolicy,
    # UpdateRoleDescription, UpdateRole (max session), Tag/UntagRole; Delete: ListInstanceProfilesForRole, DeleteRole
    # (force_detach_policies is false: no detach calls).
    # CreateRole passes PermissionsBoundary; Update: PutRolePermissionsBoundary when it changes. IAM gives each write
    # the role's boundary as iam:PermissionsBoundary (the new one for CreateRole and PutRolePermissionsBoundary).
    "aws:iam/role:Role": [
        Target(("iam:CreateRole", "iam:TagRole", "iam:GetRole", "iam:ListRolePolicies", "iam:GetRolePolicy",
                "iam:ListAttachedRolePolicies", "iam:UpdateAssumeRolePolicy", "iam:UpdateRoleDescription",
                "iam:UpdateRole", "iam:UntagRole", "iam:ListInstanceProfilesForRole", "iam:DeleteRole"),
               _role("name"), "iam/role.go create, read, update, delete", _boundary_of("name")),
        Target(("iam:PutRolePermissionsBoundary",), _role("name"), "iam/role.go update of the boundary",
               _boundary_of("name"), "permissionsBoundary"),
    ],
    "aws:iam/rolePolicy:RolePolicy": [
        Target(("iam:PutRolePolicy", "iam:GetRolePolicy", "iam:DeleteRolePolicy"), _role("role"),
               "iam/role_policy.go Put, Get (Read), Delete", _boundary_of("role")),
    ],
    # iam/policy.go: CreatePolicy with Tags; Read: GetPolicy (tags in its output), GetPolicyVersion; Update:
    # ListPolicyVersions (prune the oldest of five: DeletePolicyVersion), CreatePolicyVersion (as default), Tag/Untag;
    # Delete: ListPolicyVersions, DeletePolicyVersion of the others, DeletePolicy.
    "aws:iam/policy:Policy": [
        Target(("iam:CreatePolicy", "iam:TagPolicy", "iam:GetPolicy", "iam:GetPolicyVersion", "iam:ListPolicyVersions",
                "iam:CreatePolicyVersion", "iam:DeletePolicyVersion", "iam:UntagPolicy", "iam:DeletePolicy"),
               lambda r, n: f"arn:aws:iam::{n.account_id}:policy/{r.inputs['name']}",
               "iam/policy.go create, read, update, delete"),
    ],
    # iam/role_policy_attachment.go: AttachRolePolicy; Read: ListAttachedRolePolicies; Delete: DetachRolePolicy.
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": [
        Target(("iam:AttachRolePolicy", "iam:ListAttachedRolePolicies", "iam:DetachRolePolicy"), _role("role"),
               "iam/role_policy_attachment.go attach, read, detach",
               lambda r, n: {"iam:PolicyARN": r.inputs["policyArn"]}),
    ],
    # iam/openid_connect_provider.go: Create with Tags, Get (tags from the output), Update: thumbprint, Add/Remove
    # client IDs, tags; Delete.
    "aws:iam/openIdConnectProvider:OpenIdConnectProvider": [
        Target(("iam:CreateOpenIDConnectProvider", "iam:TagOpenIDConnectProvider", "iam:GetOpenIDConnectProvider",
                "iam:UpdateOpenIDConnectProviderThumbprint", "iam:AddClientIDToOpenIDConnectProvider",
                "iam:RemoveClientIDFromOpenIDConnectProvider", "iam:UntagOpenIDConnectProvider",
                "iam:DeleteOpenIDConnectProvider"),
               lambda r, n: f"arn:aws:iam::{n.account_id}:oidc-provider/{str(r.inputs['url']).removeprefix('https://')}",
               "iam/openid_connect_provider.go create, read, update, delete"),
    ],
    # ecr/repository.go: CreateRepository with Tags; Read: DescribeRepositories, ListTagsForResource; Update:
    # PutImageTagMutability, PutImageScanningConfiguration, tags; Delete (force) + DescribeRepositories waiter.
    "aws:ecr/repository:Repository": [
        Target(("ecr:CreateRepository", "ecr:TagResource", "ecr:DescribeRepositories", "ecr:ListTagsForResource",
                "ecr:PutImageTagMutability", "ecr:PutImageScanningConfiguration", "ecr:UntagResource",
                "ecr:DeleteRepository"), _ecr("name"), "ecr/repository.go create, read, update, delete"),
        # Not provider code: ECR's encryption-at-rest guide (CreateRepository with a customer managed key: ECR
        # calls DescribeKey and two CreateGrant with the caller's rights). RetireGrant when the repository is
        # deleted is from the guide's required-permissions list as remembered, not verified here.
        Target(("kms:DescribeKey", "kms:CreateGrant", "kms:RetireGrant"),
               _key("encryptionConfigurations", 0, "kmsKey"), "ECR grants itself the repository's key",
               _stack_key_tags),
    ],
    "aws:ecr/lifecyclePolicy:LifecyclePolicy": [
        Target(("ecr:PutLifecyclePolicy", "ecr:GetLifecyclePolicy", "ecr:DeleteLifecyclePolicy"),
               _ecr("repository"), "ecr/lifecycle_policy.go Put, Get, Delete"),
    ],
    "aws:ecr/repositoryPolicy:RepositoryPolicy": [
        Target(("ecr:SetRepositoryPolicy", "ecr:GetRepositoryPolicy", "ecr:DeleteRepositoryPolicy"),
               _ecr("repository"), "ecr/repository_policy.go Set, Get, Delete"),
    ],
    "aws:cloudwatch/dashboard:Dashboard": [
        Target(("cloudwatch:PutDashboard", "cloudwatch:GetDashboard", "cloudwatch:DeleteDashboards"),
               lambda r, n: f"arn:aws:cloudwatch::{n.account_id}:dashboard/{r.inputs['dashboardName']}",
               "cloudwatch/dashboard.go Put, Get, DeleteDashboards"),
    ],
    # cloudwatch/metric_alarm.go: PutMetricAlarm with Tags (CloudWatch then requires cloudwatch:TagResource:
    # AWS's PutMetricAlarm documentation, not provider code); Read: DescribeAlarms, ListTagsForResource.
    "aws:cloudwatch/metricAlarm:MetricAlarm": [
        Target(("cloudwatch:PutMetricAlarm", "cloudwatch:TagResource", "cloudwatch:DescribeAlarms",
                "cloudwatch:ListTagsForResource", "cloudwatch:UntagResource", "cloudwatch:DeleteAlarms"),
               _alarm, "cloudwatch/metric_alarm.go create, read, tags, delete"),
    ],
    # events/rule.go on the default bus: PutRule with Tags, DescribeRule, ListTagsForResource, DeleteRule.
    "aws:cloudwatch/eventRule:EventRule": [
        Target(("events:PutRule", "events:TagResource", "events:DescribeRule", "events:ListTagsForResource",
                "events:UntagResource", "events:DeleteRule"), _rule("name"), "events/rule.go create, read, delete"),
    ],
    # events/target.go: PutTargets (passes roleArn when set), ListTargetsByRule (Read), RemoveTargets.
    "aws:cloudwatch/eventTarget:EventTarget": [
        Target(("events:PutTargets", "events:ListTargetsByRule", "events:RemoveTargets"), _rule("rule"),
               "events/target.go PutTargets, ListTargetsByRule, RemoveTargets"),
        Target(("iam:PassRole",), _arn_input("roleArn"), "PutTargets with RoleArn", _passed_to("events"), "roleArn"),
    ],
    # events/bus.go: CreateEventBus with Tags and KmsKeyIdentifier, DescribeEventBus, tags interceptor
    # ListTagsForResource, UpdateEventBus, DeleteEventBus. With a customer managed key EventBridge checks the key
    # (DescribeKey) on the caller's behalf: its KMS guide, not provider code.
    "aws:cloudwatch/eventBus:EventBus": [
        Target(("events:CreateEventBus", "events:TagResource", "events:DescribeEventBus",
                "events:ListTagsForResource", "events:UntagResource", "events:UpdateEventBus",
                "events:DeleteEventBus"), _bus("name"), "events/bus.go create, read, update, delete"),
        Target(("kms:DescribeKey",), _key("kmsKeyIdentifier"), "bus encrypted with the stack's key", _stack_key_tags,
               "kmsKeyIdentifier"),
    ],
    # events/bus_policy.go: PutPermission with Policy, DescribeEventBus (Read), RemovePermission (all) on delete;
    # PutPermission and RemovePermission take no resource.
    "aws:cloudwatch/eventBusPolicy:EventBusPolicy": [
        Target(("events:DescribeEventBus",), _bus("eventBusName"), "events/bus_policy.go Read: DescribeEventBus"),
        Target(("events:PutPermission", "events:RemovePermission"), _star,
               "events/bus_policy.go PutPermission, RemovePermission"),
    ],
    # grafana/workspace_service_account.go: Create, List (Read: by id through the list), Delete; the token's:
    # Create, List (Read), Delete. Both on the workspace.
    "aws:grafana/workspaceServiceAccount:WorkspaceServiceAccount": [
        Target(("grafana:CreateWorkspaceServiceAccount", "grafana:ListWorkspaceServiceAccounts",
                "grafana:DeleteWorkspaceServiceAccount"), _workspace, "grafana/workspace_service_account.go CRUD"),
    ],
    "aws:grafana/workspaceServiceAccountToken:WorkspaceServiceAccountToken": [
        Target(("grafana:CreateWorkspaceServiceAccountToken", "grafana:ListWorkspaceServiceAccountTokens",
                "grafana:DeleteWorkspaceServiceAccountToken"), _workspace,
               "grafana/workspace_service_account_token.go CRUD"),
    ],
    # The Grafana provider's resources call Grafana's HTTP API with the service account's token: no AWS request.
    "pulumi:providers:grafana": [],
    "grafana:oss/dataSource:DataSource": [],
    "grafana:oss/folder:Folder": [],
    "grafana:oss/dashboard:Dashboard": [],
    # scheduler/schedule.go: CreateSchedule (retries while the role propagates), GetSchedule, UpdateSchedule,
    # DeleteSchedule; schedules take no tags.
    "aws:scheduler/schedule:Schedule": [
        Target(("scheduler:CreateSchedule", "scheduler:GetSchedule", "scheduler:UpdateSchedule",
                "scheduler:DeleteSchedule"),
               lambda r, n: f"arn:aws:scheduler:{_ra(n)}:schedule/{r.inputs.get('groupName', 'default')}/"
                            f"{r.inputs['name']}", "scheduler/schedule.go create, read, update, delete"),
        Target(("iam:PassRole",), _arn_input("target", "roleArn"), "CreateSchedule passes the target's role",
               _passed_to("scheduler")),
        # Not provider code, and not verified: EventBridge Scheduler's encryption-at-rest guide has the caller of
        # Create/Get/UpdateSchedule with a customer managed key decrypt with it.
        Target(("kms:Decrypt",), _key("kmsKeyArn"), "schedule encrypted with the stack's key", _stack_key_tags),
    ],
    # sns/topic.go: CreateTopic with Tags, SetTopicAttributes for the rest (KmsMasterKeyId), GetTopicAttributes,
    # tags interceptor ListTagsForResource, DeleteTopic.
    "aws:sns/topic:Topic": [
        Target(("sns:CreateTopic", "sns:TagResource", "sns:SetTopicAttributes", "sns:GetTopicAttributes",
                "sns:ListTagsForResource", "sns:UntagResource", "sns:DeleteTopic"),
               lambda r, n: f"arn:aws:sns:{_ra(n)}:{r.inputs['name']}", "sns/topic.go create, read, delete"),
    ],
    # sns/topic_policy.go: SetTopicAttributes(Policy), GetTopicAttributes; delete resets the default policy.
    "aws:sns/topicPolicy:TopicPolicy": [
        Target(("sns:SetTopicAttributes", "sns:GetTopicAttributes"), _arn_input("arn"),
               "sns/topic_policy.go Set/GetTopicAttributes"),
    ],
    # sns/topic_subscription.go (read in a v5 copy, unchanged calls): Subscribe; e-mail is not waited on;
    # GetSubscriptionAttributes, SetSubscriptionAttributes, Unsubscribe take no resource.
    "aws:sns/topicSubscription:TopicSubscription": [
        Target(("sns:Subscribe",), _arn_input("topic"), "Subscribe on the topic"),
        Target(("sns:GetSubscriptionAttributes", "sns:SetSubscriptionAttributes", "sns:Unsubscribe"), _star,
               "read, update, delete of the subscription"),
    ],
    "aws:sagemaker/model:Model": [
        _sagemaker("model", "name", "CreateModel", "DescribeModel", (), "DeleteModel", _model_request),
        Target(("iam:PassRole",), _arn_input("executionRoleArn"), "CreateModel passes ExecutionRoleArn",
               _passed_to("sagemaker")),
        # Not provider code, not verified: SageMaker resolves PrimaryContainer.ModelPackageName on the caller's
        # rights (the consumer group policy grants DescribeModelPackage for this reason).
        Target(("sagemaker:DescribeModelPackage",), _arn_input("primaryContainer", "modelPackageName"),
               "CreateModel from a model package"),
    ],
    "aws:sagemaker/endpointConfiguration:EndpointConfiguration": [
        _sagemaker("endpoint-config", "name", "CreateEndpointConfig", "DescribeEndpointConfig", (),
                   "DeleteEndpointConfig"),
        # SageMaker API permissions reference: CreateEndpoint needs kms:CreateGrant when the config has KmsKeyId.
        Target(("kms:CreateGrant",), _key("kmsKeyArn"), "Create/UpdateEndpoint with this config grants on its key",
               _stack_key_tags, only_with="kmsKeyArn"),  # a serverless configuration has no instance storage key
    ],
    # sagemaker/endpoint.go: CreateEndpoint (DeploymentConfig, Tags), waitEndpointInService; UpdateEndpoint on a
    # new config + waiter; DeleteEndpoint + waiter.
    "aws:sagemaker/endpoint:Endpoint": [
        _sagemaker("endpoint", "name", "CreateEndpoint", "DescribeEndpoint", ("sagemaker:UpdateEndpoint",),
                   "DeleteEndpoint"),
    ],
    "aws:sagemaker/mlflowTrackingServer:MlflowTrackingServer": [
        _sagemaker("mlflow-tracking-server", "trackingServerName", "CreateMlflowTrackingServer",
                   "DescribeMlflowTrackingServer", ("sagemaker:UpdateMlflowTrackingServer",),
                   "DeleteMlflowTrackingServer"),
        Target(("iam:PassRole",), _arn_input("roleArn"), "CreateMlflowTrackingServer passes RoleArn",
               _passed_to("sagemaker")),
    ],
    "aws:sagemaker/modelPackageGroup:ModelPackageGroup": [
        _sagemaker("model-package-group", "modelPackageGroupName", "CreateModelPackageGroup",
                   "DescribeModelPackageGroup", (), "DeleteModelPackageGroup"),
    ],
    "aws:sagemaker/modelPackageGroupPolicy:ModelPackageGroupPolicy": [
        Target(("sagemaker:PutModelPackageGroupPolicy", "sagemaker:GetModelPackageGroupPolicy",
                "sagemaker:DeleteModelPackageGroupPolicy"), _sm("model-package-group", "modelPackageGroupName"),
               "sagemaker/model_package_group_policy.go Put, Get, Delete"),
    ],
    "aws:sagemaker/pipeline:Pipeline": [
        _sagemaker("pipeline", "pipelineName", "CreatePipeline", "DescribePipeline", ("sagemaker:UpdatePipeline",),
                   "DeletePipeline"),
        Target(("iam:PassRole",), _arn_input("roleArn"), "Create/UpdatePipeline pass RoleArn", _passed_to("sagemaker")),
    ],
    # appautoscaling/target.go: RegisterScalableTarget with Tags (create and update), DescribeScalableTargets
    # (Read, delete waiter), tags interceptor, DeregisterScalableTarget.
    # ec2/vpc_.go: CreateVpc (TagSpecifications), waiters and Read (DescribeVpcs, DescribeVpcAttribute for the DNS
    # attributes, the default network ACL, route table and security group), ModifyVpcAttribute for each DNS
    # attribute, DeleteVpc. Not re-read against v6 sources: the calls of the v5 code, by the EC2 API's names.
    "aws:ec2/vpc:Vpc": _ec2_created(
        "CreateVpc", "vpc", (), ("ec2:DescribeVpcs", "ec2:DescribeNetworkAcls", "ec2:DescribeRouteTables",
                                 "ec2:DescribeSecurityGroups"),
        ("ec2:DescribeVpcAttribute", "ec2:ModifyVpcAttribute", "ec2:DeleteVpc"), "DNS attributes, tags, delete"),
    # ec2/vpc_subnet.go: CreateSubnet, ModifySubnetAttribute (map_public_ip_on_launch and the others set),
    # DescribeSubnets, DeleteSubnet waiting for its network interfaces; zones from getAvailabilityZones before it.
    "aws:ec2/subnet:Subnet": [
        *_ec2_created("CreateSubnet", "subnet", (("vpc", "vpcId"),),
                      ("ec2:DescribeSubnets", "ec2:DescribeNetworkInterfaces", "ec2:DescribeAvailabilityZones"),
                      ("ec2:ModifySubnetAttribute", "ec2:DeleteSubnet"), "attributes, tags, delete"),
    ],
    "aws:ec2/routeTable:RouteTable": _ec2_created(
        "CreateRouteTable", "route-table", (("vpc", "vpcId"),), ("ec2:DescribeRouteTables",),
        ("ec2:DeleteRouteTable",), "tags, delete"),
    # ec2/vpc_route_table_association.go: AssociateRouteTable, DescribeRouteTables, DisassociateRouteTable.
    "aws:ec2/routeTableAssociation:RouteTableAssociation": [
        Target(("ec2:AssociateRouteTable", "ec2:DisassociateRouteTable"), _ec2_input("route-table", "routeTableId"),
               "associate, disassociate", _stack_network_tags),
        Target(("ec2:AssociateRouteTable", "ec2:DisassociateRouteTable"), _ec2_input("subnet", "subnetId"),
               "associate, disassociate", _stack_network_tags),
        Target(("ec2:DescribeRouteTables",), _star, "Read"),
    ],
    # ec2/vpc_security_group.go: CreateSecurityGroup, revoke the default egress rule, authorize the inline rules,
    # update by revoke/authorize, DeleteSecurityGroup (after its network interfaces are gone).
    "aws:ec2/securityGroup:SecurityGroup": _ec2_created(
        "CreateSecurityGroup", "security-group", (("vpc", "vpcId"),),
        ("ec2:DescribeSecurityGroups", "ec2:DescribeSecurityGroupRules", "ec2:DescribeNetworkInterfaces"),
        ("ec2:AuthorizeSecurityGroupEgress", "ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupEgress",
         "ec2:RevokeSecurityGroupIngress", "ec2:DeleteSecurityGroup"), "rules, tags, delete"),
    # ec2/vpc_endpoint.go: CreateVpcEndpoint (subnets, groups or route tables), waiter, DescribeVpcEndpoints,
    # DescribePrefixLists (a gateway's prefix_list_id), ModifyVpcEndpoint, DeleteVpcEndpoints.
    "aws:ec2/vpcEndpoint:VpcEndpoint": [
        *_ec2_created("CreateVpcEndpoint", "vpc-endpoint", (("vpc", "vpcId"),),
                      ("ec2:DescribeVpcEndpoints", "ec2:DescribePrefixLists"),
                      ("ec2:ModifyVpcEndpoint", "ec2:DeleteVpcEndpoints"), "update, tags, delete"),
        Target(("ec2:CreateVpcEndpoint",), _ec2_input("subnet", "subnetIds"), "an interface endpoint's subnets",
               _stack_network_tags, only_with="subnetIds"),
        Target(("ec2:CreateVpcEndpoint",), _ec2_input("security-group", "securityGroupIds"),
               "an interface endpoint's groups", _stack_network_tags, only_with="securityGroupIds"),
        Target(("ec2:CreateVpcEndpoint",), _ec2_input("route-table", "routeTableIds"), "a gateway's route tables",
               _stack_network_tags, only_with="routeTableIds"),
        # Service Authorization Reference: CreateVpcEndpoint's dependent action for private DNS.
        Target(("route53:AssociateVPCWithHostedZone",), _route53_zone, "private DNS of an interface endpoint",
               only_with="privateDnsEnabled"),
    ],
    # cloudtrail/trail.go: CreateTrail (TagsList), PutEventSelectors, StartLogging; Read: DescribeTrails,
    # GetTrailStatus, GetEventSelectors, GetInsightSelectors, ListTags; UpdateTrail; DeleteTrail.
    "aws:cloudtrail/trail:Trail": [
        Target(("cloudtrail:CreateTrail", "cloudtrail:AddTags", "cloudtrail:PutEventSelectors",
                "cloudtrail:StartLogging", "cloudtrail:StopLogging", "cloudtrail:DescribeTrails",
                "cloudtrail:GetTrail", "cloudtrail:GetTrailStatus", "cloudtrail:GetEventSelectors",
                "cloudtrail:GetInsightSelectors", "cloudtrail:ListTags", "cloudtrail:RemoveTags",
                "cloudtrail:UpdateTrail", "cloudtrail:DeleteTrail"),
               lambda r, n: f"arn:aws:cloudtrail:{_ra(n)}:trail/{r.inputs['name']}", "cloudtrail/trail.go"),
    ],
    # logs/group.go: CreateLogGroup (KmsKeyId, Tags), PutRetentionPolicy; Read: DescribeLogGroups by prefix, tags;
    # update: AssociateKmsKey / DisassociateKmsKey, PutRetentionPolicy / DeleteRetentionPolicy; DeleteLogGroup.
    "aws:cloudwatch/logGroup:LogGroup": [
        # CreateLogGroup and the older calls are authorized on `<group>:log-stream:` (AccessDenied messages of
        # terraform-provider-aws#8804 name that resource); the tagging calls on the group's ARN.
        Target(("logs:CreateLogGroup", "logs:PutRetentionPolicy", "logs:AssociateKmsKey", "logs:DisassociateKmsKey",
                "logs:DeleteRetentionPolicy", "logs:DeleteLogGroup"),
               lambda r, n: f"arn:aws:logs:{_ra(n)}:log-group:{r.inputs['name']}:log-stream:", "logs/group.go"),
        Target(("logs:TagResource", "logs:ListTagsForResource", "logs:UntagResource"),
               lambda r, n: f"arn:aws:logs:{_ra(n)}:log-group:{r.inputs['name']}", "logs/group.go, tags"),
        Target(("logs:DescribeLogGroups",), _star, "Read (DescribeLogGroups by name prefix)"),
    ],
    "aws:appautoscaling/target:Target": [
        Target(("application-autoscaling:RegisterScalableTarget", "application-autoscaling:TagResource",
                "application-autoscaling:ListTagsForResource", "application-autoscaling:UntagResource",
                "application-autoscaling:DeregisterScalableTarget"), _scalable_target,
               "appautoscaling/target.go register, tags, deregister"),
        Target(("application-autoscaling:DescribeScalableTargets",), _star, "Read and the delete waiter"),
        # Not provider code: SageMaker's auto scaling prerequisites list these for the caller who registers.
        Target(("sagemaker:DescribeEndpoint", "sagemaker:UpdateEndpointWeightsAndCapacities"), _scaled_endpoint,
               "RegisterScalableTarget checks the endpoint variant"),
        Target(("sagemaker:DescribeEndpointConfig",), _scaled_endpoint_config, "RegisterScalableTarget"),
        Target(("iam:CreateServiceLinkedRole",),
               lambda r, n: f"arn:aws:iam::{n.account_id}:role/aws-service-role/sagemaker.application-autoscaling."
                            "amazonaws.com/AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint",
               "first registration creates the service-linked role",
               lambda r, n: {"iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"}),
    ],
    # appautoscaling/policy.go: PutScalingPolicy, DescribeScalingPolicies (Read), DeleteScalingPolicy.
    "aws:appautoscaling/policy:Policy": [
        Target(("application-autoscaling:PutScalingPolicy", "application-autoscaling:DeleteScalingPolicy"),
               _scalable_target, "appautoscaling/policy.go Put, Delete"),
        Target(("application-autoscaling:DescribeScalingPolicies",), _star, "Read"),
        # Application Auto Scaling's documentation: target tracking manages its alarms with the caller's rights.
        Target(("cloudwatch:PutMetricAlarm", "cloudwatch:DescribeAlarms", "cloudwatch:DeleteAlarms"),
               _tracking_alarm, "the target-tracking alarms"),
    ],
}
# fmt: on


def requests_for(resource: Resource, names: Names) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(action, ARN, why, condition context) of every provider call for one planned resource."""
    try:
        targets = PROVIDER_ACTIONS[resource.type]
    except KeyError:
        raise KeyError(
            f"{resource.type} ({resource.name}) has no entry in tests/infra/provider_actions.py PROVIDER_ACTIONS: "
            "add the provider's calls for it"
        ) from None
    return [
        (action, arn, target.why, target.context(resource, names) if target.context else {})
        for target in targets
        if target.only_with is None or target.only_with in resource.inputs
        for arn in _each(target.arn(resource, names))
        for action in target.actions
    ]


def _each(arns: str | list[str]) -> list[str]:
    return arns if isinstance(arns, list) else [arns]


def actions_for(resource: Resource, names: Names) -> list[tuple[str, str, str]]:
    """(action, ARN, why) of every provider call for one planned resource; KeyError for an unmapped type."""
    return [(action, arn, why) for action, arn, why, _ in requests_for(resource, names)]

"""Every rule: the compliant baseline passes, and one changed property fails with the exact message."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from policies.offline import Violation, evaluate
from policies.rules import ALL_POLICIES
from tests.policies.baseline import ARTIFACTS, ENDPOINT, KEY_ARN, LOGS, RESOURCE_ID, ROLE_ARN, baseline

Mutation = Callable[[list[dict]], None]
DELETE = object()


def _find(resources: list[dict], name: str) -> dict:
    (found,) = [r for r in resources if r["name"] == name]
    return found


def _set(obj: Any, path: str, value: Any) -> None:
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    for key in parents:
        obj = obj[key]
    if value is DELETE:
        del obj[last]
    elif isinstance(obj, list) and last == len(obj):
        obj.append(value)
    else:
        obj[last] = value


def put(name: str, path: str, value: Any) -> Mutation:
    """Set (or DELETE) inputs.<path> of resource ``name``."""
    return lambda resources: _set(_find(resources, name)["inputs"], path, value)


def put_json(name: str, prop: str, path: str, value: Any) -> Mutation:
    """Set (or DELETE) <path> inside the JSON document held by input ``prop`` of resource ``name``."""

    def mutate(resources: list[dict]) -> None:
        holder = _find(resources, name)["inputs"]
        *parents, last = prop.split(".")  # a dotted prop: the document is nested (a schedule's target.input)
        for key in parents:
            holder = holder[key]
        doc = json.loads(holder[last])
        _set(doc, path, value)
        holder[last] = json.dumps(doc)

    return mutate


def remove(name: str) -> Mutation:
    return lambda resources: resources.remove(_find(resources, name))


def add(type_: str, name: str, inputs: dict[str, Any]) -> Mutation:
    return lambda resources: resources.append({"type": type_, "name": name, "inputs": inputs})


@dataclass
class Case:
    id: str
    mutate: Mutation
    expected: list[Violation]


def one(policy: str, resource: str, message: str, level: str = "mandatory") -> list[Violation]:
    return [Violation(policy, resource, message, level)]


PUBLIC_STATEMENT = {
    "Sid": "PublicRead",
    "Effect": "Allow",
    "Principal": "*",
    "Action": "s3:GetObject",
    "Resource": f"arn:aws:s3:::{ARTIFACTS}/*",
}
TRAIN_STEP = "Steps.1.Arguments"
EVALUATE_STEP = "Steps.2.Arguments.IfSteps.0.Arguments"
INLINE_JOB = "monitoringScheduleConfig.monitoringJobDefinition"
TLS_TAIL = 'when aws:SecureTransport is "false" on '
PINNED_AUD = 'without pinning "gitlab.com:aud" with StringEquals (other wildcards are not accepted)'
PINNED_SUB = ('without pinning "gitlab.com:sub" with StringEquals or StringLike on one project\'s tag prefix '
              "(ref_type:tag:ref:<prefix>*) (other wildcards are not accepted)")
OIDC = "assumeRolePolicy statement 'GitLabOidc' allows sts:AssumeRoleWithWebIdentity from \"gitlab.com\" "

CONFUSED_DEPUTY = ('assumeRolePolicy statement #0 trusts ["sagemaker.amazonaws.com"] without pinning aws:SourceAccount '
                   "(a 12-digit account, StringEquals) or aws:SourceArn (an ARN naming the account); the service "
                   "could assume it for another account (confused deputy)")
LONG_RESOURCES = [f"arn:aws:s3:::{ARTIFACTS}/prefix-{i:04d}/*" for i in range(120)]


def _size_with(resources: list[str]) -> int:
    """The sagemaker policy's size, whitespace not counted, with these resources in its first statement."""
    doc = json.loads(_find(baseline(), "sagemaker-policy")["inputs"]["policy"])
    doc["Statement"][0]["Resource"] = resources
    return len("".join(json.dumps(doc).split()))


CASES = [
    # --- s3 ---
    Case(
        "s3-bucket-explicit-name",
        put("artifacts", "bucket", DELETE),
        one(
            "s3-bucket-explicit-name",
            "artifacts",
            "bucket is not set; give the bucket an explicit name (from mlops.naming) so its encryption, versioning, "
            "public access block, policy and logging resources can be matched to it",
        ),
    ),
    Case(
        "s3-versioning-suspended",
        put("artifacts-versioning", "versioningConfiguration.status", "Suspended"),
        one(
            "s3-versioning-enabled",
            "artifacts-versioning",
            'versioningConfiguration.status is "Suspended"; must be "Enabled"',
        ),
    ),
    Case(
        "s3-pab-flag-false",
        put("artifacts-pab", "blockPublicPolicy", False),
        one(
            "s3-public-access-block-all",
            "artifacts-pab",
            "blockPublicPolicy is false; all four public access block flags must be true",
        ),
    ),
    Case(
        "s3-pab-flag-missing",
        put("access-logs-pab", "ignorePublicAcls", DELETE),
        one(
            "s3-public-access-block-all",
            "access-logs-pab",
            "ignorePublicAcls is null; all four public access block flags must be true",
        ),
    ),
    Case(
        "s3-tls-objects-not-covered",
        put_json("artifacts-policy", "policy", "Statement.0.Resource", f"arn:aws:s3:::{ARTIFACTS}"),
        one(
            "s3-tls-only-policy",
            "artifacts-policy",
            f'policy does not Deny "s3:*" to Principal "*" {TLS_TAIL}arn:aws:s3:::{ARTIFACTS}/*',
        ),
    ),
    Case(
        "s3-tls-condition-missing",
        put_json("artifacts-policy", "policy", "Statement.0.Condition", DELETE),
        one(
            "s3-tls-only-policy",
            "artifacts-policy",
            f'policy does not Deny "s3:*" to Principal "*" {TLS_TAIL}arn:aws:s3:::{ARTIFACTS}, '
            f"arn:aws:s3:::{ARTIFACTS}/*",
        ),
    ),
    Case(
        "s3-policy-invalid-json",
        put("artifacts-policy", "policy", "{not json"),
        one(
            "s3-tls-only-policy",
            "artifacts-policy",
            "policy is not valid JSON (Expecting property name enclosed in double quotes at char 1)",
        ),
    ),
    Case(
        "s3-public-policy",
        put_json("artifacts-policy", "policy", "Statement.1", PUBLIC_STATEMENT),
        one(
            "s3-no-public-policy",
            "artifacts-policy",
            'policy statement \'PublicRead\' allows "s3:GetObject" to Principal "*"; bucket policies must not grant '
            "public access",
        ),
    ),
    Case(
        "s3-public-acl",
        add("aws:s3/bucketAcl:BucketAcl", "artifacts-acl", {"bucket": ARTIFACTS, "acl": "public-read"}),
        one(
            "s3-no-public-acl",
            "artifacts-acl",
            'acl is "public-read"; canned ACLs that grant access to everyone are forbidden',
        ),
    ),
    Case(
        "s3-public-grant",
        put(
            "artifacts",
            "grants",
            [{"type": "Group", "uri": "http://acs.amazonaws.com/groups/global/AllUsers", "permissions": ["READ"]}],
        ),
        one(
            "s3-no-public-acl",
            "artifacts",
            'grants[0] grants to "http://acs.amazonaws.com/groups/global/AllUsers"; ACL grants to everyone are '
            "forbidden",
        ),
    ),
    Case(
        "s3-ownership-object-writer",
        put("artifacts-ownership", "rule.objectOwnership", "ObjectWriter"),
        one(
            "s3-ownership-enforced",
            "artifacts-ownership",
            'rule.objectOwnership is "ObjectWriter"; must be "BucketOwnerEnforced" (ACLs disabled)',
        ),
    ),
    Case(
        "s3-bucket-key-off",
        put("artifacts-sse", "rules.0.bucketKeyEnabled", False),
        one(
            "s3-bucket-key-enabled",
            "artifacts-sse",
            "rules[0].bucketKeyEnabled is false; enable S3 Bucket Keys with SSE-KMS to cut KMS request costs",
            "advisory",
        ),
    ),
    # --- kms ---
    Case(
        "kms-rotation-off",
        put("platform-key", "enableKeyRotation", False),
        one(
            "kms-key-rotation",
            "platform-key",
            "enableKeyRotation is false; customer-managed keys must rotate (set true)",
        ),
    ),
    Case(
        "kms-public-admin",
        put_json("platform-key", "policy", "Statement.0.Principal", "*"),
        one(
            "kms-no-public-admin",
            "platform-key",
            'key policy statement \'AccountAdmin\' grants "kms:*" to Principal "*"',
        ),
    ),
    Case(
        "kms-public-admin-aws-star",
        put_json("platform-key", "policy", "Statement.0.Principal", {"AWS": ["*"]}),
        one(
            "kms-no-public-admin",
            "platform-key",
            'key policy statement \'AccountAdmin\' grants "kms:*" to Principal "*"',
        ),
    ),
    # --- ecr ---
    Case(
        "ecr-mutable",
        put("images", "imageTagMutability", "MUTABLE"),
        one("ecr-immutable-tags", "images", 'imageTagMutability is "MUTABLE"; must be "IMMUTABLE"'),
    ),
    Case(
        "ecr-mutability-default",
        put("images", "imageTagMutability", DELETE),
        one(
            "ecr-immutable-tags", "images", 'imageTagMutability is not set (AWS default "MUTABLE"); must be "IMMUTABLE"'
        ),
    ),
    Case(
        "ecr-no-scan",
        put("images", "imageScanningConfiguration.scanOnPush", False),
        one("ecr-scan-on-push", "images", "imageScanningConfiguration.scanOnPush is false; must be true"),
    ),
    Case(
        "ecr-aes256",
        put("images", "encryptionConfigurations.0.encryptionType", "AES256"),
        one("ecr-kms-encryption", "images", 'encryptionConfigurations[0].encryptionType is "AES256"; must be "KMS"'),
    ),
    Case(
        "ecr-aws-managed-key",
        put("images", "encryptionConfigurations.0.kmsKey", DELETE),
        one(
            "ecr-kms-encryption",
            "images",
            "encryptionConfigurations[0].kmsKey is not set; use a customer-managed key, "
            "not the AWS-managed aws/ecr key",
        ),
    ),
    Case(
        "ecr-no-encryption",
        put("images", "encryptionConfigurations", DELETE),
        one(
            "ecr-kms-encryption",
            "images",
            'encryptionConfigurations is not set (AWS default "AES256"); must use encryptionType "KMS" with a '
            "customer-managed kmsKey",
        ),
    ),
    # --- iam ---
    Case(
        "iam-wildcard-service",
        put_json("ci-role-policy", "policy", "Statement.0.Action", "s3:*"),
        one(
            "iam-no-wildcard-actions",
            "ci-role-policy",
            "policy statement 'Artifacts' allows wildcard action \"s3:*\"; list the exact actions",
        ),
    ),
    Case(
        "iam-wildcard-prefix",
        put_json("sagemaker-policy", "policy", "Statement.1.Action", ["kms:Decrypt", "s3:Get*"]),
        one(
            "iam-no-wildcard-actions",
            "sagemaker-policy",
            "policy statement 'Key' allows wildcard action \"s3:Get*\"; list the exact actions",
        ),
    ),
    Case(
        "iam-wildcard-inline-dict",
        put(
            "sagemaker-role",
            "inlinePolicies",
            [{"name": "inline", "policy": {"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}}],
        ),
        one(
            "iam-no-wildcard-actions",
            "sagemaker-role",
            'inlinePolicies[0].policy statement #0 allows wildcard action "*"; list the exact actions',
        ) + one(  # "*" grants PassRole and every role write too, each reported by its rule
            "iam-passrole-to-named-service",
            "sagemaker-role",
            "inlinePolicies[0].policy statement #0 allows iam:PassRole without StringEquals on iam:PassedToService; "
            "name the service each role is passed to, or the role can run under any service",
        ) + one(
            "iam-role-writes-bounded",
            "sagemaker-role",
            "inlinePolicies[0].policy statement #0 allows iam:DeleteRolePermissionsBoundary: a role's ceiling would "
            "come off",
        ) + one(
            "iam-role-writes-bounded",
            "sagemaker-role",
            "inlinePolicies[0].policy statement #0 allows iam:CreateRole, iam:PutRolePolicy, iam:DeleteRolePolicy, "
            "iam:AttachRolePolicy, iam:DetachRolePolicy, iam:PutRolePermissionsBoundary, iam:UpdateAssumeRolePolicy, "
            "iam:UpdateRole, iam:DeleteRole without ArnEquals on iam:PermissionsBoundary; a role written without "
            "its boundary can be given any policy",
        ),
    ),
    Case(
        "iam-not-action",
        put_json(
            "ci-role-policy",
            "policy",
            "Statement.1",
            {"Sid": "Everything", "Effect": "Allow", "NotAction": "iam:*", "Resource": "*"},
        ),
        one(
            "iam-no-wildcard-actions",
            "ci-role-policy",
            "policy statement 'Everything' Allows NotAction, which grants every other action; list the exact actions",
        ),
    ),
    Case(
        "iam-question-mark-wildcard",
        put_json("ci-role-policy", "policy", "Statement.0.Action", ["s3:GetObject", "iam:?assRole"]),
        one(
            "iam-no-wildcard-actions",
            "ci-role-policy",
            "policy statement 'Artifacts' allows wildcard action \"iam:?assRole\"; list the exact actions",
        ) + one(  # the pattern grants iam:PassRole, to any service
            "iam-passrole-to-named-service",
            "ci-role-policy",
            "policy statement 'Artifacts' allows iam:PassRole without StringEquals on iam:PassedToService; name the "
            "service each role is passed to, or the role can run under any service",
        ),
    ),
    Case(
        "iam-passrole-anywhere",
        put_json("ci-role-policy", "policy", "Statement.1",
                 {"Sid": "Pass", "Effect": "Allow", "Action": "iam:PassRole", "Resource": ROLE_ARN}),
        one(
            "iam-passrole-to-named-service",
            "ci-role-policy",
            "policy statement 'Pass' allows iam:PassRole without StringEquals on iam:PassedToService; name the "
            "service each role is passed to, or the role can run under any service",
        ),
    ),
    Case(
        "iam-passrole-service-pattern",
        put_json("sagemaker-policy", "policy", "Statement.1",
                 {"Sid": "Pass", "Effect": "Allow", "Action": "iam:PassRole", "Resource": ROLE_ARN,
                  "Condition": {"StringLike": {"iam:PassedToService": "*.amazonaws.com"}}}),
        one(
            "iam-passrole-to-named-service",
            "sagemaker-policy",
            "policy statement 'Pass' allows iam:PassRole without StringEquals on iam:PassedToService; name the "
            "service each role is passed to, or the role can run under any service",
        ),
    ),
    Case(
        "iam-role-write-without-boundary",
        put_json("ci-role-policy", "policy", "Statement.1",
                 {"Sid": "Roles", "Effect": "Allow", "Action": ["iam:CreateRole", "iam:PutRolePolicy"],
                  "Resource": ROLE_ARN}),
        one(
            "iam-role-writes-bounded",
            "ci-role-policy",
            "policy statement 'Roles' allows iam:CreateRole, iam:PutRolePolicy without ArnEquals on "
            "iam:PermissionsBoundary; a role written without its boundary can be given any policy",
        ),
    ),
    Case(
        "iam-role-write-under-an-aws-managed-boundary",
        put_json("ci-role-policy", "policy", "Statement.1",
                 {"Sid": "Roles", "Effect": "Allow", "Action": "iam:CreateRole", "Resource": ROLE_ARN,
                  "Condition": {"ArnEquals": {"iam:PermissionsBoundary":
                                              "arn:aws:iam::aws:policy/AdministratorAccess"}}}),
        one(
            "iam-role-writes-bounded",
            "ci-role-policy",
            "policy statement 'Roles' allows iam:CreateRole with the boundary "
            "\"arn:aws:iam::aws:policy/AdministratorAccess\", which is not a customer-managed policy "
            "(arn:aws:iam::<account>:policy/...): an AWS managed policy as a boundary (AdministratorAccess) bounds "
            "nothing",
        ),
    ),
    Case(
        "iam-boundary-removal",
        put_json("ci-role-policy", "policy", "Statement.1",
                 {"Sid": "Lift", "Effect": "Allow", "Action": "iam:DeleteRolePermissionsBoundary",
                  "Resource": ROLE_ARN}),
        one(
            "iam-role-writes-bounded",
            "ci-role-policy",
            "policy statement 'Lift' allows iam:DeleteRolePermissionsBoundary: a role's ceiling would come off",
        ),
    ),
    Case(
        "iam-trust-anyone",
        put("sagemaker-role", "assumeRolePolicy",
            {"Statement": [{"Sid": "Anyone", "Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}),
        one(
            "iam-trust-principals",
            "sagemaker-role",
            "assumeRolePolicy statement 'Anyone' lets anyone assume the role (Principal * or NotPrincipal); name the "
            "service or the OIDC provider",
        ),
    ),
    Case(
        "iam-trust-another-account",
        put("sagemaker-role", "assumeRolePolicy",
            {"Statement": [{"Sid": "Other", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::999999999999:root"},
                            "Action": "sts:AssumeRole"}]}),
        one(
            "iam-trust-principals",
            "sagemaker-role",
            "assumeRolePolicy statement 'Other' trusts the AWS principal \"arn:aws:iam::999999999999:root\"; the "
            "stack's roles are assumed by AWS services or pinned OIDC only (other accounts reach the stack through "
            "resource policies)",
        ),
    ),
    Case(
        "iam-trust-service-confused-deputy",
        put("sagemaker-role", "assumeRolePolicy.Statement.Condition", {}),
        one(
            "iam-trust-principals",
            "sagemaker-role",
            CONFUSED_DEPUTY,
        ),
    ),
    *(Case(
        f"iam-trust-service-{name}",
        put("sagemaker-role", "assumeRolePolicy.Statement.Condition", condition),
        one(
            "iam-trust-principals",
            "sagemaker-role",
            CONFUSED_DEPUTY,
        ),
    ) for name, condition in (
        ("any-account", {"StringLike": {"aws:SourceAccount": "*"}}),
        ("not-this-account", {"StringNotEquals": {"aws:SourceAccount": "111122223333"}}),
        ("any-source-arn", {"ArnLike": {"aws:SourceArn": "arn:aws:sagemaker:*:*:*"}}),
    )),
    Case(
        "iam-service-role-unbounded",
        put("sagemaker-role", "permissionsBoundary", ""),
        one(
            "iam-service-roles-bounded",
            "sagemaker-role",
            "a role AWS services assume has no permissionsBoundary; give it the stack's workload boundary, so whoever "
            "may write its policy cannot raise it above the workload",
        ),
    ),
    Case(
        "iam-managed-policy-too-large",
        put_json("sagemaker-policy", "policy", "Statement.0.Resource", LONG_RESOURCES),
        one(
            "iam-policy-size",
            "sagemaker-policy",
            f"policy is {_size_with(LONG_RESOURCES)} characters without whitespace; IAM refuses more than 6144",
        ),
    ),
    Case(
        "iam-full-access-attachment",
        put("sagemaker-policy-attachment", "policyArn", "arn:aws:iam::aws:policy/AmazonSageMakerFullAccess"),
        one(
            "iam-no-broad-managed-policies",
            "sagemaker-policy-attachment",
            'policyArn attaches "arn:aws:iam::aws:policy/AmazonSageMakerFullAccess"; *FullAccess, AdministratorAccess '
            "and PowerUserAccess policies are forbidden, attach a least-privilege policy",
        ),
    ),
    Case(
        "iam-admin-managed-arn",
        put("ci-role", "managedPolicyArns", ["arn:aws:iam::aws:policy/AdministratorAccess"]),
        one(
            "iam-no-broad-managed-policies",
            "ci-role",
            'managedPolicyArns attaches "arn:aws:iam::aws:policy/AdministratorAccess"; *FullAccess, '
            "AdministratorAccess and PowerUserAccess policies are forbidden, attach a least-privilege policy",
        ),
    ),
    Case(
        "iam-oidc-sub-stringlike",
        put_json(
            "ci-role",
            "assumeRolePolicy",
            "Statement.0.Condition",
            {
                "StringEquals": {"gitlab.com:aud": "sts.amazonaws.com"},
                "StringLike": {"gitlab.com:sub": "project_path:acme/*"},
            },
        ),
        one("iam-oidc-trust-pinned", "ci-role", OIDC + PINNED_SUB),
    ),
    Case(
        "iam-oidc-sub-branch-pattern",
        put_json(
            "ci-role",
            "assumeRolePolicy",
            "Statement.0.Condition",
            {
                "StringEquals": {"gitlab.com:aud": "sts.amazonaws.com"},
                "StringLike": {"gitlab.com:sub": "project_path:acme/mlops-stack:ref_type:branch:ref:release-*"},
            },
        ),
        one("iam-oidc-trust-pinned", "ci-role", OIDC + PINNED_SUB),
    ),
    Case(
        "iam-oidc-sub-tag-of-any-project",
        put_json(
            "ci-role",
            "assumeRolePolicy",
            "Statement.0.Condition",
            {
                "StringEquals": {"gitlab.com:aud": "sts.amazonaws.com"},
                "StringLike": {"gitlab.com:sub": "project_path:acme/*:ref_type:tag:ref:prod-*"},
            },
        ),
        one("iam-oidc-trust-pinned", "ci-role", OIDC + PINNED_SUB),
    ),
    Case(
        "iam-oidc-sub-tag-prefix-is-pinned",
        put_json(
            "ci-role",
            "assumeRolePolicy",
            "Statement.0.Condition",
            {
                "StringEquals": {"gitlab.com:aud": "sts.amazonaws.com"},
                "StringLike": {"gitlab.com:sub": "project_path:acme/mlops-stack:ref_type:tag:ref:prod-*"},
            },
        ),
        [],
    ),
    Case(
        "iam-oidc-aud-missing",
        put_json(
            "ci-role",
            "assumeRolePolicy",
            "Statement.0.Condition.StringEquals",
            {"gitlab.com:sub": "project_path:acme/mlops-stack:ref_type:branch:ref:main"},
        ),
        one("iam-oidc-trust-pinned", "ci-role", OIDC + PINNED_AUD),
    ),
    Case(
        "iam-oidc-sub-wildcard",
        put_json(
            "ci-role",
            "assumeRolePolicy",
            "Statement.0.Condition",
            {"StringEquals": {"gitlab.com:aud": "sts.amazonaws.com", "gitlab.com:sub": "project_path:*"}},
        ),
        one("iam-oidc-trust-pinned", "ci-role", OIDC + PINNED_SUB),
    ),
    Case(
        "iam-oidc-no-condition",
        put_json("ci-role", "assumeRolePolicy", "Statement.0.Condition", DELETE),
        [
            Violation("iam-oidc-trust-pinned", "ci-role", OIDC + PINNED_AUD, "mandatory"),
            Violation("iam-oidc-trust-pinned", "ci-role", OIDC + PINNED_SUB, "mandatory"),
        ],
    ),
    Case(
        "iam-oidc-no-federated",
        put_json("ci-role", "assumeRolePolicy", "Statement.0.Principal", "*"),
        one(
            "iam-oidc-trust-pinned",
            "ci-role",
            "assumeRolePolicy statement 'GitLabOidc' allows sts:AssumeRoleWithWebIdentity without an OIDC provider as "
            "Principal.Federated",
        ) + one(
            "iam-trust-principals",
            "ci-role",
            "assumeRolePolicy statement 'GitLabOidc' lets anyone assume the role (Principal * or NotPrincipal); name "
            "the service or the OIDC provider",
        ),
    ),
    Case(
        "iam-oidc-provider-audience",
        put("gitlab-oidc", "clientIdLists", ["https://gitlab.com"]),
        one(
            "iam-oidc-provider-sts-audience",
            "gitlab-oidc",
            'clientIdLists is ["https://gitlab.com"]; must be ["sts.amazonaws.com"]',
        ),
    ),
    Case(
        "iam-oidc-provider-http",
        put("gitlab-oidc", "url", "http://gitlab.com"),
        one(
            "iam-oidc-provider-sts-audience",
            "gitlab-oidc",
            'url is "http://gitlab.com"; must be the https:// issuer URL',
        ),
    ),
    Case(
        "iam-user",
        add("aws:iam/user:User", "deployer", {"name": "deployer"}),
        one(
            "iam-no-users",
            "deployer",
            "aws:iam/user:User manages an IAM user; people sign in through SSO and workloads and CI assume roles",
        ),
    ),
    Case(
        "iam-user-policy",
        add(
            "aws:iam/userPolicy:UserPolicy",
            "deployer-policy",
            {
                "user": "deployer",
                "policy": {"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]},
            },
        ),
        one(
            "iam-no-users",
            "deployer-policy",
            "aws:iam/userPolicy:UserPolicy manages an IAM user; people sign in through SSO and workloads and CI assume "
            "roles",
        ),
    ),
    Case(
        "iam-access-key",
        add("aws:iam/accessKey:AccessKey", "deployer-key", {"user": "deployer"}),
        one(
            "iam-no-long-lived-credentials",
            "deployer-key",
            "aws:iam/accessKey:AccessKey creates long-lived IAM user credentials; "
            "use role sessions (GitLab OIDC for CI) "
            "instead",
        ),
    ),
    # --- sagemaker ---
    Case(
        "sm-endpoint-unnamed",
        put("endpoint", "name", DELETE),
        one(
            "sagemaker-endpoint-explicit-name",
            "endpoint",
            "name is not set; give the endpoint an explicit name (from mlops.naming) so its alarms and scaling targets "
            "can be matched to it",
        ),
    ),
    Case(
        "sm-config-no-kms",
        put("endpoint-config", "kmsKeyArn", DELETE),
        one(
            "sagemaker-endpoint-config-kms",
            "endpoint-config",
            "kmsKeyArn is not set; endpoint storage must be encrypted with a customer-managed KMS key",
        ),
    ),
    Case(
        "sm-capture-off",
        put("endpoint-config", "dataCaptureConfig.enableCapture", False),
        one(
            "sagemaker-data-capture-enabled",
            "endpoint-config",
            "dataCaptureConfig.enableCapture is false; real-time endpoints must capture requests and responses for "
            "drift monitoring",
        ),
    ),
    Case(
        "sm-capture-missing",
        put("endpoint-config", "dataCaptureConfig", DELETE),
        one(
            "sagemaker-data-capture-enabled",
            "endpoint-config",
            "dataCaptureConfig.enableCapture is null; real-time endpoints must capture requests and responses for "
            "drift monitoring",
        ),
    ),
    Case(
        "sm-capture-no-kms",
        put("endpoint-config", "dataCaptureConfig.kmsKeyId", DELETE),
        one(
            "sagemaker-data-capture-kms",
            "endpoint-config",
            "dataCaptureConfig.kmsKeyId is not set; captured payloads must be encrypted "
            "with a customer-managed KMS key",
        ),
    ),
    Case(
        "sm-training-volume",
        put("training-job", "resourceConfig.volumeKmsKeyId", DELETE),
        one(
            "sagemaker-job-volume-kms",
            "training-job",
            "resourceConfig.volumeKmsKeyId is not set; job storage volumes must be encrypted "
            "with a customer-managed KMS "
            "key",
        ),
    ),
    Case(
        "sm-dq-volume",
        put("data-quality", "jobResources.clusterConfig.volumeKmsKeyId", ""),
        one(
            "sagemaker-job-volume-kms",
            "data-quality",
            "jobResources.clusterConfig.volumeKmsKeyId is not set; job storage volumes must be encrypted with a "
            "customer-managed KMS key",
        ),
    ),
    Case(
        "sm-schedule-volume",
        put("monitoring-inline", f"{INLINE_JOB}.monitoringResources.clusterConfig.volumeKmsKeyId", DELETE),
        one(
            "sagemaker-job-volume-kms",
            "monitoring-inline",
            f"{INLINE_JOB}.monitoringResources.clusterConfig.volumeKmsKeyId is not set; job storage volumes must be "
            "encrypted with a customer-managed KMS key",
        ),
    ),
    Case(
        "sm-training-output",
        put("training-job", "outputDataConfig.kmsKeyId", DELETE),
        one(
            "sagemaker-job-output-kms",
            "training-job",
            "outputDataConfig.kmsKeyId is not set; job outputs in S3 must be encrypted with a customer-managed KMS key",
        ),
    ),
    Case(
        "sm-dq-output",
        put("data-quality", "dataQualityJobOutputConfig.kmsKeyId", DELETE),
        one(
            "sagemaker-job-output-kms",
            "data-quality",
            "dataQualityJobOutputConfig.kmsKeyId is not set; job outputs in S3 must be encrypted "
            "with a customer-managed "
            "KMS key",
        ),
    ),
    Case(
        "sm-schedule-output",
        put("monitoring-inline", f"{INLINE_JOB}.monitoringOutputConfig.kmsKeyId", DELETE),
        one(
            "sagemaker-job-output-kms",
            "monitoring-inline",
            f"{INLINE_JOB}.monitoringOutputConfig.kmsKeyId is not set; job outputs in S3 must be encrypted with a "
            "customer-managed KMS key",
        ),
    ),
    Case(
        "sm-training-icte",
        put("training-job", "enableInterContainerTrafficEncryption", False),
        one(
            "sagemaker-inter-container-encryption",
            "training-job",
            "enableInterContainerTrafficEncryption is false; must be true",
        ),
    ),
    Case(
        "sm-dq-icte",
        put("data-quality", "networkConfig", DELETE),
        one(
            "sagemaker-inter-container-encryption",
            "data-quality",
            "networkConfig.enableInterContainerTrafficEncryption is null; must be true",
        ),
    ),
    Case(
        "sm-schedule-icte",
        put("monitoring-inline", f"{INLINE_JOB}.networkConfig.enableInterContainerTrafficEncryption", False),
        one(
            "sagemaker-inter-container-encryption",
            "monitoring-inline",
            f"{INLINE_JOB}.networkConfig.enableInterContainerTrafficEncryption is false; must be true",
        ),
    ),
    Case(
        "sm-pipeline-role",
        put("pipeline", "roleArn", DELETE),
        one(
            "sagemaker-pipeline-role",
            "pipeline",
            "roleArn is not set; pipelines must run under an explicit execution role",
        ),
    ),
    Case(
        "sm-step-train-volume",
        put_json("pipeline", "pipelineDefinition", f"{TRAIN_STEP}.ResourceConfig.VolumeKmsKeyId", DELETE),
        one(
            "sagemaker-pipeline-steps-kms",
            "pipeline",
            'pipelineDefinition step "train" (Training) does not set Arguments.ResourceConfig.VolumeKmsKeyId',
        ),
    ),
    Case(
        "sm-step-train-output",
        put_json("pipeline", "pipelineDefinition", f"{TRAIN_STEP}.OutputDataConfig.KmsKeyId", DELETE),
        one(
            "sagemaker-pipeline-steps-kms",
            "pipeline",
            'pipelineDefinition step "train" (Training) does not set Arguments.OutputDataConfig.KmsKeyId',
        ),
    ),
    Case(
        "sm-step-nested-processing-output",
        put_json("pipeline", "pipelineDefinition", f"{EVALUATE_STEP}.ProcessingOutputConfig.KmsKeyId", DELETE),
        one(
            "sagemaker-pipeline-steps-kms",
            "pipeline",
            'pipelineDefinition step "evaluate" (Processing) does not set Arguments.ProcessingOutputConfig.KmsKeyId',
        ),
    ),
    Case(
        "sm-step-processing-volume",
        put_json(
            "pipeline",
            "pipelineDefinition",
            "Steps.0.Arguments.ProcessingResources.ClusterConfig.VolumeKmsKeyId",
            DELETE,
        ),
        one(
            "sagemaker-pipeline-steps-kms",
            "pipeline",
            'pipelineDefinition step "preprocess" (Processing) does not set '
            "Arguments.ProcessingResources.ClusterConfig.VolumeKmsKeyId",
        ),
    ),
    Case(
        "sm-step-train-icte",
        put_json("pipeline", "pipelineDefinition", f"{TRAIN_STEP}.EnableInterContainerTrafficEncryption", False),
        one(
            "sagemaker-pipeline-steps-inter-container",
            "pipeline",
            'pipelineDefinition step "train" (Training) has Arguments.EnableInterContainerTrafficEncryption false; '
            "must be true",
        ),
    ),
    Case(
        "sm-step-processing-icte",
        put_json("pipeline", "pipelineDefinition", "Steps.0.Arguments.NetworkConfig"
                 ".EnableInterContainerTrafficEncryption", DELETE),
        one(
            "sagemaker-pipeline-steps-inter-container",
            "pipeline",
            'pipelineDefinition step "preprocess" (Processing) has Arguments.NetworkConfig'
            ".EnableInterContainerTrafficEncryption null; must be true",
        ),
    ),
    Case(
        "sm-pipeline-invalid-json",
        put("pipeline", "pipelineDefinition", "[1,"),
        [
            Violation(
                "sagemaker-pipeline-steps-inter-container",
                "pipeline",
                "pipelineDefinition is not valid JSON (Expecting value at char 3)",
                "mandatory",
            ),
            Violation(
                "sagemaker-pipeline-steps-kms",
                "pipeline",
                "pipelineDefinition is not valid JSON (Expecting value at char 3)",
                "mandatory",
            ),
        ],
    ),
    # --- operations ---
    Case(
        "ops-capacity-bounds",
        put("endpoint-scaling-target", "minCapacity", 5),
        one("autoscaling-capacity-bounds", "endpoint-scaling-target", "minCapacity 5 is greater than maxCapacity 4"),
    ),
    Case(
        "ops-alarm-no-actions",
        put("latency", "alarmActions", []),
        one(
            "cloudwatch-alarm-actions",
            "latency",
            "alarmActions is empty; every alarm must notify (e.g. the platform SNS topic)",
        ),
    ),
    Case(
        "ops-alarm-actions-disabled",
        put("latency", "actionsEnabled", False),
        one("cloudwatch-alarm-actions", "latency", "actionsEnabled is false; the alarm would never notify"),
    ),
    Case(
        "ops-sns-no-kms",
        put("alerts", "kmsMasterKeyId", DELETE),
        one("sns-topic-kms", "alerts", "kmsMasterKeyId is not set; topics must be encrypted with a KMS key"),
    ),
    Case(
        "ops-no-blue-green",
        put("endpoint", "deploymentConfig.blueGreenUpdatePolicy", DELETE),
        one("endpoint-blue-green", "endpoint",
            "deploymentConfig.blueGreenUpdatePolicy is not set; endpoints must deploy blue/green"),
    ),
    Case(
        "ops-no-rollback",
        put("endpoint", "deploymentConfig.autoRollbackConfiguration", DELETE),
        one("endpoint-blue-green", "endpoint",
            "deploymentConfig.autoRollbackConfiguration.alarms is empty; endpoints must roll back automatically "
            "when an alarm fires"),
    ),
    # --- tags ---
    Case(
        "tags-owner-missing",
        put("artifacts", "tags.owner", DELETE),
        one(
            "required-tags",
            "artifacts",
            'tags lack required non-empty key(s) "owner" (required: project, environment, owner)',
        ),
    ),
    Case(
        "tags-empty-and-missing",
        lambda rs: (put("platform-key", "tags.environment", "")(rs), put("platform-key", "tags.project", DELETE)(rs)),
        one(
            "required-tags",
            "platform-key",
            'tags lack required non-empty key(s) "project", "environment" (required: project, environment, owner)',
        ),
    ),
    Case(
        "tags-none",
        put("endpoint-config", "tags", DELETE),
        one(
            "required-tags",
            "endpoint-config",
            'tags lack required non-empty key(s) "project", "environment", "owner" (required: project, environment, '
            "owner)",
        ),
    ),
    # --- stack relations ---
    Case(
        "stack-no-pab",
        remove("artifacts-pab"),
        one(
            "s3-bucket-has-public-access-block",
            "artifacts",
            f'bucket "{ARTIFACTS}" has no BucketPublicAccessBlock (matched by its "bucket" input)',
        ),
    ),
    Case(
        "stack-no-sse",
        remove("artifacts-sse"),
        one(
            "s3-bucket-has-encryption",
            "artifacts",
            f'bucket "{ARTIFACTS}" has no BucketServerSideEncryptionConfiguration (matched by its "bucket" input)',
        ),
    ),
    Case(
        "stack-no-versioning",
        remove("access-logs-versioning"),
        one(
            "s3-bucket-has-versioning",
            "access-logs",
            f'bucket "{LOGS}" has no BucketVersioning (matched by its "bucket" input)',
        ),
    ),
    Case(
        "stack-no-policy",
        remove("artifacts-policy"),
        one(
            "s3-bucket-has-policy",
            "artifacts",
            f'bucket "{ARTIFACTS}" has no BucketPolicy (matched by its "bucket" input)',
        ),
    ),
    Case(
        "stack-no-logging",
        put("artifacts-logging", "bucket", "some-other-bucket"),
        one(
            "s3-bucket-has-access-logging",
            "artifacts",
            f'bucket "{ARTIFACTS}" has no BucketLogging (matched by its "bucket" input); every bucket except server '
            "access log targets must log access",
        ),
    ),
    Case(
        "stack-sse-aes256",
        put("artifacts-sse", "rules.0.applyServerSideEncryptionByDefault", {"sseAlgorithm": "AES256"}),
        one(
            "s3-sse-kms-customer-key",
            "artifacts-sse",
            f'bucket "{ARTIFACTS}" rules[0] uses sseAlgorithm "AES256"; must be "aws:kms" with a customer-managed '
            'kmsMasterKeyId (only server access log target buckets use "AES256")',
        ),
    ),
    Case(
        "stack-sse-aws-managed-key",
        put("artifacts-sse", "rules.0.applyServerSideEncryptionByDefault.kmsMasterKeyId", "alias/aws/s3"),
        one(
            "s3-sse-kms-customer-key",
            "artifacts-sse",
            f'bucket "{ARTIFACTS}" rules[0] kmsMasterKeyId is "alias/aws/s3"; must be a customer-managed KMS key, not '
            "the AWS-managed aws/s3 key",
        ),
    ),
    Case(
        "stack-sse-no-rules",
        put("artifacts-sse", "rules", []),
        one("s3-sse-kms-customer-key", "artifacts-sse", f'bucket "{ARTIFACTS}" default encryption has no rules'),
    ),
    Case(
        "stack-log-bucket-kms",
        put(
            "access-logs-sse",
            "rules.0",
            {
                "applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": KEY_ARN},
                "bucketKeyEnabled": True,
            },
        ),
        one(
            "s3-log-bucket-sse-s3",
            "access-logs-sse",
            f'bucket "{LOGS}" receives server access logs but rules[0] uses sseAlgorithm "aws:kms"; S3 cannot deliver '
            'access logs to an SSE-KMS bucket, use "AES256"',
        ),
    ),
    Case(
        "stack-ecr-no-lifecycle",
        remove("images-lifecycle"),
        one(
            "ecr-repository-has-lifecycle-policy",
            "images",
            'repository "mlops-stack-prod" has no LifecyclePolicy (matched by its "repository" input)',
        ),
    ),
    Case(
        "stack-no-scaling-target",
        lambda rs: (remove("endpoint-scaling-target")(rs), remove("endpoint-scaling-policy")(rs)),
        one(
            "endpoint-variant-autoscaling",
            "endpoint",
            f'endpoint "{ENDPOINT}" variant "AllTraffic" has no aws:appautoscaling Target with resourceId '
            f'"{RESOURCE_ID}" and scalableDimension "sagemaker:variant:DesiredInstanceCount"',
        ),
    ),
    Case(
        "stack-wrong-dimension",
        put("endpoint-scaling-target", "scalableDimension", "ecs:service:DesiredCount"),
        one(
            "endpoint-variant-autoscaling",
            "endpoint",
            f'endpoint "{ENDPOINT}" variant "AllTraffic" has no aws:appautoscaling Target with resourceId '
            f'"{RESOURCE_ID}" and scalableDimension "sagemaker:variant:DesiredInstanceCount"',
        ),
    ),
    Case(
        "stack-unmatched-config",
        put("endpoint", "endpointConfigName", "elsewhere"),
        one(
            "endpoint-variant-autoscaling",
            "endpoint",
            f'endpoint "{ENDPOINT}" references endpointConfigName "elsewhere", which matches no EndpointConfiguration '
            "name in this stack; give the configuration an explicit name",
        ),
    ),
    Case(
        "stack-step-scaling",
        put("endpoint-scaling-policy", "policyType", "StepScaling"),
        one(
            "endpoint-variant-target-tracking",
            "endpoint-scaling-target",
            f'scalable target "{RESOURCE_ID}" has no aws:appautoscaling Policy with policyType "TargetTrackingScaling" '
            "and a targetTrackingScalingPolicyConfiguration",
        ),
    ),
    Case(
        "stack-no-4xx-alarm",
        remove("errors-4xx"),
        one(
            "endpoint-alarms",
            "endpoint",
            f'endpoint "{ENDPOINT}" has no CloudWatch alarm on AWS/SageMaker Invocation4XXErrors with dimension '
            f'EndpointName="{ENDPOINT}"',
        ),
    ),
    Case(
        "stack-latency-alarm-wrong-namespace",
        put("latency", "namespace", "Custom/Models"),
        one(
            "endpoint-alarms",
            "endpoint",
            f'endpoint "{ENDPOINT}" has no CloudWatch alarm on AWS/SageMaker ModelLatency with dimension '
            f'EndpointName="{ENDPOINT}"',
        ),
    ),
    Case(
        "stack-rollback-alarm-unknown",
        put("endpoint", "deploymentConfig.autoRollbackConfiguration.alarms.0.alarmName", "nope"),
        one(
            "endpoint-rollback-alarms-exist",
            "endpoint",
            f'endpoint "{ENDPOINT}" rolls back on alarm "nope", which is not the name of a MetricAlarm in this stack',
        ),
    ),
    Case(
        "monitoring-no-drift-alarm",
        remove("drift-alarm"),
        one("endpoint-is-monitored", "endpoint",
            f'endpoint "{ENDPOINT}" has no drift alarm: no MetricAlarm on DriftDetected with dimension '
            f'Endpoint="{ENDPOINT}"'),
    ),
    Case(
        "monitoring-drift-job-on-another-endpoint",
        put_json("drift-schedule", "target.input", "AppSpecification.ContainerArguments.1", "another-endpoint"),
        one("endpoint-is-monitored", "endpoint",
            f'endpoint "{ENDPOINT}" has no drift job: no aws:scheduler Schedule runs `model_code drift --endpoint '
            f'{ENDPOINT}` through CreateProcessingJob'),
    ),
    Case(
        "monitoring-schedule-runs-another-step",
        put_json("drift-schedule", "target.input", "AppSpecification.ContainerEntrypoint.3", "quality"),
        one("endpoint-is-monitored", "endpoint",
            f'endpoint "{ENDPOINT}" has no drift job: no aws:scheduler Schedule runs `model_code drift --endpoint '
            f'{ENDPOINT}` through CreateProcessingJob'),
    ),
    Case(
        "bus-policy-two-accounts",
        put_json("retrain-bus-policy", "policy", "Statement.0.Principal.AWS",
                 ["arn:aws:iam::444455556666:root", "555566667777"]),
        one("event-bus-policy-one-account", "retrain-bus-policy",
            "the policy names 2 accounts (444455556666, 555566667777); a bus admits exactly one (one bus per account)"),
    ),
    Case(
        "bus-policy-everyone",
        put_json("retrain-bus-policy", "policy", "Statement.0.Principal", {"AWS": "*"}),
        one("event-bus-policy-one-account", "retrain-bus-policy",
            "statement 'AlarmsOfOneAccount' admits every principal (\"*\"); a bus admits one account"),
    ),
    Case(
        "bus-policy-a-service",
        put_json("retrain-bus-policy", "policy", "Statement.0.Principal", {"Service": "events.amazonaws.com"}),
        one("event-bus-policy-one-account", "retrain-bus-policy",
            "statement 'AlarmsOfOneAccount' names a principal that is not an account's "
            '({"Service": "events.amazonaws.com"}); a bus admits one account'),
    ),
]


PROTECTED_TAIL = ": a stack with protected resources (protectResources) runs its model and jobs in a VPC (vpcCreate or " \
    "vpcSubnetIds)"
CASES += [
    # --- network ---
    Case(
        "network-model-outside-the-vpc",
        put("model", "vpcConfig", DELETE),
        one("network-vpc-when-protected", "model", "vpcConfig sets no subnets and securityGroupIds" + PROTECTED_TAIL),
    ),
    Case(
        "network-model-without-groups",
        put("model", "vpcConfig.securityGroupIds", []),
        one("network-vpc-when-protected", "model",
            'vpcConfig has subnets ["subnet-0a1b2c3d4e5f60718", "subnet-1a1b2c3d4e5f60718"] and securityGroupIds []'
            + PROTECTED_TAIL),
    ),
    Case(
        "network-processing-step-outside-the-vpc",
        put_json("pipeline", "pipelineDefinition", "Steps.0.Arguments.NetworkConfig.VpcConfig", DELETE),
        one("network-vpc-when-protected", "pipeline", 'pipelineDefinition step "preprocess" (Processing): '
            "Arguments.NetworkConfig.VpcConfig sets no Subnets and SecurityGroupIds" + PROTECTED_TAIL),
    ),
    Case(
        "network-nested-step-outside-the-vpc",
        put_json("pipeline", "pipelineDefinition", f"{EVALUATE_STEP}.NetworkConfig.VpcConfig", DELETE),
        one("network-vpc-when-protected", "pipeline", 'pipelineDefinition step "evaluate" (Processing): '
            "Arguments.NetworkConfig.VpcConfig sets no Subnets and SecurityGroupIds" + PROTECTED_TAIL),
    ),
    Case(
        "network-training-step-outside-the-vpc",
        put_json("pipeline", "pipelineDefinition", f"{TRAIN_STEP}.VpcConfig", DELETE),
        one("network-vpc-when-protected", "pipeline", 'pipelineDefinition step "train" (Training): '
            "Arguments.VpcConfig sets no Subnets and SecurityGroupIds" + PROTECTED_TAIL),
    ),
    Case(
        "network-scheduled-job-outside-the-vpc",
        put_json("drift-schedule", "target.input", "NetworkConfig.VpcConfig", DELETE),
        one("network-vpc-when-protected", "drift-schedule",
            "target.input's NetworkConfig.VpcConfig sets no Subnets and SecurityGroupIds" + PROTECTED_TAIL),
    ),
    Case(
        "network-group-open-to-the-internet",
        put("workload", "egress.0.cidrBlocks", ["0.0.0.0/0"]),
        one("network-security-groups-not-open", "workload",
            "egress rule open to 0.0.0.0/0: name the VPC's range, a prefix list or a group"),
    ),
    Case(
        "network-rule-open-to-the-internet",
        add("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "ssh",
            {"securityGroupId": "sg-0a1b2c3d4e5f60718", "ipProtocol": "tcp", "fromPort": 22, "toPort": 22,
             "cidrIpv6": "::/0"}),
        one("network-security-groups-not-open", "ssh",
            "rule open to ::/0: name the VPC's range, a prefix list or a group"),
    ),
    Case(
        "network-nat-gateway",
        add("aws:ec2/natGateway:NatGateway", "nat", {"subnetId": "subnet-0a1b2c3d4e5f60718", "tags": {
            "project": "mlops-stack", "environment": "prod", "owner": "platform-team"}}),
        one("network-no-internet-gateways", "nat",
            "NatGateway: the stack's network reaches AWS through VPC endpoints only, never the internet"),
    ),
    Case(
        "sm-model-not-isolated",
        put("model", "enableNetworkIsolation", False),
        one("sagemaker-model-network-isolation", "model", "enableNetworkIsolation is not true: the serving container "
            "calls nothing (data capture is SageMaker's), so it gets no network"),
    ),
]


CASES += [
    # --- audit ---
    Case(
        "cloudtrail-unencrypted",
        put("trail", "kmsKeyId", DELETE),
        one("cloudtrail-trail-protected", "trail",
            "kmsKeyId is not set: log files are encrypted with a customer-managed key"),
    ),
    Case(
        "cloudtrail-unvalidated",
        put("trail", "enableLogFileValidation", False),
        one("cloudtrail-trail-protected", "trail",
            "enableLogFileValidation is false; must be true: digests prove no log file was changed or removed"),
    ),
    Case(
        "cloudtrail-one-region",
        put("trail", "isMultiRegionTrail", DELETE),
        one("cloudtrail-trail-protected", "trail",
            "isMultiRegionTrail is null; must be true: a call in another region is recorded too"),
    ),
    Case(
        "cloudtrail-misses-the-artifacts",
        put("trail", "eventSelectors.0.dataResources.0.values", [f"arn:aws:s3:::{LOGS}/"]),
        one("cloudtrail-records-stack-data", "trail",
            f'trail records no S3 object events of bucket "{ARTIFACTS}" (eventSelectors dataResources '
            f'AWS::S3::Object "arn:aws:s3:::{ARTIFACTS}/")'),
    ),
    Case(
        "logs-group-unencrypted",
        put("endpoint-logs", "kmsKeyId", DELETE),
        one("logs-group-encrypted-and-expiring", "endpoint-logs",
            "kmsKeyId is not set: log events are encrypted with a customer-managed key"),
    ),
    Case(
        "logs-group-forever",
        put("endpoint-logs", "retentionInDays", DELETE),
        one("logs-group-encrypted-and-expiring", "endpoint-logs",
            "retentionInDays is null; set the days events are kept (never: forever)"),
    ),
]


BATCH_KEY_TAIL = ("; a batch job's output, volume and capture are encrypted with the stack's customer-managed key "
                  "(arn:aws:kms:<region>:<account>:key/<id>)")
OTHER_KEY = KEY_ARN.replace("0d7e1c3a", "99999999")
CASES += [
    # --- inference: batch ---
    Case(
        "batch-output-unencrypted",
        put_json("batch-schedule", "target.input", "TransformOutput.KmsKeyId", DELETE),
        one("batch-transform-encrypted", "batch-schedule", "TransformOutput.KmsKeyId is null" + BATCH_KEY_TAIL),
    ),
    Case(
        "batch-volume-aws-managed-key",
        put_json("batch-schedule", "target.input", "TransformResources.VolumeKmsKeyId", "alias/aws/sagemaker"),
        one("batch-transform-encrypted", "batch-schedule",
            'TransformResources.VolumeKmsKeyId is "alias/aws/sagemaker"' + BATCH_KEY_TAIL),
    ),
    Case(
        "batch-capture-under-another-key",
        put_json("batch-schedule", "target.input", "DataCaptureConfig.KmsKeyId", OTHER_KEY),
        one("batch-transform-encrypted", "batch-schedule",
            f"the job encrypts with 2 different keys ({', '.join(sorted({KEY_ARN, OTHER_KEY}))}); one stack key "
            "encrypts them all"),
    ),
    Case(
        "batch-schedule-unencrypted",
        put("batch-schedule", "kmsKeyArn", DELETE),
        one("batch-transform-encrypted", "batch-schedule",
            "kmsKeyArn is not set: the schedule holds the job's request, encrypt it with the stack key"),
    ),
    Case(
        "batch-uncaptured",
        put_json("batch-schedule", "target.input", "DataCaptureConfig", DELETE),
        one("batch-transform-captured", "batch-schedule",
            "DataCaptureConfig.DestinationS3Uri is null; a batch job captures what it scores (s3://<capture "
            "bucket>/...), where the drift job reads it")
        + one("batch-transform-encrypted", "batch-schedule", "DataCaptureConfig.KmsKeyId is null" + BATCH_KEY_TAIL),
    ),
]


SERVERLESS_CONFIG = {"name": "mlops-stack-prod-sls", "tags": {"project": "mlops-stack", "environment": "prod",
                                                              "owner": "platform-team"},
                     "productionVariants": [{"variantName": "primary", "modelName": "mlops-stack-prod-sls",
                                             "serverlessConfig": {"memorySizeInMb": 2048, "maxConcurrency": 5}}]}


def serverless_model(environment: dict[str, str]) -> dict[str, Any]:
    from tests.policies.baseline import TAGS

    return {"name": "mlops-stack-prod-sls", "executionRoleArn": ROLE_ARN, "tags": dict(TAGS),
            "primaryContainer": {"modelPackageName": "p", "environment": environment},
            "enableNetworkIsolation": False, "vpcConfig": {"subnets": ["subnet-1"], "securityGroupIds": ["sg-1"]}}


def with_serverless(environment: dict[str, str], instance_too: bool = False) -> Mutation:
    def mutate(resources: list[dict]) -> None:
        config = json.loads(json.dumps(SERVERLESS_CONFIG))
        if instance_too:  # the same model also behind an instance variant: it must be isolated there
            config["productionVariants"].append({"variantName": "b", "modelName": "mlops-stack-prod-sls",
                                                 "instanceType": "ml.m5.large", "initialInstanceCount": 1,
                                                 "serverlessConfig": None})
            config.update(kmsKeyArn=KEY_ARN, dataCaptureConfig={"enableCapture": True, "kmsKeyId": KEY_ARN})
        add("aws:sagemaker/endpointConfiguration:EndpointConfiguration", "sls-config", config)(resources)
        add("aws:sagemaker/model:Model", "sls-model", serverless_model(environment))(resources)
    return mutate


CASES += [
    # --- inference: async and serverless ---
    Case(
        "async-output-aws-managed-key",
        put("endpoint-config", "asyncInferenceConfig.outputConfig.kmsKeyId", "alias/aws/s3"),
        one("async-output-encrypted", "endpoint-config",
            'asyncInferenceConfig.outputConfig.kmsKeyId is "alias/aws/s3"; an async endpoint\'s answers are encrypted '
            "with the stack's customer-managed key (arn:aws:kms:...:key/<id>)"),
    ),
    Case(
        "async-errors-unannounced",
        put("endpoint-config", "asyncInferenceConfig.outputConfig.notificationConfig.errorTopic", DELETE),
        one("async-output-encrypted", "endpoint-config", "asyncInferenceConfig.outputConfig.notificationConfig."
            "errorTopic is not set: every answer and every failure is announced"),
    ),
    Case(
        "serverless-model-without-capture",
        with_serverless({}),
        one("serverless-models-capture", "sls-model",
            'model "mlops-stack-prod-sls" serves a serverless variant, which SageMaker captures nothing of, and its '
            "container's MLOPS_CAPTURE_S3_URI is null: drift monitoring would see no traffic"),
    ),
    Case(
        "model-behind-an-instance-variant-too-not-isolated",
        with_serverless({"MLOPS_CAPTURE_S3_URI": "s3://capture/datacapture"}, instance_too=True),
        one("sagemaker-model-network-isolation", "sls-model", "enableNetworkIsolation is not true: the serving "
            "container calls nothing (data capture is SageMaker's), so it gets no network"),
    ),
]


def test_a_serverless_model_that_captures_itself_needs_no_isolation_and_no_instance_storage_key() -> None:
    resources = baseline()
    with_serverless({"MLOPS_CAPTURE_S3_URI": "s3://capture/datacapture"})(resources)
    assert evaluate(resources) == []


def _half_size_policy() -> str:
    """An inline policy of about 7,000 characters (whitespace not counted): one fits a role, two do not."""
    doc = json.loads(_find(baseline(), "sagemaker-policy")["inputs"]["policy"])
    doc["Statement"] = [{**doc["Statement"][0], "Sid": "Big", "Resource": [
        f"arn:aws:s3:::{ARTIFACTS}/p{i:03d}/*" for i in range(140)]}]
    return json.dumps(doc)


CASES.append(Case(
    "iam-two-inline-policies-too-large-together",
    lambda resources: [put("ci-role-policy", "policy", _half_size_policy())(resources),
                       add("aws:iam/rolePolicy:RolePolicy", "ci-role-policy-2",
                           {"role": "mlops-stack-prod-ci", "policy": _half_size_policy()})(resources)],
    one("iam-role-inline-total-size", "ci-role-policy-2",
        f'the inline policies of role "mlops-stack-prod-ci" total {2 * len("".join(_half_size_policy().split()))}'
        " characters without whitespace; IAM refuses more than 10240 per role (use managed policies)"),
))


def test_every_bucket_of_the_account_recorded_at_once_counts() -> None:
    resources = baseline()
    put("trail", "eventSelectors.0.dataResources.0.values", ["arn:aws:s3"])(resources)
    assert evaluate(resources) == []


def test_a_stack_without_protected_resources_may_run_outside_a_vpc() -> None:
    """dev: no protectResources, no VPC needed (its jobs are still encrypted and its model isolated)."""
    resources = baseline()
    _find(resources, "platform-key")["protect"] = False
    put("model", "vpcConfig", DELETE)(resources)
    put_json("drift-schedule", "target.input", "NetworkConfig.VpcConfig", DELETE)(resources)
    assert evaluate(resources) == []


def test_baseline_is_compliant() -> None:
    assert evaluate(baseline()) == []


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_single_mutation_fails_with_exact_message(case: Case) -> None:
    resources = baseline()
    case.mutate(resources)
    assert evaluate(resources) == sorted(case.expected, key=lambda v: (v.resource, v.policy, v.message))


def test_every_rule_has_a_failing_mutation() -> None:
    covered = {v.policy for case in CASES for v in case.expected}
    assert covered == {p.name for p in ALL_POLICIES}


# --- exemptions ------------------------------------------------------------------------------------


def test_serverless_endpoint_needs_no_capture_nor_scaling_target() -> None:
    resources = baseline()
    config = _find(resources, "endpoint-config")["inputs"]
    config["productionVariants"] = [
        {
            "variantName": "AllTraffic",
            "modelName": "m",
            "serverlessConfig": {"maxConcurrency": 5, "memorySizeInMb": 2048},
        }
    ]
    del config["dataCaptureConfig"]
    resources.remove(_find(resources, "endpoint-scaling-target"))
    resources.remove(_find(resources, "endpoint-scaling-policy"))
    assert evaluate(resources) == []


def test_log_target_bucket_may_use_aes256_and_needs_no_logging_of_its_own() -> None:
    """The baseline's log bucket is such a bucket; test_baseline_is_compliant shows it passes."""
    resources = baseline()
    logs_sse = _find(resources, "access-logs-sse")["inputs"]
    assert logs_sse["rules"][0]["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "AES256"}
    assert not [r for r in resources if r["type"].endswith("BucketLogging") and r["inputs"]["bucket"] == LOGS]


def test_same_aes256_bucket_is_refused_once_it_stops_receiving_logs() -> None:
    resources = baseline()
    resources.remove(_find(resources, "artifacts-logging"))
    assert [(v.policy, v.resource) for v in evaluate(resources)] == [
        ("s3-bucket-has-access-logging", "access-logs"),
        ("s3-sse-kms-customer-key", "access-logs-sse"),
        ("s3-bucket-has-access-logging", "artifacts"),
    ]


@pytest.mark.parametrize("environment", ["dev", "prod", "prod-eu"])
def test_blue_green_is_required_whatever_the_stack_is_called(environment: str) -> None:
    resources = baseline()
    put("endpoint", "tags.environment", environment)(resources)
    put("endpoint", "deploymentConfig.blueGreenUpdatePolicy", DELETE)(resources)
    assert [v.policy for v in evaluate(resources)] == ["endpoint-blue-green"]


def test_a_serverless_variant_whose_model_is_unknown_in_preview_is_no_violation() -> None:
    from pulumi_policy.proxy import UNKNOWN_STRING_VALUE

    resources = baseline()
    with_serverless({})(resources)  # would break both rules once known
    _find(resources, "sls-config")["inputs"]["productionVariants"][0]["modelName"] = UNKNOWN_STRING_VALUE
    assert evaluate(resources) == []

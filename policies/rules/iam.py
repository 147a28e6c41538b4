"""IAM rules: least-privilege policies, pinned OIDC trust, no IAM users or long-lived keys."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy

from ._common import (
    InvalidDocument,
    allow_statements,
    as_list,
    dig,
    inputs,
    is_unknown,
    parse_document,
    show,
)

ROLE = "aws:iam/role:Role"
POLICY_DOCUMENT_TYPES = frozenset(
    {
        "aws:iam/rolePolicy:RolePolicy",
        "aws:iam/policy:Policy",
        "aws:iam/userPolicy:UserPolicy",
        "aws:iam/groupPolicy:GroupPolicy",
    }
)
ATTACHMENT_TYPES = {  # type -> the input holding the attached policy ARN(s)
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": "policyArn",
    "aws:iam/policyAttachment:PolicyAttachment": "policyArn",
    "aws:iam/groupPolicyAttachment:GroupPolicyAttachment": "policyArn",
    "aws:iam/userPolicyAttachment:UserPolicyAttachment": "policyArn",
    "aws:iam/rolePolicyAttachmentsExclusive:RolePolicyAttachmentsExclusive": "policyArns",
    "aws:iam/groupPolicyAttachmentsExclusive:GroupPolicyAttachmentsExclusive": "policyArns",
    "aws:iam/userPolicyAttachmentsExclusive:UserPolicyAttachmentsExclusive": "policyArns",
    ROLE: "managedPolicyArns",
}
BROAD_POLICY_NAMES = frozenset({"AdministratorAccess", "PowerUserAccess"})
USER_TYPES = frozenset(
    {
        "aws:iam/user:User",
        "aws:iam/userPolicy:UserPolicy",
        "aws:iam/userPolicyAttachment:UserPolicyAttachment",
        "aws:iam/userPoliciesExclusive:UserPoliciesExclusive",
        "aws:iam/userPolicyAttachmentsExclusive:UserPolicyAttachmentsExclusive",
        "aws:iam/userGroupMembership:UserGroupMembership",
        "aws:iam/groupMembership:GroupMembership",
    }
)
CREDENTIAL_TYPES = frozenset(
    {
        "aws:iam/accessKey:AccessKey",
        "aws:iam/userLoginProfile:UserLoginProfile",
        "aws:iam/serviceSpecificCredential:ServiceSpecificCredential",
        "aws:iam/signingCertificate:SigningCertificate",
        "aws:iam/sshKey:SshKey",
    }
)
OIDC_PROVIDER = frozenset({"aws:iam/openIdConnectProvider:OpenIdConnectProvider"})
WEB_IDENTITY_ACTIONS = frozenset({"sts:AssumeRoleWithWebIdentity", "sts:*", "*"})


def _permission_documents(args: ResourceValidationArgs, props: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    if args.resource_type == ROLE:
        policies = props.get("inlinePolicies")
        if not is_unknown(policies):
            for index, inline in enumerate(as_list(policies)):
                yield f"inlinePolicies[{index}].policy", dig(inline, "policy")
    else:
        yield "policy", props.get("policy")


def iam_no_wildcard_actions(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = inputs(args, POLICY_DOCUMENT_TYPES | {ROLE})
    if props is None:
        return
    for where, value in _permission_documents(args, props):
        try:
            doc = parse_document(value)
        except InvalidDocument as exc:
            report_violation(f"{where} {exc}", None)
            continue
        for _index, label, stmt in allow_statements(doc):
            if "NotAction" in stmt:
                report_violation(
                    f"{where} statement {label} Allows NotAction, which grants every other action; "
                    "list the exact actions",
                    None,
                )
            for action in as_list(stmt.get("Action")):
                if isinstance(action, str) and "*" in action:
                    report_violation(
                        f'{where} statement {label} allows wildcard action "{action}"; list the exact actions',
                        None,
                    )


def iam_no_broad_managed_policies(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = inputs(args, ATTACHMENT_TYPES.keys())
    if props is None:
        return
    prop = ATTACHMENT_TYPES[args.resource_type]
    arns = props.get(prop)
    if is_unknown(arns):
        return
    for arn in as_list(arns):
        if not isinstance(arn, str):
            continue
        policy_name = arn.rsplit("/", 1)[-1]
        if policy_name.endswith("FullAccess") or policy_name in BROAD_POLICY_NAMES:
            report_violation(
                f'{prop} attaches "{arn}"; *FullAccess, AdministratorAccess and PowerUserAccess policies are '
                "forbidden, attach a least-privilege policy",
                None,
            )


def _oidc_hosts(principal: Any) -> list[Any]:
    """Issuer hosts of the Federated OIDC providers ("arn:...:oidc-provider/<host>"); UNKNOWN items
    stay UNKNOWN, other federated principals (SAML) are dropped."""
    hosts: list[Any] = []
    for federated in as_list(dig(principal, "Federated")):
        if is_unknown(federated):
            hosts.append(federated)
        elif isinstance(federated, str) and ":oidc-provider/" in federated:
            hosts.append(federated.split(":oidc-provider/", 1)[1])
    return hosts


def _pinned(value: Any) -> bool:
    values = as_list(value)
    return bool(values) and all(isinstance(v, str) and v and "*" not in v and "?" not in v for v in values)


# One project's tags with a literal prefix, e.g. `project_path:acme/ml/app:ref_type:tag:ref:prod-*`: the
# ref is the only part that may vary, and tags (protected by a pattern in GitLab) the only kind of ref.
_TAG_PREFIX_SUBJECT = re.compile(r"^project_path:[^*?:]+:ref_type:tag:ref:[^*?:]+\*$")


def _pinned_tag_prefix(value: Any) -> bool:
    values = as_list(value)
    return bool(values) and all(isinstance(v, str) and _TAG_PREFIX_SUBJECT.match(v) for v in values)


def iam_oidc_trust_pinned(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = inputs(args, {ROLE})
    if props is None:
        return
    try:
        doc = parse_document(props.get("assumeRolePolicy"))
    except InvalidDocument as exc:
        report_violation(f"assumeRolePolicy {exc}", None)
        return
    for _index, label, stmt in allow_statements(doc):
        if not WEB_IDENTITY_ACTIONS & set(as_list(stmt.get("Action"))):
            continue
        if is_unknown(dig(stmt, "Principal", "Federated")):
            continue
        hosts = _oidc_hosts(stmt.get("Principal"))
        if not hosts:
            report_violation(
                f"assumeRolePolicy statement {label} allows sts:AssumeRoleWithWebIdentity without an OIDC "
                "provider as Principal.Federated",
                None,
            )
            continue
        equals = dig(stmt, "Condition", "StringEquals")
        like = dig(stmt, "Condition", "StringLike")
        if is_unknown(equals) or is_unknown(like):
            continue
        for host in hosts:
            if is_unknown(host):
                continue
            for claim in ("aud", "sub"):
                key = f"{host}:{claim}"
                value = dig(equals, key)
                if is_unknown(value) or _pinned(value):
                    continue
                tag_prefix = dig(like, key) if claim == "sub" and value is None else None
                if is_unknown(tag_prefix) or _pinned_tag_prefix(tag_prefix):
                    continue
                allowed = (
                    " or StringLike on one project's tag prefix (ref_type:tag:ref:<prefix>*)" if claim == "sub" else ""
                )
                report_violation(
                    f'assumeRolePolicy statement {label} allows sts:AssumeRoleWithWebIdentity from "{host}" '
                    f'without pinning "{key}" with StringEquals{allowed} (other wildcards are not accepted)',
                    None,
                )


def iam_oidc_provider_sts_audience(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = inputs(args, OIDC_PROVIDER)
    if props is None:
        return
    audiences = props.get("clientIdLists")
    if not is_unknown(audiences) and as_list(audiences) != ["sts.amazonaws.com"]:
        report_violation(f'clientIdLists is {show(audiences)}; must be ["sts.amazonaws.com"]', None)
    url = props.get("url")
    if not is_unknown(url) and not (isinstance(url, str) and url.startswith("https://")):
        report_violation(f"url is {show(url)}; must be the https:// issuer URL", None)


def iam_no_users(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type in USER_TYPES:
        report_violation(
            f"{args.resource_type} manages an IAM user; people sign in through SSO and workloads and CI assume roles",
            None,
        )


def iam_no_long_lived_credentials(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type in CREDENTIAL_TYPES:
        report_violation(
            f"{args.resource_type} creates long-lived IAM user credentials; use role sessions "
            "(GitLab OIDC for CI) instead",
            None,
        )


POLICIES = [
    ResourceValidationPolicy(
        name="iam-no-wildcard-actions",
        description='No Allow statement with an action containing "*" (e.g. "*", "s3:*", "s3:Get*") or with '
        "NotAction, in RolePolicy, Policy, UserPolicy, GroupPolicy documents and role inlinePolicies.",
        validate=iam_no_wildcard_actions,
    ),
    ResourceValidationPolicy(
        name="iam-no-broad-managed-policies",
        description="No attachment of *FullAccess, AdministratorAccess or PowerUserAccess policies (policy "
        "attachments of every kind, RolePolicyAttachmentsExclusive and role managedPolicyArns).",
        validate=iam_no_broad_managed_policies,
    ),
    ResourceValidationPolicy(
        name="iam-oidc-trust-pinned",
        description="Every role trust statement allowing "
        "sts:AssumeRoleWithWebIdentity names an OIDC provider "
        "as Principal.Federated and pins <provider-host>:aud with StringEquals and <provider-host>:sub with "
        "StringEquals, or with StringLike on one project's tag prefix only (project_path:<literal>:ref_type:tag:"
        "ref:<literal prefix>*): any other wildcard would let other projects, branches or refs assume it.",
        validate=iam_oidc_trust_pinned,
    ),
    ResourceValidationPolicy(
        name="iam-oidc-provider-sts-audience",
        description="OIDC providers accept only the STS audience (clientIdLists "
        '["sts.amazonaws.com"]) and use '
        "an https:// issuer URL.",
        validate=iam_oidc_provider_sts_audience,
    ),
    ResourceValidationPolicy(
        name="iam-no-users",
        description="No IAM users, user policies, user policy attachments or user/group memberships: people "
        "use SSO, workloads and CI use roles.",
        validate=iam_no_users,
    ),
    ResourceValidationPolicy(
        name="iam-no-long-lived-credentials",
        description="No access keys, login profiles, service-specific credentials, signing certificates or "
        "SSH keys: nothing long-lived to leak.",
        validate=iam_no_long_lived_credentials,
    ),
]

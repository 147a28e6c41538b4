"""IAM rules: least-privilege policies, pinned OIDC trust, no IAM users or long-lived keys."""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterator
from typing import Any

from pulumi_policy import (
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from ._common import (
    UNKNOWN,
    InvalidDocument,
    allow_statements,
    as_list,
    dig,
    inputs,
    is_unknown,
    parse_document,
    plain,
    principal_is_public,
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


def _permission_statements(
    args: ResourceValidationArgs, report_invalid: ReportViolation | None = None
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(where, label, statement) of every Allow statement of the resource's permission documents; a document that
    does not parse goes to `report_invalid` (one rule reports it, not every rule)."""
    props = inputs(args, POLICY_DOCUMENT_TYPES | {ROLE})
    if props is None:
        return
    for where, value in _permission_documents(args, props):
        try:
            doc = parse_document(value)
        except InvalidDocument as exc:
            if report_invalid is not None:
                report_invalid(f"{where} {exc}", None)
            continue
        for _index, label, stmt in allow_statements(doc):
            yield where, label, stmt


def iam_no_wildcard_actions(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    for where, label, stmt in _permission_statements(args, report_violation):
        if "NotAction" in stmt:
            report_violation(
                f"{where} statement {label} Allows NotAction, which grants every other action; "
                "list the exact actions",
                None,
            )
        for action in as_list(stmt.get("Action")):
            if isinstance(action, str) and ("*" in action or "?" in action):  # IAM matches both
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


def _grants(stmt: dict[str, Any], action: str) -> bool:
    """The statement's Action covers `action`, IAM's way: case-insensitive, `*` and `?` wildcards."""
    patterns = [a.lower() for a in as_list(stmt.get("Action")) if isinstance(a, str)]
    return any(fnmatch.fnmatchcase(action.lower(), pattern) for pattern in patterns)


def _pinned_condition(stmt: dict[str, Any], key: str, operators: tuple[str, ...] = ("StringEquals",)) -> Any:
    """True when one of `operators` pins `key` to literal values; UNKNOWN when the condition is not known yet."""
    for operator in operators:
        equals = dig(stmt, "Condition", operator)
        if is_unknown(equals):
            return UNKNOWN
        value = dig(equals, key)
        if is_unknown(value):
            return UNKNOWN
        if _pinned(value):
            return True
    return False


def iam_passrole_to_named_service(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    for where, label, stmt in _permission_statements(args):
        if _grants(stmt, "iam:PassRole") and _pinned_condition(stmt, "iam:PassedToService") is False:
            report_violation(
                f"{where} statement {label} allows iam:PassRole without StringEquals on iam:PassedToService; name "
                "the service each role is passed to, or the role can run under any service",
                None,
            )


_CUSTOMER_POLICY = re.compile(r"^arn:aws[a-z-]*:iam::[0-9]{12}:policy/[\w+=,.@/-]+$")
# Role writes IAM conditions on the role's permissions boundary (iam:PermissionsBoundary).
ROLE_WRITES = (
    "iam:CreateRole", "iam:PutRolePolicy", "iam:DeleteRolePolicy", "iam:AttachRolePolicy", "iam:DetachRolePolicy",
    "iam:PutRolePermissionsBoundary", "iam:UpdateAssumeRolePolicy", "iam:UpdateRole", "iam:DeleteRole",
)  # fmt: skip


def iam_role_writes_bounded(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    for where, label, stmt in _permission_statements(args):
        if _grants(stmt, "iam:DeleteRolePermissionsBoundary"):
            report_violation(
                f"{where} statement {label} allows iam:DeleteRolePermissionsBoundary: a role's ceiling would come off",
                None,
            )
        written = [action for action in ROLE_WRITES if _grants(stmt, action)]
        if not written:
            continue
        if _pinned_condition(stmt, "iam:PermissionsBoundary", ("ArnEquals", "StringEquals")) is False:
            report_violation(
                f"{where} statement {label} allows {', '.join(written)} without ArnEquals on "
                "iam:PermissionsBoundary; a role written without its boundary can be given any policy",
                None,
            )
            continue
        foreign = [arn for operator in ("ArnEquals", "StringEquals")
                   for arn in as_list(dig(stmt, "Condition", operator, "iam:PermissionsBoundary"))
                   if isinstance(arn, str) and not _CUSTOMER_POLICY.match(arn)]
        if foreign:
            report_violation(
                f"{where} statement {label} allows {', '.join(written)} with the boundary {show(foreign[0])}, which is "
                "not a customer-managed policy (arn:aws:iam::<account>:policy/...): an AWS managed policy as a "
                "boundary (AdministratorAccess) bounds nothing",
                None,
            )


def _trust_statements(args: ResourceValidationArgs) -> Iterator[tuple[str, dict[str, Any]]]:
    props = inputs(args, {ROLE})
    if props is None:
        return
    try:
        doc = parse_document(props.get("assumeRolePolicy"))
    except InvalidDocument:
        return  # iam-oidc-trust-pinned reports it
    for _index, label, stmt in allow_statements(doc):
        yield label, stmt


_SOURCE_ARN_OPERATORS = ("arnequals", "arnlike", "stringequals", "stringlike")


def _pins_the_source(condition: Any) -> bool:
    """The condition names the calling account exactly: aws:SourceAccount with StringEquals and 12-digit values, or
    aws:SourceArn whose every value names a 12-digit account (its fifth field). `StringLike "*"` pins nothing."""
    for operator, block in (condition or {}).items() if isinstance(condition, dict) else ():
        if not isinstance(block, dict):
            continue
        for key, values in block.items():
            values = as_list(values)
            if values and any(is_unknown(v) for v in values):
                return True  # known only after deployment: never a violation (policies/rules/_common.py)
            if not values or any(not isinstance(v, str) for v in values):
                continue
            if key.lower() == "aws:sourceaccount" and operator.lower() == "stringequals" \
                    and all(re.fullmatch(r"[0-9]{12}", v) for v in values):
                return True
            if key.lower() == "aws:sourcearn" and operator.lower() in _SOURCE_ARN_OPERATORS \
                    and all(re.fullmatch(r"[0-9]{12}", (v.split(":") + [""] * 6)[4]) for v in values):
                return True
    return False


def iam_trust_principals(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    for label, stmt in _trust_statements(args):
        principal = stmt.get("Principal")
        if is_unknown(principal):
            continue
        if principal_is_public(principal) or "NotPrincipal" in stmt:
            report_violation(f"assumeRolePolicy statement {label} lets anyone assume the role (Principal * or "
                             "NotPrincipal); name the service or the OIDC provider", None)
            continue
        for aws_principal in as_list(dig(principal, "AWS")):
            if aws_principal is not None and not is_unknown(aws_principal):
                report_violation(
                    f"assumeRolePolicy statement {label} trusts the AWS principal {show(aws_principal)}; the stack's "
                    "roles are assumed by AWS services or pinned OIDC only (other accounts reach the stack through "
                    "resource policies)",
                    None,
                )
        services = as_list(dig(principal, "Service"))
        condition = stmt.get("Condition")
        if services and not is_unknown(condition) and not _pins_the_source(condition):
            report_violation(
                f"assumeRolePolicy statement {label} trusts {show(services)} without pinning aws:SourceAccount (a "
                "12-digit account, StringEquals) or aws:SourceArn (an ARN naming the account); the service could "
                "assume it for another account (confused deputy)",
                None,
            )


def iam_service_roles_bounded(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = inputs(args, {ROLE})
    if props is None:
        return
    boundary = props.get("permissionsBoundary")
    if is_unknown(boundary):
        return
    if any(dig(stmt.get("Principal"), "Service") for _label, stmt in _trust_statements(args)) and not boundary:
        report_violation(
            "a role AWS services assume has no permissionsBoundary; give it the stack's workload boundary, so whoever "
            "may write its policy cannot raise it above the workload",
            None,
        )


# IAM's limits, whitespace not counted: a managed policy 6,144 characters, a role's inline policies 10,240.
POLICY_SIZE_LIMITS = {"aws:iam/policy:Policy": 6144, "aws:iam/rolePolicy:RolePolicy": 10240}


def iam_policy_size(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = inputs(args, POLICY_SIZE_LIMITS.keys())
    if props is None:
        return
    value = props.get("policy")
    if is_unknown(value):
        return
    try:
        doc = parse_document(value)
    except InvalidDocument:
        return
    size = _size(doc)
    if size > (limit := POLICY_SIZE_LIMITS[args.resource_type]):
        report_violation(f"policy is {size} characters without whitespace; IAM refuses more than {limit}", None)


def _size(doc: Any) -> int:
    return len("".join(json.dumps(doc).split()))


def iam_role_inline_total(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """IAM counts a role's inline policies together: each may fit and the last PutRolePolicy still fail."""
    limit = POLICY_SIZE_LIMITS["aws:iam/rolePolicy:RolePolicy"]
    totals: dict[str, list[tuple[int, str]]] = {}
    for resource in args.resources:
        if resource.resource_type != "aws:iam/rolePolicy:RolePolicy":
            continue
        props = plain(resource.props)
        role, value = props.get("role"), props.get("policy")
        if not isinstance(role, str) or is_unknown(value):
            continue
        try:
            doc = parse_document(value)
        except InvalidDocument:
            continue  # iam-policy-size's reader reports nothing either: the policy's own rules do
        totals.setdefault(role, []).append((_size(doc), resource.urn))
    for role, sizes in totals.items():
        if len(sizes) > 1 and (total := sum(size for size, _ in sizes)) > limit:
            report_violation(f'the inline policies of role "{role}" total {total} characters without whitespace; '
                             f"IAM refuses more than {limit} per role (use managed policies)", sizes[-1][1])


POLICIES = [
    ResourceValidationPolicy(
        name="iam-no-wildcard-actions",
        description='No Allow statement with an action containing "*" or "?" (e.g. "*", "s3:Get*", "iam:?assRole") or '
        "with "
        "NotAction, in RolePolicy, Policy, UserPolicy, GroupPolicy documents and role inlinePolicies.",
        validate=iam_no_wildcard_actions,
    ),
    ResourceValidationPolicy(
        name="iam-passrole-to-named-service",
        description="An Allow of iam:PassRole (also through a wildcard) pins iam:PassedToService with StringEquals.",
        validate=iam_passrole_to_named_service,
    ),
    ResourceValidationPolicy(
        name="iam-role-writes-bounded",
        description="An Allow of a role write IAM conditions on the boundary (CreateRole, Put/DeleteRolePolicy, "
        "Attach/DetachRolePolicy, PutRolePermissionsBoundary, UpdateAssumeRolePolicy, UpdateRole, DeleteRole) pins "
        "iam:PermissionsBoundary with ArnEquals (or StringEquals); iam:DeleteRolePermissionsBoundary is never allowed.",
        validate=iam_role_writes_bounded,
    ),
    ResourceValidationPolicy(
        name="iam-trust-principals",
        description="Role trust: no Principal * or NotPrincipal, no AWS account principals (services and pinned OIDC "
        "only), and a service principal only with aws:SourceAccount or aws:SourceArn.",
        validate=iam_trust_principals,
    ),
    ResourceValidationPolicy(
        name="iam-service-roles-bounded",
        description="Every role an AWS service assumes has a permissionsBoundary.",
        validate=iam_service_roles_bounded,
    ),
    ResourceValidationPolicy(
        name="iam-policy-size",
        description="A managed policy holds at most 6,144 characters and an inline role policy 10,240 (whitespace "
        "not counted), as IAM enforces at deploy time.",
        validate=iam_policy_size,
    ),
    StackValidationPolicy(
        name="iam-role-inline-total-size",
        description="A role's inline policies together hold at most 10,240 characters (whitespace not counted).",
        validate=iam_role_inline_total,
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

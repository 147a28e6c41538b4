"""KMS customer-managed key rules."""

from __future__ import annotations

from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy

from ._common import (
    InvalidDocument,
    allow_statements,
    as_list,
    inputs,
    is_unknown,
    parse_document,
    principal_is_public,
    show,
)

KEY = frozenset({"aws:kms/key:Key"})


def kms_key_rotation(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = inputs(args, KEY)
    if props is None:
        return
    enabled = props.get("enableKeyRotation")
    if not is_unknown(enabled) and enabled is not True:
        report_violation(f"enableKeyRotation is {show(enabled)}; customer-managed keys must rotate (set true)", None)


def kms_no_public_admin(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = inputs(args, KEY)
    if props is None:
        return
    try:
        doc = parse_document(props.get("policy"))
    except InvalidDocument as exc:
        report_violation(f"policy {exc}", None)
        return
    for _index, label, stmt in allow_statements(doc):
        if not principal_is_public(stmt.get("Principal")):
            continue
        for action in as_list(stmt.get("Action")):
            if action in ("kms:*", "*"):
                report_violation(f'key policy statement {label} grants "{action}" to Principal "*"', None)


POLICIES = [
    ResourceValidationPolicy(
        name="kms-key-rotation",
        description="Customer-managed KMS keys have automatic rotation on (enableKeyRotation true).",
        validate=kms_key_rotation,
    ),
    ResourceValidationPolicy(
        name="kms-no-public-admin",
        description='No KMS key policy statement Allows "kms:*" (or "*") to '
        'Principal "*": that would hand the '
        "key, and every bucket, image and endpoint it encrypts, to any AWS account.",
        validate=kms_no_public_admin,
    ),
]

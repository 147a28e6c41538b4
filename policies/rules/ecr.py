"""ECR repository rules (the lifecycle-policy relation is a stack rule, in ``stack.py``)."""

from __future__ import annotations

from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy

from ._common import as_list, dig, inputs, is_blank, is_unknown, show

REPOSITORY = frozenset({"aws:ecr/repository:Repository"})
LIFECYCLE_POLICY = frozenset({"aws:ecr/lifecyclePolicy:LifecyclePolicy"})


def ecr_immutable_tags(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = inputs(args, REPOSITORY)
    if props is None:
        return
    mutability = props.get("imageTagMutability")
    if mutability is None:
        report_violation('imageTagMutability is not set (AWS default "MUTABLE"); must be "IMMUTABLE"', None)
    elif not is_unknown(mutability) and mutability != "IMMUTABLE":
        report_violation(f'imageTagMutability is {show(mutability)}; must be "IMMUTABLE"', None)


def ecr_scan_on_push(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = inputs(args, REPOSITORY)
    if props is None:
        return
    scan = dig(props, "imageScanningConfiguration", "scanOnPush")
    if not is_unknown(scan) and scan is not True:
        report_violation(f"imageScanningConfiguration.scanOnPush is {show(scan)}; must be true", None)


def ecr_kms_encryption(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = inputs(args, REPOSITORY)
    if props is None:
        return
    configs = props.get("encryptionConfigurations")
    if is_unknown(configs):
        return
    if not as_list(configs):
        report_violation(
            'encryptionConfigurations is not set (AWS default "AES256"); must use encryptionType "KMS" '
            "with a customer-managed kmsKey",
            None,
        )
        return
    for index, config in enumerate(as_list(configs)):
        kind = dig(config, "encryptionType")
        if not is_unknown(kind) and kind != "KMS":
            report_violation(f'encryptionConfigurations[{index}].encryptionType is {show(kind)}; must be "KMS"', None)
        elif is_blank(dig(config, "kmsKey")):
            report_violation(
                f"encryptionConfigurations[{index}].kmsKey is not set; use a customer-managed key, "
                "not the AWS-managed aws/ecr key",
                None,
            )


POLICIES = [
    ResourceValidationPolicy(
        name="ecr-immutable-tags",
        description='ECR repositories use imageTagMutability "IMMUTABLE": a '
        "deployed tag (the git sha) always "
        "names the same image.",
        validate=ecr_immutable_tags,
    ),
    ResourceValidationPolicy(
        name="ecr-scan-on-push",
        description="ECR repositories scan every pushed image (imageScanningConfiguration.scanOnPush true).",
        validate=ecr_scan_on_push,
    ),
    ResourceValidationPolicy(
        name="ecr-kms-encryption",
        description='ECR repositories encrypt images with encryptionType "KMS" '
        "and an explicit customer-managed "
        "kmsKey.",
        validate=ecr_kms_encryption,
    ),
]

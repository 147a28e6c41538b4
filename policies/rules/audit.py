"""Audit rules: the trail a stack declares is encrypted, validated, everywhere, and records its data; its log
groups are encrypted with a customer key and expire.

A stack may declare no trail (it names an organization's: existingTrailArn); when it declares one, that trail
must record the S3 object events of every bucket the stack tags `purpose` data or artifacts, matched by name.
"""

from __future__ import annotations

from typing import Any

from pulumi_policy import (
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from ._common import as_list, dig, inputs, is_blank, is_unknown, plain, show
from .s3 import BUCKET

TRAIL = frozenset({"aws:cloudtrail/trail:Trail"})
LOG_GROUP = frozenset({"aws:cloudwatch/logGroup:LogGroup"})
RECORDED_PURPOSES = ("data", "artifacts")


def trail_protected(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = inputs(args, TRAIL)
    if props is None:
        return
    if is_blank(props.get("kmsKeyId")):
        report_violation("kmsKeyId is not set: log files are encrypted with a customer-managed key", None)
    for key, why in (("enableLogFileValidation", "digests prove no log file was changed or removed"),
                     ("isMultiRegionTrail", "a call in another region is recorded too"),
                     ("includeGlobalServiceEvents", "IAM's calls are recorded")):
        value = props.get(key)
        if not is_unknown(value) and value is not True:
            report_violation(f"{key} is {show(value)}; must be true: {why}", None)


def _recorded_prefixes(trail: dict[str, Any]) -> set[str] | None:
    """The S3 object ARNs (prefixes) the trail's basic event selectors record; None when unknown."""
    selectors = trail.get("eventSelectors")
    if is_unknown(selectors):
        return None
    found: set[str] = set()
    for selector in as_list(selectors):
        for resource in as_list(dig(selector, "dataResources")):
            if dig(resource, "type") == "AWS::S3::Object":
                values = dig(resource, "values")
                if is_unknown(values):
                    return None
                found.update(v for v in as_list(values) if isinstance(v, str))
    return found


def trail_records_stack_data(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    trails = [(r, plain(r.props)) for r in args.resources if r.resource_type in TRAIL]
    buckets = [plain(r.props) for r in args.resources if r.resource_type in BUCKET]
    recorded = [p.get("bucket") for p in buckets if dig(p, "tags", "purpose") in RECORDED_PURPOSES]
    for resource, trail in trails:
        prefixes = _recorded_prefixes(trail)
        if prefixes is None:
            continue
        for bucket in recorded:
            if isinstance(bucket, str) and not {f"arn:aws:s3:::{bucket}/", "arn:aws:s3"} & prefixes:
                report_violation(f'trail records no S3 object events of bucket "{bucket}" (eventSelectors '
                                 f'dataResources AWS::S3::Object "arn:aws:s3:::{bucket}/")', resource.urn)


def log_group_encrypted_and_expiring(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = inputs(args, LOG_GROUP)
    if props is None:
        return
    if is_blank(props.get("kmsKeyId")):
        report_violation("kmsKeyId is not set: log events are encrypted with a customer-managed key", None)
    retention = props.get("retentionInDays")
    # the engine hands numbers over as floats
    if not is_unknown(retention) and (isinstance(retention, bool) or not isinstance(retention, int | float)
                                      or retention <= 0):
        report_violation(f"retentionInDays is {show(retention)}; set the days events are kept (never: forever)", None)


POLICIES = [
    ResourceValidationPolicy(
        name="cloudtrail-trail-protected",
        description="CloudTrail trails encrypt their log files with a customer-managed key (kmsKeyId), validate "
        "them (enableLogFileValidation), cover every region (isMultiRegionTrail) and IAM's events "
        "(includeGlobalServiceEvents).",
        validate=trail_protected,
    ),
    StackValidationPolicy(
        name="cloudtrail-records-stack-data",
        description="A trail the stack declares records the S3 object events of each of its buckets tagged "
        "purpose data or artifacts.",
        validate=trail_records_stack_data,
    ),
    ResourceValidationPolicy(
        name="logs-group-encrypted-and-expiring",
        description="CloudWatch log groups are encrypted with a customer-managed key (kmsKeyId) and keep events "
        "for a set number of days (retentionInDays).",
        validate=log_group_encrypted_and_expiring,
    ),
]

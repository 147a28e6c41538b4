"""Stack rules: relations between resources, which no single resource can show.

Relations are matched by physical name, as the infra declares them:
  - an S3 bucket (``bucket`` input) to its companions, whose ``bucket`` input is that name, and to
    the BucketLogging resources whose ``targetBucket`` is that name (server access log buckets);
  - an ECR repository (``name``) to the LifecyclePolicy whose ``repository`` is that name;
  - a SageMaker endpoint (``name``) to its EndpointConfiguration (``endpointConfigName`` = the
    configuration's ``name``), to its scaling targets (``resourceId``
    ``endpoint/<name>/variant/<variant>``) and to its alarms (dimension ``EndpointName`` = name).
Where a value needed to match is unknown during preview, the check that needs it is skipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pulumi_policy import PolicyResource, ReportViolation, StackValidationArgs, StackValidationPolicy

from ._common import as_list, dig, is_blank, is_unknown, plain, show
from .ecr import LIFECYCLE_POLICY, REPOSITORY
from .operations import METRIC_ALARM, SCALABLE_TARGET, SCALING_POLICY
from .s3 import (
    BUCKET,
    BUCKET_POLICY,
    KMS_ALGORITHMS,
    LOGGING,
    PUBLIC_ACCESS_BLOCK,
    SSE_CONFIG,
    VERSIONING,
    sse_rules,
)
from .sagemaker import ENDPOINT, ENDPOINT_CONFIG, realtime_variants

VARIANT_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
ENDPOINT_ALARM_METRICS = ("ModelLatency", "Invocation5XXErrors", "Invocation4XXErrors")
AWS_MANAGED_S3_KEY = "alias/aws/s3"


def _of(args: StackValidationArgs, types: Iterable[str]) -> list[tuple[PolicyResource, dict[str, Any]]]:
    wanted = frozenset(types)
    return [(r, plain(r.props)) for r in args.resources if r.resource_type in wanted]


def _values(items: list[tuple[PolicyResource, dict[str, Any]]], key: str) -> tuple[set[Any], bool]:
    """The known values of input ``key`` and whether any of them is unknown."""
    values = [props.get(key) for _, props in items]
    return {v for v in values if isinstance(v, str)}, any(is_unknown(v) for v in values)


def _named_buckets(args: StackValidationArgs) -> list[tuple[PolicyResource, str]]:
    return [(r, p["bucket"]) for r, p in _of(args, BUCKET) if isinstance(p.get("bucket"), str) and p["bucket"]]


def _log_targets(args: StackValidationArgs) -> tuple[set[Any], bool]:
    return _values(_of(args, LOGGING), "targetBucket")


def _require_companion(
    args: StackValidationArgs, report_violation: ReportViolation, types: frozenset[str], kind: str
) -> None:
    names, unknown = _values(_of(args, types), "bucket")
    if unknown:
        return
    for resource, bucket in _named_buckets(args):
        if bucket not in names:
            report_violation(f'bucket "{bucket}" has no {kind} (matched by its "bucket" input)', resource.urn)


def s3_bucket_has_public_access_block(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    _require_companion(args, report_violation, PUBLIC_ACCESS_BLOCK, "BucketPublicAccessBlock")


def s3_bucket_has_encryption(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    _require_companion(args, report_violation, SSE_CONFIG, "BucketServerSideEncryptionConfiguration")


def s3_bucket_has_versioning(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    _require_companion(args, report_violation, VERSIONING, "BucketVersioning")


def s3_bucket_has_policy(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    _require_companion(args, report_violation, BUCKET_POLICY, "BucketPolicy")


def s3_bucket_has_access_logging(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    targets, targets_unknown = _log_targets(args)
    sources, sources_unknown = _values(_of(args, LOGGING), "bucket")
    if targets_unknown or sources_unknown:
        return
    for resource, bucket in _named_buckets(args):
        if bucket not in targets and bucket not in sources:
            report_violation(
                f'bucket "{bucket}" has no BucketLogging (matched by its '
                '"bucket" input); every bucket except '
                "server access log targets must log access",
                resource.urn,
            )


def _is_aws_managed_s3_key(key: Any) -> bool:
    return isinstance(key, str) and (key == AWS_MANAGED_S3_KEY or key.endswith(":" + AWS_MANAGED_S3_KEY))


def s3_sse_kms_customer_key(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    targets, targets_unknown = _log_targets(args)
    for resource, props in _of(args, SSE_CONFIG):
        bucket, rules = props.get("bucket"), sse_rules(props)
        if is_unknown(bucket) or bucket in targets or is_unknown(rules):
            continue
        if not rules:
            report_violation(f'bucket "{bucket}" default encryption has no rules', resource.urn)
        for index, rule in enumerate(rules):
            algorithm = dig(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm")
            key = dig(rule, "applyServerSideEncryptionByDefault", "kmsMasterKeyId")
            if is_unknown(algorithm) or (algorithm == "AES256" and targets_unknown):
                continue
            if algorithm not in KMS_ALGORITHMS:
                report_violation(
                    f'bucket "{bucket}" rules[{index}] uses sseAlgorithm '
                    f'{show(algorithm)}; must be "aws:kms" '
                    "with a customer-managed kmsMasterKeyId (only server access "
                    'log target buckets use "AES256")',
                    resource.urn,
                )
            elif not is_unknown(key) and (is_blank(key) or _is_aws_managed_s3_key(key)):
                report_violation(
                    f'bucket "{bucket}" rules[{index}] kmsMasterKeyId is '
                    f"{show(key)}; must be a customer-managed "
                    "KMS key, not the AWS-managed aws/s3 key",
                    resource.urn,
                )


def s3_log_bucket_sse_s3(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    targets, _ = _log_targets(args)
    for resource, props in _of(args, SSE_CONFIG):
        bucket, rules = props.get("bucket"), sse_rules(props)
        if bucket not in targets or is_unknown(rules):
            continue
        for index, rule in enumerate(rules):
            algorithm = dig(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm")
            if not is_unknown(algorithm) and algorithm != "AES256":
                report_violation(
                    f'bucket "{bucket}" receives server access logs but rules[{index}] uses sseAlgorithm '
                    f'{show(algorithm)}; S3 cannot deliver access logs to an SSE-KMS bucket, use "AES256"',
                    resource.urn,
                )


def ecr_repository_has_lifecycle_policy(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    names, unknown = _values(_of(args, LIFECYCLE_POLICY), "repository")
    if unknown:
        return
    for resource, props in _of(args, REPOSITORY):
        name = props.get("name")
        if isinstance(name, str) and name not in names:
            report_violation(
                f'repository "{name}" has no LifecyclePolicy (matched by its "repository" input)',
                resource.urn,
            )


def _named_endpoints(args: StackValidationArgs) -> list[tuple[PolicyResource, str, dict[str, Any]]]:
    return [(r, p["name"], p) for r, p in _of(args, ENDPOINT) if isinstance(p.get("name"), str) and p["name"]]


def endpoint_variant_autoscaling(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    configs = _of(args, ENDPOINT_CONFIG)
    config_names, config_unknown = _values(configs, "name")
    targets = _of(args, SCALABLE_TARGET)
    if config_unknown or any(
        is_unknown(p.get("resourceId")) or is_unknown(p.get("scalableDimension")) for _, p in targets
    ):
        return
    scalable = {(p.get("resourceId"), p.get("scalableDimension")) for _, p in targets}
    by_name = {p["name"]: p for _, p in configs if isinstance(p.get("name"), str)}
    for resource, endpoint, props in _named_endpoints(args):
        config_name = props.get("endpointConfigName")
        if is_unknown(config_name):
            continue
        if config_name not in config_names:
            report_violation(
                f'endpoint "{endpoint}" references endpointConfigName {show(config_name)}, which matches no '
                "EndpointConfiguration name in this stack; give the configuration an explicit name",
                resource.urn,
            )
            continue
        variants = realtime_variants(by_name[config_name])
        if is_unknown(variants):
            continue
        for variant in variants:
            variant_name = dig(variant, "variantName")
            if not isinstance(variant_name, str):
                continue
            resource_id = f"endpoint/{endpoint}/variant/{variant_name}"
            if (resource_id, VARIANT_DIMENSION) not in scalable:
                report_violation(
                    f'endpoint "{endpoint}" variant "{variant_name}" has no aws:appautoscaling Target with '
                    f'resourceId "{resource_id}" and scalableDimension "{VARIANT_DIMENSION}"',
                    resource.urn,
                )


def endpoint_variant_target_tracking(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    policies = _of(args, SCALING_POLICY)
    if any(is_unknown(p.get("resourceId")) for _, p in policies):
        return
    tracked = {
        (p.get("resourceId"), p.get("scalableDimension"))
        for _, p in policies
        if p.get("policyType") == "TargetTrackingScaling"
        and not is_blank(p.get("targetTrackingScalingPolicyConfiguration"))
    }
    for resource, props in _of(args, SCALABLE_TARGET):
        resource_id, dimension = props.get("resourceId"), props.get("scalableDimension")
        if dimension != VARIANT_DIMENSION or not isinstance(resource_id, str):
            continue
        if (resource_id, dimension) not in tracked:
            report_violation(
                f'scalable target "{resource_id}" has no aws:appautoscaling Policy with policyType '
                '"TargetTrackingScaling" and a targetTrackingScalingPolicyConfiguration',
                resource.urn,
            )


def endpoint_alarms(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    alarms = _of(args, METRIC_ALARM)
    keys = [(p.get("namespace"), p.get("metricName"), dig(p, "dimensions", "EndpointName")) for _, p in alarms]
    if any(is_unknown(v) for key in keys for v in key):
        return
    watched = {(metric, endpoint) for namespace, metric, endpoint in keys if namespace == "AWS/SageMaker"}
    for resource, endpoint, _props in _named_endpoints(args):
        for metric in ENDPOINT_ALARM_METRICS:
            if (metric, endpoint) not in watched:
                report_violation(
                    f'endpoint "{endpoint}" has no CloudWatch alarm on AWS/SageMaker {metric} with dimension '
                    f'EndpointName="{endpoint}"',
                    resource.urn,
                )


def endpoint_rollback_alarms_exist(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    names, unknown = _values(_of(args, METRIC_ALARM), "name")
    if unknown:
        return
    for resource, endpoint, props in _named_endpoints(args):
        alarms = dig(props, "deploymentConfig", "autoRollbackConfiguration", "alarms")
        if is_unknown(alarms):
            continue
        for alarm in as_list(alarms):
            alarm_name = dig(alarm, "alarmName")
            if isinstance(alarm_name, str) and alarm_name not in names:
                report_violation(
                    f'endpoint "{endpoint}" rolls back on alarm "{alarm_name}", which is not the name of a '
                    "MetricAlarm in this stack",
                    resource.urn,
                )


POLICIES = [
    StackValidationPolicy(
        name="s3-bucket-has-public-access-block",
        description="Every S3 bucket has a BucketPublicAccessBlock.",
        validate=s3_bucket_has_public_access_block,
    ),
    StackValidationPolicy(
        name="s3-bucket-has-encryption",
        description="Every S3 bucket has a BucketServerSideEncryptionConfiguration.",
        validate=s3_bucket_has_encryption,
    ),
    StackValidationPolicy(
        name="s3-bucket-has-versioning",
        description="Every S3 bucket has a BucketVersioning.",
        validate=s3_bucket_has_versioning,
    ),
    StackValidationPolicy(
        name="s3-bucket-has-policy",
        description="Every S3 bucket has a BucketPolicy (whose TLS-only content s3-tls-only-policy checks).",
        validate=s3_bucket_has_policy,
    ),
    StackValidationPolicy(
        name="s3-bucket-has-access-logging",
        description="Every S3 bucket logs access through a BucketLogging, except the buckets that are a "
        "BucketLogging targetBucket: a log bucket logging to itself would loop.",
        validate=s3_bucket_has_access_logging,
    ),
    StackValidationPolicy(
        name="s3-sse-kms-customer-key",
        description='Default encryption of every bucket is SSE-KMS ("aws:kms" or "aws:kms:dsse") with a '
        "customer-managed kmsMasterKeyId. Exception: buckets that are the targetBucket of a BucketLogging, "
        "because S3 server access logs cannot be delivered to a bucket with SSE-KMS default encryption "
        "(AWS supports only SSE-S3 there); see s3-log-bucket-sse-s3.",
        validate=s3_sse_kms_customer_key,
    ),
    StackValidationPolicy(
        name="s3-log-bucket-sse-s3",
        description="Buckets that receive server access logs (a BucketLogging "
        'targetBucket) use SSE-S3 ("AES256") '
        "default encryption: S3 cannot deliver access logs to an SSE-KMS bucket, so KMS there silently "
        "loses the logs.",
        validate=s3_log_bucket_sse_s3,
    ),
    StackValidationPolicy(
        name="ecr-repository-has-lifecycle-policy",
        description="Every ECR repository has a LifecyclePolicy, so old images expire.",
        validate=ecr_repository_has_lifecycle_policy,
    ),
    StackValidationPolicy(
        name="endpoint-variant-autoscaling",
        description="Every real-time variant of every SageMaker endpoint has an "
        "aws:appautoscaling Target with "
        "resourceId endpoint/<endpoint>/variant/<variant> and scalableDimension "
        "sagemaker:variant:DesiredInstanceCount. Serverless variants scale by themselves and are exempt.",
        validate=endpoint_variant_autoscaling,
    ),
    StackValidationPolicy(
        name="endpoint-variant-target-tracking",
        description="Every SageMaker variant scalable target has a TargetTrackingScaling policy with a "
        "targetTrackingScalingPolicyConfiguration.",
        validate=endpoint_variant_target_tracking,
    ),
    StackValidationPolicy(
        name="endpoint-alarms",
        description="Every SageMaker endpoint has CloudWatch alarms (namespace AWS/SageMaker, dimension "
        "EndpointName) on ModelLatency, Invocation5XXErrors and Invocation4XXErrors.",
        validate=endpoint_alarms,
    ),
    StackValidationPolicy(
        name="endpoint-rollback-alarms-exist",
        description="Every alarm named in an endpoint's deploymentConfig.autoRollbackConfiguration is a "
        "MetricAlarm of this stack (matched by its name input), so rollback really watches something.",
        validate=endpoint_rollback_alarms_exist,
    ),
]

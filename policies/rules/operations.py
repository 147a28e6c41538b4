"""Operability rules on single resources: scaling bounds, alarms that notify, encrypted topics,
safe deployments. (Which endpoint has which alarm or scaling target: ``stack.py``.)"""

from __future__ import annotations

from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy

from ._common import dig, inputs, is_blank, is_unknown
from .sagemaker import ENDPOINT

SCALABLE_TARGET = frozenset({"aws:appautoscaling/target:Target"})
SCALING_POLICY = frozenset({"aws:appautoscaling/policy:Policy"})
METRIC_ALARM = frozenset({"aws:cloudwatch/metricAlarm:MetricAlarm"})
SNS_TOPIC = frozenset({"aws:sns/topic:Topic"})


def autoscaling_capacity_bounds(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = inputs(args, SCALABLE_TARGET)
    if props is None:
        return
    low, high = props.get("minCapacity"), props.get("maxCapacity")
    if isinstance(low, int | float) and isinstance(high, int | float) and low > high:
        report_violation(f"minCapacity {low} is greater than maxCapacity {high}", None)


def cloudwatch_alarm_actions(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = inputs(args, METRIC_ALARM)
    if props is None:
        return
    if is_blank(props.get("alarmActions")):
        report_violation("alarmActions is empty; every alarm must notify (e.g. the platform SNS topic)", None)
    if props.get("actionsEnabled") is False:
        report_violation("actionsEnabled is false; the alarm would never notify", None)


def sns_topic_kms(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = inputs(args, SNS_TOPIC)
    if props is not None and is_blank(props.get("kmsMasterKeyId")):
        report_violation("kmsMasterKeyId is not set; topics must be encrypted with a KMS key", None)


def endpoint_blue_green(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    # every stack deploys its endpoint the same way (stacks differ by data, not by name), so a
    # stack named anything but "prod" gets no weaker check
    props = inputs(args, ENDPOINT)
    if props is None:
        return
    config = props.get("deploymentConfig")
    if is_unknown(config):
        return
    if is_blank(dig(config, "blueGreenUpdatePolicy")):
        report_violation("deploymentConfig.blueGreenUpdatePolicy is not set; endpoints must deploy blue/green", None)
    if is_blank(dig(config, "autoRollbackConfiguration", "alarms")):
        report_violation("deploymentConfig.autoRollbackConfiguration.alarms is empty; endpoints must roll back "
                         "automatically when an alarm fires", None)


POLICIES = [
    ResourceValidationPolicy(
        name="autoscaling-capacity-bounds",
        description="Application Auto Scaling targets have minCapacity <= maxCapacity.",
        validate=autoscaling_capacity_bounds,
    ),
    ResourceValidationPolicy(
        name="cloudwatch-alarm-actions",
        description="Every CloudWatch metric alarm has non-empty alarmActions and does not disable them: an "
        "alarm nobody hears protects nothing.",
        validate=cloudwatch_alarm_actions,
    ),
    ResourceValidationPolicy(
        name="sns-topic-kms",
        description="SNS topics are encrypted at rest with a KMS key (kmsMasterKeyId).",
        validate=sns_topic_kms,
    ),
    ResourceValidationPolicy(
        name="endpoint-blue-green",
        description="Endpoints deploy with deploymentConfig.blueGreenUpdatePolicy and roll back automatically on "
        "deploymentConfig.autoRollbackConfiguration.alarms, in every stack.",
        validate=endpoint_blue_green,
    ),
]

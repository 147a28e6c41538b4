"""Tagging rule: every taggable resource says which project, environment and owner it belongs to."""

from __future__ import annotations

from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy

from ._common import inputs, is_blank, is_unknown

REQUIRED_TAGS = ("project", "environment", "owner")

TAGGABLE_TYPES = frozenset(
    {
        # Types of this platform whose pulumi_aws resource has a `tags` input (tests/policies checks each
        # against pulumi_aws). Not taggable, hence absent: kms Alias, the S3 bucket companion resources,
        # ecr LifecyclePolicy, iam RolePolicy / attachments, cloudwatch Dashboard and EventTarget,
        # appautoscaling Policy, scheduler Schedule.
        "aws:kms/key:Key",
        "aws:s3/bucket:Bucket",
        "aws:s3/bucketV2:BucketV2",
        "aws:ecr/repository:Repository",
        "aws:iam/role:Role",
        "aws:iam/policy:Policy",
        "aws:iam/openIdConnectProvider:OpenIdConnectProvider",
        "aws:sagemaker/mlflowTrackingServer:MlflowTrackingServer",
        "aws:sagemaker/modelPackageGroup:ModelPackageGroup",
        "aws:sagemaker/pipeline:Pipeline",
        "aws:sagemaker/model:Model",
        "aws:sagemaker/endpointConfiguration:EndpointConfiguration",
        "aws:sagemaker/endpoint:Endpoint",
        "aws:sagemaker/monitoringSchedule:MonitoringSchedule",
        "aws:sagemaker/dataQualityJobDefinition:DataQualityJobDefinition",
        "aws:sagemaker/trainingJob:TrainingJob",
        "aws:appautoscaling/target:Target",
        "aws:cloudwatch/metricAlarm:MetricAlarm",
        "aws:cloudwatch/eventRule:EventRule",
        "aws:cloudwatch/eventBus:EventBus",
        "aws:sns/topic:Topic",
    }
)


def required_tags(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = inputs(args, TAGGABLE_TYPES)
    if props is None:
        return
    tags = props.get("tags")
    if is_blank(tags):
        tags = props.get("tagsAll")  # outputs, as seen by stack validation during `pulumi up`
    if is_unknown(tags):
        return
    tags = tags if isinstance(tags, dict) else {}
    missing = [key for key in REQUIRED_TAGS if not is_unknown(tags.get(key)) and is_blank(tags.get(key))]
    if missing:
        report_violation(
            "tags lack required non-empty key(s) "
            + ", ".join(f'"{key}"' for key in missing)
            + " (required: project, environment, owner)",
            None,
        )


POLICIES = [
    ResourceValidationPolicy(
        name="required-tags",
        description="Every taggable resource carries non-empty `project`, "
        "`environment` and `owner` tags in its "
        "own `tags` input (provider default_tags are not visible to resource policies).",
        validate=required_tags,
    ),
]

"""Audit: who did what to the stack (a CloudTrail trail), and the SageMaker log groups kept, encrypted.

The trail (unless the stack names an existing one: existingTrailArn) is multi-region, records management
events (IAM's global ones included) and the S3 object events of the data and artifacts buckets, writes into
the logs bucket under `cloudtrail/` encrypted with the stack key, and signs a digest every hour (log-file
validation: `aws cloudtrail validate-logs` proves no file was changed or removed).

SageMaker writes job logs into /aws/sagemaker/ProcessingJobs and /aws/sagemaker/TrainingJobs (one group for
every job of the account and region) and an endpoint's into /aws/sagemaker/Endpoints/<endpoint> (serving.py
declares that one). Left to SageMaker they keep events forever, unencrypted by any customer key: declared here,
with logRetentionDays and the stack key (its policy lets CloudWatch Logs use it for exactly these groups).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.components.storage import TRAIL_LOG_PREFIX
from mlops.naming import SAGEMAKER_JOB_LOG_GROUPS, Names
from mlops.settings import StackSettings

RECORDED_BUCKET_KINDS = ("data", "artifacts")  # the S3 object events the trail records


@dataclass(frozen=True)
class AuditArgs:
    settings: StackSettings
    names: Names
    tags: dict[str, str]
    key_arn: pulumi.Input[str]
    logs_bucket: str
    logs_bucket_policy: pulumi.Resource  # the trail checks at creation that CloudTrail may write there


def log_group(name: str, logical: str, *, retention_days: int, protect: bool, key_arn: pulumi.Input[str],
              tags: dict[str, str], parent: pulumi.Resource) -> aws.cloudwatch.LogGroup:
    """A SageMaker log group of the stack: its retention, the stack key, protected with the stack's stateful data."""
    return aws.cloudwatch.LogGroup(
        logical, name=name, retention_in_days=retention_days, kms_key_id=key_arn, tags=tags,
        opts=pulumi.ResourceOptions(parent=parent, protect=protect))


class Audit(pulumi.ComponentResource):
    trail_arn: pulumi.Input[str]

    def __init__(self, name: str, args: AuditArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops-stack:audit:Audit", name, None, opts)
        settings, names = args.settings, args.names
        if settings.sagemaker_job_log_groups:
            for group in SAGEMAKER_JOB_LOG_GROUPS:
                log_group(group, f"{name}-{group.rsplit('/', 1)[1].lower()}-logs",
                          retention_days=settings.log_retention_days, protect=settings.protect_resources,
                          key_arn=args.key_arn, tags=args.tags, parent=self)
        if settings.existing_trail_arn:
            self.trail_arn = settings.existing_trail_arn
        else:
            trail = aws.cloudtrail.Trail(
                f"{name}-trail",
                name=names.trail,
                s3_bucket_name=args.logs_bucket,
                s3_key_prefix=TRAIL_LOG_PREFIX,
                kms_key_id=args.key_arn,
                enable_log_file_validation=True,
                is_multi_region_trail=True,
                include_global_service_events=True,
                event_selectors=[aws.cloudtrail.TrailEventSelectorArgs(
                    read_write_type="All",
                    include_management_events=True,
                    data_resources=[aws.cloudtrail.TrailEventSelectorDataResourceArgs(
                        type="AWS::S3::Object",
                        values=[f"arn:aws:s3:::{names.bucket(kind)}/" for kind in RECORDED_BUCKET_KINDS])],
                )],
                tags=args.tags,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[args.logs_bucket_policy],
                                            protect=settings.protect_resources),
            )
            self.trail_arn = trail.arn
        self.register_outputs({"trailArn": self.trail_arn})

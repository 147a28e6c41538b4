"""Batch scoring: a SageMaker Batch Transform job of the stack's served model at `batchTransformSchedule`.

- EventBridge Scheduler sends `pipelines.batch.batch_transform_request` to CreateTransformJob at each tick, with the
  monitoring scheduler's role (it may create exactly the `<stack>-batch-*` transform jobs, output and volume under
  the stack key). The job runs the model the endpoint runs (same package, VPC and network isolation) as its role,
  over every object under the data bucket's input prefix, and writes `<key>.out` under the output prefix.
- Its inputs and outputs are captured (manifests under the capture bucket's `batch-datacapture/<endpoint>/`,
  encrypted with the stack key), where the drift job reads them beside the endpoint's capture.
- A failed or stopped job notifies the alarm topic (EventBridge: SageMaker Transform Job State Change). SageMaker
  has no rollback for a transform job: a failed file leaves no `.out`, and the next tick scores the prefix again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from mlops.naming import Names
from mlops.settings import StackSettings
from pipelines.batch import batch_transform_request


@dataclass(frozen=True)
class BatchArgs:
    settings: StackSettings
    names: Names
    model_name: pulumi.Input[str]  # the endpoint's model (infra/components/serving.py)
    scheduler_role_arn: pulumi.Input[str]  # the monitoring schedules' role (infra/components/monitoring.py)
    kms_key_arn: pulumi.Input[str]
    alarm_topic_arn: pulumi.Input[str]
    tags: dict[str, str]


class Batch(pulumi.ComponentResource):
    schedule_name: str

    def __init__(self, name: str, args: BatchArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops-stack:batch:Batch", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        names, settings = args.names, args.settings
        self.schedule_name = names.resource("batch", "scheduler")
        aws.scheduler.Schedule(
            f"{name}-schedule",
            name=self.schedule_name,
            description=f"Batch Transform of s3://{names.bucket('data')}/{settings.batch_transform_input_prefix} with "
                        f"the model of {names.endpoint}",
            schedule_expression=settings.batch_transform_schedule,
            flexible_time_window=aws.scheduler.ScheduleFlexibleTimeWindowArgs(mode="OFF"),
            kms_key_arn=args.kms_key_arn,
            target=aws.scheduler.ScheduleTargetArgs(
                arn="arn:aws:scheduler:::aws-sdk:sagemaker:createTransformJob",
                role_arn=args.scheduler_role_arn,
                input=pulumi.Output.all(args.model_name, args.kms_key_arn).apply(
                    lambda values: json.dumps(batch_transform_request(settings, model_name=values[0],
                                                                      key_arn=values[1]), sort_keys=True)
                ),
                retry_policy=aws.scheduler.ScheduleTargetRetryPolicyArgs(maximum_retry_attempts=2),
            ),
            opts=child,
        )
        failures = aws.cloudwatch.EventRule(
            f"{name}-failure-rule",
            name=names.resource("batch-failures", "events"),
            description=f"Batch Transform jobs of {names.batch_job_prefix}-* that failed or were stopped",
            event_pattern=json.dumps(
                {
                    "source": ["aws.sagemaker"],
                    "detail-type": ["SageMaker Transform Job State Change"],
                    "detail": {"TransformJobName": [{"prefix": f"{names.batch_job_prefix}-"}],
                               "TransformJobStatus": ["Failed", "Stopped"]},
                },
                sort_keys=True,
            ),
            tags=args.tags,
            opts=child,
        )
        aws.cloudwatch.EventTarget(f"{name}-failure-target", rule=failures.name, arn=args.alarm_topic_arn, opts=child)
        self.register_outputs({"scheduleName": self.schedule_name})

"""Monitoring and retraining: drift on captured traffic -> alarm -> retrain, with a cooldown.

- Drift job: EventBridge Scheduler runs a SageMaker processing job from the stack's image at the
  cadence of `driftSchedule` (`python -m model_code drift --baseline-from-endpoint ...` over the
  last `driftWindowHours` of capture). Why Scheduler + a processing job rather than a Model Monitor
  schedule: the job resolves the baseline of the package the endpoint serves *at run time*, so a
  deployment never leaves monitoring comparing against the previous model's baseline, and the
  job runs the same entrypoint as local mode with our own arguments and metrics. (Model Monitor
  takes its baseline from the schedule's definition, fixed at deploy time.)
- The job publishes `DriftDetected` (namespace `mlops-stack/<stack>`, dimension Endpoint); an alarm
  fires on M of N datapoints (`driftAlarmDatapoints` of `driftAlarmEvaluationPeriods`; missing data
  does not breach) and notifies the alarm topic.
- Quality job (with `qualitySchedule`): the same kind of scheduled processing job runs
  `python -m model_code quality --model-from-endpoint ...`: labels uploaded under the data bucket's
  `ground-truth/yyyy/mm/dd/hh/` joined to the capture by inference id, scored by the model the
  endpoint serves now, for the window whose labels are due (`qualityLabelDelayHours` after it ends).
  It publishes `PrimaryMetric` (dimensions Endpoint, Metric); an alarm fires when M of N runs score
  worse than `qualityMinMetric` (else the registration bar) in the metric's direction.
- EventBridge rules start the pipeline: on the drift or quality alarm entering ALARM (Trigger=drift,
  Trigger=quality), at `retrainSchedule` (Trigger=schedule, when set) and on
  new objects under the data bucket's `raw/` prefix (Trigger=new-data, InputDataUri=raw/). The
  pipeline's first step (CooldownGuard) lets at most one automatic retrain through per
  `retrainCooldownHours`. The rules' role may only start this pipeline.
- Model package approval changes of the stack's group notify the alarm topic (a CI deploy can
  subscribe to the same event).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.components.access_policies import (
    forwarder_policy,
    scheduler_policy,
    service_trust_policy,
    trigger_policy,
)
from infra.components.network import Network, vpc_of
from mlops.naming import RAW_PREFIX, Arns, Names
from mlops.settings import StackSettings
from pipelines.monitoring import drift_job_request, quality_job_request

DRIFT, QUALITY = "drift", "quality"  # the alarm kinds, also the pipeline's Trigger values they start
ALARM_EVENT = ("aws.cloudwatch", "CloudWatch Alarm State Change")
DRIFT_METRIC = "DriftDetected"
QUALITY_METRIC = "PrimaryMetric"
"""What the quality job publishes (model_code/quality/job.py), dimensions Endpoint and Metric."""


@dataclass(frozen=True)
class MonitoringArgs:
    settings: StackSettings  # the drift job's request is built from them (pipelines/monitoring.py)
    names: Names
    pipeline_name: str
    pipeline_arn: pulumi.Input[str] | None  # None: the stack only serves (prod); its alarms retrain elsewhere
    model_package_group: str
    data_bucket: str
    execution_role_arn: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    alarm_topic_arn: pulumi.Input[str] | None
    tags: dict[str, str]
    boundary_arn: pulumi.Input[str]  # the workload boundary every role here carries (infra/components/boundary.py)
    # Drift monitoring needs an endpoint and an image; without them only ingestion is declared.
    endpoint_name: str = ""
    # A serving stack without the pipeline: the bus where its alarms start the pipeline of the stack that
    # registered its model (prod -> dev's `retrain-from-<prod account>` bus), or "" (the alarms only notify).
    retrain_bus_arn: str = ""
    # A pipeline stack: accounts whose alarms may start its pipeline, one event bus each (dev: prod's).
    retrain_event_accounts: tuple[str, ...] = ()
    metrics_namespace: str = ""
    drift_schedule: str = "cron(0 * ? * * *)"
    drift_window_hours: int = 1
    alarm_datapoints: int = 2
    alarm_evaluation_periods: int = 3
    network: Network | None = None  # the stack's VPC: the drift and quality jobs run in it


def retrain_bus_policy(bus_arn: str, account: str) -> dict:
    """Exactly `account` may put CloudWatch alarm state changes on the bus; nothing else reaches it."""
    source, detail_type = ALARM_EVENT
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AlarmsOfOneAccount",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                "Action": "events:PutEvents",
                "Resource": bus_arn,
                "Condition": {
                    "ForAllValues:StringEquals": {"events:source": [source]},
                    "StringEquals": {"events:detail-type": detail_type},
                },
            }
        ],
    }


def forwarded_alarm_pattern(account: str, kind: str) -> dict:
    """A `kind` alarm of `account` entering ALARM: the stack there names it `<project>-<stack>-<kind>`."""
    source, detail_type = ALARM_EVENT
    return {
        "source": [source],
        "detail-type": [detail_type],
        "account": [account],
        "detail": {"alarmName": [{"suffix": f"-{kind}"}], "state": {"value": ["ALARM"]}},
    }


class Monitoring(pulumi.ComponentResource):
    drift_alarm_name: str | None
    quality_alarm_name: str | None

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops-stack:monitoring:Monitoring", name, None, opts)
        self.drift_alarm_name = None
        self.quality_alarm_name = None
        self.scheduler_role_arn: pulumi.Output[str] | None = None  # with the scheduled jobs (the batch schedule's too)
        if args.alarm_topic_arn is not None:
            self._topic_policy(name, args, args.alarm_topic_arn)
        self._retrain = self._forward_to_bus(name, args) if args.pipeline_arn is None else \
            self._pipeline_triggers(name, args, args.pipeline_arn)
        if args.endpoint_name and args.settings.monitoring_image_uri and args.alarm_topic_arn is not None:
            self._scheduled_jobs(name, args)
        self.register_outputs({"driftAlarmName": self.drift_alarm_name, "qualityAlarmName": self.quality_alarm_name})

    def _topic_policy(self, name: str, args: MonitoringArgs, topic_arn: pulumi.Input[str]) -> None:
        """CloudWatch alarms and EventBridge rules of this account may publish to the alarm topic (EventBridge
        needs the topic policy's leave: approval changes, failed batch jobs), in every serving stack."""
        child = pulumi.ResourceOptions(parent=self)
        account = args.names.account_id
        aws.sns.TopicPolicy(
            f"{name}-topic-policy",
            arn=topic_arn,
            policy=pulumi.Output.from_input(topic_arn).apply(
                lambda topic: json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Sid": "AlarmsAndEventsPublish",
                                "Effect": "Allow",
                                "Principal": {"Service": ["cloudwatch.amazonaws.com", "events.amazonaws.com"]},
                                "Action": "sns:Publish",
                                "Resource": topic,
                                "Condition": {"StringEquals": {"aws:SourceAccount": account}},
                            }
                        ],
                    }
                )
            ),
            opts=child,
        )

    def _pipeline_triggers(self, name: str, args: MonitoringArgs, pipeline_arn: pulumi.Input[str]):
        """The rules that start this stack's pipeline (new data, clock, other accounts' alarms through their
        buses); returns how a rule of this stack's own alarms starts it."""
        child = pulumi.ResourceOptions(parent=self)
        names = args.names
        account = names.account_id
        # EventBridge may start exactly this pipeline, nothing else.
        events_role = aws.iam.Role(
            f"{name}-events-role",
            name=names.role("retrain-trigger"),
            assume_role_policy=json.dumps(service_trust_policy("events.amazonaws.com", account)),
            permissions_boundary=args.boundary_arn,
            tags=args.tags,
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-events-policy",
            role=events_role.name,
            policy=pulumi.Output.from_input(pipeline_arn).apply(lambda arn: json.dumps(trigger_policy([arn]))),
            opts=child,
        )

        def start_pipeline(rule: aws.cloudwatch.EventRule, suffix: str, parameters: dict[str, str],
                           bus: pulumi.Input[str] | None = None) -> None:
            aws.cloudwatch.EventTarget(
                f"{name}-{suffix}-target",
                rule=rule.name,
                event_bus_name=bus,
                arn=pipeline_arn,
                role_arn=events_role.arn,
                sagemaker_pipeline_target=aws.cloudwatch.EventTargetSagemakerPipelineTargetArgs(
                    pipeline_parameter_lists=[
                        aws.cloudwatch.EventTargetSagemakerPipelineTargetPipelineParameterListArgs(name=k, value=v)
                        for k, v in parameters.items()
                    ]
                ),
                opts=child,
            )

        # New data: S3 sends object events to EventBridge; objects under raw/ start a retrain on raw/.
        aws.s3.BucketNotification(f"{name}-data-events", bucket=args.data_bucket, eventbridge=True, opts=child)
        new_data = aws.cloudwatch.EventRule(
            f"{name}-new-data-rule",
            name=names.resource("new-data", "events"),
            description=f"New objects under s3://{args.data_bucket}/{RAW_PREFIX} retrain {args.pipeline_name}",
            event_pattern=json.dumps(
                {
                    "source": ["aws.s3"],
                    "detail-type": ["Object Created"],
                    "detail": {"bucket": {"name": [args.data_bucket]}, "object": {"key": [{"prefix": RAW_PREFIX}]}},
                },
                sort_keys=True,
            ),
            tags=args.tags,
            opts=child,
        )
        start_pipeline(
            new_data, "new-data", {"Trigger": "new-data", "InputDataUri": f"s3://{args.data_bucket}/{RAW_PREFIX}"}
        )

        if args.settings.retrain_schedule:  # a clock, behind the same cooldown (the pipeline's first step)
            scheduled = aws.cloudwatch.EventRule(
                f"{name}-schedule-rule",
                name=names.resource("scheduled-retrain", "events"),
                description=f"Retrain {args.pipeline_name} at {args.settings.retrain_schedule}",
                schedule_expression=args.settings.retrain_schedule,
                tags=args.tags,
                opts=child,
            )
            start_pipeline(scheduled, "schedule", {"Trigger": "schedule"})

        if args.alarm_topic_arn is not None:
            approvals = aws.cloudwatch.EventRule(
                f"{name}-approval-rule",
                name=names.resource("model-approvals", "events"),
                description=f"Approval changes of model packages in {args.model_package_group}",
                event_pattern=json.dumps(
                    {
                        "source": ["aws.sagemaker"],
                        "detail-type": ["SageMaker Model Package State Change"],
                        "detail": {
                            "ModelPackageGroupName": [args.model_package_group],
                            "ModelApprovalStatus": ["Approved", "Rejected"],
                        },
                    },
                    sort_keys=True,
                ),
                tags=args.tags,
                opts=child,
            )
            aws.cloudwatch.EventTarget(
                f"{name}-approval-target", rule=approvals.name, arn=args.alarm_topic_arn, opts=child
            )

        for consumer in args.retrain_event_accounts:
            self._retrain_bus(name, args, consumer, start_pipeline)
        return lambda rule, kind: start_pipeline(rule, kind, {"Trigger": kind})

    def _retrain_bus(self, name: str, args: MonitoringArgs, consumer: str, start_pipeline) -> None:
        """The bus where `consumer`'s drift and quality alarms arrive (its rules forward their state changes):
        its policy admits exactly that account and CloudWatch's alarm events; each alarm kind retrains with its
        Trigger, behind the pipeline's cooldown like this stack's own alarms."""
        child = pulumi.ResourceOptions(parent=self)
        names = args.names
        bus = aws.cloudwatch.EventBus(
            f"{name}-retrain-bus-{consumer}",
            name=names.retrain_bus(consumer),
            description=f"Drift and quality alarms of account {consumer} retrain {args.pipeline_name}",
            kms_key_identifier=args.kms_key_arn,
            tags=args.tags,
            opts=child,
        )
        aws.cloudwatch.EventBusPolicy(
            f"{name}-retrain-bus-policy-{consumer}",
            event_bus_name=bus.name,
            policy=bus.arn.apply(lambda arn: json.dumps(retrain_bus_policy(arn, consumer), sort_keys=True)),
            opts=child,
        )
        for kind in (DRIFT, QUALITY):
            rule = aws.cloudwatch.EventRule(
                f"{name}-{kind}-from-{consumer}-rule",
                name=names.resource(f"{kind}-from-{consumer}", "events"),
                description=f"{kind} alarms of account {consumer} entering ALARM retrain {args.pipeline_name}",
                event_bus_name=bus.name,
                event_pattern=json.dumps(forwarded_alarm_pattern(consumer, kind), sort_keys=True),
                tags=args.tags,
                opts=child,
            )
            start_pipeline(rule, f"{kind}-from-{consumer}", {"Trigger": kind}, bus=bus.name)

    def _forward_to_bus(self, name: str, args: MonitoringArgs):
        """How a rule of this stack's alarms reaches the pipeline of another account: a target on its retrain
        bus, sent with a role that may put events on that bus only. None without a bus: alarms only notify."""
        if not args.retrain_bus_arn:
            return None
        child = pulumi.ResourceOptions(parent=self)
        names = args.names
        forwarder = aws.iam.Role(
            f"{name}-forwarder-role",
            name=names.role("retrain-forwarder"),
            assume_role_policy=json.dumps(service_trust_policy("events.amazonaws.com", names.account_id)),
            permissions_boundary=args.boundary_arn,
            tags=args.tags,
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-forwarder-policy",
            role=forwarder.name,
            policy=json.dumps(forwarder_policy(args.retrain_bus_arn)),
            opts=child,
        )

        def forward(rule: aws.cloudwatch.EventRule, kind: str) -> None:
            aws.cloudwatch.EventTarget(f"{name}-{kind}-target", rule=rule.name, arn=args.retrain_bus_arn,
                                       role_arn=forwarder.arn, opts=child)

        return forward

    def _scheduled_jobs(self, name: str, args: MonitoringArgs) -> None:
        """The drift job and (with a qualitySchedule) the quality job, each on its schedule, each with an M-of-N
        alarm whose ALARM state starts a retrain."""
        child = pulumi.ResourceOptions(parent=self)
        names, settings = args.names, args.settings
        scheduler_role = aws.iam.Role(
            f"{name}-scheduler-role",
            name=names.role("monitor-scheduler"),
            assume_role_policy=json.dumps(service_trust_policy("scheduler.amazonaws.com", names.account_id)),
            permissions_boundary=args.boundary_arn,
            tags=args.tags,
            opts=child,
        )
        jobs = [Arns(names).drift_jobs] + ([Arns(names).quality_jobs] if settings.quality_schedule else [])
        transforms = [Arns(names).batch_jobs] if settings.batch_transform_schedule else None
        aws.iam.RolePolicy(
            f"{name}-scheduler-policy",
            role=scheduler_role.name,
            policy=pulumi.Output.all(args.execution_role_arn, args.kms_key_arn).apply(
                lambda values: json.dumps(scheduler_policy(jobs, values[0], values[1], settings.in_vpc,
                                                           transform_jobs=transforms,
                                                           transform_models=Arns(names).sagemaker("model")))
            ),
            opts=child,
        )
        self.scheduler_role_arn = scheduler_role.arn

        def schedule(kind: str, expression: str, request, description: str) -> None:
            aws.scheduler.Schedule(
                f"{name}-{kind}-schedule",
                name=names.resource(kind, "scheduler"),
                description=description,
                schedule_expression=expression,
                flexible_time_window=aws.scheduler.ScheduleFlexibleTimeWindowArgs(mode="OFF"),
                kms_key_arn=args.kms_key_arn,
                target=aws.scheduler.ScheduleTargetArgs(
                    arn="arn:aws:scheduler:::aws-sdk:sagemaker:createProcessingJob",
                    role_arn=scheduler_role.arn,
                    input=pulumi.Output.all(args.execution_role_arn, args.kms_key_arn, vpc_of(args.network)).apply(
                        lambda values: json.dumps(request(settings, role_arn=values[0], key_arn=values[1],
                                                          vpc=values[2]), sort_keys=True)
                    ),
                    retry_policy=aws.scheduler.ScheduleTargetRetryPolicyArgs(maximum_retry_attempts=2),
                ),
                opts=child,
            )

        def retrain_alarm(kind: str, alarm: dict, description: str) -> str:
            created = aws.cloudwatch.MetricAlarm(
                f"{name}-{kind}-alarm",
                name=names.resource(kind, "cloudwatch"),
                alarm_description=description,
                namespace=args.metrics_namespace,
                treat_missing_data="notBreaching",
                alarm_actions=[args.alarm_topic_arn] if args.alarm_topic_arn is not None else [],
                tags=args.tags,
                opts=child,
                **alarm,
            )
            rule = aws.cloudwatch.EventRule(
                f"{name}-{kind}-rule",
                name=names.resource(f"{kind}-retrain", "events"),
                description=f"The {kind} alarm entering ALARM retrains {args.pipeline_name or 'nothing'}",
                event_pattern=created.arn.apply(
                    lambda arn: json.dumps(
                        {
                            "source": ["aws.cloudwatch"],
                            "detail-type": ["CloudWatch Alarm State Change"],
                            "resources": [arn],
                            "detail": {"state": {"value": ["ALARM"]}},
                        },
                        sort_keys=True,
                    )
                ),
                tags=args.tags,
                opts=child,
            )
            if self._retrain is not None:
                self._retrain(rule, kind)
            return names.resource(kind, "cloudwatch")

        schedule("drift", args.drift_schedule, drift_job_request, f"Drift job on the capture of {args.endpoint_name}")
        self.drift_alarm_name = retrain_alarm(
            "drift",
            {"metric_name": DRIFT_METRIC, "dimensions": {"Endpoint": args.endpoint_name}, "statistic": "Maximum",
             "period": args.drift_window_hours * 3600, "evaluation_periods": args.alarm_evaluation_periods,
             "datapoints_to_alarm": args.alarm_datapoints, "threshold": 1,
             "comparison_operator": "GreaterThanOrEqualToThreshold"},
            f"{args.endpoint_name}: drift in {args.alarm_datapoints} of the last {args.alarm_evaluation_periods} "
            "drift runs; starts a retrain",
        )
        if not settings.quality_schedule:
            return
        problem = settings.problem_declaration()
        schedule("quality", settings.quality_schedule, quality_job_request,
                 f"Quality job: ground truth joined to the capture of {args.endpoint_name}")
        worse = "LessThanThreshold" if problem.direction == "higher" else "GreaterThanThreshold"
        self.quality_alarm_name = retrain_alarm(
            "quality",
            {"metric_name": QUALITY_METRIC,
             "dimensions": {"Endpoint": args.endpoint_name, "Metric": problem.primary_metric},
             "statistic": "Average", "period": settings.quality_window_hours * 3600,
             "evaluation_periods": settings.quality_alarm_evaluation_periods,
             "datapoints_to_alarm": settings.quality_alarm_datapoints, "threshold": settings.quality_bar,
             "comparison_operator": worse},
            f"{args.endpoint_name}: {problem.primary_metric} of labelled traffic worse than {settings.quality_bar} in "
            f"{settings.quality_alarm_datapoints} of the last {settings.quality_alarm_evaluation_periods} quality "
            "runs; starts a retrain",
        )

"""Serving: the real-time endpoint of the stack's approved model, with autoscaling, alarms and a
blue/green canary rollout that rolls itself back when an alarm fires.

- Model: the approved model package (`approvedModelPackageArn`: prod pins it by a reviewed change;
  CI sets dev's to the latest approved package before `pulumi up`). No package: no endpoint, and
  the stack says so in its outputs; nothing else depends on it.
- Endpoint configuration: KMS-encrypted, data capture of requests and responses into the capture
  bucket (KMS), one variant `primary` (blue/green updates need the same variant name).
  Model and configuration names carry a hash of what they contain: a change is a new pair created
  before the old one is deleted, which is how SageMaker updates an endpoint in place.
- Endpoint: blue/green, canary size and baking time from settings, auto-rollback on the alarms.
- Autoscaling: invocations per instance (target tracking) and CPU utilization (target tracking).
- Alarms (1-minute periods, 2 of 3 datapoints): ModelLatency p99, OverheadLatency p99,
  Invocation5XXErrors, Invocation4XXErrors -> an SNS topic encrypted with the stack key; a dashboard.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.components.audit import log_group
from infra.components.endpoint_modes import async_config, async_topics, model_environment, production_variant, scaling
from infra.components.network import Network
from infra.panels import PERIOD_S, MonitoringPanels, cloudwatch_dashboard
from mlops.naming import CAPTURE_PREFIX, VARIANT, Names

EVALUATION_PERIODS = 3
DATAPOINTS_TO_ALARM = 2


@dataclass(frozen=True)
class AlarmSpec:
    suffix: str
    metric: str
    namespace: str
    threshold: float
    description: str
    statistic: str | None = None
    extended_statistic: str | None = None


@dataclass(frozen=True)
class ServingArgs:
    names: Names
    model_package_arn: str
    execution_role_arn: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    capture_bucket: str
    alarm_email: str
    instance_type: str
    min_capacity: int
    max_capacity: int
    target_invocations: int
    cpu_target_percent: int
    data_capture_percent: int
    canary_traffic_percent: int
    canary_wait_seconds: int
    latency_p99_ms: int
    overhead_latency_p99_ms: int
    error_5xx_count: int
    error_4xx_count: int
    tags: dict[str, str]
    monitoring: MonitoringPanels | None = None
    """The drift and quality jobs' metrics, when the stack runs them (infra/components/monitoring.py)."""
    network: Network | None = None  # the stack's VPC: the model's instances run in it
    log_retention_days: int = 90  # of the endpoint's log group (settings: logRetentionDays)
    protect: bool = False
    mode: str = "realtime"  # endpointMode: realtime | serverless | async (infra/components/endpoint_modes.py)
    serverless_memory_mb: int = 2048
    serverless_max_concurrency: int = 5
    async_max_concurrent_invocations: int = 4
    async_backlog_per_instance: int = 5
    data_bucket: str = ""  # where an async endpoint's answers land
    runtime: str = "sklearn"  # serveRuntime: what the container scores with (MLOPS_SERVE_RUNTIME)

    def content_hash(self) -> str:
        """Names of model and config change exactly when what they contain changes."""
        decisive = [
            self.model_package_arn,
            self.instance_type,
            self.min_capacity,
            self.data_capture_percent,
            self.capture_bucket,
        ]
        if self.mode != "realtime":  # realtime stacks keep the names they had before the modes
            decisive += [self.mode, self.serverless_memory_mb, self.serverless_max_concurrency,
                         self.async_max_concurrent_invocations]
        if self.runtime != "sklearn":  # a model's environment cannot change in place either
            decisive.append(self.runtime)
        if self.network is not None:  # a model's VpcConfig cannot change in place: a new network is a new model
            decisive.append(self.network.key)
        return hashlib.sha256(json.dumps(decisive).encode()).hexdigest()[:8]

    def alarms(self) -> list[AlarmSpec]:
        return [
            AlarmSpec(
                "model-latency-p99",
                "ModelLatency",
                "AWS/SageMaker",
                self.latency_p99_ms * 1000.0,
                f"ModelLatency p99 above {self.latency_p99_ms} ms",
                extended_statistic="p99",
            ),
            AlarmSpec(
                "overhead-latency-p99",
                "OverheadLatency",
                "AWS/SageMaker",
                self.overhead_latency_p99_ms * 1000.0,
                f"OverheadLatency p99 above {self.overhead_latency_p99_ms} ms",
                extended_statistic="p99",
            ),
            AlarmSpec(
                "5xx-errors",
                "Invocation5XXErrors",
                "AWS/SageMaker",
                float(self.error_5xx_count),
                f"{self.error_5xx_count} or more 5xx responses a minute",
                statistic="Sum",
            ),
            AlarmSpec(
                "4xx-errors",
                "Invocation4XXErrors",
                "AWS/SageMaker",
                float(self.error_4xx_count),
                f"{self.error_4xx_count} or more 4xx responses a minute",
                statistic="Sum",
            ),
        ]


class Serving(pulumi.ComponentResource):
    endpoint_name: str
    endpoint_config_name: str
    model_name: pulumi.Output[str]
    alarm_topic_arn: pulumi.Output[str]

    def __init__(self, name: str, args: ServingArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops-stack:serving:Serving", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        names = args.names
        endpoint_name = names.endpoint
        versioned = names.resource(args.content_hash(), "sagemaker")

        topic = aws.sns.Topic(
            f"{name}-alarm-topic",
            name=names.alarm_topic,
            kms_master_key_id=args.kms_key_arn,
            tags=args.tags,
            opts=child,
        )
        if args.alarm_email:
            aws.sns.TopicSubscription(
                f"{name}-alarm-email", topic=topic.arn, protocol="email", endpoint=args.alarm_email, opts=child
            )

        serverless = args.mode == "serverless"  # no VPC, no network isolation, no SageMaker capture there
        model = aws.sagemaker.Model(
            f"{name}-model",
            name=versioned,
            execution_role_arn=args.execution_role_arn,
            primary_container=aws.sagemaker.ModelPrimaryContainerArgs(
                model_package_name=args.model_package_arn,
                environment=model_environment(args.mode, names, args.capture_bucket, args.data_capture_percent,
                                              args.runtime)),
            enable_network_isolation=not serverless,
            vpc_config=aws.sagemaker.ModelVpcConfigArgs(subnets=args.network.subnet_ids,
                                                        security_group_ids=args.network.security_group_ids)
            if args.network is not None else None,
            tags=args.tags,
            opts=child,
        )
        capture = aws.sagemaker.EndpointConfigurationDataCaptureConfigArgs(
            enable_capture=True,
            initial_sampling_percentage=args.data_capture_percent,
            destination_s3_uri=f"s3://{args.capture_bucket}/{CAPTURE_PREFIX}",
            kms_key_id=args.kms_key_arn,
            capture_options=[
                aws.sagemaker.EndpointConfigurationDataCaptureConfigCaptureOptionArgs(capture_mode="Input"),
                aws.sagemaker.EndpointConfigurationDataCaptureConfigCaptureOptionArgs(capture_mode="Output"),
            ],
            capture_content_type_header=aws.sagemaker.EndpointConfigurationDataCaptureConfigCaptureContentTypeHeaderArgs(
                csv_content_types=["text/csv"], json_content_types=["application/json"]
            ),
        )
        topics = async_topics(name, names, args.kms_key_arn, args.tags, self) if args.mode == "async" else None
        config = aws.sagemaker.EndpointConfiguration(
            f"{name}-endpoint-config",
            name=versioned,
            kms_key_arn=None if serverless else args.kms_key_arn,  # serverless has no instance storage to encrypt
            production_variants=[production_variant(args.mode, model.name, args.instance_type, args.min_capacity,
                                                    args.serverless_memory_mb, args.serverless_max_concurrency)],
            data_capture_config=None if serverless else capture,
            async_inference_config=async_config(args.data_bucket, args.kms_key_arn, topics,
                                                args.async_max_concurrent_invocations) if topics else None,
            tags=args.tags,
            opts=child,
        )

        dimensions = {"EndpointName": endpoint_name, "VariantName": VARIANT}
        alarm_names = []
        for spec in args.alarms():
            alarm = aws.cloudwatch.MetricAlarm(
                f"{name}-{spec.suffix}",
                name=names.resource(spec.suffix, "cloudwatch"),
                alarm_description=f"{endpoint_name}: {spec.description}",
                namespace=spec.namespace,
                metric_name=spec.metric,
                dimensions=dimensions,
                statistic=spec.statistic,
                extended_statistic=spec.extended_statistic,
                period=PERIOD_S,
                evaluation_periods=EVALUATION_PERIODS,
                datapoints_to_alarm=DATAPOINTS_TO_ALARM,
                threshold=spec.threshold,
                comparison_operator="GreaterThanOrEqualToThreshold",
                treat_missing_data="notBreaching",
                alarm_actions=[topic.arn],
                ok_actions=[topic.arn],
                tags=args.tags,
                opts=child,
            )
            alarm_names.append(alarm.name)

        # Declared before the endpoint: SageMaker would create it on the endpoint's first log, unencrypted and kept
        # forever, and the declaration would then fail on the existing group.
        logs = log_group(names.endpoint_log_group, f"{name}-endpoint-logs", retention_days=args.log_retention_days,
                         protect=args.protect, key_arn=args.kms_key_arn, tags=args.tags, parent=self)
        endpoint = aws.sagemaker.Endpoint(
            f"{name}-endpoint",
            name=endpoint_name,
            endpoint_config_name=config.name,
            deployment_config=aws.sagemaker.EndpointDeploymentConfigArgs(
                blue_green_update_policy=aws.sagemaker.EndpointDeploymentConfigBlueGreenUpdatePolicyArgs(
                    traffic_routing_configuration=(
                        aws.sagemaker.EndpointDeploymentConfigBlueGreenUpdatePolicyTrafficRoutingConfigurationArgs(
                            type="CANARY",
                            wait_interval_in_seconds=args.canary_wait_seconds,
                            canary_size=aws.sagemaker.EndpointDeploymentConfigBlueGreenUpdatePolicyTrafficRoutingConfigurationCanarySizeArgs(
                                type="CAPACITY_PERCENT", value=args.canary_traffic_percent
                            ),
                        )
                    ),
                    termination_wait_in_seconds=300,
                    maximum_execution_timeout_in_seconds=3600,
                ),
                auto_rollback_configuration=aws.sagemaker.EndpointDeploymentConfigAutoRollbackConfigurationArgs(
                    alarms=[
                        aws.sagemaker.EndpointDeploymentConfigAutoRollbackConfigurationAlarmArgs(alarm_name=n)
                        for n in alarm_names
                    ],
                ),
            ),
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[logs]),
        )

        scaling(name, args.mode, names, endpoint, min_capacity=args.min_capacity, max_capacity=args.max_capacity,
                target_invocations=args.target_invocations, cpu_target_percent=args.cpu_target_percent,
                backlog_per_instance=args.async_backlog_per_instance, tags=args.tags, parent=self)

        aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            dashboard_name=endpoint_name,
            dashboard_body=cloudwatch_dashboard(endpoint_name, names.region, args.monitoring),
            opts=child,
        )

        self.endpoint_name = endpoint_name
        self.endpoint_config_name = versioned
        self.model_name = model.name  # the batch schedule's transform jobs run it too
        self.alarm_topic_arn = topic.arn
        self.register_outputs(
            {"endpointName": self.endpoint_name, "endpointConfigName": versioned, "alarmTopicArn": self.alarm_topic_arn}
        )

"""What each `endpointMode` changes in serving (infra/components/serving.py): the model, its variant, and scaling.

- realtime: instances around the clock (`endpointMinCapacity` to `endpointMaxCapacity`), network-isolated in the
  stack's VPC, SageMaker's data capture, target tracking on invocations per instance and CPU.
- serverless: no instances (`serverlessMemoryMb`, `serverlessMaxConcurrency`; SageMaker scales it and bills by the
  request). SageMaker offers serverless endpoints neither a VPC nor network isolation nor data capture (the settings
  refuse serverless in a VPC stack), so the container captures for itself: serve writes SageMaker's capture files
  and uploads them to the capture bucket in SageMaker's layout (MLOPS_CAPTURE_S3_URI), where the drift and quality
  jobs read them as ever. Blue/green canaries and the alarm rollback work as for realtime.
- async: requests queued from S3 (`s3://<data>/async/input/...`, InvokeEndpointAsync), answers written to
  `s3://<data>/async/output/` (failures to `async/failures/`) under the stack key, each announced on an SNS topic
  (`...-async-success`, `...-async-errors`, encrypted with the stack key); data capture as for realtime. It scales to
  zero instances: target tracking keeps `asyncBacklogPerInstance` queued requests per instance, and a step policy on
  `HasBacklogWithoutCapacity` starts the first instance when requests wait with none.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

from mlops.naming import ASYNC_PREFIX, CAPTURE_PREFIX, VARIANT, Names

SERVERLESS_CAPTURE_DIR = "/tmp/capture"  # the container's writable disk; files leave it once uploaded


def model_environment(mode: str, names: Names, capture_bucket: str, capture_percent: int,
                      runtime: str = "sklearn") -> dict[str, str] | None:
    """The serving container's variables: its runtime when not scikit-learn's; a serverless one delivers its own
    data capture."""
    environment = {"MLOPS_SERVE_RUNTIME": runtime} if runtime != "sklearn" else {}
    if mode != "serverless":
        return environment or None
    return environment | {
        "MLOPS_CAPTURE_DIR": SERVERLESS_CAPTURE_DIR,
        "MLOPS_CAPTURE_S3_URI": f"s3://{capture_bucket}/{CAPTURE_PREFIX}",
        "MLOPS_CAPTURE_ENDPOINT_NAME": names.endpoint,
        "MLOPS_CAPTURE_VARIANT_NAME": VARIANT,
        "MLOPS_CAPTURE_SAMPLING_PERCENTAGE": str(float(capture_percent)),
        "AWS_DEFAULT_REGION": names.region,
    }


Variant = aws.sagemaker.EndpointConfigurationProductionVariantArgs
_scaling = aws.appautoscaling  # its argument classes' names are long


def production_variant(mode: str, model_name: pulumi.Input[str], instance_type: str, min_capacity: int,
                       memory_mb: int, max_concurrency: int) -> Variant:
    if mode == "serverless":
        return aws.sagemaker.EndpointConfigurationProductionVariantArgs(
            variant_name=VARIANT, model_name=model_name,
            serverless_config=aws.sagemaker.EndpointConfigurationProductionVariantServerlessConfigArgs(
                memory_size_in_mb=memory_mb, max_concurrency=max_concurrency),
        )
    # async starts on one instance (a configuration needs one); its scaling then goes down to zero
    return aws.sagemaker.EndpointConfigurationProductionVariantArgs(
        variant_name=VARIANT, model_name=model_name, instance_type=instance_type,
        initial_instance_count=1 if mode == "async" else min_capacity,
    )


def async_topics(name: str, names: Names, key_arn: pulumi.Input[str], tags: dict[str, str],
                 parent: pulumi.Resource) -> dict[str, aws.sns.Topic]:
    return {outcome: aws.sns.Topic(f"{name}-async-{outcome}", name=names.async_topic(outcome),
                                   kms_master_key_id=key_arn, tags=tags, opts=pulumi.ResourceOptions(parent=parent))
            for outcome in ("success", "errors")}


def async_config(data_bucket: str, key_arn: pulumi.Input[str], topics: dict[str, aws.sns.Topic],
                 max_concurrent: int) -> aws.sagemaker.EndpointConfigurationAsyncInferenceConfigArgs:
    output = aws.sagemaker.EndpointConfigurationAsyncInferenceConfigOutputConfigArgs
    return aws.sagemaker.EndpointConfigurationAsyncInferenceConfigArgs(
        output_config=output(
            s3_output_path=f"s3://{data_bucket}/{ASYNC_PREFIX}output/",
            s3_failure_path=f"s3://{data_bucket}/{ASYNC_PREFIX}failures/",
            kms_key_id=key_arn,
            notification_config=aws.sagemaker.EndpointConfigurationAsyncInferenceConfigOutputConfigNotificationConfigArgs(
                success_topic=topics["success"].arn, error_topic=topics["errors"].arn,
                include_inference_response_ins=["SUCCESS_NOTIFICATION_TOPIC", "ERROR_NOTIFICATION_TOPIC"]),
        ),
        client_config=aws.sagemaker.EndpointConfigurationAsyncInferenceConfigClientConfigArgs(
            max_concurrent_invocations_per_instance=max_concurrent),
    )


def _tracking(name: str, policy_name: str, target: aws.appautoscaling.Target, value: float, child: Any,
              predefined: str | None = None, metric: tuple[str, str, str] | None = None,
              dimensions: dict[str, str] | None = None) -> None:
    """A target tracking policy on a predefined metric, or on (namespace, metric, statistic) with `dimensions`."""
    config = _scaling.PolicyTargetTrackingScalingPolicyConfigurationArgs
    custom = _scaling.PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationArgs
    dimension = _scaling.PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationDimensionArgs
    aws.appautoscaling.Policy(
        name, name=policy_name, policy_type="TargetTrackingScaling", service_namespace=target.service_namespace,
        resource_id=target.resource_id, scalable_dimension=target.scalable_dimension,
        target_tracking_scaling_policy_configuration=config(
            target_value=value,
            predefined_metric_specification=aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecificationArgs(
                predefined_metric_type=predefined) if predefined else None,
            customized_metric_specification=custom(
                namespace=metric[0], metric_name=metric[1], statistic=metric[2],
                dimensions=[dimension(name=k, value=v) for k, v in (dimensions or {}).items()]) if metric else None,
            scale_in_cooldown=300, scale_out_cooldown=60,
        ),
        opts=child,
    )


def scaling(name: str, mode: str, names: Names, endpoint: aws.sagemaker.Endpoint, *, min_capacity: int,
            max_capacity: int, target_invocations: int, cpu_target_percent: int, backlog_per_instance: int,
            tags: dict[str, str], parent: pulumi.Resource) -> None:
    """Application Auto Scaling of the variant: none for serverless (SageMaker scales it)."""
    if mode == "serverless":
        return
    child = pulumi.ResourceOptions(parent=parent)
    target = aws.appautoscaling.Target(
        f"{name}-scaling-target", service_namespace="sagemaker",
        resource_id=f"endpoint/{names.endpoint}/variant/{VARIANT}",
        scalable_dimension="sagemaker:variant:DesiredInstanceCount",
        min_capacity=0 if mode == "async" else min_capacity, max_capacity=max_capacity, tags=tags,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[endpoint]),
    )
    if mode == "realtime":
        _tracking(f"{name}-scale-on-invocations", names.resource("invocations", "autoscaling-policy"), target,
                  float(target_invocations), child, predefined="SageMakerVariantInvocationsPerInstance")
        _tracking(f"{name}-scale-on-cpu", names.resource("cpu", "autoscaling-policy"), target,
                  float(cpu_target_percent), child, metric=("/aws/sagemaker/Endpoints", "CPUUtilization", "Average"),
                  dimensions={"EndpointName": names.endpoint, "VariantName": VARIANT})
        return
    _tracking(f"{name}-scale-on-backlog", names.resource("backlog", "autoscaling-policy"), target,
              float(backlog_per_instance), child,
              metric=("AWS/SageMaker", "ApproximateBacklogSizePerInstance", "Average"),
              dimensions={"EndpointName": names.endpoint})
    # Target tracking cannot leave zero instances (no instance, no per-instance metric): a step adds the first.
    step = aws.appautoscaling.Policy(
        f"{name}-scale-from-zero", name=names.resource("from-zero", "autoscaling-policy"), policy_type="StepScaling",
        service_namespace=target.service_namespace, resource_id=target.resource_id,
        scalable_dimension=target.scalable_dimension,
        step_scaling_policy_configuration=aws.appautoscaling.PolicyStepScalingPolicyConfigurationArgs(
            adjustment_type="ChangeInCapacity", cooldown=300, metric_aggregation_type="Average",
            step_adjustments=[aws.appautoscaling.PolicyStepScalingPolicyConfigurationStepAdjustmentArgs(
                metric_interval_lower_bound="0", scaling_adjustment=1)],
        ),
        opts=child,
    )
    aws.cloudwatch.MetricAlarm(
        f"{name}-backlog-without-capacity", name=names.resource("backlog-without-capacity", "cloudwatch"),
        alarm_description=f"{names.endpoint}: requests wait with no instance; starts one",
        namespace="AWS/SageMaker", metric_name="HasBacklogWithoutCapacity", dimensions={"EndpointName": names.endpoint},
        statistic="Average", period=60, evaluation_periods=2, datapoints_to_alarm=2, threshold=1,
        comparison_operator="GreaterThanOrEqualToThreshold", treat_missing_data="missing",
        alarm_actions=[step.arn], tags=tags, opts=child,
    )

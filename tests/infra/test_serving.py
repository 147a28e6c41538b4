"""Serving: the endpoint of the pinned package, its rollout, autoscaling and alarms, per stack."""

from __future__ import annotations

import json

import pytest

from mlops.naming import Names
from mlops.plan import Plan, plan_stack_file
from mlops.settings import StackSettings, stack_file, stack_names
from tests.infra.helpers import image_of

PACKAGE = "arn:aws:sagemaker:eu-west-1:111111111111:model-package/mlops-stack-dev/7"
ALARMED_METRICS = {"ModelLatency", "OverheadLatency", "Invocation5XXErrors", "Invocation4XXErrors"}


@pytest.fixture(scope="module")
def served() -> dict[str, Plan]:
    """Plans with a pinned package, as after `mlops release promote` (or CI's dev resolution)."""
    return {name: plan_stack_file(stack_file(name), {"mlops-stack:approvedModelPackageArn": PACKAGE,
                                                     "mlops-stack:approvedModelImageUri": image_of(PACKAGE)})
            for name in stack_names()}


def _one(plan: Plan, type_token: str):
    [resource] = plan.of_type(type_token)
    return resource.inputs


def test_no_endpoint_without_an_approved_model(plan: Plan) -> None:
    assert not [r for r in plan.resources if r.type.startswith(("aws:sagemaker/endpoint", "aws:appautoscaling"))]
    assert plan.outputs["endpointName"] == ""
    assert "no approved model package" in plan.outputs["endpointStatus"]


def test_model_and_config_from_the_pinned_package(served, settings: StackSettings) -> None:
    plan = served[settings.stack]
    names = Names.of(settings)
    model = _one(plan, "aws:sagemaker/model:Model")
    assert model["primaryContainer"] == {"modelPackageName": PACKAGE}
    assert model["executionRoleArn"] == plan.outputs["executionRoleArn"]
    assert model["enableNetworkIsolation"] is True
    config = _one(plan, "aws:sagemaker/endpointConfiguration:EndpointConfiguration")
    assert config["name"] == model["name"] == plan.outputs["endpointConfigName"]
    assert config["name"].startswith(f"{names.endpoint}-")
    assert config["kmsKeyArn"] == plan.outputs["kmsKeyArn"]
    [variant] = config["productionVariants"]
    assert variant == {"variantName": "primary", "modelName": model["name"],
                       "instanceType": settings.endpoint_instance_type,
                       "initialInstanceCount": settings.endpoint_min_capacity}
    capture = config["dataCaptureConfig"]
    assert capture["enableCapture"] is True
    assert capture["initialSamplingPercentage"] == settings.data_capture_percent
    assert capture["destinationS3Uri"] == f"s3://{names.bucket('capture')}/datacapture"
    assert capture["kmsKeyId"] == plan.outputs["kmsKeyArn"]
    assert {o["captureMode"] for o in capture["captureOptions"]} == {"Input", "Output"}


def test_config_name_changes_with_its_content(served) -> None:
    other = plan_stack_file(stack_file("dev"), {"mlops-stack:approvedModelPackageArn": PACKAGE[:-1] + "8",
                                                "mlops-stack:approvedModelImageUri": image_of(PACKAGE)})
    assert other.outputs["endpointConfigName"] != served["dev"].outputs["endpointConfigName"]


def test_blue_green_canary_with_auto_rollback_on_every_alarm(served, settings: StackSettings) -> None:
    plan = served[settings.stack]
    endpoint = _one(plan, "aws:sagemaker/endpoint:Endpoint")
    assert endpoint["name"] == Names.of(settings).endpoint
    policy = endpoint["deploymentConfig"]["blueGreenUpdatePolicy"]
    routing = policy["trafficRoutingConfiguration"]
    assert routing["type"] == "CANARY"
    assert routing["canarySize"] == {"type": "CAPACITY_PERCENT", "value": settings.canary_traffic_percent}
    assert routing["waitIntervalInSeconds"] == settings.canary_wait_seconds
    # the endpoint's own alarms roll it back; drift and quality alarms retrain (tests/infra/test_monitoring.py)
    alarms = {a.inputs["name"] for a in plan.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
              if a.inputs["namespace"] == "AWS/SageMaker"}
    rollback = {a["alarmName"] for a in endpoint["deploymentConfig"]["autoRollbackConfiguration"]["alarms"]}
    assert rollback == alarms and len(alarms) == 4


def test_alarms_with_endpoint_dimensions_and_topic_actions(served, settings: StackSettings) -> None:
    plan = served[settings.stack]
    names = Names.of(settings)
    topic = _one(plan, "aws:sns/topic:Topic")
    assert topic["kmsMasterKeyId"] == plan.outputs["kmsKeyArn"]
    alarms = {a.inputs["metricName"]: a.inputs for a in plan.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
              if a.inputs["namespace"] == "AWS/SageMaker"}
    assert set(alarms) == ALARMED_METRICS
    for alarm in alarms.values():
        assert alarm["dimensions"] == {"EndpointName": names.endpoint, "VariantName": "primary"}
        assert alarm["alarmActions"] == [plan.outputs["alarmTopicArn"]]
        assert (alarm["evaluationPeriods"], alarm["datapointsToAlarm"]) == (3, 2)
    assert alarms["ModelLatency"]["extendedStatistic"] == "p99"
    assert alarms["ModelLatency"]["threshold"] == settings.latency_alarm_p99_ms * 1000
    assert alarms["Invocation5XXErrors"]["threshold"] == settings.error_5xx_alarm_count
    assert alarms["Invocation4XXErrors"]["threshold"] == settings.error_4xx_alarm_count
    subscriptions = plan.of_type("aws:sns/topicSubscription:TopicSubscription")
    assert [s.inputs["endpoint"] for s in subscriptions] == ([settings.alarm_email] if settings.alarm_email else [])
    dashboard = json.loads(_one(plan, "aws:cloudwatch/dashboard:Dashboard")["dashboardBody"])
    assert len(dashboard["widgets"]) == 7  # 4 of the endpoint, drift and 2 of quality (test_monitoring.py)


def test_autoscaling_on_invocations_and_cpu(served, settings: StackSettings) -> None:
    plan = served[settings.stack]
    target = _one(plan, "aws:appautoscaling/target:Target")
    assert target["resourceId"] == f"endpoint/{Names.of(settings).endpoint}/variant/primary"
    assert target["scalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    assert (target["minCapacity"], target["maxCapacity"]) == (settings.endpoint_min_capacity,
                                                             settings.endpoint_max_capacity)
    policies = {p.inputs["name"].rsplit("-", 1)[1]: p.inputs["targetTrackingScalingPolicyConfiguration"]
                for p in plan.of_type("aws:appautoscaling/policy:Policy")}
    assert policies["invocations"]["predefinedMetricSpecification"] == {
        "predefinedMetricType": "SageMakerVariantInvocationsPerInstance"}
    assert policies["invocations"]["targetValue"] == settings.endpoint_target_invocations
    assert policies["cpu"]["customizedMetricSpecification"]["metricName"] == "CPUUtilization"
    assert policies["cpu"]["targetValue"] == settings.endpoint_cpu_target_percent


def test_served_plans_pass_the_policy_pack(served) -> None:
    from policies.offline import evaluate

    for plan in served.values():
        assert evaluate([r.as_json() for r in plan.resources]) == []

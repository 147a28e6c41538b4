"""`endpointMode` (infra/components/endpoint_modes.py): what a serverless and an async endpoint declare, that their
monitoring still gets its data, and that the deploy role can create them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlops.naming import ASYNC_PREFIX, CAPTURE_PREFIX, Names
from mlops.plan import Plan, plan_stack_file
from mlops.settings import SettingsError, load_stack, load_stack_file, stack_file
from model_code import env
from policies.offline import evaluate
from tests.infra.helpers import image_of
from tests.infra.test_permissions import provider_calls_denied

PACKAGE = "arn:aws:sagemaker:eu-west-1:111111111111:model-package/mlops-stack-dev/3"
SERVED = {"mlops-stack:imageTag": "0123abc", "mlops-stack:approvedModelPackageArn": PACKAGE}


def dev(mode: str) -> Plan:
    return plan_stack_file(stack_file("dev"), {**SERVED, "mlops-stack:endpointMode": mode})


def _one(plan: Plan, type_token: str) -> dict[str, Any]:
    (found,) = plan.of_type(type_token)
    return found.inputs


@pytest.fixture(scope="module")
def serverless() -> Plan:
    return dev("serverless")


@pytest.fixture(scope="module")
def asynchronous() -> Plan:
    return dev("async")


def test_a_serverless_endpoint_has_memory_and_concurrency_and_no_instances(serverless: Plan) -> None:
    settings = load_stack("dev")
    config = _one(serverless, "aws:sagemaker/endpointConfiguration:EndpointConfiguration")
    (variant,) = config["productionVariants"]
    assert variant["serverlessConfig"] == {"memorySizeInMb": settings.serverless_memory_mb,
                                           "maxConcurrency": settings.serverless_max_concurrency}
    assert "instanceType" not in variant and "dataCaptureConfig" not in config and "kmsKeyArn" not in config
    assert not serverless.of_type("aws:appautoscaling/target:Target")  # SageMaker scales it


def test_a_serverless_model_captures_for_itself_where_the_drift_job_reads(serverless: Plan) -> None:
    names = Names.of(load_stack("dev"))
    model = _one(serverless, "aws:sagemaker/model:Model")
    assert model.get("enableNetworkIsolation") is False and "vpcConfig" not in model
    environment = model["primaryContainer"]["environment"]
    assert set(environment) <= env.NAMES  # infra names them as text: model_code.env must declare each (a rename)
    assert environment["MLOPS_CAPTURE_S3_URI"] == f"s3://{names.bucket('capture')}/{CAPTURE_PREFIX}"
    assert (environment["MLOPS_CAPTURE_ENDPOINT_NAME"], environment["MLOPS_CAPTURE_VARIANT_NAME"]) == \
        (names.endpoint, "primary")
    (drift,) = [r for r in serverless.of_type("aws:scheduler/schedule:Schedule") if r.name == "monitoring-drift-schedule"]
    arguments = json.loads(drift.inputs["target"]["input"])["AppSpecification"]["ContainerArguments"]
    assert arguments[arguments.index("--input") + 1] == f"{environment['MLOPS_CAPTURE_S3_URI']}/{names.endpoint}"


def test_an_async_endpoint_answers_in_s3_under_the_key_and_announces_each(asynchronous: Plan) -> None:
    names = Names.of(load_stack("dev"))
    key = asynchronous.outputs["kmsKeyArn"]
    config = _one(asynchronous, "aws:sagemaker/endpointConfiguration:EndpointConfiguration")
    output = config["asyncInferenceConfig"]["outputConfig"]
    data = names.bucket("data")
    assert (output["s3OutputPath"], output["s3FailurePath"], output["kmsKeyId"]) == (
        f"s3://{data}/{ASYNC_PREFIX}output/", f"s3://{data}/{ASYNC_PREFIX}failures/", key)
    topics = {r.inputs["name"]: r.inputs for r in asynchronous.of_type("aws:sns/topic:Topic")}
    for outcome, field in (("success", "successTopic"), ("errors", "errorTopic")):
        assert output["notificationConfig"][field].endswith(f":{names.async_topic(outcome)}")
        assert topics[names.async_topic(outcome)]["kmsMasterKeyId"] == key
    assert config["asyncInferenceConfig"]["clientConfig"]["maxConcurrentInvocationsPerInstance"] == 4
    assert config["dataCaptureConfig"]["enableCapture"] is True  # SageMaker captures async endpoints


def test_an_async_endpoint_scales_to_zero_and_back_on_its_backlog(asynchronous: Plan) -> None:
    settings, names = load_stack("dev"), Names.of(load_stack("dev"))
    target = _one(asynchronous, "aws:appautoscaling/target:Target")
    assert (target["minCapacity"], target["maxCapacity"]) == (0, settings.endpoint_max_capacity)
    policies = {r.name: r.inputs for r in asynchronous.of_type("aws:appautoscaling/policy:Policy")}
    tracking = policies["serving-scale-on-backlog"]["targetTrackingScalingPolicyConfiguration"]
    assert tracking["targetValue"] == settings.async_backlog_per_instance
    assert tracking["customizedMetricSpecification"]["metricName"] == "ApproximateBacklogSizePerInstance"
    step = policies["serving-scale-from-zero"]
    assert step["policyType"] == "StepScaling"
    (alarm,) = [r.inputs for r in asynchronous.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
                if r.inputs["metricName"] == "HasBacklogWithoutCapacity"]
    assert alarm["dimensions"] == {"EndpointName": names.endpoint}
    assert alarm["alarmActions"] == [f"arn:aws:autoscaling:eu-west-1:111111111111:scalingPolicy/"
                                     f"{step['name']}"] or alarm["alarmActions"][0].endswith(step["name"])


@pytest.mark.parametrize("mode", ["realtime", "serverless", "async"])
def test_every_mode_is_alarmed_rolls_back_and_passes_the_policies(mode: str) -> None:
    plan = dev(mode)
    endpoint = _one(plan, "aws:sagemaker/endpoint:Endpoint")
    rollback = {a["alarmName"] for a in endpoint["deploymentConfig"]["autoRollbackConfiguration"]["alarms"]}
    alarmed = {r.inputs["name"] for r in plan.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
               if r.inputs["namespace"] == "AWS/SageMaker" and r.inputs["dimensions"].get("VariantName")}
    assert rollback == alarmed and len(rollback) == 4
    assert endpoint["tags"] == load_stack("dev").tags
    assert evaluate([r.as_json() for r in plan.resources]) == []


@pytest.mark.parametrize("mode", ["serverless", "async"])
def test_the_deploy_role_can_create_each_mode(mode: str) -> None:
    denied, checked = provider_calls_denied(load_stack("dev"), dev(mode))
    assert checked > 200 and not denied, "\n".join(denied)


def test_prod_may_serve_async_but_not_serverless() -> None:
    pinned = {"mlops-stack:approvedModelPackageArn": PACKAGE, "mlops-stack:approvedModelImageUri": image_of(PACKAGE)}
    plan = plan_stack_file(stack_file("prod"), {**pinned, "mlops-stack:endpointMode": "async"})
    assert evaluate([r.as_json() for r in plan.resources]) == []
    with pytest.raises(SettingsError, match="serverless endpoints run in no VPC"):
        plan_stack_file(stack_file("prod"), {**pinned, "mlops-stack:endpointMode": "serverless"})


def test_realtime_keeps_the_names_it_had() -> None:
    """A mode the stack already had changes no model or configuration name (no replacement at upgrade)."""
    plain = plan_stack_file(stack_file("dev"), SERVED)
    assert _one(plain, "aws:sagemaker/model:Model")["name"] == _one(dev("realtime"), "aws:sagemaker/model:Model")["name"]
    assert _one(plain, "aws:sagemaker/model:Model")["name"] != _one(dev("async"), "aws:sagemaker/model:Model")["name"]


@pytest.mark.parametrize(("key", "value", "message"), [
    ("endpointMode", "edge", "is not one of realtime, serverless, async"),
    ("serverlessMemoryMb", "1500", "1500 is not one of 1024, 2048"),
    ("serverlessMaxConcurrency", "0", "mlops-stack:serverlessMaxConcurrency"),
])
def test_bad_mode_settings_fail_before_any_resource(key: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=f"mlops-stack:{key}") as error:
        plan_stack_file(stack_file("dev"), {f"mlops-stack:{key}": value})
    assert message in str(error.value)


def test_serve_runtime_onnx_is_the_containers_variable_and_a_new_model(serverless: Plan) -> None:
    """serveRuntime=onnx: the container scores with onnxruntime (MLOPS_SERVE_RUNTIME), under a new model name (a
    model's environment cannot change in place); zero policy violations, in each mode."""
    realtime = plan_stack_file(stack_file("dev"), SERVED)
    assert "environment" not in _one(realtime, "aws:sagemaker/model:Model")["primaryContainer"]
    for mode, before in (("realtime", realtime), ("serverless", serverless)):
        plan = plan_stack_file(stack_file("dev"), {**SERVED, "mlops-stack:endpointMode": mode,
                                                   "mlops-stack:serveRuntime": "onnx"})
        model = _one(plan, "aws:sagemaker/model:Model")
        environment = model["primaryContainer"]["environment"]
        assert environment["MLOPS_SERVE_RUNTIME"] == "onnx" and set(environment) <= env.NAMES
        assert model["name"] != _one(before, "aws:sagemaker/model:Model")["name"]
        assert evaluate([r.as_json() for r in plan.resources]) == []
    with pytest.raises(SettingsError, match="serveRuntime.*tensorflow"):
        load_stack_file(stack_file("dev"), {"mlops-stack:serveRuntime": "tensorflow"})

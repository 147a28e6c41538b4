"""The batch schedule (infra/components/batch.py, pipelines/batch.py): Scheduler's CreateTransformJob request of the
served model, encrypted and captured, its failures notified, declared only where it can run."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlops.naming import Arns, Names
from mlops.plan import Plan, plan_stack_file
from mlops.settings import load_stack, stack_file
from policies.offline import evaluate
from tests.infra.helpers import image_of, role_policies

PACKAGE = "arn:aws:sagemaker:eu-west-1:111111111111:model-package/mlops-stack-dev/3"
SERVING = {"mlops-stack:imageTag": "0123abc", "mlops-stack:approvedModelPackageArn": PACKAGE,
           "mlops-stack:approvedModelImageUri": image_of(PACKAGE)}
NIGHTLY = {"mlops-stack:batchTransformSchedule": "cron(0 2 * * ? *)"}


@pytest.fixture(scope="module", params=["dev", "prod"])
def plan(request: pytest.FixtureRequest) -> tuple[str, Plan]:
    return request.param, plan_stack_file(stack_file(request.param), {**SERVING, **NIGHTLY})


def _request(plan: Plan) -> dict[str, Any]:
    (schedule,) = [r for r in plan.of_type("aws:scheduler/schedule:Schedule") if r.name == "batch-schedule"]
    assert schedule.inputs["target"]["arn"] == "arn:aws:scheduler:::aws-sdk:sagemaker:createTransformJob"
    assert schedule.inputs["scheduleExpression"] == NIGHTLY["mlops-stack:batchTransformSchedule"]
    assert schedule.inputs["kmsKeyArn"] == plan.outputs["kmsKeyArn"]
    return json.loads(schedule.inputs["target"]["input"])


def test_the_transform_job_scores_the_input_prefix_with_the_endpoints_model(plan: tuple[str, Plan]) -> None:
    stack, planned = plan
    settings, names = load_stack(stack), Names.of(load_stack(stack))
    request, key = _request(planned), planned.outputs["kmsKeyArn"]
    (model,) = planned.of_type("aws:sagemaker/model:Model")
    assert request["ModelName"] == model.inputs["name"]  # the endpoint's model: its package, VPC and isolation
    assert request["TransformJobName"] == f"{names.batch_job_prefix}-<aws.scheduler.execution-id>"
    assert len(request["TransformJobName"].replace("<aws.scheduler.execution-id>", "x" * 36)) <= 63
    source = request["TransformInput"]
    assert source["DataSource"]["S3DataSource"] == {
        "S3DataType": "S3Prefix", "S3Uri": f"s3://{names.bucket('data')}/{settings.batch_transform_input_prefix}"}
    assert (source["SplitType"], source["ContentType"], request["BatchStrategy"]) == ("Line", "text/csv",
                                                                                     "MultiRecord")
    assert request["TransformOutput"] == {
        "S3OutputPath": f"s3://{names.bucket('data')}/{settings.batch_transform_output_prefix}",
        "Accept": "text/csv", "AssembleWith": "Line", "KmsKeyId": key}
    assert request["TransformResources"]["VolumeKmsKeyId"] == key
    assert request["DataCaptureConfig"] == {
        "DestinationS3Uri": f"s3://{names.bucket('capture')}/{names.batch_capture_prefix}", "KmsKeyId": key,
        "GenerateInferenceId": False}
    assert {t["Key"]: t["Value"] for t in request["Tags"]} == settings.tags


def test_the_scheduler_may_create_only_the_stacks_batch_jobs_under_its_key(plan: tuple[str, Plan]) -> None:
    stack, planned = plan
    names = Names.of(load_stack(stack))
    policy = role_policies(planned)[names.role("monitor-scheduler")]
    (grant,) = [s for s in policy["Statement"] if "sagemaker:CreateTransformJob" in s["Action"]]
    assert grant["Resource"] == [f"arn:aws:sagemaker:{names.region}:{names.account_id}:transform-job/"
                                 f"{names.batch_job_prefix}-*"]
    key = planned.outputs["kmsKeyArn"]
    assert grant["Condition"] == {"ArnEquals": {"sagemaker:OutputKmsKey": key, "sagemaker:VolumeKmsKey": key},
                                  "ArnLike": {"sagemaker:ModelArn": Arns(names).sagemaker("model")}}


def test_a_failed_job_notifies_the_alarm_topic(plan: tuple[str, Plan]) -> None:
    stack, planned = plan
    names = Names.of(load_stack(stack))
    (rule,) = [r for r in planned.of_type("aws:cloudwatch/eventRule:EventRule") if r.name == "batch-failure-rule"]
    assert json.loads(rule.inputs["eventPattern"]) == {
        "source": ["aws.sagemaker"], "detail-type": ["SageMaker Transform Job State Change"],
        "detail": {"TransformJobName": [{"prefix": f"{names.batch_job_prefix}-"}],
                   "TransformJobStatus": ["Failed", "Stopped"]}}
    (target,) = [r for r in planned.of_type("aws:cloudwatch/eventTarget:EventTarget") if r.name == "batch-failure-target"]
    (topic,) = planned.of_type("aws:sns/topic:Topic")
    assert target.inputs["arn"].endswith(f":{topic.inputs['name']}")
    (topic_policy,) = planned.of_type("aws:sns/topicPolicy:TopicPolicy")  # EventBridge may publish, prod included
    assert "events.amazonaws.com" in json.loads(topic_policy.inputs["policy"])["Statement"][0]["Principal"]["Service"]


def test_the_plan_with_a_batch_schedule_has_no_violations(plan: tuple[str, Plan]) -> None:
    _, planned = plan
    assert evaluate([r.as_json() for r in planned.resources]) == []


def test_no_schedule_or_no_served_model_declares_no_batch_job() -> None:
    off = plan_stack_file(stack_file("dev"), SERVING)
    unserved = plan_stack_file(stack_file("dev"), NIGHTLY)
    for planned in (off, unserved):
        assert not [r for r in planned.resources if r.name.startswith("batch-")]
    assert off.outputs["batchTransformSchedule"] == ""
    assert unserved.outputs["batchTransformSchedule"].startswith("not declared: the stack serves no model yet")


@pytest.mark.parametrize(("key", "value", "message"), [
    ("batchTransformOutputPrefix", "raw/scored/", "overlaps the pipeline's trigger folder ('raw/')"),
    ("batchTransformInputPrefix", "batch/output/in/", "'batch/output/' overlaps mlops-stack:batchTransformInputPrefix"),
    ("batchTransformInputPrefix", "batch/input", "is not a folder like batch/input/"),
    ("batchTransformContentType", "application/json", "is not one of text/csv, application/jsonlines"),
    ("batchTransformSchedule", "every night", "is not an AWS cron expression"),
])
def test_a_bad_batch_setting_fails_before_any_resource(key: str, value: str, message: str) -> None:
    from mlops.settings import SettingsError

    with pytest.raises(SettingsError, match="mlops-stack:batchTransform") as error:
        plan_stack_file(stack_file("dev"), {f"mlops-stack:{key}": value})
    assert message in str(error.value)


def test_the_drift_job_reads_the_batch_capture_only_with_a_batch_schedule(plan: tuple[str, Plan]) -> None:
    stack, planned = plan
    names = Names.of(load_stack(stack))

    def drift_arguments(of: Plan) -> list[str]:
        (schedule,) = [r for r in of.of_type("aws:scheduler/schedule:Schedule") if r.name == "monitoring-drift-schedule"]
        return json.loads(schedule.inputs["target"]["input"])["AppSpecification"]["ContainerArguments"]

    with_batch = drift_arguments(planned)
    assert with_batch[with_batch.index("--batch-capture") + 1] == \
        _request(planned)["DataCaptureConfig"]["DestinationS3Uri"] == \
        f"s3://{names.bucket('capture')}/{names.batch_capture_prefix}"
    assert "--batch-capture" not in drift_arguments(plan_stack_file(stack_file(stack), SERVING))

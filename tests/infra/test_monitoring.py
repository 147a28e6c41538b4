"""Monitoring and retraining: drift and quality schedules, M-of-N alarms, retrain rules with a scoped role."""

from __future__ import annotations

import json

import pytest

from mlops.naming import Names
from mlops.plan import Plan, plan_stack_file
from mlops.settings import StackSettings, stack_file, stack_names
from tests.infra.helpers import image_of

PACKAGE = "arn:aws:sagemaker:eu-west-1:111111111111:model-package/mlops-stack-dev/7"
TAG = "0123abc"
SERVED = {"mlops-stack:approvedModelPackageArn": PACKAGE, "mlops-stack:approvedModelImageUri": image_of(PACKAGE)}
"""A stack as `mlops release promote` leaves it: the pinned package and its image, no imageTag (no pipeline)."""


@pytest.fixture(scope="module")
def full() -> dict[str, Plan]:
    """Plans with an image and a pinned package: everything declared."""
    return {name: plan_stack_file(stack_file(name), {"mlops-stack:approvedModelPackageArn": PACKAGE,
                                                     "mlops-stack:imageTag": TAG}) for name in stack_names()}


def _named(plan: Plan, type_token: str) -> dict[str, dict]:
    return {r.name: r.inputs for r in plan.of_type(type_token)}


def test_no_monitoring_without_an_endpoint_or_a_pipeline(plan: Plan) -> None:
    assert not [r for r in plan.resources if r.urn.split("::")[2].startswith("mlops-stack:monitoring")]


def test_drift_job_schedule_runs_the_image_on_the_capture(full, settings: StackSettings) -> None:
    plan = full[settings.stack]
    names = Names.of(settings)
    inputs = _named(plan, "aws:scheduler/schedule:Schedule")["monitoring-drift-schedule"]
    assert inputs["scheduleExpression"] == settings.drift_schedule
    assert inputs["target"]["arn"] == "arn:aws:scheduler:::aws-sdk:sagemaker:createProcessingJob"
    request = json.loads(inputs["target"]["input"])
    assert request["ProcessingJobName"] == f"{names.prefix}-drift-<aws.scheduler.execution-id>"
    assert request["AppSpecification"]["ImageUri"] == f"{plan.outputs['ecrRepositoryUrl']}:{TAG}"
    arguments = request["AppSpecification"]["ContainerArguments"]
    assert arguments[arguments.index("--input") + 1] == f"s3://{names.bucket('capture')}/datacapture/{names.endpoint}"
    assert "--baseline-from-endpoint" in arguments
    assert arguments[arguments.index("--hours") + 1] == str(settings.drift_window_hours)
    assert arguments[arguments.index("--namespace") + 1] == names.metrics_namespace
    assert request["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"] == plan.outputs["kmsKeyArn"]
    assert request["ProcessingOutputConfig"]["KmsKeyId"] == plan.outputs["kmsKeyArn"]
    assert request["NetworkConfig"]["EnableInterContainerTrafficEncryption"] is True
    assert request["RoleArn"] == plan.outputs["executionRoleArn"]


def test_local_mode_runs_the_request_the_schedule_sends(full, settings: StackSettings) -> None:
    """`mlops monitor run` (mlops/local/drift_job.py) builds the schedule's request from the same settings."""
    from dataclasses import replace

    from mlops.local import drift_job
    from pipelines.monitoring import EXECUTION_ID

    plan = full[settings.stack]
    schedule = _named(plan, "aws:scheduler/schedule:Schedule")["monitoring-drift-schedule"]
    deployed = json.loads(schedule["target"]["input"])
    local = drift_job.request(replace(settings, image_tag=TAG), EXECUTION_ID)
    # Only what the plan resolves differently: the image registry, the role and key ARNs (known after create), and
    # a created VPC's ids (local jobs run in the local job network: mlops/local/runners.py).
    if settings.vpc_create:
        vpc = deployed["NetworkConfig"].pop("VpcConfig")
        assert vpc == {"SecurityGroupIds": plan.outputs["vpcSecurityGroupIds"], "Subnets": plan.outputs["vpcSubnetIds"]}
    for request in (deployed, local):
        request["AppSpecification"]["ImageUri"] = request["AppSpecification"]["ImageUri"].rsplit(":", 1)[1]
        request["RoleArn"] = request["ProcessingOutputConfig"]["KmsKeyId"] = "resolved"
        request["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"] = "resolved"
    assert local == deployed


def test_drift_alarm_is_m_of_n_from_settings(full, settings: StackSettings) -> None:
    plan = full[settings.stack]
    alarm = _named(plan, "aws:cloudwatch/metricAlarm:MetricAlarm")["monitoring-drift-alarm"]
    assert (alarm["namespace"], alarm["metricName"]) == (Names.of(settings).metrics_namespace, "DriftDetected")
    assert alarm["dimensions"] == {"Endpoint": Names.of(settings).endpoint}
    assert alarm["datapointsToAlarm"] == settings.drift_alarm_datapoints
    assert alarm["evaluationPeriods"] == settings.drift_alarm_evaluation_periods
    assert alarm["period"] == settings.drift_window_hours * 3600
    assert alarm["treatMissingData"] == "notBreaching"
    assert alarm["alarmActions"] == [plan.outputs["alarmTopicArn"]]
    assert plan.outputs["driftAlarmName"] == alarm["name"]


def test_alarm_and_new_data_start_the_pipeline_with_a_scoped_role(full, settings: StackSettings) -> None:
    plan = full[settings.stack]
    names = Names.of(settings)
    rules = _named(plan, "aws:cloudwatch/eventRule:EventRule")
    drift_pattern = json.loads(rules["monitoring-drift-rule"]["eventPattern"])
    assert drift_pattern["detail-type"] == ["CloudWatch Alarm State Change"]
    assert drift_pattern["detail"] == {"state": {"value": ["ALARM"]}}
    assert drift_pattern["resources"] == [f"arn:aws:cloudwatch:{settings.region}:{settings.account_id}:alarm:"
                                          f"{names.prefix}-drift"]
    data_pattern = json.loads(rules["monitoring-new-data-rule"]["eventPattern"])
    assert data_pattern["detail"] == {"bucket": {"name": [names.bucket("data")]}, "object": {"key": [{"prefix": "raw/"}]}}
    targets = _named(plan, "aws:cloudwatch/eventTarget:EventTarget")
    pipeline_arn = f"arn:aws:sagemaker:{settings.region}:{settings.account_id}:pipeline/{names.pipeline}"
    for target, parameters in (("monitoring-drift-target", {"Trigger": "drift"}),
                               ("monitoring-quality-target", {"Trigger": "quality"}),
                               ("monitoring-new-data-target", {"Trigger": "new-data",
                                                               "InputDataUri": f"s3://{names.bucket('data')}/raw/"})):
        inputs = targets[target]
        assert inputs["arn"] == pipeline_arn
        assert {p["name"]: p["value"] for p in inputs["sagemakerPipelineTarget"]["pipelineParameterLists"]} == parameters
    events_policy = json.loads(_named(plan, "aws:iam/rolePolicy:RolePolicy")["monitoring-events-policy"]["policy"])
    assert events_policy["Statement"] == [{"Sid": "StartThisPipeline", "Effect": "Allow",
                                           "Action": ["sagemaker:StartPipelineExecution"], "Resource": [pipeline_arn]}]
    [notification] = plan.of_type("aws:s3/bucketNotification:BucketNotification")
    assert notification.inputs == {"bucket": names.bucket("data"), "eventbridge": True}


def test_model_approvals_notify_the_topic(full, settings: StackSettings) -> None:
    plan = full[settings.stack]
    pattern = json.loads(_named(plan, "aws:cloudwatch/eventRule:EventRule")["monitoring-approval-rule"]["eventPattern"])
    assert pattern["detail"]["ModelPackageGroupName"] == [Names.of(settings).model_package_group]
    target = _named(plan, "aws:cloudwatch/eventTarget:EventTarget")["monitoring-approval-target"]
    assert target["arn"] == plan.outputs["alarmTopicArn"]


def test_full_plans_pass_the_policy_pack(full) -> None:
    from policies.offline import evaluate

    for plan in full.values():
        assert evaluate([r.as_json() for r in plan.resources]) == []


def test_quality_job_schedule_joins_ground_truth_with_the_served_model(full, settings: StackSettings) -> None:
    plan = full[settings.stack]
    names = Names.of(settings)
    inputs = _named(plan, "aws:scheduler/schedule:Schedule")["monitoring-quality-schedule"]
    assert inputs["scheduleExpression"] == settings.quality_schedule and inputs["kmsKeyArn"] == plan.outputs["kmsKeyArn"]
    request = json.loads(inputs["target"]["input"])
    assert request["ProcessingJobName"] == f"{names.prefix}-quality-<aws.scheduler.execution-id>"
    assert request["AppSpecification"]["ContainerEntrypoint"] == ["python", "-m", "model_code", "quality"]
    arguments = request["AppSpecification"]["ContainerArguments"]

    def value(flag: str) -> str:
        return arguments[arguments.index(flag) + 1]

    assert value("--capture") == f"s3://{names.bucket('capture')}/datacapture/{names.endpoint}"
    assert value("--ground-truth") == f"s3://{names.bucket('data')}/ground-truth"
    assert "--model-from-endpoint" in arguments and value("--endpoint") == names.endpoint
    assert value("--hours") == str(settings.quality_window_hours)
    assert value("--label-delay-hours") == str(settings.quality_label_delay_hours)
    assert float(value("--threshold")) == settings.quality_bar == settings.min_test_metric
    assert request["ProcessingOutputConfig"]["KmsKeyId"] == plan.outputs["kmsKeyArn"]
    assert request["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"] == plan.outputs["kmsKeyArn"]
    policy = json.loads(_named(plan, "aws:iam/rolePolicy:RolePolicy")["monitoring-scheduler-policy"]["policy"])
    [start] = [s for s in policy["Statement"] if s["Sid"] == "StartMonitoringJobs"]
    assert start["Resource"] == [f"arn:aws:sagemaker:{settings.region}:{settings.account_id}:processing-job/"
                                 f"{names.prefix}-{kind}-*" for kind in ("drift", "quality")]


def test_quality_alarm_is_m_of_n_on_the_primary_metric_in_its_direction(full, settings: StackSettings) -> None:
    plan = full[settings.stack]
    names = Names.of(settings)
    alarm = _named(plan, "aws:cloudwatch/metricAlarm:MetricAlarm")["monitoring-quality-alarm"]
    problem = settings.problem_declaration()
    assert (alarm["namespace"], alarm["metricName"]) == (names.metrics_namespace, "PrimaryMetric")
    assert alarm["dimensions"] == {"Endpoint": names.endpoint, "Metric": problem.primary_metric}
    assert alarm["comparisonOperator"] == "LessThanThreshold" and alarm["threshold"] == settings.quality_bar
    assert (alarm["datapointsToAlarm"], alarm["evaluationPeriods"]) == (settings.quality_alarm_datapoints,
                                                                        settings.quality_alarm_evaluation_periods)
    assert alarm["treatMissingData"] == "notBreaching" and plan.outputs["qualityAlarmName"] == alarm["name"]
    rule = json.loads(_named(plan, "aws:cloudwatch/eventRule:EventRule")["monitoring-quality-rule"]["eventPattern"])
    assert rule["resources"] == [f"arn:aws:cloudwatch:{settings.region}:{settings.account_id}:alarm:{alarm['name']}"]


def test_a_lower_is_better_metric_alarms_above_its_bar_and_an_empty_schedule_declares_no_quality_job() -> None:
    regression = plan_stack_file(stack_file("dev"), {"mlops-stack:approvedModelPackageArn": PACKAGE,
                                                     "mlops-stack:imageTag": TAG,
                                                     "mlops-stack:problem": "problems/diabetes",
                                                     "mlops-stack:qualityMinMetric": "65"})
    alarm = _named(regression, "aws:cloudwatch/metricAlarm:MetricAlarm")["monitoring-quality-alarm"]
    assert alarm["comparisonOperator"] == "GreaterThanThreshold" and alarm["threshold"] == 65.0
    assert alarm["dimensions"]["Metric"] == "rmse"
    off = plan_stack_file(stack_file("dev"), {"mlops-stack:approvedModelPackageArn": PACKAGE,
                                              "mlops-stack:imageTag": TAG, "mlops-stack:qualitySchedule": ""})
    assert "monitoring-quality-schedule" not in _named(off, "aws:scheduler/schedule:Schedule")
    assert "monitoring-quality-alarm" not in _named(off, "aws:cloudwatch/metricAlarm:MetricAlarm")
    assert off.outputs["qualityAlarmName"] == ""


def test_a_retrain_schedule_starts_the_pipeline_behind_the_cooldown() -> None:
    plan = plan_stack_file(stack_file("dev"), {"mlops-stack:imageTag": TAG,
                                               "mlops-stack:retrainSchedule": "cron(0 3 ? * MON *)"})
    rule = _named(plan, "aws:cloudwatch/eventRule:EventRule")["monitoring-schedule-rule"]
    assert rule["scheduleExpression"] == "cron(0 3 ? * MON *)" and "eventPattern" not in rule
    target = _named(plan, "aws:cloudwatch/eventTarget:EventTarget")["monitoring-schedule-target"]
    parameters = {p["name"]: p["value"] for p in target["sagemakerPipelineTarget"]["pipelineParameterLists"]}
    assert parameters == {"Trigger": "schedule"}  # an automatic trigger: the CooldownGuard step counts it
    from policies.offline import evaluate

    assert evaluate([r.as_json() for r in plan.resources]) == []
    assert "monitoring-schedule-rule" not in _named(plan_stack_file(stack_file("dev"), {"mlops-stack:imageTag": TAG}),
                                                    "aws:cloudwatch/eventRule:EventRule")


def test_the_endpoint_dashboard_shows_drift_and_quality_where_the_jobs_run(full, settings: StackSettings) -> None:
    plan = full[settings.stack]
    names = Names.of(settings)
    [dashboard] = plan.of_type("aws:cloudwatch/dashboard:Dashboard")
    widgets = {w["properties"]["title"]: w["properties"] for w in json.loads(dashboard.inputs["dashboardBody"])["widgets"]}
    drift = widgets["Drift: drift detected, features drifted"]
    assert drift["metrics"][0] == [names.metrics_namespace, "DriftDetected", "Endpoint", names.endpoint]
    primary = settings.problem_declaration().primary_metric
    quality = widgets[f"Quality: {primary} of labelled traffic, label coverage"]
    assert quality["metrics"][0] == [names.metrics_namespace, "PrimaryMetric", "Endpoint", names.endpoint,
                                     "Metric", primary]
    assert quality["annotations"]["horizontal"][0]["value"] == settings.quality_bar and quality["period"] == 3600
    # prod's way: no pipeline, the jobs in the pinned package's image; the same panels
    served = plan_stack_file(stack_file(settings.stack), SERVED)
    [served_dashboard] = served.of_type("aws:cloudwatch/dashboard:Dashboard")
    assert json.loads(served_dashboard.inputs["dashboardBody"]) == json.loads(dashboard.inputs["dashboardBody"])
    no_quality = plan_stack_file(stack_file(settings.stack), {**SERVED, "mlops-stack:qualitySchedule": ""})
    [without] = no_quality.of_type("aws:cloudwatch/dashboard:Dashboard")
    titles = [w["properties"]["title"] for w in json.loads(without.inputs["dashboardBody"])["widgets"]]
    assert "Drift: drift detected, features drifted" in titles and not [t for t in titles if t.startswith("Quality")]

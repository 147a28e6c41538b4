"""Every serving stack monitors its endpoint; prod's alarms retrain where the pipeline lives (dev's account).

Prod has no imageTag and no pipeline: its drift and quality jobs run the pinned package's image (written beside
the pin by `mlops release promote`), and its alarms reach dev's pipeline through an event bus in dev's account
whose policy admits prod's account alone. The patterns are matched with moto's EventBridge pattern matcher
against the event CloudWatch sends when prod's alarm enters ALARM.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from moto.events.models import EventPattern

from mlops.naming import Arns, Names
from mlops.plan import Plan, plan_stack_file
from mlops.settings import load_stack, stack_file
from tests.infra.helpers import image_of, statements

DEV, PROD = load_stack("dev"), load_stack("prod")
PACKAGE = Arns(Names.of(DEV)).model_package(7)
IMAGE = image_of(PACKAGE)
BUS_ARN = Arns(Names.of(DEV)).retrain_bus(PROD.account_id)


@pytest.fixture(scope="module")
def prod() -> Plan:
    """prod as `mlops release promote` leaves it: a pinned package of dev and its image, no imageTag."""
    return plan_stack_file(stack_file("prod"), {"mlops-stack:approvedModelPackageArn": PACKAGE,
                                                "mlops-stack:approvedModelImageUri": IMAGE})


@pytest.fixture(scope="module")
def dev() -> Plan:
    """dev as CI deploys it: the pipeline (imageTag) and the packages prod may serve."""
    return plan_stack_file(stack_file("dev"), {"mlops-stack:imageTag": "0123abc"})


def _named(plan: Plan, type_token: str) -> dict[str, dict]:
    return {r.name: r.inputs for r in plan.of_type(type_token)}


def _alarm_event(account: str, alarm: str, state: str = "ALARM") -> Any:
    """What CloudWatch puts on the default bus when `alarm` changes state (and prod's rule forwards)."""
    return {"version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718", "detail-type": "CloudWatch Alarm State Change",
            "source": "aws.cloudwatch", "account": account, "time": "2026-12-02T15:00:00Z", "region": PROD.region,
            "resources": [f"arn:aws:cloudwatch:{PROD.region}:{account}:alarm:{alarm}"],
            "detail": {"alarmName": alarm, "state": {"value": state, "reason": "Threshold Crossed"},
                       "previousState": {"value": "OK"}}}


def test_prod_runs_drift_and_quality_jobs_in_the_pinned_image(prod: Plan) -> None:
    names = Names.of(PROD)
    assert prod.outputs["pipelineName"] == ""  # no pipeline in prod
    schedules = _named(prod, "aws:scheduler/schedule:Schedule")
    assert set(schedules) == {"monitoring-drift-schedule", "monitoring-quality-schedule"}
    for kind, inputs in (("drift", schedules["monitoring-drift-schedule"]),
                         ("quality", schedules["monitoring-quality-schedule"])):
        request = json.loads(inputs["target"]["input"])
        assert request["AppSpecification"]["ImageUri"] == IMAGE  # dev's repository: pulled cross-account
        assert request["AppSpecification"]["ContainerEntrypoint"] == ["python", "-m", "model_code", kind]
        assert request["RoleArn"] == names.execution_role_arn
        arguments = request["AppSpecification"]["ContainerArguments"]
        assert arguments[arguments.index("--endpoint") + 1] == names.endpoint
        assert request["ProcessingOutputConfig"]["KmsKeyId"] == prod.outputs["kmsKeyArn"]
    alarms = _named(prod, "aws:cloudwatch/metricAlarm:MetricAlarm")
    assert alarms["monitoring-drift-alarm"]["dimensions"] == {"Endpoint": names.endpoint}
    assert (alarms["monitoring-drift-alarm"]["datapointsToAlarm"],
            alarms["monitoring-drift-alarm"]["evaluationPeriods"]) == (PROD.drift_alarm_datapoints,
                                                                       PROD.drift_alarm_evaluation_periods)
    assert alarms["monitoring-quality-alarm"]["dimensions"]["Endpoint"] == names.endpoint
    # the execution role already pulls the pinned image and reads its package and artifacts (serving does)
    policies = {r.inputs["role"]: r.inputs["policy"] for r in prod.of_type("aws:iam/rolePolicy:RolePolicy")}
    pulls = {s["Sid"]: s for s in statements(policies[names.execution_role])}["PullSourceModelImage"]
    assert pulls["Resource"] == [f"arn:aws:ecr:{DEV.region}:{DEV.account_id}:repository/{Names.of(DEV).ecr_repository}"]


def test_prod_alarms_forward_to_devs_retrain_bus_with_a_role_that_may_only_put_there(prod: Plan) -> None:
    names = Names.of(PROD)
    assert prod.outputs["retrainEventBusArn"] == BUS_ARN
    rules = _named(prod, "aws:cloudwatch/eventRule:EventRule")
    targets = _named(prod, "aws:cloudwatch/eventTarget:EventTarget")
    roles = {r.inputs["name"]: r.inputs for r in prod.of_type("aws:iam/role:Role")}
    forwarder = names.role("retrain-forwarder")
    trust = json.loads(roles[forwarder]["assumeRolePolicy"])
    assert [s["Principal"] for s in trust["Statement"]] == [{"Service": "events.amazonaws.com"}]
    policies = {r.inputs["role"]: r.inputs["policy"] for r in prod.of_type("aws:iam/rolePolicy:RolePolicy")}
    assert [(s["Action"], s["Resource"]) for s in statements(policies[forwarder])] == [(["events:PutEvents"],
                                                                                      [BUS_ARN])]
    for kind in ("drift", "quality"):
        pattern = json.loads(rules[f"monitoring-{kind}-rule"]["eventPattern"])
        alarm = names.resource(kind, "cloudwatch")
        assert pattern["resources"] == [f"arn:aws:cloudwatch:{PROD.region}:{PROD.account_id}:alarm:{alarm}"]
        target = targets[f"monitoring-{kind}-target"]
        assert target["arn"] == BUS_ARN and "sagemakerPipelineTarget" not in target
    assert not [r for r in prod.resources if r.type == "aws:sagemaker/pipeline:Pipeline"]


def test_devs_bus_admits_exactly_prods_alarm_events_and_each_kind_retrains_behind_the_cooldown(dev: Plan) -> None:
    names, prod_names = Names.of(DEV), Names.of(PROD)
    [bus] = dev.of_type("aws:cloudwatch/eventBus:EventBus")
    assert bus.inputs["name"] == names.retrain_bus(PROD.account_id) and BUS_ARN.endswith("/" + bus.inputs["name"])
    assert bus.inputs["kmsKeyIdentifier"] == dev.outputs["kmsKeyArn"]
    [policy] = dev.of_type("aws:cloudwatch/eventBusPolicy:EventBusPolicy")
    [grant] = statements(policy.inputs["policy"])
    assert grant["Principal"] == {"AWS": f"arn:aws:iam::{PROD.account_id}:root"}
    assert (grant["Action"], grant["Resource"]) == ("events:PutEvents", BUS_ARN)
    assert grant["Condition"] == {"ForAllValues:StringEquals": {"events:source": ["aws.cloudwatch"]},
                                  "StringEquals": {"events:detail-type": "CloudWatch Alarm State Change"}}

    rules = _named(dev, "aws:cloudwatch/eventRule:EventRule")
    targets = _named(dev, "aws:cloudwatch/eventTarget:EventTarget")
    for kind, other in (("drift", "quality"), ("quality", "drift")):
        rule = rules[f"monitoring-{kind}-from-{PROD.account_id}-rule"]
        assert rule["eventBusName"] == bus.inputs["name"]
        pattern = EventPattern.load(rule["eventPattern"])
        alarm = prod_names.resource(kind, "cloudwatch")  # the name prod gives its alarm
        assert pattern.matches_event(_alarm_event(PROD.account_id, alarm))
        assert not pattern.matches_event(_alarm_event(PROD.account_id, alarm, state="OK"))
        assert not pattern.matches_event(_alarm_event(PROD.account_id, prod_names.resource(other, "cloudwatch")))
        assert not pattern.matches_event(_alarm_event("333333333333", alarm))
        target = targets[f"monitoring-{kind}-from-{PROD.account_id}-target"]
        assert target["eventBusName"] == bus.inputs["name"]
        parameters = {p["name"]: p["value"] for p in target["sagemakerPipelineTarget"]["pipelineParameterLists"]}
        assert parameters == {"Trigger": kind}  # an automatic trigger: the pipeline's CooldownGuard counts it
        assert target["roleArn"] == targets["monitoring-new-data-target"]["roleArn"]  # may start this pipeline only


def test_a_stack_without_consumers_declares_no_bus() -> None:
    alone = plan_stack_file(stack_file("dev"), {"mlops-stack:imageTag": "0123abc",
                                                "mlops-stack:modelConsumerAccountIds": ""})
    assert not alone.of_type("aws:cloudwatch/eventBus:EventBus")
    assert not alone.of_type("aws:cloudwatch/eventBusPolicy:EventBusPolicy")


def test_prod_and_dev_plans_pass_the_policy_pack(prod: Plan, dev: Plan) -> None:
    from policies.offline import evaluate

    assert evaluate([r.as_json() for r in prod.resources]) == []
    assert evaluate([r.as_json() for r in dev.resources]) == []

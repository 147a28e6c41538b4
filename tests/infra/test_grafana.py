"""Dashboards as code: Grafana serving, drift and quality dashboards in an Amazon Managed Grafana workspace.

The panels are infra/panels.py's, rendered for CloudWatch and for Grafana: both must read the same metrics,
and those must be metrics the jobs publish (model_code/drift/metrics.py, model_code/quality/job.py, called
on minimal reports) or SageMaker's own.
"""

from __future__ import annotations

import datetime
import json

import pytest

from infra.panels import MonitoringPanels, grafana_dashboards
from mlops.naming import Arns, Names
from mlops.plan import Plan, plan_stack_file
from mlops.settings import load_stack, stack_file
from model_code.drift.metrics import metric_data as drift_metrics
from model_code.quality.job import metric_data as quality_metrics
from tests.infra.helpers import image_of, role_policies
from tests.infra.iam import allows

DEV = load_stack("dev")
PACKAGE = Arns(Names.of(DEV)).model_package(7)
WORKSPACE = "g-0123456789"
SAGEMAKER_METRICS = {("AWS/SageMaker", m) for m in ("Invocations", "ModelLatency", "OverheadLatency",
                                                    "Invocation4XXErrors", "Invocation5XXErrors")} | {
    ("/aws/sagemaker/Endpoints", "CPUUtilization")}


@pytest.fixture(scope="module")
def prod() -> Plan:
    return plan_stack_file(stack_file("prod"), {"mlops-stack:approvedModelPackageArn": PACKAGE,
                                                "mlops-stack:approvedModelImageUri": image_of(PACKAGE),
                                                "mlops-stack:grafanaWorkspaceId": WORKSPACE})


def _named(plan: Plan, type_token: str) -> dict[str, dict]:
    return {r.name: r.inputs for r in plan.of_type(type_token)}


def test_no_grafana_without_a_workspace() -> None:
    plan = plan_stack_file(stack_file("prod"), {"mlops-stack:approvedModelPackageArn": PACKAGE,
                                                "mlops-stack:approvedModelImageUri": image_of(PACKAGE)})
    assert not [r for r in plan.resources if "grafana" in r.type]
    assert "grafanaDashboards" not in plan.outputs


def test_the_workspace_gets_a_data_source_a_folder_and_three_dashboards(prod: Plan) -> None:
    names = Names.of(load_stack("prod"))
    [account] = prod.of_type("aws:grafana/workspaceServiceAccount:WorkspaceServiceAccount")
    assert (account.inputs["workspaceId"], account.inputs["grafanaRole"]) == (WORKSPACE, "ADMIN")
    [token] = prod.of_type("aws:grafana/workspaceServiceAccountToken:WorkspaceServiceAccountToken")
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    assert token.inputs["name"] == f"{names.prefix}-pulumi-{today}" and token.inputs["secondsToLive"] == 2 * 86400
    [provider] = prod.of_type("pulumi:providers:grafana")
    assert provider.inputs["url"] == f"https://{WORKSPACE}.grafana-workspace.{names.region}.amazonaws.com"
    [source] = prod.of_type("grafana:oss/dataSource:DataSource")
    assert source.inputs["type"] == "cloudwatch" and source.inputs["uid"] == "mlops-stack-prod-cloudwatch"
    assert json.loads(source.inputs["jsonDataEncoded"]) == {"authType": "ec2_iam_role", "defaultRegion": names.region}
    dashboards = [json.loads(d.inputs["configJson"]) for d in prod.of_type("grafana:oss/dashboard:Dashboard")]
    assert sorted(d["uid"] for d in dashboards) == ["mlops-stack-prod-drift", "mlops-stack-prod-quality",
                                                     "mlops-stack-prod-serving"]
    for dashboard in dashboards:
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] == source.inputs["uid"]
            assert {t["datasource"]["uid"] for t in panel["targets"]} == {source.inputs["uid"]}
    assert prod.outputs["grafanaDashboards"][0].endswith("/d/mlops-stack-prod-serving")
    from policies.offline import evaluate

    assert evaluate([r.as_json() for r in prod.resources]) == []


def _grafana_metrics(dashboards: list[dict]) -> set[tuple[str, str, tuple[tuple[str, str], ...]]]:
    return {(t["namespace"], t["metricName"], tuple(sorted(t["dimensions"].items())))
            for d in dashboards for p in d["panels"] for t in p["targets"]}


def test_grafana_and_cloudwatch_dashboards_read_the_same_metrics_and_the_jobs_publish_them(prod: Plan) -> None:
    grafana = _grafana_metrics([json.loads(d.inputs["configJson"])
                                for d in prod.of_type("grafana:oss/dashboard:Dashboard")])
    [cloudwatch_dashboard] = prod.of_type("aws:cloudwatch/dashboard:Dashboard")
    cloudwatch = {(m[0], m[1], tuple(sorted(zip(m[2::2], m[3::2], strict=True))))
                  for w in json.loads(cloudwatch_dashboard.inputs["dashboardBody"])["widgets"]
                  for m in w["properties"]["metrics"]}
    assert grafana == cloudwatch and len(grafana) == 11  # 6 serving, 2 drift, 3 quality

    names, endpoint = Names.of(load_stack("prod")), Names.of(load_stack("prod")).endpoint
    window = {"end": "2026-12-02T10:00:00Z"}
    published = drift_metrics({"window": window, "input": {"rows": 10}, "status": "ok", "drift_detected": True,
                               "summary": {"features_drifted": 1}, "prediction": None, "features": {}}, endpoint)
    published += quality_metrics({"window": window, "matched_rows": 5, "captured": {"rows": 6}, "coverage": 0.8,
                                  "primary_metric": {"name": "auc", "value": 0.9}, "join": {"counts": {}}}, endpoint)
    jobs = {(names.metrics_namespace, d["MetricName"], tuple(sorted((x["Name"], x["Value"]) for x in d["Dimensions"])))
            for d in published}
    unread = {m for m in grafana if (m[0], m[1]) not in SAGEMAKER_METRICS} - jobs
    assert not unread, f"panels read metrics no job publishes: {unread}"


def test_without_the_quality_job_there_is_no_quality_dashboard() -> None:
    panels = MonitoringPanels("mlops-stack/dev", "auc", 0.8, quality=False)
    assert set(grafana_dashboards("dev", "mlops-stack-dev", "eu-west-1", panels)) == {"serving", "drift"}
    assert set(grafana_dashboards("dev", "mlops-stack-dev", "eu-west-1", None)) == {"serving"}
    quality = grafana_dashboards("dev", "e", "eu-west-1", MonitoringPanels("ns", "rmse", 65.0, quality=True))["quality"]
    [bar] = [p for p in quality["panels"] if "thresholds" in p["fieldConfig"]["defaults"]]
    assert bar["fieldConfig"]["defaults"]["thresholds"]["steps"][-1]["value"] == 65.0  # the quality alarm's bar


def test_the_deploy_role_manages_pulumis_service_account_in_that_workspace_only(prod: Plan) -> None:
    names = Names.of(load_stack("prod"))
    deploy = role_policies(prod)[names.deploy_role]
    workspace = f"arn:aws:grafana:{names.region}:{names.account_id}:/workspaces/{WORKSPACE}"
    assert allows(deploy, "grafana:CreateWorkspaceServiceAccountToken", workspace)
    assert not allows(deploy, "grafana:CreateWorkspaceServiceAccountToken", workspace[:-1] + "a")
    assert not allows(deploy, "grafana:UpdateWorkspace", workspace)

"""Dashboards as code in Amazon Managed Grafana (with `grafanaWorkspaceId`): a folder per stack, a CloudWatch
data source read with the workspace's IAM role, and the serving, drift and quality dashboards of
infra/panels.py (the same panels as the endpoint's CloudWatch dashboard).

Grafana's API is reached with a workspace service account (Admin: data sources need it) and a token that
Pulumi creates for itself. Tokens live at most 30 days and `pulumi up` needs a live one, so the token is
named after the day of the deploy and lives two days: every deploy uses a token made that day, the old one
is deleted once the new one exists. The plan therefore changes the token once a day, nothing else.

What the workspace must have (its owner's, not this stack's): CloudWatch as an AWS data source of its IAM
role (AMG's CloudWatch permissions: cloudwatch:GetMetricData, ListMetrics, ...), and network access from the
CI runner that runs `pulumi up`.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumiverse_grafana as grafana

from infra.panels import MonitoringPanels, datasource_uid, grafana_dashboards
from mlops.naming import Names

TOKEN_SECONDS = 2 * 24 * 3600


@dataclass(frozen=True)
class GrafanaArgs:
    names: Names
    workspace_id: str
    endpoint_name: str
    monitoring: MonitoringPanels | None


def workspace_url(workspace_id: str, region: str) -> str:
    return f"https://{workspace_id}.grafana-workspace.{region}.amazonaws.com"


class Grafana(pulumi.ComponentResource):
    dashboard_uids: list[str]

    def __init__(self, name: str, args: GrafanaArgs, opts: pulumi.ResourceOptions | None = None,
                 today: datetime.date | None = None):
        super().__init__("mlops-stack:grafana:Grafana", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        names = args.names
        account = aws.grafana.WorkspaceServiceAccount(
            f"{name}-service-account",
            name=f"{names.prefix}-pulumi",
            grafana_role="ADMIN",
            workspace_id=args.workspace_id,
            opts=child,
        )
        day = (today or datetime.datetime.now(datetime.UTC).date()).isoformat()
        token = aws.grafana.WorkspaceServiceAccountToken(
            f"{name}-token",
            name=f"{names.prefix}-pulumi-{day}",
            seconds_to_live=TOKEN_SECONDS,
            service_account_id=account.service_account_id,
            workspace_id=args.workspace_id,
            opts=child,  # a new day's token replaces the old one after it exists (Pulumi's create-before-delete)
        )
        provider = grafana.Provider(
            f"{name}-provider", url=workspace_url(args.workspace_id, names.region), auth=token.key, opts=child
        )
        in_grafana = pulumi.ResourceOptions(parent=self, provider=provider)
        grafana.oss.DataSource(
            f"{name}-cloudwatch",
            type="cloudwatch",
            name=f"mlops-stack {names.stack} CloudWatch",
            uid=datasource_uid(names.stack),
            json_data_encoded=json.dumps({"authType": "ec2_iam_role", "defaultRegion": names.region}),
            opts=in_grafana,
        )
        folder = grafana.oss.Folder(
            f"{name}-folder", title=f"mlops-stack {names.stack}", uid=f"mlops-stack-{names.stack}", opts=in_grafana
        )
        models = grafana_dashboards(names.stack, args.endpoint_name, names.region, args.monitoring)
        for kind, model in models.items():
            grafana.oss.Dashboard(f"{name}-{kind}-dashboard", config_json=json.dumps(model, sort_keys=True),
                                  folder=folder.uid, overwrite=True, opts=in_grafana)
        self.dashboard_uids = [model["uid"] for model in models.values()]
        self.register_outputs({"dashboardUids": self.dashboard_uids})

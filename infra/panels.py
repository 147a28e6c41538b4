"""What a stack's dashboards show, once, rendered twice: as the CloudWatch dashboard of the endpoint
(infra/components/serving.py) and as Grafana dashboards (serving, drift, quality) provisioned to an Amazon
Managed Grafana workspace with a CloudWatch data source (infra/components/grafana.py).

A panel names CloudWatch metrics as CloudWatch's dashboard JSON does: (namespace, metric, dimension, value,
...). The drift and quality panels read what the jobs publish (model_code/drift, model_code/quality), one
datapoint per run: hourly periods. No Pulumi here: `mlops` and tests render dashboards without the runtime.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from mlops.naming import VARIANT

PERIOD_S = 60
JOB_PERIOD_S = 3600
DASHBOARDS = ("serving", "drift", "quality")


def datasource_uid(stack: str) -> str:
    """The stack's CloudWatch data source in Grafana: one per stack, so stacks may share a workspace."""
    return f"mlops-stack-{stack}-cloudwatch"[:40]


@dataclass(frozen=True)
class MonitoringPanels:
    """What the monitoring panels read: the jobs' namespace, the primary metric and its bar."""

    namespace: str
    primary_metric: str
    quality_bar: float
    quality: bool


@dataclass(frozen=True)
class Panel:
    dashboard: str  # one of DASHBOARDS
    title: str
    metrics: tuple[tuple[str, ...], ...]
    stat: str
    period: int = PERIOD_S
    bar: float | None = None  # a horizontal line: the quality alarm's bar


def panels(endpoint: str, monitoring: MonitoringPanels | None) -> list[Panel]:
    """The serving panels; with `monitoring`, drift and (with the quality job) quality panels."""
    variant = ("EndpointName", endpoint, "VariantName", VARIANT)
    found = [
        Panel("serving", "Invocations", (("AWS/SageMaker", "Invocations", *variant),), "Sum"),
        Panel("serving", "Latency p99 (us)", (("AWS/SageMaker", "ModelLatency", *variant),
                                              ("AWS/SageMaker", "OverheadLatency", *variant)), "p99"),
        Panel("serving", "Errors", (("AWS/SageMaker", "Invocation4XXErrors", *variant),
                                    ("AWS/SageMaker", "Invocation5XXErrors", *variant)), "Sum"),
        Panel("serving", "CPU and instances", (("/aws/sagemaker/Endpoints", "CPUUtilization", *variant),), "Average"),
    ]
    if monitoring is None:
        return found
    ns, ep = monitoring.namespace, ("Endpoint", endpoint)
    found.append(Panel("drift", "Drift: drift detected, features drifted",
                       ((ns, "DriftDetected", *ep), (ns, "FeaturesDrifted", *ep)), "Maximum", JOB_PERIOD_S))
    if monitoring.quality:
        found.append(Panel("quality", f"Quality: {monitoring.primary_metric} of labelled traffic, label coverage",
                           ((ns, "PrimaryMetric", *ep, "Metric", monitoring.primary_metric),
                            (ns, "LabelCoverage", *ep)), "Average", JOB_PERIOD_S, monitoring.quality_bar))
        found.append(Panel("quality", "Quality: labelled rows", ((ns, "LabelledRows", *ep),), "Sum", JOB_PERIOD_S))
    return found


def cloudwatch_dashboard(endpoint: str, region: str, monitoring: MonitoringPanels | None = None) -> str:
    """The endpoint's CloudWatch dashboard body: two panels a row, 12 columns wide."""
    widgets = []
    for index, panel in enumerate(panels(endpoint, monitoring)):
        properties: dict = {"title": panel.title, "region": region, "stat": panel.stat, "period": panel.period,
                            "view": "timeSeries", "metrics": [list(m) for m in panel.metrics]}
        if panel.bar is not None:
            properties["annotations"] = {"horizontal": [{"label": "quality bar", "value": panel.bar}]}
        widgets.append({"type": "metric", "x": 12 * (index % 2), "y": 6 * (index // 2), "width": 12, "height": 6,
                        "properties": properties})
    return json.dumps({"widgets": widgets}, sort_keys=True)


def _target(metric: tuple[str, ...], ref: str, stat: str, period: int, region: str, uid: str) -> dict:
    namespace, name, *pairs = metric
    return {
        "refId": ref,
        "datasource": {"type": "cloudwatch", "uid": uid},
        "queryMode": "Metrics",
        "metricQueryType": 0,  # metric search
        "metricEditorMode": 0,  # builder
        "region": region,
        "namespace": namespace,
        "metricName": name,
        "dimensions": dict(zip(pairs[::2], pairs[1::2], strict=True)),
        "matchExact": True,
        "statistic": stat,
        "period": str(period),
        "id": "",
        "expression": "",
        "label": name,
    }


def grafana_dashboards(stack: str, endpoint: str, region: str, monitoring: MonitoringPanels | None) -> dict[str, dict]:
    """Grafana dashboard models (schemaVersion 39), one per kind that has panels, keyed by kind."""
    models: dict[str, dict] = {}
    uid = datasource_uid(stack)
    for kind in DASHBOARDS:
        chosen = [p for p in panels(endpoint, monitoring) if p.dashboard == kind]
        if not chosen:
            continue
        grafana_panels = []
        for index, panel in enumerate(chosen):
            defaults: dict = {"unit": "short"}
            if panel.bar is not None:  # the alarm's bar as a threshold line
                defaults["thresholds"] = {"mode": "absolute", "steps": [{"color": "green", "value": None},
                                                                        {"color": "red", "value": panel.bar}]}
                defaults["custom"] = {"thresholdsStyle": {"mode": "line"}}
            grafana_panels.append({
                "id": index + 1,
                "type": "timeseries",
                "title": panel.title,
                "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
                "datasource": {"type": "cloudwatch", "uid": uid},
                "targets": [_target(m, chr(ord("A") + i), panel.stat, panel.period, region, uid)
                            for i, m in enumerate(panel.metrics)],
                "fieldConfig": {"defaults": defaults, "overrides": []},
            })
        models[kind] = {
            "uid": f"mlops-stack-{stack}-{kind}"[:40],
            "title": f"mlops-stack {stack}: {kind}",
            "tags": ["mlops-stack", stack, kind],
            "timezone": "utc",
            "schemaVersion": 39,
            "time": {"from": "now-24h" if kind == "serving" else "now-7d", "to": "now"},
            "refresh": "1m" if kind == "serving" else "",
            "panels": grafana_panels,
        }
    return models

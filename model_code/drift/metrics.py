"""The report as CloudWatch metrics (what the drift alarm watches)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from model_code.drift.core import MAX_METRICS_PER_REQUEST, parse_time
from model_code.drift.sources import aws_client


def metric_data(report: dict[str, Any], endpoint: str) -> list[dict[str, Any]]:
    """The CloudWatch datums of a report (see the module docstring)."""
    end = report["window"]["end"]
    now = datetime.now(UTC)
    ts = min(parse_time(end, "window end"), now) if end else now
    ep = [{"Name": "Endpoint", "Value": endpoint}]

    def datum(name: str, value: float, dims: list[dict[str, str]], unit: str = "None") -> dict[str, Any]:
        return {"MetricName": name, "Dimensions": dims, "Value": float(value), "Unit": unit, "Timestamp": ts}

    data = [datum("CapturedRows", report["input"]["rows"], ep, "Count")]
    if report["status"] == "no_data":
        return data
    data += [datum("DriftDetected", int(report["drift_detected"]), ep),
             datum("FeaturesDrifted", report["summary"]["features_drifted"], ep, "Count")]
    if report["prediction"]:
        data += [datum("PredictionDriftScore", report["prediction"]["psi"], ep),
                 datum("PredictionDrifted", int(report["prediction"]["drifted"]), ep)]
    for name, out in report["features"].items():
        dims = [*ep, {"Name": "Feature", "Value": name}]
        data += [datum("FeatureDriftScore", out["psi"], dims), datum("FeatureDrifted", int(out["drifted"]), dims)]
    return data


def publish_metrics(report: dict[str, Any], namespace: str, endpoint: str, client: Any = None) -> int:
    """The report's datums to CloudWatch; returns the number published."""
    return put_datums(metric_data(report, endpoint), namespace, client)


def put_datums(data: list[dict[str, Any]], namespace: str, client: Any = None) -> int:
    """put_metric_data in batches of at most 1000 datums (the API's limit); returns the number published."""
    client = client or aws_client("cloudwatch")
    for i in range(0, len(data), MAX_METRICS_PER_REQUEST):
        client.put_metric_data(Namespace=namespace, MetricData=data[i:i + MAX_METRICS_PER_REQUEST])
    return len(data)

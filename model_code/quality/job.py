"""The quality job: arguments, the join, the problem's metrics on the labelled rows, the report files,
CloudWatch metrics (what the quality alarm watches), the exit status."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path
from typing import Any

from model_code import metrics
from model_code.drift.core import CaptureError, UsageError, Window, iso, parse_time
from model_code.drift.metrics import put_datums
from model_code.drift.sources import aws_client
from model_code.endpoint_source import EndpointSourceError
from model_code.problem import Problem
from model_code.quality.join import CATEGORIES, join
from model_code.quality.records import Unreadable, read_captured, read_labels
from model_code.schema import DataError

REPORT_FORMAT = "mlops-stack/quality-report"
REPORT_FORMAT_VERSION = 1
REPORT_JSON = "quality_report.json"
REPORT_HTML = "quality_report.html"
DEFAULT_OUTPUT = Path("/opt/ml/processing/output/quality")


@dataclass(frozen=True)
class QualityConfig:
    capture: str
    ground_truth: str
    model: Path
    start: datetime
    hours: int = 1
    label_delay_hours: int = 24
    lookback_hours: int = 24
    output: Path = DEFAULT_OUTPUT
    namespace: str | None = None
    endpoint: str | None = None
    threshold: float | None = None
    """The primary metric's bar (None: the problem's ``metrics.threshold``); worse is ``degraded``."""

    @property
    def end(self) -> datetime:
        return self.start + timedelta(hours=self.hours)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def run_quality(config: QualityConfig) -> dict[str, Any]:
    """Join, score and report one window; writes the JSON and HTML report into ``config.output``."""
    from model_code.model import load_model

    try:
        model = load_model(config.model)
    except (OSError, ValueError) as exc:
        raise CaptureError(f"model {config.model}: {exc}") from None
    problem = Problem.from_dict(model.artifact["problem"])
    schema = model.schema
    bad_captures, bad_labels = Unreadable(), Unreadable()
    lookback = config.start - timedelta(hours=config.lookback_hours)
    labels_window = Window(config.start, config.end + timedelta(hours=config.label_delay_hours))
    # capture up to the labels' deadline too: a label uploaded then may be of a later window's request
    captured = read_captured(config.capture, Window(lookback, labels_window.end), schema, bad_captures,
                             Window(config.start, config.end))
    labels = read_labels(config.ground_truth, labels_window, bad_labels)
    joined = join(captured, labels, schema, start=config.start, hours=config.hours,
                  label_delay=timedelta(hours=config.label_delay_hours))
    primary, direction = problem.primary_metric, problem.direction
    values: dict[str, float | None] = {}
    if joined.matched_rows:
        try:
            output = model.output(joined.rows)
        except DataError as exc:
            raise CaptureError(f"the captured rows do not fit the model's schema: {exc}") from None
        values = {k: _finite(v) for k, v in metrics.compute(model.task, joined.y, output, model.threshold).items()}
    value = values.get(primary)
    status = "ok" if value is not None else "no_labels" if not joined.matched_rows else "undefined"
    bar = problem.metric_threshold if config.threshold is None else config.threshold
    degraded = None if value is None else not problem.clears(value, bar)
    report = {
        "format": REPORT_FORMAT, "format_version": REPORT_FORMAT_VERSION, "status": status,
        "window": {"start": iso(config.start), "end": iso(config.end)},
        "labels_window": labels_window.to_dict(), "lookback_start": iso(lookback),
        "label_delay_hours": config.label_delay_hours,
        "inputs": {"capture": config.capture, "ground_truth": config.ground_truth, "model": str(config.model),
                   "model_content_sha256": model.artifact.get("content_sha256"), "problem": schema.name},
        "captured": {"records": joined.captured_records, "rows": joined.captured_rows,
                     "unreadable": bad_captures.count, "unreadable_examples": bad_captures.examples},
        "labels": {"records": len(labels), "unreadable": bad_labels.count, "unreadable_examples": bad_labels.examples},
        "join": {"counts": dict(joined.counts), "examples": {k: joined.examples.get(k, []) for k in CATEGORIES}},
        "matched_rows": joined.matched_rows, "coverage": _finite(joined.coverage),
        "primary_metric": {"name": primary, "direction": direction, "value": value},
        "threshold": bar, "degraded": degraded,
        "metrics": values, "task": model.task,
    }
    if status == "undefined":
        report["warning"] = (f"{primary} is undefined on the {joined.matched_rows} labelled rows "
                             f"(a classification window needs every class among its labels)")
    if config.namespace:
        report["published"] = {"namespace": config.namespace,
                               "metrics": publish(report, config.namespace, config.endpoint or "local-endpoint")}
    config.output.mkdir(parents=True, exist_ok=True)
    (config.output / REPORT_JSON).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    (config.output / REPORT_HTML).write_text(render_html(report), encoding="utf-8")
    return report


def metric_data(report: dict[str, Any], endpoint: str) -> list[dict[str, Any]]:
    """The datums: the primary metric (when defined), labelled rows, label coverage, and each join count."""
    ts = min(parse_time(report["window"]["end"], "window end"), datetime.now(UTC))
    ep = [{"Name": "Endpoint", "Value": endpoint}]

    def datum(name: str, value: float, dims: list[dict[str, str]], unit: str = "None") -> dict[str, Any]:
        return {"MetricName": name, "Dimensions": dims, "Value": float(value), "Unit": unit, "Timestamp": ts}

    data = [datum("LabelledRows", report["matched_rows"], ep, "Count"),
            datum("CapturedRows", report["captured"]["rows"], ep, "Count")]
    if report["coverage"] is not None:
        data.append(datum("LabelCoverage", report["coverage"], ep))
    primary = report["primary_metric"]
    if primary["value"] is not None:
        data.append(datum("PrimaryMetric", primary["value"], [*ep, {"Name": "Metric", "Value": primary["name"]}]))
    data += [datum("GroundTruthRecords", n, [*ep, {"Name": "Join", "Value": category}], "Count")
             for category, n in report["join"]["counts"].items()]
    return data


def publish(report: dict[str, Any], namespace: str, endpoint: str, client: Any = None) -> int:
    return put_datums(metric_data(report, endpoint), namespace, client)


def render_html(report: dict[str, Any]) -> str:
    """One self-contained page: the verdict, the metrics, and every join count with its first examples."""
    primary = report["primary_metric"]
    value = "undefined" if primary["value"] is None else f"{primary['value']:.4f}"
    coverage = "-" if report["coverage"] is None else f"{report['coverage']:.1%}"
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{'-' if v is None else f'{v:.4g}'}</td></tr>"
                   for k, v in sorted(report["metrics"].items()))
    joins = "".join(
        f"<tr><th>{escape(k)}</th><td>{n}</td><td>{'<br>'.join(escape(e) for e in report['join']['examples'][k][:3])}"
        f"</td></tr>" for k, n in report["join"]["counts"].items())
    window = report["window"]
    return ("<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
            f"<title>Quality report: {escape(primary['name'])} {value}</title><style>"
            "body{font-family:sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:12px 0}"
            "td,th{padding:2px 8px;text-align:left;border-bottom:1px solid #ddd;font-size:13px;vertical-align:top}"
            "</style></head><body>"
            f"<h1>Quality report: {escape(primary['name'])} {value}</h1>"
            f"<p>Predictions captured {escape(window['start'])} .. {escape(window['end'])}: "
            f"{report['captured']['records']} requests, {report['captured']['rows']} rows; "
            f"{report['matched_rows']} rows labelled (coverage {coverage}), labels uploaded "
            f"{escape(report['labels_window']['start'])} .. {escape(report['labels_window']['end'])}; "
            f"unreadable lines: {report['captured']['unreadable']} of capture, {report['labels']['unreadable']} of "
            "ground truth.</p>"
            f"<h2>Metrics</h2><table>{rows or '<tr><td>no labelled rows</td></tr>'}</table>"
            f"<h2>Join</h2><table><tr><th>category</th><th>records</th><th>first examples</th></tr>{joins}</table>"
            "</body></html>\n")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m model_code.quality",
        description="Join ground-truth labels to captured predictions by inference id over one window and "
        "compute the problem's metrics (model_code/quality/__init__.py says how each label is counted). "
        "Exit 0 reported, 1 unreadable model or rows, 2 bad arguments.")
    p.add_argument("--capture", required=True, help="capture folder or s3://bucket/prefix (endpoint/variant/yyyy/...)")
    p.add_argument("--ground-truth", required=True, help="ground-truth folder or s3://bucket/prefix (yyyy/mm/dd/hh/)")
    p.add_argument("--model", type=Path, help="the served model artifact (folder, joblib or tar.gz)")
    p.add_argument("--model-from-endpoint", action="store_true",
                   help="score with the model package --endpoint serves now (resolved and downloaded at run time)")
    p.add_argument("--start", help="window start, ISO 8601 (default: the window whose labels' deadline is now)")
    p.add_argument("--hours", type=int, default=1, help="window length in hours (default 1)")
    p.add_argument("--label-delay-hours", type=int, default=24,
                   help="labels are on time until this long after their window ends (default 24)")
    p.add_argument("--lookback-hours", type=int, default=24,
                   help="capture read before the window, to tell late labels from ids never captured (default 24)")
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"report folder (default {DEFAULT_OUTPUT})")
    p.add_argument("--threshold", type=float,
                   help="the primary metric's bar: worse is degraded (default: the problem's metrics.threshold)")
    p.add_argument("--namespace", help="CloudWatch namespace to publish the metrics to (default: none)")
    p.add_argument("--endpoint", help="the endpoint: the Endpoint dimension of the metrics; --model-from-endpoint's")
    return p


def config_from_args(args: argparse.Namespace, now: datetime | None = None) -> QualityConfig:
    bad = [f"--{name} {value} must be {rule}" for name, value, ok, rule in (
        ("hours", args.hours, args.hours >= 1, ">= 1"),
        ("label-delay-hours", args.label_delay_hours, args.label_delay_hours >= 0, ">= 0"),
        ("lookback-hours", args.lookback_hours, args.lookback_hours >= 0, ">= 0")) if not ok]
    if bad:
        raise UsageError("; ".join(bad))
    if args.start:
        start = parse_time(args.start, "--start")
    else:  # the schedule runs at the hour the window's labels are due
        hour = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
        start = hour - timedelta(hours=args.label_delay_hours + args.hours)
    return QualityConfig(args.capture, args.ground_truth, args.model or Path(), start, args.hours,
                         args.label_delay_hours, args.lookback_hours, args.output, args.namespace, args.endpoint,
                         args.threshold)


def _served_model(endpoint: str | None, target: Path) -> Path:
    """The model.tar.gz of the package ``endpoint`` serves now (model_code/endpoint_source.py)."""
    if not endpoint:
        raise UsageError("--model-from-endpoint needs --endpoint")
    from botocore.exceptions import BotoCoreError, ClientError

    from model_code.endpoint_source import download, resolve

    try:
        return download(aws_client("s3"), resolve(aws_client("sagemaker"), endpoint), target)[1]
    except (ClientError, BotoCoreError) as exc:
        raise EndpointSourceError(f"resolving what endpoint {endpoint} serves: {exc}") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # the served model is downloaded beside --output, not into it (the job uploads its output after each run)
    with tempfile.TemporaryDirectory(prefix="quality-served-") as served:
        try:
            if args.model_from_endpoint == (args.model is not None):
                raise UsageError("give exactly one of --model or --model-from-endpoint (with --endpoint)")
            config = config_from_args(args)
            if args.model_from_endpoint:
                config = dataclasses.replace(config, model=_served_model(args.endpoint, Path(served)))
        except UsageError as exc:
            print(f"quality: {exc}", file=sys.stderr)
            return 2
        except EndpointSourceError as exc:
            print(f"quality failed: {exc}", file=sys.stderr)
            return 1
        try:
            report = run_quality(config)
        except CaptureError as exc:
            print(f"quality failed: {exc}", file=sys.stderr)
            return 1
    return _summary(report, config)


def _summary(report: dict[str, Any], config: QualityConfig) -> int:
    counts = report["join"]["counts"]
    primary = report["primary_metric"]
    value = "undefined" if primary["value"] is None else f"{primary['value']:.4f}"
    others = ", ".join(f"{k} {n}" for k, n in counts.items() if k != "matched" and n)
    verdict = {None: "", True: f" (DEGRADED: worse than {report['threshold']})", False: ""}[report["degraded"]]
    print(f"quality: {primary['name']}={value}{verdict} on {report['matched_rows']} labelled rows of "
          f"{report['captured']['rows']} captured; {counts['matched']} labels matched"
          f"{'; ' + others if others else ''}; wrote {config.output / REPORT_JSON}")
    if "published" in report:
        print(f"published {report['published']['metrics']} metrics to {report['published']['namespace']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The job: arguments, the served model and baselines, the report files, the exit status."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from model_code import baseline as bl
from model_code import env
from model_code.drift.batch import read_batch_capture
from model_code.drift.compare import compare
from model_code.drift.core import (
    DEFAULT_OUTPUT,
    REPORT_FORMAT,
    REPORT_FORMAT_VERSION,
    REPORT_HTML,
    REPORT_JSON,
    CaptureError,
    Thresholds,
    UsageError,
    Window,
    iso,
    parse_time,
)
from model_code.drift.metrics import publish_metrics
from model_code.drift.sources import aws_client, cpus, read_capture
from model_code.endpoint_source import EndpointSourceError
from model_code.problem import step_problem
from model_code.schema import Schema


@dataclass(frozen=True)
class DriftConfig:
    input: str
    baseline: Path
    output: Path = DEFAULT_OUTPUT
    model: Path | None = None
    prediction_baseline: Path | None = None
    window: Window = Window()
    thresholds: Thresholds = Thresholds()
    namespace: str | None = None
    endpoint: str | None = None
    workers: int = 0
    schema: Schema | None = None
    problem: Path | None = None
    """The problem folder whose schema to use when neither `schema` nor a model gives one."""
    package_arn: str | None = None
    """The model package the baseline came from (--baseline-from-endpoint); None for a baseline file."""
    batch_capture: str | None = None
    """A batch schedule's capture (model_code/drift/batch.py): its scored rows join the endpoint's."""


@dataclass
class DriftResult:
    report: dict[str, Any]
    html: str
    paths: dict[str, Path]


def _prediction_baseline(config: DriftConfig, baseline: dict[str, Any],
                         ) -> tuple[dict[str, Any] | None, dict | None, Schema | None]:
    if config.prediction_baseline:
        try:
            data = json.loads(Path(config.prediction_baseline).read_text())
        except (OSError, ValueError) as exc:
            raise CaptureError(f"prediction baseline {config.prediction_baseline}: {exc}") from None
        return data, {"source": "file", "path": str(config.prediction_baseline)}, None
    if config.model:
        from model_code.model import load_model

        try:
            model = load_model(config.model)
        except (OSError, ValueError) as exc:
            raise CaptureError(f"model {config.model}: {exc}") from None
        return (model.artifact.get("prediction_baseline"), {"source": "model", "path": str(config.model)},
                model.schema)
    if baseline.get("prediction"):
        return baseline["prediction"], {"source": "baseline", "path": str(config.baseline)}, None
    return None, None, None


def run_drift(config: DriftConfig) -> DriftResult:
    from model_code.drift.report import render_html

    try:
        baseline = bl.load_baseline(config.baseline)
    except (OSError, ValueError) as exc:
        raise CaptureError(f"baseline: {exc}") from None
    pred_base, pred_info, model_schema = _prediction_baseline(config, baseline)
    # the model knows its schema; without one, the problem the code bundle carries (or --problem)
    schema = config.schema or model_schema or step_problem(config.problem).schema
    if baseline.get("schema") != schema.name:
        raise CaptureError(f"baseline {config.baseline} is for schema {baseline.get('schema')!r}, "
                           f"the model/schema is {schema.name!r}")
    capture = read_capture(config.input, schema, config.window, config.workers)
    batch = read_batch_capture(config.batch_capture, schema, config.window) if config.batch_capture else None
    if batch is not None:
        capture.merge(batch)
    source = baseline.get("source") or {}
    report: dict[str, Any] = {
        "format": REPORT_FORMAT, "format_version": REPORT_FORMAT_VERSION,
        "status": "ok" if capture.rows else "no_data",
        "drift_detected": False,
        "window": config.window.to_dict(),
        "input": {"uri": config.input, "files": capture.files, "records": capture.records,
                  "records_outside_window": capture.outside_window, "rows": capture.rows,
                  "predictions": int(capture.predictions),
                  "batch": None if batch is None else {"uri": config.batch_capture, "objects": batch.files,
                                                       "rows": batch.rows, "predictions": int(batch.predictions)}},
        "baseline": {"path": str(config.baseline), "schema": baseline.get("schema"),
                     "rows": source.get("rows"), "sha256": source.get("sha256"),
                     "package_arn": config.package_arn},
        "prediction_baseline": pred_info,
        "thresholds": config.thresholds.to_dict(),
        "summary": {"features": len(schema.features), "features_drifted": 0, "drifted": [],
                    "prediction_drifted": None},
        "features": {}, "prediction": None, "violations": [], "warnings": [], "metrics": None,
    }
    if capture.rows:
        report.update(compare(capture, baseline, schema, pred_base, config.thresholds))
    else:
        report["warnings"].append(
            f"no captured rows in the window {iso(config.window.start) or '-inf'} .. "
            f"{iso(config.window.end) or '+inf'} under {config.input} "
            f"({capture.files} file(s), {capture.outside_window} record(s) outside the window)")
    if config.namespace:
        if not config.endpoint:
            raise UsageError("publishing metrics needs an endpoint name (--endpoint or MLOPS_DRIFT_ENDPOINT_NAME)")
        report["metrics"] = {"namespace": config.namespace, "endpoint": config.endpoint}
        report["metrics"]["published"] = publish_metrics(report, config.namespace, config.endpoint)
    html = render_html(report, workers=config.workers or cpus())
    config.output.mkdir(parents=True, exist_ok=True)
    paths = {"json": config.output / REPORT_JSON, "html": config.output / REPORT_HTML}
    paths["json"].write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    paths["html"].write_text(html, encoding="utf-8")
    return DriftResult(report=report, html=html, paths=paths)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m model_code.drift",
                                description="Compare captured endpoint traffic with the training baseline.")
    p.add_argument("--input", required=True, help="capture folder/file or s3://bucket/prefix")
    p.add_argument("--batch-capture", default=None,
                   help="a Batch Transform job's DataCaptureConfig destination (folder or s3://...): the rows its "
                        "jobs of the window scored count with the endpoint's")
    p.add_argument("--baseline", type=Path, help="baseline.json written by preprocess (or --baseline-from-endpoint)")
    p.add_argument("--baseline-from-endpoint", action="store_true",
                   help="use the baseline and model of the package --endpoint serves now (the scheduled job)")
    p.add_argument("--model", type=Path, help="model artifact whose prediction_baseline to use")
    p.add_argument("--prediction-baseline", type=Path, help="prediction baseline JSON (overrides --model's)")
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                   help=f"folder for {REPORT_JSON} and {REPORT_HTML} (default: %(default)s)")
    p.add_argument("--start", help="window start, ISO 8601 (inclusive)")
    p.add_argument("--end", help="window end, ISO 8601 (exclusive)")
    p.add_argument("--hours", type=int, help="window length in hours (ending at --end or the current hour)")
    p.add_argument("--namespace", default=None,
                   help=f"CloudWatch namespace (default ${env.MLOPS_DRIFT_METRICS_NAMESPACE.name}); none: no metrics")
    p.add_argument("--endpoint", default=None,
                   help=f"Endpoint dimension (default ${env.MLOPS_DRIFT_ENDPOINT_NAME.name})")
    d = Thresholds()
    p.add_argument("--psi", type=float, default=d.psi,
                   help="a significant shift drifts from this PSI (default: %(default)s)")
    p.add_argument("--p-value", type=float, default=d.p_value,
                   help="significance level of the window, split over its tests (default: %(default)s)")
    p.add_argument("--min-effect", type=float, default=d.min_effect,
                   help="... or from this effect size: normed Wasserstein distance (numeric), total "
                        "variation distance (categorical) (default: %(default)s)")
    p.add_argument("--missing-delta", type=float, default=d.missing_delta,
                   help="a significant change of the missing share drifts from this much (default: %(default)s)")
    p.add_argument("--workers", type=int, default=0,
                   help="processes that parse capture and draw charts (0 = one per CPU)")
    p.add_argument("--fail-on-drift", action="store_true", help="exit 3 when drift is detected")
    return p


def window_from_args(start: str | None, end: str | None, hours: int | None, now: datetime | None = None) -> Window:
    s = parse_time(start, "--start") if start else None
    e = parse_time(end, "--end") if end else None
    if hours is not None:
        if hours <= 0:
            raise UsageError(f"--hours must be > 0, got {hours}")
        if s and e:
            raise UsageError("give at most two of --start, --end, --hours")
        if s:
            e = s + timedelta(hours=hours)
        else:
            e = e or (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
            s = e - timedelta(hours=hours)
    return Window(s, e)


def _from_endpoint(endpoint: str | None, target: Path) -> tuple[Path, Path, str]:
    """(baseline, model, package ARN) of what `endpoint` serves now, downloaded into `target`."""
    if not endpoint:
        raise UsageError("--baseline-from-endpoint needs --endpoint (or $MLOPS_DRIFT_ENDPOINT_NAME)")
    from botocore.exceptions import BotoCoreError, ClientError

    from model_code.endpoint_source import download, resolve

    try:
        served = resolve(aws_client("sagemaker"), endpoint)
        return (*download(aws_client("s3"), served, target), served.package_arn)
    except (ClientError, BotoCoreError) as exc:
        raise EndpointSourceError(f"resolving what endpoint {endpoint} serves: {exc}") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # What the endpoint serves is downloaded beside --output, not into it: a processing job uploads its
    # output to S3 after every run, and a copy of the model per scheduled run is waste.
    with tempfile.TemporaryDirectory(prefix="drift-served-") as served:
        return _main(args, Path(served))


def _main(args: argparse.Namespace, served: Path) -> int:
    package_arn = None
    try:
        if args.baseline_from_endpoint:
            args.baseline, args.model, package_arn = _from_endpoint(
                args.endpoint or env.MLOPS_DRIFT_ENDPOINT_NAME.get(), served
            )
        if args.baseline is None:
            raise UsageError("give --baseline, or --baseline-from-endpoint with --endpoint")
        window = window_from_args(args.start, args.end, args.hours)
        th = Thresholds(args.psi, args.p_value, args.min_effect, args.missing_delta)
        bad = [f"--{name} {value} must be {rule}" for name, value, ok, rule in (
            ("psi", th.psi, th.psi > 0, "> 0"), ("p-value", th.p_value, 0 < th.p_value < 1, "in (0, 1)"),
            ("min-effect", th.min_effect, 0 < th.min_effect <= 1, "in (0, 1]"),
            ("missing-delta", th.missing_delta, 0 < th.missing_delta <= 1, "in (0, 1]")) if not ok]
        if bad:
            raise UsageError("; ".join(bad))
        config = DriftConfig(
            input=args.input, baseline=args.baseline, output=args.output, model=args.model,
            prediction_baseline=args.prediction_baseline, window=window, thresholds=th,
            namespace=args.namespace or env.MLOPS_DRIFT_METRICS_NAMESPACE.get(),
            endpoint=args.endpoint or env.MLOPS_DRIFT_ENDPOINT_NAME.get(), workers=args.workers,
            package_arn=package_arn, batch_capture=args.batch_capture,
        )
    except (UsageError, env.EnvError) as exc:
        print(f"drift: {exc}", file=sys.stderr)
        return 2
    except EndpointSourceError as exc:
        print(f"drift failed: {exc}", file=sys.stderr)
        return 1
    try:
        result = run_drift(config)
    except UsageError as exc:
        print(f"drift: {exc}", file=sys.stderr)
        return 2
    except CaptureError as exc:
        print(f"drift failed: {exc}", file=sys.stderr)
        return 1
    r = result.report
    if r["status"] == "no_data":
        print(f"drift: no data: {r['warnings'][0]}; wrote {result.paths['json']}")
        return 0
    s = r["summary"]
    pred = {None: "not checked", True: "DRIFT", False: "ok"}[s["prediction_drifted"]]
    print(f"drift: {r['input']['rows']} rows in {r['input']['records']} records from {r['input']['files']} "
          f"file(s); {s['features_drifted']}/{s['features']} features drifted {s['drifted']}; "
          f"prediction {pred}; wrote {result.paths['json']}, {result.paths['html']}")
    for w in r["warnings"]:
        print(f"warning: {w}")
    if r["metrics"]:
        print(f"published {r['metrics']['published']} metrics to {r['metrics']['namespace']}")
    return 3 if args.fail_on_drift and r["drift_detected"] else 0


if __name__ == "__main__":
    sys.exit(main())

"""Champion vs challenger on the same data: score the current champion on the challenger's test split.

A model's own test metric is measured on its own split; after a drift retrain that compares the old
population with the new one. This step scores both models on one split, with the code Evaluate uses
(`evaluate.score_split`), and says what the challenger must reach.

Command line (a SageMaker processing job: the pipeline's CompareChampion step, and the job
`mlops release promote` runs to compare a candidate with a stack's pinned model)::

    python -m model_code.champion --model DIR|model.tar.gz   the challenger
                                  --test DIR                 its test split
                                  (--champion-group NAME     champion = the group's newest Approved package
                                   | --champion-package ARN) champion = this package
                                  [--min-improvement 0.0] [--region R] [--no-mlflow]
                                  [--output /opt/ml/processing/output/comparison]

``<output>/comparison.json`` (format ``mlops-stack/champion-comparison`` v1) works as a SageMaker
PropertyFile. JsonGet paths the pipeline reads:

    challenger.value   the challenger's primary metric on the split
    required           what it must reach: champion + min_improvement (higher is better) or
                       champion - min_improvement (lower is better); the challenger's own value
                       when there is no champion or it cannot be compared (so the condition holds)
    metadata.<key>     strings for the model package's CustomerMetadataProperties:
                       champion_model_package_arn, champion_<metric>, champion_status,
                       promotion_min_improvement

``champion.status``: ``scored``; ``none`` (the group has no Approved package); ``incomparable`` (its
model cannot score this split, or it optimises another primary metric: the reason is recorded and
the numbers decide nothing, approval does). The champion's scores also go to the challenger's MLflow
run as ``champion_test_<metric>`` (not with ``--no-mlflow``). Exit 1 with one line when a model,
the split or the registry cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from model_code.endpoint_source import EndpointSourceError, download_object, package_model_data
from model_code.evaluate import log_test_metrics, score_split
from model_code.model import LoadedModel, load_model
from model_code.problem import Problem
from model_code.schema import DataError
from model_code.tracking import TrackingError

COMPARISON_FORMAT = "mlops-stack/champion-comparison"
COMPARISON_FORMAT_VERSION = 1
COMPARISON_NAME = "comparison.json"
DEFAULT_OUTPUT = Path("/opt/ml/processing/output/comparison")
SCORED, NONE, INCOMPARABLE = "scored", "none", "incomparable"


def newest_approved(sagemaker: Any, group: str) -> str | None:
    """ARN of the group's newest Approved package (creation time, then version: as mlops.registry orders)."""
    summaries: list[dict[str, Any]] = []
    pages = sagemaker.get_paginator("list_model_packages").paginate(
        ModelPackageGroupName=group, ModelApprovalStatus="Approved", SortBy="CreationTime", SortOrder="Descending")
    for page in pages:
        summaries.extend(page["ModelPackageSummaryList"])
    if not summaries:
        return None
    newest = max(summaries, key=lambda s: (s["CreationTime"], int(s.get("ModelPackageVersion") or 0)))
    return str(newest["ModelPackageArn"])


def verdict(challenger: float, champion: float | None, direction: str, min_improvement: float) -> tuple[float, bool]:
    """(required, passed): the challenger must reach the champion's value plus `min_improvement` in the metric's
    direction; with no comparable champion it is required to reach itself (passes)."""
    if champion is None:
        return challenger, True
    required = champion + min_improvement if direction == "higher" else champion - min_improvement
    return required, challenger >= required if direction == "higher" else challenger <= required


def compare(challenger: LoadedModel, champion: LoadedModel | None, champion_arn: str, test_path: Path,
            min_improvement: float) -> dict[str, Any]:
    """The comparison document (see the module docstring); `champion` None means there is none."""
    problem = Problem.from_dict(challenger.artifact["problem"])
    metric, direction = problem.primary_metric, problem.direction
    mine = score_split(challenger, test_path)
    value = mine.values[metric]
    report: dict[str, Any] = {"model_package_arn": champion_arn, "status": NONE, "value": None, "metrics": None,
                              "reason": "the model package group has no Approved package"}
    if champion is not None:
        theirs = Problem.from_dict(champion.artifact["problem"])
        if (theirs.primary_metric, theirs.direction) != (metric, direction):
            report |= {"status": INCOMPARABLE, "reason": f"the champion optimises {theirs.primary_metric} "
                                                          f"({theirs.direction} is better), not {metric}"}
        else:
            try:
                scored = score_split(champion, test_path)
            except (DataError, KeyError, ValueError) as error:
                report |= {"status": INCOMPARABLE, "reason": f"the champion cannot score this split: {error}"}
            else:
                report |= {"status": SCORED, "value": scored.values[metric], "metrics": scored.values, "reason": ""}
    required, passed = verdict(value, report["value"], direction, min_improvement)
    return {
        "format": COMPARISON_FORMAT,
        "format_version": COMPARISON_FORMAT_VERSION,
        "primary_metric": {"name": metric, "direction": direction},
        "test_data": mine.test_data,
        "challenger": {"value": value, "metrics": mine.values,
                       "content_sha256": challenger.artifact.get("content_sha256")},
        "champion": report,
        "min_improvement": min_improvement,
        "required": required,
        "passed": passed,
        "metadata": {
            "champion_model_package_arn": champion_arn or "none",
            f"champion_{metric}": "none" if report["value"] is None else repr(float(report["value"])),
            "champion_status": report["status"],
            "promotion_min_improvement": repr(float(min_improvement)),
        },
    }


def _champion(args: argparse.Namespace, work: Path) -> tuple[LoadedModel | None, str]:
    import boto3

    sagemaker = boto3.client("sagemaker", region_name=args.region)
    arn = args.champion_package or newest_approved(sagemaker, args.champion_group)
    if arn is None:
        return None, ""
    path = download_object(boto3.client("s3", region_name=args.region), package_model_data(sagemaker, arn),
                           work / "model.tar.gz")
    return load_model(path), arn


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m model_code.champion",
                                description="Score the champion on the challenger's test split.")
    p.add_argument("--model", type=Path, required=True, help="the challenger: model.joblib, model.tar.gz or a folder")
    p.add_argument("--test", type=Path, required=True, help="the challenger's test split (folder or CSV)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--champion-group", help="model package group: the champion is its newest Approved package")
    which.add_argument("--champion-package", help="model package ARN of the champion")
    p.add_argument("--min-improvement", type=float, default=0.0,
                   help="how much better than the champion the challenger must be (primary metric units)")
    p.add_argument("--region", default=None, help="AWS region of the registry (default: the environment's)")
    p.add_argument("--no-mlflow", action="store_true",
                   help="do not log the champion's scores on the challenger's MLflow run (release promote's "
                        "comparison: it decides a promotion, not the training run)")
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"folder for {COMPARISON_NAME}")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.min_improvement < 0:
        print(f"champion failed: --min-improvement must be >= 0, got {args.min_improvement}", file=sys.stderr)
        return 1
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        challenger = load_model(args.model)
        with tempfile.TemporaryDirectory() as work:
            champion, arn = _champion(args, Path(work))
            report = compare(challenger, champion, arn, args.test, args.min_improvement)
        mlflow_info = challenger.artifact.get("mlflow") or {}
        if report["champion"]["metrics"] and not args.no_mlflow:
            log_test_metrics(mlflow_info, report["champion"]["metrics"], prefix="champion_test_")
    except (DataError, FileNotFoundError, ValueError, TrackingError, EndpointSourceError) as exc:
        print(f"champion failed: {exc}", file=sys.stderr)
        return 1
    except (ClientError, BotoCoreError) as exc:
        print(f"champion failed: reading the model registry: {exc}", file=sys.stderr)
        return 1
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / COMPARISON_NAME).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    champion_part = report["champion"]
    metric = report["primary_metric"]["name"]
    theirs = f"{champion_part['value']:.4f}" if champion_part["value"] is not None else champion_part["status"]
    print(f"champion: {metric} challenger {report['challenger']['value']:.4f}, champion {theirs} "
          f"({champion_part['model_package_arn'] or 'none'}), required {report['required']:.4f}: "
          f"{'passed' if report['passed'] else 'not better'}; wrote {args.output / COMPARISON_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

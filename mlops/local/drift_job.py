"""The scheduled drift and quality jobs in local mode: Scheduler's requests, run by the local executor as
SageMaker runs them.

In AWS the endpoint captures into `s3://<capture>/datacapture/<endpoint>/<variant>/yyyy/mm/dd/hh/`,
EventBridge Scheduler sends `pipelines.monitoring.drift_job_request` to CreateProcessingJob at every
`driftSchedule` tick, the job resolves what the endpoint serves, reads the last `driftWindowHours` of
capture and publishes `DriftDetected`, and SageMaker uploads its output folder to
`s3://<artifacts>/monitoring/<endpoint>/<execution id>/`.

Locally the same request runs in the image (or the image's venv) through `LocalExecutor`: the
definition's entrypoint, arguments and environment verbatim, the output uploaded to the embedded S3.
What stands in for AWS is here and nowhere else:

- the capture delivery: the local endpoint writes SageMaker's capture files to a folder
  (`<state>/capture`); `deliver_capture` makes the capture prefix of the embedded S3 hold exactly the
  complete `*.jsonl` files of that folder before each run (and the data bucket's `ground-truth/`
  prefix the label files of `<state>/ground-truth` before a quality run);
- the deployment: `register_endpoint` points the stack's endpoint in the embedded AWS at the
  monitored package (what `pulumi up` deploys in AWS), so `--baseline-from-endpoint` resolves it;
- the scheduler's clock: the run's `now` is appended as `--end` (a scheduled job reads the wall clock,
  and `--hours N` alone means the N full hours before the current hour; the local loop is the
  scheduler, its time injectable, and a window ends at the tick, not at the top of the hour);
- the endpoints: the AWS endpoint and credentials reach the job as `LocalAws.environment()`, as for
  pipeline steps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from mlops.local.aws import LocalAws
from mlops.local.executor import LocalExecutor
from mlops.local.runners import open_runner
from mlops.naming import GROUND_TRUTH_PREFIX, VARIANT, Arns, Names
from mlops.settings import StackSettings
from pipelines.monitoring import (
    OUTPUT_PATH,
    QUALITY_OUTPUT_PATH,
    drift_job_request,
    quality_job_request,
)

# The jobs' report contracts (model_code/drift/, model_code/quality/; a test keeps them equal).
REPORT_FORMAT = "mlops-stack/drift-report"
REPORT_FORMAT_VERSION = 1
REPORT_JSON = "drift_report.json"
REPORT_HTML = "drift_report.html"
QUALITY_REPORT_FORMAT = "mlops-stack/quality-report"
QUALITY_REPORT_FORMAT_VERSION = 1
QUALITY_REPORT_JSON = "quality_report.json"
QUALITY_REPORT_HTML = "quality_report.html"

STEP = "DriftJob"
QUALITY_STEP = "QualityJob"
"""The executor's step (folder `<work>/steps/<step>/`) of each job."""
_DELETE_BATCH = 1000


class DriftJobError(RuntimeError):
    """The drift job failed or left no report; the message names the job, its log and its report."""


@dataclass(frozen=True)
class DriftJob:
    """A finished drift job: its report (parsed), the report's local paths, its S3 output, where it ran."""

    name: str
    report: dict[str, Any]
    report_path: Path
    report_html: Path
    output_uri: str
    runner: str
    """`container` (the image) or `process` (the image's requirements venv)."""


def request(settings: StackSettings, execution_id: str) -> dict[str, Any]:
    """The request the stack's schedule sends, for one execution id (the role and key by their names)."""
    names = Names.of(settings)
    return drift_job_request(settings, role_arn=names.execution_role_arn, key_arn=Arns(names).alias,
                             execution_id=execution_id)


def register_endpoint(settings: StackSettings, sagemaker: Any, package_arn: str, version: int) -> None:
    """Make the stack's endpoint in the embedded AWS serve `package_arn` (model, config, endpoint)."""
    names = Names.of(settings)
    name = f"{names.endpoint}-v{version}"
    try:
        current = sagemaker.describe_model(ModelName=name)["PrimaryContainer"].get("ModelPackageName")
    except ClientError:
        current = None
    if current != package_arn:
        if current is not None:  # a restarted registry numbered another package with this version
            sagemaker.delete_endpoint_config(EndpointConfigName=name)
            sagemaker.delete_model(ModelName=name)
        sagemaker.create_model(ModelName=name, ExecutionRoleArn=names.execution_role_arn,
                               PrimaryContainer={"ModelPackageName": package_arn})
        sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[
            {"VariantName": VARIANT, "ModelName": name, "InitialInstanceCount": 1,
             "InstanceType": settings.endpoint_instance_type}])  # fmt: skip
    try:
        serving = sagemaker.describe_endpoint(EndpointName=names.endpoint)["EndpointConfigName"]
    except ClientError:
        serving = None
    if serving == name and current == package_arn:
        return
    if serving is not None:  # moto has no UpdateEndpoint: replace it
        sagemaker.delete_endpoint(EndpointName=names.endpoint)
    sagemaker.create_endpoint(EndpointName=names.endpoint, EndpointConfigName=name)


def deliver_capture(s3: Any, source: Path, bucket: str, prefix: str) -> int:
    """Mirror the complete capture files under `source` to `s3://bucket/prefix/`; the number of files."""
    wanted = {f"{prefix}/{p.relative_to(source).as_posix()}": p for p in sorted(source.rglob("*.jsonl")) if p.is_file()}
    present = {
        item["Key"]: item["Size"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/")
        for item in page.get("Contents", [])
    }
    for key, path in wanted.items():
        if present.get(key) != path.stat().st_size:  # a closed capture file never changes
            s3.upload_file(str(path), bucket, key)
    stale = [{"Key": key} for key in present if key not in wanted]
    for start in range(0, len(stale), _DELETE_BATCH):
        s3.delete_objects(Bucket=bucket, Delete={"Objects": stale[start:start + _DELETE_BATCH]})
    return len(wanted)


def run(settings: StackSettings, server: LocalAws, s3: Any, sagemaker: Any, *, capture: Path, end: datetime,
        execution_id: str, work_dir: Path, container: str, owner: Path) -> DriftJob:
    """Deliver `capture`, then run the schedule's drift job for the window ending at `end`."""
    names = Names.of(settings)
    deliver_capture(s3, capture, names.bucket("capture"), names.capture_prefix)
    job = request(settings, execution_id)
    job["AppSpecification"]["ContainerArguments"] += ["--end", f"{end:%Y-%m-%dT%H:%M:%SZ}"]
    return _run_job(server, s3, sagemaker, job, STEP, "drift job", OUTPUT_PATH, (REPORT_FORMAT, REPORT_FORMAT_VERSION),
                    REPORT_JSON, REPORT_HTML, execution_id=execution_id, work_dir=work_dir, container=container,
                    owner=owner)


def run_quality(settings: StackSettings, server: LocalAws, s3: Any, sagemaker: Any, *, capture: Path,
                ground_truth: Path, start: datetime, execution_id: str, work_dir: Path, container: str,
                owner: Path) -> DriftJob:
    """Deliver `capture` and `ground_truth`, then run the schedule's quality job for the window starting at `start`
    (the local loop is the scheduler: it names the window, where a scheduled job reads the clock)."""
    names = Names.of(settings)
    deliver_capture(s3, capture, names.bucket("capture"), names.capture_prefix)
    deliver_capture(s3, ground_truth, names.bucket("data"), GROUND_TRUTH_PREFIX)
    job = quality_job_request(settings, role_arn=names.execution_role_arn, key_arn=Arns(names).alias,
                              execution_id=execution_id)
    job["AppSpecification"]["ContainerArguments"] += ["--start", f"{start:%Y-%m-%dT%H:%M:%SZ}"]
    return _run_job(server, s3, sagemaker, job, QUALITY_STEP, "quality job", QUALITY_OUTPUT_PATH,
                    (QUALITY_REPORT_FORMAT, QUALITY_REPORT_FORMAT_VERSION), QUALITY_REPORT_JSON, QUALITY_REPORT_HTML,
                    execution_id=execution_id, work_dir=work_dir, container=container, owner=owner)


def _run_job(server: LocalAws, s3: Any, sagemaker: Any, job: dict[str, Any], step: str, what: str, output_path: str,
             contract: tuple[str, int], report_json: str, report_html: str, *, execution_id: str, work_dir: Path,
             container: str, owner: Path) -> DriftJob:
    report, report_path, uri, mode = run_processing_job(
        server, s3, sagemaker, job, step, what, output_path, contract, report_json, execution_id=execution_id,
        work_dir=work_dir, container=container, owner=owner)
    return DriftJob(job["ProcessingJobName"], report, report_path, report_path.parent / report_html, uri, mode)


def run_processing_job(server: LocalAws, s3: Any, sagemaker: Any, job: dict[str, Any], step: str, what: str,
                       output_path: str, contract: tuple[str, int], report_json: str, *, execution_id: str,
                       work_dir: Path, container: str, owner: Path) -> tuple[dict[str, Any], Path, str, str]:
    """The processing job `job` run by the local executor: (its report, checked against `contract`; the report's
    path; the job's S3 output; where it ran: container or process)."""
    definition = {"Version": "2020-12-01", "Parameters": [], "Steps": [{"Name": step, "Type": "Processing",
                                                                        "Arguments": job}]}
    with open_runner(container, ports=[server.port], mounts=[], owner=owner) as runner:
        result = LocalExecutor(definition, execution_id=execution_id, work_dir=work_dir, s3=s3, sagemaker=sagemaker,
                               environment=server.environment(), runner=runner).run()
        mode = runner.mode
    output = work_dir / "steps" / step / output_path.lstrip("/")
    report_path = output / report_json
    name = job["ProcessingJobName"]
    if result.status != "Succeeded":
        written = report_path if report_path.is_file() else f"{report_path} (not written)"
        raise DriftJobError(f"{what} {name} {result.failure.removeprefix(f'step {step} failed: ')}\n"
                            f"report {written}")
    try:
        report = json.loads(report_path.read_text())
    except (OSError, ValueError) as error:
        raise DriftJobError(f"{what} {name} exited 0 but left no readable report: {error}") from None
    if (report.get("format"), report.get("format_version")) != contract:
        raise DriftJobError(
            f"{report_path}: not a {contract[0]} v{contract[1]} report "
            f"(format={report.get('format')!r}, format_version={report.get('format_version')!r})"
        )
    uri = job["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"]
    return report, report_path, uri, mode

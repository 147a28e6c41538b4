"""The model registry of a stack: list, approve, reject, resolve "latest approved".

A stack's models live in one SageMaker model package group, `Names.of(settings).model_package_group`
(in the stack's account and region). Everything here goes through boto3, so the same code runs
against AWS and against the embedded moto server of local mode (`AWS_ENDPOINT_URL`).

Metadata convention (the training pipeline's Register step writes it; this module reads it)
------------------------------------------------------------------------------------------
Every package carries `CustomerMetadataProperties` (string -> string; SageMaker allows 50 keys,
keys <= 128 and values <= 256 characters of letters, digits, spaces and `_.:/=+-@`; no empty
values):

    metrics (decimal strings, test split, from evaluation.json `metrics.<name>.value`): every metric
    of the problem's task (model_code/metrics.py), e.g. "0.9132"
      "primary_metric"            the name of THE promotion metric, the one the pipeline's Condition
                                  step compared with MinTestMetric
      "primary_metric_direction"  higher | lower: which way it is better
      "problem"                   the problem's name (model_code/problem.py)
    lineage (what DESIGN.md's reproducibility promise needs):
      "mlflow_run_id"  MLflow run of the training step
      "git_sha"        commit of model_code/ and pipelines/ (also the image tag)
      "image_digest"   sha256:... of the image the package's container runs
      "code_bundle_sha256", "data_sha256"   content hashes of the code bundle and input data (Validate's
                       model_code.data.dataset_digest of the files it read)
      "dvc_rev"        the DVC revision (git commit) of the input when the run was started from one
                       (`--data-rev`, mlops/data_versions.py), else "none"
    release bookkeeping (written by `mlops release promote`, see mlops/release.py):
      "previous_pin:<stack>"   the package `<stack>` pinned before this one was promoted there

In a SageMaker pipeline a metric goes in as a string, e.g.
`Join(on="", values=[JsonGet(step_name=..., property_file=evaluation, json_path="metrics.<name>.value")])`.
`ModelMetrics.ModelQuality.Statistics` should point at the same evaluation.json (its
`binary_classification_metrics` block is the layout Studio renders); it is exposed as
`ModelPackage.evaluation_report_uri` but not downloaded: the metadata is the fast, S3-free source.

Updates write the package's whole mutable state (status, description, metadata) in one call:
AWS merges `CustomerMetadataProperties`, moto replaces them and resets omitted fields, and sending
the full state is correct for both.

Errors are `ReleaseError` (a ValueError), one line naming the package, group, stack or region at
fault. The environment variable read here is `AWS_ENDPOINT_URL` (see `Aws`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from mlops.naming import Names
from mlops.settings import StackSettings
from model_code import metrics as task_metrics

ENDPOINT_URL_ENV = "AWS_ENDPOINT_URL"
"""Environment variable: base URL of every AWS API (local mode: the embedded moto server). Unset
or empty talks to AWS. boto3 reads it too; naming it here keeps the one place that declares it."""

METRIC_KEYS = tuple(dict.fromkeys(m.name for task in task_metrics.BY_TASK.values() for m in task))
"""Every metric of any task: the metadata keys read as numbers."""
LINEAGE_KEYS = ("mlflow_run_id", "git_sha", "image_digest", "code_bundle_sha256", "data_sha256", "dvc_rev")
PREVIOUS_PIN_PREFIX = "previous_pin:"

APPROVED = "Approved"
REJECTED = "Rejected"
PENDING = "PendingManualApproval"
STATUSES = (APPROVED, REJECTED, PENDING)

_PACKAGE_ARN = re.compile(
    r"^arn:aws[a-z-]*:sagemaker:(?P<region>[a-z0-9-]+):(?P<account>[0-9]{12}):"
    r"model-package/(?P<group>[A-Za-z0-9-]+)/(?P<version>[0-9]+)$"
)
_NOT_FOUND = re.compile(r"not found|does not exist|could not find", re.IGNORECASE)


class ReleaseError(ValueError):
    """A registry or release operation cannot proceed; the message names what is at fault."""


class NotFound(ReleaseError):
    """AWS answered that the named resource does not exist (not: denied, throttled, unreachable)."""


class NothingApproved(NotFound):
    """The stack's group holds no Approved package."""


# --- AWS clients -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Aws:
    """How this process reaches AWS: the endpoint override and the retry budget.

    `Aws.from_env()` honours `AWS_ENDPOINT_URL` (local mode); tests pass `max_attempts=1` so an API
    moto lacks fails at once instead of retrying. Clients are cached per service and region.
    """

    endpoint_url: str | None = None
    max_attempts: int | None = None
    _clients: dict[tuple[str, str], Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_env(cls, max_attempts: int | None = None) -> Aws:
        return cls(endpoint_url=os.environ.get(ENDPOINT_URL_ENV) or None, max_attempts=max_attempts)

    def client(self, service: str, region: str) -> Any:
        key = (service, region)
        if key not in self._clients:
            retries: dict[str, Any] = {"mode": "standard"}
            if self.max_attempts is not None:
                retries["max_attempts"] = self.max_attempts
            self._clients[key] = boto3.client(
                service,  # type: ignore[call-overload]
                region_name=region,
                endpoint_url=self.endpoint_url,
                config=Config(retries=retries, connect_timeout=5, read_timeout=60),  # type: ignore[arg-type]
            )
        return self._clients[key]

    def sagemaker(self, region: str) -> Any:
        return self.client("sagemaker", region)


def aws_error(action: str, error: ClientError | BotoCoreError) -> ReleaseError:
    """A boto3 failure as one line: what we tried, AWS's error code and message."""
    if isinstance(error, ClientError):
        info = error.response.get("Error", {})
        return ReleaseError(f"{action}: {info.get('Code', 'Error')}: {info.get('Message', error)}")
    return ReleaseError(f"{action}: {error}")


def aws_call(action: str, function: Callable[..., Any], /, *, not_found: str | None = None,
             **request: Any) -> Any:
    """``function(**request)``, any boto3 failure a one-line ReleaseError (``not_found`` for a missing
    resource, when given)."""
    try:
        return function(**request)
    except ClientError as error:
        if not_found is not None and is_not_found(error):
            raise NotFound(not_found) from None
        raise aws_error(action, error) from None
    except BotoCoreError as error:
        raise aws_error(action, error) from None


def is_not_found(error: ClientError) -> bool:
    info = error.response.get("Error", {})
    return info.get("Code") in ("ResourceNotFound", "ValidationException") and bool(
        _NOT_FOUND.search(str(info.get("Message", "")))
    )


# --- the model ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PackageArn:
    arn: str
    region: str
    account: str
    group: str
    version: int


def parse_package_arn(arn: str) -> PackageArn:
    """A versioned model package ARN (…:model-package/<group>/<version>), or ReleaseError."""
    match = _PACKAGE_ARN.match(arn.strip())
    if not match:
        raise ReleaseError(
            f"{arn!r} is not a versioned model package ARN "
            "(arn:aws:sagemaker:<region>:<account>:model-package/<group>/<version>)"
        )
    return PackageArn(arn.strip(), match["region"], match["account"], match["group"], int(match["version"]))


@dataclass(frozen=True)
class ModelPackage:
    arn: str
    group: str
    version: int
    status: str
    created: datetime
    approval_description: str
    metrics: dict[str, float]
    lineage: dict[str, str]
    metadata: dict[str, str]
    """All CustomerMetadataProperties, as stored."""
    evaluation_report_uri: str | None
    image: str = ""
    model_data_url: str = ""
    """The inference container's image and model data (empty when the package has none)."""

    @property
    def region(self) -> str:
        return parse_package_arn(self.arn).region

    @property
    def primary_metric_name(self) -> str:
        """The metric promotion compares (the package's `primary_metric`); empty when unrecorded."""
        return self.metadata.get("primary_metric", "")

    @property
    def higher_is_better(self) -> bool:
        return self.metadata.get("primary_metric_direction", "higher") != "lower"

    @property
    def primary_metric(self) -> float | None:
        return self.metrics.get(self.primary_metric_name) if self.primary_metric_name else None

    def previous_pin(self, stack: str) -> str | None:
        """The package `stack` pinned before this one was promoted there (None if not recorded)."""
        return self.metadata.get(PREVIOUS_PIN_PREFIX + stack) or None

    @classmethod
    def from_description(cls, description: dict[str, Any]) -> ModelPackage:
        arn = description["ModelPackageArn"]
        metadata = dict(description.get("CustomerMetadataProperties") or {})
        metrics: dict[str, float] = {}
        for key in METRIC_KEYS:
            if key in metadata:
                try:
                    metrics[key] = float(metadata[key])
                except ValueError:
                    raise ReleaseError(
                        f"model package {arn}: CustomerMetadataProperties[{key!r}] = {metadata[key]!r} is not a number"
                    ) from None
        quality = (description.get("ModelMetrics") or {}).get("ModelQuality") or {}
        container = ((description.get("InferenceSpecification") or {}).get("Containers") or [{}])[0]
        return cls(
            arn=arn,
            group=description.get("ModelPackageGroupName") or parse_package_arn(arn).group,
            version=int(description.get("ModelPackageVersion") or parse_package_arn(arn).version),
            status=description.get("ModelApprovalStatus", ""),
            created=description["CreationTime"],
            approval_description=description.get("ApprovalDescription") or "",
            metrics=metrics,
            lineage={key: metadata[key] for key in LINEAGE_KEYS if key in metadata},
            metadata=metadata,
            evaluation_report_uri=(quality.get("Statistics") or {}).get("S3Uri"),
            image=container.get("Image", ""),
            model_data_url=container.get("ModelDataUrl", ""),
        )


@dataclass(frozen=True)
class StatusChange:
    package: ModelPackage
    """The package after the change."""
    previous_status: str
    changed: bool


# --- reading ------------------------------------------------------------------------------------------


def describe_package(arn: str, *, aws: Aws | None = None) -> ModelPackage:
    """Any model package, by ARN (its region is taken from the ARN)."""
    aws = aws or Aws.from_env()
    parsed = parse_package_arn(arn)
    description = aws_call(f"describing model package {parsed.arn}",
                           aws.sagemaker(parsed.region).describe_model_package, ModelPackageName=parsed.arn,
                           not_found=f"model package {parsed.arn} not found (region {parsed.region})")
    return ModelPackage.from_description(description)


def get_package(settings: StackSettings, arn: str, *, aws: Aws | None = None) -> ModelPackage:
    """A package of this stack's group; ReleaseError if it is unknown or belongs to another group."""
    group = Names.of(settings).model_package_group
    parsed = parse_package_arn(arn)
    if parsed.region != settings.region or parsed.group.lower() != group.lower():
        raise ReleaseError(
            f"model package {parsed.arn} belongs to group {parsed.group} in {parsed.region}, "
            f"not to stack {settings.stack}'s group {group} in {settings.region}"
        )
    package = describe_package(parsed.arn, aws=aws)
    if package.group.lower() != group.lower():
        raise ReleaseError(
            f"model package {package.arn} belongs to group {package.group}, "
            f"not to stack {settings.stack}'s group {group}"
        )
    return package


def _require_group(settings: StackSettings, aws: Aws) -> str:
    group = Names.of(settings).model_package_group
    aws_call(f"describing model package group {group}",
             aws.sagemaker(settings.region).describe_model_package_group, ModelPackageGroupName=group,
             not_found=f"model package group {group} of stack {settings.stack} not found in {settings.region} "
                       f"(has `pulumi up -s {settings.stack}` run?)")
    return group


def _summaries(settings: StackSettings, aws: Aws, status: str | None) -> list[dict[str, Any]]:
    group = _require_group(settings, aws)
    request: dict[str, Any] = {"ModelPackageGroupName": group, "SortBy": "CreationTime", "SortOrder": "Descending"}
    if status is not None:
        request["ModelApprovalStatus"] = status
    summaries: list[dict[str, Any]] = []
    try:
        for page in aws.sagemaker(settings.region).get_paginator("list_model_packages").paginate(**request):
            summaries.extend(page["ModelPackageSummaryList"])
    except (ClientError, BotoCoreError) as error:
        raise aws_error(f"listing model packages of group {group}", error) from None
    # Newest first; the version breaks ties of equal creation times.
    return sorted(summaries, key=lambda s: (s["CreationTime"], int(s.get("ModelPackageVersion") or 0)), reverse=True)


def list_packages(
    settings: StackSettings, *, status: str | None = None, limit: int | None = None, aws: Aws | None = None
) -> list[ModelPackage]:
    """The stack's model packages, newest first, with status, creation time and metrics."""
    if status is not None and status not in STATUSES:
        raise ReleaseError(f"status {status!r} is not one of {', '.join(STATUSES)}")
    aws = aws or Aws.from_env()
    summaries = _summaries(settings, aws, status)
    if limit is not None:
        summaries = summaries[:limit]
    return [describe_package(s["ModelPackageArn"], aws=aws) for s in summaries]


def latest_approved(settings: StackSettings, *, aws: Aws | None = None) -> ModelPackage:
    """The newest Approved package of the stack's group; ReleaseError if there is none."""
    aws = aws or Aws.from_env()
    summaries = _summaries(settings, aws, APPROVED)
    if not summaries:
        group = Names.of(settings).model_package_group
        raise NothingApproved(
            f"no approved model package in group {group} of stack {settings.stack} ({settings.region}); "
            "approve one with `mlops model approve`"
        )
    return describe_package(summaries[0]["ModelPackageArn"], aws=aws)


# --- writing ------------------------------------------------------------------------------------------


def update_package(
    package: ModelPackage,
    *,
    status: str | None = None,
    description: str | None = None,
    set_metadata: dict[str, str] | None = None,
    remove_metadata: tuple[str, ...] = (),
    aws: Aws | None = None,
) -> ModelPackage:
    """Write a package's status, approval description and metadata in one UpdateModelPackage call.

    Fields not given keep their current values (they are re-sent: see the module docstring).
    """
    aws = aws or Aws.from_env()
    metadata = {k: v for k, v in {**package.metadata, **(set_metadata or {})}.items() if k not in remove_metadata}
    request: dict[str, Any] = {"ModelPackageArn": package.arn}
    new_status = status or package.status
    if new_status:
        request["ModelApprovalStatus"] = new_status
    new_description = package.approval_description if description is None else description
    if new_description:
        request["ApprovalDescription"] = new_description[:1024]
    if metadata:
        request["CustomerMetadataProperties"] = metadata
    removed = [key for key in remove_metadata if key in package.metadata]
    if removed:
        request["CustomerMetadataPropertiesToRemove"] = removed
    try:
        aws.sagemaker(parse_package_arn(package.arn).region).update_model_package(**request)
    except (ClientError, BotoCoreError) as error:
        raise aws_error(f"updating model package {package.arn}", error) from None
    return describe_package(package.arn, aws=aws)


def _set_status(settings: StackSettings, arn: str, status: str, description: str, aws: Aws | None) -> StatusChange:
    aws = aws or Aws.from_env()
    package = get_package(settings, arn, aws=aws)
    if package.status == status:
        return StatusChange(package, package.status, changed=False)
    updated = update_package(package, status=status, description=description, aws=aws)
    return StatusChange(updated, package.status, changed=True)


def approve(settings: StackSettings, arn: str, *, description: str = "", aws: Aws | None = None) -> StatusChange:
    """Approve a package of the stack's group (a no-op if it already is)."""
    return _set_status(settings, arn, APPROVED, description or "approved with `mlops model approve`", aws)


def reject(settings: StackSettings, arn: str, *, description: str, aws: Aws | None = None) -> StatusChange:
    """Reject a package of the stack's group; `description` says why (stored as ApprovalDescription)."""
    if not description.strip():
        raise ReleaseError(f"rejecting model package {arn} needs a reason (the approval description)")
    return _set_status(settings, arn, REJECTED, description, aws)

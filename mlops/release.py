"""Releases: promote a model package to a stack, roll a stack back, verify what an endpoint runs.

A stack's model is chosen by one key of its stack file, `mlops-stack:approvedModelPackageArn`
(empty: the endpoint follows the stack's latest approved package). `promote` and `rollback` only
rewrite that line of `Pulumi.<stack>.yaml` — a reviewed change that CI deploys with
`pulumi up -s <stack>`; `verify` checks afterwards that the endpoint really serves it.

Stack file edits are ruamel.yaml round trips (indentation taken from the file): comments, key
order and quoting stay as they are. When the key exists, ruamel's rendering of the pin line is
spliced into the original text, so every other byte stays; when it is absent, the line is inserted
after the key that precedes it in StackSettings' declaration order, and every other line of the
round trip must come out byte-identical, else the file is left alone and ReleaseError names the
line ruamel would reformat. The new text is validated as settings first; the file is replaced
atomically.

Rollback: where is "the previous pin"?
--------------------------------------
`promote` records the pin it replaces on the promoted package itself, in its
CustomerMetadataProperties: `previous_pin:<target stack>` = the replaced ARN (removed when the
stack had no pin). `rollback(stack_file)` reads the current pin's record and pins that package;
rolling back again follows the record of that package, so repeated rollbacks walk back through
the promotion history, per target stack. Why there:
- no new settings key: the stack file stays one line per decision, and the record cannot drift
  from a hand edit of a second key;
- registry order ("the approved package before the current one") is wrong for a promotion
  target: dev approves many packages the target never ran; rolling prod back to one of those
  would ship an untested model;
- the git history of the stack file is the truth for reviewed changes, but CI clones are shallow
  and a tool that runs `git log` on a temp copy has nothing to read;
- the registry is where lineage already lives, it is readable cross-account
  (DescribeModelPackage via the group's resource policy, unlike ListTags), and a stale record (a
  promotion whose merge request was dropped) is harmless: it is rewritten by the next promotion
  of that package and only read while that package is pinned.
`git revert` of the pin commit remains the other way back; both produce the same one-line change.

Errors are `ReleaseError` (from mlops.registry), one line naming the file, key, stack, package
or endpoint at fault.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mlops.comparison import Runner, SageMakerJobs, SameData, compare
from mlops.naming import Names
from mlops.registry import (
    APPROVED,
    PREVIOUS_PIN_PREFIX,
    Aws,
    ModelPackage,
    ReleaseError,
    aws_call,
    describe_package,
    get_package,
    latest_approved,
    update_package,
)
from mlops.settings import SettingsError, StackSettings, config_key, load_stack_file
from mlops.stack_files import StackFileError, write_settings
from pipelines.training import ONNX_EXPORT_KEY

PIN_KEY = config_key("approved_model_package_arn")  # mlops-stack:approvedModelPackageArn
IMAGE_KEY = config_key("approved_model_image_uri")  # mlops-stack:approvedModelImageUri, written with the pin

__all__ = [
    "IMAGE_KEY",
    "PIN_KEY",
    "PinChange",
    "ReleaseError",
    "VerifyReport",
    "promote",
    "rollback",
    "verify",
    "write_pin",
]


@dataclass(frozen=True)
class PinChange:
    """What promote or rollback did to a stack file."""

    stack: str
    stack_file: Path
    old_arn: str
    """The pin before ("" when the stack followed its latest approved package)."""
    new_arn: str
    changed: bool
    """False when the stack already pinned `new_arn` (nothing written)."""
    metric: str
    old_metric: float | None
    new_metric: float | None
    forced: bool
    diff: str
    """Unified diff of the stack file ("" when unchanged)."""
    same_data: SameData | None = None
    """promote: both models scored on the candidate's test split (None: the target had no pin, or forced)."""


@dataclass(frozen=True)
class VerifyReport:
    stack: str
    endpoint: str
    endpoint_arn: str
    status: str
    endpoint_config: str
    models: tuple[str, ...]
    package_arn: str
    """The package the endpoint serves (== the expected one, or verify raised)."""
    smoke_response: str
    """Start of the smoke invocation's response body (at most 200 characters)."""
    invoked_variant: str


# --- stack files -------------------------------------------------------------------------------------


def _load_target(stack_file: Path) -> StackSettings:
    try:
        return load_stack_file(Path(stack_file))
    except SettingsError as error:
        raise ReleaseError(str(error)) from None


def write_pin(stack_file: Path, arn: str, image: str) -> tuple[str, str]:
    """Set the stack file's pin to `arn` and its image (the package's container image, which the drift and
    quality jobs of a stack without imageTag run) in one write, changing only those lines. Returns (old text,
    new text)."""
    try:
        return write_settings(stack_file, {PIN_KEY: arn, IMAGE_KEY: image})
    except StackFileError as error:
        raise ReleaseError(str(error)) from None


def _diff(path: Path, old: str, new: str) -> str:
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{path.name}", f"b/{path.name}"
        )
    )


# --- promote and rollback ------------------------------------------------------------------------------


def _source_package(settings: StackSettings, package_arn: str | None, aws: Aws) -> ModelPackage:
    if package_arn is None:
        return latest_approved(settings, aws=aws)
    package = get_package(settings, package_arn, aws=aws)
    if package.status != APPROVED:
        raise ReleaseError(
            f"model package {package.arn} is {package.status}; only Approved packages are promoted "
            "(`mlops model approve` first)"
        )
    return package


def promote(
    from_settings: StackSettings,
    to_stack_file: Path,
    *,
    package_arn: str | None = None,
    force: bool = False,
    aws: Aws | None = None,
    run_comparison: Runner | None = None,
) -> PinChange:
    """Pin the source stack's latest approved package (or `package_arn`, of the source's group) in
    the target stack file.

    Refused (unless `force`): the package's primary metric (its `primary_metric` metadata) is
    missing or does not clear the target's evaluationMinMetric (when set) in the metric's direction;
    or, when the target pins a model, the two cannot be compared (another primary metric, no recorded
    test split) or the candidate, scored beside the pinned model on the candidate's own test split
    (`mlops.comparison`: a processing job `run_comparison` runs, a SageMaker job in the source stack by
    default), does not reach the pinned model's score plus the target's promotionMinImprovement. On
    success the replaced pin is recorded on the promoted package (`previous_pin:<target>`) for
    `rollback`, then the file is written.
    """
    aws = aws or Aws.from_env()
    target_file = Path(to_stack_file)
    target = _load_target(target_file)
    if target.region != from_settings.region:
        raise ReleaseError(
            f"stack {target.stack} deploys to {target.region}, stack {from_settings.stack}'s models are in "
            f"{from_settings.region}: SageMaker serves only artifacts of the endpoint's region, so promotion "
            "is between stacks of one region"
        )
    package = _source_package(from_settings, package_arn, aws)
    _check_runtime(package, target, target_file)
    old_arn = target.approved_model_package_arn
    new_metric = package.primary_metric
    metric = package.primary_metric_name

    if old_arn == package.arn:
        return PinChange(target.stack, target_file, old_arn, package.arn, False, metric, new_metric, new_metric,
                         force, "")

    old_metric: float | None = None
    old_name = ""
    if old_arn:
        try:
            old = describe_package(old_arn, aws=aws)
            old_metric, old_name = old.primary_metric, old.primary_metric_name
        except ReleaseError as error:
            if not force:
                raise ReleaseError(f"stack {target.stack}'s pinned package ({target_file.name}): {error}") from None
    same_data = None
    if not force:
        _check_promotion(package, target, target_file, old_arn, old_name, old_metric)
        if old_arn:
            same_data = compare(from_settings, package, old_arn, target.min_improvement,
                                run_comparison or SageMakerJobs(aws, from_settings.region, source=from_settings))
            _check_same_data(package, target, old_arn, same_data)

    record = PREVIOUS_PIN_PREFIX + target.stack
    if old_arn:
        if package.metadata.get(record) != old_arn:
            update_package(package, set_metadata={record: old_arn}, aws=aws)
    elif record in package.metadata:
        update_package(package, remove_metadata=(record,), aws=aws)

    old_text, new_text = write_pin(target_file, package.arn, package.image)
    return PinChange(
        stack=target.stack,
        stack_file=target_file,
        old_arn=old_arn,
        new_arn=package.arn,
        changed=True,
        metric=metric,
        old_metric=old_metric,
        new_metric=new_metric,
        forced=force,
        diff=_diff(target_file, old_text, new_text),
        same_data=same_data,
    )


def _check_runtime(package: ModelPackage, target: StackSettings, target_file: Path) -> None:
    """A stack serving with onnxruntime takes only packages with an ONNX export: its container would not start
    on another (no force: this is not a judgement of quality)."""
    if target.serve_runtime == "onnx" and package.metadata.get(ONNX_EXPORT_KEY) != "exported":
        recorded = package.metadata.get(ONNX_EXPORT_KEY)
        raise ReleaseError(
            f"stack {target.stack} serves with onnxruntime (serveRuntime: onnx, {target_file.name}), and model "
            f"package {package.arn} has no ONNX export ({ONNX_EXPORT_KEY}: "
            f"{recorded if recorded is not None else 'not recorded'}); its training job's artifact says why")


def _check_same_data(package: ModelPackage, target: StackSettings, old_arn: str, same: SameData) -> None:
    if same.pinned is None:
        raise ReleaseError(f"model package {package.arn} and stack {target.stack}'s pinned {old_arn} cannot be "
                           f"compared on the same data ({same.reason}; comparison job {same.job}); "
                           "force to promote anyway")
    if not same.passed:
        raise ReleaseError(
            f"model package {package.arn} scores {same.metric} {same.candidate:.4f} on its test split "
            f"({same.test_data_uri}), where stack {target.stack}'s pinned {old_arn} scores {same.pinned:.4f}; "
            f"promotion needs {'at least' if package.higher_is_better else 'at most'} {same.required:.4f} "
            f"(promotionMinImprovement {target.min_improvement:g}; comparison job {same.job}); force to override")


def _check_promotion(package: ModelPackage, target: StackSettings, target_file: Path, old_arn: str, old_name: str,
                     old_metric: float | None) -> None:
    """Why `package` may not replace the target's pin `old_arn` (ReleaseError), or nothing."""
    metric, value = package.primary_metric_name, package.primary_metric
    if value is None:
        raise ReleaseError(
            f"model package {package.arn} records no primary metric ({'primary_metric' if not metric else metric!r}) "
            f"in its CustomerMetadataProperties; cannot compare it with stack {target.stack}'s model "
            "(force to promote anyway)"
        )
    direction = "at least" if package.higher_is_better else "at most"
    if target.evaluation_min_metric and not _clears(package, float(target.evaluation_min_metric)):
        raise ReleaseError(
            f"model package {package.arn} has {metric} {value:.4f}; stack {target.stack}'s evaluationMinMetric "
            f"asks {direction} {float(target.evaluation_min_metric):.4f} ({target_file.name})"
        )
    if not old_arn:
        return
    if old_metric is None or old_name != metric:
        raise ReleaseError(
            f"stack {target.stack}'s pinned package {old_arn} records "
            + (f"primary metric {old_name!r}, not {metric!r}" if old_metric is not None else "no primary metric")
            + f"; cannot tell whether {package.arn} is better (force to promote anyway)"
        )


def _clears(package: ModelPackage, threshold: float) -> bool:
    value = package.primary_metric
    assert value is not None
    return value >= threshold if package.higher_is_better else value <= threshold


def rollback(stack_file: Path, *, force: bool = False, aws: Aws | None = None) -> PinChange:
    """Pin the package the stack pinned before its current one (recorded by `promote`).

    Refused when the stack has no pin, the pinned package recorded no predecessor for this stack,
    or (unless `force`) the predecessor is no longer Approved.
    """
    aws = aws or Aws.from_env()
    path = Path(stack_file)
    target = _load_target(path)
    current_arn = target.approved_model_package_arn
    if not current_arn:
        raise ReleaseError(
            f"{path.name}: {PIN_KEY} is empty: stack {target.stack} pins no package, so there is nothing to roll back"
        )
    try:
        current = describe_package(current_arn, aws=aws)
    except ReleaseError as error:
        raise ReleaseError(f"stack {target.stack}'s pinned package ({path.name}): {error}") from None
    previous_arn = current.previous_pin(target.stack)
    if previous_arn is None:
        raise ReleaseError(
            f"no previous pin of stack {target.stack} is recorded on its pinned package {current_arn} "
            f"({path.name}): it was the stack's first promoted package; pin one with promote --package"
        )
    try:
        previous = describe_package(previous_arn, aws=aws)
    except ReleaseError as error:
        raise ReleaseError(f"stack {target.stack}'s previous pin (recorded on {current_arn}): {error}") from None
    _check_runtime(previous, target, path)
    if previous.status != APPROVED and not force:
        raise ReleaseError(
            f"stack {target.stack}'s previous pin {previous_arn} is {previous.status} now; "
            "roll back to it with force, or promote another package"
        )
    old_text, new_text = write_pin(path, previous.arn, previous.image)
    return PinChange(
        stack=target.stack,
        stack_file=path,
        old_arn=current_arn,
        new_arn=previous.arn,
        changed=True,
        metric=current.primary_metric_name,
        old_metric=current.primary_metric,
        new_metric=previous.primary_metric,
        forced=force,
        diff=_diff(path, old_text, new_text),
    )


# --- verify ---------------------------------------------------------------------------------------------


def _config_packages(sagemaker: Any, config_name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(model names, model package ARNs) served by an endpoint config's production variants."""
    config = aws_call(
        f"describing endpoint config {config_name}", sagemaker.describe_endpoint_config, EndpointConfigName=config_name
    )
    models: list[str] = []
    packages: list[str] = []
    for variant in config.get("ProductionVariants", []):
        model_name = variant["ModelName"]
        models.append(model_name)
        model = aws_call(f"describing model {model_name}", sagemaker.describe_model, ModelName=model_name)
        containers = [model["PrimaryContainer"]] if model.get("PrimaryContainer") else model.get("Containers", [])
        packages.extend(container.get("ModelPackageName") or f"<no package: {model_name}>" for container in containers)
    return tuple(models), tuple(dict.fromkeys(packages))


def _newer_config_serving(sagemaker: Any, endpoint: str, current: str, since: datetime, expected: str) -> str | None:
    """A config of this endpoint created after the one in use that serves `expected`: the trace of a
    deployment SageMaker rolled back."""
    listed = aws_call(
        f"listing endpoint configs of {endpoint}",
        sagemaker.list_endpoint_configs,
        NameContains=endpoint,
        SortBy="CreationTime",
        SortOrder="Descending",
        MaxResults=20,
    )
    for summary in listed.get("EndpointConfigs", []):
        name = summary["EndpointConfigName"]
        if name == current or not name.startswith(endpoint) or summary["CreationTime"] <= since:
            continue
        try:
            if _config_packages(sagemaker, name)[1] == (expected,):
                return name
        except ReleaseError:
            continue
    return None


def expected_package(settings: StackSettings, explicit: str | None = None, *, aws: Aws | None = None) -> str:
    """What the stack's endpoint should serve: `explicit`, else its pin, else its latest approved package
    (NotFound when it has none: no group yet, or nothing approved)."""
    return explicit or settings.approved_model_package_arn or latest_approved(settings, aws=aws).arn


def verify(
    settings: StackSettings,
    expected_package_arn: str | None = None,
    *,
    payload: str | bytes,
    content_type: str = "text/csv",
    expected_endpoint_config: str | None = None,
    aws: Aws | None = None,
) -> VerifyReport:
    """Check the stack's endpoint after a deployment, then invoke it once with `payload`.

    Expected package: `expected_package_arn`, else the stack's pin, else its latest approved
    package. Checks: the endpoint exists and is InService; it runs `expected_endpoint_config` when
    given; every production variant's model serves the expected package (a blue/green deployment
    SageMaker rolled back leaves the endpoint InService on the old config: this catches it and names
    the newer config that did not take); a smoke invocation answers with a non-empty body.
    `payload` is one request in `content_type` (a CSV row of the model's features).
    """
    aws = aws or Aws.from_env()
    names = Names.of(settings)
    expected = expected_package(settings, expected_package_arn, aws=aws)
    sagemaker = aws.sagemaker(settings.region)
    endpoint_name = names.endpoint
    endpoint = aws_call(f"describing endpoint {endpoint_name}", sagemaker.describe_endpoint, EndpointName=endpoint_name,
                        not_found=f"endpoint {endpoint_name} of stack {settings.stack} not found in {settings.region}: "
                                  f"nothing is deployed (run `pulumi up -s {settings.stack}`)")

    status = endpoint["EndpointStatus"]
    if status != "InService":
        reason = f": {endpoint['FailureReason']}" if endpoint.get("FailureReason") else ""
        raise ReleaseError(
            f"endpoint {endpoint_name} of stack {settings.stack} is {status}, not InService{reason}"
            + (
                " (a deployment is in progress; verify again when it ends)"
                if status in ("Updating", "Creating", "RollingBack")
                else ""
            )
        )
    config_name = endpoint["EndpointConfigName"]
    if expected_endpoint_config and config_name != expected_endpoint_config:
        raise ReleaseError(
            f"endpoint {endpoint_name} runs endpoint config {config_name}, expected {expected_endpoint_config}: "
            "the deployment did not take (SageMaker rolls back a failed blue/green deployment silently)"
        )
    models, packages = _config_packages(sagemaker, config_name)
    if packages != (expected,):
        served = ", ".join(packages) or "no model package"
        message = (
            f"endpoint {endpoint_name} serves model package {served} (endpoint config {config_name}, "
            f"model {', '.join(models)}), expected {expected}"
        )
        config = aws_call(
            f"describing endpoint config {config_name}",
            sagemaker.describe_endpoint_config,
            EndpointConfigName=config_name,
        )
        newer = _newer_config_serving(sagemaker, endpoint_name, config_name, config["CreationTime"], expected)
        if newer:
            message += (
                f"; the newer endpoint config {newer} serves {expected} but is not in use: "
                "SageMaker rolled the deployment back (check the endpoint's alarms and events)"
            )
        raise ReleaseError(message)

    runtime = aws.client("sagemaker-runtime", settings.region)
    body = payload.encode() if isinstance(payload, str) else payload
    response = aws_call(
        f"smoke invocation of endpoint {endpoint_name}",
        runtime.invoke_endpoint,
        EndpointName=endpoint_name,
        ContentType=content_type,
        Body=body,
    )
    answer = response["Body"].read()
    if not answer:
        raise ReleaseError(f"smoke invocation of endpoint {endpoint_name} returned an empty body")
    text = answer.decode("utf-8", errors="replace")
    return VerifyReport(
        stack=settings.stack,
        endpoint=endpoint_name,
        endpoint_arn=endpoint["EndpointArn"],
        status=status,
        endpoint_config=config_name,
        models=models,
        package_arn=expected,
        smoke_response=re.sub(r"\s+", " ", text)[:200],
        invoked_variant=response.get("InvokedProductionVariant", ""),
    )

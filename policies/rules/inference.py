"""Inference beyond the real-time endpoint: scheduled Batch Transform jobs, serverless and async endpoints.

An async endpoint configuration (asyncInferenceConfig) writes its answers and failures to S3 under a customer-managed
key and announces them on SNS topics. A serverless variant gets no data capture from SageMaker, so its model's
container delivers its own (MLOPS_CAPTURE_S3_URI, model_code/capture.py), where drift monitoring reads it.

A batch schedule is an EventBridge Scheduler schedule whose target is SageMaker's CreateTransformJob, its request
(the target's input) written the way `pipelines/batch.py` builds it. Its output and volume are encrypted with one
customer-managed key (a KMS key ARN: `alias/aws/...` and empty values are AWS-managed), and its inputs are captured
with the same key, so drift monitoring sees what the job scored.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pulumi_policy import (
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from ._common import dig, inputs, is_blank, is_unknown, plain, show
from .network import MODEL
from .sagemaker import ENDPOINT_CONFIG, models_by_variant_kind

SCHEDULE = frozenset({"aws:scheduler/schedule:Schedule"})
CREATE_TRANSFORM_JOB = "arn:aws:scheduler:::aws-sdk:sagemaker:createTransformJob"
KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$")  # mrk-... too
TRANSFORM_KEYS = (("TransformOutput", "KmsKeyId"), ("TransformResources", "VolumeKmsKeyId"),
                  ("DataCaptureConfig", "KmsKeyId"))


def _transform_request(args: ResourceValidationArgs, report_violation: ReportViolation) -> dict[str, Any] | None:
    """The CreateTransformJob request a schedule sends; None when it sends another or is unknown (preview)."""
    props = inputs(args, SCHEDULE)
    target = props.get("target") if props is not None else None
    if not isinstance(target, dict) or dig(target, "arn") != CREATE_TRANSFORM_JOB or is_unknown(dig(target, "input")):
        return None
    try:
        request = json.loads(dig(target, "input"))
    except (TypeError, json.JSONDecodeError):
        report_violation("target.input is not a JSON CreateTransformJob request", None)
        return None
    if not isinstance(request, dict):
        report_violation("target.input is not a JSON object (a CreateTransformJob request)", None)
        return None
    return request


def batch_transform_encrypted(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    request = _transform_request(args, report_violation)
    if request is None:
        return
    keys = {".".join(path): dig(request, *path) for path in TRANSFORM_KEYS}
    for where, key in keys.items():
        if not isinstance(key, str) or not KEY_ARN.match(key):
            report_violation(f"{where} is {show(key)}; a batch job's output, volume and capture are encrypted with "
                             "the stack's customer-managed key (arn:aws:kms:<region>:<account>:key/<id>)", None)
    if len({k for k in keys.values() if isinstance(k, str) and KEY_ARN.match(k)}) > 1:
        report_violation(f"the job encrypts with {len(set(keys.values()))} different keys "
                         f"({', '.join(sorted(map(str, set(keys.values()))))}); one stack key encrypts them all", None)
    schedule_key = (inputs(args, SCHEDULE) or {}).get("kmsKeyArn")
    if is_blank(schedule_key):
        report_violation("kmsKeyArn is not set: the schedule holds the job's request, encrypt it with the stack key",
                         None)


def batch_transform_captured(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    request = _transform_request(args, report_violation)
    if request is None:
        return
    destination = dig(request, "DataCaptureConfig", "DestinationS3Uri")
    if not isinstance(destination, str) or not destination.startswith("s3://"):
        report_violation(f"DataCaptureConfig.DestinationS3Uri is {show(destination)}; a batch job captures what it "
                         "scores (s3://<capture bucket>/...), where the drift job reads it", None)




def async_output_encrypted(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = inputs(args, ENDPOINT_CONFIG)
    output = dig(props, "asyncInferenceConfig", "outputConfig") if props is not None else None
    if output is None or is_unknown(output):
        return
    key = dig(output, "kmsKeyId")
    if not is_unknown(key) and (not isinstance(key, str) or not KEY_ARN.match(key)):
        report_violation(f"asyncInferenceConfig.outputConfig.kmsKeyId is {show(key)}; an async endpoint's answers "
                         "are encrypted with the stack's customer-managed key (arn:aws:kms:...:key/<id>)", None)
    for topic in ("successTopic", "errorTopic"):
        if is_blank(dig(output, "notificationConfig", topic)):
            report_violation(f"asyncInferenceConfig.outputConfig.notificationConfig.{topic} is not set: every answer "
                             "and every failure is announced", None)


def serverless_models_capture(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    kinds = models_by_variant_kind(args.resources)
    if kinds is None:
        return
    served = kinds[0]
    for resource in args.resources:
        props = plain(resource.props) if resource.resource_type in MODEL else None
        if props is None or props.get("name") not in served:
            continue
        uri = dig(props, "primaryContainer", "environment", "MLOPS_CAPTURE_S3_URI")
        if not is_unknown(uri) and not (isinstance(uri, str) and uri.startswith("s3://")):
            report_violation(f'model "{props.get("name")}" serves a serverless variant, which SageMaker captures '
                             f"nothing of, and its container's MLOPS_CAPTURE_S3_URI is {show(uri)}: drift "
                             "monitoring would see no traffic", resource.urn)


POLICIES = [
    ResourceValidationPolicy(
        name="async-output-encrypted",
        description="An async endpoint configuration writes its answers under a customer-managed key "
        "(outputConfig.kmsKeyId) and announces successes and errors on SNS topics.",
        validate=async_output_encrypted,
    ),
    StackValidationPolicy(
        name="serverless-models-capture",
        description="A model a serverless variant serves delivers its own data capture (MLOPS_CAPTURE_S3_URI), since "
        "SageMaker captures nothing there.",
        validate=serverless_models_capture,
    ),
    ResourceValidationPolicy(
        name="batch-transform-encrypted",
        description="A scheduled Batch Transform job (CreateTransformJob target) encrypts its output, volume and "
        "data capture with one customer-managed key, and its schedule with a key (kmsKeyArn).",
        validate=batch_transform_encrypted,
    ),
    ResourceValidationPolicy(
        name="batch-transform-captured",
        description="A scheduled Batch Transform job captures its inputs and outputs (DataCaptureConfig) for drift "
        "monitoring.",
        validate=batch_transform_captured,
    ),
]

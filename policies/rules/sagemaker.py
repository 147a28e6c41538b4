"""SageMaker rules: encryption of endpoints, captured data, job volumes and outputs, pipelines."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy

from ._common import InvalidDocument, as_list, dig, inputs, is_blank, is_unknown, parse_document, plain, show

ENDPOINT_CONFIG = frozenset({"aws:sagemaker/endpointConfiguration:EndpointConfiguration"})
ENDPOINT = frozenset({"aws:sagemaker/endpoint:Endpoint"})
PIPELINE = frozenset({"aws:sagemaker/pipeline:Pipeline"})
TRAINING_JOB = "aws:sagemaker/trainingJob:TrainingJob"
DATA_QUALITY_JOB = "aws:sagemaker/dataQualityJobDefinition:DataQualityJobDefinition"
MONITORING_SCHEDULE = "aws:sagemaker/monitoringSchedule:MonitoringSchedule"

_SCHEDULE_JOB = ("monitoringScheduleConfig", "monitoringJobDefinition")
# type -> (volume KMS key path, output KMS key path, inter-container encryption path)
JOB_PATHS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    TRAINING_JOB: (
        ("resourceConfig", "volumeKmsKeyId"),
        ("outputDataConfig", "kmsKeyId"),
        ("enableInterContainerTrafficEncryption",),
    ),
    DATA_QUALITY_JOB: (
        ("jobResources", "clusterConfig", "volumeKmsKeyId"),
        ("dataQualityJobOutputConfig", "kmsKeyId"),
        ("networkConfig", "enableInterContainerTrafficEncryption"),
    ),
    MONITORING_SCHEDULE: (
        (*_SCHEDULE_JOB, "monitoringResources", "clusterConfig", "volumeKmsKeyId"),
        (*_SCHEDULE_JOB, "monitoringOutputConfig", "kmsKeyId"),
        (*_SCHEDULE_JOB, "networkConfig", "enableInterContainerTrafficEncryption"),
    ),
}


def realtime_variants(config_props: dict[str, Any]) -> Any:
    """Production variants served by instances (not serverless); UNKNOWN when unknown."""
    variants = config_props.get("productionVariants")
    if is_unknown(variants):
        return variants
    return [v for v in as_list(variants) if is_blank(dig(v, "serverlessConfig"))]


def models_by_variant_kind(resources: Any) -> tuple[set[str], set[str]] | None:
    """(models serverless variants serve, models instance variants serve) over the stack's endpoint configurations;
    None while a variant, its model name or its kind is unknown (preview)."""
    serverless: set[str] = set()
    instance: set[str] = set()
    for resource in resources:
        if resource.resource_type not in ENDPOINT_CONFIG:
            continue
        variants = plain(resource.props).get("productionVariants")
        if is_unknown(variants):
            return None
        for variant in as_list(variants):
            model, kind = dig(variant, "modelName"), dig(variant, "serverlessConfig")
            if is_unknown(model) or is_unknown(kind):
                return None
            (serverless if kind else instance).add(model)
    return serverless, instance


def sagemaker_endpoint_explicit_name(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = inputs(args, ENDPOINT)
    if props is not None and is_blank(props.get("name")):
        report_violation(
            "name is not set; give the endpoint an explicit name (from mlops.naming) so its alarms and "
            "scaling targets can be matched to it",
            None,
        )


def sagemaker_endpoint_config_kms(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = inputs(args, ENDPOINT_CONFIG)
    if props is None:
        return
    variants = realtime_variants(props)  # serverless variants have no instance storage to encrypt
    if not is_unknown(variants) and variants and is_blank(props.get("kmsKeyArn")):
        report_violation(
            "kmsKeyArn is not set; endpoint storage must be encrypted with a customer-managed KMS key", None
        )


def sagemaker_data_capture_enabled(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = inputs(args, ENDPOINT_CONFIG)
    if props is None:
        return
    variants = realtime_variants(props)
    if is_unknown(variants) or not variants:
        return
    enabled = dig(props, "dataCaptureConfig", "enableCapture")
    if not is_unknown(enabled) and enabled is not True:
        report_violation(
            f"dataCaptureConfig.enableCapture is {show(enabled)}; real-time endpoints must capture requests "
            "and responses for drift monitoring",
            None,
        )


def sagemaker_data_capture_kms(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = inputs(args, ENDPOINT_CONFIG)
    if props is None:
        return
    capture = props.get("dataCaptureConfig")
    if is_blank(capture) or is_unknown(capture):  # no capture at all is reported by sagemaker-data-capture-enabled
        return
    if is_blank(dig(capture, "kmsKeyId")):
        report_violation(
            "dataCaptureConfig.kmsKeyId is not set; captured payloads must be encrypted with a "
            "customer-managed KMS key",
            None,
        )


def _job_value(args: ResourceValidationArgs, which: int) -> tuple[str, Any] | None:
    props = inputs(args, JOB_PATHS.keys())
    if props is None:
        return None
    if args.resource_type == MONITORING_SCHEDULE:
        job = dig(props, *_SCHEDULE_JOB)
        if is_unknown(job) or is_blank(job):  # the schedule references a job definition by name
            return None
    path = JOB_PATHS[args.resource_type][which]
    return ".".join(path), dig(props, *path)


def sagemaker_job_volume_kms(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    found = _job_value(args, 0)
    if found and is_blank(found[1]):
        report_violation(
            f"{found[0]} is not set; job storage volumes must be encrypted with a customer-managed KMS key",
            None,
        )


def sagemaker_job_output_kms(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    found = _job_value(args, 1)
    if found and is_blank(found[1]):
        report_violation(
            f"{found[0]} is not set; job outputs in S3 must be encrypted with a customer-managed KMS key",
            None,
        )


def sagemaker_inter_container_encryption(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    found = _job_value(args, 2)
    if found and not is_unknown(found[1]) and found[1] is not True:
        report_violation(f"{found[0]} is {show(found[1])}; must be true", None)


def sagemaker_pipeline_role(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = inputs(args, PIPELINE)
    if props is not None and is_blank(props.get("roleArn")):
        report_violation("roleArn is not set; pipelines must run under an explicit execution role", None)


# --- pipeline definition JSON ----------------------------------------------------------------------
# Steps[].Type / Steps[].Arguments follow the CreateTrainingJob / CreateProcessingJob API shapes.
# Condition steps nest further steps under Arguments.IfSteps / Arguments.ElseSteps; Tuning steps
# hold a training job under Arguments.TrainingJobDefinition.

_KMS_PATHS = {
    "Training": [("ResourceConfig", "VolumeKmsKeyId"), ("OutputDataConfig", "KmsKeyId")],
    "Tuning": [
        ("TrainingJobDefinition", "ResourceConfig", "VolumeKmsKeyId"),
        ("TrainingJobDefinition", "OutputDataConfig", "KmsKeyId"),
    ],
    "Processing": [
        ("ProcessingResources", "ClusterConfig", "VolumeKmsKeyId"),
        ("ProcessingOutputConfig", "KmsKeyId"),
    ],
}
_ICTE_PATHS = {
    "Training": ("EnableInterContainerTrafficEncryption",),
    "Tuning": ("TrainingJobDefinition", "EnableInterContainerTrafficEncryption"),
    "Processing": ("NetworkConfig", "EnableInterContainerTrafficEncryption"),
}


def _steps(steps: Any) -> Iterator[dict[str, Any]]:
    for step in as_list(steps):
        if not isinstance(step, dict):
            continue
        yield step
        if step.get("Type") == "Condition":
            yield from _steps(dig(step, "Arguments", "IfSteps"))
            yield from _steps(dig(step, "Arguments", "ElseSteps"))


def _pipeline_steps(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    props = inputs(args, PIPELINE)
    if props is None:
        return
    try:
        doc = parse_document(props.get("pipelineDefinition"))
    except InvalidDocument as exc:
        report_violation(f"pipelineDefinition {exc}", None)
        return
    if not doc or is_unknown(doc):  # absent (pipelineDefinitionS3Location) or unknown during preview
        return
    yield from pipeline_steps(doc)


def pipeline_steps(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(name, type, arguments) of every step of a pipeline definition, Condition branches included."""
    for step in _steps(doc.get("Steps")):
        arguments = step.get("Arguments")
        if isinstance(arguments, dict):
            yield str(step.get("Name")), str(step.get("Type")), arguments


def sagemaker_pipeline_steps_kms(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    for name, kind, arguments in _pipeline_steps(args, report_violation):
        for path in _KMS_PATHS.get(kind, []):
            if path[0] == "ProcessingOutputConfig" and is_blank(arguments.get(path[0])):
                continue  # a processing step without outputs writes nothing to S3
            if is_blank(dig(arguments, *path)):
                report_violation(
                    f'pipelineDefinition step "{name}" ({kind}) does not set Arguments.{".".join(path)}', None
                )


def sagemaker_pipeline_steps_inter_container(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    for name, kind, arguments in _pipeline_steps(args, report_violation):
        path = _ICTE_PATHS.get(kind)
        if path is None:
            continue
        value = dig(arguments, *path)
        if not is_unknown(value) and value is not True:
            report_violation(
                f'pipelineDefinition step "{name}" ({kind}) has Arguments.{".".join(path)} {show(value)}; must be true',
                None,
            )


POLICIES = [
    ResourceValidationPolicy(
        name="sagemaker-endpoint-explicit-name",
        description="SageMaker endpoints set `name` explicitly: the stack rules match an endpoint to its "
        "alarms (dimension EndpointName) and scaling targets (endpoint/<name>/variant/<variant>).",
        validate=sagemaker_endpoint_explicit_name,
    ),
    ResourceValidationPolicy(
        name="sagemaker-endpoint-config-kms",
        description="Endpoint configurations with an instance variant encrypt the instance storage with a "
        "customer-managed KMS key (kmsKeyArn); serverless variants have none.",
        validate=sagemaker_endpoint_config_kms,
    ),
    ResourceValidationPolicy(
        name="sagemaker-data-capture-enabled",
        description="Endpoint configurations with a real-time (instance) variant capture data "
        "(dataCaptureConfig.enableCapture true) for drift monitoring. Configurations whose variants are all "
        "serverless (serverlessConfig set) are exempt: serverless endpoints cannot capture data.",
        validate=sagemaker_data_capture_enabled,
    ),
    ResourceValidationPolicy(
        name="sagemaker-data-capture-kms",
        description="Captured endpoint payloads are encrypted with a customer-managed KMS key "
        "(dataCaptureConfig.kmsKeyId).",
        validate=sagemaker_data_capture_kms,
    ),
    ResourceValidationPolicy(
        name="sagemaker-job-volume-kms",
        description="Training jobs, data-quality job definitions and monitoring schedules with an inline job "
        "definition encrypt their storage volumes with a KMS key (volumeKmsKeyId).",
        validate=sagemaker_job_volume_kms,
    ),
    ResourceValidationPolicy(
        name="sagemaker-job-output-kms",
        description="Training jobs, data-quality job definitions and monitoring schedules with an inline job "
        "definition encrypt their S3 outputs with a KMS key (output config kmsKeyId).",
        validate=sagemaker_job_output_kms,
    ),
    ResourceValidationPolicy(
        name="sagemaker-inter-container-encryption",
        description="Training jobs, data-quality job definitions and inline "
        "monitoring job definitions encrypt "
        "traffic between their containers (enableInterContainerTrafficEncryption true).",
        validate=sagemaker_inter_container_encryption,
    ),
    ResourceValidationPolicy(
        name="sagemaker-pipeline-role",
        description="SageMaker pipelines run under an explicit execution role (roleArn).",
        validate=sagemaker_pipeline_role,
    ),
    ResourceValidationPolicy(
        name="sagemaker-pipeline-steps-kms",
        description="In the pipeline definition JSON, every Training and Tuning step sets "
        "ResourceConfig.VolumeKmsKeyId and OutputDataConfig.KmsKeyId, and every Processing step sets "
        "ProcessingResources.ClusterConfig.VolumeKmsKeyId and (when it has outputs) "
        "ProcessingOutputConfig.KmsKeyId; steps nested in Condition steps included. Definitions kept in S3 "
        "(pipelineDefinitionS3Location) cannot be read here.",
        validate=sagemaker_pipeline_steps_kms,
    ),
    ResourceValidationPolicy(
        name="sagemaker-pipeline-steps-inter-container",
        description="In the pipeline definition JSON, every Training/Tuning step sets "
        "EnableInterContainerTrafficEncryption true and every Processing step sets "
        "NetworkConfig.EnableInterContainerTrafficEncryption true.",
        validate=sagemaker_pipeline_steps_inter_container,
    ),
]

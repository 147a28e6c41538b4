"""The monitoring and promotion jobs: the CreateProcessingJob requests of the drift and quality schedules
(EventBridge Scheduler sends them) and of `mlops release promote`'s same-data comparison.

One definition, two readers: `infra/components/monitoring.py` puts it in the schedule's target, and
local mode (`mlops/local/drift_job.py`) runs it with the local executor, as SageMaker would. It
imports no Pulumi, so the control plane can build it without the Pulumi runtime.

`<aws.scheduler.execution-id>` is Scheduler's context attribute: each run's job name and output
prefix are unique.
"""

from __future__ import annotations

from mlops.naming import GROUND_TRUTH_PREFIX, Names
from mlops.settings import StackSettings
from pipelines.network import Vpc, existing_vpc, processing_network

EXECUTION_ID = "<aws.scheduler.execution-id>"
OUTPUT_PATH = "/opt/ml/processing/output/drift"
QUALITY_OUTPUT_PATH = "/opt/ml/processing/output/quality"
MAX_RUNTIME_S = 3600


def _processing_job(settings: StackSettings, *, name: str, step: str, arguments: list[str], output_path: str,
                    output_uri: str, role_arn: str, key_arn: str, vpc: Vpc | None, image_uri: str = "",
                    inputs: tuple[tuple[str, str, str], ...] = ()) -> dict:
    """A job of `image_uri`, else the stack's monitoring image (the pinned package's, else imageTag's): encrypted
    volume and output, tagged, one instance, in `vpc` (else the stack's existing subnets, if it names them; every
    such job calls AWS APIs, so none is isolated); `inputs` are (name, S3 URI, local path)."""
    names = Names.of(settings)
    request: dict = {
        "ProcessingJobName": name,
        "RoleArn": role_arn,
        "AppSpecification": {
            "ImageUri": image_uri or settings.monitoring_image_uri,
            "ContainerEntrypoint": ["python", "-m", "model_code", step],
            "ContainerArguments": [*arguments, "--output", output_path],
        },
        "Environment": {"AWS_DEFAULT_REGION": names.region},
        "ProcessingOutputConfig": {
            "KmsKeyId": key_arn,
            "Outputs": [
                {
                    "OutputName": step,
                    "S3Output": {"S3Uri": output_uri, "LocalPath": output_path, "S3UploadMode": "EndOfJob"},
                }
            ],
        },
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": 1,
                "InstanceType": settings.processing_instance_type,
                "VolumeSizeInGB": 30,
                "VolumeKmsKeyId": key_arn,
            }
        },
        "NetworkConfig": processing_network(vpc or existing_vpc(settings)),
        "StoppingCondition": {"MaxRuntimeInSeconds": MAX_RUNTIME_S},
        "Tags": [{"Key": k, "Value": v} for k, v in sorted(settings.tags.items())],
    }
    if inputs:
        request["ProcessingInputs"] = [
            {"InputName": input_name, "S3Input": {"S3Uri": uri, "LocalPath": local_path, "S3DataType": "S3Prefix",
                                                  "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated"}}
            for input_name, uri, local_path in inputs]
    return request


def drift_job_request(
    settings: StackSettings, *, role_arn: str, key_arn: str, execution_id: str = EXECUTION_ID, vpc: Vpc | None = None
) -> dict:
    """Drift of the last `driftWindowHours` of the stack endpoint's capture (and, with a batch schedule, of the rows its
    transform jobs scored: pipelines/batch.py) against the baseline of what it serves now, in the stack's monitoring
    image; `execution_id` is Scheduler's placeholder, or a local run's id."""
    names = Names.of(settings)
    return _processing_job(
        settings,
        name=f"{names.drift_job_prefix}-{execution_id}",
        step="drift",
        arguments=[
            "--input", f"s3://{names.bucket('capture')}/{names.capture_prefix}",
            *(["--batch-capture", f"s3://{names.bucket('capture')}/{names.batch_capture_prefix}"]
              if settings.batch_transform_schedule else []),
            "--baseline-from-endpoint", "--endpoint", names.endpoint,
            "--hours", str(settings.drift_window_hours),
            "--namespace", names.metrics_namespace,
        ],
        output_path=OUTPUT_PATH,
        output_uri=f"s3://{names.bucket('artifacts')}/{names.drift_output_prefix}/{execution_id}",
        role_arn=role_arn,
        key_arn=key_arn,
        vpc=vpc,
    )


def quality_job_request(
    settings: StackSettings, *, role_arn: str, key_arn: str, execution_id: str = EXECUTION_ID, vpc: Vpc | None = None
) -> dict:
    """The quality of the window whose labels are due now: ground truth under the data bucket's
    `ground-truth/` joined to the endpoint's capture, scored by the model it serves now (model_code/quality/)."""
    names = Names.of(settings)
    return _processing_job(
        settings,
        name=f"{names.quality_job_prefix}-{execution_id}",
        step="quality",
        arguments=[
            "--capture", f"s3://{names.bucket('capture')}/{names.capture_prefix}",
            "--ground-truth", f"s3://{names.bucket('data')}/{GROUND_TRUTH_PREFIX}",
            "--model-from-endpoint", "--endpoint", names.endpoint,
            "--hours", str(settings.quality_window_hours),
            "--label-delay-hours", str(settings.quality_label_delay_hours),
            "--threshold", repr(settings.quality_bar),
            "--namespace", names.metrics_namespace,
        ],
        output_path=QUALITY_OUTPUT_PATH,
        output_uri=f"s3://{names.bucket('artifacts')}/{names.quality_output_prefix}/{execution_id}",
        role_arn=role_arn,
        key_arn=key_arn,
        vpc=vpc,
    )


COMPARISON_OUTPUT_PATH = "/opt/ml/processing/output/comparison"
COMPARISON_MODEL_PATH = "/opt/ml/processing/input/model"
COMPARISON_TEST_PATH = "/opt/ml/processing/input/test"


def comparison_job_request(settings: StackSettings, *, image_uri: str, model_data_url: str, test_data_uri: str,
                           champion_arn: str, min_improvement: float, role_arn: str, key_arn: str,
                           execution_id: str, vpc: Vpc | None = None) -> dict:
    """A candidate (its model data, its test split) against `champion_arn` scored on that split
    (model_code/champion.py), in the candidate's image, in the stack that registered it."""
    names = Names.of(settings)
    return _processing_job(
        settings,
        name=f"{names.comparison_job_prefix}-{execution_id}",
        step="champion",
        arguments=["--model", COMPARISON_MODEL_PATH, "--test", COMPARISON_TEST_PATH,
                   "--champion-package", champion_arn, "--min-improvement", repr(float(min_improvement)),
                   "--region", names.region, "--no-mlflow"],
        output_path=COMPARISON_OUTPUT_PATH,
        output_uri=f"s3://{names.bucket('artifacts')}/{names.comparison_output_prefix}/{execution_id}",
        role_arn=role_arn,
        key_arn=key_arn,
        vpc=vpc,
        image_uri=image_uri,
        inputs=(("model", model_data_url, COMPARISON_MODEL_PATH), ("test", test_data_uri, COMPARISON_TEST_PATH)),
    )

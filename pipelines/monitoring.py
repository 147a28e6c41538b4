"""The scheduled drift and quality jobs: the CreateProcessingJob requests EventBridge Scheduler sends.

One definition, two readers: `infra/components/monitoring.py` puts it in the schedule's target, and
local mode (`mlops/local/drift_job.py`) runs it with the local executor, as SageMaker would. It
imports no Pulumi, so the control plane can build it without the Pulumi runtime.

`<aws.scheduler.execution-id>` is Scheduler's context attribute: each run's job name and output
prefix are unique.
"""

from __future__ import annotations

from mlops.naming import GROUND_TRUTH_PREFIX, Names
from mlops.settings import StackSettings

EXECUTION_ID = "<aws.scheduler.execution-id>"
OUTPUT_PATH = "/opt/ml/processing/output/drift"
QUALITY_OUTPUT_PATH = "/opt/ml/processing/output/quality"
MAX_RUNTIME_S = 3600


def _processing_job(settings: StackSettings, *, name: str, step: str, arguments: list[str], output_path: str,
                    output_uri: str, role_arn: str, key_arn: str) -> dict:
    """A scheduled job of the stack's image (`imageTag`): encrypted volume and output, tagged, one instance."""
    names = Names.of(settings)
    return {
        "ProcessingJobName": name,
        "RoleArn": role_arn,
        "AppSpecification": {
            "ImageUri": f"{names.ecr_url}:{settings.image_tag}",
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
        "NetworkConfig": {"EnableInterContainerTrafficEncryption": True},
        "StoppingCondition": {"MaxRuntimeInSeconds": MAX_RUNTIME_S},
        "Tags": [{"Key": k, "Value": v} for k, v in sorted(settings.tags.items())],
    }


def drift_job_request(
    settings: StackSettings, *, role_arn: str, key_arn: str, execution_id: str = EXECUTION_ID
) -> dict:
    """Drift of the last `driftWindowHours` of the stack endpoint's capture against the baseline of what it serves
    now, in the stack's image (`imageTag`); `execution_id` is Scheduler's placeholder, or a local run's id."""
    names = Names.of(settings)
    return _processing_job(
        settings,
        name=f"{names.drift_job_prefix}-{execution_id}",
        step="drift",
        arguments=[
            "--input", f"s3://{names.bucket('capture')}/{names.capture_prefix}",
            "--baseline-from-endpoint", "--endpoint", names.endpoint,
            "--hours", str(settings.drift_window_hours),
            "--namespace", names.metrics_namespace,
        ],
        output_path=OUTPUT_PATH,
        output_uri=f"s3://{names.bucket('artifacts')}/{names.drift_output_prefix}/{execution_id}",
        role_arn=role_arn,
        key_arn=key_arn,
    )


def quality_job_request(
    settings: StackSettings, *, role_arn: str, key_arn: str, execution_id: str = EXECUTION_ID
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
    )

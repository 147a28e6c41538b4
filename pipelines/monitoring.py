"""The scheduled drift job: the CreateProcessingJob request EventBridge Scheduler sends.

One definition, two readers: `infra/components/monitoring.py` puts it in the schedule's target, and
local mode (`mlops/local/drift_job.py`) runs it with the local executor, as SageMaker would. It
imports no Pulumi, so the control plane can build it without the Pulumi runtime.

`<aws.scheduler.execution-id>` is Scheduler's context attribute: each run's job name and output
prefix are unique.
"""

from __future__ import annotations

from mlops.naming import Names
from mlops.settings import StackSettings

EXECUTION_ID = "<aws.scheduler.execution-id>"
OUTPUT_PATH = "/opt/ml/processing/output/drift"
MAX_RUNTIME_S = 3600


def drift_job_request(
    settings: StackSettings, *, role_arn: str, key_arn: str, execution_id: str = EXECUTION_ID
) -> dict:
    """Drift of the last `driftWindowHours` of the stack endpoint's capture against the baseline of what it serves
    now, in the stack's image (`imageTag`); `execution_id` is Scheduler's placeholder, or a local run's id."""
    names = Names.of(settings)
    endpoint_name, capture_bucket, artifacts_bucket = names.endpoint, names.bucket("capture"), names.bucket("artifacts")
    return {
        "ProcessingJobName": f"{names.drift_job_prefix}-{execution_id}",
        "RoleArn": role_arn,
        "AppSpecification": {
            "ImageUri": f"{names.ecr_url}:{settings.image_tag}",
            "ContainerEntrypoint": ["python", "-m", "model_code", "drift"],
            "ContainerArguments": [
                "--input",
                f"s3://{capture_bucket}/{names.capture_prefix}",
                "--baseline-from-endpoint",
                "--endpoint",
                endpoint_name,
                "--hours",
                str(settings.drift_window_hours),
                "--namespace",
                names.metrics_namespace,
                "--output",
                OUTPUT_PATH,
            ],
        },
        "Environment": {"AWS_DEFAULT_REGION": names.region},
        "ProcessingOutputConfig": {
            "KmsKeyId": key_arn,
            "Outputs": [
                {
                    "OutputName": "drift",
                    "S3Output": {
                        "S3Uri": f"s3://{artifacts_bucket}/{names.drift_output_prefix}/{execution_id}",
                        "LocalPath": OUTPUT_PATH,
                        "S3UploadMode": "EndOfJob",
                    },
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

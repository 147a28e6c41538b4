"""The scheduled drift job: the CreateProcessingJob request EventBridge Scheduler sends.

One definition, two readers: `infra/components/monitoring.py` puts it in the schedule's target, and
local mode (`mlops/local/drift_job.py`) runs it with the local executor, as SageMaker would. It
imports no Pulumi, so the control plane can build it without the Pulumi runtime.

`<aws.scheduler.execution-id>` is Scheduler's context attribute: each run's job name and output
prefix are unique.
"""

from __future__ import annotations

from mlops.naming import Names

EXECUTION_ID = "<aws.scheduler.execution-id>"
OUTPUT_PATH = "/opt/ml/processing/output/drift"
MAX_RUNTIME_S = 3600


def drift_job_request(
    names: Names,
    *,
    endpoint_name: str,
    image_uri: str,
    capture_bucket: str,
    artifacts_bucket: str,
    metrics_namespace: str,
    instance_type: str,
    window_hours: int,
    tags: dict[str, str],
    role_arn: str,
    key_arn: str,
) -> dict:
    """Drift of the last `window_hours` of `endpoint_name`'s capture against the baseline of what it serves now."""
    return {
        "ProcessingJobName": f"{names.drift_job_prefix}-{EXECUTION_ID}",
        "RoleArn": role_arn,
        "AppSpecification": {
            "ImageUri": image_uri,
            "ContainerEntrypoint": ["python", "-m", "model_code", "drift"],
            "ContainerArguments": [
                "--input",
                f"s3://{capture_bucket}/datacapture/{endpoint_name}",
                "--baseline-from-endpoint",
                "--endpoint",
                endpoint_name,
                "--hours",
                str(window_hours),
                "--namespace",
                metrics_namespace,
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
                        "S3Uri": f"s3://{artifacts_bucket}/monitoring/{endpoint_name}/{EXECUTION_ID}",
                        "LocalPath": OUTPUT_PATH,
                        "S3UploadMode": "EndOfJob",
                    },
                }
            ],
        },
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": 1,
                "InstanceType": instance_type,
                "VolumeSizeInGB": 30,
                "VolumeKmsKeyId": key_arn,
            }
        },
        "NetworkConfig": {"EnableInterContainerTrafficEncryption": True},
        "StoppingCondition": {"MaxRuntimeInSeconds": MAX_RUNTIME_S},
        "Tags": [{"Key": k, "Value": v} for k, v in sorted(tags.items())],
    }

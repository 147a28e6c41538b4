"""The batch schedule's CreateTransformJob request: the stack's served model over every object under the data
bucket's `batchTransformInputPrefix`.

One definition, two readers: `infra/components/batch.py` puts it in the schedule's target (EventBridge Scheduler
sends it at every `batchTransformSchedule` tick), and `mlops batch run --local` takes its contract from it (content
type, split, strategy, payload), as the container sees it. It imports no Pulumi.

The model runs in its own VPC and network isolation (the stack's SageMaker model); SageMaker reads the input, writes
`<input key>.out` under the output prefix (one line per record: SplitType Line, AssembleWith Line) and records the
job's inputs and outputs as manifests under the capture bucket's `batch-datacapture/<endpoint>/` by the hour it
started, where the drift job reads them. Output, volume and capture are encrypted with the stack key.
"""

from __future__ import annotations

from mlops.naming import Names
from mlops.settings import StackSettings
from pipelines.monitoring import EXECUTION_ID

INVOCATION_TIMEOUT_S = 600  # a mini-batch of MaxPayloadInMB records scored at once; SageMaker's default is 600
INVOCATION_RETRIES = 1


def batch_transform_request(settings: StackSettings, *, model_name: str, key_arn: str,
                            execution_id: str = EXECUTION_ID) -> dict:
    names = Names.of(settings)
    data = names.bucket("data")
    content_type = settings.batch_transform_content_type
    return {
        "TransformJobName": f"{names.batch_job_prefix}-{execution_id}",
        "ModelName": model_name,
        "BatchStrategy": "MultiRecord",
        "MaxPayloadInMB": settings.batch_transform_max_payload_mb,
        "ModelClientConfig": {"InvocationsTimeoutInSeconds": INVOCATION_TIMEOUT_S,
                              "InvocationsMaxRetries": INVOCATION_RETRIES},
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                            "S3Uri": f"s3://{data}/{settings.batch_transform_input_prefix}"}},
            "ContentType": content_type,
            "SplitType": "Line",
            "CompressionType": "None",
        },
        "TransformOutput": {
            "S3OutputPath": f"s3://{data}/{settings.batch_transform_output_prefix}",
            "Accept": content_type,
            "AssembleWith": "Line",
            "KmsKeyId": key_arn,
        },
        "TransformResources": {
            "InstanceType": settings.batch_transform_instance_type,
            "InstanceCount": settings.batch_transform_instance_count,
            "VolumeKmsKeyId": key_arn,
        },
        "DataCaptureConfig": {
            "DestinationS3Uri": f"s3://{names.bucket('capture')}/{names.batch_capture_prefix}",
            "KmsKeyId": key_arn,
            "GenerateInferenceId": False,  # the .out lines stay one prediction each, as the endpoint answers them
        },
        "Tags": [{"Key": k, "Value": v} for k, v in sorted(settings.tags.items())],
    }

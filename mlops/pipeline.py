"""The stack's SageMaker pipeline in an account: upsert its definition and start executions.

`pulumi up` owns the pipeline; `start` is what CI's train job and people call after a deploy. With
an image tag it also upserts the definition first (the same `pipelines/training.py` output), which
serves accounts where the pipeline was not deployed by Pulumi yet. Everything goes through boto3
(`mlops.registry.Aws`), so tests run it against moto.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from mlops.naming import Names
from mlops.registry import Aws, ReleaseError, aws_call, aws_error, is_not_found
from mlops.settings import StackSettings

TERMINAL = ("Succeeded", "Failed", "Stopped")


@dataclass(frozen=True)
class Execution:
    arn: str
    status: str
    failure: str = ""


def stack_definition(settings: StackSettings, image_tag: str, *, aws: Aws | None = None) -> str:
    """The definition `pulumi up` deploys for `image_tag`, with the key ARN looked up by its alias."""
    from pipelines.training import code_bundle, definition_json

    aws = aws or Aws.from_env()
    names = Names.of(settings)
    key_arn = aws_call(f"looking up the stack key {names.kms_alias} (has `pulumi up -s {settings.stack}` run?)",
                       aws.client("kms", settings.region).describe_key, KeyId=names.kms_alias)["KeyMetadata"]["Arn"]
    return definition_json(
        settings,
        image_uri=f"{names.ecr_url}:{image_tag}",
        code_bundle_uri=code_bundle(settings).uri(names.bucket("artifacts")),
        role_arn=names.execution_role_arn,
        kms_key_arn=key_arn,
        git_sha=image_tag,
    )


def upsert(settings: StackSettings, image_tag: str, *, aws: Aws | None = None) -> str:
    """Create or update the stack's pipeline with the definition for `image_tag`; returns its ARN."""
    aws = aws or Aws.from_env()
    names = Names.of(settings)
    sagemaker = aws.sagemaker(settings.region)
    request = {
        "PipelineName": names.pipeline,
        "PipelineDefinition": stack_definition(settings, image_tag, aws=aws),
        "RoleArn": names.execution_role_arn,
    }
    try:
        try:
            sagemaker.describe_pipeline(PipelineName=names.pipeline)
        except ClientError as error:
            if not is_not_found(error):
                raise
            tags = [{"Key": k, "Value": v} for k, v in settings.tags.items()]
            return sagemaker.create_pipeline(**request, PipelineDisplayName=names.pipeline, Tags=tags)["PipelineArn"]
        return sagemaker.update_pipeline(**request)["PipelineArn"]
    except (ClientError, BotoCoreError) as error:
        raise aws_error(f"upserting pipeline {names.pipeline}", error) from None


def start(
    settings: StackSettings,
    *,
    parameters: dict[str, str] | None = None,
    wait: bool = False,
    timeout_s: float = 4 * 3600,
    poll_s: float = 30,
    aws: Aws | None = None,
    on_poll: Callable[[Execution], None] | None = None,
) -> Execution:
    """Start an execution of the stack's pipeline; with `wait`, poll until it ends (or time out)."""
    aws = aws or Aws.from_env()
    names = Names.of(settings)
    sagemaker = aws.sagemaker(settings.region)
    response = aws_call(
        f"starting pipeline {names.pipeline}", sagemaker.start_pipeline_execution,
        PipelineName=names.pipeline,
        PipelineParameters=[{"Name": k, "Value": str(v)} for k, v in sorted((parameters or {}).items())],
        not_found=f"pipeline {names.pipeline} of stack {settings.stack} not found in {settings.region}: "
                  f"deploy it (`pulumi up -s {settings.stack}` with imageTag set) or pass --image-tag")
    execution = Execution(response["PipelineExecutionArn"], "Executing")
    deadline = time.monotonic() + timeout_s
    while wait:
        described = aws_call(f"describing execution {execution.arn}", sagemaker.describe_pipeline_execution,
                             PipelineExecutionArn=execution.arn)
        execution = Execution(execution.arn, described["PipelineExecutionStatus"], described.get("FailureReason", ""))
        if on_poll:
            on_poll(execution)
        if execution.status in TERMINAL:
            break
        if time.monotonic() > deadline:
            raise ReleaseError(f"execution {execution.arn} still {execution.status} after {timeout_s:.0f} s")
        time.sleep(poll_s)
    return execution

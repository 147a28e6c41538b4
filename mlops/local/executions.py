"""Local runs as pipeline executions of the embedded AWS.

In AWS the CooldownGuard step finds the earlier executions of its pipeline, their status and their
Trigger parameter, in SageMaker. A local run runs the same step against the embedded AWS, so it
starts an execution there first, with the parameters it runs with; the embedded AWS reports its
status as the run's outcome (mlops/local/moto_server.py).
"""

from __future__ import annotations

from typing import Any


def start_execution(
    sagemaker: Any, pipeline_name: str, definition_json: str, role_arn: str, parameters: dict[str, str]
) -> str:
    """Create the pipeline (or update it to this definition) and start an execution; its ARN."""
    pages = sagemaker.get_paginator("list_pipelines").paginate(PipelineNamePrefix=pipeline_name)
    exists = any(p["PipelineName"] == pipeline_name for page in pages for p in page.get("PipelineSummaries", []))
    if exists:
        sagemaker.update_pipeline(PipelineName=pipeline_name, PipelineDefinition=definition_json, RoleArn=role_arn)
    else:
        sagemaker.create_pipeline(PipelineName=pipeline_name, PipelineDefinition=definition_json, RoleArn=role_arn)
    response = sagemaker.start_pipeline_execution(
        PipelineName=pipeline_name,
        PipelineParameters=[{"Name": name, "Value": value} for name, value in parameters.items()],
    )
    return response["PipelineExecutionArn"]

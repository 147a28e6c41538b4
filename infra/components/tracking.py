"""Tracking: a SageMaker managed MLflow tracking server, artifacts under the artifacts bucket."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class TrackingArgs:
    server_name: str
    artifact_store_uri: str
    role_arn: pulumi.Input[str]
    size: str
    mlflow_version: str
    maintenance_window: str
    tags: dict[str, str]


class Tracking(pulumi.ComponentResource):
    tracking_server_arn: pulumi.Output[str]
    tracking_server_url: pulumi.Output[str]

    def __init__(self, name: str, args: TrackingArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops-stack:tracking:Tracking", name, None, opts)
        server = aws.sagemaker.MlflowTrackingServer(
            f"{name}-server",
            tracking_server_name=args.server_name,
            artifact_store_uri=args.artifact_store_uri,
            role_arn=args.role_arn,
            tracking_server_size=args.size,
            mlflow_version=args.mlflow_version,
            weekly_maintenance_window_start=args.maintenance_window,
            # Registration is explicit (the pipeline's register step), never implicit on log_model.
            automatic_model_registration=False,
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.tracking_server_arn = server.arn
        self.tracking_server_url = server.tracking_server_url
        self.register_outputs(
            {"trackingServerArn": self.tracking_server_arn, "trackingServerUrl": self.tracking_server_url}
        )

"""The whole platform of one stack, from its validated settings.

Settings are validated before this runs (StackSettings raises on any bad key), so a bad stack file
never declares a single resource.
"""

from __future__ import annotations

import pulumi

from infra.components.access import Access, AccessArgs
from infra.components.audit import Audit, AuditArgs
from infra.components.batch import Batch, BatchArgs
from infra.components.grafana import Grafana, GrafanaArgs, workspace_url
from infra.components.images import Images, ImagesArgs
from infra.components.monitoring import Monitoring, MonitoringArgs
from infra.components.network import Network, NetworkArgs
from infra.components.serving import Serving, ServingArgs
from infra.components.storage import Storage, StorageArgs
from infra.components.tracking import Tracking, TrackingArgs
from infra.components.training import Training, TrainingArgs
from infra.panels import MonitoringPanels
from mlops.naming import Arns, Names, source_of
from mlops.settings import StackSettings
from pipelines.training import code_bundle, sample_data


def build_platform(settings: StackSettings) -> None:
    names = Names.of(settings)
    tags = settings.tags

    storage = Storage(
        "storage",
        StorageArgs(
            names=names,
            tags=tags,
            force_destroy=settings.force_destroy,
            protect=settings.protect_resources,
            kms_deletion_window_days=settings.kms_deletion_window_days,
            noncurrent_version_expiry_days=settings.noncurrent_version_expiry_days,
            capture_retention_days=settings.capture_retention_days,
            access_log_retention_days=settings.access_log_retention_days,
            audit_log_retention_days=settings.audit_log_retention_days,
            model_consumers=tuple(settings.model_consumers),
            trail_arn="" if settings.existing_trail_arn else Arns(names).trail,
        ),
    )
    audit = Audit("audit", AuditArgs(settings, names, tags, storage.key_arn, storage.bucket_names["logs"],
                                     storage.bucket_policies["logs"]))
    images = Images(
        "images",
        ImagesArgs(
            repository_name=names.ecr_repository,
            kms_key_arn=storage.key_arn,
            keep_tagged_images=settings.ecr_keep_tagged_images,
            untagged_expiry_days=settings.ecr_untagged_expiry_days,
            force_delete=settings.force_destroy,
            protect=settings.protect_resources,
            tags=tags,
            model_consumers=tuple(settings.model_consumers),
        ),
    )
    access = Access(
        "access",
        AccessArgs(
            names=names,
            tags=tags,
            key_arn=storage.key_arn,
            gitlab_url=settings.gitlab_url,
            gitlab_host=settings.gitlab_host,
            gitlab_project_path=settings.gitlab_project_path,
            ci_protected_branch=settings.ci_protected_branch,
            ci_protected_tag=settings.ci_protected_tag,
            model_source_account_id=settings.model_source_account_id,
            existing_oidc_provider_arn=settings.gitlab_oidc_provider_arn,
            mlflow_enabled=settings.mlflow_enabled,
            metrics_namespace=names.metrics_namespace,
            state_bucket=settings.pulumi_state_bucket,
            secrets_key_arn=settings.pulumi_secrets_key_arn,
            served_model_package_arn=settings.approved_model_package_arn,
            grafana_workspace_id=settings.grafana_workspace_id,
            in_vpc=settings.in_vpc,
            serverless=settings.endpoint_mode == "serverless",
            creates_vpc=settings.vpc_create,
            creates_trail=not settings.existing_trail_arn,
            job_log_groups=settings.sagemaker_job_log_groups,
        ),
    )

    # The jobs' and the endpoint's subnets and security groups, when the stack runs in a VPC (created or given).
    network = Network("network", NetworkArgs(settings, names, tags)) if settings.in_vpc else None

    training = Training(
        "training",
        TrainingArgs(
            settings=settings,
            model_package_group_name=names.model_package_group,
            pipeline_name=names.pipeline,
            artifacts_bucket=names.bucket("artifacts"),
            bundle=code_bundle(settings),
            kms_key_arn=storage.key_arn,
            execution_role_arn=access.execution_role_arn,
            repository_url=images.repository_url,
            tags=tags,
            model_consumers=tuple(settings.model_consumers),
            sample_data=sample_data(settings) if settings.seed_sample_data else None,
            network=network,
        ),
    )

    # the drift and quality jobs (Monitoring, below) run wherever there is an image to run them in
    panels = MonitoringPanels(names.metrics_namespace, settings.problem_declaration().primary_metric,
                              settings.quality_bar, bool(settings.quality_schedule)) \
        if settings.monitoring_image_uri else None
    serving = None
    if settings.approved_model_package_arn:
        serving = Serving(
            "serving",
            ServingArgs(
                names=names,
                model_package_arn=settings.approved_model_package_arn,
                execution_role_arn=access.execution_role_arn,
                kms_key_arn=storage.key_arn,
                capture_bucket=names.bucket("capture"),
                alarm_email=settings.alarm_email,
                instance_type=settings.endpoint_instance_type,
                min_capacity=settings.endpoint_min_capacity,
                max_capacity=settings.endpoint_max_capacity,
                target_invocations=settings.endpoint_target_invocations,
                cpu_target_percent=settings.endpoint_cpu_target_percent,
                data_capture_percent=settings.data_capture_percent,
                canary_traffic_percent=settings.canary_traffic_percent,
                canary_wait_seconds=settings.canary_wait_seconds,
                latency_p99_ms=settings.latency_alarm_p99_ms,
                overhead_latency_p99_ms=settings.overhead_latency_alarm_p99_ms,
                error_5xx_count=settings.error_5xx_alarm_count,
                error_4xx_count=settings.error_4xx_alarm_count,
                tags=tags,
                monitoring=panels,
                network=network,
                log_retention_days=settings.log_retention_days,
                protect=settings.protect_resources,
                mode=settings.endpoint_mode,
                serverless_memory_mb=settings.serverless_memory_mb,
                serverless_max_concurrency=settings.serverless_max_concurrency,
                async_max_concurrent_invocations=settings.async_max_concurrent_invocations,
                async_backlog_per_instance=settings.async_backlog_per_instance,
                data_bucket=names.bucket("data"),
                runtime=settings.serve_runtime,
            ),
        )
        pulumi.export("endpointName", serving.endpoint_name)
        pulumi.export("endpointMode", settings.endpoint_mode)
        pulumi.export("endpointConfigName", serving.endpoint_config_name)
        pulumi.export("alarmTopicArn", serving.alarm_topic_arn)
        if settings.grafana_workspace_id:
            workspace = settings.grafana_workspace_id
            dashboards = Grafana("grafana", GrafanaArgs(names, workspace, serving.endpoint_name, panels))
            pulumi.export("grafanaDashboards", [f"{workspace_url(workspace, settings.region)}/d/{uid}"
                                                for uid in dashboards.dashboard_uids])
    else:
        pulumi.export("endpointName", "")
        pulumi.export("endpointStatus", "not declared: no approved model package yet (approvedModelPackageArn)")

    # Every serving stack monitors its endpoint; a stack without the pipeline sends its alarms to the retrain bus
    # of the stack that registered its model (prod -> dev), which starts the pipeline there.
    source = source_of(settings.approved_model_package_arn) if settings.approved_model_package_arn else None
    forwards_to = source if training.pipeline_arn is None and source and source.account_id != settings.account_id \
        else None
    retrain_bus_arn = Arns(forwards_to).retrain_bus(settings.account_id) if forwards_to else ""
    monitoring = None
    if training.pipeline_arn is not None or serving is not None:
        monitoring = Monitoring(
            "monitoring",
            MonitoringArgs(
                settings=settings,
                names=names,
                pipeline_name=forwards_to.pipeline if forwards_to else names.pipeline,
                pipeline_arn=training.pipeline_arn,
                retrain_bus_arn=retrain_bus_arn,
                retrain_event_accounts=tuple(settings.model_consumers),
                model_package_group=names.model_package_group,
                data_bucket=names.bucket("data"),
                execution_role_arn=access.execution_role_arn,
                kms_key_arn=storage.key_arn,
                alarm_topic_arn=serving.alarm_topic_arn if serving is not None else None,
                tags=tags,
                boundary_arn=access.boundary_arn,
                endpoint_name=names.endpoint if serving is not None else "",
                metrics_namespace=names.metrics_namespace,
                drift_schedule=settings.drift_schedule,
                drift_window_hours=settings.drift_window_hours,
                alarm_datapoints=settings.drift_alarm_datapoints,
                alarm_evaluation_periods=settings.drift_alarm_evaluation_periods,
                network=network,
            ),
        )
        pulumi.export("driftAlarmName", monitoring.drift_alarm_name or "")
        pulumi.export("qualityAlarmName", monitoring.quality_alarm_name or "")
        pulumi.export("retrainEventBusArn", retrain_bus_arn)
    _batch_schedule(settings, names, serving, monitoring, storage.key_arn, tags)

    pulumi.export("region", settings.region)
    pulumi.export("accountId", settings.account_id)
    pulumi.export("kmsKeyArn", storage.key_arn)
    pulumi.export("auditTrailArn", audit.trail_arn)
    for kind, bucket in storage.bucket_names.items():
        pulumi.export(f"{kind}Bucket", bucket)
    pulumi.export("ecrRepositoryUrl", images.repository_url)
    pulumi.export("executionRoleArn", access.execution_role_arn)
    pulumi.export("deployRoleArn", access.deploy_role_arn)
    pulumi.export("oidcProviderArn", access.oidc_provider_arn)
    pulumi.export("metricsNamespace", names.metrics_namespace)
    # `mlops release promote` runs its comparison job in these (pipelines/network.py)
    pulumi.export("vpcSubnetIds", network.subnet_ids if network else [])
    pulumi.export("vpcSecurityGroupIds", network.security_group_ids if network else [])
    pulumi.export("modelPackageGroupName", training.model_package_group_name)
    pulumi.export("codeBundleUri", training.code_bundle_uri)
    pulumi.export("pipelineName", names.pipeline if training.pipeline_arn is not None else "")
    if training.pipeline_arn is None:
        pulumi.export("pipelineStatus", "not declared: no imageTag yet (CI sets it to the image it pushed)")

    if settings.mlflow_enabled and access.mlflow_role_arn is not None:
        tracking = Tracking(
            "tracking",
            TrackingArgs(
                server_name=names.mlflow_server,
                artifact_store_uri=f"s3://{names.bucket('artifacts')}/mlflow",
                role_arn=access.mlflow_role_arn,
                size=settings.mlflow_server_size,
                mlflow_version=settings.mlflow_version,
                maintenance_window=settings.mlflow_maintenance_window,
                tags=tags,
            ),
        )
        pulumi.export("mlflowTrackingServerArn", tracking.tracking_server_arn)
        pulumi.export("mlflowTrackingServerUrl", tracking.tracking_server_url)


def _batch_schedule(settings: StackSettings, names: Names, serving: Serving | None, monitoring: Monitoring | None,
                    key_arn: pulumi.Input[str], tags: dict[str, str]) -> None:
    """The batch schedule runs the served model with the monitoring schedules' role: both must exist."""
    if not settings.batch_transform_schedule:
        pulumi.export("batchTransformSchedule", "")
        return
    if serving is None:
        pulumi.export("batchTransformSchedule", "not declared: the stack serves no model yet (approvedModelPackageArn)")
        return
    if monitoring is None or monitoring.scheduler_role_arn is None:
        pulumi.export("batchTransformSchedule", "not declared: the stack has no image for its scheduled jobs "
                                                "(approvedModelImageUri or imageTag)")
        return
    batch = Batch("batch", BatchArgs(settings=settings, names=names, model_name=serving.model_name,
                                     scheduler_role_arn=monitoring.scheduler_role_arn, kms_key_arn=key_arn,
                                     alarm_topic_arn=serving.alarm_topic_arn, tags=tags))
    pulumi.export("batchTransformSchedule", batch.schedule_name)

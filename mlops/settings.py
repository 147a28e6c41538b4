"""StackSettings: the one typed, validated model of a stack's configuration.

A stack's settings come from two places that must agree:
- inside the Pulumi program, from the engine's config (`from_pulumi_config`; the only place
  `pulumi.Config` is read);
- in the CLI and tests, from a `Pulumi.<stack>.yaml` file (`load_stack_file`).

Both go through `from_config_map`, so a bad value fails the same way before any resource is
declared: `SettingsError`, one line per problem, each naming the file and the key.

The fields below are the source of truth; `Pulumi.yaml` declares the same keys (a test keeps them
in sync) so the Pulumi CLI shows descriptions and applies the same defaults.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops import stack_yaml
from mlops.setting_checks import (
    ACCOUNT,
    ARN,
    BRANCH,
    EMAIL,
    IMAGE_URI,
    INSTANCE_TYPE,
    LOG_RETENTION_DAYS,
    MAINTENANCE_WINDOW,
    PROJECT_PATH,
    REGION,
    REPO_ROOT,
    S3_PREFIX,
    STACK_NAME,
    TAG_PATTERN,
    TAG_VALUE,
    arn_of,
    between,
    cached_problem,
    check_cron,
    cidr_error,
    id_list,
    matches,
    number_error,
    one_of,
    optional,
    problem_error,
)
from model_code import metrics
from model_code.problem import Problem

PROJECT = "mlops-stack"

_REQUIRED = dataclasses.MISSING


class SettingsError(ValueError):
    """A stack's configuration is invalid. `problems` holds one line per bad key."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {problem}" for problem in problems))


RENAMED = {"evaluationMinAuc": "evaluationMinMetric"}
"""Keys that were renamed: a stack file that still has the old one is refused with the new name."""


def _setting(default: Any = _REQUIRED, *, doc: str, check: Callable[[Any], str | None] | None = None) -> Any:
    return field(default=default, metadata={"doc": doc, "check": check})


# --- the model -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StackSettings:
    """One stack's settings. Attribute `foo_bar` is config key `mlops-stack:fooBar`."""

    # Identity: from the stack name and the AWS provider's config, not from our namespace.
    stack: str = field(metadata={"source": "stack"})
    region: str = field(metadata={"source": "aws:region"})
    account_id: str = field(metadata={"source": "aws:allowedAccountIds"})

    owner: str = _setting(
        doc="Team that owns this stack; tagged on every resource as `owner`.",
        check=matches(TAG_VALUE, "a valid tag value"),
    )
    gitlab_project_path: str = _setting(
        doc="GitLab project allowed to deploy this stack, e.g. `acme/ml/mlops-stack`.",
        check=matches(PROJECT_PATH, "a GitLab project path (group/project)"),
    )
    gitlab_url: str = _setting(
        "https://gitlab.com",
        doc="GitLab instance that issues CI ID tokens (OIDC issuer).",
        check=matches(re.compile(r"^https://[a-z0-9.-]+(:[0-9]+)?$"), "an https URL without a path"),
    )
    ci_protected_branch: str = _setting(
        "main",
        doc="Protected branch whose CI jobs may assume the deploy role (pinned in the OIDC `sub` claim).",
        check=matches(BRANCH, "a branch name"),
    )
    ci_protected_tag: str = _setting(
        "",
        doc="Protected tag pattern (e.g. `prod-*`) whose pipelines alone may assume the deploy role instead of "
        "ciProtectedBranch's; empty trusts the branch.",
        check=optional(matches(TAG_PATTERN, "a literal tag prefix followed by `*`, e.g. prod-*")),
    )
    gitlab_oidc_provider_arn: str = _setting(
        "",
        doc="Existing GitLab OIDC provider to reuse (one per account and URL); empty creates one.",
        check=optional(arn_of("iam", "oidc-provider/")),
    )

    pulumi_state_bucket: str = _setting(
        "",
        doc="S3 bucket of the Pulumi state backend (bootstrapped once, outside any stack); the deploy role may use it.",
        check=optional(matches(re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"), "an S3 bucket name")),
    )
    pulumi_secrets_key_arn: str = _setting(
        "",
        doc="KMS key of the Pulumi secrets provider (awskms://); the deploy role may use it.",
        check=optional(arn_of("kms", "key/")),
    )

    protect_resources: bool = _setting(
        False, doc="Pulumi `protect` on stateful resources (KMS key, buckets, ECR): `pulumi destroy` refuses them."
    )
    seed_sample_data: bool = _setting(
        False,
        doc="Upload the problem's sample data to the pipeline's default input (datasets/<dataset>/ of the data "
        "bucket), so the first pipeline run of a new stack has data.",
    )
    force_destroy: bool = _setting(
        False, doc="Allow deleting non-empty buckets and repositories on destroy (dev convenience; never prod)."
    )
    kms_deletion_window_days: int = _setting(
        30, doc="Waiting period before a scheduled KMS key deletion takes effect.", check=between(7, 30)
    )
    noncurrent_version_expiry_days: int = _setting(
        30, doc="Days a noncurrent S3 object version is kept before expiry.", check=between(1, 3650)
    )
    capture_retention_days: int = _setting(
        30, doc="Days endpoint data-capture records are kept.", check=between(1, 3650)
    )
    access_log_retention_days: int = _setting(90, doc="Days S3 server access logs are kept.", check=between(1, 3650))
    audit_log_retention_days: int = _setting(
        365, doc="Days the stack trail's log and digest files (s3://<logs bucket>/cloudtrail/) are kept.",
        check=between(1, 3650),
    )

    ecr_keep_tagged_images: int = _setting(
        20, doc="ECR keeps this many most recent tagged images.", check=between(1, 1000)
    )
    ecr_untagged_expiry_days: int = _setting(
        7, doc="ECR expires untagged images after this many days.", check=between(1, 365)
    )

    mlflow_enabled: bool = _setting(True, doc="Create a SageMaker managed MLflow tracking server for this stack.")
    mlflow_server_size: str = _setting(
        "Small", doc="Managed MLflow tracking server size.", check=one_of("Small", "Medium", "Large")
    )
    mlflow_version: str = _setting(
        "3.0",
        doc="Managed MLflow version.",
        check=matches(re.compile(r"^[0-9]+\.[0-9]+(\.[0-9]+)?$"), "a version like 3.0"),
    )
    mlflow_maintenance_window: str = _setting(
        "Sun:03:00",
        doc="Weekly maintenance window start of the MLflow server (Ddd:HH:MM, UTC).",
        check=matches(MAINTENANCE_WINDOW, "a window start like Sun:03:00"),
    )

    image_tag: str = _setting(
        "",
        doc="Tag of the model image in this stack's ECR repository (CI sets the git sha it pushed); "
        "empty declares no pipeline.",
        check=optional(matches(re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"), "a Docker image tag")),
    )
    processing_instance_type: str = _setting(
        "ml.m5.large",
        doc="Instance type of processing steps (validate, preprocess, evaluate, drift).",
        check=matches(INSTANCE_TYPE, "a SageMaker instance type like ml.m5.large"),
    )
    training_instance_type: str = _setting(
        "ml.m5.xlarge",
        doc="Instance type of the training step.",
        check=matches(INSTANCE_TYPE, "a SageMaker instance type like ml.m5.large"),
    )
    problem: str = _setting(
        "problems/adult",
        doc="Folder of the stack's problem declaration (problem.yaml: data, task, metrics, candidates), relative to "
        "the project; the code bundle carries it to every pipeline step.",
        check=lambda value: problem_error(value),
    )
    evaluation_min_metric: str = _setting(
        "",
        doc="The pipeline registers a model only if its test value of the problem's primary metric clears this, in "
        "the metric's direction (at least it when higher is better, at most when lower); empty: the problem's own "
        "metrics.threshold.",
        check=optional(lambda value: number_error(value)),
    )
    promotion_min_improvement: str = _setting(
        "0",
        doc="How much better than the current champion a model must be, on the primary metric scored on the same "
        "test split, to be registered by the pipeline and promoted by `mlops release promote` (0: at least as good).",
        check=lambda value: number_error(value) or (f"{value!r} is negative" if float(value) < 0 else None),
    )

    tuning_max_jobs: int = _setting(
        0,
        doc="Training jobs of a SageMaker hyperparameter tuning step over the problem's candidates and their search "
        "spaces, instead of one training job that cross-validates the candidates; 0 is off.",
        check=between(0, 500),
    )
    tuning_parallel_jobs: int = _setting(
        2, doc="Training jobs of the tuning step at once (at most tuningMaxJobs).", check=between(1, 100)
    )

    endpoint_mode: str = _setting(
        "realtime",
        doc="How the endpoint serves: realtime (instances around the clock, autoscaled), serverless (memory and "
        "concurrency, no instances, no VPC; the container delivers its own capture) or async (requests queued in S3, "
        "answers in S3 with SNS notifications, scaled to zero instances on the backlog).",
        check=one_of("realtime", "serverless", "async"),
    )
    serve_runtime: str = _setting(
        "sklearn",
        doc="What scores the endpoint's requests: sklearn (the fitted pipeline) or onnx (onnxruntime on the ONNX file "
        "train exports beside it; the container refuses to start on a model without one, and `mlops release promote` "
        "refuses such a package).",
        check=one_of("sklearn", "onnx"),
    )
    serverless_memory_mb: int = _setting(
        2048, doc="Memory of a serverless endpoint (1024 to 6144, in steps of 1024); its vCPUs grow with it.",
        check=lambda value: None if value in range(1024, 6145, 1024) else f"{value} is not one of 1024, 2048, ..., "
        "6144",
    )
    serverless_max_concurrency: int = _setting(
        5, doc="Concurrent invocations a serverless endpoint serves before it throttles.", check=between(1, 200)
    )
    async_max_concurrent_invocations: int = _setting(
        4, doc="Requests an async endpoint's instance works on at once (the rest wait in its queue).",
        check=between(1, 1000),
    )
    async_backlog_per_instance: int = _setting(
        5, doc="Queued requests per instance the async endpoint's autoscaling aims at (ApproximateBacklogSizePer"
        "Instance); with no backlog it scales to zero instances.", check=between(1, 1000),
    )
    endpoint_instance_type: str = _setting(
        "ml.m5.large",
        doc="Instance type of the real-time endpoint.",
        check=matches(INSTANCE_TYPE, "a SageMaker instance type like ml.m5.large"),
    )
    endpoint_min_capacity: int = _setting(
        1, doc="Autoscaling lower bound of endpoint instances.", check=between(1, 100)
    )
    endpoint_max_capacity: int = _setting(
        2, doc="Autoscaling upper bound of endpoint instances (>= endpointMinCapacity).", check=between(1, 100)
    )
    endpoint_target_invocations: int = _setting(
        100, doc="Target invocations per instance per minute for target-tracking scaling.", check=between(1, 100000)
    )
    data_capture_percent: int = _setting(
        100, doc="Share of endpoint requests captured for drift monitoring.", check=between(1, 100)
    )
    approved_model_package_arn: str = _setting(
        "",
        doc="Model package pinned on this stack's endpoint; empty follows the latest approved package.",
        check=optional(arn_of("sagemaker", "model-package/")),
    )
    approved_model_image_uri: str = _setting(
        "",
        doc="Container image of the pinned package (its InferenceSpecification's), written with the pin by "
        "`mlops release promote` and `rollback`: the drift and quality jobs of a stack without imageTag run it.",
        check=optional(matches(IMAGE_URI, "an ECR image URI like <account>.dkr.ecr.<region>.amazonaws.com/"
                                              "<repository>:<tag> (or @sha256:<digest>)")),
    )

    canary_traffic_percent: int = _setting(
        10, doc="Share of capacity the new model gets first in a blue/green canary deployment.", check=between(1, 50)
    )
    canary_wait_seconds: int = _setting(
        600, doc="Baking time of the canary before the rest of the traffic shifts.", check=between(0, 3600)
    )
    endpoint_cpu_target_percent: int = _setting(
        70, doc="Target CPU utilization of the second (CPU) scaling policy.", check=between(10, 95)
    )
    latency_alarm_p99_ms: int = _setting(
        500, doc="ModelLatency p99 above this (ms) for 2 of 3 minutes raises the latency alarm.",
        check=between(1, 60000),
    )
    overhead_latency_alarm_p99_ms: int = _setting(
        100, doc="OverheadLatency p99 above this (ms) for 2 of 3 minutes raises its alarm.", check=between(1, 60000)
    )
    error_5xx_alarm_count: int = _setting(
        1, doc="Invocation5XXErrors per minute at or above this for 2 of 3 minutes raises the 5xx alarm.",
        check=between(1, 100000),
    )
    error_4xx_alarm_count: int = _setting(
        50, doc="Invocation4XXErrors per minute at or above this for 2 of 3 minutes raises the 4xx alarm.",
        check=between(1, 100000),
    )
    model_consumer_account_ids: str = _setting(
        "",
        doc="Comma-separated accounts (e.g. prod's) allowed to deploy this stack's registered models: they may "
        "read the model packages, artifacts and image, and decrypt them with the stack key.",
        check=optional(matches(re.compile(r"^[0-9]{12}(,[0-9]{12})*$"), "comma-separated 12-digit account ids")),
    )
    model_source_account_id: str = _setting(
        "",
        doc="Account of the stack whose registered models this one serves (prod: dev's); its model packages are "
        "readable by this stack's deploy role from the first deploy, before any pin.",
        check=optional(matches(ACCOUNT, "a 12-digit account id")),
    )
    drift_schedule: str = _setting(
        "cron(0 * ? * * *)", doc="When the drift job runs (AWS cron expression).", check=check_cron
    )
    drift_window_hours: int = _setting(
        1, doc="Hours of captured traffic each drift run compares (match the driftSchedule cadence).",
        check=between(1, 168),
    )
    drift_alarm_datapoints: int = _setting(
        2,
        doc="The drift alarm fires when this many (M) of the last driftAlarmEvaluationPeriods drift runs flag drift.",
        check=between(1, 24),
    )
    drift_alarm_evaluation_periods: int = _setting(
        3, doc="Drift runs (N) the drift alarm looks back on (M of N).", check=between(1, 24)
    )
    quality_schedule: str = _setting(
        "cron(15 * ? * * *)",
        doc="When the quality job joins ground truth (s3://<data>/ground-truth/yyyy/mm/dd/hh/) to the captured "
        "predictions and publishes the primary metric (AWS cron expression; empty: off).",
        check=optional(check_cron),
    )
    quality_window_hours: int = _setting(
        1, doc="Hours of captured predictions each quality run scores (match the qualitySchedule cadence).",
        check=between(1, 168),
    )
    quality_label_delay_hours: int = _setting(
        24, doc="Labels of a window are on time until this many hours after it ends; the quality run scores the "
        "window whose labels are due.", check=between(0, 720),
    )
    quality_min_metric: str = _setting(
        "",
        doc="The quality alarm's bar on the primary metric of labelled production traffic, in the metric's "
        "direction; empty: the registration threshold (evaluationMinMetric, else the problem's).",
        check=optional(lambda value: number_error(value)),
    )
    quality_alarm_datapoints: int = _setting(
        2, doc="The quality alarm fires when this many (M) of the last qualityAlarmEvaluationPeriods quality runs "
        "score worse than the bar.", check=between(1, 24),
    )
    quality_alarm_evaluation_periods: int = _setting(
        3, doc="Quality runs (N) the quality alarm looks back on (M of N).", check=between(1, 24)
    )
    retrain_schedule: str = _setting(
        "", doc="When the pipeline retrains on a clock, on the data under its default input (AWS cron expression; "
        "empty: off); behind the same cooldown as the alarms.", check=optional(check_cron),
    )
    retrain_cooldown_hours: int = _setting(
        24, doc="At most one automatic retrain (drift, quality, schedule or new data) per this many hours.",
        check=between(1, 720)
    )
    grafana_workspace_id: str = _setting(
        "",
        doc="Amazon Managed Grafana workspace (g-..., in this stack's account and region) that gets the stack's "
        "serving, drift and quality dashboards and a CloudWatch data source (its workspace IAM role reads "
        "CloudWatch); empty: none.",
        check=optional(matches(re.compile(r"^g-[0-9a-f]{10}$"), "a Grafana workspace id like g-0123456789")),
    )
    alarm_email: str = _setting(
        "",
        doc="Email subscribed to the stack's alarm topic; empty subscribes nobody.",
        check=optional(matches(EMAIL, "an email address")),
    )

    batch_transform_schedule: str = _setting(
        "",
        doc="When a Batch Transform job scores every object under the data bucket's batchTransformInputPrefix with "
        "the stack's served model (AWS cron expression; empty: off). Its inputs feed the drift job.",
        check=optional(check_cron),
    )
    batch_transform_input_prefix: str = _setting(
        "batch/input/", doc="Folder of the data bucket the scheduled Batch Transform job reads (one record per line).",
        check=matches(S3_PREFIX, "a folder like batch/input/"),
    )
    batch_transform_output_prefix: str = _setting(
        "batch/output/",
        doc="Folder of the data bucket where the job writes <input key>.out, one line per input record.",
        check=matches(S3_PREFIX, "a folder like batch/output/"),
    )
    batch_transform_instance_type: str = _setting(
        "ml.m5.large", doc="Instance type of the Batch Transform job.",
        check=matches(INSTANCE_TYPE, "a SageMaker instance type like ml.m5.large"),
    )
    batch_transform_instance_count: int = _setting(
        1, doc="Instances of the Batch Transform job (input objects are spread over them).", check=between(1, 100)
    )
    batch_transform_max_payload_mb: int = _setting(
        6, doc="Largest mini-batch (MaxPayloadInMB) the job sends the model: as many records as fit (MultiRecord).",
        check=between(1, 100),
    )
    batch_transform_content_type: str = _setting(
        "text/csv", doc="Format of the input records and of the output lines.",
        check=one_of("text/csv", "application/jsonlines"),
    )

    vpc_create: bool = _setting(
        False,
        doc="Create a VPC for the stack's jobs and endpoint: private subnets with no NAT and no internet gateway, "
        "reaching AWS only through VPC endpoints (S3 gateway; SageMaker API and runtime, ECR api and dkr, "
        "CloudWatch logs and monitoring, STS, KMS, and MLflow's when mlflowEnabled). Excludes vpcSubnetIds.",
    )
    vpc_cidr: str = _setting(
        "10.40.0.0/16",
        doc="Private IPv4 range of the created VPC (/16 to /24); its subnets are /4 smaller.",
        check=cidr_error,
    )
    vpc_availability_zones: int = _setting(
        2, doc="Availability zones of the created VPC: one private subnet and one endpoint interface in each.",
        check=between(2, 6),
    )
    vpc_subnet_ids: str = _setting(
        "",
        doc="Existing private subnets (comma-separated subnet ids) the jobs and the endpoint run in, instead of a "
        "created VPC. Their VPC must reach the same AWS services (endpoints or a NAT): the stack cannot check it.",
        check=optional(matches(id_list("subnet"), "comma-separated subnet ids (subnet-0123abcd)")),
    )
    vpc_security_group_ids: str = _setting(
        "",
        doc="Security groups (comma-separated sg ids) of the jobs and the endpoint in vpcSubnetIds; they must allow "
        "HTTPS to the AWS services and all traffic among themselves (distributed training).",
        check=optional(matches(id_list("sg"), "comma-separated security group ids (sg-0123abcd)")),
    )

    log_retention_days: int = _setting(
        90,
        doc="Days the stack's SageMaker log groups (/aws/sagemaker/...: its endpoint's, and the account's jobs' when "
        "sagemakerJobLogGroups) keep events; one of CloudWatch Logs' retention periods. They are encrypted with the "
        "stack key.",
        check=lambda value: None if value in LOG_RETENTION_DAYS else
        f"{value} is not a CloudWatch Logs retention period ({', '.join(map(str, LOG_RETENTION_DAYS))})",
    )
    sagemaker_job_log_groups: bool = _setting(
        True,
        doc="Declare /aws/sagemaker/ProcessingJobs and /aws/sagemaker/TrainingJobs, where every SageMaker job of the "
        "account and region logs: exactly one stack per account and region may (a second one sets false). An "
        "account that already ran SageMaker jobs has them: import them first (README, Audit).",
    )
    existing_trail_arn: str = _setting(
        "",
        doc="A CloudTrail trail that already records this account (an organization trail): no trail is created. It "
        "must log S3 data events of the data and artifacts buckets; the stack cannot check it. Empty: the stack's "
        "own multi-region trail, encrypted with the stack key, with log-file validation.",
        check=optional(arn_of("cloudtrail", "trail/")),
    )

    @property
    def problem_dir(self) -> Path:
        return REPO_ROOT / self.problem

    def problem_declaration(self) -> Problem:
        """The stack's problem (model_code/problem.py), read once per folder."""
        return cached_problem(self.problem_dir)

    @property
    def min_test_metric(self) -> float:
        """The registration threshold: evaluationMinMetric, else the problem's metrics.threshold."""
        declared = self.problem_declaration()
        return float(self.evaluation_min_metric) if self.evaluation_min_metric else declared.metric_threshold

    @property
    def min_improvement(self) -> float:
        """promotionMinImprovement as a number."""
        return float(self.promotion_min_improvement)

    @property
    def quality_bar(self) -> float:
        """The quality alarm's bar: qualityMinMetric, else the registration threshold."""
        return float(self.quality_min_metric) if self.quality_min_metric else self.min_test_metric

    def __post_init__(self) -> None:
        problems = [
            f"{config_key(f.name)}: {error}"
            for f in dataclasses.fields(self)
            if (check := f.metadata.get("check")) and (error := check(getattr(self, f.name)))
        ]
        problem_ok = not any(p.startswith(config_key("problem")) for p in problems)
        for key in ("evaluation_min_metric", "quality_min_metric"):
            value = getattr(self, key)
            if problem_ok and value and not number_error(value):
                declared = self.problem_declaration()
                spec = metrics.spec(declared.task, declared.primary_metric)
                if error := spec.check_threshold(float(value)):
                    problems.append(f"{config_key(key)}: {error} (the primary metric of {self.problem})")
        if self.tuning_max_jobs and self.tuning_parallel_jobs > self.tuning_max_jobs:
            problems.append(f"{config_key('tuning_parallel_jobs')}: {self.tuning_parallel_jobs} is above "
                            f"{config_key('tuning_max_jobs')} ({self.tuning_max_jobs})")
        if self.endpoint_max_capacity < self.endpoint_min_capacity:
            problems.append(
                f"{config_key('endpoint_max_capacity')}: {self.endpoint_max_capacity} is below "
                f"{config_key('endpoint_min_capacity')} ({self.endpoint_min_capacity})"
            )
        if self.quality_alarm_datapoints > self.quality_alarm_evaluation_periods:
            problems.append(
                f"{config_key('quality_alarm_datapoints')}: {self.quality_alarm_datapoints} is above "
                f"{config_key('quality_alarm_evaluation_periods')} ({self.quality_alarm_evaluation_periods})"
            )
        problems.extend(self._network_problems())
        problems.extend(self._batch_problems())
        if self.endpoint_mode == "serverless" and self.in_vpc:
            problems.append(f"{config_key('endpoint_mode')}: serverless endpoints run in no VPC and without network "
                            f"isolation, and this stack runs its model in one ({config_key('vpc_create')} or "
                            f"{config_key('vpc_subnet_ids')}): use realtime or async")
        if self.drift_alarm_datapoints > self.drift_alarm_evaluation_periods:
            problems.append(
                f"{config_key('drift_alarm_datapoints')}: {self.drift_alarm_datapoints} is above "
                f"{config_key('drift_alarm_evaluation_periods')} ({self.drift_alarm_evaluation_periods})"
            )
        # The pin's region and account, once the pin is a well-formed package ARN (else its own problem says so).
        pin_ok = not any(p.startswith(config_key("approved_model_package_arn")) for p in problems)
        pin = ARN.match(self.approved_model_package_arn) if pin_ok else None
        if pin and (pinned := pin["region"]) != self.region:
            # SageMaker's CreateModel needs the artifacts in the endpoint's region, and the image in its ECR.
            problems.append(
                f"{config_key('approved_model_package_arn')}: the package is in {pinned}, stack {self.stack} "
                f"deploys to {self.region}: SageMaker serves only artifacts of the endpoint's region "
                f"(promote between stacks of one region)"
            )
        pinned_account = pin["account"] if pin else ""
        if pinned_account not in ("", self.account_id, self.model_source_account_id):
            # The deploy role reads the pin (verify, rollback) with rights granted before it: see the setting.
            problems.append(
                f"{config_key('approved_model_package_arn')}: the package is in account {pinned_account}, which is "
                f"neither stack {self.stack}'s ({self.account_id}) nor {config_key('model_source_account_id')} "
                f"({self.model_source_account_id or 'unset'})"
            )
        if pin_ok and not any(p.startswith(config_key("approved_model_image_uri")) for p in problems):
            problems.extend(self._monitoring_image_problems(pin))  # one line per fault: format problems say theirs
        if problems:
            raise SettingsError(f"stack {self.stack}", problems)

    def _batch_problems(self) -> list[str]:
        """The batch folders apart from each other and from the data bucket's folders that start jobs or feed them:
        output under raw/ would retrain on every batch, and a job would read its own output."""
        from mlops.naming import ASYNC_PREFIX, GROUND_TRUTH_PREFIX, RAW_PREFIX  # naming imports this module

        taken = {config_key("batch_transform_input_prefix"): self.batch_transform_input_prefix,
                 config_key("batch_transform_output_prefix"): self.batch_transform_output_prefix}
        reserved = {"the pipeline's trigger folder": RAW_PREFIX, "the ground truth folder": f"{GROUND_TRUTH_PREFIX}/",
                    "the async endpoint's folder": ASYNC_PREFIX}
        problems = []
        for key, prefix in taken.items():
            for what, folder in [*reserved.items(), *((k, v) for k, v in taken.items() if k < key)]:
                if prefix.startswith(folder) or folder.startswith(prefix):
                    problems.append(f"{key}: {prefix!r} overlaps {what} ({folder!r}); batch folders stand apart")
        return problems

    def _network_problems(self) -> list[str]:
        """A VPC is created, or named by both its subnets and its security groups, never both ways."""
        subnets, groups = config_key("vpc_subnet_ids"), config_key("vpc_security_group_ids")
        if self.vpc_create and (self.vpc_subnet_ids or self.vpc_security_group_ids):
            return [f"{config_key('vpc_create')}: true, and {subnets if self.vpc_subnet_ids else groups} names an "
                    "existing network: set one of them"]
        if bool(self.vpc_subnet_ids) != bool(self.vpc_security_group_ids):
            given, missing = (subnets, groups) if self.vpc_subnet_ids else (groups, subnets)
            return [f"{missing}: empty, but {given} is set: jobs in a VPC need both subnets and security groups"]
        return []

    @property
    def in_vpc(self) -> bool:
        """The stack's jobs and endpoint run in a VPC: a created one, or the subnets it names."""
        return self.vpc_create or bool(self.vpc_subnet_ids)

    def _monitoring_image_problems(self, pin: re.Match[str] | None) -> list[str]:
        """Every serving stack monitors its endpoint, in the pinned package's image when it has no imageTag: the
        image must be there, and be the pin's source stack's repository (the repository serving already pulls)."""
        from mlops.naming import source_of  # naming reads these settings: imported when they exist

        key = config_key("approved_model_image_uri")
        if not self.approved_model_image_uri:
            if pin and not self.image_tag:
                return [f"{key}: empty, but {config_key('approved_model_package_arn')} pins a package and "
                        f"{config_key('image_tag')} is empty: the drift and quality jobs need the package's image "
                        "(`mlops release promote` writes both)"]
            return []
        source = source_of(self.approved_model_package_arn) if pin else None
        if source is None:
            return [f"{key}: set without a pinned {PROJECT} package ({config_key('approved_model_package_arn')})"]
        repository = self.approved_model_image_uri.split("@", 1)[0].rsplit(":", 1)[0]
        if repository != source.ecr_url:
            return [f"{key}: {self.approved_model_image_uri!r} is not in {source.ecr_url}, the repository of the "
                    f"pinned package's stack {source.stack}"]
        return []

    @property
    def monitoring_image_uri(self) -> str:
        """The image of the drift and quality jobs: the pinned package's, else the stack's own (imageTag); empty
        when the stack has neither."""
        if self.approved_model_image_uri:
            return self.approved_model_image_uri
        if not self.image_tag:
            return ""
        from mlops.naming import Names

        return f"{Names.of(self).ecr_url}:{self.image_tag}"

    @property
    def tags(self) -> dict[str, str]:
        """Tags on every taggable resource (the policy pack requires project, environment, owner)."""
        return {"project": PROJECT, "environment": self.stack, "owner": self.owner, "managed-by": "pulumi"}

    @property
    def model_consumers(self) -> list[str]:
        return [account for account in self.model_consumer_account_ids.split(",") if account]

    @property
    def gitlab_host(self) -> str:
        return self.gitlab_url.removeprefix("https://")


# --- config keys -----------------------------------------------------------------------------------


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(word.capitalize() for word in rest)


def config_key(attribute: str) -> str:
    """`endpoint_min_capacity` -> `mlops-stack:endpointMinCapacity`."""
    return f"{PROJECT}:{_camel(attribute)}"


@dataclass(frozen=True)
class ConfigKey:
    attribute: str
    key: str  # namespaced, as in a stack file
    kind: type
    default: Any  # dataclasses.MISSING when required
    doc: str

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


def declared_keys() -> list[ConfigKey]:
    """The project's own config keys (namespace mlops-stack), in declaration order."""
    kinds = {"str": str, "int": int, "bool": bool, "float": float}
    return [
        ConfigKey(f.name, config_key(f.name), kinds[str(f.type)], f.default, f.metadata["doc"])
        for f in dataclasses.fields(StackSettings)
        if "source" not in f.metadata
    ]


_CHECKS: dict[str, Callable[[Any], str | None]] = {
    f.name: f.metadata["check"] for f in dataclasses.fields(StackSettings) if f.metadata.get("check")
}


# --- loading ----------------------------------------------------------------------------------------


def _coerce(kind: type, value: Any) -> Any:
    """Stack files hold YAML scalars; the engine hands the program strings. Accept both, strictly."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValueError(f"{value!r} is not a boolean (true or false)")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()):
            return int(value)
        raise ValueError(f"{value!r} is not an integer")
    if kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{value!r} is not a number") from None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"{value!r} is not a string")


def _account_id(value: Any) -> str:
    ids = value
    if isinstance(value, str):
        try:
            ids = json.loads(value)
        except json.JSONDecodeError:
            ids = [value]
    if not isinstance(ids, list) or len(ids) != 1:
        raise ValueError(f"{value!r} must list exactly one account id, the stack's account")
    account = str(ids[0])
    if not ACCOUNT.match(account):
        raise ValueError(f"{account!r} is not a 12-digit AWS account id")
    return account


def _unknown_key(key: str, keys: Mapping[str, Any]) -> tuple[str, str] | None:
    """(why `key` is not one a stack file may hold, the key it was likely meant as), or None when it is one:
    our keys, the AWS provider's, Pulumi's."""
    namespace, _, name = key.partition(":")
    if namespace == PROJECT:
        if name in RENAMED:
            return (f"renamed to {PROJECT}:{RENAMED[name]} (a threshold on the problem's primary metric, in its "
                    "direction; empty uses the problem's metrics.threshold)"), f"{PROJECT}:{RENAMED[name]}"
        if key in keys:
            return None
        close = difflib.get_close_matches(key, list(keys), n=1)
        return "unknown key" + (f" (did you mean {close[0]}?)" if close else ""), close[0] if close else ""
    if namespace in stack_yaml.PROVIDER_SDKS:
        known = stack_yaml.provider_keys(namespace)
        if name in known:
            return None
        close = [f"{namespace}:{match}" for match in difflib.get_close_matches(name, sorted(known), n=1)]
        hint = f" (did you mean {close[0]}?)" if close else ""
        return f"not a config key of the {namespace} provider{hint}: the provider would ignore it", "".join(close)
    if namespace == stack_yaml.PULUMI_NAMESPACE:
        return None
    spaces = [PROJECT, *stack_yaml.PROVIDER_SDKS, stack_yaml.PULUMI_NAMESPACE]
    close = [f"{match}:{name}" for match in difflib.get_close_matches(namespace, spaces, n=1)]
    hint = f" (did you mean {close[0]}?)" if close else ""
    return (f"unknown namespace {namespace!r}{hint}; a stack file holds "
            f"{', '.join(f'{space}:' for space in spaces)} keys, and nothing would read it"), "".join(close)


def from_config_map(
    stack: str, config: Mapping[str, Any], source: str, lines: Mapping[str, int] | None = None
) -> StackSettings:
    """Build settings from namespaced config (`mlops-stack:key`, `aws:region`, ...).

    Every problem is collected and raised together, one line each, so a reviewer fixes a stack file
    in one pass. A key of no namespace this project or its provider reads is refused (it would be
    ignored); `lines` (key -> line in the file) puts the line in front of each such key's problem.
    """
    problems: list[str] = []
    keys = {k.key: k for k in declared_keys()}
    values: dict[str, Any] = {}
    at = lambda key: f"line {lines[key]}: " if lines and key in lines else ""  # noqa: E731

    if not STACK_NAME.match(stack):
        problems.append(f"stack name {stack!r} must be 1-16 lowercase letters, digits or '-', starting with a letter")
    meant = set()  # keys a misspelled one was likely meant as: their absence is that one problem, not a second
    for key in config:
        if (unknown := _unknown_key(str(key), keys)) is not None:
            problems.append(f"{at(key)}{key}: {unknown[0]}")
            meant.add(unknown[1])
    for key in keys.values():
        if key.key not in config:
            if key.required and key.key not in meant:
                problems.append(f"{key.key}: required key is missing")
            continue
        try:
            values[key.attribute] = _coerce(key.kind, config[key.key])
        except ValueError as error:
            problems.append(f"{at(key.key)}{key.key}: {error}")
            continue
        if (check := _CHECKS.get(key.attribute)) and (error := check(values[key.attribute])):
            problems.append(f"{at(key.key)}{key.key}: {error}")

    region = config.get("aws:region")
    if region is None:
        if "aws:region" not in meant:
            problems.append("aws:region: required key is missing")
    elif not isinstance(region, str) or not REGION.match(region):
        problems.append(f"{at('aws:region')}aws:region: {region!r} is not an AWS region like eu-west-1")
    try:
        account = _account_id(config["aws:allowedAccountIds"]) if "aws:allowedAccountIds" in config else None
        if account is None and "aws:allowedAccountIds" not in meant:
            problems.append("aws:allowedAccountIds: required key is missing (the stack's one AWS account id)")
    except ValueError as error:
        account = None
        problems.append(f"{at('aws:allowedAccountIds')}aws:allowedAccountIds: {error}")

    if problems:
        raise SettingsError(source, problems)
    try:
        return StackSettings(stack=stack, region=str(region), account_id=str(account), **values)
    except SettingsError as error:
        raise SettingsError(source, error.problems) from None


def stack_file(stack: str, root: Path = REPO_ROOT) -> Path:
    return root / f"Pulumi.{stack}.yaml"


def stack_names(root: Path = REPO_ROOT) -> list[str]:
    """Every stack with a `Pulumi.<stack>.yaml` in the project: tests and `--all` cover each."""
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in root.glob("Pulumi.*.yaml"))


def load_stack_file(path: Path, overrides: Mapping[str, Any] | None = None) -> StackSettings:
    """Settings of the stack whose file is `path` (Pulumi.<stack>.yaml), with `overrides` on top."""
    name = path.name
    if not (name.startswith("Pulumi.") and name.endswith(".yaml")) or name == "Pulumi.yaml":
        raise SettingsError(str(path), ["a stack file is named Pulumi.<stack>.yaml"])
    if not path.is_file():
        raise SettingsError(str(path), ["stack file not found"])
    try:
        document, lines = stack_yaml.read(path)
    except stack_yaml.StackYamlError as error:
        raise SettingsError(str(path), [str(error)]) from None
    config = document.get("config") if isinstance(document, dict) else None
    if not isinstance(config, dict):
        raise SettingsError(str(path), ["no `config:` mapping"])
    return from_config_map(name[len("Pulumi.") : -len(".yaml")], {**config, **(overrides or {})}, path.name, lines)


def load_stack(stack: str, root: Path = REPO_ROOT) -> StackSettings:
    return load_stack_file(stack_file(stack, root))


def from_pulumi_config() -> StackSettings:
    """Settings inside a running Pulumi program: the one place that reads the engine's config."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    # pulumi.Config only answers for keys it is asked about; unknown-key detection needs them all.
    all_config = dict(runtime_config.CONFIG.get()) or dict(runtime_config.get_config_env())
    aws = pulumi.Config("aws")
    for key in ("region", "allowedAccountIds"):
        if (value := aws.get(key)) is not None:
            all_config[f"aws:{key}"] = value
    return from_config_map(pulumi.get_stack(), all_config, f"Pulumi.{pulumi.get_stack()}.yaml")


def pulumi_yaml_config() -> dict[str, dict[str, Any]]:
    """The `config:` block Pulumi.yaml must declare for these settings (keys without namespace)."""
    types = {str: "string", int: "integer", bool: "boolean", float: "string"}
    block: dict[str, dict[str, Any]] = {}
    for key in declared_keys():
        entry: dict[str, Any] = {"type": types[key.kind], "description": key.doc}
        if not key.required:
            # Pulumi project config has no number type: decimals are declared as strings.
            entry["default"] = str(key.default) if key.kind is float else key.default
        block[key.key.split(":", 1)[1]] = entry
    return block

"""The stack's IAM documents as plain data: trust policies and the workload roles' policies (execution, MLflow).

Scoped to this stack's buckets, key, repository, log groups and SageMaker resources; resource `*` only for
actions AWS does not scope to resources (noted where used). The roles themselves: infra/components/access.py.
"""

from __future__ import annotations

from infra.components.policy_documents import document, statement
from mlops.naming import ENCRYPTED_BUCKET_KINDS, Arns, Names

STS_AUDIENCE = "sts.amazonaws.com"
SAGEMAKER_METRIC_NAMESPACES = (
    "/aws/sagemaker/Endpoints",
    "/aws/sagemaker/TrainingJobs",
    "/aws/sagemaker/ProcessingJobs",
)


def service_trust_policy(service: str, account_id: str) -> dict:
    """Trust for an AWS service, limited to calls made on behalf of this account (confused deputy)."""
    return document(
        {
            "Effect": "Allow",
            "Principal": {"Service": service},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
        }
    )


def gitlab_subject(project_path: str, branch: str, tag: str = "") -> str:
    """GitLab's ID-token `sub` claim for pipelines of `tag` (a pattern), else of `branch`, in `project_path`."""
    if tag:
        return f"project_path:{project_path}:ref_type:tag:ref:{tag}"
    return f"project_path:{project_path}:ref_type:branch:ref:{branch}"


def oidc_trust_policy(provider_arn: str, gitlab_host: str, project_path: str, branch: str, tag: str = "") -> dict:
    """Trust for pipelines of one protected ref: the branch, or (prod) only tags matching `tag`, never both.

    `sub` is the one claim naming the ref that AWS can condition on; a tag pattern needs StringLike.
    """
    subject = {f"{gitlab_host}:sub": gitlab_subject(project_path, branch, tag)}
    return document(
        {
            "Effect": "Allow",
            "Principal": {"Federated": provider_arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {
                "StringEquals": {f"{gitlab_host}:aud": STS_AUDIENCE, **({} if tag else subject)},
                **({"StringLike": subject} if tag else {}),
            },
        }
    )


IN_A_VPC = {"Null": {"sagemaker:VpcSubnets": "false"}}
"""A job or model created with this condition names subnets: in a VPC stack nobody creates one outside it (the
policy pack checks the plan's requests; this holds for every request the role makes at run time)."""


def in_vpc_only(in_vpc: bool) -> dict | None:
    return IN_A_VPC if in_vpc else None


def vpc_job_statements(names: Names) -> list[dict]:
    """What SageMaker does with the execution role to put a job's or an endpoint's instances in the stack's subnets
    (SageMaker developer guide, "Give SageMaker access to resources in your Amazon VPC"): network interfaces of
    this account and region; the describes take no resource."""
    region_account = f"{names.region}:{names.account_id}"
    return [
        statement(
            "AttachJobsToStackSubnets",
            ["ec2:CreateNetworkInterface", "ec2:CreateNetworkInterfacePermission", "ec2:DeleteNetworkInterface",
             "ec2:DeleteNetworkInterfacePermission"],
            [f"arn:aws:ec2:{region_account}:{kind}/*" for kind in ("network-interface", "security-group", "subnet")],
        ),
        statement(
            "DescribeJobNetwork",
            ["ec2:DescribeDhcpOptions", "ec2:DescribeNetworkInterfaces",
             "ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVpcs"],
            "*",
        ),
    ]


def execution_policy(arns: Arns, key_arn: str, metrics_namespace: str, extra: tuple[dict, ...] = (),
                     in_vpc: bool = False) -> dict:
    names = arns.names
    kinds = ENCRYPTED_BUCKET_KINDS
    return document(
        *extra,
        *(vpc_job_statements(names) if in_vpc else []),
        statement("ListStackBuckets", ["s3:GetBucketLocation", "s3:ListBucket"], arns.buckets(kinds)),
        statement(
            "ReadWriteStackObjects", ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"], arns.objects(kinds)
        ),
        statement(
            "UseStackKey",
            ["kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"],
            [key_arn],
        ),
        # An async endpoint announces its answers with the model's role (endpointMode async).
        statement("NotifyAsyncAnswers", ["sns:Publish"],
                  [f"arn:aws:sns:{names.region}:{names.account_id}:{names.prefix}-async-*"]),  # names.async_topic's
        # GetAuthorizationToken is account-wide by design: it has no resource to scope to.
        statement("EcrLogin", ["ecr:GetAuthorizationToken"], "*"),
        statement(
            "PullModelImage",
            ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            [arns.repository],
        ),
        statement(
            "WriteJobLogs",
            ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
            [arns.log_groups, f"{arns.log_groups}:log-stream:*"],
        ),
        # PutMetricData has no resource; the namespace condition confines it to this stack's metrics and the
        # ones SageMaker's jobs and endpoints publish with this role (instance metrics of each kind).
        statement(
            "PutStackMetrics",
            ["cloudwatch:PutMetricData"],
            "*",
            {"StringEquals": {"cloudwatch:namespace": [metrics_namespace, *SAGEMAKER_METRIC_NAMESPACES]}},
        ),
        # Blue/green deployments with auto-rollback read the stack's alarms with the endpoint's role.
        statement("ReadRollbackAlarms", ["cloudwatch:DescribeAlarms"], [arns.scoped("cloudwatch", "alarm")]),
        statement("CreatePipelineJobs", ["sagemaker:CreateProcessingJob", "sagemaker:CreateTrainingJob"], arns.jobs(),
                  in_vpc_only(in_vpc)),
        statement(
            "RunPipelineJobs",
            [
                "sagemaker:AddTags",
                "sagemaker:DescribeProcessingJob",
                "sagemaker:DescribeTrainingJob",
                "sagemaker:StopProcessingJob",
                "sagemaker:StopTrainingJob",
            ],
            arns.jobs(),
        ),
        statement(
            "RegisterModels",
            [
                "sagemaker:AddTags",
                "sagemaker:CreateModelPackage",
                "sagemaker:DescribeModelPackage",
                "sagemaker:DescribeModelPackageGroup",
                "sagemaker:ListModelPackages",
                "sagemaker:DescribePipelineExecution",
                "sagemaker:ListPipelineExecutions",
                "sagemaker:ListPipelineParametersForExecution",
            ],
            arns.sagemaker("model-package-group", "model-package", "pipeline", "pipeline-execution"),
        ),
        statement(
            "TrackExperiments",
            # Exactly the REST calls MLflow 3.17's client makes for the Train and Evaluate steps (set_experiment,
            # start_run, log_params/metrics, set_tags, log_dict, sklearn.log_model: recorded against an MLflow
            # server), named as sagemaker-mlflow's IAM actions (POST logged-models is LogModel).
            [
                "sagemaker-mlflow:CreateExperiment",
                "sagemaker-mlflow:CreateRun",
                "sagemaker-mlflow:FinalizeLoggedModel",
                "sagemaker-mlflow:GetExperiment",
                "sagemaker-mlflow:GetExperimentByName",
                "sagemaker-mlflow:GetLoggedModel",
                "sagemaker-mlflow:GetMetricHistory",
                "sagemaker-mlflow:GetRun",
                "sagemaker-mlflow:LogBatch",
                "sagemaker-mlflow:LogModel",
                "sagemaker-mlflow:LogOutputs",
                "sagemaker-mlflow:UpdateRun",
            ],
            arns.sagemaker("mlflow-tracking-server"),
        ),
        statement(
            "ResolveServedModel",
            ["sagemaker:DescribeEndpoint", "sagemaker:DescribeEndpointConfig", "sagemaker:DescribeModel"],
            arns.sagemaker("endpoint", "endpoint-config", "model"),
        ),
        statement(
            "PassOwnRoleToSageMakerJobs",
            ["iam:PassRole"],
            [arns.role(names.execution_role)],
            {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        ),
    )


def source_model_statements(source: Names, package_arn: str) -> list[dict]:
    """What this stack's endpoint needs to run a package registered by another stack (prod pins dev's):
    its metadata, artifacts and image there, decrypted with that stack's key through S3 and ECR."""
    region_account = f"{source.region}:{source.account_id}"
    return [
        statement("DescribeSourceModel", ["sagemaker:DescribeModelPackage"], [package_arn]),
        statement(
            "ReadSourceModelArtifacts", ["s3:GetObject"], [f"arn:aws:s3:::{source.bucket('artifacts')}/pipelines/*"]
        ),
        statement(
            "PullSourceModelImage",
            ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            [f"arn:aws:ecr:{region_account}:repository/{source.ecr_repository}"],
        ),
        statement(
            "DecryptSourceModel",
            ["kms:Decrypt", "kms:DescribeKey"],
            [f"arn:aws:kms:{region_account}:key/*"],
            {
                "StringEquals": {
                    "kms:ViaService": [f"s3.{source.region}.amazonaws.com", f"ecr.{source.region}.amazonaws.com"]
                },
                "ForAnyValue:StringEquals": {"kms:ResourceAliases": [source.kms_alias]},
            },
        ),
    ]


def mlflow_policy(arns: Arns, key_arn: str) -> dict:
    artifacts = arns.names.bucket("artifacts")
    return document(
        statement("ListArtifacts", ["s3:GetBucketLocation", "s3:ListBucket"], [f"arn:aws:s3:::{artifacts}"]),
        statement(
            "ReadWriteMlflowArtifacts",
            ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
            [f"arn:aws:s3:::{artifacts}/mlflow/*"],
        ),
        statement("UseStackKey", ["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"], [key_arn]),
        statement(
            "RegisterMlflowModels",
            [
                "sagemaker:AddTags",
                "sagemaker:CreateModelPackage",
                "sagemaker:CreateModelPackageGroup",
                "sagemaker:DescribeModelPackage",
                "sagemaker:DescribeModelPackageGroup",
                "sagemaker:UpdateModelPackage",
            ],
            arns.sagemaker("model-package-group", "model-package"),
        ),
    )


def trigger_policy(pipeline_arns: list[str]) -> dict:
    """EventBridge's role: start exactly the stack's pipeline, nothing else."""
    return document(statement("StartThisPipeline", ["sagemaker:StartPipelineExecution"], pipeline_arns))


def forwarder_policy(bus_arn: str) -> dict:
    """A serving stack's alarms onto the retrain bus of the stack that registered its model."""
    return document(statement("ForwardAlarmsToRetrainBus", ["events:PutEvents"], [bus_arn]))


def scheduler_policy(jobs: list[str], execution_role_arn: str, key_arn: str, in_vpc: bool = False,
                     transform_jobs: list[str] | None = None, transform_models: list[str] | None = None,
                     pin_transform_keys: bool = True) -> dict:
    """The schedules' role: start the monitoring jobs with the execution role and (with a batch schedule) the batch
    transform jobs, their output and volume under the stack key; read their encrypted schedules. A transform job
    takes no role (it runs as the model's), so there is nothing to pass for it."""
    transforms = [
        statement("StartBatchTransforms", ["sagemaker:CreateTransformJob"], transform_jobs,
                  {"ArnEquals": {"sagemaker:OutputKmsKey": key_arn, "sagemaker:VolumeKmsKey": key_arn},
                   "ArnLike": {"sagemaker:ModelArn": transform_models}}  # the stack's own models only
                  if pin_transform_keys else None),
    ] if transform_jobs else []
    return document(
        statement("StartMonitoringJobs", ["sagemaker:CreateProcessingJob"], jobs, in_vpc_only(in_vpc)),
        *transforms,
        statement("TagMonitoringJobs", ["sagemaker:AddTags"], jobs + (transform_jobs or [])),
        statement(
            "PassExecutionRole",
            ["iam:PassRole"],
            [execution_role_arn],
            {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        ),
        # The schedule is encrypted with the stack's key; Scheduler decrypts it with this role at each run.
        statement("DecryptSchedule", ["kms:Decrypt"], [key_arn]),
    )

"""The training pipeline of a stack, as a SageMaker Pipelines definition built fully offline.

::

    Parameters: InputDataUri, ProcessingInstanceType, TrainingInstanceType, MinTestMetric,
                PromotionMinImprovement, ModelApprovalStatus, GitSha, Seed,
                Trigger (manual|drift|quality|schedule|new-data), CooldownHours,
                Candidate (empty: cross-validate every candidate), DataRevision (the DVC revision of the
                input, `mlops pipeline run|start --data-rev`; "none"), and one per estimator parameter of
                each candidate, <candidate>__<param>, defaulting to the problem's value

    CooldownGuard (processing)       an automatic Trigger within CooldownHours of another stops here
        |  depends_on
        v
    Validate (processing)            InputDataUri -> validation_report.json (PropertyFile "ValidationReport": the
                                     input's digest for Register); exit 1 stops the pipeline
        |  depends_on
        v
    Preprocess (processing)          InputDataUri -> train/ validation/ test/ baseline/
        |  outputs train, validation           \\ test               \\ baseline (drift baseline URI)
        v                                       \\                    \\
    Train (training)                             |                    |
        |  ModelArtifacts.S3ModelArtifacts       |                    |
        v                                        v                    |
    Evaluate (processing)  <--- model + test split ---> CompareChampion (processing, pipelines/champion.py)
        |  evaluation.json (PropertyFile "EvaluationReport")  |  comparison.json: the group's newest Approved
        v                                                     |  package scored on the same test split
    CheckTestMetric (condition) JsonGet primary_metric.value >= MinTestMetric (<= when lower is better)
        | true                                   | false              |
        v                                        v                    |
    CheckChampion (condition)             MetricBelowThreshold (fail) |
        challenger >= champion + PromotionMinImprovement              |
        | true                                   | false              |
        v                                        v                    |
    Register (model package, ModelStep)   ChampionNotBeaten (fail)    |
        model data <- Train, ModelMetrics <- Evaluate, metadata <- Evaluate, CompareChampion, baseline

The stack's problem declaration (``mlops-stack:problem``, model_code/problem.py) decides the
condition (its primary metric and direction), MinTestMetric's default (evaluationMinMetric, else
the problem's threshold) and the registered metadata (the task's metrics); it travels to the
steps inside the code bundle, beside model_code/.

Every job step runs the content-hashed code bundle (``pipelines/bundle.py``) in the stack's
image: the bundle is an input of each job, and the container entrypoint is a short launcher
(``LAUNCHER``) that checks the bundle's sha256, extracts it to a temporary folder and runs
``python -m model_code.<step>`` from there with the step's arguments. Nothing is uploaded while
the definition is built and nothing in it depends on time, randomness or the machine, so the
same inputs give the same bytes (``definition_json``), which is what infra hands to
``aws.sagemaker.Pipeline(pipeline_definition=...)``.

Security: every job step encrypts its volume and its S3 outputs with the stack's KMS key and
encrypts inter-container traffic (the policy pack checks the definition JSON).

SDK notes (sagemaker 3.x, see DESIGN.md "Known traps"):

- The SDK is imported lazily (``import pipelines.training`` stays cheap for infra and the CLI)
  and is used only inside ``_sdk_context``, which temporarily sets what it needs to stay
  offline: a region (clients are created at import, ``ProcessingStep`` builds a
  ``LocalSession``), ``SAGEMAKER_VALIDATE_ROLE=false`` (``ModelTrainer`` would call IAM),
  ``AWS_EC2_METADATA_DISABLED=true`` (client creation would ask the instance metadata service
  for credentials); it also validates the SDK config once instead of on every lookup (30 s
  per build otherwise) and quiets the SDK's logs. The environment is restored afterwards.
- The session is a ``PipelineSession`` with an explicit bucket, an explicit (telemetry-off)
  SDK config so no user/admin config file leaks defaults into the definition, and a boto3
  session pinned to the stack's region.
- ``ModelTrainer(source_code=...)`` would upload driver files under timestamped keys; the
  training step uses ``ModelTrainer`` without ``source_code`` and sets the container
  entrypoint in a ``TrainingStep`` subclass (``BundleTrainingStep``) instead, because
  ``ModelTrainer`` has no other way to set ``AlgorithmSpecification.ContainerEntrypoint``.
- The register step uses ``ModelBuilder(s3_model_data_url=<Train property>)``; passing
  ``model=`` silently drops ``ModelDataUrl``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from mlops.naming import Names
from mlops.settings import StackSettings
from model_code.launcher import launcher_command
from pipelines.bundle import BUNDLE_NAME, Bundle, build_bundle, digest_of_uri
from pipelines.network import Vpc, existing_vpc

if TYPE_CHECKING:  # the SDK is imported lazily (see _sdk); the problem comes from the settings
    from sagemaker.mlops.workflow import Pipeline

    from model_code.problem import Problem

# --- step names and the contract with model_code --------------------------------------------------

GUARD = "CooldownGuard"
VALIDATE = "Validate"
PREPROCESS = "Preprocess"
TRAIN = "Train"
EVALUATE = "Evaluate"
CHECK = "CheckTestMetric"
REGISTER = "Register"
FAIL = "MetricBelowThreshold"
COMPARE = "CompareChampion"  # the champion's steps: pipelines/champion.py
CHECK_CHAMPION = "CheckChampion"
CHAMPION_FAIL = "ChampionNotBeaten"
STEP_ORDER = (GUARD, VALIDATE, PREPROCESS, TRAIN, EVALUATE, COMPARE, CHECK, CHECK_CHAMPION, REGISTER, CHAMPION_FAIL,
              FAIL)
# model_code/guard.py: the automatic triggers share one cooldown
TRIGGERS = ("manual", "drift", "quality", "schedule", "new-data")

EVALUATION_PROPERTY_FILE = "EvaluationReport"
EVALUATION_OUTPUT = "evaluation"
EVALUATION_FILE = "evaluation.json"
PRIMARY_JSON_PATH = "primary_metric.value"
MLFLOW_RUN_ID_JSON_PATH = "model.mlflow_run_id"
ONNX_JSON_PATH = "model.onnx"
ONNX_EXPORT_KEY = "onnx_export"
VALIDATION_PROPERTY_FILE = "ValidationReport"
VALIDATION_FILE = "validation_report.json"  # model_code/validate.py writes it
DATA_SHA256_JSON_PATH = "input.sha256"
# Lineage of the input (mlops/registry.py LINEAGE_KEYS): the digest Validate read, the DVC revision the run was
# started from (`--data-rev`; "none" otherwise: metadata values cannot be empty)
DATA_SHA256_KEY = "data_sha256"
DVC_REVISION_KEY = "dvc_rev"
NO_DVC_REVISION = "none"
DATA_REVISION_PARAMETER = "DataRevision"
"""CustomerMetadataProperties key: "exported" when the package's model.tar.gz holds a checked model.onnx, else
"none" (model_code/edge/); `release promote` reads it for a target with serveRuntime=onnx."""
TEST_DATA_URI_KEY = "test_data_uri"


def metric_json_paths(problem: Problem) -> dict[str, str]:
    """CustomerMetadataProperties key -> JsonGet path in evaluation.json (keys as mlops/registry.py reads them)."""
    return {name: f"metrics.{name}.value" for name in problem.metric_names}


SPLITS = ("train", "validation", "test")
BASELINE_OUTPUT = "baseline"
BASELINE_FILE = "baseline.json"
DEFAULT_SEED = 42
DEFAULT_GIT_SHA = "unknown"
APPROVAL_STATUSES = ("PendingManualApproval", "Approved", "Rejected")

PROCESSING_ROOT = "/opt/ml/processing"
PROCESSING_CODE_DIR = f"{PROCESSING_ROOT}/input/code"
TRAINING_CODE_CHANNEL = "code"
TRAINING_CODE_DIR = f"/opt/ml/input/data/{TRAINING_CODE_CHANNEL}"

def launcher_entrypoint(bundle_path: str, digest: str, module: str) -> list[str]:
    """The container entrypoint that runs ``module`` from the bundle at ``bundle_path`` (model_code/launcher.py)."""
    return launcher_command(bundle_path, digest, module)


@dataclass(frozen=True)
class PipelineInputs:
    """Everything a definition depends on besides the stack's settings: plain strings, the problem
    and the registration threshold on its primary metric."""

    image_uri: str
    code_bundle_uri: str
    role_arn: str
    kms_key_arn: str
    mlflow_tracking_uri: str | None
    mlflow_experiment: str
    git_sha: str
    dataset: str
    problem: Problem
    min_test_metric: float
    vpc: Vpc | None = None  # the stack's subnets and security groups, when it runs in a VPC

    @property
    def calls_no_service(self) -> bool:
        """Train and Evaluate call nothing but MLflow: without it they run network-isolated."""
        return not self.mlflow_tracking_uri

    def __post_init__(self) -> None:
        problems = []
        if not re.fullmatch(r"arn:aws[a-z-]*:iam::[0-9]{12}:role/.+", self.role_arn):
            problems.append(f"role_arn {self.role_arn!r} is not an IAM role ARN (arn:aws:iam::<account>:role/...)")
        if not re.fullmatch(r"arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:(key|alias)/.+", self.kms_key_arn):
            problems.append(
                f"kms_key_arn {self.kms_key_arn!r} is not a KMS key ARN (arn:aws:kms:<region>:<account>:key/...)"
            )
        if not self.image_uri or any(c.isspace() for c in self.image_uri):
            problems.append(f"image_uri {self.image_uri!r} is not an image URI")
        if problems:
            raise ValueError("; ".join(problems))
        digest_of_uri(self.code_bundle_uri)

    @property
    def code_sha256(self) -> str:
        return digest_of_uri(self.code_bundle_uri)

    @property
    def image_digest(self) -> str | None:
        """``sha256:...`` when the image is referenced by digest (``repo@sha256:...``)."""
        match = re.search(r"@(sha256:[0-9a-f]{64})$", self.image_uri)
        return match[1] if match else None


# --- SDK access ------------------------------------------------------------------------------------


_SDK_CONFIG = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}
"""The whole SDK config: telemetry off (it would send HTTP requests), and no config file can inject
defaults into the definition."""

@contextlib.contextmanager
def _sdk_context(region: str) -> Iterator[SimpleNamespace]:
    """The SDK, in the conditions it needs to build a definition offline; everything is restored after.

    - ``AWS_DEFAULT_REGION`` (only when no region is set): importing ``sagemaker.mlops.workflow``
      creates a boto3 client, and every ``ProcessingStep`` builds a ``LocalSession``; both fail
      without a region.
    - ``SAGEMAKER_VALIDATE_ROLE=false``: ``ModelTrainer`` otherwise checks the role with IAM
      (``SimulatePrincipalPolicy``), a network call. The role is infra's and checked there.
    - ``AWS_EC2_METADATA_DISABLED=true``: the SDK creates boto3 clients (some at import time), and
      creating a client resolves credentials; without credentials in the environment botocore
      would ask the EC2 instance metadata service over the network. No API is called here, so
      no credentials are needed.
    - The SDK validates its config against a large JSON schema on every config lookup (about 0.4 s
      each, some 60 lookups per build). ``_SDK_CONFIG`` is validated once per process; while the
      pipeline is built, lookups skip re-validating that exact, already-validated config.
    - The SDK's expected chatter (job names popped from the definition, "no job is started") is
      silenced; real warnings from our code are not affected.
    """
    overrides = {"SAGEMAKER_VALIDATE_ROLE": "false", "AWS_EC2_METADATA_DISABLED": "true"}
    if not (os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")):
        overrides["AWS_DEFAULT_REGION"] = region
    saved_env = {name: os.environ.get(name) for name in overrides}
    saved_levels: dict[logging.Logger, int] = {}
    os.environ.update(overrides)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Running within a PipelineSession")
            sdk = _sdk()
            for name in [n for n in logging.root.manager.loggerDict if n.split(".")[0] == "sagemaker"]:
                logger = logging.getLogger(name)
                saved_levels[logger] = logger.level
                logger.setLevel(logging.ERROR)
            with _config_validated_once(sdk.SageMakerConfig):
                yield sdk
    finally:
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        for logger, level in saved_levels.items():
            logger.setLevel(level)


_CONFIG_VALIDATED = False


@contextlib.contextmanager
def _config_validated_once(config_class: type) -> Iterator[None]:
    global _CONFIG_VALIDATED
    original = config_class.__dict__["validate_sagemaker_config"]
    if not _CONFIG_VALIDATED:
        original.__func__(_SDK_CONFIG)
        _CONFIG_VALIDATED = True

    def validate(sagemaker_config: dict | None = None) -> None:
        if sagemaker_config != _SDK_CONFIG:
            original.__func__(sagemaker_config)

    config_class.validate_sagemaker_config = staticmethod(validate)
    try:
        yield
    finally:
        config_class.validate_sagemaker_config = original


def _sdk() -> SimpleNamespace:
    """The SDK classes used here, imported on first use (inside ``_sdk_context``)."""
    from sagemaker.core.config.config_manager import SageMakerConfig
    from sagemaker.core.model_metrics import MetricsSource, ModelMetrics
    from sagemaker.core.network import NetworkConfig
    from sagemaker.core.parameter import CategoricalParameter, ContinuousParameter, IntegerParameter
    from sagemaker.core.processing import Processor
    from sagemaker.core.shapes import (
        ProcessingInput,
        ProcessingOutput,
        ProcessingS3Input,
        ProcessingS3Output,
        StoppingCondition,
    )
    from sagemaker.core.training.configs import Compute, InputData, Networking, OutputDataConfig
    from sagemaker.core.workflow.conditions import ConditionGreaterThanOrEqualTo, ConditionLessThanOrEqualTo
    from sagemaker.core.workflow.execution_variables import ExecutionVariables
    from sagemaker.core.workflow.functions import Join, JsonGet
    from sagemaker.core.workflow.parameters import ParameterFloat, ParameterInteger, ParameterString
    from sagemaker.core.workflow.pipeline_context import PipelineSession
    from sagemaker.core.workflow.properties import PropertyFile
    from sagemaker.mlops.workflow import (
        ConditionStep,
        FailStep,
        ModelStep,
        Pipeline,
        ProcessingStep,
        TrainingStep,
    )
    from sagemaker.mlops.workflow.steps import TuningStep
    from sagemaker.serve.model_builder import ModelBuilder
    from sagemaker.train.model_trainer import ModelTrainer
    from sagemaker.train.tuner import HyperparameterTuner

    return SimpleNamespace(
        SageMakerConfig=SageMakerConfig,
        MetricsSource=MetricsSource,
        ModelMetrics=ModelMetrics,
        NetworkConfig=NetworkConfig,
        Processor=Processor,
        ProcessingInput=ProcessingInput,
        ProcessingOutput=ProcessingOutput,
        ProcessingS3Input=ProcessingS3Input,
        ProcessingS3Output=ProcessingS3Output,
        StoppingCondition=StoppingCondition,
        Compute=Compute,
        InputData=InputData,
        Networking=Networking,
        OutputDataConfig=OutputDataConfig,
        ConditionGreaterThanOrEqualTo=ConditionGreaterThanOrEqualTo,
        ConditionLessThanOrEqualTo=ConditionLessThanOrEqualTo,
        ExecutionVariables=ExecutionVariables,
        Join=Join,
        JsonGet=JsonGet,
        ParameterFloat=ParameterFloat,
        ParameterInteger=ParameterInteger,
        ParameterString=ParameterString,
        PipelineSession=PipelineSession,
        PropertyFile=PropertyFile,
        ConditionStep=ConditionStep,
        FailStep=FailStep,
        ModelStep=ModelStep,
        Pipeline=Pipeline,
        ProcessingStep=ProcessingStep,
        TrainingStep=TrainingStep,
        TuningStep=TuningStep,
        HyperparameterTuner=HyperparameterTuner,
        CategoricalParameter=CategoricalParameter,
        ContinuousParameter=ContinuousParameter,
        IntegerParameter=IntegerParameter,
        ModelBuilder=ModelBuilder,
        ModelTrainer=ModelTrainer,
    )


def _session(sdk: SimpleNamespace, settings: StackSettings) -> Any:
    import boto3

    boto_session = boto3.Session(region_name=settings.region)
    return sdk.PipelineSession(
        boto_session=boto_session,
        default_bucket=Names.of(settings).bucket("artifacts"),
        sagemaker_config=json.loads(json.dumps(_SDK_CONFIG)),
    )


# --- parameters ------------------------------------------------------------------------------------


def code_bundle(settings: StackSettings) -> Bundle:
    """The stack's code bundle: model_code/ and the stack's problem (its sample data left out)."""
    return build_bundle(problem=settings.problem_dir, problem_sample=settings.problem_declaration().sample)


def sample_data(settings: StackSettings) -> Path | None:
    """The stack problem's sample data: what the default input holds until real data arrives (seedSampleData)."""
    return settings.problem_declaration().sample_path


def default_input_location(settings: StackSettings, dataset: str | None = None) -> tuple[str, str]:
    """(data bucket, ``datasets/<dataset>/``): the pipeline's default input, every CSV file under the prefix.
    The dataset is the stack problem's name unless given."""
    return Names.of(settings).bucket("data"), f"datasets/{dataset or settings.problem_declaration().name}/"


def default_input_data_uri(settings: StackSettings, dataset: str | None = None) -> str:
    bucket, prefix = default_input_location(settings, dataset)
    return f"s3://{bucket}/{prefix}"


def default_mlflow_tracking_uri(settings: StackSettings) -> str | None:
    """The ARN of the stack's managed MLflow tracking server (derived, no lookup), or None without MLflow."""
    if not settings.mlflow_enabled:
        return None
    partition = "aws-cn" if settings.region.startswith("cn-") else (
        "aws-us-gov" if settings.region.startswith("us-gov-") else "aws"
    )
    server = Names.of(settings).mlflow_server
    return f"arn:{partition}:sagemaker:{settings.region}:{settings.account_id}:mlflow-tracking-server/{server}"


def hyperparameter_defaults(problem: Problem) -> dict[str, str]:
    """Each is a pipeline parameter of that name, handed to the Train step (Problem.hyperparameter_texts)."""
    return problem.hyperparameter_texts()


def _parameters(sdk: SimpleNamespace, settings: StackSettings, inputs: PipelineInputs) -> SimpleNamespace:
    hyperparameters = {name: sdk.ParameterString(name, value)
                       for name, value in hyperparameter_defaults(inputs.problem).items()}
    return SimpleNamespace(
        input_data=sdk.ParameterString("InputDataUri", default_input_data_uri(settings, inputs.dataset)),
        processing_instance_type=sdk.ParameterString("ProcessingInstanceType", settings.processing_instance_type),
        training_instance_type=sdk.ParameterString("TrainingInstanceType", settings.training_instance_type),
        min_metric=sdk.ParameterFloat("MinTestMetric", inputs.min_test_metric),
        min_improvement=sdk.ParameterFloat("PromotionMinImprovement", settings.min_improvement),
        approval_status=sdk.ParameterString(
            "ModelApprovalStatus", APPROVAL_STATUSES[0], enum_values=list(APPROVAL_STATUSES)
        ),
        git_sha=sdk.ParameterString("GitSha", inputs.git_sha),
        seed=sdk.ParameterInteger("Seed", DEFAULT_SEED),
        trigger=sdk.ParameterString("Trigger", TRIGGERS[0], enum_values=list(TRIGGERS)),
        cooldown_hours=sdk.ParameterInteger("CooldownHours", settings.retrain_cooldown_hours),
        candidate=sdk.ParameterString("Candidate", ""),
        data_revision=sdk.ParameterString(DATA_REVISION_PARAMETER, NO_DVC_REVISION),
        **hyperparameters,
    )


# --- step factories ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Build:
    """What every step factory needs: the SDK, the pipeline session, settings, parameters, inputs."""

    sdk: SimpleNamespace
    session: Any
    settings: StackSettings
    params: SimpleNamespace
    inputs: PipelineInputs

    def output_uri(self, step: str, output: str) -> Any:
        """s3://<artifacts>/pipelines/<pipeline>/<execution id>/<step>/<output>, resolved per execution."""
        names = Names.of(self.settings)
        return self.sdk.Join(
            on="/",
            values=[
                f"s3://{names.bucket('artifacts')}/pipelines/{names.pipeline}",
                self.sdk.ExecutionVariables.PIPELINE_EXECUTION_ID,
                step,
                output,
            ],
        )

    def s3_input(self, name: str, uri: Any, local_path: str) -> Any:
        return self.sdk.ProcessingInput(
            input_name=name,
            s3_input=self.sdk.ProcessingS3Input(
                s3_uri=uri,
                local_path=local_path,
                s3_data_type="S3Prefix",
                s3_input_mode="File",
                s3_data_distribution_type="FullyReplicated",
            ),
        )

    def code_input(self) -> Any:
        return self.s3_input("code", self.inputs.code_bundle_uri, PROCESSING_CODE_DIR)

    def s3_output(self, step: str, name: str, local_path: str) -> Any:
        return self.sdk.ProcessingOutput(
            output_name=name,
            s3_output=self.sdk.ProcessingS3Output(
                s3_uri=self.output_uri(step, name), local_path=local_path, s3_upload_mode="EndOfJob"
            ),
        )

    def processor(self, module: str, *, isolated: bool = False) -> Any:
        """A processing job of the stack's image that runs ``module`` from the code bundle, encrypted, in the stack's
        VPC; ``isolated``: with no network at all (pipelines/network.py)."""
        inputs, vpc = self.inputs, self.inputs.vpc
        return self.sdk.Processor(
            role=inputs.role_arn,
            image_uri=inputs.image_uri,
            instance_count=1,
            instance_type=self.params.processing_instance_type,
            entrypoint=launcher_entrypoint(f"{PROCESSING_CODE_DIR}/{BUNDLE_NAME}", inputs.code_sha256, module),
            volume_size_in_gb=30,
            volume_kms_key=inputs.kms_key_arn,
            output_kms_key=inputs.kms_key_arn,
            max_runtime_in_seconds=3600,
            base_job_name=module.replace("_", "-").replace(".", "-"),
            sagemaker_session=self.session,
            env=provenance_environment(self.params, inputs),
            network_config=self.sdk.NetworkConfig(
                encrypt_inter_container_traffic=True, enable_network_isolation=isolated or None,
                **(vpc.sdk_arguments() if vpc else {}),
            ),
        )

    def evaluation_value(self, report: Any, json_path: str) -> Any:
        return self.sdk.JsonGet(step_name=EVALUATE, property_file=report, json_path=json_path)


def provenance_environment(params: Any, inputs: PipelineInputs) -> dict[str, Any]:
    """Environment of every job; model_code records it (model_code/env.py declares the names)."""
    return {
        "MLOPS_GIT_SHA": params.git_sha,
        "MLOPS_IMAGE_URI": inputs.image_uri,
        "MLOPS_CODE_SHA256": inputs.code_sha256,
    }


def training_environment(params: Any, inputs: PipelineInputs) -> dict[str, Any]:
    """Environment of the training container: SageMaker's contract paths made explicit, provenance,
    and MLflow tracking when the stack has it."""
    environment: dict[str, Any] = {
        "SM_CHANNEL_TRAIN": "/opt/ml/input/data/train",
        "SM_CHANNEL_VALIDATION": "/opt/ml/input/data/validation",
        "SM_CHANNEL_CODE": TRAINING_CODE_DIR,
        "SM_MODEL_DIR": "/opt/ml/model",
        "SM_OUTPUT_DATA_DIR": "/opt/ml/output/data",
        "SM_OUTPUT_DIR": "/opt/ml/output",
        "SM_INPUT_CONFIG_DIR": "/opt/ml/input/config",
        **provenance_environment(params, inputs),
    }
    if inputs.mlflow_tracking_uri:
        environment["MLFLOW_TRACKING_URI"] = inputs.mlflow_tracking_uri
        environment["MLFLOW_EXPERIMENT_NAME"] = inputs.mlflow_experiment
    return environment


def _split_uri(preprocess: Any, name: str) -> Any:
    return preprocess.properties.ProcessingOutputConfig.Outputs[name].S3Output.S3Uri


def _model_uri(b: Build, train: Any) -> Any:
    """The trained model: the training job's artifact, or the tuning job's best training job's."""
    if b.settings.tuning_max_jobs:
        names = Names.of(b.settings)
        execution = b.sdk.ExecutionVariables.PIPELINE_EXECUTION_ID
        prefix = b.sdk.Join(on="/", values=[f"pipelines/{names.pipeline}", execution, TRAIN, "output"])
        return train.get_top_model_s3_uri(top_k=0, s3_bucket=names.bucket("artifacts"), prefix=prefix)
    return train.properties.ModelArtifacts.S3ModelArtifacts


def guard_step(b: Build) -> Any:
    """Stop an automatically triggered execution that comes within the cooldown of another one."""
    step_args = b.processor("model_code.guard").run(
        inputs=[b.code_input()],
        arguments=["--pipeline-name", Names.of(b.settings).pipeline,
                   "--execution-arn", b.sdk.ExecutionVariables.PIPELINE_EXECUTION_ARN,
                   "--trigger", b.params.trigger, "--cooldown-hours", b.params.cooldown_hours.to_string()],
    )
    return b.sdk.ProcessingStep(name=GUARD, step_args=step_args,
                                description="At most one automatic retrain per cooldown window")


def validate_step(b: Build, guard: Any) -> Any:
    """Validate the raw input against the schema; a failed check fails the job (exit code 1)."""
    data_dir, report_dir = f"{PROCESSING_ROOT}/input/data", f"{PROCESSING_ROOT}/output/report"
    step_args = b.processor("model_code.validate", isolated=True).run(
        inputs=[b.code_input(), b.s3_input("data", b.params.input_data, data_dir)],
        outputs=[b.s3_output(VALIDATE, "report", report_dir)],
        arguments=["--input", data_dir, "--output", report_dir],
    )
    return b.sdk.ProcessingStep(name=VALIDATE, step_args=step_args, depends_on=[guard],
                                property_files=[validation_property_file(b.sdk)],
                                description="Check the raw data against the schema")


def validation_property_file(sdk: SimpleNamespace) -> Any:
    return sdk.PropertyFile(name=VALIDATION_PROPERTY_FILE, output_name="report", path=VALIDATION_FILE)


def preprocess_step(b: Build, validate: Any) -> Any:
    """Split train/validation/test (seeded) and compute the drift baseline on the train split."""
    data_dir, out_dir = f"{PROCESSING_ROOT}/input/data", f"{PROCESSING_ROOT}/output"
    step_args = b.processor("model_code.preprocess", isolated=True).run(
        inputs=[b.code_input(), b.s3_input("data", b.params.input_data, data_dir)],
        outputs=[b.s3_output(PREPROCESS, name, f"{out_dir}/{name}") for name in (*SPLITS, BASELINE_OUTPUT)],
        arguments=["--input", data_dir, "--output", out_dir, "--seed", b.params.seed.to_string()],
    )
    return b.sdk.ProcessingStep(
        name=PREPROCESS,
        step_args=step_args,
        depends_on=[validate],
        description="Split the data and compute the drift baseline",
    )


def _bundle_training_step_class(sdk: SimpleNamespace) -> type:
    class BundleTrainingStep(sdk.TrainingStep):
        """A TrainingStep whose container runs the code bundle.

        ``ModelTrainer`` sets ``ContainerEntrypoint`` only together with ``source_code``, which
        uploads files under timestamped keys; here the entrypoint is added to the request that
        ``ModelTrainer.train()`` produced, and everything else is the SDK's own request.
        """

        def __init__(self, *args: Any, container_entrypoint: list[str], **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.container_entrypoint = container_entrypoint

        @property
        def arguments(self) -> dict[str, Any]:
            request = super().arguments
            request["AlgorithmSpecification"]["ContainerEntrypoint"] = list(self.container_entrypoint)
            return request

    return BundleTrainingStep


def _trainer(b: Build, hyperparameters: dict[str, Any]) -> Any:
    sdk, inputs, vpc = b.sdk, b.inputs, b.inputs.vpc
    return sdk.ModelTrainer(
        sagemaker_session=b.session,
        role=inputs.role_arn,
        base_job_name="model-code-train",
        training_image=inputs.image_uri,
        compute=sdk.Compute(
            instance_type=b.params.training_instance_type,
            instance_count=1,
            volume_size_in_gb=30,
            volume_kms_key_id=inputs.kms_key_arn,
        ),
        networking=sdk.Networking(
            enable_inter_container_traffic_encryption=True, enable_network_isolation=inputs.calls_no_service or None,
            **(vpc.sdk_arguments() if vpc else {}),
        ),
        stopping_condition=sdk.StoppingCondition(max_runtime_in_seconds=3600),
        output_data_config=sdk.OutputDataConfig(
            s3_output_path=b.output_uri(TRAIN, "output"), kms_key_id=inputs.kms_key_arn
        ),
        environment=training_environment(b.params, inputs),
        hyperparameters=hyperparameters,
    )


def _channels(b: Build, preprocess: Any) -> list[Any]:
    sdk = b.sdk
    return [
        sdk.InputData(channel_name="train", data_source=_split_uri(preprocess, "train")),
        sdk.InputData(channel_name="validation", data_source=_split_uri(preprocess, "validation")),
        sdk.InputData(channel_name=TRAINING_CODE_CHANNEL, data_source=b.inputs.code_bundle_uri),
    ]


def train_step(b: Build, preprocess: Any) -> Any:
    """Fit the model on the train channel (the candidates cross-validated), score the validation channel,
    log to MLflow; a tuning step instead when the stack has tuningMaxJobs."""
    if b.settings.tuning_max_jobs:
        from pipelines.tuning import tuning_step

        return tuning_step(b, preprocess)
    inputs = b.inputs
    trainer = _trainer(b, {"seed": b.params.seed.to_string(), "candidate": b.params.candidate,
                           **{name: getattr(b.params, name) for name in hyperparameter_defaults(inputs.problem)}})
    step_args = trainer.train(input_data_config=_channels(b, preprocess), wait=False, logs=False)
    return _bundle_training_step_class(b.sdk)(
        name=TRAIN,
        step_args=step_args,
        description="Train the model",
        container_entrypoint=launcher_entrypoint(
            f"{TRAINING_CODE_DIR}/{BUNDLE_NAME}", inputs.code_sha256, "model_code.train"
        ),
    )


def evaluation_property_file(sdk: SimpleNamespace) -> Any:
    return sdk.PropertyFile(name=EVALUATION_PROPERTY_FILE, output_name=EVALUATION_OUTPUT, path=EVALUATION_FILE)


def scoring_step(b: Build, preprocess: Any, train: Any, report: Any, *, name: str, module: str, output: str,
                 arguments: list[Any], description: str, isolated: bool = False) -> Any:
    """A processing step that scores the trained model on the test split and writes the PropertyFile `report`
    (in folder `output`): Evaluate, CompareChampion."""
    model_dir, test_dir = f"{PROCESSING_ROOT}/input/model", f"{PROCESSING_ROOT}/input/test"
    out_dir = f"{PROCESSING_ROOT}/output/{output}"
    step_args = b.processor(module, isolated=isolated).run(
        inputs=[
            b.code_input(),
            b.s3_input("model", _model_uri(b, train), model_dir),
            b.s3_input("test", _split_uri(preprocess, "test"), test_dir),
        ],
        outputs=[b.s3_output(name, output, out_dir)],
        arguments=["--model", model_dir, "--test", test_dir, *arguments, "--output", out_dir],
    )
    return b.sdk.ProcessingStep(name=name, step_args=step_args, property_files=[report], description=description)


def evaluate_step(b: Build, preprocess: Any, train: Any, report: Any) -> Any:
    """Score the test split with the trained model; write evaluation.json (the PropertyFile ``report``)."""
    return scoring_step(b, preprocess, train, report, name=EVALUATE, module="model_code.evaluate",
                        output=EVALUATION_OUTPUT, arguments=[], description="Evaluate on the test split",
                        isolated=b.inputs.calls_no_service)


def customer_metadata(b: Build, report: Any, preprocess: Any, comparison: Any) -> dict[str, Any]:
    """CustomerMetadataProperties of the registered package (keys as mlops/registry.py reads them)."""
    from pipelines.champion import champion_metadata

    sdk, inputs = b.sdk, b.inputs
    metadata: dict[str, Any] = {
        key: sdk.Join(on="", values=[b.evaluation_value(report, path)])
        for key, path in metric_json_paths(inputs.problem).items()
    }
    metadata["primary_metric"] = inputs.problem.primary_metric
    metadata["primary_metric_direction"] = inputs.problem.direction
    metadata["problem"] = inputs.problem.name
    metadata["git_sha"] = b.params.git_sha
    metadata["code_bundle_sha256"] = inputs.code_sha256
    metadata[DATA_SHA256_KEY] = sdk.Join(on="", values=[sdk.JsonGet(
        step_name=VALIDATE, property_file=validation_property_file(sdk), json_path=DATA_SHA256_JSON_PATH)])
    metadata[DVC_REVISION_KEY] = b.params.data_revision
    metadata[ONNX_EXPORT_KEY] = sdk.Join(on="", values=[b.evaluation_value(report, ONNX_JSON_PATH)])
    metadata["drift_baseline_uri"] = sdk.Join(on="/", values=[_split_uri(preprocess, BASELINE_OUTPUT), BASELINE_FILE])
    # `release promote` re-scores the target's model on it (the same data as this package's test metric)
    metadata[TEST_DATA_URI_KEY] = sdk.Join(on="", values=[_split_uri(preprocess, "test")])
    metadata.update(champion_metadata(b, comparison))
    if inputs.image_digest:
        metadata["image_digest"] = inputs.image_digest
    if inputs.mlflow_tracking_uri:  # evaluate writes null there when train ran without MLflow
        metadata["mlflow_run_id"] = sdk.Join(on="", values=[b.evaluation_value(report, MLFLOW_RUN_ID_JSON_PATH)])
    return metadata


def register_step(b: Build, preprocess: Any, train: Any, evaluate: Any, report: Any, comparison: Any) -> Any:
    """Register the model package (approval status from the parameter) with metrics and lineage."""
    sdk = b.sdk
    builder = sdk.ModelBuilder(
        s3_model_data_url=_model_uri(b, train),  # not model=: that silently drops ModelDataUrl
        image_uri=b.inputs.image_uri,
        role_arn=b.inputs.role_arn,
        sagemaker_session=b.session,
        dependencies=None,
        log_level=logging.ERROR,  # ModelBuilder sets its module logger to DEBUG by default
    )
    report_uri = sdk.Join(
        on="/",
        values=[evaluate.properties.ProcessingOutputConfig.Outputs[EVALUATION_OUTPUT].S3Output.S3Uri, EVALUATION_FILE],
    )
    step_args = builder.register(
        model_package_group_name=Names.of(b.settings).model_package_group,
        content_types=["application/json", "text/csv"],
        response_types=["application/json"],
        inference_instances=[b.settings.endpoint_instance_type],
        approval_status=b.params.approval_status,
        description="Trained by the mlops-stack training pipeline",
        model_metrics=sdk.ModelMetrics(
            model_statistics=sdk.MetricsSource(content_type="application/json", s3_uri=report_uri)
        ),
        customer_metadata_properties=customer_metadata(b, report, preprocess, comparison),
    )
    return sdk.ModelStep(name=REGISTER, step_args=step_args, description="Register the model package")


def fail_step(b: Build, report: Any) -> Any:
    return b.sdk.FailStep(
        name=FAIL,
        error_message=b.sdk.Join(
            on="",
            values=[
                f"test {b.inputs.problem.primary_metric} ",
                b.evaluation_value(report, PRIMARY_JSON_PATH),
                " does not clear the threshold MinTestMetric=",
                b.params.min_metric,
                f" ({b.inputs.problem.direction} is better); the model is not registered",
            ],
        ),
    )


def check_step(b: Build, report: Any, check_champion: Any, fail: Any) -> Any:
    compare = b.sdk.ConditionGreaterThanOrEqualTo if b.inputs.problem.direction == "higher" \
        else b.sdk.ConditionLessThanOrEqualTo
    condition = compare(left=b.evaluation_value(report, PRIMARY_JSON_PATH), right=b.params.min_metric)
    return b.sdk.ConditionStep(name=CHECK, conditions=[condition], if_steps=[check_champion], else_steps=[fail])


# --- the pipeline ----------------------------------------------------------------------------------


def get_pipeline(
    settings: StackSettings,
    *,
    image_uri: str,
    code_bundle_uri: str,
    role_arn: str,
    kms_key_arn: str,
    mlflow_tracking_uri: str | None = None,
    mlflow_experiment: str | None = None,
    git_sha: str = DEFAULT_GIT_SHA,
    dataset: str | None = None,
    problem: Problem | None = None,
    vpc: Vpc | None = None,
) -> Pipeline:
    """The training pipeline of the stack described by ``settings`` (see the module docstring).

    ``code_bundle_uri`` is ``s3://<bucket>/code/<sha256>/model_code.tar.gz`` (``pipelines.bundle``);
    ``mlflow_tracking_uri`` defaults to the stack's managed tracking server ARN when the stack has
    MLflow, and ``mlflow_experiment`` to the pipeline's name. ``git_sha`` is the default of the
    ``GitSha`` parameter. ``problem`` defaults to the stack's (``settings.problem_declaration()``) and
    ``dataset`` (the default input's folder) to its name. ``vpc`` holds the created VPC's subnets and security
    groups (infra's outputs); a stack naming existing ones (vpcSubnetIds) gets those. Nothing is uploaded and no
    AWS API is called.
    """
    names = Names.of(settings)
    inputs = PipelineInputs(
        image_uri=image_uri,
        code_bundle_uri=code_bundle_uri,
        role_arn=role_arn,
        kms_key_arn=kms_key_arn,
        mlflow_tracking_uri=mlflow_tracking_uri or default_mlflow_tracking_uri(settings),
        mlflow_experiment=mlflow_experiment or names.pipeline,
        git_sha=git_sha,
        dataset=dataset or (problem or settings.problem_declaration()).name,
        problem=problem or settings.problem_declaration(),
        min_test_metric=settings.min_test_metric,
        vpc=vpc or existing_vpc(settings),
    )
    from pipelines import champion

    with _sdk_context(settings.region) as sdk:
        session = _session(sdk, settings)
        params = _parameters(sdk, settings, inputs)
        b = Build(sdk, session, settings, params, inputs)

        report = evaluation_property_file(sdk)
        comparison = champion.comparison_property_file(b)
        guard = guard_step(b)
        validate = validate_step(b, guard)
        preprocess = preprocess_step(b, validate)
        train = train_step(b, preprocess)
        evaluate = evaluate_step(b, preprocess, train, report)
        compare = champion.compare_step(b, preprocess, train, comparison)
        register = register_step(b, preprocess, train, evaluate, report, comparison)
        check = check_step(b, report, champion.check_champion_step(b, comparison, register), fail_step(b, report))

        return _offline_pipeline_class(sdk)(
            name=names.pipeline,
            parameters=list(vars(params).values()),
            steps=[guard, validate, preprocess, train, evaluate, compare, check],
            sagemaker_session=session,
            pipeline_experiment_config=None,
        )


def _offline_pipeline_class(sdk: SimpleNamespace) -> type:
    class OfflinePipeline(sdk.Pipeline):
        """A Pipeline whose ``definition()`` compiles its steps under ``_sdk_context`` (offline, quiet, fast)."""

        def definition(self) -> str:
            with _sdk_context(self.sagemaker_session.boto_region_name):
                return super().definition()

    return OfflinePipeline


def definition(settings: StackSettings, **kwargs: Any) -> dict[str, Any]:
    """The pipeline definition as a JSON document (dict)."""
    return json.loads(get_pipeline(settings, **kwargs).definition())


def definition_json(settings: StackSettings, **kwargs: Any) -> str:
    """The canonical definition JSON (sorted keys, compact): what infra passes to
    ``aws.sagemaker.Pipeline(pipeline_definition=...)``. Same inputs, same bytes."""
    return canonical_json(definition(settings, **kwargs))


def canonical_json(document: Mapping[str, Any]) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)

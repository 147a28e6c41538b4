"""The Train step as a SageMaker hyperparameter tuning job (``tuningMaxJobs`` > 0).

The problem's search spaces become the job's ranges (``candidate`` a categorical one when there
are several candidates, ``<candidate>__<param>`` the declared ``space``s); every estimator parameter
no space covers stays a static hyperparameter with its pipeline parameter's value. The objective is
the validation value of the primary metric, which train prints (model_code/train.py), maximised or
minimised by its direction. Evaluate and Register take the best training job's model
(pipelines/training.py ``_model_uri``). The local executor runs the same request
(mlops/local/tuning.py).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from model_code.launcher import CODE_SHA256_HYPERPARAMETER
from pipelines.network import Vpc
from pipelines.training import DEFAULT_SEED, TRAIN, Build, _channels, _trainer, hyperparameter_defaults

if TYPE_CHECKING:
    from model_code.problem import Problem


def objective_metric(problem: Problem) -> tuple[str, str]:
    """The tuning objective's name and the regex that reads it from train's log (model_code/train.py)."""
    return (f"validation:{problem.primary_metric}",
            rf"objective validation:{problem.primary_metric}=([-+0-9.eE]+|nan)")


def parameter_ranges(b: Build) -> dict[str, Any]:
    """The problem's search spaces as SageMaker ranges: ``candidate`` (when several) and ``<candidate>__<param>``."""
    sdk, problem = b.sdk, b.inputs.problem
    ranges: dict[str, Any] = {}
    if len(problem.candidates) > 1:
        ranges["candidate"] = sdk.CategoricalParameter([c.name for c in problem.candidates])
    for candidate in problem.candidates:
        for name, space in candidate.space.items():
            scaling = "Logarithmic" if space.get("scale") == "log" else "Linear"
            kind = sdk.IntegerParameter if isinstance(space["low"], int) and isinstance(space["high"], int) \
                else sdk.ContinuousParameter
            ranges[f"{candidate.name}__{name}"] = kind(space["low"], space["high"], scaling_type=scaling)
    return ranges


def tuning_step(b: Build, preprocess: Any) -> Any:
    """A SageMaker hyperparameter tuning job over the problem's spaces: each training job trains one
    candidate (no cross-validation) with drawn values and reports the validation primary metric.

    A tuning job's training jobs cannot set a container entrypoint: they start the image as
    ``<entrypoint> train``, which runs the code bundle of the ``code`` channel, checked against the
    static hyperparameter ``mlops_code_sha256`` (model_code/launcher.py).
    """
    sdk, inputs, settings = b.sdk, b.inputs, b.settings
    problem = inputs.problem
    # trials skip permutation importance; Evaluate measures it for the model kept
    static = {"seed": b.params.seed.to_string(), CODE_SHA256_HYPERPARAMETER: inputs.code_sha256, "importance": "false"}
    if len(problem.candidates) == 1:
        static["candidate"] = problem.candidates[0].name
    ranges = parameter_ranges(b)
    # the parameters no space covers keep their pipeline parameters' values
    static.update({k: getattr(b.params, k) for k in hyperparameter_defaults(problem) if k not in ranges})
    name, regex = objective_metric(problem)
    tuner = sdk.HyperparameterTuner(
        model_trainer=_trainer(b, static),
        objective_metric_name=name,
        hyperparameter_ranges=ranges,
        metric_definitions=[{"Name": name, "Regex": regex}],
        strategy="Random",
        objective_type="Maximize" if problem.direction == "higher" else "Minimize",
        max_jobs=settings.tuning_max_jobs,
        max_parallel_jobs=settings.tuning_parallel_jobs,
        random_seed=DEFAULT_SEED,
        base_tuning_job_name="model-code-tune",
    )
    step_args = tuner.tune(inputs=_channels(b, preprocess), wait=False)
    return _encrypted_tuning_step_class(sdk)(name=TRAIN, step_args=step_args, kms_key_arn=inputs.kms_key_arn,
                                             vpc=inputs.vpc, isolated=inputs.calls_no_service,
                                             description="Tune the candidates' hyperparameters")


def _encrypted_tuning_step_class(sdk: SimpleNamespace) -> type:
    class EncryptedTuningStep(sdk.TuningStep):
        """A TuningStep whose training jobs encrypt their volumes and inter-container traffic.

        ``HyperparameterTuner`` copies neither ``Compute.volume_kms_key_id`` nor ``Networking``'s
        inter-container encryption, VPC and isolation of its ModelTrainer into ``TrainingJobDefinition``
        (sagemaker 3.27); they are added to the SDK's own request here (the policy pack checks them).
        """

        def __init__(self, *args: Any, kms_key_arn: str, vpc: Vpc | None, isolated: bool, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.kms_key_arn, self.vpc, self.isolated = kms_key_arn, vpc, isolated

        @property
        def arguments(self) -> dict[str, Any]:
            request = super().arguments
            job = request["TrainingJobDefinition"]
            job["ResourceConfig"]["VolumeKmsKeyId"] = self.kms_key_arn
            job["EnableInterContainerTrafficEncryption"] = True
            if self.vpc is not None:
                job["VpcConfig"] = self.vpc.request()
            if self.isolated:
                job["EnableNetworkIsolation"] = True
            return request

    return EncryptedTuningStep

"""Every environment variable that model_code reads, declared once, typed and documented.

No other module in ``model_code`` touches ``os.environ`` (a test enforces it). Steps read a
variable through its declaration, e.g. ``SM_MODEL_DIR.get()``; tests pass an explicit mapping
(``SM_MODEL_DIR.get({"SM_MODEL_DIR": "/tmp/m"})``) instead of patching the process environment.

SageMaker's container contract sets the ``SM_*`` variables in training jobs; the local executor
sets the same names with paths mapped to a run folder. Defaults are SageMaker's own paths, so a
step started with no environment behaves as it would inside a training job.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")


class EnvError(ValueError):
    """An environment variable is set to a value that cannot be parsed."""


@dataclass(frozen=True)
class EnvVar(Generic[T]):
    """One declared environment variable.

    ``parse`` turns the raw string into the typed value; ``default`` is used when the variable is
    unset or empty. ``passthrough`` marks variables read by a library (MLflow) rather than by our
    code: they are declared here so the list is complete, and set, never read, by model_code.
    """

    name: str
    default: T
    parse: Callable[[str], T]
    doc: str
    passthrough: bool = False

    def get(self, environ: Mapping[str, str] | None = None) -> T:
        source = os.environ if environ is None else environ
        raw = source.get(self.name, "")
        if raw == "":
            return self.default
        try:
            return self.parse(raw)
        except ValueError as exc:
            raise EnvError(f"environment variable {self.name}={raw!r} is invalid: {exc}") from exc

    def is_set(self, environ: Mapping[str, str] | None = None) -> bool:
        source = os.environ if environ is None else environ
        return source.get(self.name, "") != ""


def _path(raw: str) -> Path:
    return Path(raw)


def _optional_str(raw: str) -> str | None:
    return raw


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw)
        if value < minimum:
            raise ValueError(f"must be an integer >= {minimum}")
        return value
    return parse


def _float_within(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = float(raw)
        if not low <= value <= high:  # also rejects nan
            raise ValueError(f"must be a number within [{low}, {high}]")
        return value
    return parse


def _choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in options:
            raise ValueError(f"expected one of {', '.join(options)}")
        return value
    return parse


def _not_s3() -> str:
    raise ValueError("expected s3://bucket/prefix")


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected one of 1/0, true/false, yes/no, on/off")


# --- SageMaker training container contract -------------------------------------------------
SM_CHANNEL_TRAIN: EnvVar[Path] = EnvVar(
    "SM_CHANNEL_TRAIN", Path("/opt/ml/input/data/train"), _path,
    "Folder holding the training split (CSV files), the 'train' input channel.",
)
SM_CHANNEL_VALIDATION: EnvVar[Path] = EnvVar(
    "SM_CHANNEL_VALIDATION", Path("/opt/ml/input/data/validation"), _path,
    "Folder holding the validation split (CSV files), the 'validation' input channel.",
)
SM_CHANNEL_CODE: EnvVar[Path] = EnvVar(
    "SM_CHANNEL_CODE", Path("/opt/ml/input/data/code"), _path,
    "Folder holding the pipeline's code bundle (model_code.tar.gz), the 'code' input channel: a tuning job's "
    "training jobs run it (model_code/launcher.py).",
)
SM_MODEL_DIR: EnvVar[Path] = EnvVar(
    "SM_MODEL_DIR", Path("/opt/ml/model"), _path,
    "Folder where train writes model.joblib; SageMaker tars it into model.tar.gz. serve loads the model "
    "from it (model.joblib or model.tar.gz inside, or a path to either file): SageMaker extracts "
    "ModelDataUrl into /opt/ml/model in serving containers.",
)
SM_OUTPUT_DATA_DIR: EnvVar[Path] = EnvVar(
    "SM_OUTPUT_DATA_DIR", Path("/opt/ml/output/data"), _path,
    "Folder for training side outputs (metrics.json, mlflow_run.json); SageMaker uploads it as output.tar.gz.",
)
SM_INPUT_CONFIG_DIR: EnvVar[Path] = EnvVar(
    "SM_INPUT_CONFIG_DIR", Path("/opt/ml/input/config"), _path,
    "Folder holding hyperparameters.json (every value a string, as SageMaker writes it).",
)
SM_OUTPUT_DIR: EnvVar[Path] = EnvVar(
    "SM_OUTPUT_DIR", Path("/opt/ml/output"), _path,
    "Folder where a failed training job writes 'failure' (SageMaker shows it as FailureReason).",
)

# --- the problem declaration ---------------------------------------------------------------
MLOPS_PROBLEM_DIR: EnvVar[Path | None] = EnvVar(
    "MLOPS_PROBLEM_DIR", None, lambda raw: Path(raw) if raw else None,
    "Folder of the problem declaration (problem.yaml) that validate, preprocess and train read when "
    "--problem is not given; unset: the code bundle's problem/ folder, else the repository's problems/adult.",
)

# --- MLflow tracking -------------------------------------------------------------------------
MLFLOW_TRACKING_URI: EnvVar[str | None] = EnvVar(
    "MLFLOW_TRACKING_URI", None, _optional_str,
    "When set, train logs params, metrics, data digests, importances and the model to this MLflow "
    "server (http(s) URL, sqlite:/// or file:// store). Unset: MLflow is not imported at all.",
)
MLFLOW_EXPERIMENT_NAME: EnvVar[str] = EnvVar(
    "MLFLOW_EXPERIMENT_NAME", "mlops-stack", str,
    "MLflow experiment that train logs into (created if missing).",
)
MLFLOW_RUN_ID: EnvVar[str | None] = EnvVar(
    "MLFLOW_RUN_ID", None, _optional_str,
    "Read by MLflow: resume this run instead of starting a new one (a pipeline can pre-create it).",
    passthrough=True,
)
MLFLOW_ALLOW_FILE_STORE: EnvVar[bool] = EnvVar(
    "MLFLOW_ALLOW_FILE_STORE", False, _bool,
    "Read by MLflow 3: allow the deprecated file:// tracking store (tests use it).",
    passthrough=True,
)
MLFLOW_DISABLE_TELEMETRY: EnvVar[bool] = EnvVar(
    "MLFLOW_DISABLE_TELEMETRY", True, _bool,
    "Read by MLflow 3. train sets it to 'true' (unless already set) before importing mlflow: "
    "containers never phone home.",
    passthrough=True,
)

# --- Provenance (set by CI / the pipeline; recorded in the model artifact and MLflow tags) ----
MLOPS_GIT_SHA: EnvVar[str | None] = EnvVar(
    "MLOPS_GIT_SHA", None, _optional_str, "Git commit of the model code that built the image."
)
MLOPS_IMAGE_URI: EnvVar[str | None] = EnvVar(
    "MLOPS_IMAGE_URI", None, _optional_str, "Image URI (ideally with @sha256 digest) running the step."
)
MLOPS_CODE_SHA256: EnvVar[str | None] = EnvVar(
    "MLOPS_CODE_SHA256", None, _optional_str, "Content hash of the code bundle the pipeline references."
)

# --- Serving (python -m model_code serve; SageMaker's bring-your-own-container contract) -----
SAGEMAKER_BIND_TO_PORT: EnvVar[int] = EnvVar(
    "SAGEMAKER_BIND_TO_PORT", 8080, _int_at_least(0),
    "Port serve listens on (0: any free port). SageMaker's default is 8080; it sets this variable itself for "
    "multi-container endpoints (the image carries the accept-bind-to-port label).",
)
MLOPS_SERVE_HOST: EnvVar[str] = EnvVar(
    "MLOPS_SERVE_HOST", "0.0.0.0", str,
    "Address serve binds to: every interface inside a container; 127.0.0.1 for local mode, tests, benchmarks.",
)
SAGEMAKER_MODEL_SERVER_WORKERS: EnvVar[int] = EnvVar(
    "SAGEMAKER_MODEL_SERVER_WORKERS", 0, _int_at_least(0),
    "Worker processes of serve (SageMaker's framework containers use the same name); 0 = one per CPU. "
    "gunicorn forks them, after loading the model once, on one listening socket; each is a uvicorn event loop.",
)
MLOPS_SERVE_MAX_PAYLOAD_BYTES: EnvVar[int] = EnvVar(
    "MLOPS_SERVE_MAX_PAYLOAD_BYTES", 6 * 1024 * 1024, _int_at_least(1),
    "Largest request body serve reads; larger bodies get 413 (SageMaker's InvokeEndpoint limit is 6 MB).",
)
MLOPS_SERVE_UNKNOWN_CATEGORIES: EnvVar[str] = EnvVar(
    "MLOPS_SERVE_UNKNOWN_CATEGORIES", "reject", _choice("reject", "score"),
    "What serve does with a categorical value outside the schema's categories: 'reject' (400 naming "
    "the field and rows) or 'score' (as missing, like LoadedModel.predict_proba).",
)
MLOPS_SERVE_RUNTIME: EnvVar[str] = EnvVar(
    "MLOPS_SERVE_RUNTIME", "sklearn", _choice("sklearn", "onnx"),
    "What scores requests: 'sklearn' (the fitted pipeline in model.joblib) or 'onnx' (onnxruntime on the "
    "model.onnx train exported beside it, checked against its recorded sha256; serve refuses to start, "
    "saying why, when the model has none).",
)
MLOPS_SERVE_SHUTDOWN_TIMEOUT: EnvVar[float] = EnvVar(
    "MLOPS_SERVE_SHUTDOWN_TIMEOUT", 30.0, _float_within(0.0, 3600.0),
    "Seconds serve waits, after SIGTERM, for in-flight requests and the capture flush before exiting.",
)
SAGEMAKER_BATCH: EnvVar[bool] = EnvVar(
    "SAGEMAKER_BATCH", False, _bool,
    "Set to true by SageMaker when the container serves a Batch Transform job. serve then takes its payload "
    "limit from SAGEMAKER_MAX_PAYLOAD_IN_MB and captures nothing itself (the transform job's DataCaptureConfig "
    "does).",
)
SAGEMAKER_MAX_PAYLOAD_IN_MB: EnvVar[int | None] = EnvVar(
    "SAGEMAKER_MAX_PAYLOAD_IN_MB", None, _int_at_least(0),
    "Set by Batch Transform from the job's MaxPayloadInMB: the largest mini-batch it sends. In a batch job serve "
    "reads bodies up to it (0, chunked bodies of any size: up to 100 MB, the service's maximum), unless "
    "MLOPS_SERVE_MAX_PAYLOAD_BYTES is set.",
)
SAGEMAKER_BATCH_STRATEGY: EnvVar[str | None] = EnvVar(
    "SAGEMAKER_BATCH_STRATEGY", None, _choice("single_record", "multi_record"),
    "Set by Batch Transform from the job's BatchStrategy (SINGLE_RECORD or MULTI_RECORD). serve scores both: a "
    "request holds one record per line either way.",
)
PROMETHEUS_MULTIPROC_DIR: EnvVar[Path | None] = EnvVar(
    "PROMETHEUS_MULTIPROC_DIR", None, _path,
    "Read by prometheus_client: the folder of its multiprocess mode's metric files. serve sets it to a new "
    "temporary folder of its own before the workers start (a value set before is not used).",
    passthrough=True,
)
MLOPS_CAPTURE_DIR: EnvVar[Path | None] = EnvVar(
    "MLOPS_CAPTURE_DIR", None, _path,
    "When set, serve writes data-capture records (SageMaker's JSONL format) under "
    "<dir>/<endpoint>/<variant>/yyyy/mm/dd/hh/. Unset: capture is off.",
)
MLOPS_CAPTURE_S3_URI: EnvVar[str | None] = EnvVar(
    "MLOPS_CAPTURE_S3_URI", None, lambda raw: raw if raw.startswith("s3://") and len(raw) > 5 else _not_s3(),
    "s3://bucket/prefix where serve uploads its closed capture files itself, in SageMaker's layout (a serverless "
    "endpoint, where SageMaker captures nothing). Unset: they stay under MLOPS_CAPTURE_DIR.",
)
MLOPS_CAPTURE_SAMPLING_PERCENTAGE: EnvVar[float] = EnvVar(
    "MLOPS_CAPTURE_SAMPLING_PERCENTAGE", 100.0, _float_within(0.0, 100.0),
    "Share of successful invocations captured, in percent (SageMaker's InitialSamplingPercentage).",
)
MLOPS_CAPTURE_ENDPOINT_NAME: EnvVar[str] = EnvVar(
    "MLOPS_CAPTURE_ENDPOINT_NAME", "local-endpoint", str,
    "Endpoint name in the capture path (SageMaker writes <prefix>/<endpoint>/<variant>/...).",
)
MLOPS_CAPTURE_VARIANT_NAME: EnvVar[str] = EnvVar(
    "MLOPS_CAPTURE_VARIANT_NAME", "AllTraffic", str,
    "Production variant name in the capture path.",
)
MLOPS_CAPTURE_ROTATE_SECONDS: EnvVar[float] = EnvVar(
    "MLOPS_CAPTURE_ROTATE_SECONDS", 60.0, _float_within(0.1, 3600.0),
    "A capture file is closed (renamed from .jsonl.partial to .jsonl) after this many seconds, at "
    "the turn of the hour, and at shutdown; only closed files are complete.",
)
OMP_NUM_THREADS: EnvVar[int] = EnvVar(
    "OMP_NUM_THREADS", 1, _int_at_least(1),
    "Read by OpenMP (the gradient boosting's predict). serve sets it to 1 unless already set: "
    "parallelism comes from worker processes, and OpenMP threads competing with them slow scoring.",
    passthrough=True,
)

# --- Drift job (python -m model_code drift) and its AWS clients ------------------------------
MLOPS_DRIFT_METRICS_NAMESPACE: EnvVar[str | None] = EnvVar(
    "MLOPS_DRIFT_METRICS_NAMESPACE", None, _optional_str,
    "CloudWatch namespace the drift job publishes to (e.g. mlops-stack/dev); --namespace overrides. "
    "Unset: no metrics are published.",
)
MLOPS_DRIFT_ENDPOINT_NAME: EnvVar[str | None] = EnvVar(
    "MLOPS_DRIFT_ENDPOINT_NAME", None, _optional_str,
    "Value of the Endpoint dimension of the drift metrics; --endpoint overrides.",
)
AWS_ENDPOINT_URL: EnvVar[str | None] = EnvVar(
    "AWS_ENDPOINT_URL", None, _optional_str,
    "Endpoint for the drift job's boto3 clients (S3, CloudWatch): the moto server in local mode. "
    "Unset: the AWS endpoints of the region.",
)
AWS_DEFAULT_REGION: EnvVar[str | None] = EnvVar(
    "AWS_DEFAULT_REGION", None, _optional_str,
    "Region of the drift job's boto3 clients (processing jobs set it). Unset: boto3's own lookup.",
)

ALL: tuple[EnvVar, ...] = (
    SM_CHANNEL_TRAIN,
    SM_CHANNEL_VALIDATION,
    SM_CHANNEL_CODE,
    SM_MODEL_DIR,
    SM_OUTPUT_DATA_DIR,
    SM_INPUT_CONFIG_DIR,
    SM_OUTPUT_DIR,
    MLOPS_PROBLEM_DIR,
    MLFLOW_TRACKING_URI,
    MLFLOW_EXPERIMENT_NAME,
    MLFLOW_RUN_ID,
    MLFLOW_ALLOW_FILE_STORE,
    MLFLOW_DISABLE_TELEMETRY,
    MLOPS_GIT_SHA,
    MLOPS_IMAGE_URI,
    MLOPS_CODE_SHA256,
    SAGEMAKER_BIND_TO_PORT,
    MLOPS_SERVE_HOST,
    SAGEMAKER_MODEL_SERVER_WORKERS,
    MLOPS_SERVE_MAX_PAYLOAD_BYTES,
    MLOPS_SERVE_UNKNOWN_CATEGORIES,
    MLOPS_SERVE_RUNTIME,
    MLOPS_SERVE_SHUTDOWN_TIMEOUT,
    SAGEMAKER_BATCH,
    SAGEMAKER_MAX_PAYLOAD_IN_MB,
    SAGEMAKER_BATCH_STRATEGY,
    MLOPS_CAPTURE_DIR,
    MLOPS_CAPTURE_S3_URI,
    MLOPS_CAPTURE_SAMPLING_PERCENTAGE,
    MLOPS_CAPTURE_ENDPOINT_NAME,
    MLOPS_CAPTURE_VARIANT_NAME,
    MLOPS_CAPTURE_ROTATE_SECONDS,
    OMP_NUM_THREADS,
    MLOPS_DRIFT_METRICS_NAMESPACE,
    MLOPS_DRIFT_ENDPOINT_NAME,
    AWS_ENDPOINT_URL,
    AWS_DEFAULT_REGION,
)
NAMES: frozenset[str] = frozenset(v.name for v in ALL)


def provenance(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The provenance variables that are set, as {name: value}."""
    return {
        v.name: str(v.get(environ))
        for v in (MLOPS_GIT_SHA, MLOPS_IMAGE_URI, MLOPS_CODE_SHA256)
        if v.is_set(environ)
    }


def disable_mlflow_telemetry() -> None:
    """Opt out of MLflow telemetry for this process unless the caller decided otherwise."""
    os.environ.setdefault(MLFLOW_DISABLE_TELEMETRY.name, "true")


def limit_openmp_threads() -> None:
    """One OpenMP thread per process unless the caller decided otherwise. Must run before the
    OpenMP runtime loads (before sklearn's compiled modules are imported)."""
    os.environ.setdefault(OMP_NUM_THREADS.name, str(OMP_NUM_THREADS.default))


def use_multiprocess_metrics(folder: Path | None) -> Path | None:
    """prometheus_client's multiprocess mode in `folder` (None: unset); the previous folder. Must run before
    prometheus_client is imported."""
    previous = PROMETHEUS_MULTIPROC_DIR.get()
    if folder is None:
        os.environ.pop(PROMETHEUS_MULTIPROC_DIR.name, None)
    else:
        os.environ[PROMETHEUS_MULTIPROC_DIR.name] = str(folder)
    return previous


def cpu_count() -> int:
    """CPUs this process may run on (the container's cgroup-limited affinity where available)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def describe() -> str:
    """A table of every variable (used by ``python -m model_code env``)."""
    lines = []
    for v in ALL:
        kind = " (read by MLflow)" if v.passthrough else ""
        lines.append(f"{v.name}{kind}\n    default: {v.default!r}\n    {v.doc}")
    return "\n".join(lines)

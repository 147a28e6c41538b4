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
SM_MODEL_DIR: EnvVar[Path] = EnvVar(
    "SM_MODEL_DIR", Path("/opt/ml/model"), _path,
    "Folder where train writes model.joblib; SageMaker tars it into model.tar.gz.",
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

ALL: tuple[EnvVar, ...] = (
    SM_CHANNEL_TRAIN,
    SM_CHANNEL_VALIDATION,
    SM_MODEL_DIR,
    SM_OUTPUT_DATA_DIR,
    SM_INPUT_CONFIG_DIR,
    SM_OUTPUT_DIR,
    MLFLOW_TRACKING_URI,
    MLFLOW_EXPERIMENT_NAME,
    MLFLOW_RUN_ID,
    MLFLOW_ALLOW_FILE_STORE,
    MLFLOW_DISABLE_TELEMETRY,
    MLOPS_GIT_SHA,
    MLOPS_IMAGE_URI,
    MLOPS_CODE_SHA256,
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


def describe() -> str:
    """A table of every variable (used by ``python -m model_code env``)."""
    lines = []
    for v in ALL:
        kind = " (read by MLflow)" if v.passthrough else ""
        lines.append(f"{v.name}{kind}\n    default: {v.default!r}\n    {v.doc}")
    return "\n".join(lines)

"""The local executor: runs a SageMaker pipeline definition on this machine.

It reads the same JSON that `aws.sagemaker.Pipeline` deploys (`pipelines/training.py`) and does
what SageMaker does with it, except that compute is a local process:

- Processing and Training steps: inputs are downloaded from S3 (the embedded AWS) into a job
  folder laid out like the container (`/opt/ml/...` is `<run>/steps/<step>/opt/ml/...`), the
  step's own entrypoint, arguments and environment run by a `StepRunner` (`mlops/local/runners.py`:
  in the image, or in a venv of the image's requirements), and outputs are uploaded to the S3 URIs
  the definition names (a training job's model folder as model.tar.gz).
- Condition steps evaluate their conditions (`Std:JsonGet` reads property files) and run the if
  or else branch; Fail steps stop the run with their message; RegisterModel steps call
  `CreateModelPackage` with the resolved arguments, through boto3, like SageMaker.

Expressions: `Get` of Parameters, Execution.PipelineExecutionId and step properties, `Std:Join`,
`Std:JsonGet`.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops.local.runners import StepRunner
from mlops.local.tuning import run_tuning

CONTAINER_ROOT = "/opt/ml/"
LOG_TAIL_LINES = 5
_PATH_TOKEN = re.compile(r"\.?(\w+)|\['([^']+)'\]|\[(\d+)\]")


class PipelineFailed(RuntimeError):
    """A step failed or a Fail step ran; the message says which and why."""

    def __init__(self, step: str, message: str):
        self.step = step
        super().__init__(f"step {step} failed: {message}")


@dataclass
class StepResult:
    name: str
    type: str
    status: str  # Succeeded | Failed
    seconds: float
    message: str = ""


@dataclass
class ExecutionResult:
    execution_id: str
    status: str  # Succeeded | Failed
    steps: list[StepResult] = field(default_factory=list)
    failure: str = ""
    property_files: dict[str, dict[str, Any]] = field(default_factory=dict)
    registered_package_arn: str = ""


def _split_s3(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"{uri!r} is not an s3:// URI")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def _walk(document: Any, path: str) -> Any:
    """`a.b['c'][0]` into nested dicts and lists."""
    value = document
    for name, quoted, index in _PATH_TOKEN.findall(path):
        key: Any = int(index) if index else (quoted or name)
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            raise KeyError(f"{path!r}: no {key!r}") from None
    return value


class LocalExecutor:
    """Executes one pipeline definition. `s3` and `sagemaker` are boto3 clients (the embedded AWS)."""

    def __init__(
        self,
        definition: dict[str, Any],
        *,
        execution_id: str,
        execution_arn: str = "",
        work_dir: Path,
        s3: Any,
        sagemaker: Any,
        parameters: dict[str, Any] | None = None,
        environment: dict[str, str] | None = None,
        runner: StepRunner | None = None,
        on_step: Callable[[StepResult], None] | None = None,
        on_start: Callable[[str], None] | None = None,
    ):
        self.definition = definition
        self.execution_id = execution_id
        local_arn = f"arn:aws:sagemaker:local:000000000000:pipeline/local/execution/{execution_id}"
        self.execution_arn = execution_arn or local_arn
        self.work_dir = work_dir
        self.s3 = s3
        self.sagemaker = sagemaker
        self.environment = environment or {}
        self.runner = runner
        self.on_step = on_step or (lambda result: None)
        self.on_start = on_start or (lambda name: None)
        declared = {p["Name"]: p for p in definition.get("Parameters", [])}
        unknown = set(parameters or {}) - set(declared)
        if unknown:
            raise ValueError(
                f"unknown pipeline parameter(s): {', '.join(sorted(unknown))}; "
                f"the definition declares {', '.join(declared)}"
            )
        self.parameters = {name: p.get("DefaultValue") for name, p in declared.items()} | (parameters or {})
        self.properties: dict[str, dict[str, Any]] = {}
        self.property_files: dict[str, dict[str, Path]] = {}
        self.result = ExecutionResult(execution_id, "Executing")

    # --- expressions --------------------------------------------------------------------------------

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if set(value) == {"Get"}:
            return self._get(value["Get"])
        if set(value) == {"Std:Join"}:
            join = value["Std:Join"]
            return join["On"].join(self._text(self.resolve(v)) for v in join["Values"])
        if set(value) == {"Std:JsonGet"}:
            spec = value["Std:JsonGet"]
            step, _, name = spec["PropertyFile"]["Get"].removeprefix("Steps.").partition(".PropertyFiles.")
            path = self.property_files.get(step, {}).get(name)
            if path is None:
                raise KeyError(f"property file {name} of step {step} is not available")
            return _walk(json.loads(path.read_text()), spec["Path"])
        return {k: self.resolve(v) for k, v in value.items()}

    @staticmethod
    def _text(value: Any) -> str:
        return json.dumps(value) if value is None or isinstance(value, bool) else str(value)

    def _get(self, reference: str) -> Any:
        if reference.startswith("Parameters."):
            return self.parameters[reference.removeprefix("Parameters.")]
        if reference == "Execution.PipelineExecutionId":
            return self.execution_id
        if reference == "Execution.PipelineExecutionArn":
            return self.execution_arn
        if reference.startswith("Steps."):
            step, _, path = reference.removeprefix("Steps.").partition(".")
            if step not in self.properties:
                raise KeyError(f"{reference}: step {step} has not run")
            return _walk(self.properties[step], path)
        raise KeyError(f"unsupported reference {reference!r}")

    def _condition(self, condition: dict[str, Any]) -> bool:
        kind = condition["Type"]
        if kind == "Not":
            return not self._condition(condition["Expression"])
        if kind == "Or":
            return any(self._condition(c) for c in condition["Conditions"])
        left, right = self.resolve(condition["LeftValue"]), self.resolve(condition["RightValue"])
        compare = {
            "Equals": lambda a, b: a == b,
            "GreaterThan": lambda a, b: float(a) > float(b),
            "GreaterThanOrEqualTo": lambda a, b: float(a) >= float(b),
            "LessThan": lambda a, b: float(a) < float(b),
            "LessThanOrEqualTo": lambda a, b: float(a) <= float(b),
        }
        if kind not in compare:
            raise ValueError(f"unsupported condition type {kind}")
        return compare[kind](left, right)

    # --- S3 and container paths ---------------------------------------------------------------------

    def _job_dir(self, step: str) -> Path:
        return self.work_dir / "steps" / step

    def _local(self, step: str, container_path: str) -> Path:
        if not container_path.startswith(CONTAINER_ROOT):
            raise ValueError(f"step {step}: {container_path!r} is not under {CONTAINER_ROOT}")
        return self._job_dir(step) / container_path.lstrip("/")

    def _download(self, uri: str, target: Path) -> None:
        bucket, key = _split_s3(uri)
        target.mkdir(parents=True, exist_ok=True)
        prefix = key if key.endswith("/") or not key else key
        found = False
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                name = item["Key"]
                if name == key:  # the URI names one object
                    relative = Path(name).name
                elif name.startswith(key.rstrip("/") + "/"):
                    relative = name[len(key.rstrip("/")) + 1 :]
                else:
                    continue
                destination = target / relative
                destination.parent.mkdir(parents=True, exist_ok=True)
                self.s3.download_file(bucket, name, str(destination))
                found = True
        if not found:
            raise FileNotFoundError(f"no object under {uri}")

    def _upload(self, source: Path, uri: str) -> None:
        bucket, key = _split_s3(uri)
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            self.s3.upload_file(str(path), bucket, f"{key.rstrip('/')}/{path.relative_to(source).as_posix()}")

    # --- steps ----------------------------------------------------------------------------------------

    def _run_job(self, step: str, entrypoint: list[str], arguments: list[str], environment: dict,
                 stopping: dict[str, Any], isolated: bool = False) -> None:
        if self.runner is None:
            raise PipelineFailed(step, "no step runner: the executor was made to resolve expressions only")
        log_path = self._job_dir(step) / "logs.txt"
        env = {**self.environment, **{k: self._text(v) for k, v in environment.items()}}
        # SageMaker stops a job at its StoppingCondition; so does the local executor.
        limit = stopping.get("MaxRuntimeInSeconds")
        code = self.runner.run(self._job_dir(step), [str(a) for a in entrypoint], [str(a) for a in arguments], env,
                               log_path, timeout=None if limit is None else float(limit), isolated=isolated)
        if code != 0:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-LOG_TAIL_LINES:]
            what = f"stopped at MaxRuntimeInSeconds={limit}" if code is None else f"exit code {code}"
            raise PipelineFailed(step, f"{what}; log {log_path}:\n  " + "\n  ".join(tail))

    def _processing(self, step: str, arguments: dict[str, Any], property_files: list[dict[str, str]]) -> None:
        for source in arguments.get("ProcessingInputs", []):
            s3_input = source["S3Input"]
            self._download(s3_input["S3Uri"], self._local(step, s3_input["LocalPath"]))
        outputs = arguments.get("ProcessingOutputConfig", {}).get("Outputs", [])
        for output in outputs:
            self._local(step, output["S3Output"]["LocalPath"]).mkdir(parents=True, exist_ok=True)
        app = arguments["AppSpecification"]
        self._run_job(
            step,
            app.get("ContainerEntrypoint", []),
            app.get("ContainerArguments", []),
            arguments.get("Environment", {}),
            arguments.get("StoppingCondition", {}),
            isolated=arguments.get("NetworkConfig", {}).get("EnableNetworkIsolation") is True,
        )
        for output in outputs:
            self._upload(self._local(step, output["S3Output"]["LocalPath"]), output["S3Output"]["S3Uri"])
        self.properties[step] = {
            "ProcessingOutputConfig": {
                "Outputs": {o["OutputName"]: {"S3Output": {"S3Uri": o["S3Output"]["S3Uri"]}} for o in outputs}
            }
        }
        local_outputs = {o["OutputName"]: self._local(step, o["S3Output"]["LocalPath"]) for o in outputs}
        self.property_files[step] = {
            f["PropertyFileName"]: local_outputs[f["OutputName"]] / f["FilePath"] for f in property_files
        }

    def _training(self, step: str, arguments: dict[str, Any]) -> None:
        job_name = f"pipelines-{self.execution_id}-{step}"
        model_uri = self._training_job(step, step, job_name, arguments, arguments.get("HyperParameters", {}))
        self.properties[step] = {"ModelArtifacts": {"S3ModelArtifacts": model_uri}, "TrainingJobName": job_name}

    def _training_job(self, step: str, job: str, job_name: str, arguments: dict[str, Any],
                      hyperparameters: dict[str, Any], machine: dict[str, str] | None = None) -> str:
        """One training job in folder `steps/<job>` (a tuning job's: `steps/<step>/jobs/<name>`); its model URI.
        A job without a ContainerEntrypoint starts the image as `<ENTRYPOINT> train`, as SageMaker does."""
        for channel in arguments.get("InputDataConfig", []):
            uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
            self._download(uri, self._local(job, f"/opt/ml/input/data/{channel['ChannelName']}"))
        config_dir = self._local(job, "/opt/ml/input/config")
        config_dir.mkdir(parents=True, exist_ok=True)
        texts = {k: self._text(v) for k, v in hyperparameters.items()}
        (config_dir / "hyperparameters.json").write_text(json.dumps(texts, sort_keys=True))
        for folder in ("/opt/ml/model", "/opt/ml/output/data"):
            self._local(job, folder).mkdir(parents=True, exist_ok=True)
        algorithm = arguments["AlgorithmSpecification"]
        entrypoint = algorithm.get("ContainerEntrypoint", [])
        self._run_job(
            job,
            entrypoint,
            algorithm.get("ContainerArguments", []) if entrypoint else ["train"],
            {**arguments.get("Environment", {}), **(machine or {})},
            arguments.get("StoppingCondition", {}),
            isolated=arguments.get("EnableNetworkIsolation") is True,
        )
        output_path = arguments["OutputDataConfig"]["S3OutputPath"].rstrip("/")
        model_uri = f"{output_path}/{job_name}/output/model.tar.gz"
        bucket, key = _split_s3(model_uri)
        self.s3.put_object(Bucket=bucket, Key=key, Body=_tar_gz(self._local(job, "/opt/ml/model")))
        return model_uri

    def _tuning(self, step: str, arguments: dict[str, Any]) -> None:
        """A hyperparameter tuning job: its training jobs as parallel processes (tuning.py)."""
        best = run_tuning(self, step, arguments)
        self.properties[step] = {"BestTrainingJob": {"TrainingJobName": best[0]["TrainingJobName"]},
                                 "TrainingJobSummaries": best}

    def _register(self, step: str, arguments: dict[str, Any]) -> None:
        request = {k: v for k, v in arguments.items() if v not in ({}, None)}
        metrics = request.get("ModelMetrics")
        if isinstance(metrics, dict):
            request["ModelMetrics"] = {k: v for k, v in metrics.items() if v}
        response = self.sagemaker.create_model_package(**request)
        arn = response["ModelPackageArn"]
        self.properties[step] = {"ModelPackageArn": arn}
        self.result.registered_package_arn = arn

    def _execute(self, step: dict[str, Any]) -> None:
        name, kind = step["Name"], step["Type"]
        self.on_start(name)
        self._job_dir(name).mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        branch: list[dict[str, Any]] = []
        try:
            if kind == "Condition":
                passed = all(self._condition(c) for c in step["Arguments"]["Conditions"])
                branch = step["Arguments"]["IfSteps" if passed else "ElseSteps"]
                self._finish(name, kind, started, f"condition {'met' if passed else 'not met'}")
            else:
                self._run_step(name, kind, step)
                self._finish(name, kind, started, "")
        except PipelineFailed as failure:
            self._finish(name, kind, started, str(failure).split(": ", 1)[1], status="Failed")
            raise
        except Exception as error:  # noqa: BLE001 - any step error fails the run with its message, like SageMaker
            self._finish(name, kind, started, f"{type(error).__name__}: {error}", status="Failed")
            raise PipelineFailed(name, f"{type(error).__name__}: {error}") from error
        for branch_step in branch:
            self._execute(branch_step)

    def _run_step(self, name: str, kind: str, step: dict[str, Any]) -> None:
        arguments = self.resolve(step.get("Arguments", {}))
        if kind == "Fail":
            raise PipelineFailed(name, arguments.get("ErrorMessage", "Fail step reached"))
        if kind == "Processing":
            self._processing(name, arguments, step.get("PropertyFiles", []))
        elif kind == "Training":
            self._training(name, arguments)
        elif kind == "Tuning":
            self._tuning(name, arguments)
        elif kind == "RegisterModel":
            self._register(name, arguments)
        else:
            raise PipelineFailed(name, f"step type {kind} is not supported by the local executor")

    def _finish(self, name: str, kind: str, started: float, message: str, status: str = "Succeeded") -> None:
        result = StepResult(name, kind, status, time.monotonic() - started, message)
        self.result.steps.append(result)
        self.on_step(result)

    def run(self) -> ExecutionResult:
        """Run every top-level step in dependency order; branch steps run from their condition."""
        try:
            for step in _dependency_order(self.definition["Steps"]):
                self._execute(step)
            self.result.status = "Succeeded"
        except PipelineFailed as failure:
            self.result.status = "Failed"
            self.result.failure = str(failure)
        self.result.property_files = {
            step: {name: json.loads(path.read_text()) for name, path in files.items() if path.is_file()}
            for step, files in self.property_files.items()
        }
        return self.result


def _references(value: Any) -> set[str]:
    text = json.dumps(value)
    return set(re.findall(r'"Steps\.([A-Za-z0-9_-]+)[.\'"]', text))


def _dependency_order(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Top-level steps ordered so each runs after the steps it depends on or references."""
    by_name = {s["Name"]: s for s in steps}
    ordered: list[dict[str, Any]] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if any(s["Name"] == name for s in ordered):
            return
        if name in visiting:
            raise ValueError(f"the pipeline definition has a dependency cycle through {name}")
        visiting.add(name)
        step = by_name[name]
        for dependency in sorted(set(step.get("DependsOn", [])) | _references(step)):
            if dependency in by_name and dependency != name:
                visit(dependency)
        visiting.discard(name)
        ordered.append(step)

    for step in steps:
        visit(step["Name"])
    return ordered


def _tar_gz(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in sorted(folder.rglob("*")):
            archive.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
    return buffer.getvalue()

"""The embedded MLflow of local mode: a SQLite store, served over HTTP while a pipeline runs.

The image holds `mlflow-skinny`, which has no SQL store: in SageMaker the Train step logs to a
tracking server (an ARN through sagemaker-mlflow, or http(s)). Local mode hands its steps the same
kind of URI: for the length of a run, `mlflow server` (the development venv's full MLflow) serves the
state folder's SQLite store on 127.0.0.1, and the steps log to `http://127.0.0.1:<port>`.

Artifacts are not proxied by the server: experiments keep their artifact location under
`<state>/mlartifacts` (a file URI), which steps write directly (a container gets that folder mounted at
the same path). So after the run, the control plane and a person read everything from SQLite and
files alone (`mlflow.pyfunc.load_model("models:/<name>@champion")` with the `sqlite:///` URI), with no
server running.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlops.local import aws as local_aws
from mlops.processes import stop_group

STARTUP_TIMEOUT_S = 60.0
HOST = "127.0.0.1"


class TrackingServerError(RuntimeError):
    """The embedded MLflow server could not start."""


def store_uri(state_dir: Path) -> str:
    """The SQLite tracking store of a state folder (what the control plane and the MLflow UI read)."""
    return f"sqlite:///{(state_dir / 'mlflow.db').resolve()}"


def artifacts_dir(state_dir: Path) -> Path:
    """Where the state folder's experiments keep their artifacts."""
    return (state_dir / "mlartifacts").resolve()


def ensure_experiment(state_dir: Path, name: str) -> str:
    """The experiment's id, created with its artifacts under `artifacts_dir` if missing."""
    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # schema migrations are not news
    logging.getLogger("alembic").setLevel(logging.WARNING)
    client = mlflow.MlflowClient(store_uri(state_dir))
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(name, artifact_location=(artifacts_dir(state_dir) / name).as_uri())


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1) as response:  # noqa: S310 (127.0.0.1)
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


@contextmanager
def serving(state_dir: Path) -> Iterator[str]:
    """`mlflow server` on the state folder's store for the block; yields its http:// URI."""
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "logs").mkdir(exist_ok=True)
    artifacts_dir(state_dir).mkdir(parents=True, exist_ok=True)
    port = local_aws.free_port()
    url = f"http://{HOST}:{port}"
    command = [
        sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store_uri(state_dir),
        "--default-artifact-root", artifacts_dir(state_dir).as_uri(), "--no-serve-artifacts",
        "--host", HOST, "--port", str(port), "--workers", "1",
    ]
    # `mlflow server` starts uvicorn by name: the venv's bin must be on PATH (DESIGN.md, known traps).
    # No job execution: it starts seven background consumers (about 60% of a core while idle here) for
    # server-side jobs that tracking and the registry never use.
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                   "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log_path = state_dir / "logs" / "mlflow-server.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=environment, start_new_session=True)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not _healthy(url):
            if process.poll() is not None:
                raise TrackingServerError(f"the MLflow server exited with code {process.returncode}; log {log_path}")
            if time.monotonic() > deadline:
                raise TrackingServerError(f"the MLflow server did not answer on {url} within "
                                          f"{STARTUP_TIMEOUT_S:.0f} s; log {log_path}")
            time.sleep(0.1)
        yield url
    finally:
        stop_group(process)

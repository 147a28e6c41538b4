"""`mlops serve --local`: a registered model behind the image's own `serve` entrypoint, on 127.0.0.1.

What a SageMaker endpoint does with a model package, done on this machine:

1. resolve the package in the stack's registry (the embedded AWS of the state folder):
   `champion` = the newest Approved package (what the dev endpoint follows), `latest` = the newest
   registered one, a version number (`3`) or a package ARN;
2. download its `ModelDataUrl` (model.tar.gz) from the embedded S3 into
   `<state>/endpoints/<group>/v<version>/model.tar.gz`;
3. start the image's `serve` on 127.0.0.1:N (`--container`: `IMAGE serve` with the model mounted at
   /opt/ml/model and SAGEMAKER_BIND_TO_PORT=N, or `python -m model_code serve` in a venv of exactly
   the image's requirements), in its own process group, logs in `<state>/logs/endpoint-<group>-v<version>.log`,
   data capture (SageMaker's JSONL layout) under `<state>/capture/<endpoint>/primary/...` with the
   endpoint name from `Names.of(settings).endpoint`;
4. wait for `GET /ping` = 200 (a deadline; the process dying first is an error naming its log).

`stop()` sends SIGTERM to the process group (serve drains in-flight requests and closes the
capture files), then SIGKILL after a timeout. A record `<state>/endpoints/<endpoint>.json` names
the running process, so `stop_recorded(state)` can clean up after a caller that was killed.

Blocking until Ctrl-C (what the CLI does)::

    with serve_local(settings, state_dir=state, model="champion", port=8080) as endpoint:
        print(f"serving {endpoint.package_arn} on {endpoint.url}")
        try:
            endpoint.wait()          # returns when the server exits on its own
        except KeyboardInterrupt:
            pass                     # leaving the block stops it (SIGTERM, then SIGKILL)

The server runs in its own session, so a terminal's Ctrl-C reaches only the caller, which then
stops the server in order (capture flushed) instead of both racing.

Errors are `ServeLocalError` (a ValueError, one line naming the port, package or log at fault).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from mlops.local import aws as local_aws
from mlops.local.container import IMAGE_NAME, Engine, ensure_image, find_engine
from mlops.local.runners import OWNER_LABEL, step_venv
from mlops.naming import VARIANT, Arns, Names
from mlops.registry import Aws, ModelPackage, ReleaseError, get_package, latest_approved, list_packages
from mlops.settings import REPO_ROOT, StackSettings
from model_code import env

STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
HOST = "127.0.0.1"


class ServeLocalError(ValueError):
    """The local endpoint cannot be started (port taken, no such model, server failed)."""


@dataclass
class LocalEndpoint:
    """A running local endpoint. Use as a context manager, or call `stop()`."""

    url: str
    port: int
    pid: int
    package: ModelPackage
    model_path: Path
    capture_dir: Path | None
    """`<state>/capture`: records land under `<capture_dir>/<endpoint_name>/<variant>/yyyy/mm/dd/hh/`."""
    endpoint_name: str
    variant: str
    log_path: Path
    record_path: Path
    mode: str = "process"
    """Where the server runs: container (the image) or process (a venv of the image's requirements)."""
    container_name: str = ""
    engine: str = ""
    """docker or podman when the server runs in the image."""
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    exit_code: int | None = None

    @property
    def package_arn(self) -> str:
        return self.package.arn

    @property
    def capture_root(self) -> Path | None:
        """The folder the drift job reads: `<capture_dir>/<endpoint>/<variant>`."""
        return self.capture_dir / self.endpoint_name / self.variant if self.capture_dir else None

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def wait(self, timeout: float | None = None) -> int | None:
        """Block until the server exits (None if `timeout` passed first)."""
        if self._process is None:
            return self.exit_code
        try:
            self.exit_code = self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.exit_code

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM the server's process group (graceful drain and capture flush); SIGKILL after
        `timeout`. Idempotent. Returns the server's exit code."""
        process = self._process
        if process is not None:
            if process.poll() is None:
                _signal_group(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    _signal_group(process.pid, signal.SIGKILL)
                    process.wait(5)
            # Forked workers share the group: make sure none outlives the supervisor.
            _signal_group(process.pid, signal.SIGKILL)
            if self.container_name:  # a killed engine client leaves its container running
                Engine(self.engine).run("rm", "-f", "-t", "0", self.container_name)
            self.exit_code = process.returncode
            self._process = None
        self.record_path.unlink(missing_ok=True)
        return self.exit_code

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        """GET a path of the endpoint: (status, body)."""
        return _http("GET", f"{self.url}{path}", None, {}, timeout)

    def invoke(self, body: bytes, content_type: str = "text/csv", accept: str | None = None,
               timeout: float = 30.0) -> tuple[int, bytes]:
        """POST /invocations: (status, body). 4xx/5xx are returned, not raised."""
        headers = {"Content-Type": content_type, **({"Accept": accept} if accept else {})}
        return _http("POST", f"{self.url}/invocations", body, headers, timeout)

    def __enter__(self) -> LocalEndpoint:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()


def _http(method: str, url: str, body: bytes | None, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (http://127.0.0.1 only)
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def port_in_use(port: int, host: str = HOST) -> bool:
    """True if something already listens on host:port (binding like serve does: SO_REUSEADDR)."""
    try:
        probe = socket.create_server((host, port))
    except OSError:
        return True
    probe.close()
    return False


def _package_by_selector(settings: StackSettings, model: str, aws: Aws) -> ModelPackage:
    names = Names.of(settings)
    if model == "champion":
        return latest_approved(settings, aws=aws)
    if model == "latest":
        packages = list_packages(settings, limit=1, aws=aws)
        if not packages:
            raise ReleaseError(
                f"no model package in group {names.model_package_group} of stack {settings.stack}: "
                "run `mlops pipeline run --local` first"
            )
        return packages[0]
    if model.isdigit():
        return get_package(settings, Arns(names).model_package(int(model)), aws=aws)
    if model.startswith("arn:"):
        return get_package(settings, model, aws=aws)
    raise ServeLocalError(f"--model {model!r}: expected champion, latest, a version number or a model package ARN")


def resolve_package(settings: StackSettings, model: str, *, state_dir: Path) -> tuple[ModelPackage, str]:
    """The package `model` names in the state folder's embedded registry, and its ModelDataUrl."""
    server = local_aws.running(state_dir)
    if server is None:
        raise ServeLocalError(
            f"the embedded AWS of {state_dir} is not running (its registry lives in memory): "
            "run `mlops pipeline run --local` to train and register a model first"
        )
    aws = Aws(endpoint_url=server.endpoint_url, max_attempts=2)
    with local_aws.environment(server):
        try:
            package = _package_by_selector(settings, model, aws)
        except ReleaseError as error:
            raise ServeLocalError(str(error)) from None
        description = aws.sagemaker(settings.region).describe_model_package(ModelPackageName=package.arn)
    containers = (description.get("InferenceSpecification") or {}).get("Containers") or []
    url = containers[0].get("ModelDataUrl", "") if containers else ""
    if not url.startswith("s3://"):
        raise ServeLocalError(f"model package {package.arn} has no ModelDataUrl (s3://.../model.tar.gz)")
    return package, url


def download_model(settings: StackSettings, package: ModelPackage, model_data_url: str, *, state_dir: Path) -> Path:
    """`<state>/endpoints/<group>/v<version>/model.tar.gz`, fetched from the embedded S3 (cached:
    a package's ModelDataUrl never changes)."""
    target = state_dir / "endpoints" / package.group / f"v{package.version}" / "model.tar.gz"
    if target.is_file() and target.stat().st_size > 0:
        return target
    server = local_aws.running(state_dir)
    if server is None:
        raise ServeLocalError(f"the embedded AWS of {state_dir} is not running")
    import boto3
    from boto3.exceptions import S3TransferFailedError
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, key = model_data_url.removeprefix("s3://").partition("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name("model.tar.gz.partial")
    with local_aws.environment(server):
        s3 = boto3.client("s3", region_name=settings.region)
        try:
            s3.download_file(bucket, key, str(partial))
        except (ClientError, BotoCoreError, S3TransferFailedError, OSError) as error:
            partial.unlink(missing_ok=True)
            raise ServeLocalError(f"downloading {model_data_url} of {package.arn}: {error}") from None
    partial.replace(target)
    return target


def _listening_port(log_path: Path) -> int | None:
    """The port serve announced in its `listening` log line (how port 0 is resolved)."""
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if '"event":"listening"' in line:
            try:
                return int(json.loads(line)["port"])
            except (ValueError, KeyError, TypeError):
                return None
    return None


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def _workers(workers: int | None) -> int:
    if workers is not None:
        return workers
    try:
        configured = env.SAGEMAKER_MODEL_SERVER_WORKERS.get()
    except env.EnvError as error:
        raise ServeLocalError(str(error)) from None
    if not env.SAGEMAKER_MODEL_SERVER_WORKERS.is_set():
        return 1
    return configured or env.cpu_count()


def serve_local(
    settings: StackSettings,
    *,
    state_dir: Path,
    model: str = "champion",
    port: int = 8080,
    capture: bool = True,
    workers: int | None = None,
    capture_rotate_seconds: float | None = None,
    unknown_categories: str | None = None,
    runtime: str | None = None,
    startup_timeout: float = STARTUP_TIMEOUT_S,
    container: str = "auto",
    extra_environment: dict[str, str] | None = None,
    purpose: str = "endpoint",
) -> LocalEndpoint:
    """Serve a registered model on 127.0.0.1:`port` (0: any free port) until `stop()`.

    `capture_rotate_seconds` closes capture files sooner than serve's 60 s default (the demo reads
    them within seconds); `unknown_categories` is MLOPS_SERVE_UNKNOWN_CATEGORIES (reject|score), `runtime`
    MLOPS_SERVE_RUNTIME (sklearn|onnx);
    `container` is auto|always|never, as for the pipeline's jobs (`mlops/local/runners.py`); `workers` defaults
    to $SAGEMAKER_MODEL_SERVER_WORKERS as SageMaker passes it (0: one per CPU), else one; `extra_environment` adds the
    variables SageMaker would set (a Batch Transform job's, mlops/batch_local.py) and `purpose` names its log,
    record and container apart from the endpoint's (`batch`), so both may run at once.
    """
    workers = _workers(workers)
    if port != 0 and port_in_use(port):
        raise ServeLocalError(
            f"port {port} on {HOST} is already in use: stop what listens there, or choose another "
            f"(--port N, or --port 0 for any free port)"
        )
    package, model_data_url = resolve_package(settings, model, state_dir=state_dir)
    model_path = download_model(settings, package, model_data_url, state_dir=state_dir)
    names = Names.of(settings)
    logs = state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{purpose}-{package.group}-v{package.version}.log"
    capture_dir = (state_dir / "capture").resolve() if capture else None
    # the serve entrypoint's variables, by their declarations in model_code.env (a renamed one fails here)
    environment = {
        **os.environ,
        env.MLOPS_SERVE_HOST.name: HOST,
        "PYTHONUNBUFFERED": "1",
        env.MLOPS_CAPTURE_ENDPOINT_NAME.name: names.endpoint,
        env.MLOPS_CAPTURE_VARIANT_NAME.name: VARIANT,
        env.MLOPS_SERVE_SHUTDOWN_TIMEOUT.name: str(min(STOP_TIMEOUT_S - 2, 10.0)),
    }
    environment.pop(env.MLOPS_CAPTURE_DIR.name, None)
    environment.update(extra_environment or {})
    if capture_dir is not None:
        environment[env.MLOPS_CAPTURE_DIR.name] = str(capture_dir)
        environment[env.MLOPS_CAPTURE_SAMPLING_PERCENTAGE.name] = str(float(settings.data_capture_percent))
        if capture_rotate_seconds is not None:
            environment[env.MLOPS_CAPTURE_ROTATE_SECONDS.name] = str(capture_rotate_seconds)
    if unknown_categories is not None:
        environment[env.MLOPS_SERVE_UNKNOWN_CATEGORIES.name] = unknown_categories
    if runtime is not None:
        environment[env.MLOPS_SERVE_RUNTIME.name] = runtime
    container_name = f"mlops-{purpose}-{names.endpoint}-{uuid.uuid4().hex[:8]}"
    command, engine = _serve_command(container, container_name, state_dir.resolve(), model_path, capture_dir, port,
                                     workers, environment)
    mode = "container" if engine else "process"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=REPO_ROOT, env=environment, start_new_session=True,
        )
    record = names.endpoint if purpose == "endpoint" else f"{names.endpoint}-{purpose}-{process.pid}"
    record_path = state_dir / "endpoints" / f"{record}.json"
    endpoint = LocalEndpoint(
        url="", port=port, pid=process.pid, package=package, model_path=model_path, capture_dir=capture_dir,
        endpoint_name=names.endpoint, variant=VARIANT, log_path=log_path, record_path=record_path,
        mode=mode, container_name=container_name if engine else "", engine=engine, _process=process,
    )
    try:
        _wait_ready(endpoint, process, port, startup_timeout)
    except BaseException:
        endpoint.stop(timeout=5)
        raise
    record_path.parent.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(
        {"pid": process.pid, "url": endpoint.url, "package_arn": package.arn, "owner_pid": os.getpid()}, indent=2))
    return endpoint


def _serve_command(container: str, container_name: str, owner: Path, model_path: Path, capture_dir: Path | None,
                   port: int, workers: int, environment: dict[str, str]) -> tuple[list[str], str]:
    """`IMAGE serve` as SageMaker hosting starts it (the model at /opt/ml/model, the port in
    SAGEMAKER_BIND_TO_PORT), on this machine's network so clients reach 127.0.0.1:port; or serve in
    a venv of exactly the image's requirements. Capture goes to the same folder either way.
    Returns the command and the engine's name ("" for the venv)."""
    engine = find_engine() if container != "never" else None
    if engine is None:
        if container == "always":
            raise ServeLocalError("--container always: no container engine (docker or podman) answers here")
        environment["PYTHONPATH"] = str(REPO_ROOT)  # what the image's PYTHONPATH=/opt/program holds: model_code/
        return [str(step_venv()), "-m", "model_code", "serve", "--model", str(model_path), "--host", HOST,
                "--port", str(port), "--workers", str(workers)], ""
    image = ensure_image(engine)
    environment.update({k: v for k, v in engine.environment().items() if k not in environment})
    served = {name: environment[name] for name in environment if name.startswith(("MLOPS_", "SAGEMAKER_"))}
    served |= {env.SAGEMAKER_BIND_TO_PORT.name: str(port), env.SAGEMAKER_MODEL_SERVER_WORKERS.name: str(workers)}
    mounts = ["-v", f"{model_path}:/opt/ml/model/{model_path.name}:ro"]
    if capture_dir is not None:
        capture_dir.mkdir(parents=True, exist_ok=True)
        mounts += ["-v", f"{capture_dir}:{capture_dir}"]
    # --sig-proxy (the default) hands our SIGTERM to serve, which drains; its exit code is ours.
    return [engine.name, "run", "--rm", "--name", container_name, "--label", f"{OWNER_LABEL}={owner}",
            "--network=host", *mounts,
            *[a for k, v in sorted(served.items()) for a in ("-e", f"{k}={v}")], image, "serve"], engine.name


def _wait_ready(endpoint: LocalEndpoint, process: subprocess.Popen[bytes], port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        code = process.poll()
        if code is not None:
            tail = _tail(endpoint.log_path)
            if "Address already in use" in tail:
                raise ServeLocalError(f"port {port} on {HOST} is already in use (taken while the server started)")
            raise ServeLocalError(
                f"the model server exited with code {code} before answering /ping; "
                f"log {endpoint.log_path}: {tail}"
            )
        if not endpoint.url:
            bound = port or _listening_port(endpoint.log_path)
            if bound:
                endpoint.port, endpoint.url = bound, f"http://{HOST}:{bound}"
        if endpoint.url:
            with contextlib.suppress(OSError):
                status, _ = endpoint.get("/ping", timeout=1.0)
                if status == 200:
                    return
        if time.monotonic() > deadline:
            raise ServeLocalError(
                f"the model server did not answer /ping with 200 within {timeout:.0f} s; log {endpoint.log_path}"
            )
        time.sleep(0.05)


def _is_model_server(pid: int) -> bool:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"serve" in command and (b"model_code" in command or any(IMAGE_NAME.encode() in part for part in command))


def stop_recorded(state_dir: Path) -> list[int]:
    """Stop endpoints recorded under `<state>/endpoints/*.json` whose owner is gone (a caller that
    was killed). Returns the pids stopped. Only processes that still run `model_code serve` are
    signalled (a recycled pid is left alone)."""
    stopped = []
    for record in sorted((state_dir / "endpoints").glob("*.json")):
        try:
            data: dict[str, Any] = json.loads(record.read_text())
            pid, owner = int(data["pid"]), int(data.get("owner_pid") or 0)
        except (OSError, ValueError, KeyError):
            record.unlink(missing_ok=True)
            continue
        if owner and local_aws.pid_alive(owner):
            continue  # its owner is alive and stops it itself
        if _is_model_server(pid):
            _signal_group(pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while _is_model_server(pid) and time.monotonic() < deadline:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
                time.sleep(0.05)
            _signal_group(pid, signal.SIGKILL)
            stopped.append(pid)
        record.unlink(missing_ok=True)
    return stopped


"""Where the local executor runs a SageMaker job: in the image, or in a venv of the image's requirements.

`--container auto|always|never` (default auto) chooses:

- container mode (`ContainerRunner`): the job runs in the image of this checkout (`make image`), as
  SageMaker runs it: the definition's ContainerEntrypoint, ContainerArguments and Environment verbatim,
  the job folder mounted at `/opt/ml` (root-owned, as SageMaker mounts it). The job's network is a
  namespace of its own with a loopback interface only, where `127.0.0.1:<port>` of each embedded
  service (the moto server, the MLflow server) is relayed to the same port on this machine
  (`JobNetwork`): the endpoints in the job's environment are the host's, unchanged, and nothing else
  is reachable. The MLflow artifacts folder is mounted at its own path.
- process mode (`ProcessRunner`): the same command as a process in a venv holding exactly
  `model_code/requirements.txt` (`.cache/step-venv-<hash>/`, made once), never the development venv,
  so what works locally works in the image; `/opt/ml/...` paths in arguments and environment are
  mapped to the job folder.

The embedded endpoints reach a job in one place: `mlops.local.pipeline.run_local` puts the MLflow URI
into the definition (as infra puts the managed server's ARN) and the AWS endpoint and credentials
into the executor's environment.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from mlops.local.container import ContainerError, Engine, ensure_image, find_engine
from mlops.settings import REPO_ROOT

CONTAINER_MODES = ("auto", "always", "never")
OWNER_LABEL = "io.mlops-stack.state-dir"
CONTAINER_ROOT = "/opt/ml/"
REQUIREMENTS = REPO_ROOT / "model_code" / "requirements.txt"
IMAGE_ENTRYPOINT = ["python", "-m", "model_code"]
"""The image's ENTRYPOINT (model_code/Dockerfile): what a job without a ContainerEntrypoint runs."""
# What the image's ENV gives every job (model_code/Dockerfile); process mode sets the same.
IMAGE_ENVIRONMENT = {
    "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg", "MLFLOW_DISABLE_TELEMETRY": "true",
    "GIT_PYTHON_REFRESH": "quiet",
}
# SageMaker gives a job an instance; a local job shares this machine (with a tuning job's siblings, a test
# worker's, a desktop), where OpenMP threads spinning 300,000 times at each barrier (libgomp's default) starve
# the other process's threads. Adult's Train with 2 threads, 2 cores: alone 6.9 s, two at once 32.5 s; with a
# spin count of 1,000, alone 7.1 s, two at once 11.4 s (passive waiting: 10.2 s alone, 10.5 s two at once).
LOCAL_MACHINE_ENVIRONMENT = {"GOMP_SPINCOUNT": "1000"}


class StepRunner(Protocol):
    mode: str

    def run(self, job_dir: Path, entrypoint: list[str], arguments: list[str], environment: dict[str, str],
            log_path: Path, timeout: float | None = None, isolated: bool = False) -> int | None:
        """Run one job with its folder `job_dir` (holding `opt/ml/...`), its output in `log_path`; its exit
        code, or None when it ran past `timeout` seconds (it is then stopped). `isolated`: the job's
        EnableNetworkIsolation, which a container honours with no network at all."""
        ...


def _map(job_dir: Path, value: str) -> str:
    return str(job_dir / value.lstrip("/")) if value.startswith(CONTAINER_ROOT) else value


@dataclass
class ProcessRunner:
    """A job as a process of `python` (a venv of exactly the image's requirements)."""

    python: Path
    mode: str = "process"

    def run(self, job_dir: Path, entrypoint: list[str], arguments: list[str], environment: dict[str, str],
            log_path: Path, timeout: float | None = None, isolated: bool = False) -> int | None:
        # `isolated` is not enforced here: cutting a process off needs a network namespace, which is the container
        # runner's; a step that needs the network while declared isolated fails in the image, as in SageMaker.
        command = [_map(job_dir, a) for a in [*(entrypoint or IMAGE_ENTRYPOINT), *arguments]]
        if command and command[0] in ("python", "python3"):
            command[0] = str(self.python)
        # A container starts with the image's environment only: no variable of this process leaks in.
        # PYTHONPATH: the repository's model_code/, as the image's PYTHONPATH=/opt/program holds it.
        env = {"PATH": f"{self.python.parent}:/usr/local/bin:/usr/bin:/bin", "HOME": str(job_dir),
               "LANG": "C.UTF-8", "TMPDIR": os.environ.get("TMPDIR", "/tmp"), "PYTHONPATH": str(REPO_ROOT),
               **IMAGE_ENVIRONMENT, **LOCAL_MACHINE_ENVIRONMENT,
               **{k: _map(job_dir, v) for k, v in environment.items()}}
        with log_path.open("w") as log:
            try:
                return subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, cwd=job_dir, check=False, timeout=timeout).returncode
            except subprocess.TimeoutExpired:
                return None


@dataclass
class ContainerRunner:
    """A job in the image, its network reaching only the embedded services."""

    engine: Engine
    image: str
    network: JobNetwork
    mounts: list[Path] = field(default_factory=list)
    mode: str = "container"

    @property
    def labels(self) -> list[str]:
        return ["--label", f"{OWNER_LABEL}={self.network.owner}"]

    def run(self, job_dir: Path, entrypoint: list[str], arguments: list[str], environment: dict[str, str],
            log_path: Path, timeout: float | None = None, isolated: bool = False) -> int | None:
        ml = job_dir / "opt" / "ml"
        ml.mkdir(parents=True, exist_ok=True)
        name = f"mlops-job-{uuid.uuid4().hex[:12]}"
        command = [self.engine.name, "run", "--rm", "--name", name, *self.labels,
                   "--network=none" if isolated else f"--network=container:{self.network.holder}",
                   "-v", f"{ml.resolve()}:/opt/ml", *[a for m in self.mounts for a in ("-v", f"{m}:{m}")],
                   *[a for k, v in {**LOCAL_MACHINE_ENVIRONMENT, **environment}.items() for a in ("-e", f"{k}={v}")]]
        if entrypoint:
            command += ["--entrypoint", json.dumps(entrypoint)]
        command += [self.image, *arguments]
        with log_path.open("w") as log:
            try:
                return subprocess.run(command, env=self.engine.environment(), stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, check=False, timeout=timeout).returncode
            except subprocess.TimeoutExpired:
                return None
            finally:  # an interrupted or timed-out client leaves its container running
                self.engine.run("rm", "-f", "-t", "0", name)


# --- the job network -------------------------------------------------------------------------------------

_LISTEN_IN_NAMESPACE = (
    "import socket, sys\n"
    "channel = socket.socket(fileno=int(sys.argv[1]))\n"
    "listener = socket.socket()\n"
    "listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "listener.bind(('127.0.0.1', int(sys.argv[2])))\n"
    "listener.listen(64)\n"
    "socket.send_fds(channel, [b'listening'], [listener.fileno()])\n"
)
"""Run inside the job's network namespace (nsenter): make the listening socket there, hand it back."""


def _pump(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)


def _relay(listener: socket.socket, port: int) -> None:
    """Accept in the job's namespace, connect in this one: the job's 127.0.0.1:port is the host's."""
    while True:
        try:
            inside, _ = listener.accept()
        except OSError:
            return  # the listener was closed: the network is gone
        try:
            outside = socket.create_connection(("127.0.0.1", port), timeout=10)
        except OSError:
            inside.close()
            continue
        outside.settimeout(None)
        for a, b in ((inside, outside), (outside, inside)):
            threading.Thread(target=_pump, args=(a, b), daemon=True).start()


@dataclass
class JobNetwork:
    """A container holding a loopback-only network namespace that jobs join (`--network=container:`)."""

    holder: str
    owner: str
    listeners: list[socket.socket]

    @classmethod
    @contextlib.contextmanager
    def open(cls, engine: Engine, image: str, ports: list[int], owner: str) -> Iterator[JobNetwork]:
        started = engine.run("run", "-d", "--rm", "--label", f"{OWNER_LABEL}={owner}", "--network=none",
                             "--entrypoint", "python", image, "-c", "import signal; signal.pause()")
        if started.returncode != 0:
            raise ContainerError(f"could not start the job network holder: {started.stderr.strip()}")
        holder = started.stdout.strip()
        network = cls(holder, owner, [])
        try:
            inspected = engine.run("inspect", "--format", "{{.State.Pid}}", holder, check=True)
            pid = int(inspected.stdout.strip())
            for port in ports:
                listener = _listen_in(pid, port)
                network.listeners.append(listener)
                threading.Thread(target=_relay, args=(listener, port), daemon=True).start()
            yield network
        finally:
            for listener in network.listeners:
                with contextlib.suppress(OSError):
                    listener.shutdown(socket.SHUT_RDWR)
                listener.close()
            engine.run("rm", "-f", "-t", "0", holder)


def _listen_in(pid: int, port: int) -> socket.socket:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours, theirs:
        done = subprocess.run(
            ["nsenter", f"--net=/proc/{pid}/ns/net", sys.executable, "-c", _LISTEN_IN_NAMESPACE,
             str(theirs.fileno()), str(port)],
            pass_fds=(theirs.fileno(),), capture_output=True, text=True, timeout=30, check=False)
        if done.returncode != 0:
            raise ContainerError(f"could not listen on 127.0.0.1:{port} in the job network: {done.stderr.strip()}")
        _, fds, _, _ = socket.recv_fds(ours, 64, 1)
    return socket.socket(fileno=fds[0])


# --- process mode's venv -----------------------------------------------------------------------------------


def step_venv() -> Path:
    """The python of a venv holding exactly model_code/requirements.txt (made once per requirements hash)."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    venv = REPO_ROOT / ".cache" / f"step-venv-{digest}"
    python = venv / "bin" / "python"
    if (venv / ".installed").is_file():
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    with (venv.parent / f"step-venv-{digest}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / ".installed").is_file():
            base = getattr(sys, "_base_executable", sys.executable)
            for command in ([base, "-m", "venv", "--clear", str(venv)],
                            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                             "--only-binary=:all:", "-r", str(REQUIREMENTS)]):
                done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=1800)
                if done.returncode != 0:
                    raise ContainerError(f"making the step venv {venv} failed: {done.stderr.strip()[-1500:]}")
            (venv / ".installed").touch()
    return python


@contextlib.contextmanager
def open_runner(container: str, ports: list[int], mounts: list[Path], owner: Path) -> Iterator[StepRunner]:
    """The runner `--container` asks for; `auto` takes the image when an engine answers. Its containers
    carry the label `OWNER_LABEL=<owner>` (the state folder), so what a run started can be found."""
    if container not in CONTAINER_MODES:
        raise ValueError(f"--container {container!r}: expected one of {', '.join(CONTAINER_MODES)}")
    engine = find_engine() if container != "never" else None
    if engine is None:
        if container == "always":
            raise ContainerError("--container always: no container engine (docker or podman) answers here; "
                                 "install one (scripts/install_container_engine.sh) or use --container never")
        yield ProcessRunner(step_venv())
        return
    image = ensure_image(engine)
    with JobNetwork.open(engine, image, ports, str(owner.resolve())) as network:
        yield ContainerRunner(engine, image, network, mounts)

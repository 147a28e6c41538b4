"""The embedded AWS of local mode: a moto server on 127.0.0.1 that the same boto3 code talks to.

One server per state folder (`.mlops/` by default) runs in the background, so a model registered by
`mlops pipeline run --local` is still there for `mlops model approve --local`; `mlops local down`
stops it. Its address and pid live in `<state>/aws.json`. Moto keeps everything in memory: stopping
the server forgets the registry (the run folders under `<state>/runs/` keep their own records).
It is moto's server with one gap filled (mlops/local/moto_server.py): a pipeline execution's status
is its local run's outcome.

Every variable the control plane sets for local mode is here: AWS_ENDPOINT_URL (boto3 and the
AWS CLI send every call to the server) and fake credentials (moto accepts any; real ones are never
read in local mode).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
STARTUP_TIMEOUT_S = 30.0


class LocalAwsError(RuntimeError):
    """The embedded AWS could not start or be reached."""


@dataclass(frozen=True)
class LocalAws:
    endpoint_url: str
    pid: int
    account_id: str
    region: str

    @property
    def port(self) -> int:
        return int(self.endpoint_url.rsplit(":", 1)[1])

    def environment(self) -> dict[str, str]:
        """Variables that point boto3 (in this process and in step subprocesses) at the server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            **LOCAL_CREDENTIALS,
        }


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _answers(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (signal 0 probes without signalling)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _record(state_dir: Path) -> Path:
    return state_dir / "aws.json"


def running(state_dir: Path) -> LocalAws | None:
    """The server of this state folder, if it is up and answering."""
    record = _record(state_dir)
    if not record.is_file():
        return None
    try:
        data = json.loads(record.read_text())
        server = LocalAws(data["endpoint_url"], int(data["pid"]), data["account_id"], data["region"])
    except (ValueError, KeyError):
        return None
    return server if pid_alive(server.pid) and _answers(server.endpoint_url) else None


def start(state_dir: Path, *, account_id: str, region: str) -> LocalAws:
    """Reuse this state folder's server, or start one in the background and wait until it answers."""
    if (server := running(state_dir)) is not None:
        if (server.account_id, server.region) != (account_id, region):
            raise LocalAwsError(
                f"the embedded AWS of {state_dir} runs as account {server.account_id} in {server.region}, not "
                f"{account_id} in {region}: run `mlops local down` first"
            )
        return server
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "logs").mkdir(exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (state_dir / "logs" / "moto.log").open("ab")
    # MOTO_ACCOUNT_ID makes every ARN carry the stack's account, as in the real account.
    process = subprocess.Popen(
        [sys.executable, "-m", "mlops.local.moto_server", "--state-dir", str(state_dir), "-H", "127.0.0.1",
         "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "MOTO_ACCOUNT_ID": account_id},
    )
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not _answers(url):
        if process.poll() is not None:
            raise LocalAwsError(
                f"the embedded AWS exited with code {process.returncode}; see {state_dir / 'logs' / 'moto.log'}"
            )
        if time.monotonic() > deadline:
            process.kill()
            raise LocalAwsError(f"the embedded AWS did not answer on {url} within {STARTUP_TIMEOUT_S:.0f} s")
        time.sleep(0.05)
    server = LocalAws(url, process.pid, account_id, region)
    _record(state_dir).write_text(json.dumps(server.__dict__, indent=2))
    return server


def stop(state_dir: Path) -> bool:
    """Stop this state folder's server; False if none was running."""
    record = _record(state_dir)
    server = running(state_dir)
    record.unlink(missing_ok=True)
    if server is None:
        return False
    os.killpg(server.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while pid_alive(server.pid) and time.monotonic() < deadline:
        try:
            os.waitpid(server.pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.05)
    if pid_alive(server.pid):
        os.killpg(server.pid, signal.SIGKILL)
    return True


@contextmanager
def environment(server: LocalAws) -> Iterator[None]:
    """Point this process's boto3 at the embedded AWS for the duration of the block."""
    saved = {name: os.environ.get(name) for name in server.environment()}
    os.environ.update(server.environment())
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

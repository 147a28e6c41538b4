"""Child processes that end with the command that started them.

A child runs in a session of its own, so a terminal's Ctrl-C reaches only the control plane, which then
stops the child's whole process group (the child's own children too), however it ends: a timeout, an
error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path


def stop_group(process: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM to the process's group, SIGKILL after `grace` seconds; reaped either way."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)
    except ProcessLookupError:
        process.wait(5)


def run_group(command: Sequence[str], *, cwd: Path, env: dict[str, str], timeout: float
              ) -> subprocess.CompletedProcess[str]:
    """`subprocess.run(..., capture_output=True, text=True)` in a group of its own, stopped on any exit;
    TimeoutExpired after `timeout` seconds."""
    process = subprocess.Popen(list(command), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        stop_group(process)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)

"""Helpers shared by the tests of the local tools."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

from tests.model_code.conftest import run_step


def alive(pid: int) -> bool:
    """Whether process `pid` is running: it exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) is not running
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def train_model(work: Path, *, max_iter: int) -> Path:
    """`<work>/model.tar.gz` trained from `<work>/train` and `<work>/validation` by the train step's own
    command in a fresh process, as the pipeline runs it. Not in the test process: pulumi's dynamic
    providers import dill there, which rewires the pure-Python pickler joblib uses, and the image has no
    dill to load such a model."""
    trained = run_step("train", "--train", str(work / "train"), "--validation", str(work / "validation"),
                       "--model-dir", str(work / "model"), "--output-data-dir", str(work / "out"),
                       "--hyperparameters", str(work / "hp.json"), "--max-iter", str(max_iter),
                       "--permutation-repeats", "1")
    assert trained.returncode == 0, trained.stderr
    with tarfile.open(work / "model.tar.gz", "w:gz") as tar:  # the model folder, as SageMaker archives it
        for path in sorted((work / "model").iterdir()):
            tar.add(path, arcname=path.name)
    return work / "model.tar.gz"

"""Shared fixtures: step command lines run as subprocesses with SageMaker paths mapped to tmp dirs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from model_code.data import write_csv
from problems.adult.synthetic import load_adult, synthesize

REPO = Path(__file__).resolve().parents[2]
SERVER_GROUPS: list[int] = []
"""Process groups of the serve processes the tests started (each in a session of its own)."""


@pytest.fixture(scope="session", autouse=True)
def _no_server_left() -> Iterator[None]:
    """A test that fails before it stops its server leaves the arbiter and its workers: kill their groups."""
    yield
    for group in SERVER_GROUPS:
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_step(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m model_code <args>`` in a clean environment (only what the test passes)."""
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("SM_", "MLFLOW_", "MLOPS_"))}
    base["PYTHONPATH"] = str(REPO)
    # One OpenMP thread: the boosting's spin-waiting threads slow down ~4x when another process
    # (a parallel test worker, a build) competes for the 2 cores of a CI machine.
    base["OMP_NUM_THREADS"] = "1"
    base.update(env or {})
    return subprocess.run([sys.executable, "-m", "model_code", *args], env=base, cwd=cwd or REPO,
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="session")
def adult() -> pd.DataFrame:
    return load_adult()


@pytest.fixture(scope="session")
def adult_csv(tmp_path_factory: pytest.TempPathFactory, adult: pd.DataFrame) -> Path:
    """The real dataset as a raw input folder (one CSV)."""
    folder = tmp_path_factory.mktemp("raw")
    write_csv(adult, folder / "adult.csv")
    return folder


@pytest.fixture()
def small() -> pd.DataFrame:
    """2,000 schema-valid synthetic rows (fresh copy per test)."""
    return synthesize(2000, seed=11)


def raw_strings(frame: pd.DataFrame) -> pd.DataFrame:
    """A frame as it would be read from CSV: integer-valued numbers without '.0'."""
    out = frame.astype(object)
    for col in out.columns:
        if pd.api.types.is_float_dtype(frame[col]):
            out[col] = [None if pd.isna(v) else (str(int(v)) if float(v).is_integer() else str(v))
                        for v in frame[col]]
    return out


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small model trained with the train step's own function (about a second), for the serving tests."""
    from model_code.train import TrainPaths, resolve_hyperparameters, train

    root = tmp_path_factory.mktemp("serve-model")
    write_csv(synthesize(3000, seed=5), root / "train" / "train.csv")
    write_csv(synthesize(1000, seed=6), root / "validation" / "validation.csv")
    hp = resolve_hyperparameters({"max_iter": "40", "permutation_repeats": "1"})
    train(TrainPaths(root / "train", root / "validation", root / "model", root / "out", root / "hp.json"), hp,
          environ={})
    return root / "model"


# S3 and CloudWatch in process (moto), for the jobs that read and publish there
@pytest.fixture()
def aws(monkeypatch):
    import moto  # a hard dev dependency: a broken install must fail here, not skip
    for k in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with moto.mock_aws():
        yield

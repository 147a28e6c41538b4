"""Tuning: the pipeline's Tuning step (tuningMaxJobs) run by the local executor as SageMaker runs a
hyperparameter tuning job, each training job starting the image's `train`, which runs the code bundle."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from mlops.local import aws as local_aws
from mlops.local.pipeline import run_local
from mlops.local.tuning import draw, objective
from mlops.settings import REPO_ROOT, load_stack
from model_code.data import sha256_file
from pipelines.training import code_bundle


def test_random_draws_stay_in_their_ranges_and_follow_the_seed() -> None:
    ranges = {"CategoricalParameterRanges": [{"Name": "candidate", "Values": ["a", "b"]}],
              "ContinuousParameterRanges": [{"Name": "lr", "MinValue": "0.01", "MaxValue": "1", "ScalingType":
                                             "Logarithmic"}],
              "IntegerParameterRanges": [{"Name": "leaves", "MinValue": "2", "MaxValue": "9", "ScalingType": "Linear"}]}
    draws = draw(ranges, 200, seed=3)
    assert draws == draw(ranges, 200, seed=3) and draws != draw(ranges, 200, seed=4)
    assert {d["candidate"] for d in draws} == {"a", "b"}
    assert all(0.01 <= float(d["lr"]) <= 1 and 2 <= int(d["leaves"]) <= 9 for d in draws)
    assert sum(float(d["lr"]) < 0.1 for d in draws) > 60  # log-uniform: half the draws below the geometric mean
    assert objective("x\nobjective validation:auc=0.81\nobjective validation:auc=0.83\n",
                     r"objective validation:auc=([-+0-9.eE]+|nan)") == 0.83
    assert objective("objective validation:auc=nan\n", r"objective validation:auc=([-+0-9.eE]+|nan)") is None


def test_the_image_train_command_hands_over_to_the_jobs_code_bundle(tmp_path: Path) -> None:
    """A tuning job's training job: no entrypoint, `python -m model_code train`, the bundle in the code channel."""
    settings = dataclasses.replace(load_stack("dev"), problem="problems/wine", evaluation_min_metric="")
    bundle = code_bundle(settings)
    code = tmp_path / "input" / "data" / "code"
    code.mkdir(parents=True)
    (code / "model_code.tar.gz").write_bytes(bundle.data)
    subprocess.run([sys.executable, "-m", "model_code", "preprocess", "--problem", str(REPO_ROOT / "problems/wine"),
                    "--input", str(REPO_ROOT / "problems/wine/data.csv"), "--output", str(tmp_path / "data")],
                   check=True, capture_output=True, cwd=tmp_path)
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(
        {"mlops_code_sha256": bundle.sha256, "candidate": "linear", "_tuning_objective_metric": "x"}))
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT), "SM_CHANNEL_CODE": str(code),
           "SM_INPUT_CONFIG_DIR": str(config), "SM_CHANNEL_TRAIN": str(tmp_path / "data" / "train"),
           "SM_CHANNEL_VALIDATION": str(tmp_path / "data" / "validation"), "SM_MODEL_DIR": str(tmp_path / "model"),
           "SM_OUTPUT_DATA_DIR": str(tmp_path / "out"), "SM_OUTPUT_DIR": str(tmp_path / "output")}
    run = subprocess.run([sys.executable, "-m", "model_code", "train"], env=env, capture_output=True, text=True,
                         cwd=tmp_path, check=False)
    assert run.returncode == 0, run.stderr
    assert "train: candidate linear, validation balanced_accuracy=" in run.stdout  # the bundle's problem: wine
    assert "objective validation:balanced_accuracy=" in run.stdout
    (config / "hyperparameters.json").write_text(json.dumps({"mlops_code_sha256": "0" * 64}))
    tampered = subprocess.run([sys.executable, "-m", "model_code", "train"], env=env, capture_output=True,
                              text=True, cwd=tmp_path, check=False)
    assert tampered.returncode != 0 and f"has sha256 {bundle.sha256}, expected {'0' * 64}" in tampered.stderr


@pytest.fixture
def state(tmp_path: Path):
    yield tmp_path / "state"
    local_aws.stop(tmp_path / "state")


def test_a_local_tuning_run_keeps_the_best_training_job(state: Path) -> None:
    settings = dataclasses.replace(load_stack("dev"), problem="problems/wine", evaluation_min_metric="",
                                   tuning_max_jobs=3, tuning_parallel_jobs=2)
    run = run_local(settings, state_dir=state, container="never")
    assert run.status == "Succeeded", run.failure
    assert [s["name"] for s in run.steps][3:5] == ["Train", "Evaluate"] and run.package_arn
    folder = state / "runs" / run.execution_id
    jobs = sorted((folder / "steps" / "Train" / "jobs").iterdir())
    assert len(jobs) == 3
    scores = {}
    for job in jobs:
        log = (job / "logs.txt").read_text()
        scores[job.name] = objective(log, r"objective validation:balanced_accuracy=([-+0-9.eE]+|nan)")
        drawn = json.loads((job / "opt/ml/input/config/hyperparameters.json").read_text())
        assert drawn["candidate"] in {"gbm", "forest", "linear", "knn"} and 0.001 <= float(drawn["linear__alpha"]) <= 100
    best = max(scores, key=lambda k: scores[k])
    model = folder / "steps" / "Evaluate" / "opt/ml/processing/input/model" / "model.tar.gz"
    with tarfile.open(model) as tar:
        tar.extractall(folder / "best", filter="data")
    best_model = next(j for j in jobs if j.name == best) / "opt/ml/model/model.joblib"
    assert sha256_file(folder / "best" / "model.joblib") == sha256_file(best_model)
    # the trials skip permutation importance; Evaluate measures it for the model kept, on the test split
    report = json.loads(next((folder / "steps" / "Evaluate").rglob("evaluation.json")).read_text())
    assert report["permutation_importance"]["split"] == "test"
    assert set(report["permutation_importance"]["features"]) == set(settings.problem_declaration().schema.feature_names)

"""A CSV the repository has never seen, through the installed `mlops` entry point: problem init, problem
check, pipeline run --local --problem, then serve; nothing outside the new declaration is edited."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mlops.local import aws as local_aws
from tests.model_code.conftest import SERVER_GROUPS
from tests.model_code.test_serve import free_port

MLOPS = Path(sys.executable).parent / "mlops"


def churn_data(rows: int = 900, seed: int = 3) -> pd.DataFrame:
    """Columns, label name and types unlike the shipped problems': a text label, a float with gaps, codes."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 73, rows)
    spend = np.round(rng.gamma(4.0, 18.0, rows) + 10, 2)
    plan = rng.choice(["basic", "plus", "pro"], rows, p=[0.5, 0.3, 0.2])
    region = rng.choice(["N", "S", "E", "W"], rows)
    logit = 1.2 - 0.06 * tenure + 0.012 * spend - 0.9 * (plan == "pro") + 0.4 * (region == "S")
    churn = np.where(rng.random(rows) < 1 / (1 + np.exp(-logit)), "yes", "no")
    frame = pd.DataFrame({"tenure_months": tenure, "monthly_spend": spend, "plan": plan, "region_code": region,
                          "will_churn": churn})
    frame.loc[rng.random(rows) < 0.03, "monthly_spend"] = np.nan
    return frame


def mlops(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(MLOPS), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture
def env(tmp_path: Path):
    state = tmp_path / "state"
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "AWS_", "MLFLOW_"))}
    environment |= {"MLOPS_STATE_DIR": str(state), "OMP_NUM_THREADS": "1"}
    yield environment
    local_aws.stop(state)


def test_a_new_csv_runs_the_lifecycle_with_only_its_declaration(tmp_path: Path, env: dict[str, str]) -> None:
    data = tmp_path / "churn.csv"
    churn_data().to_csv(data, index=False)
    folder = tmp_path / "churn"

    init = mlops("problem", "init", "--data", str(data), "--label", "will_churn", "--out", str(folder), env=env)
    assert init.returncode == 0, init.stderr
    assert "task binary: 2 classes of will_churn" in init.stdout and "a person must check:" in init.stdout
    declared = yaml.safe_load((folder / "problem.yaml").read_text())
    kinds = {f["name"]: f["type"] for f in declared["features"]}
    assert kinds == {"tenure_months": "int", "monthly_spend": "float", "plan": "category", "region_code": "category"}
    assert declared["label"] == {"name": "will_churn", "classes": ["no", "yes"], "positive": "yes",
                                 "decision_threshold": 0.5}
    assert (folder / "data.csv").is_file() and (folder / "DATASET.md").is_file()

    check = mlops("problem", "check", str(folder), env=env)
    assert check.returncode == 0, check.stderr
    assert "its sample (900 rows) passes the declaration" in check.stdout

    run = mlops("pipeline", "run", "--local", "--problem", str(folder), "--container", "never", env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "problem churn (binary)" in run.stdout and "registered: arn:aws:sagemaker:" in run.stdout
    runs = mlops("pipeline", "runs", env=env)
    assert "churn" in runs.stdout and "auc 0." in runs.stdout

    port = free_port()
    serve = subprocess.Popen([str(MLOPS), "serve", "--local", "--model", "latest", "--port", str(port),
                              "--container", "never"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, start_new_session=True)
    SERVER_GROUPS.append(serve.pid)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert serve.poll() is None, serve.stdout.read() if serve.stdout else ""
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as ping:
                    if ping.status == 200:
                        break
            except OSError:
                time.sleep(0.2)  # poll interval; readiness is decided by /ping
        body = json.dumps([{"tenure_months": 2, "monthly_spend": 180.5, "plan": "basic", "region_code": "S"},
                           {"tenure_months": 70, "monthly_spend": None, "plan": "pro", "region_code": "N"}])
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", body.encode(),
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            predictions = json.loads(response.read())["predictions"]
        assert [p["label"] for p in predictions] == ["yes", "no"]  # short and dear churns; long and pro stays
        assert predictions[0]["score"] > 0.5 > predictions[1]["score"]
    finally:
        serve.send_signal(signal.SIGINT)
        assert serve.wait(60) == 0

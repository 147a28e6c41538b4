"""A DVC revision of the dataset, through the installed `mlops` and `dvc` as a data scientist runs them: dvc push to
the embedded AWS (the project's .dvc/config, version-aware), commit, a newer revision pushed over the same keys,
`mlops pipeline run --local --data-rev` of the older one, then `mlops data checkout` of the model's data."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import yaml

from mlops.data_versions import dvc_command, folder_digest
from mlops.local import aws as local_aws
from mlops.naming import Names
from mlops.settings import REPO_ROOT, load_stack

MLOPS = Path(sys.executable).parent / "mlops"
DATASET = "adult-income"  # the dev stack's problem: its dataset is datasets/adult-income/


def run(*command: str, cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False, stdin=subprocess.DEVNULL)


def git(repo: Path, env: dict[str, str], *args: str) -> str:
    result = run("git", *args, cwd=repo, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture
def env(tmp_path: Path):
    state = tmp_path / "state"
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "AWS_", "MLFLOW_"))}
    environment |= {"MLOPS_STATE_DIR": str(state), "OMP_NUM_THREADS": "1", "GIT_AUTHOR_NAME": "t",
                    "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
                    "GIT_COMMITTER_EMAIL": "t@example.com"}
    up = run(str(MLOPS), "local", "up", "--stack", "dev", cwd=tmp_path, env=environment)
    assert up.returncode == 0, up.stderr
    server = local_aws.running(state)
    assert server is not None
    yield environment | server.environment()
    local_aws.stop(state)


def dvc_project(tmp_path: Path, env: dict[str, str]) -> Path:
    """A git repository with this project's DVC configuration (the files `dvc init` wrote, committed here)."""
    repo = tmp_path / "repo"
    (repo / ".dvc").mkdir(parents=True)
    for name in (".dvc/config", ".dvc/.gitignore", ".dvcignore"):
        shutil.copy(REPO_ROOT / name, repo / name)
    git(repo, env, "init", "-q")
    git(repo, env, "add", "-A")
    git(repo, env, "commit", "-qm", "the DVC project")
    return repo


def add_push_commit(repo: Path, env: dict[str, str], rows: list[str], message: str) -> str:
    folder = repo / "datasets" / DATASET
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "part-1.csv").write_text("".join(rows))
    dvc = dvc_command()
    for step in (["add", "-q", f"datasets/{DATASET}"], ["push", "-q"]):
        result = run(*dvc, *step, cwd=repo, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
    git(repo, env, "add", "-A")
    git(repo, env, "commit", "-qm", message)
    return git(repo, env, "rev-parse", "HEAD")


def test_a_model_trained_on_a_dvc_revision_gets_that_data_back(tmp_path: Path, env: dict[str, str]) -> None:
    repo = dvc_project(tmp_path, env)
    with gzip.open(REPO_ROOT / "problems" / "adult" / "data.csv.gz", "rt") as sample:
        lines = sample.readlines()
    first = add_push_commit(repo, env, lines[:6001], "6,000 rows")
    version_ids = [f["cloud"]["dev"]["version_id"] for f in
                   yaml.safe_load((repo / "datasets" / f"{DATASET}.dvc").read_text())["outs"][0]["files"]]
    assert len(version_ids) == 1 and version_ids[0]
    second = add_push_commit(repo, env, [lines[0], *lines[6001:12001]], "the next 6,000 rows, over the same key")
    newest = folder_digest(repo / "datasets" / DATASET)

    trained = run(str(MLOPS), "pipeline", "run", "--local", "--data-rev", f"{second}~1", "--dvc-repo", str(repo),
                  cwd=tmp_path, env=env)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert "registered: arn:aws:sagemaker:" in trained.stdout
    listed = run(str(MLOPS), "model", "list", "--stack", "dev", "--json", cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    (package,) = json.loads(listed.stdout)
    assert package["lineage"]["dvc_rev"] == first
    assert package["lineage"]["data_sha256"] != newest  # the older revision's versions, not the keys' newest

    shutil.rmtree(repo / ".dvc" / "cache")  # as on another machine: the data comes from the bucket
    out = tmp_path / "checked-out"
    checked = run(str(MLOPS), "data", "checkout", "--stack", "dev", "--package", package["arn"], "--output", str(out),
                  "--dvc-repo", str(repo), cwd=tmp_path, env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert folder_digest(out) == package["lineage"]["data_sha256"]
    assert (out / "part-1.csv").read_text() == "".join(lines[:6001])
    assert f"(DVC revision {first}, from dvc get)" in checked.stdout

    # the lifecycle expires the older version (noncurrentVersionExpiryDays): the run's own copy is kept
    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
                      aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    bucket = Names.of(load_stack("dev")).bucket("data")
    s3.delete_object(Bucket=bucket, Key=f"dvc/datasets/{DATASET}/part-1.csv", VersionId=version_ids[0])
    expired = tmp_path / "after-expiry"
    fallback = run(str(MLOPS), "data", "checkout", "--stack", "dev", "--package", package["arn"], "--output",
                   str(expired), "--dvc-repo", str(repo), cwd=tmp_path, env=env)
    assert fallback.returncode == 0, fallback.stdout + fallback.stderr
    assert f"from the run's copy s3://{bucket}/revisions/{DATASET}/{first}/" in fallback.stdout
    assert folder_digest(expired) == package["lineage"]["data_sha256"]

    again = run(str(MLOPS), "data", "checkout", "--stack", "dev", "--package", package["arn"], "--output", str(out),
                "--dvc-repo", str(repo), cwd=tmp_path, env=env)
    assert again.returncode == 2 and f"--output {out}: exists" in again.stderr


def test_a_revision_that_cannot_be_trained_on_is_refused_by_name(tmp_path: Path, env: dict[str, str]) -> None:
    repo = dvc_project(tmp_path, env)
    unknown = run(str(MLOPS), "pipeline", "run", "--local", "--data-rev", "nosuch", "--dvc-repo", str(repo),
                  cwd=tmp_path, env=env)
    assert unknown.returncode == 2 and "--data-rev nosuch: not a commit of" in unknown.stderr
    untracked = run(str(MLOPS), "pipeline", "run", "--local", "--data-rev", "HEAD", "--dvc-repo", str(repo),
                    cwd=tmp_path, env=env)
    assert untracked.returncode == 2
    assert f"datasets/{DATASET}.dvc is not in commit" in untracked.stderr and "dvc add" in untracked.stderr
    # committed before `dvc push`: the .dvc file has no S3 version yet
    folder = repo / "datasets" / DATASET
    folder.mkdir(parents=True)
    (folder / "part-1.csv").write_text("a,b\n1,2\n")
    assert run(*dvc_command(), "add", "-q", f"datasets/{DATASET}", cwd=repo, env=env).returncode == 0
    git(repo, env, "add", "-A")
    git(repo, env, "commit", "-qm", "not pushed")
    early = run(str(MLOPS), "pipeline", "run", "--local", "--data-rev", "HEAD", "--dvc-repo", str(repo),
                cwd=tmp_path, env=env)
    assert early.returncode == 2 and "committed before `dvc push -r dev`" in early.stderr
    both = run(str(MLOPS), "pipeline", "run", "--local", "--data-rev", "HEAD", "--data", str(folder), cwd=tmp_path,
               env=env)
    assert both.returncode == 2 and "not both" in both.stderr
    for output in (unknown, untracked, early, both):
        assert "Traceback" not in output.stderr


def test_dvc_repro_validates_a_dataset_before_it_is_pushed(tmp_path: Path):
    """The project's dvc.yaml: the pipeline's Validate step on each dataset against its problem."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "AWS_"))}
    environment |= {"PATH": f"{Path(sys.executable).parent}:{environment['PATH']}", "PYTHONPATH": str(REPO_ROOT)}
    repo = dvc_project(tmp_path, environment | {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
                                                "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"})
    shutil.copy(REPO_ROOT / "dvc.yaml", repo / "dvc.yaml")
    (repo / "problems" / "adult").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "problems" / "adult" / "problem.yaml", repo / "problems" / "adult" / "problem.yaml")
    folder = repo / "datasets" / DATASET
    folder.mkdir(parents=True)
    with gzip.open(REPO_ROOT / "problems" / "adult" / "data.csv.gz", "rt") as sample:
        lines = sample.readlines()[:3001]
    (folder / "part-1.csv").write_text("".join(lines))
    good = run(*dvc_command(), "repro", cwd=repo, env=environment)
    assert good.returncode == 0, good.stdout + good.stderr
    report = json.loads((repo / "reports" / "datasets" / DATASET / "validation_report.json").read_text())
    assert report["status"] == "passed" and report["input"]["sha256"] == folder_digest(folder)
    age = lines[0].split(",").index("age")
    bad = lines[1].split(",")
    bad[age] = "500"
    (folder / "part-1.csv").write_text("".join([*lines, ",".join(bad)]))
    refused = run(*dvc_command(), "repro", cwd=repo, env=environment)
    assert refused.returncode != 0
    assert "violation [range] column 'age' must be within [16, 100]" in refused.stdout + refused.stderr

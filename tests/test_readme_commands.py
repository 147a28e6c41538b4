"""Every `mlops` command the README shows, as a user runs it: the installed `mlops` entry point in a
subprocess, a happy path and one bad input each.

`test_every_readme_command_is_covered` keeps the README and this file together: a command the README
gains fails it until a case below runs it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops.settings import REPO_ROOT

MLOPS = str(Path(sys.executable).with_name("mlops"))
README = REPO_ROOT / "README.md"
# README command (its words up to the first option or placeholder) -> the test that runs it
COVERED = {
    "infra plan": "test_infra_and_policy_commands",
    "infra cost": "tests/mlops/test_cost.py::test_the_command_prints_the_estimate_and_refuses_bad_input",
    "policy list": "test_infra_and_policy_commands",
    "pipeline run": "test_the_local_lifecycle_commands",
    "pipeline runs": "test_the_local_lifecycle_commands",
    "pipeline start": "test_the_local_lifecycle_commands",
    "pipeline definition": "test_infra_and_policy_commands",
    "model list": "test_the_local_lifecycle_commands",
    "model latest": "test_the_local_lifecycle_commands",
    "model approve": "test_the_local_lifecycle_commands",
    "model reject": "test_the_local_lifecycle_commands",
    "local up": "test_the_local_lifecycle_commands",
    "local status": "test_the_local_lifecycle_commands",
    "local down": "test_the_local_lifecycle_commands",
    "release promote": "test_the_local_lifecycle_commands",
    "release rollback": "test_the_local_lifecycle_commands",
    "release verify": "test_the_local_lifecycle_commands",
    "serve": "test_the_local_lifecycle_commands",
    "batch run": "tests/local/test_batch_local.py (2,500 rows equal to the endpoint's, bad rows, a header, bad arguments)",
    "monitor baseline": "test_the_local_lifecycle_commands",
    "monitor status": "test_the_local_lifecycle_commands",
    "monitor quality": "test_the_local_lifecycle_commands (labels of the requests `serve --local` answered)",
    "bootstrap": "test_the_bootstrap_command",
    "demo": "tests/local/test_demo.py::runs (`mlops demo --small`, interrupted, then run again)",
    "data checkout": "tests/local/test_data_versions_local.py (two revisions pushed, the older trained on and checked "
                     "out with its digest; refused revisions)",
    "problem init": "tests/local/test_bring_your_own_problem.py (init, check, pipeline run --problem, serve)",
    "problem check": "tests/local/test_bring_your_own_problem.py (init, check, pipeline run --problem, serve)",
}


def readme_commands() -> set[str]:
    """`mlops` commands in the README's code blocks, by their leading words (`a|b` alternatives split)."""
    found = set()
    for block in re.findall(r"```[a-z]*\n(.*?)```", README.read_text(), re.S):
        for line in block.splitlines():
            for command in re.findall(r"(?:^|;\s*|\$ )(?:\.venv/bin/)?mlops ((?:[a-z|]+ ?(?:\| ?)?)+)", line):
                words = [w for w in re.split(r"\s+", command.replace(" | ", "|").strip()) if w]
                head, *rest = words
                for second in (rest[0].split("|") if rest else [""]):
                    for first in head.split("|"):
                        found.add(f"{first} {second}".strip())
    return found


def mlops(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MLOPS, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    state = tmp_path_factory.mktemp("readme-state")
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLOPS_"))}
    environment["MLOPS_STATE_DIR"] = str(state)
    yield environment
    mlops("local", "down", env=environment)


def test_every_readme_command_is_covered():
    commands = readme_commands()
    assert {"infra plan", "pipeline run", "model approve", "local down", "serve"} <= commands  # the parser works
    assert commands - set(COVERED) == set()


def test_infra_and_policy_commands(env: dict[str, str]):
    table = mlops("infra", "plan", "--stack", "prod", env=env)
    assert table.returncode == 0, table.stderr
    assert table.stdout.startswith("Stack prod: ") and "Policies: no violations." in table.stdout
    as_json = mlops("infra", "plan", "--stack", "prod", "--json", env=env)
    assert as_json.returncode == 0 and json.loads(as_json.stdout)["stack"] == "prod"
    every = mlops("infra", "plan", "--all", env=env)
    assert every.returncode == 0 and "Stack dev: " in every.stdout and "Stack prod: " in every.stdout
    bad = mlops("infra", "plan", "--stack", "prod", "-c", "endpointMaxCapacity=0", env=env)
    assert bad.returncode == 2
    assert "mlops-stack:endpointMaxCapacity" in bad.stderr and "Traceback" not in bad.stderr
    assert mlops("infra", "plan", "--stack", "nosuch", env=env).returncode == 2
    # prod as promote leaves it (README: "Every serving stack monitors its endpoint"): jobs, alarms, the bus path
    pin = "arn:aws:sagemaker:eu-west-1:111111111111:model-package/mlops-stack-dev/3"
    image = "111111111111.dkr.ecr.eu-west-1.amazonaws.com/mlops-stack/dev/model:0123abc"
    served = mlops("infra", "plan", "--stack", "prod", "-c", f"approvedModelPackageArn={pin}", "-c",
                   f"approvedModelImageUri={image}", env=env)
    assert served.returncode == 0, served.stderr
    assert "monitoring-drift-schedule" in served.stdout and "monitoring-quality-alarm" in served.stdout
    assert "event-bus/mlops-stack-dev-retrain-from-222222222222" in served.stdout
    assert "Policies: no violations." in served.stdout
    no_image = mlops("infra", "plan", "--stack", "prod", "-c", f"approvedModelPackageArn={pin}", env=env)
    assert no_image.returncode == 2 and "Traceback" not in no_image.stderr
    assert no_image.stderr.count("\n") == 1 and "mlops-stack:approvedModelImageUri: empty" in no_image.stderr

    policies = mlops("policy", "list", env=env)
    assert policies.returncode == 0 and re.search(r"\n\d+ policies\n$", policies.stdout)
    assert mlops("policy", "frobnicate", env=env).returncode == 2

    definition = mlops("pipeline", "definition", "--stack", "dev", "--image-tag", "abc", env=env)
    assert definition.returncode == 2 and "has `pulumi up -s dev` run?" in definition.stderr  # needs the account


def test_the_bootstrap_command(env: dict[str, str], tmp_path: Path):
    """`mlops bootstrap` against a moto server answering as dev's account, with a fake Pulumi CLI."""
    from mlops.local import aws as local_aws
    from mlops.settings import load_stack
    from tests.mlops.test_bootstrap import FAKE_PULUMI

    dev = load_stack("dev")
    root = _stack_copies(tmp_path)
    pulumi = tmp_path / "pulumi"
    pulumi.write_text(FAKE_PULUMI)
    pulumi.chmod(0o755)
    server = local_aws.start(tmp_path / "aws", account_id=dev.account_id, region=dev.region)
    try:
        environment = {**env, **server.environment(), "FAKE_PULUMI_LOG": str(tmp_path / "pulumi.log"),
                       "FAKE_PULUMI_STATE": str(tmp_path / "pulumi.json")}
        done = mlops("bootstrap", "--stack", "dev", "--root", str(root), "--pulumi", str(pulumi), env=environment)
        assert done.returncode == 0, done.stderr
        assert "Pulumi.dev.yaml changed: review and commit it" in done.stdout
        assert "secretsprovider: awskms://" in (root / "Pulumi.dev.yaml").read_text()
        other = mlops("bootstrap", "--stack", "prod", "--root", str(root), "--pulumi", str(pulumi), env=environment)
        assert other.returncode == 2 and "nothing was changed" in other.stderr and "Traceback" not in other.stderr
        assert mlops("bootstrap", "--stack", "nosuch", "--root", str(root), env=environment).returncode == 2
    finally:
        local_aws.stop(tmp_path / "aws")


def _stack_copies(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    for path in REPO_ROOT.glob("Pulumi*.yaml"):
        shutil.copy(path, root / path.name)
    return root


def test_the_local_lifecycle_commands(env: dict[str, str], sample: Path, tmp_path: Path):
    up = mlops("local", "up", env=env)
    assert up.returncode == 0, up.stderr
    endpoint_url = re.search(r"AWS_ENDPOINT_URL=(\S+)", up.stdout).group(1)
    assert "embedded AWS on" in mlops("local", "status", env=env).stdout
    assert mlops("local", "up", "--stack", "nosuch", env=env).returncode == 2

    run = mlops("pipeline", "run", "--local", env=env, timeout=900)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Register" in run.stdout and "registered: arn:aws:sagemaker:" in run.stdout
    package = re.search(r"registered: (\S+)", run.stdout).group(1)
    second_run = mlops("pipeline", "run", "--local", "--data", str(sample), env=env, timeout=900)
    assert second_run.returncode == 0, second_run.stdout + second_run.stderr
    second = re.search(r"registered: (\S+)", second_run.stdout).group(1)
    bad_data = tmp_path / "bad.csv"
    bad_data.write_text("age,workclass\n39,Private\n")
    failed = mlops("pipeline", "run", "--local", "--data", str(bad_data), env=env, timeout=900)
    assert failed.returncode == 1 and "nothing was registered" in failed.stderr
    assert mlops("pipeline", "run", "--local", "--data", str(tmp_path / "none.csv"), env=env).returncode == 2
    device = mlops("pipeline", "run", "--local", "--data", "/dev/null", env=env)
    assert device.returncode == 2 and "not a regular file or a folder" in device.stderr, device.stderr
    runs = mlops("pipeline", "runs", env=env)
    assert runs.returncode == 0 and "Succeeded" in runs.stdout and "Failed" in runs.stdout

    aws_env = {**env, "AWS_ENDPOINT_URL": endpoint_url, "AWS_ACCESS_KEY_ID": "local",
               "AWS_SECRET_ACCESS_KEY": "local"}
    listed = mlops("model", "list", "--stack", "dev", env=aws_env)
    assert listed.returncode == 0 and package in listed.stdout and "PendingManualApproval" in listed.stdout
    assert mlops("model", "list", "--stack", "dev", "--status", "Bogus", env=aws_env).returncode == 2
    assert mlops("model", "latest", "--stack", "dev", env=aws_env).returncode == 2  # nothing approved yet
    approved = mlops("model", "approve", package, "--stack", "dev", env=aws_env)
    assert approved.returncode == 0 and "PendingManualApproval -> Approved" in approved.stdout
    assert "MLflow aliases: challenger -> version 2, champion -> version 1" in approved.stdout
    approved = mlops("model", "approve", second, "--stack", "dev", env=aws_env)
    assert "MLflow aliases: champion -> version 2" in approved.stdout
    assert mlops("model", "latest", "--stack", "dev", env=aws_env).stdout.strip() == second
    missing = package.rsplit("/", 1)[0] + "/99"
    assert mlops("model", "approve", missing, "--stack", "dev", env=aws_env).returncode == 2
    assert mlops("model", "reject", package, "--stack", "dev", env=aws_env).returncode == 2  # --description needed

    root = _stack_copies(tmp_path)
    assert mlops("release", "rollback", "--stack", "prod", "--root", str(root), env=aws_env).returncode == 2  # no pin
    for arn in (package, second):
        promoted = mlops("release", "promote", "--from", "dev", "--to", "prod", "--package", arn, "--force",
                         "--root", str(root), env=aws_env)
        assert promoted.returncode == 0, promoted.stderr
        assert arn in (root / "Pulumi.prod.yaml").read_text()
    assert mlops("release", "promote", "--from", "dev", "--to", "nosuch", "--root", str(root),
                 env=aws_env).returncode == 2
    rolled = mlops("release", "rollback", "--stack", "prod", "--root", str(root), env=aws_env)
    assert rolled.returncode == 0, rolled.stderr
    pinned = (root / "Pulumi.prod.yaml").read_text()
    assert package in pinned and second not in pinned
    verify = mlops("release", "verify", "--stack", "dev", env=aws_env)
    assert verify.returncode == 2 and "endpoint" in verify.stderr  # the embedded AWS has no endpoint

    started = mlops("pipeline", "start", "--stack", "dev", env=aws_env)
    assert started.returncode == 0 and ": Executing" in started.stdout, started.stdout + started.stderr
    assert mlops("pipeline", "start", "--stack", "dev", "--parameter", "oops", env=aws_env).returncode == 2

    assert mlops("monitor", "baseline", "--stack", "dev", env=env).returncode == 0
    status = mlops("monitor", "status", "--stack", "dev", "--json", env=env)
    assert status.returncode == 0 and json.loads(status.stdout)["monitored"]["package_arn"] == second
    assert mlops("monitor", "status", "--stack", "nosuch", env=env).returncode == 2

    _quality_of(_serve_until_sigterm(env), env)  # the served requests' capture, with labels uploaded for them
    _serve_until_the_server_dies(env)
    bad_model = mlops("serve", "--local", "--port", "0", "--model", "99", env=env)
    assert bad_model.returncode == 2 and "error:" in bad_model.stderr

    assert mlops("local", "down", env=env).returncode == 0
    assert "not running" in mlops("local", "status", env=env).stdout


def _serve_until_sigterm(env: dict[str, str]) -> tuple[str, list[str]]:
    """`mlops serve --local`, a request, then SIGTERM: exit 0, no server left, no endpoint record."""
    process = subprocess.Popen([MLOPS, "serve", "--local", "--port", "0"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        line = process.stdout.readline()  # "serving <arn> on http://127.0.0.1:<port> in ..."
        match = re.search(r" on (http://127\.0\.0\.1:\d+) ", line)
        assert match, line + process.stderr.read()
        with urllib.request.urlopen(f"{match.group(1)}/ping", timeout=10) as response:
            assert response.status == 200
        labels = _served_with_inference_ids(match.group(1))
        state = Path(env["MLOPS_STATE_DIR"])
        records = list((state / "endpoints").glob("*.json"))
        assert len(records) == 1
        server_pid = json.loads(records[0].read_text())["pid"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        assert "stopped" in process.stdout.read()
        assert not list((state / "endpoints").glob("*.json"))
        deadline = time.monotonic() + 10
        while Path(f"/proc/{server_pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not Path(f"/proc/{server_pid}").exists(), "the model server outlived `mlops serve`"
        with pytest.raises(OSError):
            urllib.request.urlopen(f"{match.group(1)}/ping", timeout=2)
        assert _containers_of(state) == ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return labels


def _serve_until_the_server_dies(env: dict[str, str]) -> None:
    """A model server killed from outside makes `mlops serve --local` exit 1, naming the server's log."""
    process = subprocess.Popen([MLOPS, "serve", "--local", "--port", "0"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        assert " on http://127.0.0.1:" in process.stdout.readline()
        [record] = (Path(env["MLOPS_STATE_DIR"]) / "endpoints").glob("*.json")
        os.kill(json.loads(record.read_text())["pid"], signal.SIGKILL)
        assert process.wait(30) == 1
        assert "error: the model server exited by itself with code -9; log " in process.stderr.read()
        assert not list((Path(env["MLOPS_STATE_DIR"]) / "endpoints").glob("*.json"))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_ctrl_c_stops_a_local_run_and_everything_it_started(env: dict[str, str], tmp_path: Path):
    state = tmp_path / "interrupted"
    run_env = {**env, "MLOPS_STATE_DIR": str(state)}
    process = subprocess.Popen([MLOPS, "pipeline", "run", "--local"], env=run_env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        seen = b""
        deadline = time.monotonic() + 300
        while b"Train              running" not in seen:  # the Train job (a container or a process) runs
            chunk = process.stdout.read1(4096)
            assert chunk and time.monotonic() < deadline, seen.decode() + process.stderr.read().decode()
            seen += chunk
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 130
        assert b"interrupted: the run stopped" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        mlops("local", "down", env=run_env)
    [record] = state.glob("runs/*/run.json")
    assert json.loads(record.read_text())["status"] == "Stopped"
    leftovers = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert str(state) not in leftovers, "a server of the interrupted run is still running"
    assert _containers_of(state) == ""


def _containers_of(state: Path) -> str:
    """Names of the containers local mode started for this state folder (labelled with it), if any."""
    from mlops.local.container import find_engine
    from mlops.local.runners import OWNER_LABEL

    engine = find_engine()
    if engine is None:
        return ""
    listed = engine.run("ps", "-a", "--filter", f"label={OWNER_LABEL}={state.resolve()}", "--format", "{{.Names}}")
    assert listed.returncode == 0, listed.stderr
    return listed.stdout.strip()


def _served_with_inference_ids(url: str) -> tuple[str, list[str]]:
    """Two requests of 10 rows, each with its InferenceId; (window start, their labels as ground-truth lines)."""
    from datetime import UTC, datetime

    from problems.adult.synthetic import ADULT, synthesize

    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    frame, lines = synthesize(20, seed=8), []
    for n in range(2):
        part = frame.iloc[n * 10:(n + 1) * 10]
        request = urllib.request.Request(f"{url}/invocations", part[ADULT.feature_names].to_csv(header=False,
                                         index=False).encode(), {"Content-Type": "text/csv",
                                                                 "X-Amzn-SageMaker-Inference-Id": f"req-{n}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.headers["X-Amzn-SageMaker-Inference-Id"] == f"req-{n}"
        truth = "\n".join(str(v) for v in part[ADULT.label])
        lines.append(json.dumps({"groundTruthData": {"data": truth, "encoding": "CSV"},
                                 "eventMetadata": {"eventId": f"req-{n}"}, "eventVersion": "0"}))
    return start.strftime("%Y-%m-%dT%H:%M:%SZ"), lines


def _quality_of(labels: tuple[str, list[str]], env: dict[str, str]) -> None:
    """`mlops monitor quality` on the labels of the served requests: both matched, the metric computed."""
    start, lines = labels
    state = Path(env["MLOPS_STATE_DIR"])
    folder = state / "ground-truth" / start[:13].replace("-", "/").replace("T", "/")
    folder.mkdir(parents=True)
    (folder / "labels.jsonl").write_text("\n".join(lines) + "\n")
    quality = mlops("monitor", "quality", "--stack", "dev", "--start", start, "--json", env=env, timeout=300)
    assert quality.returncode == 0, quality.stdout + quality.stderr
    result = json.loads(quality.stdout)
    assert result["counts"]["matched"] == 2 and result["labelled_rows"] == 20 and result["value"] is not None
    bad = mlops("monitor", "quality", "--stack", "dev", "--start", "soon", env=env)
    assert bad.returncode == 2 and "--start: 'soon' is not an ISO 8601 time" in bad.stderr

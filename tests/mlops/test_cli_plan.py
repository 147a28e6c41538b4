"""`mlops infra plan` and `mlops policy list`, as CI and reviewers run them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlops.cli import EXIT_BAD_INPUT, EXIT_OK, EXIT_VIOLATIONS, main
from mlops.settings import REPO_ROOT, stack_names

PROMISED_TYPES = {
    "aws:kms/key:Key",
    "aws:kms/alias:Alias",
    "aws:s3/bucket:Bucket",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketVersioning:BucketVersioning",
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
    "aws:s3/bucketPolicy:BucketPolicy",
    "aws:s3/bucketLogging:BucketLogging",
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
    "aws:ecr/repository:Repository",
    "aws:ecr/lifecyclePolicy:LifecyclePolicy",
    "aws:iam/role:Role",
    "aws:iam/rolePolicy:RolePolicy",
    "aws:iam/openIdConnectProvider:OpenIdConnectProvider",
    "aws:sagemaker/mlflowTrackingServer:MlflowTrackingServer",
}


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("stack", stack_names())
def test_plan_json_has_every_promised_resource_and_no_violations(capsys, stack: str) -> None:
    code, out, err = _run(capsys, "infra", "plan", "--stack", stack, "--json")
    assert code == EXIT_OK, err
    document = json.loads(out)
    assert document["stack"] == stack
    assert PROMISED_TYPES <= {r["type"] for r in document["resources"]}
    for resource in document["resources"]:
        assert set(resource) >= {"type", "name", "inputs"}
    assert document["violations"] == []
    assert document["outputs"]["deployRoleArn"]


def test_plan_all_covers_every_stack_file(capsys) -> None:
    code, out, _ = _run(capsys, "infra", "plan", "--all", "--json")
    assert code == EXIT_OK
    assert [d["stack"] for d in json.loads(out)] == stack_names()


def test_plan_table_for_humans(capsys) -> None:
    code, out, _ = _run(capsys, "infra", "plan", "--stack", "prod")
    assert code == EXIT_OK
    assert "Stack prod:" in out
    assert "imageTagMutability=IMMUTABLE" in out
    assert "Policies: no violations." in out


def _bad_root(tmp_path: Path, key: str, value) -> Path:
    for name in ("Pulumi.yaml", "Pulumi.dev.yaml", "Pulumi.prod.yaml"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    document = yaml.safe_load((tmp_path / "Pulumi.prod.yaml").read_text())
    document["config"][key] = value
    (tmp_path / "Pulumi.prod.yaml").write_text(yaml.safe_dump(document))
    return tmp_path


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (
            "mlops-stack:endpointMaxCapacity",
            1,
            "error: Pulumi.prod.yaml: mlops-stack:endpointMaxCapacity: 1 is below mlops-stack:endpointMinCapacity (2)",
        ),
        (
            "mlops-stack:endpointMinCapacty",
            2,
            "error: Pulumi.prod.yaml: line {line}: mlops-stack:endpointMinCapacty: unknown key (did you mean mlops-stack:endpointMinCapacity?)",
        ),
        (
            "mlops-stack:driftSchedule",
            "cron(0 */6 * * *)",
            "error: Pulumi.prod.yaml: line {line}: mlops-stack:driftSchedule: 'cron(0 */6 * * *)' has 5 fields; AWS cron expressions have 6",
        ),
        (
            "mlops-stack:vpcSubnetIds",
            "subnet-0123abcd",
            "error: Pulumi.prod.yaml: mlops-stack:vpcCreate: true, and mlops-stack:vpcSubnetIds names an existing "
            "network: set one of them",
        ),
        (
            "mlops-stack:vpcCidr",
            "10.40.0.0/12",
            "error: Pulumi.prod.yaml: line {line}: mlops-stack:vpcCidr: '10.40.0.0/12' is not an IPv4 network like "
            "10.40.0.0/16 (10.40.0.0/12 has host bits set)",
        ),
        (
            "mlops-stack:logRetentionDays",
            45,
            "error: Pulumi.prod.yaml: line {line}: mlops-stack:logRetentionDays: 45 is not a CloudWatch Logs retention "
            "period (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, "
            "3288, 3653)",
        ),
        (
            "mlops-stack:existingTrailArn",
            "arn:aws:s3:::trail",
            "error: Pulumi.prod.yaml: line {line}: mlops-stack:existingTrailArn: 'arn:aws:s3:::trail' is not an ARN "
            "of a cloudtrail trail",
        ),
    ],
)
def test_bad_stack_file_prints_one_line_and_nothing_else(capsys, tmp_path: Path, key, value, message) -> None:
    root = _bad_root(tmp_path, key, value)
    line = next(number for number, text in enumerate((root / "Pulumi.prod.yaml").read_text().splitlines(), 1)
                if text.lstrip().startswith(f"{key}:"))
    message = message.format(line=line)  # a key's own problem names its line; a cross-key one (min > max) cannot
    for argv in (["--stack", "prod"], ["--all"], ["--stack", "prod", "--json"]):
        code, out, err = _run(capsys, "infra", "plan", *argv, "--root", str(root))
        assert code == EXIT_BAD_INPUT
        assert out == ""
        assert err.splitlines() == [message]


@pytest.mark.parametrize(
    ("mistake", "edit", "expected", "marker"),
    [
        ("duplicate key",
         lambda text: text.replace("config:\n", "config:\n  mlops-stack:endpointMaxCapacity: 9\n", 1),
         r"line (\d+): duplicate key 'mlops-stack:endpointMaxCapacity' \(first at line (\d+)\); YAML keeps only "
         r"the last", b"mlops-stack:endpointMaxCapacity:"),
        ("non-UTF-8 byte",
         lambda text: text.replace("config:\n", "config:\n  # Zürich\n", 1).encode("latin-1"),
         r"line (\d+): byte 0xfc is not UTF-8; save the file as UTF-8", b"\xfc"),
        ("misspelled namespace",
         lambda text: text.replace("mlops-stack:endpointMaxCapacity:", "mlops-stak:endpointMaxCapacity:"),
         r"line (\d+): mlops-stak:endpointMaxCapacity: unknown namespace 'mlops-stak' \(did you mean "
         r"mlops-stack:endpointMaxCapacity\?\); .*nothing would read it", b"mlops-stak:"),
        ("unknown aws key",
         lambda text: text.replace("aws:region:", "aws:regoin:"),
         r"line (\d+): aws:regoin: not a config key of the aws provider \(did you mean aws:region\?\): the "
         r"provider would ignore it", b"aws:regoin:"),
        ("a list as a key",
         lambda text: text.replace("config:\n", "config:\n  ? [a, b]\n  : 1\n", 1),
         r"line (\d+): a key must be a plain value, not list \['a', 'b'\]", b"? [a, b]"),
    ],
)
def test_stack_file_mistakes_exit_2_with_one_line_naming_file_line_and_key(tmp_path: Path, mistake, edit,
                                                                           expected, marker) -> None:
    """Through the installed entry point: exit 2, one line on stderr naming the file, the line and the key."""
    for name in ("Pulumi.yaml", "Pulumi.dev.yaml"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    edited = edit((REPO_ROOT / "Pulumi.prod.yaml").read_text())
    path = tmp_path / "Pulumi.prod.yaml"
    path.write_bytes(edited if isinstance(edited, bytes) else edited.encode())
    mlops = Path(sys.executable).parent / "mlops"
    result = subprocess.run([str(mlops), "infra", "plan", "--stack", "prod", "--root", str(tmp_path)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == EXIT_BAD_INPUT, (mistake, result.stderr)
    assert result.stdout == "" and "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    match = re.fullmatch(rf"error: (\S+): {expected}", line)
    assert match, line
    assert match.group(1).endswith("Pulumi.prod.yaml")
    lines = path.read_bytes().splitlines()
    named = [int(number) for number in match.groups()[1:]]  # the line (and for a duplicate, the first one too)
    assert named and all(marker in lines[number - 1] for number in named), (line, [lines[n - 1] for n in named])


def test_missing_stack_file(capsys, tmp_path: Path) -> None:
    code, out, err = _run(capsys, "infra", "plan", "--stack", "qa", "--root", str(tmp_path))
    assert code == EXIT_BAD_INPUT and out == ""
    assert err.strip() == f"error: {tmp_path / 'Pulumi.qa.yaml'}: stack file not found"


def test_mandatory_violation_fails_the_plan(capsys, monkeypatch) -> None:
    import policies.offline as offline

    real_evaluate = offline.evaluate

    def evaluate_with_unencrypted_bucket(resources, **kwargs):
        resources = [dict(r) for r in resources]
        resources = [r for r in resources if not r["type"].endswith("BucketServerSideEncryptionConfiguration")]
        return real_evaluate(resources, **kwargs)

    monkeypatch.setattr(offline, "evaluate", evaluate_with_unencrypted_bucket)
    code, out, _ = _run(capsys, "infra", "plan", "--stack", "dev")
    assert code == EXIT_VIOLATIONS
    assert "Policy violations" in out and "mandatory" in out
    code, out, _ = _run(capsys, "infra", "plan", "--stack", "dev", "--json")
    assert code == EXIT_VIOLATIONS
    violations = json.loads(out)["violations"]
    assert violations and {"policy", "resource", "message", "level"} == set(violations[0])


def test_policy_list(capsys) -> None:
    code, out, _ = _run(capsys, "policy", "list")
    assert code == EXIT_OK
    count = int(out.strip().splitlines()[-1].split()[0])
    assert count >= 25
    assert "s3-" in out and "iam-" in out


def test_console_script_end_to_end() -> None:
    """The installed `mlops` entry point, as CI calls it."""
    mlops = Path(sys.executable).parent / "mlops"
    result = subprocess.run(
        [str(mlops), "infra", "plan", "--stack", "dev", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["stack"] == "dev"


def test_pulumis_own_keys_are_left_to_pulumi(tmp_path: Path) -> None:
    """`pulumi:` keys (stack tags, autonaming) are Pulumi's to check: refusing them would break a real `pulumi up`."""
    for name in ("Pulumi.yaml", "Pulumi.prod.yaml"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    text = (REPO_ROOT / "Pulumi.dev.yaml").read_text()
    (tmp_path / "Pulumi.dev.yaml").write_text(text.replace("config:\n", "config:\n  pulumi:autonaming:\n    mode: default\n", 1))
    assert main(["infra", "plan", "--stack", "dev", "--root", str(tmp_path)]) == EXIT_OK

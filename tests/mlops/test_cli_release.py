"""`mlops model ...` and `mlops release ...` end to end through the CLI, against moto."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from mlops.cli import EXIT_BAD_INPUT, EXIT_OK, main
from mlops.registry import APPROVED, Aws
from mlops.release import PIN_KEY
from tests.mlops.moto_aws import Registry, copy_stack_files, create_endpoint, deploy_config, load, moto_aws


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    with moto_aws(monkeypatch) as aws:
        yield aws


@pytest.fixture
def root(tmp_path: Path) -> Path:
    copy_stack_files(tmp_path)
    return tmp_path


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def _pin(root: Path, stack: str) -> str:
    return yaml.safe_load((root / f"Pulumi.{stack}.yaml").read_text())["config"].get(PIN_KEY, "")


def test_approve_promote_rollback_verify(capsys, aws: Aws, root: Path) -> None:
    dev = load(root / "Pulumi.dev.yaml")
    registry = Registry(dev, aws)
    first = registry.register(0.86)
    second = registry.register(0.91)

    code, out, _ = _run(capsys, "model", "list", "--stack", "dev", "--root", str(root))
    assert code == EXIT_OK
    assert out.splitlines()[0].split() == ["VERSION", "STATUS", "CREATED", "PRIMARY", "METRIC", "ARN"]
    assert second in out.splitlines()[1] and "PendingManualApproval" in out

    code, out, err = _run(capsys, "release", "promote", "--from", "dev", "--to", "prod", "--root", str(root))
    assert code == EXIT_BAD_INPUT and out == ""
    assert "no approved model package in group mlops-stack-dev" in err

    for arn in (first, second):
        code, out, _ = _run(capsys, "model", "approve", arn, "--stack", "dev", "--root", str(root))
        assert code == EXIT_OK and out.strip() == f"{arn}: PendingManualApproval -> Approved"

    code, out, _ = _run(capsys, "release", "promote", "--from", "dev", "--to", "prod", "--package", first,
                        "--root", str(root))
    assert code == EXIT_OK and _pin(root, "prod") == first
    code, out, _ = _run(capsys, "release", "promote", "--from", "dev", "--to", "prod", "--root", str(root))
    assert code == EXIT_OK and _pin(root, "prod") == second
    assert f"\n+  {PIN_KEY}: " in out and second in out and "pulumi up -s prod" in out

    code, out, _ = _run(capsys, "release", "rollback", "--stack", "prod", "--root", str(root))
    assert code == EXIT_OK and _pin(root, "prod") == first

    config = deploy_config(dev, aws, second, "v2")
    create_endpoint(dev, aws, config)
    code, out, err = _run(capsys, "release", "verify", "--stack", "dev", "--root", str(root))
    assert code == EXIT_OK, err
    assert f"InService, config {config}, package {second}" in out

    code, out, err = _run(capsys, "release", "verify", "--stack", "dev", "--package", first, "--root", str(root))
    assert code == EXIT_BAD_INPUT and out == ""
    assert f"expected {first}" in err


def test_reject_needs_a_reason_and_unknown_packages_fail(capsys, aws: Aws, root: Path) -> None:
    dev = load(root / "Pulumi.dev.yaml")
    arn = Registry(dev, aws).register(0.8)
    with pytest.raises(SystemExit):
        main(["model", "reject", arn, "--stack", "dev", "--root", str(root)])
    capsys.readouterr()
    code, out, _ = _run(capsys, "model", "reject", arn, "--stack", "dev", "--description", "leaks a feature",
                        "--root", str(root))
    assert code == EXIT_OK and "-> Rejected" in out
    missing = arn.rsplit("/", 1)[0] + "/99"
    code, _, err = _run(capsys, "model", "approve", missing, "--stack", "dev", "--root", str(root))
    assert code == EXIT_BAD_INPUT and "not found" in err


def test_release_commands_name_a_missing_stack_file(capsys, aws: Aws, root: Path) -> None:
    code, out, err = _run(capsys, "release", "rollback", "--stack", "qa", "--root", str(root))
    assert code == EXIT_BAD_INPUT and out == ""
    assert "Pulumi.qa.yaml" in err and "not found" in err


def test_model_latest_or_empty_is_empty_only_when_there_is_none(capsys, aws: Aws, root: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # The first deploy: `pulumi up` has not created the group yet.
    code, out, err = _run(capsys, "model", "latest", "--stack", "dev", "--or-empty", "--root", str(root))
    assert (code, out) == (EXIT_OK, "\n") and "model package group mlops-stack-dev" in err and "not found" in err

    # Denied (or throttled, or unreachable) is not "none approved": an empty pin would delete the endpoint.
    call = BaseClient._make_api_call

    def denied(self, operation: str, request: dict):
        if operation == "DescribeModelPackageGroup":
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not authorized"}}, operation)
        return call(self, operation, request)

    monkeypatch.setattr(BaseClient, "_make_api_call", denied)
    code, out, err = _run(capsys, "model", "latest", "--stack", "dev", "--or-empty", "--root", str(root))
    assert code != EXIT_OK and out == ""
    assert "AccessDeniedException: not authorized" in err


def test_verify_if_model_skips_a_stack_without_a_model_and_nothing_else(capsys, aws: Aws, root: Path) -> None:
    verify = ("release", "verify", "--stack", "dev", "--root", str(root))
    code, out, err = _run(capsys, *verify, "--if-model")  # a new project: no group, no pin
    assert code == EXIT_OK and out.startswith("nothing to verify: stack dev pins no model package and model package "
                                              "group mlops-stack-dev of stack dev not found")
    registry = Registry(load(root / "Pulumi.dev.yaml"), aws)
    registry.register(0.9)  # pending only: still nothing deployed
    code, out, _ = _run(capsys, *verify, "--if-model")
    assert code == EXIT_OK and "no approved model package in group mlops-stack-dev" in out
    code, _, err = _run(capsys, *verify)  # without the flag a missing model is a failure
    assert code == EXIT_BAD_INPUT and "no approved model package" in err
    # An approved model with no endpoint is a failed deployment, never skipped.
    registry.register(0.91, APPROVED)
    code, out, err = _run(capsys, *verify, "--if-model")
    assert code == EXIT_BAD_INPUT and out == "" and "endpoint mlops-stack-dev of stack dev not found" in err


def test_model_latest_for_the_dev_deploy(capsys, aws: Aws, root: Path) -> None:
    dev = load(root / "Pulumi.dev.yaml")
    registry = Registry(dev, aws)
    registry.register(0.8)
    assert main(["model", "latest", "--stack", "dev", "--or-empty", "--root", str(root)]) == EXIT_OK
    assert capsys.readouterr().out == "\n"
    assert main(["model", "latest", "--stack", "dev", "--root", str(root)]) == EXIT_BAD_INPUT
    assert "no approved model package" in capsys.readouterr().err
    approved = registry.register(0.9, APPROVED)
    assert main(["model", "latest", "--stack", "dev", "--root", str(root)]) == EXIT_OK
    assert capsys.readouterr().out.strip() == approved

"""The delivery pipeline's promises, checked on .gitlab-ci.yml itself."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlops.settings import REPO_ROOT

CI_FILE = REPO_ROOT / ".gitlab-ci.yml"
RESERVED = {"workflow", "stages", "variables", "default", "include"}


@pytest.fixture(scope="module")
def ci() -> dict:
    return yaml.safe_load(CI_FILE.read_text())


def _jobs(ci: dict) -> dict[str, dict]:
    return {name: job for name, job in ci.items() if name not in RESERVED and not name.startswith(".")}


def _resolve(ci: dict, job: dict) -> dict:
    """A job with its `extends` templates merged in (one level is all this file uses)."""
    merged: dict = {}
    for template in [job.get("extends")] if isinstance(job.get("extends"), str) else job.get("extends", []):
        merged.update(ci[template])
    merged.update(job)
    if "variables" in job and "extends" in job:
        merged["variables"] = {**ci[job["extends"]].get("variables", {}), **job["variables"]}
    return merged


def test_validates_against_gitlab_schema() -> None:
    check = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run([str(check), "--builtin-schema", "vendor.gitlab-ci", str(CI_FILE)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_static_aws_keys_anywhere() -> None:
    text = CI_FILE.read_text()
    assert not re.search(r"AWS_(ACCESS_KEY_ID|SECRET_ACCESS_KEY|SESSION_TOKEN)", text)
    assert not re.search(r"AKIA[0-9A-Z]{16}", text)


def test_every_aws_job_uses_oidc(ci: dict) -> None:
    for name, job in _jobs(ci).items():
        job = _resolve(ci, job)
        if "AWS_ROLE_ARN" in job.get("variables", {}):
            assert job["id_tokens"]["GITLAB_OIDC_TOKEN"]["aud"] == "sts.amazonaws.com", name
            assert job["variables"]["AWS_WEB_IDENTITY_TOKEN_FILE"], name


def test_prod_deploy_is_manual_protected_and_serialized(ci: dict) -> None:
    prod = _resolve(ci, ci["deploy-prod"])
    assert [rule.get("when") for rule in prod["rules"]] == ["manual"]
    assert prod["allow_failure"] is False
    assert prod["environment"]["name"] == "production"
    assert prod["resource_group"] == "production"
    assert prod["variables"]["AWS_ROLE_ARN"] == "$PROD_DEPLOY_ROLE_ARN"
    assert ci["stages"].index("deploy-prod") > ci["stages"].index("deploy-dev")


def test_deploys_are_serialized_per_environment(ci: dict) -> None:
    for name, job in _jobs(ci).items():
        if "pulumi up" in " ".join(map(str, _flatten(job.get("script", [])))):
            assert job.get("resource_group"), name


def test_images_are_pinned_by_digest(ci: dict) -> None:
    variables = ci["variables"]
    for name, value in variables.items():
        if name.endswith("_IMAGE"):
            assert re.search(r"@sha256:[0-9a-f]{64}$", value), name
            assert ":latest" not in value
    for name, job in [("default", ci["default"]), *_jobs(ci).items()]:
        image = job.get("image")
        if image is not None:
            image = image["name"] if isinstance(image, dict) else image
            assert image.startswith("$") and image[1:] in variables, (name, image)


def test_merge_requests_plan_every_stack_with_policies(ci: dict) -> None:
    plan = ci["offline-plan"]
    assert "rules" not in plan  # runs in every pipeline: merge requests and main
    assert ".venv/bin/mlops infra plan --all -c imageTag=$CI_COMMIT_SHA" in plan["script"]
    assert plan["artifacts"]["paths"] == ["plan.json"]


def _flatten(items):
    for item in items:
        if isinstance(item, list):
            yield from _flatten(item)
        else:
            yield item


def test_prod_rollback_is_manual_on_the_protected_environment(ci: dict) -> None:
    rollback = _resolve(ci, ci["rollback-prod"])
    assert [rule.get("when") for rule in rollback["rules"]] == ["manual"]
    assert rollback["environment"]["name"] == "production"
    assert rollback["resource_group"] == "production"
    script = list(map(str, _flatten(rollback["script"])))
    assert ".venv/bin/mlops release rollback --stack prod" in script
    assert script.index(".venv/bin/mlops release rollback --stack prod") < next(
        i for i, line in enumerate(script) if line.startswith("pulumi up -s prod"))


def test_promotion_goes_through_a_merge_request(ci: dict) -> None:
    promote = _resolve(ci, ci["promote"])
    script = list(map(str, _flatten(promote["script"])))
    assert ".venv/bin/mlops release promote --from dev --to prod" in script
    assert any("merge_request.create" in line for line in script)
    assert not any("pulumi up" in line for line in script)


def test_every_deploy_is_followed_by_verify(ci: dict) -> None:
    assert ci["verify-dev"]["needs"] == ["deploy-dev"]
    assert ci["verify-prod"]["needs"] == ["deploy-prod"]


def test_training_runs_only_when_model_code_or_pipelines_change(ci: dict) -> None:
    train = _resolve(ci, ci["train"])
    [rule] = train["rules"]
    assert rule["changes"] == ["model_code/**/*", "pipelines/**/*"]
    assert train["needs"] == ["deploy-dev"]
    assert any("mlops pipeline start --stack dev" in str(line) for line in _flatten(train["script"]))


def test_dev_deploy_follows_the_latest_approved_package(ci: dict) -> None:
    script = " ".join(map(str, _flatten(ci["deploy-dev"]["script"])))
    assert "mlops model latest --stack dev --or-empty" in script
    assert script.index("approvedModelPackageArn") < script.index("pulumi up -s dev")

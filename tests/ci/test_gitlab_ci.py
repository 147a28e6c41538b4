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


def _matches(expression: str, variables: dict[str, str]) -> bool:
    """A GitLab `rules:if` expression of this file's kind (==, !=, =~ /re/, &&, ||, strings, $VARIABLES)."""
    tokens = re.findall(r'\$\w+|"[^"]*"|/[^/]*/|==|!=|=~|&&|\|\||\(|\)|null', expression)
    assert "".join(tokens) == re.sub(r"\s+", "", expression), f"unparsed tokens in {expression!r}"
    python: list[str] = []
    for token in tokens:
        if token.startswith("$"):
            python.append(repr(variables.get(token[1:])))  # an undefined variable is null
        elif token.startswith("/"):  # `$VAR =~ /re/`: the operand before `=~` is searched
            operand = python.pop(-2)
            python[-1] = f"bool(re.search({token[1:-1]!r}, {operand} or ''))"
        else:
            python.append({"&&": "and", "||": "or", "null": "None"}.get(token, token))
    return bool(eval(" ".join(python), {"re": re}))  # noqa: S307 - the tokens are whitelisted above


MAIN_PUSH = {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BRANCH": "main", "CI_DEFAULT_BRANCH": "main"}
MERGE_REQUEST = {"CI_PIPELINE_SOURCE": "merge_request_event", "CI_DEFAULT_BRANCH": "main"}
PROD_TAG = {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_TAG": "prod-2026-12-01", "CI_DEFAULT_BRANCH": "main"}
ROLLBACK = {**PROD_TAG, "CI_PIPELINE_SOURCE": "web", "MLOPS_ROLLBACK": "prod"}


def _pipeline(ci: dict, variables: dict[str, str]) -> dict[str, str]:
    """The jobs GitLab puts in a pipeline with these variables, and each one's `when` (changes: taken as met)."""
    if not any(_matches(rule["if"], variables) for rule in ci["workflow"]["rules"]):
        return {}
    jobs = {}
    for name, job in _jobs(ci).items():
        job = _resolve(ci, job)
        rules = job.get("rules", [{"when": "on_success"}])
        rule = next((r for r in rules if "if" not in r or _matches(r["if"], variables)), {"when": "never"})
        if rule.get("when", "on_success") != "never":
            jobs[name] = rule.get("when", "on_success")
    return jobs


def test_each_pipeline_holds_the_jobs_it_should() -> None:
    ci = yaml.safe_load(CI_FILE.read_text())
    checks = {"lint": "on_success", "unit-tests": "on_success", "offline-plan": "on_success"}
    assert _pipeline(ci, MERGE_REQUEST) == checks  # preview needs PREVIEW_ROLE_ARN
    assert _pipeline(ci, {**MERGE_REQUEST, "PREVIEW_ROLE_ARN": "arn"}) == {**checks, "preview": "on_success"}
    assert _pipeline(ci, MAIN_PUSH) == {
        **checks, "build-image": "on_success", "deploy-dev": "on_success", "train": "on_success",
        "verify-dev": "on_success", "promote": "manual",
    }
    # Prod only in pipelines of its protected tags (the only ref its deploy role trusts).
    assert _pipeline(ci, PROD_TAG) == {**checks, "deploy-prod": "manual", "verify-prod": "on_success"}
    # Rolling back is a pipeline of its own, reachable whatever the last deploy did: one manual job that waits
    # for nothing.
    assert _pipeline(ci, ROLLBACK) == {"rollback-prod": "manual"}
    assert ci["rollback-prod"]["needs"] == []
    assert _pipeline(ci, {**MAIN_PUSH, "CI_COMMIT_BRANCH": "feature"}) == {}
    assert _pipeline(ci, {**PROD_TAG, "CI_COMMIT_TAG": "v1.0"}) == {}


def test_prod_jobs_run_on_the_tags_the_prod_deploy_role_trusts() -> None:
    """The CI's prod-tag rule and prod's ciProtectedTag (the OIDC trust) name the same tags."""
    import fnmatch

    from mlops.settings import load_stack

    ci = yaml.safe_load(CI_FILE.read_text())
    pattern = load_stack("prod").ci_protected_tag
    for tag in ("prod-2026-12-01", "prod-1", "production", "v1.0", "dev-prod-1", "prod"):
        in_pipeline = "deploy-prod" in _pipeline(ci, {**PROD_TAG, "CI_COMMIT_TAG": tag})
        assert in_pipeline == fnmatch.fnmatchcase(tag, pattern), tag
    assert load_stack("dev").ci_protected_branch == "main" and not load_stack("dev").ci_protected_tag


def test_deploy_jobs_are_not_interruptible_and_end_explicitly(ci: dict) -> None:
    from mlops.pipeline import start

    assert ci["default"]["interruptible"] is True  # checks may be cancelled by a newer push ...
    hours = {"h": 3600, "m": 60}
    for name in ("deploy-dev", "deploy-prod", "rollback-prod", "train"):
        job = ci[name]
        assert job["interruptible"] is False, name  # ... a `pulumi up` or a training wait may not
        seconds = sum(int(n) * hours[u] for n, u in re.findall(r"(\d+)\s*([hm])", job["timeout"]))
        assert 3600 < seconds <= 5 * 3600, name
    # The train job outlives `mlops pipeline start --wait`, which gives up first with its own message.
    wait_timeout = start.__kwdefaults__["timeout_s"]
    train = sum(int(n) * hours[u] for n, u in re.findall(r"(\d+)\s*([hm])", ci["train"]["timeout"]))
    assert train > wait_timeout


def test_every_pulumi_job_checks_the_stack_is_bootstrapped_first(ci: dict) -> None:
    """No passphrase prompt in CI: each job that runs `pulumi` first checks the stack's KMS secrets provider."""
    jobs = {name: _script(_resolve(ci, job)) for name, job in _jobs(ci).items()}
    with_pulumi = {name: script for name, script in jobs.items() if any(line.startswith("pulumi ") for line in script)}
    assert set(with_pulumi) == {"preview", "deploy-dev", "deploy-prod", "rollback-prod"}
    for name, script in with_pulumi.items():
        stack = "prod" if "prod" in name else "dev"
        first = next(i for i, line in enumerate(script) if line.startswith("pulumi "))
        assert script.index(f".venv/bin/mlops bootstrap --check --stack {stack}") < first, name
    assert "PULUMI_CONFIG_PASSPHRASE" not in CI_FILE.read_text()


def test_a_failed_registry_lookup_stops_the_dev_deploy_before_it_unpins(ci: dict, tmp_path: Path) -> None:
    """`pulumi config set K "$(cmd)"` would go on with an empty pin when cmd fails: the deploy must stop."""
    script = _script(ci["deploy-dev"])
    start = next(i for i, line in enumerate(script) if "mlops model latest --stack dev --or-empty" in line)
    steps = script[start:start + 2]
    assert steps[1].startswith("pulumi config set approvedModelPackageArn")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    for path, text in ((tmp_path / ".venv" / "bin" / "mlops", "echo 'error: AccessDeniedException' >&2; exit 2"),
                       (tmp_path / "pulumi", 'echo "pulumi $*" >> calls')):
        path.write_text(f"#!/bin/sh\n{text}\n")
        path.chmod(0o755)
    result = subprocess.run(["bash", "-eo", "pipefail", "-c", "\n".join(steps)], cwd=tmp_path,
                            env={"PATH": f"{tmp_path}:/usr/bin:/bin"}, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode != 0 and "AccessDeniedException" in result.stderr
    assert not (tmp_path / "calls").exists()  # no pin was set
    # And when the lookup answers, that ARN is what gets pinned.
    arn = "arn:aws:sagemaker:eu-west-1:111111111111:model-package/mlops-stack-dev/3"
    (tmp_path / ".venv" / "bin" / "mlops").write_text(f"#!/bin/sh\necho {arn}\n")
    result = subprocess.run(["bash", "-eo", "pipefail", "-c", "\n".join(steps)], cwd=tmp_path,
                            env={"PATH": f"{tmp_path}:/usr/bin:/bin"}, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "calls").read_text() == f"pulumi config set approvedModelPackageArn {arn} -s dev\n"


def test_verify_jobs_skip_a_stack_without_a_model(ci: dict) -> None:
    for name, stack in (("verify-dev", "dev"), ("verify-prod", "prod")):
        assert f".venv/bin/mlops release verify --stack {stack} --if-model" in _script(ci[name]), name


def test_promotion_of_an_already_pinned_package_is_a_no_op(ci: dict, tmp_path: Path) -> None:
    """The merge-request steps in a clone whose stack file already says it: exit 0, nothing pushed."""
    subprocess.run(["git", "init", "-q", "-b", "main", str(tmp_path)], check=True)
    (tmp_path / "Pulumi.prod.yaml").write_text("config: {}\n")
    subprocess.run(["git", "-C", str(tmp_path), "add", "."], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"],
                   check=True)
    steps = list(map(str, _flatten(ci[".open-merge-request"])))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "BRANCH": "promote/abc", "MESSAGE": "Promote",
           "CI_SERVER_HOST": "gitlab.invalid", "PROMOTION_TOKEN": "t", "CI_PROJECT_PATH": "a/b",
           "CI_DEFAULT_BRANCH": "main"}
    result = subprocess.run(["bash", "-eo", "pipefail", "-c", "\n".join(steps)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "nothing to commit, the stack file already pins it" in result.stdout
    (tmp_path / "Pulumi.prod.yaml").write_text("config: {pin: x}\n")
    result = subprocess.run(["bash", "-eo", "pipefail", "-c", "\n".join(steps)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0 and "gitlab.invalid" in result.stderr  # a change is committed and pushed


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
    assert "offline-plan" in _pipeline(ci, MERGE_REQUEST) and "offline-plan" in _pipeline(ci, MAIN_PUSH)
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


# --- build-image: podman builds, tests/image smoke-tests that image, then it goes to ECR ------------------


def _script(job: dict) -> list[str]:
    return list(map(str, _flatten(job["script"])))


def _line(script: list[str], needle: str) -> int:
    [index] = [i for i, line in enumerate(script) if needle in line]
    return index


def test_build_job_smoke_tests_the_image_it_built_before_pushing_it(ci: dict) -> None:
    build = _resolve(ci, ci["build-image"])
    script = _script(build)
    built = _line(script, "scripts/image.sh")
    smoke = script.index(".venv/bin/python -m pytest tests/image -q --junitxml=image-junit.xml")
    token = script.index(ci[".write-oidc-token"][0])
    push = _line(script, "podman push")
    assert built < smoke < token < push
    assert not any(word in line for line in script for word in ("podman build", "buildah", "podman pull"))
    assert script[built] == """MODEL_IMAGE="$(env -u PYTHON_IMAGE bash scripts/image.sh | awk 'END {print $NF}')\""""
    assert '"$MODEL_IMAGE" "$DEV_ECR_REPOSITORY:$CI_COMMIT_SHA"' in script[push]
    # The smoke test cannot be skipped for want of an engine, nor run on another engine than the build's.
    assert build["variables"]["MLOPS_REQUIRE_CONTAINER"] == "1"
    assert build["variables"]["MLOPS_CONTAINER_ENGINE"] == "podman"
    assert build["artifacts"]["reports"]["junit"] == "image-junit.xml"
    assert "image-digest.txt" in build["artifacts"]["paths"]


def test_build_job_builder_is_podman_in_the_pinned_python_image(ci: dict) -> None:
    build = _resolve(ci, ci["build-image"])
    assert "kaniko" not in yaml.safe_dump(ci).lower()  # the comments may say why not
    assert "image" not in build and "services" not in build  # $PYTHON_IMAGE; no docker:dind daemon
    script = _script(build)
    assert script[0] == "bash scripts/install_container_engine.sh"
    installer = (REPO_ROOT / "scripts" / "install_container_engine.sh").read_text()
    assert re.search(r"apt-get install .*\bpodman\b.*\brunc\b.*\bfuse-overlayfs\b", installer)
    variables = build["variables"]
    assert variables["STORAGE_DRIVER"] == "overlay"
    assert variables["STORAGE_OPTS"] == "overlay.mount_program=/usr/bin/fuse-overlayfs"
    # SageMaker refuses OCI manifests: built and pushed as Docker v2 schema 2.
    assert variables["BUILDAH_FORMAT"] == "docker"
    assert "podman push --format v2s2 " in script[_line(script, "podman push")]
    # The Dockerfile's pinned base, never this job's image nor image.sh's local fallback.
    assert variables["MLOPS_IMAGE_BASE"] == "official"
    assert "env -u PYTHON_IMAGE bash scripts/image.sh" in script[_line(script, "scripts/image.sh")]


def test_build_job_reaches_aws_only_through_oidc(ci: dict) -> None:
    build = _resolve(ci, ci["build-image"])
    assert build["id_tokens"]["GITLAB_OIDC_TOKEN"]["aud"] == "sts.amazonaws.com"
    assert build["variables"]["AWS_ROLE_ARN"] == "$DEV_DEPLOY_ROLE_ARN"
    assert build["variables"]["AWS_WEB_IDENTITY_TOKEN_FILE"] == "$CI_PROJECT_DIR/.gitlab-oidc-token"
    assert "build-image" in _pipeline(ci, MAIN_PUSH) and "build-image" not in _pipeline(ci, MERGE_REQUEST)
    assert not any(re.search(r"aws configure|--profile|credentials", line) for line in _script(build))


REPOSITORY = "111111111111.dkr.ecr.eu-west-1.amazonaws.com/mlops-stack-dev"
SHA = "0123456789abcdef0123456789abcdef01234567"
EXISTING, PUSHED = "sha256:" + "e" * 64, "sha256:" + "p" * 64
FAKE_AWS = r"""#!/usr/bin/env bash
echo "aws $*" >>"$CALLS"
[ -s "$AWS_WEB_IDENTITY_TOKEN_FILE" ] || { echo "Unable to locate credentials" >&2; exit 253; }
[ "$AWS_ROLE_ARN" = arn:aws:iam::111111111111:role/mlops-stack-dev-deploy ] || exit 253
case "$1 $2/$FAKE_ECR" in
  "ecr describe-images/exists") echo "$EXISTING" ;;
  "ecr describe-images/missing")
    echo "An error occurred (ImageNotFoundException) when calling the DescribeImages operation: no such tag" >&2
    exit 254 ;;
  "ecr describe-images/denied")
    echo "An error occurred (AccessDeniedException) when calling the DescribeImages operation: denied" >&2
    exit 254 ;;
  "ecr get-login-password/"*) echo ecr-password ;;
  *) echo "unexpected: aws $*" >&2; exit 2 ;;
esac
"""
FAKE_PODMAN = r"""#!/usr/bin/env bash
echo "podman $*" >>"$CALLS"
case "$1" in
  login) read -r password; [ "$password" = ecr-password ] || exit 125 ;;
  push) while [ $# -gt 0 ]; do [ "$1" = --digestfile ] && printf '%s' "$PUSHED" >"$2"; shift; done ;;
  *) exit 125 ;;
esac
"""


def _push(ci: dict, tmp_path: Path, ecr: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """The build job's script from the OIDC token on, as GitLab runs it, against fake aws and podman."""
    build = _resolve(ci, ci["build-image"])
    script = _script(build)
    tail = script[script.index(ci[".write-oidc-token"][0]):]
    bin_dir, project = tmp_path / "bin", tmp_path / "project"
    bin_dir.mkdir()
    project.mkdir()
    for name, text in (("aws", FAKE_AWS), ("podman", FAKE_PODMAN)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    calls = tmp_path / "calls"
    calls.touch()
    predefined = {"CI_PROJECT_DIR": str(project), "CI_COMMIT_SHA": SHA, "CI_PROJECT_ID": "7", "CI_JOB_ID": "42",
                  "DEV_ECR_REPOSITORY": REPOSITORY, "GITLAB_OIDC_TOKEN": "header.payload.signature",
                  "DEV_DEPLOY_ROLE_ARN": "arn:aws:iam::111111111111:role/mlops-stack-dev-deploy"}
    expand = lambda value: re.sub(r"\$\{?(\w+)\}?", lambda m: predefined.get(m[1], ""), str(value))  # noqa: E731
    env = {**predefined, **{k: expand(v) for k, v in {**ci["variables"], **build["variables"]}.items()},
           "PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "CALLS": str(calls), "FAKE_ECR": ecr,
           "EXISTING": EXISTING, "PUSHED": PUSHED, "MODEL_IMAGE": "localhost/mlops-stack-model:abcdef012345"}
    result = subprocess.run(["bash", "-eo", "pipefail", "-c", "\n".join(tail)], cwd=project, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    return result, calls.read_text().splitlines()


def test_push_of_a_new_commit_logs_in_with_the_role_and_pushes_the_tested_image(ci: dict, tmp_path: Path) -> None:
    result, calls = _push(ci, tmp_path, "missing")
    assert result.returncode == 0, result.stderr
    describe, *login, push = calls
    assert describe == (f"aws ecr describe-images --region eu-west-1 --repository-name mlops-stack-dev"
                        f" --image-ids imageTag={SHA} --query imageDetails[0].imageDigest --output text")
    assert sorted(login) == [  # the two ends of one pipe: either may log first
        "aws ecr get-login-password --region eu-west-1",
        "podman login --username AWS --password-stdin 111111111111.dkr.ecr.eu-west-1.amazonaws.com",
    ]
    assert push == (f"podman push --format v2s2 --digestfile image-digest.txt localhost/mlops-stack-model:abcdef012345"
                    f" {REPOSITORY}:{SHA}")
    assert (tmp_path / "project" / "image-digest.txt").read_text() == PUSHED
    assert (tmp_path / "project" / ".gitlab-oidc-token").read_text() == "header.payload.signature"


def test_push_is_skipped_when_the_commit_tag_exists(ci: dict, tmp_path: Path) -> None:
    """Tags are immutable: a retry of the same commit records the existing image and pushes nothing."""
    result, calls = _push(ci, tmp_path, "exists")
    assert result.returncode == 0, result.stderr
    assert [call.split()[:3] for call in calls] == [["aws", "ecr", "describe-images"]]
    assert (tmp_path / "project" / "image-digest.txt").read_text() == EXISTING
    assert f"{REPOSITORY}:{SHA} exists ({EXISTING}): not pushed again" in result.stdout


def test_push_fails_when_ecr_cannot_say_whether_the_tag_exists(ci: dict, tmp_path: Path) -> None:
    result, calls = _push(ci, tmp_path, "denied")
    assert result.returncode != 0
    assert "AccessDeniedException" in result.stderr
    assert not any(call.startswith("podman") for call in calls)
    assert not (tmp_path / "project" / "image-digest.txt").exists()

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from pulumi.runtime.config import set_all_config

from mlops.settings import (
    REPO_ROOT,
    SettingsError,
    check_cron,
    declared_keys,
    from_pulumi_config,
    load_stack,
    load_stack_file,
    pulumi_yaml_config,
    stack_names,
)


def test_repo_has_dev_and_prod_stacks() -> None:
    assert {"dev", "prod"} <= set(stack_names())


def test_every_stack_file_loads(stack: str) -> None:
    settings = load_stack(stack)
    assert settings.stack == stack
    assert settings.tags == {
        "project": "mlops-stack",
        "environment": stack,
        "owner": settings.owner,
        "managed-by": "pulumi",
    }


def test_pulumi_yaml_declares_exactly_the_settings_keys() -> None:
    project = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())
    assert project["name"] == "mlops-stack"
    assert project["main"] == "infra/"
    assert project["runtime"]["options"]["virtualenv"] == ".venv"
    assert project["config"] == pulumi_yaml_config()
    for key, declaration in project["config"].items():
        assert declaration["description"], key


def test_stacks_differ_by_data() -> None:
    dev, prod = load_stack("dev"), load_stack("prod")
    assert prod.protect_resources and not prod.force_destroy
    assert not dev.protect_resources and dev.force_destroy
    assert prod.account_id != dev.account_id
    assert prod.endpoint_min_capacity >= 2
    assert prod.capture_retention_days > dev.capture_retention_days


def test_prod_serves_what_dev_registers_so_they_share_a_region() -> None:
    """SageMaker serves only artifacts of the endpoint's region: prod pins dev's packages."""
    assert load_stack("prod").region == load_stack("dev").region


def test_a_pin_from_another_region_is_refused_before_anything_is_declared(tmp_path: Path) -> None:
    pin = "arn:aws:sagemaker:eu-west-1:111111111111:model-package/mlops-stack-dev/3"
    path = _write_stack(tmp_path, {"aws:region": "eu-central-1", "mlops-stack:approvedModelPackageArn": pin},
                        name="prod")
    with pytest.raises(SettingsError) as refused:
        load_stack_file(path)
    assert ("mlops-stack:approvedModelPackageArn: the package is in eu-west-1, stack prod deploys to eu-central-1"
            in str(refused.value))
    same = _write_stack(tmp_path, {"mlops-stack:approvedModelPackageArn": pin,
                                   "mlops-stack:approvedModelImageUri": DEV_IMAGE}, name="prod")
    assert load_stack_file(same).approved_model_package_arn == pin


DEV_PIN = "arn:aws:sagemaker:eu-west-1:111111111111:model-package/mlops-stack-dev/3"
DEV_IMAGE = "111111111111.dkr.ecr.eu-west-1.amazonaws.com/mlops-stack/dev/model:0123abc"


def test_a_pinned_stack_without_an_image_tag_names_the_pinned_image(tmp_path: Path) -> None:
    """Every serving stack monitors its endpoint: with no pipeline image of its own, the jobs run the package's."""
    cases = {
        "missing": ({"mlops-stack:approvedModelPackageArn": DEV_PIN},
                    "mlops-stack:approvedModelImageUri: empty, but mlops-stack:approvedModelPackageArn pins a package "
                    "and mlops-stack:imageTag is empty"),
        "another repository": ({"mlops-stack:approvedModelPackageArn": DEV_PIN,
                                "mlops-stack:approvedModelImageUri": DEV_IMAGE.replace("/dev/", "/prod/")},
                               "is not in 111111111111.dkr.ecr.eu-west-1.amazonaws.com/mlops-stack/dev/model, the "
                               "repository of the pinned package's stack dev"),
        "no pin": ({"mlops-stack:approvedModelImageUri": DEV_IMAGE},
                   "mlops-stack:approvedModelImageUri: set without a pinned mlops-stack package"),
        "not an image": ({"mlops-stack:approvedModelPackageArn": DEV_PIN, "mlops-stack:approvedModelImageUri": "x"},
                         "mlops-stack:approvedModelImageUri: 'x' is not an ECR image URI"),
    }
    for case, (changes, message) in cases.items():
        with pytest.raises(SettingsError) as refused:
            load_stack_file(_write_stack(tmp_path, {**changes, "mlops-stack:modelSourceAccountId": "111111111111"},
                                         name="prod"))
        assert message in str(refused.value), case
        assert len(refused.value.problems) == 1, (case, refused.value.problems)  # one line per fault

    pinned = load_stack_file(_write_stack(tmp_path, {"mlops-stack:approvedModelPackageArn": DEV_PIN,
                                                     "mlops-stack:approvedModelImageUri": DEV_IMAGE}, name="prod"))
    assert pinned.monitoring_image_uri == DEV_IMAGE
    by_digest = DEV_IMAGE.rsplit(":", 1)[0] + "@sha256:" + "ab" * 32
    assert dataclasses.replace(pinned, approved_model_image_uri=by_digest).monitoring_image_uri == by_digest
    own = dataclasses.replace(load_stack("dev"), image_tag="feed42", approved_model_package_arn=DEV_PIN)
    assert own.monitoring_image_uri == DEV_IMAGE.replace("0123abc", "feed42")  # the pipeline's image, with no pin image
    assert dataclasses.replace(own, approved_model_package_arn="", image_tag="").monitoring_image_uri == ""


def test_ci_protected_tag_is_a_literal_prefix_then_a_star(tmp_path: Path) -> None:
    for bad in ("*", "prod-*-x", "v1"):
        with pytest.raises(SettingsError, match="mlops-stack:ciProtectedTag: .* is not a literal tag prefix"):
            load_stack_file(_write_stack(tmp_path, {"mlops-stack:ciProtectedTag": bad}, name="prod"))
    assert load_stack_file(_write_stack(tmp_path, {"mlops-stack:ciProtectedTag": "prod-*"})).ci_protected_tag == "prod-*"


def test_a_malformed_pin_is_one_settings_error() -> None:
    with pytest.raises(SettingsError, match=r"approvedModelPackageArn: 'garbage' is not an ARN"):
        dataclasses.replace(load_stack("dev"), approved_model_package_arn="garbage")


def test_a_pin_from_an_account_the_deploy_role_cannot_read_is_refused(tmp_path: Path) -> None:
    stranger = "arn:aws:sagemaker:eu-west-1:333333333333:model-package/mlops-stack-dev/3"
    path = _write_stack(tmp_path, {"mlops-stack:approvedModelPackageArn": stranger,
                                   "mlops-stack:modelSourceAccountId": "111111111111"}, name="prod")
    with pytest.raises(SettingsError) as refused:
        load_stack_file(path)
    assert ("mlops-stack:approvedModelPackageArn: the package is in account 333333333333, which is neither stack "
            "prod's (111111111111) nor mlops-stack:modelSourceAccountId (111111111111)") in str(refused.value)


def _write_stack(tmp_path: Path, changes: dict, name: str = "dev") -> Path:
    config = yaml.safe_load((REPO_ROOT / "Pulumi.dev.yaml").read_text())["config"]
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    path = tmp_path / f"Pulumi.{name}.yaml"
    path.write_text(yaml.safe_dump({"config": config}))
    return path


BAD_VALUES = [
    ({"mlops-stack:promotionMinImprovement": "-0.01"}, "mlops-stack:promotionMinImprovement: '-0.01' is negative"),
    ({"mlops-stack:promotionMinImprovement": "a lot"}, "mlops-stack:promotionMinImprovement: 'a lot' is not a number"),
    (
        {"mlops-stack:endpointMaxCapacity": 1, "mlops-stack:endpointMinCapacity": 3},
        "mlops-stack:endpointMaxCapacity: 1 is below mlops-stack:endpointMinCapacity (3)",
    ),
    (
        {"mlops-stack:endpointMaxCapacty": 3},
        "mlops-stack:endpointMaxCapacty: unknown key (did you mean mlops-stack:endpointMaxCapacity?)",
    ),
    (
        {"mlops-stack:driftSchedule": "cron(0 * * * *)"},
        "mlops-stack:driftSchedule: 'cron(0 * * * *)' has 5 fields; AWS cron expressions have 6",
    ),
    (
        {"mlops-stack:driftSchedule": "0 * * * *"},
        "mlops-stack:driftSchedule: '0 * * * *' is not an AWS cron expression",
    ),
    (
        {"mlops-stack:driftSchedule": "cron(0 25 ? * * *)"},
        "mlops-stack:driftSchedule: 'cron(0 25 ? * * *)': hours field '25' is malformed",
    ),
    ({"mlops-stack:driftSchedule": "cron(0 1 * * * *)"}, "exactly one of day-of-month and day-of-week must be '?'"),
    (
        {"mlops-stack:trainingInstanceType": "m5.xlarge"},
        "mlops-stack:trainingInstanceType: 'm5.xlarge' is not a SageMaker instance type like ml.m5.large",
    ),
    (
        {"mlops-stack:approvedModelPackageArn": "arn:aws:s3:::bucket"},
        "mlops-stack:approvedModelPackageArn: 'arn:aws:s3:::bucket' is not an ARN of a sagemaker model-package",
    ),
    (
        {"mlops-stack:approvedModelPackageArn": "not-an-arn"},
        "mlops-stack:approvedModelPackageArn: 'not-an-arn' is not an ARN",
    ),
    ({"mlops-stack:forceDestroy": "yes"}, "mlops-stack:forceDestroy: 'yes' is not a boolean (true or false)"),
    ({"mlops-stack:endpointMinCapacity": "two"}, "mlops-stack:endpointMinCapacity: 'two' is not an integer"),
    ({"mlops-stack:kmsDeletionWindowDays": 3}, "mlops-stack:kmsDeletionWindowDays: 3 is outside 7..30"),
    ({"mlops-stack:evaluationMinMetric": "high"}, "mlops-stack:evaluationMinMetric: 'high' is not a number"),
    ({"mlops-stack:evaluationMinMetric": "1.5"},
     "mlops-stack:evaluationMinMetric: 1.5 is outside auc's range 0..1 (the primary metric of problems/adult)"),
    ({"mlops-stack:evaluationMinAuc": "0.8"},
     "mlops-stack:evaluationMinAuc: renamed to mlops-stack:evaluationMinMetric (a threshold on the problem's"),
    ({"mlops-stack:problem": "problems/none"}, "mlops-stack:problem: no problem.yaml: a problem is a folder"),
    ({"mlops-stack:problem": "problems/wine/problem.yaml"},
     "mlops-stack:problem: 'problems/wine/problem.yaml' is a file: name the problem's folder (problems/wine)"),
    ({"mlops-stack:owner": None}, "mlops-stack:owner: required key is missing"),
    (
        {"mlops-stack:gitlabProjectPath": "just-a-name"},
        "mlops-stack:gitlabProjectPath: 'just-a-name' is not a GitLab project path",
    ),
    (
        {"mlops-stack:mlflowServerSize": "Huge"},
        "mlops-stack:mlflowServerSize: 'Huge' is not one of Small, Medium, Large",
    ),
    ({"mlops-stack:alarmEmail": "oncall"}, "mlops-stack:alarmEmail: 'oncall' is not an email address"),
    ({"aws:region": "europe"}, "aws:region: 'europe' is not an AWS region like eu-west-1"),
    ({"aws:region": None}, "aws:region: required key is missing"),
    ({"aws:allowedAccountIds": ["1234"]}, "aws:allowedAccountIds: '1234' is not a 12-digit AWS account id"),
    ({"aws:allowedAccountIds": ["111111111111", "222222222222"]}, "must list exactly one account id"),
]


@pytest.mark.parametrize(("changes", "message"), BAD_VALUES, ids=[m[:40] for _, m in BAD_VALUES])
def test_bad_value_fails_with_one_line_naming_the_key(tmp_path: Path, changes: dict, message: str) -> None:
    path = _write_stack(tmp_path, changes)
    with pytest.raises(SettingsError) as caught:
        load_stack_file(path)
    assert len(caught.value.problems) == 1, caught.value.problems
    line = str(caught.value)
    assert line.startswith("Pulumi.dev.yaml: ")
    assert message in line


def test_all_problems_reported_together(tmp_path: Path) -> None:
    path = _write_stack(
        tmp_path,
        {"mlops-stack:owner": None, "mlops-stack:driftSchedule": "hourly", "mlops-stack:dataCapturePercent": 0},
    )
    with pytest.raises(SettingsError) as caught:
        load_stack_file(path)
    assert len(caught.value.problems) == 3


def test_bad_stack_file_shapes(tmp_path: Path) -> None:
    broken = tmp_path / "Pulumi.dev.yaml"
    broken.write_text("config: [unclosed\n")
    with pytest.raises(SettingsError, match=r"line \d+: not valid YAML"):
        load_stack_file(broken)
    with pytest.raises(SettingsError, match="stack file not found"):
        load_stack_file(tmp_path / "Pulumi.qa.yaml")
    empty = tmp_path / "Pulumi.qa.yaml"
    empty.write_text("encryptionsalt: x\n")
    with pytest.raises(SettingsError, match="no `config:` mapping"):
        load_stack_file(empty)
    bad_name = _write_stack(tmp_path, {}, name="Prod_EU")
    with pytest.raises(SettingsError, match="stack name 'Prod_EU'"):
        load_stack_file(bad_name)


@pytest.mark.parametrize(
    "expression",
    [
        "cron(0 * ? * * *)",
        "cron(0 */6 ? * * *)",
        "cron(15 10 ? * MON-FRI *)",
        "cron(0 12 1 * ? *)",
        "cron(0/15 8-17 ? * 2-6 *)",
        "cron(0 0 L * ? 2027)",
        "cron(30 2 ? JAN,JUL SUN#1 *)",
    ],
)
def test_valid_cron_expressions(expression: str) -> None:
    assert check_cron(expression) is None


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ("cron(60 * ? * * *)", "minutes field '60' is malformed"),
        ("cron(0 * 32 * ? *)", "day-of-month field '32' is malformed"),
        ("cron(0 * ? 13 * *)", "month field '13' is malformed"),
        ("cron(0 * ? * 8 *)", "day-of-week field '8' is malformed"),
        ("rate(1 hour)", "is not an AWS cron expression: expected cron(minutes hours day-of-month"),
        ("cron(* * ? * * * *)", "has 7 fields; AWS cron expressions have 6"),
        ("cron(0 * ? * MOON *)", "day-of-week field 'MOON' is malformed"),
        ("cron(0 * * * * *)", "exactly one of day-of-month and day-of-week must be '?'"),
    ],
)
def test_invalid_cron_expressions(expression: str, error: str) -> None:
    message = check_cron(expression)
    assert message is not None and message.startswith(repr(expression)) and error in message, message


def test_engine_config_and_stack_file_give_the_same_settings(stack: str) -> None:
    """Inside `pulumi up` the engine hands strings (JSON for lists); the result must be identical."""
    import json

    import pulumi

    config = yaml.safe_load((REPO_ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    set_all_config({k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()})
    pulumi.runtime.settings.reset_options(project="mlops-stack", stack=stack)
    try:
        assert from_pulumi_config() == load_stack(stack)
    finally:
        set_all_config({})


def test_settings_are_frozen() -> None:
    settings = load_stack("dev")
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.owner = "someone"  # type: ignore[misc]


def test_every_key_has_a_doc_and_a_camel_case_name() -> None:
    for key in declared_keys():
        assert key.doc.endswith((".", ")")), key.key
        assert key.key.startswith("mlops-stack:") and "_" not in key.key


def test_direct_construction_validates() -> None:
    base = load_stack("dev")
    with pytest.raises(SettingsError, match="endpointMaxCapacity: 1 is below"):
        dataclasses.replace(base, endpoint_min_capacity=2, endpoint_max_capacity=1)
    replaced = dataclasses.replace(base, endpoint_max_capacity=5)
    assert (base.endpoint_max_capacity, replaced.endpoint_max_capacity) == (2, 5)
    # only that field changed
    assert dataclasses.replace(replaced, endpoint_max_capacity=2) == base

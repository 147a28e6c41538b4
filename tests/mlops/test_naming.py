from __future__ import annotations

import re

import pytest

from mlops.naming import BUCKET_KINDS, LIMITS, Names, fit
from mlops.settings import StackSettings

LONG = Names(stack="integration-eu2", account_id="123456789012", region="ap-southeast-2")


def _all_names(names: Names) -> dict[str, tuple[str, str]]:
    """name -> (value, service) for every physical name a stack uses."""
    found = {f"bucket-{kind}": (names.bucket(kind), "s3") for kind in BUCKET_KINDS}
    found.update(
        {
            "kms_alias": (names.kms_alias, "kms-alias"),
            "ecr_repository": (names.ecr_repository, "ecr"),
            "execution_role": (names.execution_role, "iam-role"),
            "deploy_role": (names.deploy_role, "iam-role"),
            "mlflow_role": (names.mlflow_role, "iam-role"),
            "mlflow_server": (names.mlflow_server, "mlflow"),
            "model_package_group": (names.model_package_group, "sagemaker"),
            "pipeline": (names.pipeline, "sagemaker-pipeline"),
            "endpoint": (names.endpoint, "sagemaker"),
            "alarm_topic": (names.alarm_topic, "sns"),
            "metrics_namespace": (names.metrics_namespace, "cloudwatch"),
        }
    )
    return found


@pytest.mark.parametrize("names", [LONG, Names("dev", "111111111111", "eu-west-1")], ids=["long", "short"])
def test_every_name_respects_its_service_limits(names: Names) -> None:
    for label, (value, service) in _all_names(names).items():
        limit, allowed = LIMITS[service]
        assert len(value) <= limit, (label, value)
        assert allowed.match(value), (label, value)


def test_stack_names_from_files_fit(settings: StackSettings) -> None:
    names = Names.of(settings)
    for value, service in _all_names(names).values():
        assert len(value) <= LIMITS[service][0]
    assert names.bucket("data") == f"mlops-stack-{settings.stack}-data-{settings.account_id}-{settings.region}"


def test_bucket_names_are_unique_per_account_region_and_kind() -> None:
    a = Names("dev", "111111111111", "eu-west-1")
    b = Names("dev", "222222222222", "eu-west-1")
    c = Names("dev", "111111111111", "eu-central-1")
    buckets = {n.bucket(kind) for n in (a, b, c) for kind in BUCKET_KINDS}
    assert len(buckets) == 3 * len(BUCKET_KINDS)


def test_long_bucket_names_are_shortened_with_a_stable_hash() -> None:
    name = LONG.bucket("artifacts")
    assert len(name) <= 63
    assert re.search(r"-[0-9a-f]{8}$", name)
    # Pinned literal: a bucket name is a deployed resource's identity, so the hash must be the same in
    # every process, Python version and release (e.g. sha256, never the per-process salted hash()).
    assert name == "mlops-stack-integration-eu2-artifacts-123456789012-ap-9920cb5f"
    assert name != LONG.bucket("capture")


def test_fit_rejects_invalid_characters() -> None:
    with pytest.raises(ValueError, match="not a valid s3 name"):
        fit("Upper_Case", "s3")
    with pytest.raises(ValueError, match="unknown bucket kind"):
        LONG.bucket("scratch")


def test_fit_keeps_short_names() -> None:
    assert fit("mlops-stack-dev", "sagemaker") == "mlops-stack-dev"
    long = "x" * 100
    assert len(fit(long, "sagemaker")) == 63
    assert fit(long, "sagemaker") != fit("x" * 101, "sagemaker")


def test_drift_job_names_fit_sagemakers_limit_for_any_stack_name() -> None:
    """Scheduler appends '-<execution id>' (37 characters); the job name must stay within 63."""
    for stack in ("dev", "prod", "integration-eu2", "a" * 16):
        names = Names(stack, "123456789012", "eu-west-1")
        assert len(f"{names.drift_job_prefix}-{'0' * 36}") <= 63, stack
    assert Names("prod", "1" * 12, "eu-west-1").drift_job_prefix == "mlops-stack-prod-drift"

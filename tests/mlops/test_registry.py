"""mlops.registry against moto: list, approve, reject, latest approved, and their errors."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer

from mlops import registry
from mlops.registry import APPROVED, PENDING, REJECTED, Aws, ReleaseError
from mlops.settings import StackSettings
from tests.mlops.moto_aws import Registry, copy_stack_files, load, moto_aws


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    with moto_aws(monkeypatch) as aws:
        yield aws


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return copy_stack_files(tmp_path)


@pytest.fixture
def dev(files: dict[str, Path]) -> StackSettings:
    return load(files["dev"])


@pytest.fixture
def reg(dev: StackSettings, aws: Aws) -> Registry:
    return Registry(dev, aws)


def test_list_is_newest_first_with_status_time_metrics_and_lineage(dev: StackSettings, aws: Aws, reg: Registry):
    first = reg.register(0.81, APPROVED)
    second = reg.register(0.86, PENDING, f1="0.70")
    third = reg.register(0.79, REJECTED)

    packages = registry.list_packages(dev, aws=aws)

    assert [p.arn for p in packages] == [third, second, first]
    assert [p.status for p in packages] == [REJECTED, PENDING, APPROVED]
    assert [p.version for p in packages] == [3, 2, 1]
    newest = packages[1]
    assert newest.group == "mlops-stack-dev"
    assert isinstance(newest.created, datetime)
    assert newest.metrics == {"auc": 0.86, "f1": 0.70}
    assert newest.primary_metric == 0.86
    assert newest.lineage == {"mlflow_run_id": "run-1", "git_sha": "abc1234"}
    assert newest.evaluation_report_uri == "s3://artifacts/evaluation.json"
    assert newest.region == "eu-west-1"


def test_list_filters_by_status_and_limits(dev: StackSettings, aws: Aws, reg: Registry):
    reg.register(0.81, APPROVED)
    approved = reg.register(0.83, APPROVED)
    reg.register(0.86, PENDING)

    assert [p.arn for p in registry.list_packages(dev, status=APPROVED, limit=1, aws=aws)] == [approved]
    with pytest.raises(ReleaseError, match="status 'Approve' is not one of Approved, Rejected"):
        registry.list_packages(dev, status="Approve", aws=aws)


def test_list_without_group_names_group_and_stack(dev: StackSettings, aws: Aws):
    with pytest.raises(ReleaseError, match=r"model package group mlops-stack-dev of stack dev not found in eu-west-1"):
        registry.list_packages(dev, aws=aws)


def test_approve_sets_status_and_description_and_keeps_metadata(dev: StackSettings, aws: Aws, reg: Registry):
    arn = reg.register(0.88)

    change = registry.approve(dev, arn, description="looks good (alice)", aws=aws)

    assert change.changed and change.previous_status == PENDING
    assert change.package.status == APPROVED
    assert change.package.approval_description == "looks good (alice)"
    assert change.package.metrics["auc"] == 0.88  # moto resets omitted fields; the full state is re-sent
    assert registry.describe_package(arn, aws=aws).status == APPROVED
    again = registry.approve(dev, arn, aws=aws)
    assert not again.changed and again.package.status == APPROVED


def test_reject_needs_a_reason_and_records_it(dev: StackSettings, aws: Aws, reg: Registry):
    arn = reg.register(0.88, APPROVED)
    with pytest.raises(ReleaseError, match=f"rejecting model package {arn} needs a reason"):
        registry.reject(dev, arn, description="  ", aws=aws)

    change = registry.reject(dev, arn, description="leaks the label column", aws=aws)

    assert change.changed and change.previous_status == APPROVED
    assert change.package.status == REJECTED
    assert change.package.approval_description == "leaks the label column"
    assert change.package.lineage["git_sha"] == "abc1234"


def test_unknown_package_is_named(dev: StackSettings, aws: Aws, reg: Registry):
    reg.register(0.88)
    missing = reg.register(0.1).replace("/2", "/9")
    with pytest.raises(ReleaseError, match=f"model package {missing} not found \\(region eu-west-1\\)"):
        registry.approve(dev, missing, aws=aws)


def test_package_of_another_group_is_refused(files: dict[str, Path], dev: StackSettings, aws: Aws, reg: Registry):
    prod = load(files["prod"])
    prod_arn = Registry(prod, aws).register(0.9)
    with pytest.raises(
        ReleaseError,
        match=f"model package {prod_arn} belongs to group mlops-stack-prod in {prod.region}, "
        "not to stack dev's group mlops-stack-dev in eu-west-1",
    ):
        registry.approve(dev, prod_arn, aws=aws)

    sagemaker = aws.sagemaker(dev.region)
    sagemaker.create_model_package_group(ModelPackageGroupName="someone-elses-models")
    other = sagemaker.create_model_package(
        ModelPackageGroupName="someone-elses-models",
        InferenceSpecification={
            "Containers": [{"Image": "x"}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
    )["ModelPackageArn"]
    with pytest.raises(ReleaseError, match="belongs to group someone-elses-models"):
        registry.reject(dev, other, description="not ours", aws=aws)
    assert registry.describe_package(other, aws=aws).status != REJECTED


def test_malformed_arn_is_refused(dev: StackSettings, aws: Aws):
    with pytest.raises(ReleaseError, match="'mlops-stack-dev/3' is not a versioned model package ARN"):
        registry.approve(dev, "mlops-stack-dev/3", aws=aws)


def test_latest_approved_skips_newer_unapproved(dev: StackSettings, aws: Aws, reg: Registry):
    reg.register(0.80, APPROVED)
    latest = reg.register(0.82, APPROVED)
    reg.register(0.95, PENDING)
    reg.register(0.97, REJECTED)

    assert registry.latest_approved(dev, aws=aws).arn == latest


def test_no_approved_package_is_an_error(dev: StackSettings, aws: Aws, reg: Registry):
    reg.register(0.95, PENDING)
    with pytest.raises(ReleaseError, match="no approved model package in group mlops-stack-dev of stack dev"):
        registry.latest_approved(dev, aws=aws)


def test_non_numeric_metric_is_named(dev: StackSettings, aws: Aws, reg: Registry):
    arn = reg.register("high", APPROVED)
    with pytest.raises(ReleaseError, match=rf"model package {arn}: CustomerMetadataProperties\['auc'\] = 'high'"):
        registry.describe_package(arn, aws=aws)


def test_clients_honour_aws_endpoint_url(files: dict[str, Path], monkeypatch: pytest.MonkeyPatch):
    """Local mode: the same calls against a moto server reached through AWS_ENDPOINT_URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.delenv("AWS_PROFILE", raising=False)
        aws = Aws.from_env(max_attempts=1)
        assert aws.endpoint_url == f"http://{host}:{port}"
        dev = load(files["dev"])
        arn = Registry(dev, aws).register(0.9)

        assert registry.approve(dev, arn, aws=aws).package.status == APPROVED
        assert registry.latest_approved(dev).arn == arn  # default clients: Aws.from_env()
    finally:
        server.stop()

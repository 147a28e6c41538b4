"""mlops.release against moto: promote, rollback and verify, end to end, with their refusals."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto.sagemaker.models import sagemaker_backends

from mlops import registry, release
from mlops.registry import APPROVED, PENDING, REJECTED, Aws, ReleaseError
from mlops.release import IMAGE_KEY, PIN_KEY
from mlops.settings import StackSettings
from mlops.stack_files import write_setting
from tests.mlops.moto_aws import (
    IMAGE,
    RecordedScores,
    Registry,
    copy_stack_files,
    create_endpoint,
    deploy_config,
    load,
    moto_aws,
)

PAYLOAD = "39,State-gov,77516,Bachelors,13,Never-married,Adm-clerical,Not-in-family,White,Male,2174,0,40,United-States"
COMMENT = "  # pinned by `mlops release promote`; reviewed in a merge request\n"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    with moto_aws(monkeypatch) as aws:
        yield aws


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    copies = copy_stack_files(tmp_path)
    # A reviewer's comment above the pin and at the end of another line must survive promotion.
    text = copies["prod"].read_text()
    text = text.replace(f"  {PIN_KEY}:", f"{COMMENT}  {PIN_KEY}:")
    text = text.replace("mlops-stack:dataCapturePercent: 20\n", "mlops-stack:dataCapturePercent: 20  # 1 in 5\n")
    copies["prod"].write_text(text)
    return copies


@pytest.fixture
def dev(files: dict[str, Path]) -> StackSettings:
    return load(files["dev"])


@pytest.fixture
def reg(dev: StackSettings, aws: Aws) -> Registry:
    return Registry(dev, aws)


def changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    """Pairs of differing lines; both texts must have the same number of lines."""
    old, new = before.splitlines(keepends=True), after.splitlines(keepends=True)
    assert len(old) == len(new)
    return [(a, b) for a, b in zip(old, new, strict=True) if a != b]


# --- promote ---------------------------------------------------------------------------------------------


def test_first_promotion_rewrites_only_the_pin_and_image_lines(
    files: dict[str, Path], dev: StackSettings, aws: Aws, reg: Registry
):
    reg.register(0.90, APPROVED)
    arn = reg.register(0.91, APPROVED)
    reg.register(0.99, PENDING)
    before = files["prod"].read_text()

    change = release.promote(dev, files["prod"], aws=aws)

    after = files["prod"].read_text()
    assert changed_lines(before, after) == [(f'  {PIN_KEY}: ""\n', f'  {PIN_KEY}: "{arn}"\n'),
                                            (f'  {IMAGE_KEY}: ""\n', f'  {IMAGE_KEY}: "{IMAGE}"\n')]
    assert load(files["prod"]).monitoring_image_uri == IMAGE  # prod's drift and quality jobs run the package's
    assert COMMENT in after and "dataCapturePercent: 20  # 1 in 5\n" in after
    assert load(files["prod"]).approved_model_package_arn == arn
    assert (change.stack, change.old_arn, change.new_arn, change.changed) == ("prod", "", arn, True)
    assert (change.metric, change.old_metric, change.new_metric, change.forced) == ("auc", None, 0.91, False)
    assert f'+  {PIN_KEY}: "{arn}"' in change.diff and "a/Pulumi.prod.yaml" in change.diff
    assert registry.describe_package(arn, aws=aws).previous_pin("prod") is None


def test_promotion_to_a_stack_in_another_region_is_refused_and_writes_nothing(
    files: dict[str, Path], dev: StackSettings, aws: Aws, reg: Registry
):
    reg.register(0.91, APPROVED)
    files["prod"].write_text(files["prod"].read_text().replace("aws:region: eu-west-1", "aws:region: eu-central-1"))
    before = files["prod"].read_text()
    with pytest.raises(ReleaseError, match="stack prod deploys to eu-central-1, stack dev's models are in eu-west-1: "
                                           "SageMaker serves only artifacts of the endpoint's region"):
        release.promote(dev, files["prod"], aws=aws)
    assert files["prod"].read_text() == before


def test_promotion_adds_the_key_where_settings_declare_it(
    tmp_path: Path, files: dict[str, Path], dev: StackSettings, aws: Aws, reg: Registry
):
    staging = tmp_path / "Pulumi.staging.yaml"
    shutil.copyfile(files["dev"], staging)  # the dev layout has no pin key at all
    arn = reg.register(0.91, APPROVED)
    before = staging.read_text().splitlines(keepends=True)

    release.promote(dev, staging, aws=aws)

    after = staging.read_text().splitlines(keepends=True)
    position = before.index("  mlops-stack:dataCapturePercent: 100\n") + 1
    assert after == [*before[:position], f"  {PIN_KEY}: {arn}\n", f"  {IMAGE_KEY}: {IMAGE}\n", *before[position:]]


def test_better_model_replaces_the_pin_and_records_the_previous_one(
    files: dict[str, Path], dev: StackSettings, aws: Aws, reg: Registry
):
    first = reg.register(0.85, APPROVED)
    release.promote(dev, files["prod"], aws=aws)
    second = reg.register(0.88, APPROVED)
    before = files["prod"].read_text()

    change = release.promote(dev, files["prod"], aws=aws)

    assert changed_lines(before, files["prod"].read_text()) == [
        (f'  {PIN_KEY}: "{first}"\n', f'  {PIN_KEY}: "{second}"\n')
    ]
    assert (change.old_arn, change.old_metric, change.new_metric) == (first, 0.85, 0.88)
    promoted = registry.describe_package(second, aws=aws)
    assert promoted.previous_pin("prod") == first
    assert promoted.status == APPROVED and promoted.metrics["auc"] == 0.88  # the record keeps the rest


def test_promoting_the_pinned_package_again_changes_nothing(
    files: dict[str, Path], dev: StackSettings, aws: Aws, reg: Registry
):
    arn = reg.register(0.85, APPROVED)
    release.promote(dev, files["prod"], aws=aws)
    before = files["prod"].read_text()

    change = release.promote(dev, files["prod"], aws=aws)

    assert not change.changed and change.new_arn == arn and change.diff == ""
    assert files["prod"].read_text() == before


def test_a_model_worse_than_the_pin_on_the_same_data_is_refused(
    files: dict[str, Path], dev: StackSettings, aws: Aws, reg: Registry, scores: list[RecordedScores]
):
    pinned = reg.register(0.85, APPROVED)
    release.promote(dev, files["prod"], aws=aws)
    assert scores == []  # nothing pinned before: nothing to compare with
    candidate = reg.register(0.84, APPROVED)
    before = files["prod"].read_text()

    with pytest.raises(ReleaseError) as refused:
        release.promote(dev, files["prod"], aws=aws)

    [job] = scores[0].requests
    assert job["ProcessingJobName"].startswith("mlops-stack-dev-compare-")
    assert str(refused.value) == (
        f"model package {candidate} scores auc 0.8400 on its test split "
        "(s3://artifacts/pipelines/run-2/Preprocess/test), where stack prod's pinned "
        f"{pinned} scores 0.8500; promotion needs at least 0.8500 (promotionMinImprovement 0; comparison job "
        f"{job['ProcessingJobName']}); force to override"
    )
    assert files["prod"].read_text() == before
    forced = release.promote(dev, files["prod"], force=True, aws=aws)
    assert forced.forced and forced.same_data is None and load(files["prod"]).approved_model_package_arn == candidate


def test_a_tie_passes_and_promotion_min_improvement_raises_the_bar(
    files: dict[str, Path], dev: StackSettings, aws: Aws, reg: Registry
):
    reg.register(0.85, APPROVED)
    release.promote(dev, files["prod"], aws=aws)
    tie = reg.register(0.85, APPROVED)
    change = release.promote(dev, files["prod"], aws=aws)  # the pipeline's rule: >= champion + 0
    assert change.new_arn == tie and change.same_data is not None and change.same_data.passed
    write_setting(files["prod"], "mlops-stack:promotionMinImprovement", "0.02")
    reg.register(0.86, APPROVED)
    with pytest.raises(ReleaseError, match="promotion needs at least 0.8700 \\(promotionMinImprovement 0.02;"):
        release.promote(dev, files["prod"], aws=aws)


def test_a_candidate_without_a_recorded_test_split_cannot_be_compared(
    files: dict[str, Path], dev: StackSettings, aws: Aws, reg: Registry
):
    reg.register(0.85, APPROVED)
    release.promote(dev, files["prod"], aws=aws)
    old = reg.register(0.95, APPROVED, test_data_uri="")
    with pytest.raises(ReleaseError, match=f"model package {old} records no test_data_uri metadata: it cannot be "
                                           "scored against the target's model on the same data"):
        release.promote(dev, files["prod"], aws=aws)


def test_a_model_below_the_target_threshold_is_refused(
    files: dict[str, Path], dev: StackSettings, aws: Aws, reg: Registry
):
    arn = reg.register(0.78, APPROVED)  # clears dev's 0.75, not prod's 0.80
    with pytest.raises(ReleaseError, match=f"{arn} has auc 0.7800; stack prod's evaluationMinMetric asks at least 0.8000"):
        release.promote(dev, files["prod"], aws=aws)


def test_a_stack_serving_with_onnxruntime_takes_only_packages_with_an_onnx_export(
    files: dict[str, Path], dev: StackSettings, aws: Aws, reg: Registry
):
    write_setting(files["prod"], "mlops-stack:serveRuntime", "onnx")
    before = files["prod"].read_text()
    for recorded, shown in (({"onnx_export": "none"}, "none"), ({}, "not recorded")):
        arn = reg.register(0.91, APPROVED, **recorded)
        with pytest.raises(ReleaseError, match=f"stack prod serves with onnxruntime \\(serveRuntime: onnx, "
                                               f"Pulumi.prod.yaml\\), and model package {arn} has no ONNX export "
                                               f"\\(onnx_export: {shown}\\)"):
            release.promote(dev, files["prod"], aws=aws, force=True)  # not a quality judgement: force does not pass
        assert files["prod"].read_text() == before
    exported = reg.register(0.92, APPROVED, onnx_export="exported")
    assert release.promote(dev, files["prod"], aws=aws).new_arn == exported


def test_a_model_without_the_metric_is_refused(files: dict[str, Path], dev: StackSettings, aws: Aws, reg: Registry):
    arn = reg.register(None, APPROVED)
    with pytest.raises(ReleaseError, match=f"model package {arn} records no primary metric \\('primary_metric'\\) in "):
        release.promote(dev, files["prod"], aws=aws)


def test_promotion_without_an_approved_package_is_refused(
    files: dict[str, Path], dev: StackSettings, aws: Aws, reg: Registry
):
    reg.register(0.95, PENDING)
    before = files["prod"].read_text()
    with pytest.raises(ReleaseError, match="no approved model package in group mlops-stack-dev of stack dev"):
        release.promote(dev, files["prod"], aws=aws)
    assert files["prod"].read_text() == before


def test_promotion_of_another_groups_package_is_refused(
    files: dict[str, Path], dev: StackSettings, aws: Aws, reg: Registry
):
    prod_arn = Registry(load(files["prod"]), aws).register(0.99, APPROVED)
    with pytest.raises(ReleaseError, match=f"model package {prod_arn} belongs to group mlops-stack-prod"):
        release.promote(dev, files["prod"], package_arn=prod_arn, aws=aws)


def test_promotion_of_an_unapproved_package_is_refused(
    files: dict[str, Path], dev: StackSettings, aws: Aws, reg: Registry
):
    pending = reg.register(0.95, PENDING)
    with pytest.raises(ReleaseError, match=f"model package {pending} is PendingManualApproval; only Approved"):
        release.promote(dev, files["prod"], package_arn=pending, aws=aws)


def test_promotion_to_a_missing_stack_file_names_it(tmp_path: Path, dev: StackSettings, aws: Aws, reg: Registry):
    reg.register(0.9, APPROVED)
    missing = tmp_path / "Pulumi.qa.yaml"
    with pytest.raises(ReleaseError, match=f"{missing}: stack file not found"):
        release.promote(dev, missing, aws=aws)
    assert not missing.exists()


def test_a_round_trip_that_would_reformat_other_lines_writes_nothing(
    tmp_path: Path, dev: StackSettings, aws: Aws, reg: Registry, files: dict[str, Path]
):
    staging = tmp_path / "Pulumi.staging.yaml"
    staging.write_text(files["dev"].read_text().replace("owner: ml-platform", "owner:    ml-platform"))
    reg.register(0.9, APPROVED)
    before = staging.read_text()
    with pytest.raises(ReleaseError, match=r"Pulumi.staging.yaml: setting .* would also reformat line 6"):
        release.promote(dev, staging, aws=aws)
    assert staging.read_text() == before


# --- rollback --------------------------------------------------------------------------------------------


def test_rollback_restores_the_previous_pin_then_runs_out(
    files: dict[str, Path], dev: StackSettings, aws: Aws, reg: Registry
):
    first = reg.register(0.85, APPROVED)
    release.promote(dev, files["prod"], aws=aws)
    second = reg.register(0.90, APPROVED)
    release.promote(dev, files["prod"], aws=aws)
    before = files["prod"].read_text()

    change = release.rollback(files["prod"], aws=aws)

    assert (change.old_arn, change.new_arn, change.changed) == (second, first, True)
    assert changed_lines(before, files["prod"].read_text()) == [
        (f'  {PIN_KEY}: "{second}"\n', f'  {PIN_KEY}: "{first}"\n')
    ]
    with pytest.raises(ReleaseError, match=f"no previous pin of stack prod is recorded on its pinned package {first}"):
        release.rollback(files["prod"], aws=aws)


def test_rollback_of_an_onnx_stack_to_a_package_without_an_export_is_refused(
    files: dict[str, Path], dev: StackSettings, aws: Aws, reg: Registry
):
    first = reg.register(0.85, APPROVED)  # before serveRuntime onnx: no export recorded
    release.promote(dev, files["prod"], aws=aws)
    reg.register(0.90, APPROVED, onnx_export="exported")
    release.promote(dev, files["prod"], aws=aws)
    write_setting(files["prod"], "mlops-stack:serveRuntime", "onnx")
    before = files["prod"].read_text()
    with pytest.raises(ReleaseError, match=f"model package {first} has no ONNX export"):
        release.rollback(files["prod"], aws=aws, force=True)
    assert files["prod"].read_text() == before


def test_rollback_without_a_pin_is_refused(files: dict[str, Path], aws: Aws):
    with pytest.raises(ReleaseError, match=f"Pulumi.prod.yaml: {PIN_KEY} is empty: stack prod pins no package"):
        release.rollback(files["prod"], aws=aws)


def test_rollback_to_a_since_rejected_package_needs_force(
    files: dict[str, Path], dev: StackSettings, aws: Aws, reg: Registry
):
    first = reg.register(0.85, APPROVED)
    release.promote(dev, files["prod"], aws=aws)
    reg.register(0.90, APPROVED)
    release.promote(dev, files["prod"], aws=aws)
    registry.reject(dev, first, description="bias found", aws=aws)

    with pytest.raises(ReleaseError, match=f"stack prod's previous pin {first} is {REJECTED} now"):
        release.rollback(files["prod"], aws=aws)
    assert release.rollback(files["prod"], force=True, aws=aws).new_arn == first


def test_promotion_over_no_pin_clears_a_stale_record(
    files: dict[str, Path], dev: StackSettings, aws: Aws, reg: Registry
):
    first = reg.register(0.85, APPROVED)
    release.promote(dev, files["prod"], aws=aws)
    second = reg.register(0.90, APPROVED)
    release.promote(dev, files["prod"], aws=aws)
    assert registry.describe_package(second, aws=aws).previous_pin("prod") == first
    release.write_pin(files["prod"], "", "")  # someone unpins prod by hand
    release.promote(dev, files["prod"], aws=aws)  # second again, now over no pin

    assert registry.describe_package(second, aws=aws).previous_pin("prod") is None
    with pytest.raises(ReleaseError, match="no previous pin of stack prod"):
        release.rollback(files["prod"], aws=aws)


# --- verify ----------------------------------------------------------------------------------------------


def test_verify_passes_when_the_endpoint_serves_the_expected_package(dev: StackSettings, aws: Aws, reg: Registry):
    arn = reg.register(0.9, APPROVED)
    config = deploy_config(dev, aws, arn, "v1")
    endpoint = create_endpoint(dev, aws, config)

    # moto answers any invocation with canned data, so record what verify sent instead
    sent: list[dict] = []
    aws.client("sagemaker-runtime", dev.region).meta.events.register(
        "provide-client-params.sagemaker-runtime.InvokeEndpoint", lambda params, **_: sent.append(dict(params)))

    report = release.verify(dev, payload=PAYLOAD, aws=aws)  # dev pins nothing: the latest approved

    assert (report.endpoint, report.status, report.endpoint_config) == (endpoint, "InService", config)
    assert report.package_arn == arn and report.models == (f"{endpoint}-model-v1",)
    assert sent == [{"EndpointName": endpoint, "ContentType": "text/csv", "Body": PAYLOAD.encode()}]
    assert report.smoke_response == "body"  # moto's canned reply, passed through
    assert release.verify(dev, arn, payload=PAYLOAD, expected_endpoint_config=config, aws=aws).package_arn == arn


def test_verify_catches_a_rolled_back_deployment(dev: StackSettings, aws: Aws, reg: Registry):
    old = reg.register(0.85, APPROVED)
    new = reg.register(0.90, APPROVED)
    old_config = deploy_config(dev, aws, old, "v1")
    create_endpoint(dev, aws, old_config)
    new_config = deploy_config(dev, aws, new, "v2")  # deployed, then rolled back: the endpoint kept v1

    with pytest.raises(ReleaseError) as failed:
        release.verify(dev, new, payload=PAYLOAD, aws=aws)

    message = str(failed.value)
    assert f"serves model package {old} (endpoint config {old_config}" in message
    assert f"expected {new}" in message
    assert f"the newer endpoint config {new_config} serves {new} but is not in use" in message
    with pytest.raises(ReleaseError, match=f"runs endpoint config {old_config}, expected {new_config}"):
        release.verify(dev, old, payload=PAYLOAD, expected_endpoint_config=new_config, aws=aws)


def test_verify_names_both_packages_on_a_plain_mismatch(dev: StackSettings, aws: Aws, reg: Registry):
    running = reg.register(0.85, APPROVED)
    expected = reg.register(0.90, APPROVED)
    create_endpoint(dev, aws, deploy_config(dev, aws, running, "v1"))
    with pytest.raises(ReleaseError, match=f"serves model package {running} .*expected {expected}$"):
        release.verify(dev, payload=PAYLOAD, aws=aws)


def test_verify_fails_clearly_without_an_endpoint(dev: StackSettings, aws: Aws, reg: Registry):
    arn = reg.register(0.9, APPROVED)
    with pytest.raises(ReleaseError, match="endpoint mlops-stack-dev of stack dev not found in eu-west-1"):
        release.verify(dev, arn, payload=PAYLOAD, aws=aws)


def test_verify_refuses_an_endpoint_that_is_not_in_service(dev: StackSettings, aws: Aws, reg: Registry):
    arn = reg.register(0.9, APPROVED)
    endpoint = create_endpoint(dev, aws, deploy_config(dev, aws, arn, "v1"))
    # moto endpoints are always InService; set what SageMaker reports mid-deployment.
    backend = sagemaker_backends[dev.account_id][dev.region]
    backend.endpoints[endpoint].endpoint_status = "Updating"
    with pytest.raises(ReleaseError, match=f"endpoint {endpoint} of stack dev is Updating, not InService"):
        release.verify(dev, arn, payload=PAYLOAD, aws=aws)
    backend.endpoints[endpoint].endpoint_status = "Failed"
    with pytest.raises(ReleaseError, match="is Failed, not InService"):
        release.verify(dev, arn, payload=PAYLOAD, aws=aws)


def test_a_vanished_pinned_package_is_named(files: dict[str, Path], dev: StackSettings, aws: Aws, reg: Registry):
    arn = reg.register(0.9, APPROVED)
    gone = arn.replace("/1", "/7")
    release.write_pin(files["prod"], gone, IMAGE)
    with pytest.raises(
        ReleaseError, match=f"stack prod's pinned package \\(Pulumi.prod.yaml\\): model package {gone} not"
    ):
        release.promote(dev, files["prod"], aws=aws)
    with pytest.raises(
        ReleaseError, match=f"stack prod's pinned package \\(Pulumi.prod.yaml\\): model package {gone} not"
    ):
        release.rollback(files["prod"], aws=aws)
    assert release.promote(dev, files["prod"], force=True, aws=aws).new_arn == arn

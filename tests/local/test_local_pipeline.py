"""`mlops pipeline run --local`: the real definition, run by the local executor on the embedded AWS."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pandas as pd
import pytest

from mlops.local import aws as local_aws
from mlops.local.pipeline import list_runs, run_local
from mlops.local.tracking import store_uri as mlflow_uri
from mlops.naming import Names
from mlops.settings import StackSettings, load_stack
from model_code.validate import REPORT_NAME


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    state = tmp_path_factory.mktemp("state")
    yield state
    local_aws.stop(state)


@pytest.fixture(scope="module")
def dev() -> StackSettings:
    return load_stack("dev")


def _packages(state_dir: Path, settings: StackSettings) -> list[dict]:
    server = local_aws.running(state_dir)
    assert server is not None
    sagemaker = boto3.client("sagemaker", region_name=settings.region, endpoint_url=server.endpoint_url,
                             aws_access_key_id="local", aws_secret_access_key="local")
    group = Names.of(settings).model_package_group
    return sagemaker.list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"]


@pytest.fixture(scope="module")
def first_run(state_dir: Path, dev: StackSettings, sample: Path):
    return run_local(dev, state_dir=state_dir, data=sample)


def test_a_run_registers_the_model_in_the_registry_and_mlflow(first_run, state_dir: Path, dev: StackSettings) -> None:
    import mlflow

    assert first_run.status == "Succeeded", first_run.failure
    assert [s["name"] for s in first_run.steps] == ["CooldownGuard", "Validate", "Preprocess", "Train", "Evaluate",
                                                    "CompareChampion", "CheckTestMetric", "CheckChampion", "Register"]
    assert first_run.champion == {"model_package_arn": "", "status": "none", "champion": None,
                                  "challenger": first_run.metrics["auc"], "required": first_run.metrics["auc"],
                                  "passed": True}
    assert first_run.primary_metric == "auc" and first_run.metrics["auc"] >= dev.min_test_metric
    [package] = [p for p in _packages(state_dir, dev) if p["ModelPackageArn"] == first_run.package_arn]
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    server = local_aws.running(state_dir)
    assert server is not None
    sagemaker = boto3.client("sagemaker", region_name=dev.region, endpoint_url=server.endpoint_url,
                             aws_access_key_id="local", aws_secret_access_key="local")
    described = sagemaker.describe_model_package(ModelPackageName=first_run.package_arn)
    metadata = described["CustomerMetadataProperties"]
    assert float(metadata["auc"]) == pytest.approx(first_run.metrics["auc"])
    assert metadata["mlflow_run_id"] == first_run.mlflow_run_id
    assert metadata["drift_baseline_uri"].endswith("/baseline/baseline.json")
    assert metadata["test_data_uri"].endswith(f"/{first_run.execution_id}/Preprocess/test")
    assert {k: metadata[k] for k in metadata if k.startswith(("champion_", "promotion_"))} == {
        "champion_model_package_arn": "none", "champion_status": "none", "champion_auc": "none",
        "promotion_min_improvement": "0.0"}
    model_data = described["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    assert model_data.endswith(f"pipelines-{first_run.execution_id}-Train/output/model.tar.gz")

    client = mlflow.MlflowClient(mlflow_uri(state_dir))
    version = client.get_model_version(Names.of(dev).model_package_group, first_run.mlflow_model_version)
    assert version.tags["model_package_arn"] == first_run.package_arn
    assert client.get_run(first_run.mlflow_run_id).data.metrics["validation_auc"] > 0.7
    assert list_runs(state_dir)[0].execution_id == first_run.execution_id


def test_the_mlflow_model_version_loads_and_its_aliases_follow_the_registry(
        first_run, state_dir: Path, dev: StackSettings, sample: Path) -> None:
    import mlflow

    from mlops.local.aliases import sync_aliases
    from mlops.registry import Aws, approve

    group = Names.of(dev).model_package_group
    client = mlflow.MlflowClient(mlflow_uri(state_dir))
    run = client.get_run(first_run.mlflow_run_id)
    assert run.data.metrics["test_auc"] == pytest.approx(first_run.metrics["auc"])  # logged by Evaluate
    server = local_aws.running(state_dir)
    assert server is not None
    aws = Aws(endpoint_url=server.endpoint_url, max_attempts=1)

    def predict(model_uri: str) -> list[str]:
        """What a user runs: MLflow's loader in a fresh process, pointed at the store by MLFLOW_TRACKING_URI."""
        script = (
            "import sys, mlflow, pandas as pd\n"
            "rows = pd.read_csv(sys.argv[2], nrows=5).drop(columns=['income_gt_50k'])\n"
            "rows = rows.astype({c: float for c in rows.columns if pd.api.types.is_numeric_dtype(rows[c])})\n"
            "print(' '.join(map(str, mlflow.pyfunc.load_model(sys.argv[1]).predict(rows))))\n"
        )
        done = subprocess.run([sys.executable, "-c", script, model_uri, str(sample)], capture_output=True, text=True,
                              env={**os.environ, "MLFLOW_TRACKING_URI": mlflow_uri(state_dir)}, check=False,
                              cwd=state_dir, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.split()

    by_version = predict(f"models:/{group}/{first_run.mlflow_model_version}")
    assert len(by_version) == 5
    with local_aws.environment(server):
        approve(dev, first_run.package_arn, aws=aws)
        aliases = sync_aliases(dev, state_dir, aws)
    assert aliases["champion"] == first_run.mlflow_model_version
    assert "challenger" not in aliases or aliases["challenger"] != first_run.mlflow_model_version
    assert predict(f"models:/{group}@champion") == by_version
    # A restarted embedded AWS numbers packages from 1 again: the newest MLflow version of an ARN wins.
    source = client.get_model_version(group, first_run.mlflow_model_version).source
    newer = client.create_model_version(group, source, run_id=first_run.mlflow_run_id,
                                        tags={"model_package_arn": first_run.package_arn})
    with local_aws.environment(server):
        assert sync_aliases(dev, state_dir, aws)["champion"] == str(newer.version)


def test_same_data_and_seed_give_the_same_metrics_and_model(first_run, state_dir, dev, sample) -> None:
    second = run_local(dev, state_dir=state_dir, data=sample)
    assert second.status == "Succeeded"
    assert second.metrics == first_run.metrics
    assert second.lineage["model_sha256"] == first_run.lineage["model_sha256"] != ""
    assert second.package_arn != first_run.package_arn


def test_a_model_below_the_bar_is_not_registered(first_run, state_dir, dev, sample) -> None:
    strict = dataclasses.replace(dev, evaluation_min_metric="0.999")
    before = len(_packages(state_dir, dev))
    run = run_local(strict, state_dir=state_dir, data=sample)
    assert run.status == "Failed"
    assert [s["name"] for s in run.steps][-2:] == ["CheckTestMetric", "MetricBelowThreshold"]
    assert "test auc " in run.failure and "does not clear the threshold MinTestMetric=0.999 (higher is better)" \
        in run.failure
    assert run.package_arn == "" and len(_packages(state_dir, dev)) == before


def _bad(sample: Path, tmp_path: Path, kind: str) -> Path:
    frame = pd.read_csv(sample)
    path = tmp_path / f"{kind}.csv"
    if kind == "missing-column":
        frame.drop(columns=["age"]).to_csv(path, index=False)
    elif kind == "wrong-type":
        frame.assign(hours_per_week="many").to_csv(path, index=False)
    elif kind == "nan-in-required":
        frame.loc[::3, "age"] = None
        frame.to_csv(path, index=False)
    elif kind == "empty-file":
        path.write_text("")
    elif kind == "header-only":
        path.write_text(",".join(frame.columns) + "\n")
    return path


@pytest.mark.parametrize(("kind", "check", "column", "message"), [
    ("missing-column", "columns", None, "missing column(s) ['age']; expected ["),
    ("wrong-type", "type", "hours_per_week", "column 'hours_per_week' must be numeric (int); 4000 non-numeric"),
    ("nan-in-required", "missing", "age", "column 'age' is missing in 1334 row(s) (33.35%, exceeds the allowed"),
    ("empty-file", "input", None, "cannot be read as CSV"),
    ("header-only", "row_count", None, "0 row(s), fewer than the minimum 1000"),
], ids=["missing-column", "wrong-type", "nan-in-required", "empty-file", "header-only"])
def test_a_bad_dataset_stops_at_validate_and_registers_nothing(first_run, state_dir, dev, sample, tmp_path, kind,
                                                               check, column, message) -> None:
    import mlflow

    before = len(_packages(state_dir, dev))
    client = mlflow.MlflowClient(mlflow_uri(state_dir))
    versions_before = len(client.search_model_versions(f"name = '{Names.of(dev).model_package_group}'"))

    run = run_local(dev, state_dir=state_dir, data=_bad(sample, tmp_path, kind))

    assert run.status == "Failed"
    assert [(s["name"], s["status"]) for s in run.steps] == [("CooldownGuard", "Succeeded"), ("Validate", "Failed")]
    # the report validate wrote in its (container-mapped) output folder names the failed check
    report_path = (state_dir / "runs" / run.execution_id / "steps" / "Validate" / "opt" / "ml" / "processing" /
                   "output" / "report" / REPORT_NAME)
    report = json.loads(report_path.read_text())
    assert report["status"] == "failed"
    found = [(v["check"], v["column"]) for v in report["violations"]]
    assert found == [(check, column)], report["violations"]
    assert message in report["violations"][0]["message"]
    assert len(_packages(state_dir, dev)) == before
    assert len(client.search_model_versions(f"name = '{Names.of(dev).model_package_group}'")) == versions_before


def test_missing_data_path_is_refused(state_dir, dev, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file"):
        run_local(dev, state_dir=state_dir, data=tmp_path / "nope.csv")


def _clients(state_dir: Path, settings: StackSettings) -> tuple:
    """(sagemaker, s3) clients of the embedded AWS."""
    server = local_aws.running(state_dir)
    assert server is not None
    clients = {"region_name": settings.region, "endpoint_url": server.endpoint_url,
               "aws_access_key_id": "local", "aws_secret_access_key": "local"}
    return boto3.client("sagemaker", **clients), boto3.client("s3", **clients)


def _set_status(state_dir: Path, arn: str, status: str) -> None:
    """UpdateModelPackage as mlops.registry makes it: the metadata re-sent (moto drops what a call leaves out)."""
    from mlops.registry import Aws, describe_package, update_package

    server = local_aws.running(state_dir)
    assert server is not None
    aws = Aws(endpoint_url=server.endpoint_url, max_attempts=1)
    with local_aws.environment(server):
        update_package(describe_package(arn, aws=aws), status=status, aws=aws)


def _relabel_by(run, state_dir: Path, settings: StackSettings, sample: Path, path: Path) -> None:
    """The sample, labelled with the decisions of `run`'s model: that model scores AUC 1 on any split of it."""
    from model_code.model import decide, load_model

    sagemaker, s3 = _clients(state_dir, settings)
    model_data = sagemaker.describe_model_package(
        ModelPackageName=run.package_arn)["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    bucket, key = model_data.removeprefix("s3://").split("/", 1)
    s3.download_file(bucket, key, str(path.with_name("model.tar.gz")))
    model = load_model(path.with_name("model.tar.gz"))
    rows = pd.read_csv(sample)
    features = rows[model.schema.feature_names].astype(
        {c: float for c in model.schema.feature_names if pd.api.types.is_numeric_dtype(rows[c])})
    rows[model.schema.label] = decide(model.output(features), model.task, model.threshold)
    rows.to_csv(path, index=False)


def test_a_challenger_better_on_its_own_split_but_worse_than_the_champion_on_the_same_data_is_not_registered(
        first_run, state_dir: Path, dev: StackSettings, sample: Path, tmp_path: Path) -> None:
    """The champion labels a copy of the sample itself; a weak challenger trained on those labels scores a higher
    AUC on its own split than the champion did on its split, yet lower than the champion on the challenger's."""
    _set_status(state_dir, first_run.package_arn, "Approved")
    _relabel_by(first_run, state_dir, dev, sample, tmp_path / "relabelled.csv")
    before = len(_packages(state_dir, dev))

    run = run_local(dev, state_dir=state_dir, data=tmp_path / "relabelled.csv", parameters={"gbm__max_iter": "2"})
    assert run.status == "Failed", run.failure
    assert [s["name"] for s in run.steps][-2:] == ["CheckChampion", "ChampionNotBeaten"]
    assert run.metrics["auc"] > first_run.metrics["auc"]  # better than the champion's own test AUC ...
    verdict = run.champion
    assert verdict["model_package_arn"] == first_run.package_arn and verdict["status"] == "scored"
    assert verdict["challenger"] == pytest.approx(run.metrics["auc"])  # ... but worse on the same split
    assert verdict["champion"] > verdict["challenger"] and verdict["passed"] is False
    assert f"challenger auc {run.metrics['auc']}" in run.failure and first_run.package_arn in run.failure
    assert run.package_arn == "" and len(_packages(state_dir, dev)) == before


def test_release_promote_rescores_the_pinned_model_on_the_candidates_split_and_refuses_a_worse_one(
        first_run, state_dir: Path, dev: StackSettings, sample: Path, tmp_path: Path) -> None:
    """The same challenger, registered while the group had no champion: its recorded AUC beats the pinned model's
    recorded AUC (what promote compared before), yet `mlops release promote` (the installed entry point, local mode:
    the comparison job in the image) scores the pinned model higher on the challenger's split and refuses."""
    import shutil

    from mlops.registry import Aws, describe_package
    from mlops.release import write_pin
    from tests.mlops.moto_aws import copy_stack_files

    server = local_aws.running(state_dir)
    assert server is not None
    champion = first_run.package_arn
    _relabel_by(first_run, state_dir, dev, sample, tmp_path / "relabelled.csv")
    _set_status(state_dir, champion, "Rejected")
    try:
        challenger_run = run_local(dev, state_dir=state_dir, data=tmp_path / "relabelled.csv",
                                   parameters={"gbm__max_iter": "2"})
    finally:
        _set_status(state_dir, champion, "Approved")
    assert challenger_run.status == "Succeeded", challenger_run.failure
    assert challenger_run.champion["status"] == "none"
    challenger = challenger_run.package_arn
    _set_status(state_dir, challenger, "Approved")
    aws = Aws(endpoint_url=server.endpoint_url, max_attempts=1)
    with local_aws.environment(server):
        recorded = [describe_package(arn, aws=aws).primary_metric for arn in (challenger, champion)]
    assert recorded[0] is not None and recorded[1] is not None and recorded[0] > recorded[1]

    root = tmp_path / "repo"
    root.mkdir()
    files = copy_stack_files(root)
    shutil.copyfile(Path(__file__).resolve().parents[2] / "Pulumi.yaml", root / "Pulumi.yaml")
    with local_aws.environment(server):
        write_pin(files["prod"], champion, describe_package(champion, aws=aws).image)
    before = files["prod"].read_text()
    mlops = Path(sys.executable).with_name("mlops")
    environment = {**os.environ, **server.environment(), "MLOPS_STATE_DIR": str(state_dir)}
    done = subprocess.run([str(mlops), "release", "promote", "--from", "dev", "--to", "prod", "--package", challenger,
                           "--root", str(root)], capture_output=True, text=True, env=environment, timeout=600,
                          check=False)
    assert done.returncode == 2, done.stdout + done.stderr  # a refused release, as the CLI's other refusals
    message = done.stderr.strip()
    assert message.startswith(f"error: model package {challenger} scores auc ") and f"where stack prod's pinned {champion}" \
        in message and "force to override" in message
    assert challenger_run.lineage and f"{challenger_run.execution_id}/Preprocess/test" in message
    assert files["prod"].read_text() == before
    [report] = (state_dir / "promotions").glob("*/steps/ComparisonJob/opt/ml/processing/output/comparison/comparison.json")
    verdict = json.loads(report.read_text())
    assert verdict["champion"]["model_package_arn"] == champion and verdict["passed"] is False
    assert verdict["champion"]["value"] > verdict["challenger"]["value"]

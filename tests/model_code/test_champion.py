"""The champion comparison step: the group's champion scored on the challenger's test split (moto registry)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from model_code.champion import INCOMPARABLE, NONE, SCORED, main
from model_code.data import write_csv
from model_code.evaluate import score_split
from model_code.model import load_model
from pipelines.champion import METADATA_KEYS
from problems.adult.synthetic import synthesize
from tests.model_code.conftest import REPO, run_step

GROUP = "mlops-stack-dev"


def _train(root: Path, rows: int, max_iter: str, seed: int) -> Path:
    from model_code.train import TrainPaths, resolve_hyperparameters, train

    write_csv(synthesize(rows, seed=seed), root / "train" / "train.csv")
    write_csv(synthesize(600, seed=seed + 1), root / "validation" / "validation.csv")
    hp = resolve_hyperparameters({"max_iter": max_iter, "permutation_repeats": "1"})
    train(TrainPaths(root / "train", root / "validation", root / "model", root / "out", root / "hp.json"), hp,
          environ={})
    return root / "model"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A strong and a weak adult model, and a test split neither was trained on."""
    root = tmp_path_factory.mktemp("champion")
    write_csv(synthesize(1500, seed=99), root / "test" / "test.csv")
    return {"strong": _train(root / "strong", 3000, "40", 5), "weak": _train(root / "weak", 200, "2", 7),
            "test": root / "test"}


def _register(sagemaker: Any, s3: Any, model_dir: Path, work: Path, status: str) -> str:
    """A package of `model_dir` in the group (model.tar.gz in S3, as SageMaker's training job leaves it)."""
    archive_path = work / f"{len(list(work.glob('*.tar.gz')))}.tar.gz"
    with tarfile.open(archive_path, "w:gz") as archive:
        archive.add(model_dir / "model.joblib", arcname="model.joblib")
    key = f"runs/{archive_path.name}"
    s3.upload_file(str(archive_path), "artifacts", key)
    return sagemaker.create_model_package(
        ModelPackageGroupName=GROUP, ModelApprovalStatus=status,
        InferenceSpecification={"Containers": [{"Image": "1.dkr.ecr.us-east-1.amazonaws.com/m:1",
                                                "ModelDataUrl": f"s3://artifacts/{key}"}],
                                "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]},
    )["ModelPackageArn"]


@pytest.fixture()
def registry(aws, tmp_path: Path) -> tuple[Any, Any, Path]:
    import boto3

    sagemaker, s3 = boto3.client("sagemaker"), boto3.client("s3")
    s3.create_bucket(Bucket="artifacts")
    sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
    return sagemaker, s3, tmp_path


def _compare(models: dict[str, Path], out: Path, challenger: str = "weak", *extra: str) -> dict[str, Any]:
    code = main(["--model", str(models[challenger]), "--test", str(models["test"]), "--region", "us-east-1",
                 "--output", str(out), *(extra or ("--champion-group", GROUP))])
    assert code == 0
    return json.loads((out / "comparison.json").read_text())


def test_the_champion_is_scored_on_the_challengers_split_and_decides(models, registry, capsys) -> None:
    sagemaker, s3, work = registry
    champion_arn = _register(sagemaker, s3, models["strong"], work, "Approved")
    _register(sagemaker, s3, models["weak"], work, "PendingManualApproval")  # newer, not approved: not the champion

    report = _compare(models, work / "out", "weak", "--champion-group", GROUP, "--min-improvement", "0.01")
    strong = score_split(load_model(models["strong"]), models["test"]).values["auc"]
    weak = score_split(load_model(models["weak"]), models["test"]).values["auc"]
    assert weak < strong
    assert report["champion"] | {"metrics": None} == {"model_package_arn": champion_arn, "status": SCORED,
                                                      "value": strong, "metrics": None, "reason": ""}
    assert report["champion"]["metrics"]["auc"] == strong and report["challenger"]["value"] == weak
    assert report["required"] == pytest.approx(strong + 0.01) and report["passed"] is False
    assert report["test_data"]["rows"] == 1500
    assert report["metadata"] == {"champion_model_package_arn": champion_arn, "champion_auc": repr(strong),
                                  "champion_status": SCORED, "promotion_min_improvement": "0.01"}
    assert f"challenger {weak:.4f}, champion {strong:.4f}" in capsys.readouterr().out

    better = _compare(models, work / "out2", "strong", "--champion-package", champion_arn)
    assert better["passed"] is True and better["required"] == strong  # a tie passes at min improvement 0


def test_the_newest_approved_package_is_the_champion(models, registry) -> None:
    sagemaker, s3, work = registry
    _register(sagemaker, s3, models["strong"], work, "Approved")
    newest = _register(sagemaker, s3, models["weak"], work, "Approved")
    report = _compare(models, work / "out", "strong")
    assert report["champion"]["model_package_arn"] == newest and report["passed"] is True


def test_without_an_approved_package_the_challenger_passes_and_says_why(models, registry) -> None:
    sagemaker, s3, work = registry
    _register(sagemaker, s3, models["strong"], work, "Rejected")
    report = _compare(models, work / "out")
    assert report["champion"]["status"] == NONE and report["champion"]["value"] is None
    assert report["required"] == report["challenger"]["value"] and report["passed"] is True
    assert report["metadata"]["champion_auc"] == "none" and report["metadata"]["champion_model_package_arn"] == "none"


def test_a_champion_of_another_problem_is_incomparable_not_a_crash(models, registry, tmp_path_factory) -> None:
    sagemaker, s3, work = registry
    problem, root = REPO / "problems" / "wine", tmp_path_factory.mktemp("wine")
    assert run_step("preprocess", "--problem", str(problem), "--input", str(problem / "data.csv"),
                    "--output", str(root / "data")).returncode == 0
    trained = run_step("train", "--problem", str(problem), "--candidate", "linear", "--train",
                       str(root / "data" / "train"), "--validation", str(root / "data" / "validation"),
                       "--model-dir", str(root / "model"), "--output-data-dir", str(root / "out"),
                       "--hyperparameters", str(root / "none.json"))
    assert trained.returncode == 0, trained.stderr
    _register(sagemaker, s3, root / "model", work, "Approved")
    report = _compare(models, work / "out")
    assert report["champion"]["status"] == INCOMPARABLE and report["passed"] is True
    assert "optimises" in report["champion"]["reason"] or "cannot score" in report["champion"]["reason"]


def test_the_metadata_keys_are_the_ones_the_pipeline_registers(models, registry) -> None:
    report = _compare(models, registry[2] / "out")
    assert set(report["metadata"]) == {*METADATA_KEYS, "champion_auc"}


def test_bad_arguments_and_an_unknown_package_exit_1_with_one_line(models, registry, capsys) -> None:
    base = ["--model", str(models["weak"]), "--test", str(models["test"]), "--region", "us-east-1",
            "--output", str(registry[2] / "out")]
    assert main([*base, "--champion-group", GROUP, "--min-improvement", "-0.1"]) == 1
    assert "--min-improvement must be >= 0" in capsys.readouterr().err
    missing = "arn:aws:sagemaker:us-east-1:123456789012:model-package/mlops-stack-dev/9"
    assert main([*base, "--champion-package", missing]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("champion failed:") and len(err.splitlines()) == 1
    assert not (registry[2] / "out" / "comparison.json").exists()

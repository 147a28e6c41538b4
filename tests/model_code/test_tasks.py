"""Multiclass and regression through the steps' command lines and a real server: the problems that ship
beside the Adult census (wine, diabetes), with no platform edit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from model_code.model import load_model
from model_code.problem import load_problem
from tests.model_code.conftest import REPO, run_step
from tests.model_code.test_serve import Server, start_server

PROBLEMS = REPO / "problems"


def pipeline_steps(name: str, root: Path) -> Path:
    """validate, preprocess, train (with SageMaker's channel paths), evaluate: each as its container runs it."""
    problem = PROBLEMS / name
    sample = load_problem(problem).sample_path
    flag = ["--problem", str(problem)]
    for args in (("validate", "--input", str(sample), "--output", str(root / "report")),
                 ("preprocess", "--input", str(sample), "--output", str(root / "data")),
                 ("train", "--train", str(root / "data" / "train"), "--validation", str(root / "data" / "validation"),
                  "--model-dir", str(root / "model"), "--output-data-dir", str(root / "out"),
                  "--hyperparameters", str(root / "none.json")),
                 ("evaluate", "--model", str(root / "model"), "--test", str(root / "data" / "test"),
                  "--output", str(root / "evaluation"))):
        step = run_step(*args, *(flag if args[0] != "evaluate" else ()))  # evaluate reads it from the model
        assert step.returncode == 0, (args[0], step.stderr)
    return root


@pytest.fixture(scope="module")
def wine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pipeline_steps("wine", tmp_path_factory.mktemp("wine"))


@pytest.fixture(scope="module")
def diabetes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pipeline_steps("diabetes", tmp_path_factory.mktemp("diabetes"))


def test_multiclass_selects_among_candidates_by_cross_validation(wine: Path) -> None:
    summary = json.loads((wine / "out" / "metrics.json").read_text())
    selection = summary["selection"]
    assert selection["metric"] == "balanced_accuracy" and selection["folds"] == 3
    assert set(selection["candidates"]) == {"gbm", "forest", "linear", "knn"}  # knn: the module's estimator
    best = max(selection["candidates"].items(), key=lambda kv: kv[1]["mean"])[0]
    assert selection["chosen"] == best and summary["hyperparameters"]["candidate"] == best
    report = json.loads((wine / "evaluation" / "evaluation.json").read_text())
    assert report["task"] == "multiclass" and report["primary_metric"]["name"] == "balanced_accuracy"
    assert report["primary_metric"]["value"] == report["metrics"]["balanced_accuracy"]["value"] > 0.85
    matrix = report["multiclass_classification_metrics"]["confusion_matrix"]
    assert sum(v for row in matrix.values() for v in row.values()) == report["metrics"]["rows"]["value"] == 27
    assert {"auc_ovr", "f1_macro", "log_loss", "accuracy"} <= set(report["metrics"])
    assert "roc" not in report["plots"] and (wine / "evaluation" / report["plots"]["confusion_matrix"]).is_file()


def test_the_splits_keep_the_declared_class_values(wine: Path) -> None:
    train = pd.read_csv(wine / "data" / "train" / "train.csv")
    assert set(train["cultivar"]) == {"class_0", "class_1", "class_2"}
    baseline = json.loads((wine / "data" / "baseline" / "baseline.json").read_text())
    assert set(baseline["label"]["shares"]) == {"class_0", "class_1", "class_2"}


def test_regression_reports_lower_is_better_metrics(diabetes: Path) -> None:
    report = json.loads((diabetes / "evaluation" / "evaluation.json").read_text())
    assert report["task"] == "regression"
    assert report["primary_metric"] == {"name": "rmse", "direction": "lower",
                                        "value": report["metrics"]["rmse"]["value"]}
    assert 30 < report["metrics"]["rmse"]["value"] < 70  # a mean-only predictor scores about 77
    assert report["regression_metrics"]["mse"]["value"] == pytest.approx(report["metrics"]["rmse"]["value"] ** 2)
    assert report["confusion_matrix"] is None and "predicted_vs_actual" in report["plots"]
    model = load_model(diabetes / "model")
    assert model.task == "regression" and model.artifact["prediction_baseline"]["task"] == "regression"


def test_a_regression_label_outside_its_declared_range_stops_validate(tmp_path: Path) -> None:
    frame = pd.read_csv(PROBLEMS / "diabetes" / "data.csv")
    frame.loc[3, "progression"] = 999
    frame.to_csv(tmp_path / "bad.csv", index=False)
    step = run_step("validate", "--problem", str(PROBLEMS / "diabetes"), "--input", str(tmp_path / "bad.csv"),
                    "--output", str(tmp_path / "report"))
    assert step.returncode == 1
    report = json.loads((tmp_path / "report" / "validation_report.json").read_text())
    [violation] = report["violations"]
    assert violation["check"] == "label" and violation["rows"] == [3] and "within [0.0, 400.0]" in violation["message"]


@pytest.fixture(scope="module")
def wine_server(wine: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(wine / "model", tmp_path_factory.mktemp("serve-wine"))
    yield server
    assert server.stop() == 0


@pytest.fixture(scope="module")
def diabetes_server(diabetes: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(diabetes / "model", tmp_path_factory.mktemp("serve-diabetes"))
    yield server
    assert server.stop() == 0


def _rows(name: str, n: int) -> pd.DataFrame:
    problem = load_problem(PROBLEMS / name)
    assert problem.sample_path is not None
    return pd.read_csv(problem.sample_path, dtype=str).head(n)[problem.schema.feature_names]


def test_multiclass_serving_answers_probabilities_and_the_label(wine: Path, wine_server: Server) -> None:
    rows = _rows("wine", 5)
    status, ctype, body = wine_server.invoke(json.dumps(rows.to_dict(orient="records")), "application/json")
    assert status == 200 and ctype == "application/json"
    predictions = json.loads(body)["predictions"]
    expected = load_model(wine / "model").output(rows)
    for p, probs in zip(predictions, expected, strict=True):
        assert list(p["probabilities"]) == ["class_0", "class_1", "class_2"]
        assert np.allclose(list(p["probabilities"].values()), probs, atol=1e-12)
        assert p["label"] == f"class_{int(np.argmax(probs))}" and p["score"] == pytest.approx(probs.max())
    status, ctype, body = wine_server.invoke(rows.to_csv(index=False, header=False))
    assert status == 200 and body.decode().split() == [p["label"] for p in predictions]


def test_regression_serving_answers_a_value(diabetes: Path, diabetes_server: Server) -> None:
    rows = _rows("diabetes", 4)
    status, _, body = diabetes_server.invoke(rows.to_csv(index=False, header=False))
    values = [float(v) for v in body.decode().split()]
    assert status == 200 and np.allclose(values, load_model(diabetes / "model").output(rows), atol=1e-9)
    status, _, body = diabetes_server.invoke(json.dumps(rows.to_dict(orient="records")), "application/json")
    assert status == 200 and [p["value"] for p in json.loads(body)["predictions"]] == pytest.approx(values)
    status, _, body = diabetes_server.invoke("59,3,32.1,101,157,93.2,38,4,4.8598,87\n")  # sex 3: no such category
    assert status == 400 and json.loads(body)["errors"][0]["field"] == "sex"
    status, _, body = diabetes_server.invoke("59,2,32.1,101,157,93.2,38,4,4.8598\n")
    assert status == 400 and json.loads(body)["status"] == 400


def _drift(root: Path, model: Path, baseline: Path) -> dict:
    from datetime import UTC, datetime, timedelta

    start = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:00:00Z")
    step = run_step("drift", "--input", str(root / "capture"), "--baseline", str(baseline), "--model", str(model),
                    "--output", str(root / "drift"), "--start", start, "--hours", "3", "--workers", "1")
    assert step.returncode == 0, step.stderr
    return json.loads((root / "drift" / "drift_report.json").read_text())


def _captured_server(model: Path, root: Path) -> Server:
    return start_server(model, root, MLOPS_CAPTURE_DIR=str(root / "capture"))


def test_multiclass_prediction_drift_compares_the_predicted_classes(wine: Path, tmp_path: Path) -> None:
    """Traffic of one cultivar only: the predicted classes' shares move away from the validation split's."""
    frame = pd.read_csv(PROBLEMS / "wine" / "data.csv", dtype=str)
    one_class = frame[frame["cultivar"] == "class_0"].drop(columns="cultivar")
    server = _captured_server(wine / "model", tmp_path)
    try:
        for _ in range(4):
            assert server.invoke(one_class.to_csv(index=False, header=False))[0] == 200
            assert server.invoke(json.dumps(one_class.head(20).to_dict(orient="records")), "application/json")[0] == 200
    finally:
        assert server.stop() == 0
    report = _drift(tmp_path, wine / "model", wine / "data" / "baseline" / "baseline.json")
    prediction = report["prediction"]
    assert prediction["kind"] == "categorical" and report["input"]["predictions"] == 4 * (len(one_class) + 20)
    assert prediction["distribution"]["labels"][:3] == ["class_0", "class_1", "class_2"]
    assert prediction["distribution"]["current"][0] > 0.9 and prediction["drifted"]
    assert report["summary"]["prediction_drifted"] is True


def test_regression_prediction_drift_compares_the_predicted_values(diabetes: Path, tmp_path: Path) -> None:
    """Heavier patients: bmi + 8 moves the predicted progression up."""
    frame = pd.read_csv(PROBLEMS / "diabetes" / "data.csv", dtype={"sex": str}).drop(columns="progression")
    heavier = frame.assign(bmi=(frame["bmi"] + 8).clip(upper=44))
    server = _captured_server(diabetes / "model", tmp_path)
    try:
        assert server.invoke(heavier.to_csv(index=False, header=False))[0] == 200
        assert server.invoke(json.dumps(heavier.head(50).to_dict(orient="records")), "application/json")[0] == 200
    finally:
        assert server.stop() == 0
    report = _drift(tmp_path, diabetes / "model", diabetes / "data" / "baseline" / "baseline.json")
    prediction = report["prediction"]
    assert prediction["kind"] == "numeric" and "positive_rate" not in prediction
    assert prediction["current"]["mean"] > prediction["baseline"]["mean"] and prediction["drifted"]
    assert report["features"]["bmi"]["drifted"] and not report["features"]["age"]["drifted"]

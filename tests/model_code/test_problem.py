"""The problem declaration: the shipped problems load and validate, and every mistake names its field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from model_code.data import read_csv_input
from model_code.problem import ProblemError, load_problem, parse_problem, resolve_problem_dir
from model_code.validate import validate_frame
from problems.adult.synthetic import ADULT
from tests.model_code.conftest import REPO

PROBLEMS = REPO / "problems"


@pytest.mark.parametrize("name, task, primary", [
    ("adult", "binary", "auc"), ("wine", "multiclass", "balanced_accuracy"), ("diabetes", "regression", "rmse"),
])
def test_the_shipped_problems_load_and_their_samples_pass_validation(name: str, task: str, primary: str) -> None:
    problem = load_problem(PROBLEMS / name)
    assert (problem.task, problem.primary_metric) == (task, primary)
    assert problem.sample_path is not None and problem.card_path is not None and problem.card_path.is_file()
    report = validate_frame(read_csv_input(problem.sample_path), problem.schema).report
    assert report["status"] == "passed", report["violations"]


def test_the_adult_declaration_is_the_schema_the_steps_used_before() -> None:
    assert load_problem(PROBLEMS / "adult").schema == ADULT


def test_a_declaration_round_trips_through_the_artifact_form() -> None:
    from model_code.problem import Problem

    wine = load_problem(PROBLEMS / "wine")
    again = Problem.from_dict(wine.to_dict())
    assert again.schema == wine.schema and again.candidates == wine.candidates
    assert (again.primary_metric, again.direction, again.metric_threshold) == ("balanced_accuracy", "higher", 0.85)


def test_binary_classes_put_the_positive_class_last() -> None:
    doc = _doc("adult")
    doc["label"]["classes"] = [1, 0]
    assert parse_problem(doc).schema.label_values == (0, 1)


def _doc(name: str) -> dict[str, Any]:
    return copy.deepcopy(yaml.safe_load((PROBLEMS / name / "problem.yaml").read_text()))


def _errors(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(ProblemError) as caught:
        parse_problem(doc)
    return caught.value.problems


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(taks="binary"), "taks: unknown key"),
    (lambda d: d.update(task="ranking"), "task: 'ranking' is not one of binary, multiclass, regression"),
    (lambda d: d["features"][0].update(maximum=10), "features[0].maximum: 10 must be above minimum 16"),
    (lambda d: d["features"][0].update(type="integer"), "features[0].type: 'integer' is not one of int, float"),
    (lambda d: d["features"][1].update(categories=[]), "features[1].categories: must be a non-empty list"),
    (lambda d: d["features"][0].update(minimum=1.5), "features[0].minimum: must be an integer, got 1.5"),
    (lambda d: d["features"].append(dict(d["features"][0])), "features: 'age' is declared twice"),
    (lambda d: d["label"].update(positive=2), "label.positive: 2 is not one of the classes [0, 1]"),
    (lambda d: d["label"].update(classes=[0, 1, 2]), "label.classes: a binary task has exactly 2 classes"),
    (lambda d: d["metrics"].update(primary="rmse"), "metrics.primary: 'rmse' is not a binary metric"),
    (lambda d: d["metrics"].update(direction="lower"), "metrics.direction: auc is better higher, not 'lower'"),
    (lambda d: d["metrics"].update(threshold=1.2), "metrics.threshold: 1.2 is outside auc's range 0..1"),
    (lambda d: d["rules"].update(min_rows=5), "rules.min_rows: 5 is outside 20..inf"),
    (lambda d: d["model"]["candidates"][0].update(estimator="xgboost"),
     "model.candidates[0].estimator: 'xgboost' is not one of"),
    (lambda d: d["model"]["candidates"][0].update(params={"max_iter": 0}),
     "model.candidates[0]: params.max_iter: max_iter=0 must be >= 1"),
    (lambda d: d["model"]["candidates"][0].update(params={"n_estimators": 5}),
     "model.candidates[0]: params.n_estimators: unknown parameter of hist_gradient_boosting"),
    (lambda d: d["model"]["candidates"][0].update(space={"learning_rate": {"low": 0.5, "high": 0.1}}),
     "model.candidates[0]: space.learning_rate: low 0.5 must be below high 0.1"),
])
def test_each_mistake_names_its_field(change: Any, message: str) -> None:
    doc = _doc("adult")
    change(doc)
    assert any(message in line for line in _errors(doc)), _errors(doc)


def test_every_mistake_is_reported_at_once() -> None:
    doc = _doc("diabetes")
    doc["label"].pop("maximum")
    doc["metrics"]["primary"] = "auc"
    doc["rules"]["min_class_share"] = 0.1  # regression has no classes
    errors = _errors(doc)
    assert any(e.startswith("label.maximum: is required") for e in errors)
    assert any(e.startswith("metrics.primary: 'auc' is not a regression metric") for e in errors)
    assert any(e.startswith("rules.min_class_share: unknown key") for e in errors)


def test_a_key_given_twice_and_a_missing_file_are_refused(tmp_path: Path) -> None:
    (tmp_path / "problem.yaml").write_text((PROBLEMS / "wine" / "problem.yaml").read_text() + "task: binary\n")
    with pytest.raises(ProblemError, match="key 'task' is given twice"):
        load_problem(tmp_path)
    with pytest.raises(ProblemError, match="no problem.yaml: a problem is a folder holding one"):
        load_problem(tmp_path / "absent")
    (tmp_path / "problem.yaml").write_bytes(b"\xff\xfe not text")
    with pytest.raises(ProblemError, match="not valid YAML"):
        load_problem(tmp_path)


def test_a_declared_sample_that_does_not_exist_is_named(tmp_path: Path) -> None:
    doc = _doc("wine")
    doc["data"]["sample"] = "missing.csv"
    (tmp_path / "problem.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(ProblemError, match=r"data.sample: .*missing.csv does not exist"):
        load_problem(tmp_path)


def test_the_step_reads_the_flag_then_the_environment_then_the_bundle_then_the_default() -> None:
    assert resolve_problem_dir("x", {"MLOPS_PROBLEM_DIR": "y"}) == Path("x")
    assert resolve_problem_dir(None, {"MLOPS_PROBLEM_DIR": "y"}) == Path("y")
    assert resolve_problem_dir(None, {}) == PROBLEMS / "adult"  # the repository has no problem/ beside model_code


def test_a_derived_feature_is_checked_against_the_numeric_features() -> None:
    doc = _doc("diabetes")
    doc["derived"] = [{"name": "r", "expression": "ldl / hdl"}, {"name": "r2x", "expression": "log1p(r) * 2"}]
    assert [d.name for d in parse_problem(doc).derived] == ["r", "r2x"]  # a later one may use an earlier one
    for expression, message in (("ldl / sex", "'sex' is not a numeric feature declared before it"),
                                ("__import__('os')", "only the math functions"),
                                ("bmi.real", "Attribute is not allowed"), ("bmi +", "is not an expression"),
                                ("'a' + bmi", "only numbers may appear as constants")):
        doc["derived"] = [{"name": "x", "expression": expression}]
        assert any(e.startswith("derived[0].expression: ") and message in e for e in _errors(doc)), expression
    doc["derived"] = [{"name": "bmi", "expression": "bp * 2"}]
    assert "derived[0].name: 'bmi' is already a column" in _errors(doc)


def test_derived_features_are_computed_inside_the_model_for_training_and_serving(tmp_path: Path) -> None:
    """The same code on the same raw rows: the fitted pipeline's first step adds them."""
    from model_code import estimators
    from model_code.data import read_split
    from model_code.features import derive

    problem = load_problem(PROBLEMS / "diabetes")
    assert [d.name for d in problem.derived] == ["ldl_hdl_ratio"]
    frame, _ = read_split(problem.sample_path, problem.schema)
    x, y = frame[problem.schema.feature_names], frame[problem.schema.label].to_numpy()
    linear = estimators.KINDS["linear"]
    model = estimators.build(linear, problem.schema, estimators.resolve_params(linear, {}), 0,
                             problem.derived).fit(x, y)
    assert [name for name, _ in model.steps] == ["derive", "columns", "model"]
    assert "ldl_hdl_ratio" in list(model.named_steps["columns"].get_feature_names_out())
    manual = derive(x.head(5), problem.derived)["ldl_hdl_ratio"].to_numpy()
    assert np.allclose(manual, (x["ldl"] / x["hdl"]).head(5).to_numpy())
    no_hdl = x.head(2).assign(hdl=[0.0, np.nan])
    assert np.isnan(derive(no_hdl, problem.derived)["ldl_hdl_ratio"]).all()  # x/0 and missing: missing
    assert np.isfinite(model.predict(no_hdl)).all()  # the model imputes them like any missing value

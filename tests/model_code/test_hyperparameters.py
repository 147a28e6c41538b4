import json

import pytest

from model_code.problem import step_problem
from model_code.train import (
    HYPERPARAMETERS,
    HyperparameterError,
    build_parser,
    read_hyperparameters_file,
    resolve_hyperparameters,
)
from tests.model_code.conftest import REPO


def test_defaults_when_nothing_is_given():
    """Generic defaults, the problem's threshold and folds, each candidate's estimator defaults."""
    hp = resolve_hyperparameters()
    generic = {h.name: h.default for h in HYPERPARAMETERS} | {"threshold": 0.5, "cv_folds": 3}
    assert {k: v for k, v in hp.items() if k != "candidates"} == generic
    assert hp["candidates"]["gbm"]["max_iter"] == 300 and hp["candidates"]["gbm"]["learning_rate"] == 0.1


def test_a_bare_name_sets_every_candidate_that_has_it_a_prefixed_one_only_that_one():
    from model_code.problem import load_problem

    wine = load_problem(REPO / "problems" / "wine")
    hp = resolve_hyperparameters({"max_depth": "4", "linear__alpha": "0.5"}, problem=wine)
    assert hp["candidates"]["gbm"]["max_depth"] == 4 and hp["candidates"]["forest"]["max_depth"] == 4
    assert hp["candidates"]["linear"]["alpha"] == 0.5
    with pytest.raises(HyperparameterError, match="unknown hyperparameter 'forest__alpha'"):
        resolve_hyperparameters({"forest__alpha": "1"}, problem=wine)
    with pytest.raises(HyperparameterError, match="candidate='tree' is not one of"):
        resolve_hyperparameters({"candidate": "tree"}, problem=wine)


def test_sagemaker_string_values_are_typed():
    # SageMaker writes every value as a string; the Python SDK also JSON-quotes some.
    hp = resolve_hyperparameters({"learning_rate": "0.05", "max_iter": "120", "early_stopping": "False",
                                  "threshold": '"0.4"', "seed": "7"})
    gbm = hp["candidates"]["gbm"]
    assert gbm["learning_rate"] == 0.05 and gbm["max_iter"] == 120 and gbm["early_stopping"] is False
    assert hp["threshold"] == 0.4 and hp["seed"] == 7


def test_sagemaker_own_keys_are_ignored_and_unknown_keys_rejected():
    hp = resolve_hyperparameters({"sagemaker_program": "train.py", "_tuning_objective_metric": "auc"})
    assert hp == resolve_hyperparameters()
    with pytest.raises(HyperparameterError, match=r"hyperparameters.json: unknown hyperparameter 'leraning_rate'"):
        resolve_hyperparameters({"leraning_rate": "0.1"})


@pytest.mark.parametrize("key, value, message", [
    ("max_iter", "12.5", "max_iter='12.5' is not a valid int"),
    ("learning_rate", "fast", "learning_rate='fast' is not a valid float"),
    ("early_stopping", "maybe", "early_stopping='maybe' is not a valid"),
    ("threshold", "1.5", "threshold=1.5 must be 0 < x < 1"),
    ("max_leaf_nodes", "1", "max_leaf_nodes=1 must be >= 2"),
])
def test_bad_values_name_the_hyperparameter(key, value, message):
    with pytest.raises(HyperparameterError, match=message.replace("(", r"\(")):
        resolve_hyperparameters({key: value})


def test_command_line_overrides_the_file(tmp_path):
    path = tmp_path / "hyperparameters.json"
    path.write_text(json.dumps({"max_iter": "50", "learning_rate": "0.2"}))
    args = build_parser(step_problem()).parse_args(["--max-iter", "80", "--min_samples_leaf", "5"])
    overrides = {k: getattr(args, k) for k in ("max_iter", "min_samples_leaf")}
    gbm = resolve_hyperparameters(read_hyperparameters_file(path), overrides)["candidates"]["gbm"]
    assert (gbm["max_iter"], gbm["learning_rate"], gbm["min_samples_leaf"]) == (80, 0.2, 5)


def test_hyperparameters_file_errors(tmp_path):
    assert read_hyperparameters_file(tmp_path / "absent.json") == {}
    bad = tmp_path / "hp.json"
    bad.write_text("{not json")
    with pytest.raises(HyperparameterError, match="hp.json: not valid JSON"):
        read_hyperparameters_file(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(HyperparameterError, match="expected a JSON object, got list"):
        read_hyperparameters_file(bad)

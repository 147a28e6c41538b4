import json

import pytest

from model_code.train import (
    HYPERPARAMETERS,
    HyperparameterError,
    build_parser,
    read_hyperparameters_file,
    resolve_hyperparameters,
)


def test_defaults_when_nothing_is_given():
    hp = resolve_hyperparameters()
    assert hp == {h.name: h.default for h in HYPERPARAMETERS}


def test_sagemaker_string_values_are_typed():
    # SageMaker writes every value as a string; the Python SDK also JSON-quotes some.
    hp = resolve_hyperparameters({"learning_rate": "0.05", "max_iter": "120", "early_stopping": "False",
                                  "threshold": '"0.4"', "seed": "7"})
    assert hp["learning_rate"] == 0.05 and hp["max_iter"] == 120 and hp["early_stopping"] is False
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
    args = build_parser().parse_args(["--max-iter", "80", "--min_samples_leaf", "5"])
    overrides = {h.name: getattr(args, h.name) for h in HYPERPARAMETERS if getattr(args, h.name) is not None}
    hp = resolve_hyperparameters(read_hyperparameters_file(path), overrides)
    assert (hp["max_iter"], hp["learning_rate"], hp["min_samples_leaf"]) == (80, 0.2, 5)


def test_hyperparameters_file_errors(tmp_path):
    assert read_hyperparameters_file(tmp_path / "absent.json") == {}
    bad = tmp_path / "hp.json"
    bad.write_text("{not json")
    with pytest.raises(HyperparameterError, match="hp.json: not valid JSON"):
        read_hyperparameters_file(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(HyperparameterError, match="expected a JSON object, got list"):
        read_hyperparameters_file(bad)

"""A problem's own Python module: estimators and derived features from the data scientist's file,
read (never run) by the control plane, run by the steps, carried by the model artifact."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from model_code import estimators
from model_code.problem import ProblemError, load_problem
from model_code.problem_module import ModuleError, ProblemModule, signature
from tests.model_code.conftest import REPO, run_step

WINE = REPO / "problems" / "wine"


def _problem_copy(tmp_path: Path, append: str = "", **replace: str) -> Path:
    folder = tmp_path / "wine"
    shutil.copytree(WINE, folder)
    if append:
        with (folder / "custom.py").open("a") as module:
            module.write("\n" + append)
    text = (folder / "problem.yaml").read_text()
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    (folder / "problem.yaml").write_text(text)
    return folder


def test_the_declaration_reads_the_estimators_parameters_from_the_source_without_running_it(tmp_path: Path) -> None:
    """The control plane (pipeline definitions, the offline plan) knows the hyperparameters; the data
    scientist's code and its imports never run there."""
    marker = tmp_path / "ran"
    folder = _problem_copy(tmp_path, f"open({str(marker)!r}, 'w').close()\nimport a_library_the_control_plane_lacks\n")
    script = ("import json, sys\nfrom model_code.problem import load_problem\n"
              "p = load_problem(sys.argv[1])\n"
              "print(json.dumps({'texts': p.hyperparameter_texts(), 'derived': [d.function for d in p.derived],"
              " 'imported': sorted(k for k in sys.modules if k.startswith(('sklearn', 'mlops_problem_')))}))")
    run = subprocess.run([sys.executable, "-c", script, str(folder)], env=os.environ | {"PYTHONPATH": str(REPO)},
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    read = json.loads(run.stdout)
    assert read["texts"]["knn__n_neighbors"] == "15" and read["texts"]["knn__weights"] == "distance"
    assert read["derived"] == ["colour_band"]
    assert read["imported"] == [] and not marker.exists()  # neither the module nor scikit-learn was imported


@pytest.mark.parametrize("function, message", [
    ("def f(columns, seed, *, k=3): pass", "parameter 'k' must be annotated with one of ['int', 'float', 'bool', 'str']"),
    ("def f(columns, seed, *, k: int): pass", "parameter 'k' needs a default value"),
    ("def f(columns, seed, *, k: int = len('x')): pass", "the default of 'k' must be a literal"),
    ("def f(columns, seed, *, k: int = 1.5): pass", "the default of 'k', 1.5, is not a int"),
    ("def f(columns, *, k: int = 3): pass", "must take exactly two positional parameters (columns, seed)"),
    ("def f(columns, seed, k: int = 3): pass", "must take exactly two positional parameters"),
    ("def g(columns, seed): pass", "defines no top-level function 'f'"),
])
def test_an_estimator_function_outside_the_contract_is_refused_with_the_reason(function: str, message: str) -> None:
    with pytest.raises(ModuleError) as error:
        signature(ProblemModule("custom.py", function), "f")
    assert message in str(error.value)


@pytest.mark.parametrize("append, replace, field, message", [
    ("", {"module: custom.py": "module: ../custom.py"}, "module", "must be the name of a .py file"),
    ("", {"module: custom.py": "module: absent.py"}, "module", "absent.py cannot be read"),
    ("def broken(:\n", {}, "module", "custom.py: line"),
    ("", {"module:nearest_neighbours": "module:nearest"}, "model.candidates[3].estimator",
     "custom.py defines no top-level function 'nearest'"),
    ("", {"function: colour_band": "function: colour"}, "derived[0].function",
     "custom.py defines no top-level function 'colour'"),
    ("", {"function: colour_band": "function: nearest_neighbours"}, "derived[0].function",
     "must take exactly one parameter"),
    ("", {"  function: colour_band": "  function: colour_band\n  expression: alcohol * 2"}, "derived[0]",
     "needs exactly one of expression (arithmetic) or function"),
    ("", {"        low: 3\n        high: 30": "        low: a\n        high: 30"}, "model.candidates[3]",
     "space.n_neighbors: n_neighbors='a' is not a valid int"),
    ("", {"estimator: module:nearest_neighbours": "estimator: module:nearest_neighbours\n    params: {k: 2}"},
     "model.candidates[3]", "params.k: unknown parameter of module:nearest_neighbours; known: ['n_neighbors', "
     "'weights']"),
])
def test_module_errors_in_the_declaration_name_the_field(tmp_path: Path, append: str, replace: dict[str, str],
                                                         field: str, message: str) -> None:
    folder = _problem_copy(tmp_path, append, **replace)
    with pytest.raises(ProblemError) as error:
        load_problem(folder)
    assert any(p.startswith(f"{field}: ") and message in p for p in error.value.problems), error.value.problems


def test_module_names_need_a_module(tmp_path: Path) -> None:
    folder = _problem_copy(tmp_path, **{"module: custom.py": ""})
    with pytest.raises(ProblemError) as error:
        load_problem(folder)
    assert "model.candidates[3].estimator: 'module:nearest_neighbours' names a function of the problem's module, " \
           "and the problem declares no module (module: <file>.py)" in error.value.problems
    assert "derived[0].function: the problem declares no module (module: <file>.py) to hold it" in error.value.problems


@pytest.fixture(scope="module")
def knn_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wine problem trained with its module's estimator, as the Train step's container runs it."""
    root = tmp_path_factory.mktemp("knn")
    flag = ("--problem", str(WINE))
    step = run_step("preprocess", "--input", str(WINE / "data.csv"), "--output", str(root / "data"), *flag)
    assert step.returncode == 0, step.stderr
    step = run_step("train", "--train", str(root / "data" / "train"), "--validation", str(root / "data" / "validation"),
                    "--model-dir", str(root / "model"), "--output-data-dir", str(root / "out"),
                    "--hyperparameters", str(root / "none.json"), "--candidate", "knn", "--n-neighbors", "7", *flag)
    assert step.returncode == 0, step.stderr
    assert "train: candidate knn," in step.stdout
    return root


def test_the_artifact_carries_the_module_and_scores_in_a_process_without_the_problem(knn_model: Path,
                                                                                     tmp_path: Path) -> None:
    """What a server has: the artifact only. It installs the module from the source it embeds."""
    from model_code.model import load_model

    rows = pd.read_csv(WINE / "data.csv").drop(columns="cultivar").head(40)
    rows.to_csv(tmp_path / "rows.csv", index=False)
    script = ("import json, sys, pandas as pd\nfrom model_code.model import load_model\n"
              "m = load_model(sys.argv[1])\n"
              "print(json.dumps({'out': m.output(pd.read_csv(sys.argv[2])).tolist(), "
              "'modules': [k for k in sys.modules if k.startswith('mlops_problem_')], "
              "'steps': [n for n, _ in m.estimator.steps], 'k': m.estimator.steps[-1][1].steps[-1][1].n_neighbors}))")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "SM_"))} | {"PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-c", script, str(knn_model / "model"), str(tmp_path / "rows.csv")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    served = json.loads(run.stdout)
    loaded = load_model(knn_model / "model")
    module = loaded.artifact["problem"]["module"]
    assert served["modules"] == [ProblemModule.from_dict(module).name]
    assert served["steps"] == ["derive", "model"] and served["k"] == 7
    assert np.array_equal(np.asarray(served["out"]), loaded.output(rows))
    assert module["source"] == (WINE / "custom.py").read_text()
    hyperparameters = loaded.artifact["hyperparameters"]
    assert hyperparameters["estimator"] == "module:nearest_neighbours" and hyperparameters["n_neighbors"] == 7
    report = json.loads((knn_model / "out" / "metrics.json").read_text())
    assert report["metrics"]["validation"]["balanced_accuracy"] > 0.8


def test_an_artifact_whose_module_source_was_changed_is_refused(knn_model: Path, tmp_path: Path) -> None:
    import joblib

    from model_code.model import load_model

    artifact = joblib.load(knn_model / "model" / "model.joblib")
    artifact["problem"]["module"]["source"] += "\n# edited\n"
    joblib.dump(artifact, tmp_path / "model.joblib")
    with pytest.raises(ModuleError, match="custom.py: the source does not match its recorded sha256"):
        load_model(tmp_path)


def test_a_module_estimator_that_cannot_predict_stops_train_naming_the_function(tmp_path: Path) -> None:
    folder = _problem_copy(tmp_path, "def broken(columns, seed, *, k: int = 3):\n    return object()\n",
                           **{"estimator: module:nearest_neighbours": "estimator: module:broken",
                              "      n_neighbors:": "      k:"})
    step = run_step("preprocess", "--input", str(folder / "data.csv"), "--output", str(tmp_path / "data"),
                    "--problem", str(folder))
    assert step.returncode == 0, step.stderr
    step = run_step("train", "--train", str(tmp_path / "data" / "train"), "--validation",
                    str(tmp_path / "data" / "validation"), "--model-dir", str(tmp_path / "model"),
                    "--output-data-dir", str(tmp_path / "out"), "--hyperparameters", str(tmp_path / "none.json"),
                    "--candidate", "knn", "--problem", str(folder))
    assert step.returncode == 1
    assert "custom.py: broken() returned object, which has no fit or predict_proba: a multiclass estimator needs " \
           "fit and predict_proba" in step.stderr
    assert not (tmp_path / "model" / "model.joblib").exists()


def test_the_module_kind_keeps_the_candidates_contract() -> None:
    problem = load_problem(WINE)
    kind = problem.kind(problem.candidate("knn"))
    assert kind.name == "module:nearest_neighbours"
    assert estimators.resolve_params(kind, {"n_neighbors": "9"}) == {"n_neighbors": 9, "weights": "distance"}
    assert estimators.check_params(kind, {"weights": 3}, {}) == []  # a str parameter takes any text
    assert estimators.check_params(kind, {}, {"weights": {"low": 1, "high": 2}}) == \
        ["space.weights: not a numeric parameter of module:nearest_neighbours"]


def test_problem_check_runs_the_module_and_names_what_fails(tmp_path: Path) -> None:
    """Reading the declaration never runs the module; `mlops problem check` does, on the sample."""
    folder = _problem_copy(tmp_path, "def broken(columns, seed, *, k: int = 3):\n    return object()\n\n"
                           "def no_band(frame):\n    return [1.0]\n",
                           **{"estimator: module:nearest_neighbours": "estimator: module:broken",
                              "      n_neighbors:": "      k:"})
    mlops = [str(Path(sys.executable).with_name("mlops")), "problem", "check", str(folder)]
    check = subprocess.run(mlops, capture_output=True, text=True, timeout=120, check=False)
    assert check.returncode == 1
    assert "violation: [module] model.candidates[3] (module:broken): ModuleError: custom.py: broken() returned " \
           "object, which has no fit or predict_proba" in check.stderr
    (folder / "problem.yaml").write_text((folder / "problem.yaml").read_text().replace("function: colour_band",
                                                                                       "function: no_band"))
    check = subprocess.run(mlops, capture_output=True, text=True, timeout=120, check=False)
    assert check.returncode == 1
    assert "violation: [module] derived: derived feature 'colour_band': custom.py: no_band() returned shape (1,) " \
           "for 178 rows; expected one number per row" in check.stderr
    good = subprocess.run(mlops[:-1] + [str(WINE)], capture_output=True, text=True, timeout=120, check=False)
    assert good.returncode == 0 and "candidates gbm, forest, linear, knn" in good.stdout, good.stderr


def test_the_mlflow_model_carries_the_module_by_value(knn_model: Path, tmp_path: Path) -> None:
    """The MLflow model of a module estimator loads in a process that never saw the problem or its module."""
    store = tmp_path / "mlruns"
    step = run_step("train", "--train", str(knn_model / "data" / "train"), "--validation",
                    str(knn_model / "data" / "validation"), "--model-dir", str(tmp_path / "model"), "--output-data-dir",
                    str(tmp_path / "out"), "--hyperparameters", str(tmp_path / "none.json"), "--candidate", "knn",
                    "--problem", str(WINE),
                    env={"MLFLOW_TRACKING_URI": store.as_uri(), "MLFLOW_ALLOW_FILE_STORE": "true"})
    assert step.returncode == 0, step.stderr
    run_id = json.loads((tmp_path / "out" / "metrics.json").read_text())["mlflow"]["run_id"]
    rows = pd.read_csv(WINE / "data.csv").drop(columns="cultivar").head(8)
    rows.to_csv(tmp_path / "rows.csv", index=False)
    script = ("import json, sys, mlflow, mlflow.sklearn, pandas as pd\n"
              f"mlflow.set_tracking_uri({store.as_uri()!r})\n"
              f"m = mlflow.sklearn.load_model('runs:/{run_id}/model')\n"
              "print(json.dumps({'out': m.predict_proba(pd.read_csv(sys.argv[1])).tolist()}))")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "MLFLOW_"))} | {
        "MLFLOW_ALLOW_FILE_STORE": "true"}  # no --problem, no problem folder: the module comes with the model
    run = subprocess.run([sys.executable, "-c", script, str(tmp_path / "rows.csv")], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=180, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    loaded = json.loads(run.stdout.strip().splitlines()[-1])
    from model_code.model import load_model

    assert np.allclose(loaded["out"], load_model(tmp_path / "model").output(rows), atol=1e-12)

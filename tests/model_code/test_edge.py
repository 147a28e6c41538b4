"""The edge export: the fitted pipeline in ONNX, scored by onnxruntime like scikit-learn, served by serve."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import TensorProto, helper

from model_code import edge, estimators
from model_code.edge import derive
from model_code.features import FUNCTIONS, DerivedFeature
from model_code.model import estimator_output, load_model
from model_code.problem import load_problem
from model_code.schema import coerce
from problems.adult.synthetic import synthesize
from tests.model_code.test_serve import REPO, csv_scores, start_server, to_csv

PROBLEMS = REPO / "problems"


def fitted(problem: str, estimator: str, derived: bool = True):
    """An estimator kind's pipeline (with the problem's declared parameters for it, if a candidate uses it)
    fitted on the problem's sample; derived features of the problem's module left out."""
    p = load_problem(PROBLEMS / problem)
    # 8,000 rows at most: the conversion is under test, not the fit (Adult's 48,842 would only slow the forest)
    frame = coerce(pd.read_csv(p.sample_path, dtype=str, keep_default_na=False, na_values=[""], nrows=8000), p.schema)
    declared = next((c for c in p.candidates if c.estimator == estimator), None)
    kind = estimators.kind_of(estimator, p.module)
    extra = tuple(d for d in p.derived if not d.function) if derived else ()
    params = estimators.resolve_params(kind, declared.params if declared else {})
    pipeline = estimators.build(kind, p.schema, params, 0, extra, p.module)
    return pipeline.fit(frame[p.schema.feature_names], frame[p.schema.label].to_numpy()), p, frame


@pytest.mark.parametrize(("problem", "estimator", "task"), [
    ("adult", "hist_gradient_boosting", "binary"),   # native categorical splits, missing values
    ("adult", "random_forest", "binary"),
    ("adult", "linear", "binary"),                   # one-hot of imputed strings, unknown values all zero
    ("wine", "hist_gradient_boosting", "multiclass"),  # one tree per class and iteration, softmax
    ("wine", "random_forest", "multiclass"),         # forest trees' class fractions, float32 splits
    ("wine", "linear", "multiclass"),
    ("diabetes", "hist_gradient_boosting", "regression"),  # a derived expression (ldl / hdl) in the graph
    ("diabetes", "random_forest", "regression"),
    ("diabetes", "linear", "regression"),            # median-imputed, standardised numerics
])
def test_onnx_scores_as_scikit_learn_within_1e5_on_10000_rows(problem, estimator, task):
    pipeline, p, frame = fitted(problem, estimator)
    assert p.task == task
    session = edge.OnnxModel(edge.to_onnx(pipeline, p.schema).SerializeToString(), p.schema)
    rows = edge.parity_rows(p.schema)
    assert len(rows) == 10_000
    # the rows reach every category, unknown and missing values, and both range bounds
    for f in p.schema.categorical:
        assert set(f.categories) | {"<unknown>"} <= set(rows[f.name].dropna()) and rows[f.name].isna().any()
    difference = edge.parity(pipeline, p.schema, session, rows)
    print(f"{problem} {estimator} ({task}): max abs difference {difference:.1e} on {len(rows)} rows")
    assert difference <= 1e-5
    assert edge.parity(pipeline, p.schema, session, frame[p.schema.feature_names]) <= 1e-5
    # and the parity is not vacuous: the scores vary across the rows
    assert np.ptp(estimator_output(pipeline, task, rows)) > 0.1


def test_skl2onnx_alone_gets_native_categorical_splits_wrong():
    """Why edge/trees.py exists: skl2onnx's own converter treats the categorical splits as thresholds."""
    from skl2onnx import convert_sklearn

    pipeline, p, _ = fitted("adult", "hist_gradient_boosting")
    proto = convert_sklearn(pipeline, initial_types=edge._input_types(p.schema, []),
                            options={id(pipeline.named_steps["model"]): {"zipmap": False}},
                            target_opset={"": edge.OPSET, "ai.onnx.ml": 3})
    import onnxruntime

    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    rows = edge.parity_rows(p.schema, 2_000)
    (theirs,) = session.run(["probabilities"], edge.frame_feeds(p.schema, rows))
    assert np.abs(theirs - pipeline.predict_proba(rows)).max() > 0.1


def _graph_with(derived: list[DerivedFeature], inputs: list[str]) -> onnx.ModelProto:
    names = [d.name for d in derived]
    graph = helper.make_graph(
        [helper.make_node("Identity", [n], [f"out_{n}"]) for n in names], "derived",
        [helper.make_tensor_value_info(n, TensorProto.DOUBLE, [None, 1]) for n in [*inputs, *names]],
        [helper.make_tensor_value_info(f"out_{n}", TensorProto.DOUBLE, [None, 1]) for n in names])
    derive.prepend_derived(graph, derived)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", edge.OPSET)])


def test_every_function_and_operator_of_the_expression_grammar_computes_as_pandas():
    import onnxruntime

    from model_code.features import derive as pandas_derive

    expressions = {f"f_{name}": f"{name}(a)" for name in sorted(FUNCTIONS - derive.NO_DOUBLE_KERNEL)}
    expressions |= {"ops": "(a + b) * 2 - b / a ** 2 % 3", "neg": "-a + +b", "mod": "a % -1.5", "mod_inexact": "a % 0.1", "zero": "b / (a - a)"}
    derived = [DerivedFeature(name, expression) for name, expression in expressions.items()]
    proto = _graph_with(derived, ["a", "b"])
    onnx.checker.check_model(proto, full_check=True)
    rng = np.random.default_rng(3)
    a = np.concatenate([rng.uniform(-3, 3, 500), [0.0, 1.0, -1.0, np.nan, 0.5]])
    b = np.concatenate([rng.uniform(-3, 3, 500), [np.nan, 2.0, 0.0, 1.0, -0.5]])
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"a": a.reshape(-1, 1), "b": b.reshape(-1, 1)})
    expected = pandas_derive(pd.DataFrame({"a": a, "b": b}), derived)
    for feature, values in zip(derived, got, strict=True):
        want = expected[feature.name].to_numpy()
        np.testing.assert_allclose(values.ravel(), want, rtol=1e-12, atol=1e-12, equal_nan=True,
                                   err_msg=feature.expression)
    with pytest.raises(derive.Unsupported, match="'six' .* is a constant"):
        _graph_with([DerivedFeature("six", "2 * sqrt(9)")], ["a"])
    for function in sorted(derive.NO_DOUBLE_KERNEL):  # refused, naming the feature and the function
        arguments = "a, b" if function == "arctan2" else "a"
        with pytest.raises(derive.Unsupported, match=rf"'angle' \({function}\({arguments}\)\): function {function}"):
            _graph_with([DerivedFeature("angle", f"{function}({arguments})")], ["a", "b"])


def test_what_has_no_onnx_form_is_named():
    pipeline, p, _ = fitted("wine", "hist_gradient_boosting", derived=False)
    module_feature = [d for d in load_problem(PROBLEMS / "wine").derived if d.function]
    assert module_feature
    from sklearn.pipeline import Pipeline

    from model_code.derive_step import Derive

    with_function = Pipeline([("derive", Derive(tuple(module_feature))), *pipeline.steps])
    with pytest.raises(edge.NotExportable, match="'colour_band' is the function colour_band"):
        edge.to_onnx(with_function, p.schema)
    module_model, p, _ = fitted("wine", "module:nearest_neighbours")
    with pytest.raises(edge.NotExportable, match="problem's module"):
        edge.to_onnx(module_model, p.schema)


def test_a_feature_named_like_an_output_is_not_exported_and_training_goes_on(tmp_path: Path):
    from dataclasses import replace

    pipeline, p, frame = fitted("diabetes", "random_forest", derived=False)
    renamed = replace(p.schema, features=tuple(replace(f, name="variable") if f.name == "bmi" else f
                                               for f in p.schema.features))
    x = frame[p.schema.feature_names].rename(columns={"bmi": "variable"})
    kind = estimators.kind_of("random_forest")
    model = estimators.build(kind, renamed, estimators.resolve_params(kind, {"n_estimators": 3}), 0)
    model.fit(x, frame[p.schema.label].to_numpy())
    (tmp_path / "model.onnx").write_bytes(b"an earlier run's")
    entry = edge.export(model, renamed, tmp_path)
    assert entry == {"exported": False, "reason": "feature 'variable' has the name of one of the graph's outputs "
                                                  "['label', 'probabilities', 'variable']"}
    assert not (tmp_path / "model.onnx").exists()  # the earlier file is gone: it was not made from this model


def test_train_writes_model_onnx_beside_the_artifact_with_its_parity(model_dir: Path):
    entry = load_model(model_dir).artifact["onnx"]
    assert entry["exported"] is True
    assert entry["parity"]["rows"] == edge.PARITY_ROWS + 1000  # the schema's rows and the validation split
    assert entry["parity"]["max_abs_difference"] <= 1e-5
    assert entry["opsets"] == {"ai.onnx": edge.OPSET, "ai.onnx.ml": 5}
    import hashlib

    assert hashlib.sha256((model_dir / "model.onnx").read_bytes()).hexdigest() == entry["sha256"]


def test_a_model_that_does_not_export_says_why_and_trains(tmp_path: Path):
    """The problem's own estimator trains and registers as before; its artifact records why it has no ONNX file."""
    pipeline, p, frame = fitted("wine", "module:nearest_neighbours")
    entry = edge.export(pipeline, p.schema, tmp_path)
    assert entry == {"exported": False, "reason": entry["reason"]} and "problem's module" in entry["reason"]
    assert not (tmp_path / "model.onnx").exists()


def test_serve_scores_with_onnxruntime_as_with_scikit_learn(model_dir: Path, tmp_path: Path):
    rows = synthesize(300, seed=41)[load_model(model_dir).schema.feature_names]
    body = to_csv(rows, header=False)
    onnx_server = start_server(model_dir, tmp_path, MLOPS_SERVE_RUNTIME="onnx")
    try:
        status, _, out = onnx_server.invoke(body)
        assert status == 200
        assert np.abs(csv_scores(out) - load_model(model_dir).predict_proba(rows)).max() <= 1e-5
        bad = onnx_server.invoke("not,a,row\n")
        assert bad[0] == 400 and json.loads(bad[2])["status"] == 400 and json.loads(bad[2])["message"]
        loaded = [line for line in onnx_server.log_lines() if line["event"] == "model_loaded"]
        assert loaded[0]["runtime"] == "onnx"
    finally:
        assert onnx_server.stop() == 0


def test_serve_with_onnx_refuses_to_start_when_the_file_is_missing_or_altered(model_dir: Path, tmp_path: Path):
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    (copy / "model.onnx").write_bytes((copy / "model.onnx").read_bytes() + b"\0")

    def serve_fails_saying(expected: str) -> None:
        proc = subprocess.run([sys.executable, "-m", "model_code", "serve"], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60,
                              env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "SM_MODEL_DIR": str(copy),
                                   "MLOPS_SERVE_RUNTIME": "onnx", "SAGEMAKER_BIND_TO_PORT": "0"})
        assert proc.returncode != 0 and expected in proc.stdout + proc.stderr, proc.stdout + proc.stderr

    serve_fails_saying("sha256 differs")
    (copy / "model.onnx").unlink()
    serve_fails_saying("not beside it")
    artifact = joblib.load(copy / "model.joblib")
    artifact["onnx"] = {"exported": False, "reason": "the estimator Foo comes from the problem's module"}
    joblib.dump(artifact, copy / "model.joblib")
    serve_fails_saying("no ONNX export: the estimator Foo")


@pytest.mark.parametrize("estimator", ["hist_gradient_boosting", "random_forest"])
def test_trees_that_are_one_leaf_convert(estimator):
    """A constant label grows trees without a split: TreeEnsemble still needs a node to root each."""
    p = load_problem(PROBLEMS / "diabetes")
    frame = coerce(pd.read_csv(p.sample_path, dtype=str, keep_default_na=False, na_values=[""]), p.schema)
    kind = estimators.kind_of(estimator)
    pipeline = estimators.build(kind, p.schema, estimators.resolve_params(kind, {"max_iter": 3} if
                                estimator == "hist_gradient_boosting" else {"n_estimators": 3}), 0)
    pipeline.fit(frame[p.schema.feature_names], np.full(len(frame), 120.0))
    model = pipeline.named_steps["model"]
    node_counts = [len(t.nodes) for it in model._predictors for t in it] if estimator == "hist_gradient_boosting" else \
        [e.tree_.node_count for e in model.estimators_]
    assert set(node_counts) == {1}
    session = edge.OnnxModel(edge.to_onnx(pipeline, p.schema).SerializeToString(), p.schema)
    rows = edge.parity_rows(p.schema, 500)
    assert np.abs(session.output(rows) - 120.0).max() <= 1e-9


def test_a_loss_whose_link_the_graph_lacks_is_named():
    pipeline, p, frame = fitted("diabetes", "hist_gradient_boosting", derived=False)
    pipeline.named_steps["model"].set_params(loss="poisson", max_iter=3)
    pipeline.fit(frame[p.schema.feature_names], frame[p.schema.label].to_numpy())
    with pytest.raises(edge.NotExportable, match="HistGradientBoosting's loss 'poisson'"):
        edge.to_onnx(pipeline, p.schema)

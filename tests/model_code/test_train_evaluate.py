"""Train and evaluate through their command lines, with SageMaker's paths mapped to tmp dirs."""

import json
import subprocess
import sys
import tarfile

import pytest

from model_code.data import write_csv
from model_code.evaluate import evaluate
from model_code.model import load_model
from model_code.preprocess import preprocess
from model_code.schema import DataError
from model_code.validate import REPORT_NAME
from problems.adult.synthetic import ADULT, synthesize
from tests.model_code.conftest import REPO, raw_strings, run_step

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def sagemaker_env(root):
    """The environment SageMaker (or the local executor) gives a training container."""
    return {
        "SM_CHANNEL_TRAIN": str(root / "input" / "data" / "train"),
        "SM_CHANNEL_VALIDATION": str(root / "input" / "data" / "validation"),
        "SM_MODEL_DIR": str(root / "model"),
        "SM_OUTPUT_DATA_DIR": str(root / "output" / "data"),
        "SM_INPUT_CONFIG_DIR": str(root / "input" / "config"),
        "SM_OUTPUT_DIR": str(root / "output"),
    }


def prepare(raw, root):
    """preprocess -> SageMaker channel folders under root/input/data."""
    preprocess(raw, root / "input" / "data")
    (root / "input" / "config").mkdir(parents=True, exist_ok=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, adult_csv):
    """The real pipeline once: preprocess, train (SageMaker env), evaluate (processing paths)."""
    root = tmp_path_factory.mktemp("job")
    prepare(adult_csv, root)
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(
        {"learning_rate": "0.1", "max_iter": "200", "permutation_repeats": "2",
         "sagemaker_program": "ignored", "early_stopping": "true"}))
    env = sagemaker_env(root)
    train = run_step("train", env=env)
    assert train.returncode == 0, train.stderr
    evaluate = run_step("evaluate", "--model", str(root / "model"), "--test", str(root / "input" / "data" / "test"),
                        "--output", str(root / "evaluation"))
    assert evaluate.returncode == 0, evaluate.stderr
    return root


def test_real_data_model_clears_a_sane_auc(trained):
    report = json.loads((trained / "evaluation" / "evaluation.json").read_text())
    # the JSON paths a SageMaker PropertyFile / JsonGet uses
    assert report["metrics"]["auc"]["value"] > 0.88
    assert 0.8 < report["metrics"]["accuracy"]["value"] < 1.0
    for key in ("precision", "recall", "f1", "log_loss", "brier", "positive_rate", "rows"):
        assert isinstance(report["metrics"][key]["value"], float)
    assert report["binary_classification_metrics"]["auc"]["value"] == report["metrics"]["auc"]["value"]
    cm = report["confusion_matrix"]
    assert cm["tn"] + cm["fp"] + cm["fn"] + cm["tp"] == report["metrics"]["rows"]["value"] == 7318
    for name in report["plots"].values():
        assert (trained / "evaluation" / name).read_bytes()[:8] == PNG_MAGIC


def test_artifact_is_self_describing(trained):
    model = load_model(trained / "model")
    art = model.artifact
    assert art["format"] == "mlops-stack/model" and art["format_version"] == 2
    assert model.schema == ADULT
    assert art["hyperparameters"]["max_iter"] == 200 and art["hyperparameters"]["learning_rate"] == 0.1
    assert art["hyperparameters"]["permutation_repeats"] == 2
    assert set(art["permutation_importance"]["features"]) == set(ADULT.feature_names)
    top = max(art["permutation_importance"]["features"].items(), key=lambda kv: kv[1]["mean"])[0]
    assert top in {"capital_gain", "age", "marital_status", "relationship", "education_num"}
    assert set(art["data"]) == {"train", "validation"}
    assert len(art["data"]["train"]["files"]["train.csv"]) == 64
    assert art["prediction_baseline"]["kind"] == "numeric"
    assert 0.1 < art["prediction_baseline"]["positive_rate"] < 0.35
    assert art["mlflow"] is None
    metrics = json.loads((trained / "output" / "data" / "metrics.json").read_text())
    assert metrics["metrics"]["validation"]["auc"] > 0.88


def test_encoder_categories_come_from_the_train_split(trained):
    model = load_model(trained / "model" / "model.joblib")
    encoder = model.estimator.named_steps["columns"].named_transformers_["cat"]
    train_csv = (trained / "input" / "data" / "train" / "train.csv").read_text()
    for name, cats in zip([f.name for f in ADULT.categorical], encoder.categories_, strict=True):
        for c in cats:
            if isinstance(c, str):
                assert f",{c}," in train_csv or train_csv.endswith(f",{c}"), (name, c)


def test_loaded_model_scores_raw_records_and_rejects_bad_ones(trained):
    model = load_model(trained / "model")
    rows = synthesize(5, seed=1).drop(columns=[ADULT.label]).to_dict("records")
    rows[0]["workclass"] = "Gig-economy"  # unknown category: scored as missing, not an error
    rows[1]["occupation"] = None
    scores = model.predict_proba(rows)
    assert scores.shape == (5,) and ((scores >= 0) & (scores <= 1)).all()
    rows[2]["age"] = 300
    with pytest.raises(DataError, match=r"'age' must be within \[16, 100\]; rows \[2\]"):
        model.predict_proba(rows)
    del rows[3]["sex"]
    with pytest.raises(DataError, match="missing column"):
        model.predict_proba([{k: v for k, v in rows[3].items()}])


def test_evaluate_reads_sagemakers_model_tar_gz(trained, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    with tarfile.open(folder / "model.tar.gz", "w:gz") as tar:
        tar.add(trained / "model" / "model.joblib", arcname="model.joblib")
    model = load_model(folder)
    assert model.path.name == "model.joblib" and model.path.parent != trained / "model"
    again = evaluate(model, trained / "input" / "data" / "test", tmp_path / "eval")
    first = json.loads((trained / "evaluation" / "evaluation.json").read_text())
    assert again["metrics"] == first["metrics"]
    assert again["model"]["sha256"] == first["model"]["sha256"]


def test_bad_training_data_fails_before_writing_the_model(tmp_path):
    raw = raw_strings(synthesize(3000, seed=8))
    write_csv(raw, tmp_path / "raw" / "d.csv")
    prepare(tmp_path / "raw", tmp_path)
    train_csv = tmp_path / "input" / "data" / "train" / "train.csv"
    lines = train_csv.read_text().splitlines()
    cells = lines[5].split(",")
    cells[ADULT.columns.index("hours_per_week")] = "many"
    lines[5] = ",".join(cells)
    train_csv.write_text("\n".join(lines) + "\n")

    r = run_step("train", env=sagemaker_env(tmp_path))
    assert r.returncode == 1
    assert "'hours_per_week'" in r.stderr and "rows 4" in r.stderr and "train.csv" in r.stderr
    assert not (tmp_path / "model").exists() or not any((tmp_path / "model").iterdir())
    failure = (tmp_path / "output" / "failure").read_text()
    assert "hours_per_week" in failure


def test_validate_fails_a_bad_dataset_and_writes_only_its_report(tmp_path):
    """Validate exits 1 (which stops the pipeline: see tests/local) and writes nothing but its report."""
    raw = raw_strings(synthesize(3000, seed=8))
    raw.loc[10, "education_num"] = "17"
    write_csv(raw, tmp_path / "raw" / "d.csv")

    r = run_step("validate", "--input", str(tmp_path / "raw"), "--output", str(tmp_path / "report"),
                 env=sagemaker_env(tmp_path))

    assert r.returncode == 1
    assert "violation [range] column 'education_num' must be within [1, 16]; 1 value(s) outside at rows 10" in r.stderr
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert written == ["raw/d.csv", f"report/{REPORT_NAME}"]
    report = json.loads((tmp_path / "report" / REPORT_NAME).read_text())
    assert report["status"] == "failed"
    assert [(v["check"], v["column"], v["rows"]) for v in report["violations"]] == [("range", "education_num", [10])]


def test_single_class_split_is_rejected(tmp_path):
    frame = synthesize(3000, seed=8)
    frame = frame[frame.income_gt_50k == 0]
    write_csv(raw_strings(frame), tmp_path / "input" / "data" / "train" / "train.csv")
    write_csv(raw_strings(frame), tmp_path / "input" / "data" / "validation" / "validation.csv")
    r = run_step("train", env=sagemaker_env(tmp_path))
    assert r.returncode == 1 and "must hold every class [0, 1]" in r.stderr


def test_mlflow_is_not_imported_without_a_tracking_uri(tmp_path):
    write_csv(raw_strings(synthesize(3000, seed=8)), tmp_path / "raw" / "d.csv")
    prepare(tmp_path / "raw", tmp_path)
    env = sagemaker_env(tmp_path)
    code = ("import sys; from model_code.train import main; rc = main(['--max-iter', '10', "
            "'--permutation-repeats', '1']); assert rc == 0; assert 'mlflow' not in sys.modules, 'imported'")
    import os
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False,
                       env={**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
                            **env, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr


def test_mlflow_run_logs_params_metrics_digests_importance_and_model(tmp_path, monkeypatch):
    import mlflow  # a hard dependency (model_code/requirements.txt): a broken install must fail, not skip

    write_csv(raw_strings(synthesize(3000, seed=8)), tmp_path / "raw" / "d.csv")
    prepare(tmp_path / "raw", tmp_path)
    store = tmp_path / "mlruns"
    env = {**sagemaker_env(tmp_path), "MLFLOW_TRACKING_URI": store.as_uri(), "MLFLOW_ALLOW_FILE_STORE": "true",
           "MLFLOW_EXPERIMENT_NAME": "test-exp", "MLOPS_GIT_SHA": "0123abc"}
    r = run_step("train", "--max-iter", "20", "--permutation-repeats", "1", env=env)
    assert r.returncode == 0, r.stderr
    art = load_model(tmp_path / "model").artifact
    run_id = art["mlflow"]["run_id"]
    assert json.loads((tmp_path / "output" / "data" / "metrics.json").read_text())["mlflow"]["run_id"] == run_id
    assert art["provenance"] == {"MLOPS_GIT_SHA": "0123abc"}

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")

    client = mlflow.MlflowClient(tracking_uri=store.as_uri())
    run = client.get_run(run_id)
    assert run.data.params["max_iter"] == "20"
    assert run.data.metrics["validation_auc"] == pytest.approx(art["metrics"]["validation"]["auc"])
    assert run.data.tags["data.train.train.csv.sha256"] == art["data"]["train"]["files"]["train.csv"]
    assert run.data.tags["provenance.MLOPS_GIT_SHA"] == "0123abc"
    logged = {a.path for a in client.list_artifacts(run_id)}
    assert {"permutation_importance.json", "prediction_baseline.json", "schema.json", "artifact"} <= logged
    assert [a.path for a in client.list_artifacts(run_id, "artifact")] == ["artifact/model.joblib",
                                                                          "artifact/model.onnx"]
    assert client.get_experiment(run.info.experiment_id).name == "test-exp"
    models = client.search_logged_models(experiment_ids=[run.info.experiment_id])
    assert [m.source_run_id for m in models] == [run_id]

"""The image as SageMaker starts it: `IMAGE train`, a processing step's entrypoint verbatim, `IMAGE serve`.

`/opt/ml` folders are made on the host as SageMaker makes them (owned by root, mode 0755) and mounted
into the container; jobs run with no network at all, the server on the host network at the port
SageMaker passes in SAGEMAKER_BIND_TO_PORT.
"""

from __future__ import annotations

import contextlib
import json
import os
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mlops.local import aws as local_aws
from mlops.local.container import Engine
from mlops.local.executor import LocalExecutor
from mlops.naming import Names
from mlops.settings import REPO_ROOT, load_stack
from model_code.__main__ import STEPS
from model_code.data import write_csv
from model_code.model import load_model
from pipelines.training import VALIDATE, code_bundle, definition
from problems.adult.synthetic import ADULT, synthesize

FEATURES = ADULT.feature_names


def _sagemaker_dir(path: Path) -> Path:
    """A folder as SageMaker creates it for a job's mounts: root-owned, mode 0755."""
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, 0, 0)
    path.chmod(0o755)
    return path


def _mount(host: Path, container: str, mode: str = "") -> list[str]:
    return ["-v", f"{host}:{container}{':' + mode if mode else ''}"]


# The image alone has no problem declaration (a pipeline's jobs get it in the code bundle): a job that
# runs the image's own steps gets the Adult census's folder where the bundle would put it, beside model_code/.
PROBLEM_MOUNT = _mount(REPO_ROOT / "problems" / "adult", "/opt/program/problem", "ro")


@pytest.fixture(scope="module")
def trained_model(engine: Engine, image: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`IMAGE train` as a SageMaker training job runs it: channels and config under /opt/ml/input."""
    ml = _sagemaker_dir(tmp_path_factory.mktemp("training") / "opt-ml")
    write_csv(synthesize(3000, seed=5), _sagemaker_dir(ml / "input" / "data" / "train") / "train.csv")
    write_csv(synthesize(1000, seed=6), _sagemaker_dir(ml / "input" / "data" / "validation") / "validation.csv")
    (_sagemaker_dir(ml / "input" / "config") / "hyperparameters.json").write_text(
        json.dumps({"max_iter": "40", "permutation_repeats": "1"}))
    for folder in ("model", "output/data"):
        _sagemaker_dir(ml / folder)
    result = engine.run("run", "--rm", "--network=none", *_mount(ml, "/opt/ml"), *PROBLEM_MOUNT, image, "train",
                        timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "train: candidate gbm, validation auc=" in result.stdout
    assert (ml / "model" / "model.joblib").is_file()
    assert json.loads((ml / "output" / "data" / "metrics.json").read_text())["metrics"]["validation"]["auc"] > 0.6
    return ml / "model"


def test_help_lists_every_step(engine: Engine, image: str):
    result = engine.run("run", "--rm", "--network=none", image, "--help")
    assert result.returncode == 0, result.stderr
    # The image's own step table is the checkout's: every step the source dispatches is in the image.
    listed = result.stdout.split("{", 1)[1].split("}", 1)[0].split(",")
    assert listed == [*STEPS, "env"]
    assert {"validate", "preprocess", "train", "evaluate", "champion", "drift", "quality", "serve"} <= set(listed)


def test_image_runs_as_root_on_the_python_floor(engine: Engine, image: str):
    result = engine.run("run", "--rm", "--network=none", "--entrypoint", "python", image, "-c",
                        "import os, sys, model_code; print(os.getuid(), sys.version_info >= model_code.MIN_PYTHON)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "True"]


def test_arn_tracking_uri_resolves_to_the_sagemaker_mlflow_store_offline(engine: Engine, image: str):
    """What the Train step gets in the cloud: MLflow must resolve the `arn` scheme (no network needed)."""
    probe = (
        "from mlflow.tracking._tracking_service.utils import _get_store\n"
        "store = _get_store('arn:aws:sagemaker:eu-west-1:111111111111:mlflow-tracking-server/mlops-stack-dev')\n"
        "print(type(store).__module__, type(store).__name__)\n"
    )
    result = engine.run("run", "--rm", "--network=none", "--entrypoint", "python", image, "-c", probe)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["sagemaker_mlflow.mlflow_sagemaker_store", "MlflowSageMakerStore"]


def test_unreachable_tracking_server_fails_train_with_one_line_naming_it(
        engine: Engine, image: str, trained_model: Path, tmp_path: Path):
    ml = _sagemaker_dir(tmp_path / "opt-ml")
    source = trained_model.parent
    for channel in ("train", "validation"):
        target = _sagemaker_dir(ml / "input" / "data" / channel)
        for csv in (source / "input" / "data" / channel).glob("*.csv"):
            (target / csv.name).write_bytes(csv.read_bytes())
    for folder in ("model", "output"):
        _sagemaker_dir(ml / folder)
    uri = "http://127.0.0.1:9"
    result = engine.run("run", "--rm", "--network=none", *_mount(ml, "/opt/ml"), *PROBLEM_MOUNT,
                        "-e", f"MLFLOW_TRACKING_URI={uri}", "-e", "MLFLOW_HTTP_REQUEST_MAX_RETRIES=0",
                        "-e", "MLFLOW_EXPERIMENT_NAME=e", image, "train", "--max-iter", "5", timeout=300)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"train failed: MLflow tracking server {uri}"), result.stderr
    assert "Traceback" not in result.stderr
    assert (ml / "output" / "failure").read_text().startswith(f"train failed: MLflow tracking server {uri}")


def _processing_step(tmp_path: Path) -> tuple[dict, Path]:
    """The Validate step of dev's definition, resolved, with its inputs laid out as SageMaker does."""
    settings = load_stack("dev")
    names = Names.of(settings)
    bundle = code_bundle(settings)  # model_code/ and the stack's problem, as infra uploads it
    document = definition(settings, image_uri="local", code_bundle_uri=bundle.uri(names.bucket("artifacts")),
                          role_arn=names.execution_role_arn,
                          kms_key_arn=f"arn:aws:kms:{settings.region}:{names.account_id}:key/local")
    step = next(s for s in document["Steps"] if s["Name"] == VALIDATE)
    executor = LocalExecutor(document, execution_id="image-test", work_dir=tmp_path, s3=None, sagemaker=None,
                             parameters={"InputDataUri": "s3://data/raw/"})
    arguments = executor.resolve(step["Arguments"])
    processing = _sagemaker_dir(tmp_path / "processing")
    for source in arguments["ProcessingInputs"]:
        local = _sagemaker_dir(processing / source["S3Input"]["LocalPath"].removeprefix("/opt/ml/processing/"))
        if source["InputName"] == "code":
            (local / "model_code.tar.gz").write_bytes(bundle.data)
        else:
            write_csv(synthesize(2000, seed=3), local / "data.csv")
    for output in arguments["ProcessingOutputConfig"]["Outputs"]:
        _sagemaker_dir(processing / output["S3Output"]["LocalPath"].removeprefix("/opt/ml/processing/"))
    return arguments, processing


def _run_processing(engine: Engine, image: str, arguments: dict, processing: Path):
    app = arguments["AppSpecification"]
    environment = [f"{k}={v}" for k, v in arguments["Environment"].items()]
    return engine.run(
        "run", "--rm", "--network=none", *_mount(processing, "/opt/ml/processing"),
        *[part for pair in environment for part in ("-e", pair)],
        "--entrypoint", json.dumps(app["ContainerEntrypoint"]), image, *app["ContainerArguments"], timeout=300)


def test_processing_step_writes_outputs_through_root_owned_mounts(engine: Engine, image: str, tmp_path: Path):
    arguments, processing = _processing_step(tmp_path)
    result = _run_processing(engine, image, arguments, processing)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((processing / "output" / "report" / "validation_report.json").read_text())
    assert report["status"] == "passed" and report["violations"] == []


def test_a_non_root_image_user_cannot_write_the_root_owned_outputs(engine: Engine, image: str, tmp_path: Path):
    """Why the Dockerfile says USER root: the same step in the same image as uid 1000 fails."""
    context = tmp_path / "uid1000"
    context.mkdir()
    (context / "Containerfile").write_text(f"FROM {image}\nUSER 1000:1000\n")
    variant = f"{image}-uid1000"
    built = engine.run("build", "--network=none", "-t", variant, str(context), timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    try:
        arguments, processing = _processing_step(tmp_path)
        result = _run_processing(engine, image=variant, arguments=arguments, processing=processing)
    finally:
        engine.run("rmi", "-f", variant)
    assert result.returncode != 0
    assert "Permission denied" in result.stderr
    assert not (processing / "output" / "report" / "validation_report.json").exists()


# --- serve ---------------------------------------------------------------------------------------------


def _http(method: str, url: str, body: bytes | None = None, content_type: str = "text/csv") -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


def _as_model_tar(model_dir: Path, target: Path) -> Path:
    """The folder SageMaker mounts at /opt/ml/model for a model.tar.gz made of ``model_dir``."""
    model = _sagemaker_dir(target)
    with tarfile.open(model / "model.tar.gz", "w:gz") as archive:
        for path in sorted(model_dir.iterdir()):
            archive.add(path, arcname=path.name)
    return model


@pytest.fixture(params=["folder", "tar.gz"])
def served(request: pytest.FixtureRequest, engine: Engine, image: str, trained_model: Path,
           tmp_path: Path) -> Iterator[tuple[str, str]]:
    """`IMAGE serve` with /opt/ml/model holding the model folder or SageMaker's model.tar.gz."""
    model = trained_model if request.param == "folder" else _as_model_tar(trained_model, tmp_path / "model")
    with _serving(engine, image, model) as running:
        yield running


@contextlib.contextmanager
def _serving(engine: Engine, image: str, model: Path) -> Iterator[tuple[str, str]]:
    """The container id and URL of `IMAGE serve` on ``model`` (mounted at /opt/ml/model), once it answers /ping."""
    port = local_aws.free_port()
    started = engine.run("run", "-d", "--network=host", *_mount(model, "/opt/ml/model", "ro"),
                         "-e", f"SAGEMAKER_BIND_TO_PORT={port}", "-e", "MLOPS_SERVE_HOST=127.0.0.1",
                         "-e", "SAGEMAKER_MODEL_SERVER_WORKERS=1", image, "serve")
    assert started.returncode == 0, started.stderr
    container = started.stdout.strip()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if _http("GET", f"{url}/ping")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, engine.run("logs", container).stderr[-2000:]
            time.sleep(0.2)
        yield container, url
    finally:
        engine.run("rm", "-f", "-t", "0", container)


def test_serve_answers_ping_scores_a_row_rejects_a_bad_one_and_drains_on_sigterm(
        engine: Engine, served: tuple[str, str]):
    container, url = served
    row = synthesize(1, seed=9)[FEATURES].to_csv(header=False, index=False).encode()
    status, content_type, body = _http("POST", f"{url}/invocations", row)
    assert status == 200, body
    assert 0.0 <= float(body.decode().strip()) <= 1.0
    bad = row.replace(row.split(b",")[0], b"not-an-age", 1)
    status, content_type, body = _http("POST", f"{url}/invocations", bad)
    assert status == 400 and content_type.startswith("application/json"), (status, body)
    error = json.loads(body)
    assert error["status"] == 400 and error["errors"][0]["field"] == FEATURES[0], error

    started = time.monotonic()
    assert engine.run("kill", "--signal", "TERM", container).returncode == 0
    waited = engine.run("wait", container, timeout=40)
    assert waited.stdout.strip() == "0", (waited.stdout, engine.run("logs", container).stderr[-2000:])
    assert time.monotonic() - started < 30


def test_a_problem_with_its_own_module_trains_in_the_image_and_serves_from_the_artifact_alone(
        engine: Engine, image: str, tmp_path: Path):
    """Wine's estimator and derived feature come from its custom.py: `train` imports it from the problem
    folder, and `serve` has only model.tar.gz, which carries the module's source."""
    import pandas as pd

    wine = REPO_ROOT / "problems" / "wine"
    rows = pd.read_csv(wine / "data.csv")
    ml = _sagemaker_dir(tmp_path / "opt-ml")
    for channel, part in (("train", rows[rows.index % 4 != 0]), ("validation", rows[rows.index % 4 == 0])):
        write_csv(part, _sagemaker_dir(ml / "input" / "data" / channel) / f"{channel}.csv")
    (_sagemaker_dir(ml / "input" / "config") / "hyperparameters.json").write_text(
        json.dumps({"candidate": "knn", "n_neighbors": "9"}))
    for folder in ("model", "output/data"):
        _sagemaker_dir(ml / folder)
    result = engine.run("run", "--rm", "--network=none", *_mount(ml, "/opt/ml"),
                        *_mount(wine, "/opt/program/problem", "ro"), image, "train", timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "train: candidate knn, validation balanced_accuracy=" in result.stdout

    features = rows.drop(columns="cultivar").head(6)
    expected = load_model(ml / "model").output(features)
    with _serving(engine, image, _as_model_tar(ml / "model", tmp_path / "served")) as (_, url):
        status, _, body = _http("POST", f"{url}/invocations", json.dumps(features.to_dict(orient="records")).encode(),
                                "application/json")
    assert status == 200, body
    predictions = json.loads(body)["predictions"]
    assert [p["label"] for p in predictions] == [f"class_{i}" for i in expected.argmax(axis=1)]
    served = np.array([list(p["probabilities"].values()) for p in predictions])
    assert np.allclose(served, expected, atol=1e-9)

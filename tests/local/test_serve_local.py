"""`mlops serve --local`: a registered package served by the image's `serve` entrypoint on 127.0.0.1.

One small model is trained in-process and registered in the embedded AWS once per module (no
pipeline run), like the pipeline's Register step does it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from mlops.local import aws as local_aws
from mlops.local import pipeline as local_pipeline
from mlops.naming import Names
from mlops.registry import Aws, approve
from mlops.serve_local import ServeLocalError, port_in_use, serve_local, stop_recorded
from mlops.settings import StackSettings, load_stack
from model_code.data import write_csv
from problems.adult.synthetic import synthesize
from tests.local.helpers import alive, train_model

ROW = b"39,State-gov,77516,13,Never-married,Adm-clerical,Not-in-family,White,Male,2174,0,40,United-States\n"


@dataclass
class Registry:
    state: Path
    server: local_aws.LocalAws
    first: str
    second: str


@pytest.fixture(scope="module")
def settings() -> StackSettings:
    return load_stack("dev")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, settings: StackSettings) -> Iterator[Registry]:
    """Two packages of the stack's group: v1 Approved (the champion), v2 pending (the latest)."""
    state = tmp_path_factory.mktemp("state")
    work = tmp_path_factory.mktemp("model")
    server = local_aws.start(state, account_id=settings.account_id, region=settings.region)
    try:
        write_csv(synthesize(2000, seed=5), work / "train" / "train.csv")
        write_csv(synthesize(500, seed=6), work / "validation" / "validation.csv")
        train_model(work, max_iter=30)
        with local_aws.environment(server):
            s3 = boto3.client("s3", region_name=settings.region)
            sagemaker = boto3.client("sagemaker", region_name=settings.region)
            local_pipeline.bootstrap(settings, s3, sagemaker)
            bucket = Names.of(settings).bucket("artifacts")
            s3.upload_file(str(work / "model.tar.gz"), bucket, "pipelines-x/Train/output/model.tar.gz")
            arns = [
                sagemaker.create_model_package(
                    ModelPackageGroupName=Names.of(settings).model_package_group,
                    InferenceSpecification={
                        "Containers": [{"Image": "local",
                                        "ModelDataUrl": f"s3://{bucket}/pipelines-x/Train/output/model.tar.gz"}],
                        "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"],
                    },
                    ModelApprovalStatus="PendingManualApproval",
                    CustomerMetadataProperties={"auc": auc},
                )["ModelPackageArn"]
                for auc in ("0.81", "0.82")
            ]
            approve(settings, arns[0], aws=Aws(endpoint_url=server.endpoint_url, max_attempts=1))
        yield Registry(state, server, *arns)
    finally:
        local_aws.stop(state)


def test_serves_the_champion_and_captures_requests(registry: Registry, settings: StackSettings) -> None:
    with serve_local(settings, state_dir=registry.state, model="champion", port=0, capture_rotate_seconds=0.2) as ep:
        assert ep.package_arn == registry.first
        assert ep.url == f"http://127.0.0.1:{ep.port}" and ep.port > 0
        assert ep.model_path == registry.state / "endpoints" / "mlops-stack-dev" / "v1" / "model.tar.gz"
        status, body = ep.invoke(ROW + ROW)
        assert status == 200
        scores = [float(x) for x in body.decode().split()]
        assert len(scores) == 2 and all(0.0 <= s <= 1.0 for s in scores)
        assert ep.get("/ping")[0] == 200
        assert b"mlops_serve_rows_scored_total 2" in ep.get("/metrics")[1]
        record = json.loads(ep.record_path.read_text())
        assert record["pid"] == ep.pid and record["package_arn"] == registry.first
    # Stopping flushes the capture: SageMaker's layout under <state>/capture/<endpoint>/primary/.
    files = list((registry.state / "capture" / Names.of(settings).endpoint / "primary").rglob("*.jsonl"))
    assert files and not list((registry.state / "capture").rglob("*.partial"))
    captured = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert captured[-1]["captureData"]["endpointInput"]["data"] == (ROW + ROW).decode()
    assert not ep.record_path.exists()


def test_serves_with_onnxruntime_the_same_scores(registry: Registry, settings: StackSettings) -> None:
    """`mlops serve --local --runtime onnx`: the package's model.onnx, scored by onnxruntime in the image's serve."""
    with serve_local(settings, state_dir=registry.state, port=0, capture=False) as ep:
        expected = [float(x) for x in ep.invoke(ROW + ROW)[1].decode().split()]
    with serve_local(settings, state_dir=registry.state, port=0, capture=False, runtime="onnx") as ep:
        status, body = ep.invoke(ROW + ROW)
        assert status == 200
        assert [float(x) for x in body.decode().split()] == pytest.approx(expected, abs=1e-5)
        loaded = [json.loads(line) for line in ep.log_path.read_text().splitlines() if '"model_loaded"' in line]
        assert loaded and loaded[0]["runtime"] == "onnx"


@pytest.mark.parametrize(("model", "expected"), [("latest", "second"), ("2", "second"), ("1", "first")])
def test_model_selectors(registry: Registry, settings: StackSettings, model: str, expected: str) -> None:
    with serve_local(settings, state_dir=registry.state, model=model, port=0, capture=False) as ep:
        assert ep.package_arn == getattr(registry, expected)
        assert ep.capture_root is None


def test_a_package_arn_selects_it(registry: Registry, settings: StackSettings) -> None:
    with serve_local(settings, state_dir=registry.state, model=registry.second, port=0, capture=False) as ep:
        assert ep.package.version == 2


def test_port_already_taken_is_a_clear_error(registry: Registry, settings: StackSettings) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert port_in_use(port)
        with pytest.raises(ServeLocalError, match=rf"port {port} on 127.0.0.1 is already in use.*--port 0"):
            serve_local(settings, state_dir=registry.state, model="champion", port=port)


def test_unknown_model_is_a_clear_error(registry: Registry, settings: StackSettings) -> None:
    with pytest.raises(ServeLocalError, match="model-package/mlops-stack-dev/9 not found"):
        serve_local(settings, state_dir=registry.state, model="9", port=0)
    with pytest.raises(ServeLocalError, match="expected champion, latest, a version number"):
        serve_local(settings, state_dir=registry.state, model="best", port=0)


def test_without_the_embedded_aws_it_says_what_to_run(tmp_path: Path, settings: StackSettings) -> None:
    with pytest.raises(ServeLocalError, match="is not running.*mlops pipeline run --local"):
        serve_local(settings, state_dir=tmp_path, port=0)


def test_stop_leaves_no_process_and_is_idempotent(registry: Registry, settings: StackSettings) -> None:
    ep = serve_local(settings, state_dir=registry.state, model="champion", port=0, capture=False, workers=2)
    group = ep.pid
    assert ep.running()
    assert ep.stop() == 0  # SIGTERM: a graceful exit
    assert not alive(group)
    assert not [pid for pid in os.listdir("/proc") if pid.isdigit() and _group_of(int(pid)) == group]
    assert ep.stop() == 0
    assert not port_in_use(ep.port)


def test_workers_follow_sagemakers_variable(registry: Registry, settings: StackSettings,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAGEMAKER_MODEL_SERVER_WORKERS", "2")
    with serve_local(settings, state_dir=registry.state, model="champion", port=0, capture=False) as ep:
        deadline = time.monotonic() + 10
        while "mlops_serve_workers 2.0" not in (body := ep.get("/metrics")[1].decode()):  # the second forks last
            assert time.monotonic() < deadline, body
            time.sleep(0.05)  # polling with a deadline
    monkeypatch.setenv("SAGEMAKER_MODEL_SERVER_WORKERS", "two")
    with pytest.raises(ServeLocalError, match="SAGEMAKER_MODEL_SERVER_WORKERS='two' is invalid"):
        serve_local(settings, state_dir=registry.state, model="champion", port=0, capture=False)


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def test_a_recorded_endpoint_of_a_dead_owner_is_stopped(registry: Registry, settings: StackSettings) -> None:
    ep = serve_local(settings, state_dir=registry.state, model="champion", port=0, capture=False)
    try:
        record = json.loads(ep.record_path.read_text())
        assert stop_recorded(registry.state) == []  # its owner (this process) is alive: left alone
        ep.record_path.write_text(json.dumps({**record, "owner_pid": 2**22 + 1}))  # an owner that is gone
        assert stop_recorded(registry.state) == [ep.pid]
        assert ep.wait(timeout=10) is not None
        assert not ep.record_path.exists()
    finally:
        ep.stop()

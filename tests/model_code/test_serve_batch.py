"""Batch Transform's contract, as SageMaker starts the container for a transform job (`IMAGE serve` with
SAGEMAKER_BATCH=true and the job's MaxPayloadInMB): a real server process, real HTTP."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from model_code.model import load_model
from problems.adult.synthetic import synthesize
from tests.model_code.conftest import raw_strings
from tests.model_code.test_serve import FEATURES, Server, start_server

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def batch_server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A transform job's container: two workers, a 1 MB MaxPayloadInMB, a capture folder it must not use."""
    tmp = tmp_path_factory.mktemp("batch")
    srv = start_server(model_dir, tmp, workers=2, SAGEMAKER_BATCH="true", SAGEMAKER_MAX_PAYLOAD_IN_MB="1",
                       SAGEMAKER_BATCH_STRATEGY="MULTI_RECORD", MLOPS_CAPTURE_DIR=str(tmp / "capture"))
    srv.capture = tmp / "capture"  # type: ignore[attr-defined]
    yield srv
    assert srv.stop() == 0


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return raw_strings(synthesize(300, seed=31)[FEATURES])


def jsonl(frame: pd.DataFrame, as_objects: bool) -> str:
    records = frame.astype(object).where(frame.notna(), None)
    rows = records.to_dict("records") if as_objects else records.to_numpy().tolist()
    return "".join(json.dumps(row) + "\n" for row in rows)


def test_execution_parameters_announce_the_workers_and_the_payload(batch_server: Server):
    status, ctype, body = batch_server.request("GET", "/execution-parameters")
    assert (status, ctype) == (200, "application/json")
    assert json.loads(body) == {"MaxConcurrentTransforms": 2, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 1}


def test_a_realtime_server_announces_invoke_endpoints_limit(model_dir: Path, tmp_path: Path):
    srv = start_server(model_dir, tmp_path)
    try:
        assert json.loads(srv.request("GET", "/execution-parameters")[2])["MaxPayloadInMB"] == 6
        assert srv.request("POST", "/execution-parameters", "{}")[0] == 405
    finally:
        assert srv.stop() == 0


@pytest.mark.parametrize("as_objects", [False, True], ids=["lists", "objects"])
def test_json_lines_in_one_prediction_per_line_out(batch_server: Server, model_dir: Path, frame, as_objects):
    status, ctype, body = batch_server.invoke(jsonl(frame, as_objects), "application/jsonlines")
    assert (status, ctype) == (200, "application/jsonlines"), body
    lines = body.decode().splitlines()
    assert len(lines) == len(frame)
    scores = np.array([json.loads(line)["score"] for line in lines])
    np.testing.assert_allclose(scores, load_model(model_dir).predict_proba(frame), rtol=1e-12)


def test_json_lines_and_csv_of_the_same_rows_score_alike(batch_server: Server, frame):
    csv_body = frame.to_csv(index=False, header=False, lineterminator="\n")
    _, _, from_csv = batch_server.invoke(csv_body, "text/csv")
    _, ctype, from_jsonl = batch_server.invoke(jsonl(frame, False), "application/jsonlines", accept="text/csv")
    assert ctype == "text/csv" and from_csv == from_jsonl


def test_a_bad_json_line_is_a_400_naming_its_row(batch_server: Server, frame):
    body = jsonl(frame.head(3), False).splitlines()
    body[1] = body[1][:-1]  # the second row loses its closing bracket
    status, _, out = batch_server.invoke("\n".join(body), "application/jsonlines")
    error = json.loads(out)
    assert status == 400 and error["code"] == "bad_json" and "row 1" in error["message"], error


def test_the_payload_limit_is_the_jobs_max_payload(batch_server: Server, frame):
    line = frame.head(1).to_csv(index=False, header=False, lineterminator="\n")
    assert batch_server.invoke(line * (MIB // len(line)))[0] == 200
    # refused on its Content-Length, before the body is read (so the head alone is sent)
    with socket.create_connection(("127.0.0.1", batch_server.port), timeout=10) as conn:
        conn.sendall(f"POST /invocations HTTP/1.1\r\nHost: t\r\nContent-Type: text/csv\r\n"
                     f"Content-Length: {MIB + 1}\r\n\r\n".encode())
        head, _, out = conn.makefile("rb").read().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413") and str(MIB) in json.loads(out)["message"], head


def test_a_transform_job_captures_nothing_in_the_container(batch_server: Server, frame):
    assert batch_server.invoke(frame.to_csv(index=False, header=False))[0] == 200
    assert not batch_server.capture.exists()  # type: ignore[attr-defined]


def test_a_batch_strategy_batch_transform_never_sends_stops_the_server(model_dir: Path, tmp_path: Path):
    with pytest.raises(AssertionError, match="SAGEMAKER_BATCH_STRATEGY"):
        start_server(model_dir, tmp_path, SAGEMAKER_BATCH="true", SAGEMAKER_BATCH_STRATEGY="ALL_AT_ONCE")

"""The serve entrypoint as SageMaker runs it: a real server process on a free port, real HTTP."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from model_code.model import load_model
from model_code.serve import App, Metrics, ServeConfig, negotiate
from problems.adult.synthetic import ADULT, synthesize
from tests.model_code.conftest import REPO, SERVER_GROUPS, raw_strings

FEATURES = ADULT.feature_names
STARTUP_DEADLINE = 30.0


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    """Schema-valid requests, as strings the way a client writes them (some values missing)."""
    return raw_strings(synthesize(50, seed=21)[FEATURES])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def request(self, method: str, path: str, body: bytes | str | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body.encode() if isinstance(body, str) else body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.getheader("Content-Type") or "", resp.read()
        finally:
            conn.close()

    def invoke(self, body: bytes | str, content_type: str = "text/csv", accept: str | None = None):
        headers = {"Content-Type": content_type}
        if accept:
            headers["Accept"] = accept
        return self.request("POST", "/invocations", body, headers)

    def stop(self, timeout: float = 20) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def log_lines(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{")]


def start_server(model: Path, tmp: Path, workers: int = 1, **env_vars: str) -> Server:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "MLFLOW_", "MLOPS_", "SAGEMAKER_"))}
    env.update({"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "SM_MODEL_DIR": str(model),
                "SAGEMAKER_BIND_TO_PORT": str(port), "MLOPS_SERVE_HOST": "127.0.0.1",
                "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers), **env_vars})
    log = tmp / f"serve-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "model_code", "serve"], env=env, cwd=tmp,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    SERVER_GROUPS.append(proc.pid)
    server = Server(proc, port, log)
    deadline = time.monotonic() + STARTUP_DEADLINE
    while time.monotonic() < deadline:  # poll /ping until every path is up (or the process died)
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if server.request("GET", "/ping")[0] == 200:
                return server
        except OSError:
            pass
        time.sleep(0.05)  # poll interval, not synchronisation: readiness is decided by /ping
    proc.kill()
    raise AssertionError(f"server not ready within {STARTUP_DEADLINE}s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Two pre-forked workers (shared metrics), a 64 KiB payload limit to test 413 cheaply."""
    srv = start_server(model_dir, tmp_path_factory.mktemp("serve"), workers=2,
                       MLOPS_SERVE_MAX_PAYLOAD_BYTES=str(64 * 1024))
    yield srv
    if srv.proc.poll() is None:
        assert srv.stop() == 0


def to_csv(frame: pd.DataFrame, header: bool) -> str:
    return frame.to_csv(index=False, header=header, lineterminator="\n")


def expected(model_dir: Path, frame: pd.DataFrame) -> np.ndarray:
    return load_model(model_dir).predict_proba(frame)


def csv_scores(body: bytes) -> np.ndarray:
    return np.array([float(line) for line in body.decode().splitlines()])


# --- happy paths ----------------------------------------------------------------------------
def test_the_model_loads_once_and_every_worker_serves_it(server, model_dir):
    for _ in range(6):  # fresh connections: any worker may answer; all are ready after the first 200
        status, ctype, body = server.request("GET", "/ping")
        assert status == 200 and ctype == "application/json"
        assert re.fullmatch(r"[0-9a-f]{64}", json.loads(body)["model_sha256"])
    wait_for(lambda: len([r for r in server.log_lines() if r["event"] == "worker_started"]) == 2, "two workers")
    lines = server.log_lines()
    loaded = [r["worker"] for r in lines if r["event"] == "model_loaded"]
    started = {r["worker"] for r in lines if r["event"] == "worker_started"}
    assert len(loaded) == 1 and len(started) == 2 and loaded[0] not in started  # loaded before the fork


def wait_for(condition: Callable[[], bool], what: str, deadline: float = 10.0) -> None:
    until = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > until:
            raise AssertionError(f"not within {deadline}s: {what}")
        time.sleep(0.02)  # polling with a deadline


@pytest.mark.parametrize("header", [True, False])
@pytest.mark.parametrize("n", [1, 50])
def test_csv_one_or_many_rows_with_or_without_header(server, model_dir, rows, header, n):
    frame = rows.head(n)
    status, ctype, body = server.invoke(to_csv(frame, header))
    assert status == 200, body
    assert ctype == "text/csv"
    np.testing.assert_allclose(csv_scores(body), expected(model_dir, frame), rtol=0, atol=1e-12)


def test_csv_header_may_reorder_columns_and_carry_the_label(server, model_dir, rows):
    frame = rows.head(5)
    shuffled = frame[list(reversed(FEATURES))].assign(income_gt_50k="1")
    status, _, body = server.invoke(to_csv(shuffled, True))
    assert status == 200, body
    np.testing.assert_allclose(csv_scores(body), expected(model_dir, frame), atol=1e-12)


@pytest.mark.parametrize("shape", ["lists", "objects"])
@pytest.mark.parametrize("n", [1, 20])
def test_json_rows_as_lists_or_objects(server, model_dir, shape, n):
    frame = synthesize(n, seed=33)[FEATURES]
    records = json.loads(frame.to_json(orient="records"))  # NaN -> null
    instances = records if shape == "objects" else [[r[f] for f in FEATURES] for r in records]
    status, ctype, body = server.invoke(json.dumps({"instances": instances}), "application/json")
    assert status == 200, body
    assert ctype == "application/json"
    predictions = json.loads(body)["predictions"]
    scores = expected(model_dir, frame)
    threshold = load_model(model_dir).threshold
    assert [p["label"] for p in predictions] == [int(s >= threshold) for s in scores]
    np.testing.assert_allclose([p["score"] for p in predictions], scores, atol=1e-12)


@pytest.mark.parametrize(("content_type", "accept", "returned"), [
    ("text/csv", "application/json", "application/json"),
    ("application/json", "text/csv", "text/csv"),
    ("text/csv; charset=utf-8", "*/*", "text/csv"),
    ("application/json", "text/html, application/*;q=0.5", "application/json"),
])
def test_response_follows_accept(server, rows, content_type, accept, returned):
    if content_type.startswith("text/csv"):
        body = to_csv(rows.head(3), False)
    else:
        body = json.dumps({"instances": json.loads(rows.head(3).to_json(orient="values"))})
    status, ctype, out = server.invoke(body, content_type, accept)
    assert status == 200, out
    assert ctype == returned
    count = len(json.loads(out)["predictions"]) if returned == "application/json" else len(out.splitlines())
    assert count == 3


# --- bad input: always a 4xx naming what is wrong --------------------------------------------
ROW = {"age": "39", "workclass": "State-gov", "fnlwgt": "77516", "education_num": "13",
       "marital_status": "Never-married", "occupation": "Adm-clerical", "relationship": "Not-in-family",
       "race": "White", "sex": "Male", "capital_gain": "2174", "capital_loss": "0", "hours_per_week": "40",
       "native_country": "United-States"}


def csv_line(**changes: str) -> str:
    return ",".join({**ROW, **changes}[f] for f in FEATURES)


GOOD = csv_line()


@pytest.mark.parametrize(("body", "content_type", "status", "code", "needles"), [
    (f"{GOOD}\n{GOOD},extra\n", "text/csv", 400, "field_count", ["row(s) [1]", "expected 13 fields"]),
    (f"{GOOD}\n" + ",".join(list(ROW.values())[:12]), "text/csv", 400, "field_count", ["row(s) [1]"]),
    (f"{GOOD}\n{csv_line(age='abc')}", "text/csv", 400, "type", ["'age'", "row(s) [1]", "'abc'"]),
    (f"{csv_line(age='39.5')}", "text/csv", 400, "not_integer", ["'age'", "row(s) [0]"]),
    (f"{GOOD}\n{GOOD}\n{csv_line(sex='M')}", "text/csv", 400, "unknown_category", ["'sex'", "row(s) [2]", "'M'"]),
    (f"{csv_line(hours_per_week='140')}", "text/csv", 400, "out_of_range", ["'hours_per_week'", "[1, 99]"]),
    (",".join(FEATURES[:-1]) + ",bogus\n" + GOOD, "text/csv", 400, "unknown_field", ["'bogus'", "'native_country'"]),
    ("", "text/csv", 400, "empty_body", ["empty"]),
    ("\n\n", "text/csv", 400, "empty_body", ["empty"]),
    ('{"instances": [', "application/json", 400, "bad_json", ["line 1"]),
    ('{"rows": []}', "application/json", 400, "bad_json", ["instances"]),
    ('{"instances": []}', "application/json", 400, "empty_body", ["instances"]),
    (json.dumps({"instances": [list(ROW.values())[:5]]}), "application/json", 400, "field_count", ["row 0"]),
    (json.dumps({"instances": [ROW, {k: v for k, v in ROW.items() if k != "race"}]}), "application/json", 400,
     "missing_field", ["row 1", "'race'"]),
    (json.dumps({"instances": [{**ROW, "agee": 3}]}), "application/json", 400, "unknown_field", ["'agee'"]),
    (json.dumps({"instances": [{**ROW, "age": True}]}), "application/json", 400, "type", ["'age'", "row(s) [0]"]),
    (json.dumps({"instances": [{**ROW, "sex": 1}]}), "application/json", 400, "type", ["'sex'", "row(s) [0]"]),
    (json.dumps({"instances": [ROW, {**ROW, "workclass": "Pirate"}]}), "application/json", 400,
     "unknown_category", ["'workclass'", "row(s) [1]", "'Pirate'"]),
    # Hostile JSON numbers: a list where a number belongs (one row, two rows, nested), integers past float and
    # past Python's digit limit, and the non-JSON constants NaN and Infinity.
    (json.dumps({"instances": [{**ROW, "age": [30, 31]}]}), "application/json", 400, "type", ["'age'", "row(s) [0]"]),
    (json.dumps({"instances": [{**ROW, "age": [30, 31]}, {**ROW, "age": [32, 33]}]}), "application/json", 400,
     "type", ["'age'", "row(s) [0, 1]"]),
    (json.dumps({"instances": [{**ROW, "age": [[30]]}]}), "application/json", 400, "type", ["'age'", "[[30]]"]),
    (json.dumps({"instances": [{**ROW, "age": 10 ** 400}]}), "application/json", 400, "out_of_range",
     ["'age'", "row(s) [0]"]),
    (json.dumps({"instances": [{**ROW, "capital_gain": "1" + "0" * 400}]}), "application/json", 400, "out_of_range",
     ["'capital_gain'"]),
    ('{"instances": [[' + "1" * 5000 + "]]}", "application/json", 400, "bad_json", ["4300 digits"]),
    ('{"instances": [{"age": NaN}]}', "application/json", 400, "bad_json", ["NaN", "not JSON"]),
    (json.dumps({"instances": [{**ROW, "age": "NaN"}]}), "application/json", 400, "type", ["'age'", "'NaN'"]),
    (f"{GOOD}\n{csv_line(capital_gain='nan')}", "text/csv", 400, "type", ["'capital_gain'", "row(s) [1]"]),
    ('{"instances": [{"age": -Infinity}]}', "application/json", 400, "bad_json", ["-Infinity", "not JSON"]),
    (GOOD, "application/x-www-form-urlencoded", 415, "unsupported_content_type", ["text/csv", "application/json"]),
    (b"\xff\xfe" + GOOD.encode(), "text/csv", 400, "bad_encoding", ["UTF-8"]),
])
def test_bad_input_gets_a_4xx_naming_the_field(server, body, content_type, status, code, needles):
    got, ctype, out = server.invoke(body, content_type)
    assert got == status, out
    assert ctype == "application/json"
    error = json.loads(out)
    assert error["status"] == status and error["code"] == code
    for needle in needles:
        assert needle in error["message"], (needle, error["message"])


def test_an_inference_id_invoke_endpoint_would_refuse_is_a_400(server):
    for bad in ("x" * 65, "na\u00efve", "\u00efd", "tab\there"):
        status, ctype, out = server.request("POST", "/invocations", GOOD,
                                            {"Content-Type": "text/csv", "X-Amzn-SageMaker-Inference-Id": bad})
        assert (status, ctype, json.loads(out)["code"]) == (400, "application/json", "bad_inference_id"), bad


def test_every_bad_field_is_reported(server):
    _, _, out = server.invoke(csv_line(age="x", sex="M", capital_loss="-1"))
    fields = {e["field"]: e for e in json.loads(out)["errors"]}
    assert set(fields) == {"age", "sex", "capital_loss"}
    assert all(e["rows"] == [0] for e in fields.values())


def test_unacceptable_accept_is_406(server):
    status, _, out = server.invoke(GOOD, "text/csv", "application/xml")
    assert status == 406 and "application/xml" in json.loads(out)["message"]


def test_body_over_the_limit_is_413_and_smaller_bodies_pass(server):
    line = GOOD + "\n"
    status, _, out = server.invoke(line * (64 * 1024 // len(line) + 1))
    assert status == 413, out
    assert "65536" in json.loads(out)["message"]
    status, _, _ = server.invoke(line * (64 * 1024 // len(line)))
    assert status == 200


def test_unknown_route_and_method(server):
    assert server.request("GET", "/nope")[0] == 404
    assert server.request("GET", "/invocations")[0] == 405
    assert server.request("PUT", "/invocations", GOOD, {"Content-Type": "text/csv"})[0] == 405


def test_metrics_count_requests_rows_and_the_model_across_workers(server):
    before = metric_values(server)
    for _ in range(4):  # new connections: both workers answer some
        assert server.invoke(to_csv(pd.DataFrame([ROW] * 7), True))[0] == 200
    assert server.invoke(csv_line(sex="M"))[0] == 400
    after = metric_values(server)
    ok = ("mlops_serve_requests_total", ("code", "200"), ("handler", "invocations"))
    bad = ("mlops_serve_requests_total", ("code", "400"), ("handler", "invocations"))
    assert after[ok] == before.get(ok, 0) + 4
    assert after[bad] == before.get(bad, 0) + 1
    rows = ("mlops_serve_rows_scored_total",)
    assert after[rows] == before[rows] + 28
    count = ("mlops_serve_request_duration_seconds_count", ("code", "200"), ("handler", "invocations"))
    inf = ("mlops_serve_request_duration_seconds_bucket", ("code", "200"), ("handler", "invocations"), ("le", "+Inf"))
    assert after[count] == after[inf] == after[ok]
    info = [k for k in after if k[0] == "mlops_serve_model_info"]
    assert len(info) == 1 and re.fullmatch(r"[0-9a-f]{64}", dict(info[0][1:])["model_sha256"]) and after[info[0]] == 1
    assert after[("mlops_serve_workers",)] == 2


def metric_values(server: Server) -> dict[tuple, float]:
    """Samples keyed by (name, *sorted label pairs), parsed by prometheus_client's own parser."""
    from prometheus_client.metrics_core import Metric
    from prometheus_client.parser import text_string_to_metric_families

    status, ctype, body = server.request("GET", "/metrics")
    assert status == 200 and ctype == "text/plain; version=1.0.0; charset=utf-8"
    families: list[Metric] = list(text_string_to_metric_families(body.decode()))
    return {(s.name, *sorted(s.labels.items())): s.value for f in families for s in f.samples}


def test_one_json_log_line_per_request(server):
    server.invoke(GOOD)
    requests = [r for r in server.log_lines() if r["event"] == "request"]
    assert requests, "no request log lines"
    last = [r for r in requests if r["path"] == "/invocations" and r["status"] == 200][-1]
    assert {"method", "path", "status", "latency_ms", "rows", "worker", "time"} <= last.keys()
    assert last["method"] == "POST" and last["rows"] >= 1 and last["latency_ms"] > 0
    errors = [r for r in requests if r["status"] == 400]
    assert errors and all("error" in r for r in errors)


# --- data capture and shutdown ------------------------------------------------------------------
CAPTURE_PATH = re.compile(r"my-endpoint/AllTraffic/\d{4}/\d{2}/\d{2}/\d{2}/\d{2}-\d{2}-\d{3}-[0-9a-f-]{36}\.jsonl")


def test_capture_all_requests_in_sagemaker_format_and_flush_on_sigterm(model_dir, tmp_path):
    capture = tmp_path / "capture"
    srv = start_server(model_dir, tmp_path, MLOPS_CAPTURE_DIR=str(capture),
                       MLOPS_CAPTURE_SAMPLING_PERCENTAGE="100", MLOPS_CAPTURE_ENDPOINT_NAME="my-endpoint")
    bodies = [GOOD, f"{GOOD}\n{GOOD}"]
    for body in bodies:
        assert srv.invoke(body)[0] == 200
    # InvokeEndpoint's InferenceId reaches the container as a header: kept in the record, echoed back.
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    conn.request("POST", "/invocations", body=csv_line(age="40"),
                 headers={"Content-Type": "text/csv", "X-Amzn-SageMaker-Inference-Id": "order-42"})
    tagged = conn.getresponse()
    assert tagged.status == 200 and tagged.getheader("X-Amzn-SageMaker-Inference-Id") == "order-42"
    tagged.read()
    conn.close()
    status, _, json_out = srv.invoke(json.dumps({"instances": [ROW]}), "application/json")
    assert status == 200
    assert srv.invoke(csv_line(sex="M"))[0] == 400  # failed invocations are not captured
    in_flight = start_request(srv, GOOD.encode(), sent=10)
    srv.proc.send_signal(signal.SIGTERM)
    wait_until_refused(srv.port)  # draining: no new connection is accepted
    in_flight.sendall(GOOD.encode()[10:])  # the rest of the body, after shutdown began
    head = in_flight.makefile("rb").read().decode()
    assert head.startswith("HTTP/1.1 200") and "connection: close" in head.lower(), head
    assert srv.proc.wait(20) == 0
    files = sorted(capture.rglob("*"))
    jsonl = [p for p in files if p.is_file()]
    assert jsonl and all(CAPTURE_PATH.fullmatch(p.relative_to(capture).as_posix()) for p in jsonl), files
    records = [json.loads(line) for p in jsonl for line in p.read_text().splitlines()]
    assert len(records) == 6  # 4 + the two requests of the in-flight connection
    by_input = {r["captureData"]["endpointInput"]["data"]: r for r in records}
    csv_record = by_input[GOOD]
    assert csv_record["eventVersion"] == "0"
    assert csv_record["captureData"]["endpointInput"] == {
        "observedContentType": "text/csv", "mode": "INPUT", "data": GOOD, "encoding": "CSV"}
    output = csv_record["captureData"]["endpointOutput"]
    assert output["mode"] == "OUTPUT" and output["encoding"] == "CSV" and output["observedContentType"] == "text/csv"
    assert len(output["data"].splitlines()) == 1 and 0 <= float(output["data"]) <= 1
    assert re.fullmatch(r"[0-9a-f-]{36}", csv_record["eventMetadata"]["eventId"])
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", csv_record["eventMetadata"]["inferenceTime"])
    assert by_input[csv_line(age="40")]["eventMetadata"]["inferenceId"] == "order-42"
    generated = {r["eventMetadata"]["inferenceId"] for r in records} - {"order-42"}
    assert len(generated) == 5 and all(re.fullmatch(r"[0-9a-f-]{36}", i) for i in generated)  # one per request
    json_record = by_input[json.dumps({"instances": [ROW]})]["captureData"]
    assert json_record["endpointInput"]["encoding"] == "JSON"
    assert json_record["endpointOutput"]["data"] == json_out.decode()
    stopped = srv.log_lines()[-1]
    assert stopped["event"] == "stopped" and stopped["capture_flushed"] and stopped["exit_code"] == 0


def start_request(srv: Server, body: bytes, sent: int) -> socket.socket:
    """A keep-alive connection that completed one request and has sent part of a second one."""
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    head = f"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: {len(body)}\r\n\r\n"
    sock.sendall(head.encode() + body)
    response = http.client.HTTPResponse(sock)
    response.begin()
    assert response.status == 200
    response.read()  # the connection is now served by a worker thread
    sock.sendall(head.encode() + body[:sent])
    return sock


def wait_until_refused(port: int, deadline: float = 10.0) -> None:
    until = time.monotonic() + deadline
    while time.monotonic() < until:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            return
        time.sleep(0.02)  # polling with a deadline: the listening socket closes when the SIGTERM is handled
    raise AssertionError(f"port {port} still accepts connections {deadline}s after SIGTERM")


def test_capture_at_zero_percent_writes_nothing(model_dir, tmp_path):
    capture = tmp_path / "capture"
    srv = start_server(model_dir, tmp_path, MLOPS_CAPTURE_DIR=str(capture), MLOPS_CAPTURE_SAMPLING_PERCENTAGE="0")
    for _ in range(5):
        assert srv.invoke(GOOD)[0] == 200
    written = metric_values(srv)[("mlops_serve_capture_records_total", ("outcome", "written"))]
    assert srv.stop() == 0
    assert written == 0
    assert not [p for p in capture.rglob("*") if p.is_file()]


# --- in-process units ------------------------------------------------------------------------------
def test_ping_is_503_until_the_model_is_loaded(model_dir):
    app = App(ServeConfig(model_path=model_dir), Metrics())
    assert app.ping().status == 503
    assert app.invocations("text/csv", None, GOOD.encode()).status == 503
    app.load()
    assert app.ping().status == 200
    assert app.invocations("text/csv", None, GOOD.encode()).status == 200


def test_unknown_categories_can_be_scored_as_missing_like_predict_proba(model_dir):
    app = App(ServeConfig(model_path=model_dir, unknown_categories="score"), Metrics())
    app.load()
    assert app.scorer is not None and app.scorer.fast
    response = app.invocations("text/csv", "text/csv", csv_line(sex="M").encode())
    assert response.status == 200
    expected_score = load_model(model_dir).predict_proba(pd.DataFrame([{**ROW, "sex": "M"}]))[0]
    assert float(response.body) == pytest.approx(expected_score, abs=1e-12)


def test_fast_path_matches_the_pipeline_on_real_rows(model_dir):
    app = App(ServeConfig(model_path=model_dir), Metrics())
    app.load()
    # the fast path must really be active, or this would compare the pipeline with itself; and it must
    # skip the classifier's own encoder (most of a single-row request's time)
    assert app.scorer is not None and app.scorer.fast
    assert app.scorer._classifier._preprocessor is None
    frame = raw_strings(synthesize(500, seed=99)[FEATURES])
    body = to_csv(frame, True).encode()
    fast = csv_scores(app.invocations("text/csv", None, body).body)
    app.scorer.fast = False
    slow = csv_scores(app.invocations("text/csv", None, body).body)
    np.testing.assert_array_equal(fast, slow)


@pytest.mark.parametrize(("accept", "chosen"), [
    (None, "text/csv"), ("*/*", "text/csv"), ("application/json", "application/json"),
    ("text/csv;q=0.2, application/json;q=0.9", "application/json"), ("application/xml", None),
    ("text/csv;q=0", None),
])
def test_accept_negotiation(accept, chosen):
    assert negotiate(accept, "text/csv") == chosen


def test_model_loads_from_the_tar_sagemaker_extracts(model_dir, tmp_path):
    import tarfile

    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(model_dir / "model.joblib", arcname="model.joblib")
    for path in (archive, tmp_path):  # the archive itself, or a folder holding it
        app = App(ServeConfig(model_path=path), Metrics())
        app.load()
        assert app.ping().status == 200
        assert app.invocations("text/csv", None, GOOD.encode()).status == 200


def test_a_schema_built_after_another_was_freed_judges_categories_by_its_own():
    """Schemas are built anew from model metadata; a category check cached by object id would use a
    freed schema's categories for the new one (CPython reuses ids). 200 rounds make reuse certain."""
    from model_code.schema import CategoricalFeature, Schema
    from model_code.serve import Batch, validate

    for i in range(200):
        schema = Schema.from_dict({**ADULT.to_dict(), "features": [
            CategoricalFeature("colour", (f"red{i}", f"blue{i}")).to_dict()]})
        features = validate(Batch({"colour": [f"blue{i}"]}, 1, "csv"), schema, reject_unknown_categories=True)
        assert features.categorical == {"colour": [f"blue{i}"]}
        del schema, features

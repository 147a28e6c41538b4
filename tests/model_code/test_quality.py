"""The quality job: ground truth joined to captured predictions by inference id, every label counted,
the problem's metrics on the labelled rows, CloudWatch metrics; S3 and CloudWatch are moto's."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from model_code import metrics
from model_code.capture import make_record
from model_code.model import load_model
from model_code.quality.job import QualityConfig, run_quality
from problems.adult.synthetic import ADULT, synthesize
from tests.model_code.conftest import run_step
from tests.model_code.test_serve import Server, start_server

FEATURES = ADULT.feature_names
START = datetime(2026, 5, 1, 12, tzinfo=UTC)
_POOL = synthesize(400, seed=31)
AWS_ROWS = pd.concat([_POOL[_POOL[ADULT.label] == k].head(10).reset_index(drop=True) for k in (1, 0)]) \
    .sort_index(kind="stable").reset_index(drop=True)
"""20 rows whose labels alternate 1, 0 (a window's AUC needs both classes)."""


def _csv(rows: pd.DataFrame) -> bytes:
    return rows[FEATURES].to_csv(header=False, index=False).encode()


def _request(identity: str, rows: pd.DataFrame, when: datetime, fmt: str = "csv") -> bytes:
    if fmt == "csv":
        record = make_record("text/csv", _csv(rows), "text/csv", b"0.5", when, inference_id=identity)
    else:
        instances = rows[FEATURES].astype(object).where(rows[FEATURES].notna(), None).to_dict("records")
        record = make_record("application/json", json.dumps({"instances": instances}).encode(), "application/json",
                             b"{}", when, inference_id=identity)
    return json.dumps(record).encode()


def _label(identity: str, data: str, encoding: str = "CSV") -> bytes:
    return json.dumps({"groundTruthData": {"data": data, "encoding": encoding},
                       "eventMetadata": {"eventId": identity}, "eventVersion": "0"}).encode()


def _at(hour: int, minute: int = 0) -> datetime:
    return START.replace(hour=hour, minute=minute)


@pytest.fixture()
def cases(aws):
    """One window, 12:00-13:00, labels due 2 hours after it ends: a request or a label for every case."""
    import boto3

    s3 = boto3.client("s3")
    for bucket in ("capture", "data"):
        s3.create_bucket(Bucket=bucket)
    captured = [(f"w{i}", AWS_ROWS.iloc[[i]], _at(12, 10)) for i in range(10)] + [
        ("w-multi", AWS_ROWS.iloc[[10, 11]], _at(12, 20)),      # two rows, JSON
        ("dup-cap", AWS_ROWS.iloc[[12]], _at(12, 15)), ("dup-cap", AWS_ROWS.iloc[[13]], _at(12, 16)),
        ("e1", AWS_ROWS.iloc[[14]], _at(11, 30)),               # window 11-12: labels due at 14:00
        ("e2", AWS_ROWS.iloc[[15]], _at(10, 30)),               # window 10-11: labels due at 13:00
        ("before-lookback", AWS_ROWS.iloc[[16]], _at(5, 30)),   # outside the 6 hours read before the window
        ("next", AWS_ROWS.iloc[[17]], _at(13, 30)),             # the next window's request, labelled already
    ]
    lines: dict[str, list[bytes]] = {}
    for name, rows, when in captured:
        key = f"datacapture/ep/AllTraffic/{when:%Y/%m/%d/%H}/capture.jsonl"
        lines.setdefault(key, []).append(_request(name, rows, when, "json" if name == "w-multi" else "csv"))
    truth = {f"w{i}": str(v) for i, v in enumerate(AWS_ROWS[ADULT.label].iloc[:10])}
    labels = {
        12: [_label(n, truth[n]) for n in ("w0", "w1", "w2", "w3", "w4")] + [
            _label("w-multi", json.dumps([int(v) for v in AWS_ROWS[ADULT.label].iloc[10:12]]), "JSON"),
            _label("w5", "1"), _label("dup-cap", "0")],
        13: [_label("w0", truth["w0"]),                       # the same label again: used once
             _label("w5", "0"),                               # disagrees with 12:00's
             _label("w6", "yes"), _label("w7", "1\n0"),       # not a class; two labels for one row
             _label("e1", "1"), _label("e2", "0"), _label("ghost", "1"), _label("before-lookback", "0"),
             _label("next", "1"),
             b"{not json"],
        14: [_label("w8", truth["w8"])],                      # the last hour before the deadline
        15: [_label("w9", truth["w9"])],                      # after it: this window's job does not read it
    }
    lines[f"datacapture/ep/AllTraffic/{_at(12):%Y/%m/%d/%H}/capture.jsonl"].append(b'{"captureData": 1}')
    for hour, records in labels.items():
        lines[f"ground-truth/{_at(hour):%Y/%m/%d/%H}/labels.jsonl"] = records
    for key, records in lines.items():
        bucket = "data" if key.startswith("ground-truth") else "capture"
        s3.put_object(Bucket=bucket, Key=key, Body=b"\n".join(records) + b"\n")
    return truth


def test_every_label_and_request_lands_in_exactly_one_count(cases, model_dir: Path, tmp_path: Path) -> None:
    config = QualityConfig("s3://capture/datacapture", "s3://data/ground-truth", model_dir, START, hours=1,
                           label_delay_hours=2, lookback_hours=6, output=tmp_path, namespace="mlops-stack/quality",
                           endpoint="ep-1")
    report = run_quality(config)
    assert report["join"]["counts"] == {"matched": 7, "missing": 1, "earlier_window": 1, "late": 1, "later_window": 1,
                                        "unknown_id": 2, "duplicate": 1, "conflicting": 2, "invalid": 2,
                                        "ambiguous_capture": 1}
    captured = {k: v for k, v in report["captured"].items() if k != "unreadable_examples"}
    assert captured == {"records": 13, "rows": 14, "unreadable": 1}  # apart from the ground truth's
    assert "capture.jsonl line 14: not a data-capture record" in report["captured"]["unreadable_examples"][0]
    assert report["matched_rows"] == 8 and report["coverage"] == pytest.approx(8 / 14)
    assert report["labels"]["unreadable"] == 1 and "not a ground-truth record" in report["labels"]["unreadable_examples"][0]
    assert "'next' captured 2026-05-01T13:30:00Z, after this window" in report["join"]["examples"]["later_window"][0]
    examples = report["join"]["examples"]
    assert "id 'w9' has no label yet" in examples["missing"][0]
    assert any("'w6': label 'yes' is not one of [0, 1]" in e for e in examples["invalid"])
    assert any("'w7': 2 labels for a request of 1 rows" in e for e in examples["invalid"])
    assert "(deadline 2026-05-01T13Z)" in examples["late"][0] and "'e2'" in examples["late"][0]
    assert "'e1'" in examples["earlier_window"][0]
    assert {e.split("id ")[1].split(" ")[0] for e in examples["unknown_id"]} == {"'before-lookback'", "'ghost'"}

    model = load_model(model_dir)
    order = ["w0", "w1", "w2", "w3", "w4", "w-multi", "w8"]  # the join's order: by id
    rows = {f"w{i}": AWS_ROWS.iloc[[i]] for i in range(10)} | {"w-multi": AWS_ROWS.iloc[[10, 11]]}
    frame = pd.concat([rows[n] for n in sorted(order)], ignore_index=True)
    expected = metrics.compute("binary", frame[ADULT.label].to_numpy(), model.output(frame[FEATURES]), model.threshold)
    assert report["metrics"]["auc"] == pytest.approx(expected["auc"], abs=1e-12)
    assert report["primary_metric"] == {"name": "auc", "direction": "higher", "value": report["metrics"]["auc"]}

    import boto3

    cw = boto3.client("cloudwatch")
    listed = cw.list_metrics(Namespace="mlops-stack/quality")["Metrics"]
    names = {(m["MetricName"], tuple(sorted((d["Name"], d["Value"]) for d in m["Dimensions"]))) for m in listed}
    assert ("PrimaryMetric", (("Endpoint", "ep-1"), ("Metric", "auc"))) in names
    assert {dict(dims)["Join"] for name, dims in names if name == "GroundTruthRecords"} == set(report["join"]["counts"])
    coverage = cw.get_metric_statistics(Namespace="mlops-stack/quality", MetricName="LabelCoverage",
                                        Dimensions=[{"Name": "Endpoint", "Value": "ep-1"}], StartTime=START,
                                        EndTime=START + timedelta(hours=3), Period=3600, Statistics=["Maximum"])
    assert coverage["Datapoints"][0]["Maximum"] == pytest.approx(8 / 14)
    assert (tmp_path / "quality_report.html").read_text().count("<tr>") >= 10


def test_a_window_without_labels_reports_no_labels_and_the_step_exits_0(model_dir: Path, tmp_path: Path) -> None:
    capture = tmp_path / "capture" / "ep" / "AllTraffic" / f"{START:%Y/%m/%d/%H}"
    capture.mkdir(parents=True)
    (capture / "c.jsonl").write_bytes(_request("a", AWS_ROWS.iloc[[0]], _at(12, 5)) + b"\n")
    (tmp_path / "none").mkdir()
    step = run_step("quality", "--capture", str(tmp_path / "capture"), "--ground-truth", str(tmp_path / "none"),
                    "--model", str(model_dir), "--start", "2026-05-01T12:00:00Z", "--output", str(tmp_path / "out"))
    assert step.returncode == 0, step.stderr
    assert "quality: auc=undefined on 0 labelled rows of 1 captured; 0 labels matched; missing 1" in step.stdout
    report = json.loads((tmp_path / "out" / "quality_report.json").read_text())
    assert report["status"] == "no_labels" and report["coverage"] == 0.0
    bad = run_step("quality", "--capture", "x", "--ground-truth", "y", "--model", str(model_dir), "--hours", "0")
    assert bad.returncode == 2 and "quality: --hours 0 must be >= 1" in bad.stderr


def _traffic(server: Server, frame: pd.DataFrame, prefix: str, per_request: int = 10) -> dict[str, str]:
    """Requests of ``per_request`` rows, each with its InferenceId; the labels (CSV lines) each id will get."""
    labels = {}
    for n, at in enumerate(range(0, len(frame), per_request)):
        identity, part = f"{prefix}-{n}", frame.iloc[at:at + per_request]
        status, _, body = server.request("POST", "/invocations", _csv(part),
                                         {"Content-Type": "text/csv", "X-Amzn-SageMaker-Inference-Id": identity})
        assert status == 200, body
        labels[identity] = "\n".join(str(int(v)) for v in part[ADULT.label])
    return labels


def test_labels_of_served_traffic_flag_a_quality_drop_only_where_the_population_changed(
        model_dir: Path, tmp_path: Path) -> None:
    """The server captures each request with its InferenceId; labels uploaded by id join to it. Held-out
    traffic keeps the validation AUC (within 0.05); traffic where the label no longer follows the features (a third
    of the labels flipped, as after a change in the population) falls under a bar 0.1 below it."""
    held_out, changed = synthesize(1000, seed=41), synthesize(1000, seed=42)
    flip = np.random.default_rng(0).random(len(changed)) < 0.35
    changed[ADULT.label] = np.where(flip, 1 - changed[ADULT.label], changed[ADULT.label])
    validation = load_model(model_dir).artifact["metrics"]["validation"]["auc"]
    bar = validation - 0.1  # the quality alarm's bar: well below what the model scored on validation
    results = {}
    for name, frame in (("held-out", held_out), ("changed", changed)):
        root = tmp_path / name
        root.mkdir()
        server = start_server(model_dir, root, MLOPS_CAPTURE_DIR=str(root / "capture"))
        try:
            labels = _traffic(server, frame, name)
        finally:
            assert server.stop() == 0
        now = datetime.now(UTC)
        folder = root / "ground-truth" / f"{now:%Y/%m/%d/%H}"
        folder.mkdir(parents=True)
        (folder / "labels.jsonl").write_bytes(b"\n".join(_label(k, v) for k, v in labels.items()) + b"\n")
        start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
        step = run_step("quality", "--capture", str(root / "capture"), "--ground-truth", str(root / "ground-truth"),
                        "--model", str(model_dir), "--start", start.strftime("%Y-%m-%dT%H:%M:%SZ"), "--hours", "2",
                        "--threshold", str(bar), "--output", str(root / "out"))
        assert step.returncode == 0, step.stderr
        results[name] = json.loads((root / "out" / "quality_report.json").read_text())
    for report in results.values():
        assert report["join"]["counts"]["matched"] == 100 and report["matched_rows"] == 1000
        assert sum(report["join"]["counts"].values()) == 100 and report["coverage"] == 1.0
    assert abs(results["held-out"]["primary_metric"]["value"] - validation) < 0.05
    assert results["changed"]["primary_metric"]["value"] < bar and results["changed"]["threshold"] == bar
    assert results["held-out"]["degraded"] is False and results["changed"]["degraded"] is True


def test_the_scheduled_job_scores_with_the_model_the_endpoint_serves_now(aws, model_dir: Path, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    """--model-from-endpoint: endpoint -> config -> model -> package -> ModelDataUrl, at run time (moto)."""
    import tarfile

    import boto3

    from model_code.quality.job import main

    with tarfile.open(tmp_path / "model.tar.gz", "w:gz") as archive:
        archive.add(model_dir / "model.joblib", arcname="model.joblib")
    s3, sagemaker = boto3.client("s3"), boto3.client("sagemaker")
    s3.create_bucket(Bucket="artifacts")
    s3.upload_file(str(tmp_path / "model.tar.gz"), "artifacts", "run/model.tar.gz")
    s3.put_object(Bucket="artifacts", Key="run/baseline.json", Body=b"{}")
    sagemaker.create_model_package_group(ModelPackageGroupName="g")
    package = sagemaker.create_model_package(
        ModelPackageGroupName="g", ModelApprovalStatus="Approved",
        CustomerMetadataProperties={"drift_baseline_uri": "s3://artifacts/run/baseline.json"},
        InferenceSpecification={"Containers": [{"Image": "1.dkr.ecr.us-east-1.amazonaws.com/m:1",
                                                "ModelDataUrl": "s3://artifacts/run/model.tar.gz"}],
                                "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]},
    )["ModelPackageArn"]
    sagemaker.create_model(ModelName="m", ExecutionRoleArn="arn:aws:iam::123456789012:role/r",
                           PrimaryContainer={"ModelPackageName": package})
    sagemaker.create_endpoint_config(EndpointConfigName="c", ProductionVariants=[
        {"VariantName": "primary", "ModelName": "m", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}])
    sagemaker.create_endpoint(EndpointName="ep", EndpointConfigName="c")
    capture = tmp_path / "capture" / f"{START:%Y/%m/%d/%H}"
    truth = tmp_path / "truth" / f"{START:%Y/%m/%d/%H}"
    for folder in (capture, truth):
        folder.mkdir(parents=True)
    (capture / "c.jsonl").write_bytes(b"\n".join(_request(f"r{i}", AWS_ROWS.iloc[[i]], _at(12, 1)) for i in range(6)))
    (truth / "t.jsonl").write_bytes(b"\n".join(_label(f"r{i}", str(AWS_ROWS[ADULT.label].iloc[i])) for i in range(6)))
    arguments = ["--capture", str(tmp_path / "capture"), "--ground-truth", str(tmp_path / "truth"),
                 "--start", "2026-05-01T12:00:00Z", "--output", str(tmp_path / "out"), "--endpoint", "ep"]
    assert main([*arguments, "--model-from-endpoint"]) == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "out" / "quality_report.json").read_text())
    assert report["inputs"]["model_content_sha256"] == load_model(model_dir).artifact["content_sha256"]
    assert report["join"]["counts"]["matched"] == 6 and report["primary_metric"]["value"] is not None
    assert main(arguments) == 2
    assert "give exactly one of --model or --model-from-endpoint" in capsys.readouterr().err
    assert main([*arguments[:-2], "--model-from-endpoint"]) == 2
    assert "--model-from-endpoint needs --endpoint" in capsys.readouterr().err


@pytest.fixture(scope="module", params=["wine", "diabetes"])
def task_model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A multiclass (text classes) and a regression model, trained by the steps on their problem's sample."""
    from tests.model_code.conftest import REPO

    problem = REPO / "problems" / request.param
    root = tmp_path_factory.mktemp(request.param)
    data = next(p for p in problem.iterdir() if p.name.startswith("data."))
    assert run_step("preprocess", "--problem", str(problem), "--input", str(data), "--output",
                    str(root / "data")).returncode == 0
    step = run_step("train", "--problem", str(problem), "--candidate", "linear", "--train", str(root / "data" / "train"),
                    "--validation", str(root / "data" / "validation"), "--model-dir", str(root / "model"),
                    "--output-data-dir", str(root / "out"), "--hyperparameters", str(root / "none.json"))
    assert step.returncode == 0, step.stderr
    return request.param, root


def test_multiclass_and_regression_labels_are_scored_with_their_problems_metrics(task_model, tmp_path: Path) -> None:
    """Text classes and numbers, from JSON requests: the problem's primary metric on exactly the labelled rows."""
    name, root = task_model
    model = load_model(root / "model")
    schema = model.schema
    frame = pd.read_csv(root / "data" / "test" / "test.csv", dtype={"sex": str})
    capture = tmp_path / "capture" / f"{START:%Y/%m/%d/%H}"
    truth = tmp_path / "truth" / f"{START:%Y/%m/%d/%H}"
    capture.mkdir(parents=True)
    truth.mkdir(parents=True)
    requests, labels = [], []
    for i in range(len(frame)):
        row = frame.iloc[[i]][schema.feature_names].astype(object)
        body = json.dumps(row.where(row.notna(), None).to_dict("records")).encode()
        requests.append(json.dumps(make_record("application/json", body, "application/json", b"{}", _at(12, 3),
                                               inference_id=f"r{i}")).encode())
        value = frame[schema.label].iloc[i]
        labels.append(_label(f"r{i}", json.dumps(value if isinstance(value, str) else float(value)), "JSON"))
    labels.append(_label("r0", json.dumps("not-a-label")))  # an invalid second label: counted, the valid one used
    (capture / "c.jsonl").write_bytes(b"\n".join(requests) + b"\n")
    (truth / "t.jsonl").write_bytes(b"\n".join(labels) + b"\n")
    report = run_quality(QualityConfig(str(tmp_path / "capture"), str(tmp_path / "truth"), root / "model", START,
                                       output=tmp_path / "out"))
    assert report["task"] == model.task and report["join"]["counts"]["invalid"] == 1
    assert report["matched_rows"] == len(frame) and report["coverage"] == 1.0
    raw = frame[schema.label]
    y = schema.label_indices(raw).to_numpy().astype(int) if schema.is_classification else raw.to_numpy()
    expected = metrics.compute(model.task, y, model.output(frame[schema.feature_names]), model.threshold)
    primary = report["primary_metric"]
    assert primary["name"] == {"wine": "balanced_accuracy", "diabetes": "rmse"}[name]
    assert primary["value"] == pytest.approx(expected[primary["name"]], abs=1e-12)
    assert report["degraded"] == (primary["value"] < report["threshold"] if primary["direction"] == "higher"
                                  else primary["value"] > report["threshold"])

"""The drift job: verdicts on real and synthetic traffic, capture formats, errors, S3 and CloudWatch."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from model_code import baseline as bl
from model_code import drift as dr
from model_code.capture import make_record
from model_code.data import Drift
from model_code.preprocess import preprocess, to_csv_bytes
from problems.adult.synthetic import ADULT, synthesize
from tests.model_code.conftest import run_step

WHEN = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
WINDOW = dr.Window(datetime(2024, 5, 1, 12, tzinfo=UTC), datetime(2024, 5, 1, 13, tzinfo=UTC))
FEATURES = ADULT.feature_names


def score(frame: pd.DataFrame) -> np.ndarray:
    z = -1.2 + 0.04 * (frame["age"].fillna(38) - 38) + 0.3 * (frame["education_num"].fillna(10) - 10)
    return (1 / (1 + np.exp(-z.to_numpy(dtype=float)))).round(6)


def csv_rows(frame: pd.DataFrame) -> list[str]:
    return to_csv_bytes(frame[FEATURES], ADULT).decode().split("\n")[1:len(frame) + 1]


def write_capture(root: Path, frame: pd.DataFrame, scores: np.ndarray | None = None, *, fmt: str = "csv",
                  when: datetime = WHEN, name: str = "a", per_record: int = 1) -> Path:
    """Capture records as serve writes them (model_code.capture.make_record)."""
    folder = root / "ep" / "AllTraffic" / f"{when:%Y/%m/%d/%H}"
    folder.mkdir(parents=True, exist_ok=True)
    scores = score(frame) if scores is None else scores
    rows = csv_rows(frame)
    lines = []
    for i in range(0, len(frame), per_record):
        part = slice(i, i + per_record)
        out = "\n".join(str(s) for s in scores[part]).encode()
        if fmt in ("csv", "csv_header", "base64"):
            body = "\n".join(rows[part])
            if fmt == "csv_header":
                body = ",".join(FEATURES) + "\n" + body
            ctype = "text/csv" if fmt != "base64" else "application/octet-stream"
            rec = make_record("text/csv", body.encode(), "text/csv", out, when, f"ev{i}")
            if fmt == "base64":
                rec["captureData"]["endpointInput"].update(encoding="BASE64", observedContentType="text/csv",
                                                           data=base64.b64encode(body.encode()).decode())
            del ctype
        else:
            sub = frame[FEATURES].iloc[part].astype(object)
            inst = sub.where(sub.notna(), None).to_dict("records")
            preds = [{"score": float(s), "label": int(s >= 0.5)} for s in scores[part]]
            rec = make_record("application/json", json.dumps({"instances": inst}).encode(), "application/json",
                              json.dumps({"predictions": preds}).encode(), when, f"ev{i}")
        lines.append(json.dumps(rec, separators=(",", ":")))
    path = folder / f"{name}.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def synthetic_baseline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("synbase")
    ref = synthesize(40_000, seed=1)
    base = bl.compute_baseline(ref, ADULT, {"split": "train", "rows": len(ref), "seed": 1})
    (folder / "baseline.json").write_text(bl.dumps(base))
    (folder / "prediction.json").write_text(json.dumps(bl.prediction_stats(score(ref), "binary", 0.5)))
    return folder / "baseline.json", folder / "prediction.json"


def run(tmp_path: Path, base: tuple[Path, Path], **kw) -> dict:
    cfg = dr.DriftConfig(input=str(tmp_path / "cap"), baseline=base[0], prediction_baseline=base[1],
                         output=tmp_path / "out", window=WINDOW, workers=1, **kw)
    return dr.run_drift(cfg).report


def drifted(report: dict) -> set[str]:
    return {n for n, o in report["features"].items() if o["drifted"]}


# --- verdicts --------------------------------------------------------------------------------
def test_no_drift_on_the_real_test_split_against_the_train_baseline(tmp_path, adult_csv):
    pre = preprocess(adult_csv, tmp_path / "pre")
    test = pd.read_csv(pre.paths["test"], dtype={f.name: str for f in ADULT.categorical}, keep_default_na=False,
                       na_values=[""])
    write_capture(tmp_path / "cap", test, np.full(len(test), 0.3), per_record=7)
    report = dr.run_drift(dr.DriftConfig(input=str(tmp_path / "cap"), baseline=pre.paths["baseline"],
                                         output=tmp_path / "out", workers=1)).report
    assert report["input"]["rows"] == len(test) > 7000
    assert report["drift_detected"] is False, report["violations"]
    assert report["violations"] == [] and drifted(report) == set()
    assert any("no prediction baseline" in w for w in report["warnings"])


def test_no_drift_on_a_synthetic_sample_of_the_training_distribution(tmp_path, synthetic_baseline):
    write_capture(tmp_path / "cap", synthesize(30_000, seed=5))
    report = run(tmp_path, synthetic_baseline)
    assert report["status"] == "ok" and report["drift_detected"] is False, report["violations"]
    assert report["summary"] == {"features": 13, "features_drifted": 0, "drifted": [], "prediction_drifted": False}


@pytest.mark.parametrize("drift, feature, reason", [
    (Drift(mean_shift={"age": 5}), "age", "distribution"),
    (Drift(variance_scale={"hours_per_week": 1.8}), "hours_per_week", "distribution"),
    (Drift(new_category={"workclass": ("Gig-economy", 0.15)}), "workclass", "distribution"),
    (Drift(missing_surge={"occupation": 0.3}), "occupation", "missing"),
    (Drift(missing_surge={"capital_gain": 0.2}), "capital_gain", "missing"),
])
def test_drift_is_flagged_on_exactly_the_shifted_feature(tmp_path, synthetic_baseline, drift, feature, reason):
    frame = synthesize(20_000, seed=6, drift=drift)
    write_capture(tmp_path / "cap", frame, score(synthesize(20_000, seed=6)))   # scores undisturbed
    report = run(tmp_path, synthetic_baseline)
    assert drifted(report) == {feature}
    assert report["drift_detected"] is True and report["summary"]["drifted"] == [feature]
    assert [(v["feature"], v["check"]) for v in report["violations"]] == [(feature, reason)]
    assert report["prediction"]["drifted"] is False


def test_prediction_drift(tmp_path, synthetic_baseline):
    frame = synthesize(20_000, seed=7)
    write_capture(tmp_path / "cap", frame, np.clip(score(frame) + 0.2, 0, 1))
    report = run(tmp_path, synthetic_baseline)
    assert drifted(report) == set()
    assert report["prediction"]["drifted"] is True and report["summary"]["prediction_drifted"] is True
    assert report["drift_detected"] is True
    assert report["prediction"]["positive_rate"] > report["prediction"]["baseline_positive_rate"]


def test_a_trivial_shift_on_half_a_million_rows_is_significant_but_not_drift():
    ref = synthesize(40_000, seed=1)["age"].to_numpy()
    base = bl.numeric_stats(ref)
    cur = synthesize(500_000, seed=3)["age"].to_numpy() + 0.3   # 0.3 years on a 13.7 std
    out = dr.compare_numeric(cur, base, len(ref), dr.Thresholds())
    assert out["test"]["p_value"] < 1e-6
    assert out["psi"] < 0.02 and out["effect"]["value"] < 0.05
    assert out["drifted"] is False


def test_numeric_effect_is_the_normed_wasserstein_distance():
    """A shift of 0.12 standard deviations: KS D and PSI stay under their thresholds, the
    normed Wasserstein distance (Evidently's numeric default) does not; it matches scipy's."""
    ref = synthesize(40_000, seed=1)["age"].to_numpy(dtype=float)
    base = bl.numeric_stats(ref)
    cur = synthesize(200_000, seed=4)["age"].to_numpy(dtype=float) + 0.12 * ref.std()
    out = dr.compare_numeric(cur, base, len(ref), dr.Thresholds())
    assert out["effect"]["name"] == "wasserstein"
    assert out["effect"]["value"] == pytest.approx(stats.wasserstein_distance(ref, cur) / ref.std(), rel=0.02)
    assert out["test"]["statistic"] < 0.1 and out["psi"] < 0.2 and out["effect"]["value"] >= 0.1
    assert out["drifted"] is True
    older = {k: v for k, v in base.items() if k != "percentiles"}   # a baseline from before percentiles
    out = dr.compare_numeric(cur, older, len(ref), dr.Thresholds())
    assert out["effect"] == {"name": "ks_d", "value": out["test"]["statistic"]} and out["drifted"] is False


@pytest.mark.parametrize("seed", [8, 11])   # each had one feature at p < 0.01 before the correction
def test_small_windows_do_not_flag_noise(tmp_path, synthetic_baseline, seed):
    write_capture(tmp_path / "cap", synthesize(40, seed=seed))
    report = run(tmp_path, synthetic_baseline)
    assert report["input"]["rows"] == 40 and report["drift_detected"] is False, report["violations"]


def test_unseen_categories_are_reported_not_fatal(tmp_path, synthetic_baseline):
    frame = synthesize(20_000, seed=9, drift=Drift(new_category={"workclass": ("Gig-economy", 0.005)}))
    write_capture(tmp_path / "cap", frame)
    report = run(tmp_path, synthetic_baseline)
    wc = report["features"]["workclass"]
    assert wc["unseen"] == [{"value": "Gig-economy", "count": 100}]
    assert wc["unseen_share"] == pytest.approx(100 / wc["count"], rel=1e-4)
    assert wc["drifted"] is False and report["drift_detected"] is False
    assert any(w.startswith("workclass:") and "'Gig-economy' (100)" in w for w in report["warnings"])


# --- capture formats ---------------------------------------------------------------------------
@pytest.mark.parametrize("fmt, per_record", [("csv", 1), ("csv", 5), ("csv_header", 3), ("json", 4),
                                             ("base64", 2)])
def test_capture_formats_give_the_same_statistics(tmp_path, synthetic_baseline, fmt, per_record):
    frame = synthesize(3_000, seed=10, drift=Drift(mean_shift={"age": 4}, missing_surge={"fnlwgt": 0.1}))
    write_capture(tmp_path / "ref" / "cap", frame)
    write_capture(tmp_path / "cap", frame, fmt=fmt, per_record=per_record)
    expected = run(tmp_path / "ref", synthetic_baseline)
    report = run(tmp_path, synthetic_baseline)
    assert report["input"]["rows"] == 3_000 and report["input"]["predictions"] == 3_000
    assert report["features"] == expected["features"] and report["prediction"] == expected["prediction"]


def test_header_in_another_column_order_is_accepted(tmp_path, synthetic_baseline):
    frame = synthesize(500, seed=11)
    write_capture(tmp_path / "ref" / "cap", frame)
    cols = list(reversed(FEATURES))
    body = to_csv_bytes(frame[cols], ADULT).decode().strip()
    folder = tmp_path / "cap"
    folder.mkdir()
    rec = make_record("text/csv", body.encode(), "text/csv", "\n".join(map(str, score(frame))).encode(), WHEN)
    (folder / "x.jsonl").write_text(json.dumps(rec) + "\n")
    assert run(tmp_path, synthetic_baseline)["features"] == run(tmp_path / "ref", synthetic_baseline)["features"]


def test_window_selects_hour_folders_and_records(tmp_path, synthetic_baseline):
    write_capture(tmp_path / "cap", synthesize(100, seed=12), name="in")
    write_capture(tmp_path / "cap", synthesize(50, seed=13), when=datetime(2024, 5, 1, 13, 0, tzinfo=UTC))
    late = write_capture(tmp_path / "cap", synthesize(30, seed=14), name="late")   # hour 12 folder ...
    late.write_text(late.read_text().replace("2024-05-01T12:30:00Z", "2024-05-01T13:05:00Z"))  # ... but 13:05
    report = run(tmp_path, synthetic_baseline)
    assert report["input"]["files"] == 2 and report["input"]["rows"] == 100
    assert report["input"]["records_outside_window"] == 30
    assert dr.list_local(tmp_path / "cap", dr.Window()) and len(dr.list_local(tmp_path / "cap", dr.Window())) == 3


# --- errors and empty windows (command line) ------------------------------------------------------
def cli(tmp_path: Path, base: tuple[Path, Path], *extra: str):
    return run_step("drift", "--input", str(tmp_path / "cap"), "--baseline", str(base[0]),
                    "--prediction-baseline", str(base[1]), "--output", str(tmp_path / "out"),
                    "--workers", "1", *extra)


def test_empty_window_exits_0_with_a_no_data_report(tmp_path, synthetic_baseline):
    write_capture(tmp_path / "cap", synthesize(20, seed=15))
    r = cli(tmp_path, synthetic_baseline, "--start", "2024-05-02T00:00:00Z", "--hours", "1")
    assert r.returncode == 0, r.stderr
    assert "drift: no data: no captured rows in the window 2024-05-02T00:00:00Z .. 2024-05-02T01:00:00Z" in r.stdout
    report = json.loads((tmp_path / "out" / "drift_report.json").read_text())
    assert report["status"] == "no_data" and report["drift_detected"] is False and report["features"] == {}
    assert "No data" in (tmp_path / "out" / "drift_report.html").read_text()
    # no data: only the row count is published, stamped with the window end
    assert dr.metric_data(report, "ep") == [{
        "MetricName": "CapturedRows", "Dimensions": [{"Name": "Endpoint", "Value": "ep"}], "Value": 0.0,
        "Unit": "Count", "Timestamp": datetime(2024, 5, 2, 1, tzinfo=UTC)}]


def test_missing_input_folder_is_an_error(tmp_path, synthetic_baseline):
    r = cli(tmp_path, synthetic_baseline)
    assert r.returncode == 1 and f"drift failed: capture input {tmp_path / 'cap'} does not exist" in r.stderr


def test_wrong_column_count_names_file_line_and_event(tmp_path, synthetic_baseline):
    path = write_capture(tmp_path / "cap", synthesize(50, seed=16))
    lines = path.read_text().splitlines()
    rec = json.loads(lines[17])
    rec["captureData"]["endpointInput"]["data"] = rec["captureData"]["endpointInput"]["data"].rsplit(",", 1)[0]
    lines[17] = json.dumps(rec)
    path.write_text("\n".join(lines) + "\n")
    r = cli(tmp_path, synthetic_baseline)
    assert r.returncode == 1
    assert f"drift failed: {path} line 18 (eventId 'ev17'): a CSV row has 12 fields, the schema 'adult-income' " \
           "has 13 features" in r.stderr
    assert "Traceback" not in r.stderr


def test_renamed_header_column_is_named(tmp_path, synthetic_baseline):
    frame = synthesize(5, seed=17)
    write_capture(tmp_path / "cap", frame, fmt="csv_header", per_record=5)
    path = next((tmp_path / "cap").rglob("*.jsonl"))
    path.write_text(path.read_text().replace("hours_per_week", "hours", 1))
    r = cli(tmp_path, synthetic_baseline)
    assert r.returncode == 1
    assert "CSV header does not match the schema 'adult-income': missing ['hours_per_week'], unexpected ['hours']" \
        in r.stderr


def test_unknown_json_field_and_bad_records_are_named(tmp_path, synthetic_baseline):
    frame = synthesize(4, seed=18).rename(columns={"sex": "gender"})
    folder = tmp_path / "cap"
    folder.mkdir()
    inst = frame.drop(columns=["income_gt_50k"]).astype(object).to_dict("records")
    rec = make_record("application/json", json.dumps({"instances": inst}).encode(), "application/json",
                      json.dumps({"predictions": [{"score": 0.1}] * 4}).encode(), WHEN, "e1")
    (folder / "a.jsonl").write_text(json.dumps(rec) + "\n")
    r = cli(tmp_path, synthetic_baseline)
    assert r.returncode == 1 and "instance 0 has unexpected field(s) ['gender']" in r.stderr
    (folder / "a.jsonl").write_text('{"not": "capture"}\n')
    r = cli(tmp_path, synthetic_baseline)
    assert r.returncode == 1 and f"{folder / 'a.jsonl'} line 1: not a SageMaker data-capture record" in r.stderr


def test_prediction_count_mismatch_and_non_numeric_values_are_named(tmp_path, synthetic_baseline):
    path = write_capture(tmp_path / "cap", synthesize(10, seed=19), per_record=2)
    text = path.read_text()
    lines = text.splitlines()
    rec = json.loads(lines[2])
    rec["captureData"]["endpointOutput"]["data"] = "0.5"
    lines[2] = json.dumps(rec)
    path.write_text("\n".join(lines) + "\n")
    r = cli(tmp_path, synthetic_baseline)
    assert r.returncode == 1 and "line 3 (eventId 'ev4'): 2 input row(s) but 1 prediction(s)" in r.stderr
    rec = json.loads(text.splitlines()[1])
    rec["captureData"]["endpointInput"]["data"] = "abc" + rec["captureData"]["endpointInput"]["data"][2:]
    path.write_text("\n".join([text.splitlines()[0], json.dumps(rec)]) + "\n")
    r = cli(tmp_path, synthetic_baseline)
    assert r.returncode == 1 and "line 2 (eventId 'ev2'): feature 'age' must be numeric, got 'abc" in r.stderr


def test_bad_arguments_exit_2(tmp_path, synthetic_baseline):
    r = cli(tmp_path, synthetic_baseline, "--start", "yesterday")
    assert r.returncode == 2 and "--start: 'yesterday' is not an ISO 8601 time" in r.stderr
    r = cli(tmp_path, synthetic_baseline, "--min-effect", "2", "--p-value", "0")
    assert r.returncode == 2
    assert "--p-value 0.0 must be in (0, 1); --min-effect 2.0 must be in (0, 1]" in r.stderr, r.stderr
    (tmp_path / "cap").mkdir()
    r = cli(tmp_path, synthetic_baseline, "--namespace", "mlops-stack/dev")
    assert r.returncode == 2 and "publishing metrics needs an endpoint name" in r.stderr


def test_cli_reports_drift_and_fail_on_drift(tmp_path, synthetic_baseline):
    write_capture(tmp_path / "cap", synthesize(5_000, seed=20, drift=Drift(mean_shift={"age": 8})))
    r = cli(tmp_path, synthetic_baseline, "--fail-on-drift")
    assert r.returncode == 3, r.stderr
    assert "1/13 features drifted ['age']; prediction DRIFT" in r.stdout


# --- reports -------------------------------------------------------------------------------------
def test_html_report_is_self_contained(tmp_path, synthetic_baseline):
    write_capture(tmp_path / "cap", synthesize(2_000, seed=21, drift=Drift(new_category={"race": ("<b>x</b>", 0.2)})))
    run(tmp_path, synthetic_baseline)
    html = (tmp_path / "out" / "drift_report.html").read_text()
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert "<script" not in html and "<link" not in html and "@import" not in html
    assert html.count("<svg") == 14 and "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html


def test_report_json_format(tmp_path, synthetic_baseline):
    write_capture(tmp_path / "cap", synthesize(1_000, seed=22))
    report = json.loads(json.dumps(run(tmp_path, synthetic_baseline)))
    on_disk = json.loads((tmp_path / "out" / "drift_report.json").read_text())
    assert on_disk == report
    assert report["format"] == "mlops-stack/drift-report" and report["format_version"] == 1
    assert report["thresholds"].pop("p_value_per_test") == pytest.approx(0.01 / 14, rel=1e-5)
    assert report["thresholds"] == {"psi": 0.2, "p_value": 0.01, "min_effect": 0.1, "missing_delta": 0.05,
                                    "psi_epsilon": 1e-4, "tests": 14}
    assert report["window"] == {"start": "2024-05-01T12:00:00Z", "end": "2024-05-01T13:00:00Z"}
    age, race = report["features"]["age"], report["features"]["race"]
    assert set(age) >= {"kind", "drifted", "reasons", "rows", "count", "psi", "test", "effect", "missing",
                        "distribution", "current", "baseline"}
    assert age["test"]["name"] == "ks" and race["test"]["name"] == "chi2" and race["effect"]["name"] == "tvd"
    assert race["distribution"]["labels"][-1] == "(unseen)"
    assert sum(age["distribution"]["current"]) == pytest.approx(1, abs=1e-4)


# --- statistics against scipy ------------------------------------------------------------------------
@pytest.mark.parametrize("d, n, m", [(0.01, 30_000, 1_000_000), (0.05, 1000, 1000), (0.02, 20_000, 30_000), (0.003, 5e5, 5e5)])
def test_ks_pvalue_is_close_to_scipy_exact(d, n, m):
    expected = stats.kstwobign.sf(d * np.sqrt(n * m / (n + m)))
    assert dr.ks_pvalue(d, n, m) == pytest.approx(expected, rel=0.1, abs=1e-3)


def test_chi2_homogeneity_matches_scipy():
    b, c = np.array([500.0, 300, 200, 0]), np.array([480.0, 330, 180, 10])
    stat, p, dof = dr.chi2_homogeneity(b, c)
    s2, p2, dof2, _ = stats.chi2_contingency(np.vstack([b, c])[:, :], correction=False)
    assert (stat, p, dof) == pytest.approx((s2, p2, dof2), rel=1e-6)


# --- S3 input and CloudWatch metrics (moto, in process) -------------------------------------------------
def test_s3_input_and_cloudwatch_metrics(tmp_path, synthetic_baseline, aws):
    import boto3

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="capture-bucket")
    local = tmp_path / "local"
    write_capture(local, synthesize(3_000, seed=23, drift=Drift(mean_shift={"age": 8})))
    write_capture(local, synthesize(100, seed=24), when=datetime(2024, 5, 1, 10, 5, tzinfo=UTC), name="early")
    for path in local.rglob("*.jsonl"):
        s3.upload_file(str(path), "capture-bucket", f"datacapture/{path.relative_to(local).as_posix()}")
    s3.put_object(Bucket="capture-bucket", Key="datacapture/ep/AllTraffic/2024/05/01/12/x.jsonl.partial", Body=b"{")
    cfg = dr.DriftConfig(input="s3://capture-bucket/datacapture", baseline=synthetic_baseline[0],
                         prediction_baseline=synthetic_baseline[1], output=tmp_path / "out", window=WINDOW,
                         namespace="mlops-stack/test", endpoint="ep-1", workers=1)
    report = dr.run_drift(cfg).report
    assert report["input"]["files"] == 1 and report["input"]["rows"] == 3_000
    assert drifted(report) == {"age"}
    assert report["metrics"] == {"namespace": "mlops-stack/test", "endpoint": "ep-1", "published": 31}

    cw = boto3.client("cloudwatch")
    metrics = cw.list_metrics(Namespace="mlops-stack/test")["Metrics"]
    by_name: dict[str, list] = {}
    for m in metrics:
        by_name.setdefault(m["MetricName"], []).append({d["Name"]: d["Value"] for d in m["Dimensions"]})
    assert by_name["DriftDetected"] == [{"Endpoint": "ep-1"}]
    assert by_name["FeaturesDrifted"] == [{"Endpoint": "ep-1"}]
    assert by_name["CapturedRows"] == [{"Endpoint": "ep-1"}]
    assert by_name["PredictionDriftScore"] == [{"Endpoint": "ep-1"}]
    assert sorted(d["Feature"] for d in by_name["FeatureDriftScore"]) == sorted(FEATURES)
    assert all(d["Endpoint"] == "ep-1" for d in by_name["FeatureDrifted"])

    def value(name: str, **dims: str) -> float:
        r = cw.get_metric_statistics(
            Namespace="mlops-stack/test", MetricName=name, Statistics=["Maximum"], Period=60,
            Dimensions=[{"Name": "Endpoint", "Value": "ep-1"}, *({"Name": k, "Value": v} for k, v in dims.items())],
            StartTime=datetime(2024, 5, 1, tzinfo=UTC), EndTime=datetime(2024, 5, 2, tzinfo=UTC))
        return r["Datapoints"][0]["Maximum"]

    assert value("DriftDetected") == 1.0 and value("FeaturesDrifted") == 1.0 and value("CapturedRows") == 3000
    assert value("FeatureDrifted", Feature="age") == 1.0 and value("FeatureDrifted", Feature="sex") == 0.0
    assert value("FeatureDriftScore", Feature="age") == pytest.approx(report["features"]["age"]["psi"])


def test_s3_listing_finds_hour_folders_under_endpoint_and_variant(aws):
    import boto3

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="bkt-capture")
    for key in ("p/ep/AllTraffic/2024/05/01/11/a.jsonl", "p/ep/AllTraffic/2024/05/01/12/b.jsonl",
                "p/ep/Canary/2024/05/01/12/c.jsonl", "p/ep/AllTraffic/2024/05/01/13/d.jsonl"):
        s3.put_object(Bucket="bkt-capture", Key=key, Body=b"")
    assert dr.list_s3("s3://bkt-capture/p", WINDOW) == ["s3://bkt-capture/p/ep/AllTraffic/2024/05/01/12/b.jsonl",
                                                       "s3://bkt-capture/p/ep/Canary/2024/05/01/12/c.jsonl"]
    assert dr.list_s3("s3://bkt-capture/p/ep/Canary/", WINDOW) == ["s3://bkt-capture/p/ep/Canary/2024/05/01/12/c.jsonl"]
    assert len(dr.list_s3("s3://bkt-capture/p", dr.Window())) == 4


def test_metrics_are_sent_in_batches_of_at_most_1000():
    class Client:
        def __init__(self) -> None:
            self.calls: list[tuple[str, int]] = []

        def put_metric_data(self, Namespace: str, MetricData: list) -> None:  # noqa: N803 (boto3 names)
            self.calls.append((Namespace, len(MetricData)))

    out = {"psi": 0.1, "drifted": False}
    report = {"status": "ok", "window": {"end": "2024-05-01T13:00:00Z"}, "input": {"rows": 5},
              "drift_detected": False, "summary": {"features_drifted": 0}, "prediction": None,
              "features": {f"f{i}": out for i in range(700)}}
    client = Client()
    assert dr.publish_metrics(report, "mlops-stack/dev", "ep", client) == 1403
    assert client.calls == [("mlops-stack/dev", 1000), ("mlops-stack/dev", 403)]


def test_lines_in_another_key_order_are_read_exactly(tmp_path, synthetic_baseline):
    """A record's keys in another order read the same (JSON objects are unordered)."""
    frame = synthesize(2_000, seed=25, drift=Drift(mean_shift={"age": 3}))
    write_capture(tmp_path / "ref" / "cap", frame)
    path = write_capture(tmp_path / "cap", frame)
    lines = path.read_text().splitlines()
    for k in (0, 7, 1999):
        rec = json.loads(lines[k])
        cap = rec["captureData"]
        rec["captureData"] = {"endpointOutput": cap["endpointOutput"], "endpointInput": cap["endpointInput"]}
        lines[k] = json.dumps(rec, separators=(",", ":"))
    path.write_text("\n".join(lines) + "\n")
    report = run(tmp_path, synthetic_baseline)
    assert report["input"]["rows"] == 2_000
    assert report["features"] == run(tmp_path / "ref", synthetic_baseline)["features"]


def test_every_record_shape_in_one_file_reads_like_one_row_records(tmp_path, synthetic_baseline):
    """One-row CSV records (with or without serve's trailing newline), multi-row, JSON, BASE64 and
    offset-time records in one file read exactly like the same rows as plain one-row records."""
    frame = synthesize(1_200, seed=26, drift=Drift(mean_shift={"age": 3}, missing_surge={"occupation": 0.2}))
    write_capture(tmp_path / "ref" / "cap", frame)
    rows, scores = csv_rows(frame), score(frame)
    folder = tmp_path / "cap" / "ep" / "AllTraffic" / f"{WHEN:%Y/%m/%d/%H}"
    folder.mkdir(parents=True)
    lines = []
    for i in range(0, 1_200, 10):
        kind = (i // 10) % 6
        part = slice(i, i + 10)
        if kind in (0, 1):   # ten one-row records: without, then with a trailing newline (serve)
            nl = "\n" if kind else ""
            recs = [make_record("text/csv", (rows[k] + nl).encode(), "text/csv", f"{scores[k]}{nl}".encode(),
                                WHEN, f"ev{k}") for k in range(i, i + 10)]
        elif kind == 2:       # one record of ten rows
            recs = [make_record("text/csv", "\n".join(rows[part]).encode() + b"\n", "text/csv",
                                "\n".join(map(str, scores[part])).encode(), WHEN, f"ev{i}")]
        elif kind == 3:       # JSON instances
            sub = frame[FEATURES].iloc[part].astype(object)
            recs = [make_record("application/json", json.dumps({"instances": sub.where(sub.notna(), None)
                                                                .to_dict("records")}).encode(),
                                "application/json", json.dumps({"predictions": scores[part].tolist()}).encode(),
                                WHEN, f"ev{i}")]
        elif kind == 4:       # BASE64 one-row records
            recs = [make_record("application/x-csv", rows[k].encode(), "text/csv", str(scores[k]).encode(), WHEN,
                                f"ev{k}") for k in range(i, i + 10)]
            for r in recs:
                r["captureData"]["endpointInput"]["observedContentType"] = "text/csv"
        else:                 # one-row records with an offset instead of Z
            recs = [make_record("text/csv", rows[k].encode(), "text/csv", str(scores[k]).encode(), WHEN,
                                f"ev{k}") for k in range(i, i + 10)]
            for r in recs:
                r["eventMetadata"]["inferenceTime"] = "2024-05-01T14:30:00+02:00"
        lines += [json.dumps(r, separators=(",", ":")) for r in recs]
    (folder / "a.jsonl").write_text("\n".join(lines) + "\n")
    report = run(tmp_path, synthetic_baseline)
    assert report["input"]["rows"] == 1_200 and report["input"]["predictions"] == 1_200
    expected = run(tmp_path / "ref", synthetic_baseline)
    assert report["features"] == expected["features"] and report["prediction"] == expected["prediction"]


def test_bad_values_and_bytes_on_one_row_records_are_named(tmp_path, synthetic_baseline):
    path = write_capture(tmp_path / "cap", synthesize(30, seed=27))
    lines = path.read_text().splitlines()
    rec = json.loads(lines[12])
    rec["captureData"]["endpointInput"]["data"] = "abc" + rec["captureData"]["endpointInput"]["data"][2:]
    path.write_text("\n".join([*lines[:12], json.dumps(rec, separators=(",", ":")), *lines[13:]]) + "\n")
    r = cli(tmp_path, synthetic_baseline)
    assert r.returncode == 1 and "line 13 (eventId 'ev12'): feature 'age' must be numeric, got 'abc" in r.stderr
    path.write_bytes("\n".join(lines).encode().replace(b"Private", b"Priv\xffate", 1) + b"\n")
    bad_line = next(i for i, line in enumerate(lines) if "Private" in line) + 1
    r = cli(tmp_path, synthetic_baseline)
    assert r.returncode == 1 and f"{path} line {bad_line}: not UTF-8 text" in r.stderr, r.stderr


@pytest.mark.parametrize("broken", [
    lambda line: line[:-1],                 # no final brace
    lambda line: line + line,               # two records on one line
    lambda line: line + ",}",               # trailing text
    lambda line: "\ufeff" + line,           # a byte order mark
    lambda line: line.replace('"captureData"', '"captureDatum"'),
])
def test_a_line_that_is_not_a_capture_record_is_named(broken):
    good = [json.dumps(make_record("text/csv", ",".join(csv_rows(synthesize(1, seed=k))).encode(), "text/csv",
                                   b"0.5", WHEN, f"e{k}"), separators=(",", ":")) for k in range(4)]
    good[2] = broken(good[2])
    with pytest.raises(dr.CaptureError, match=r"^x line 3: not a SageMaker data-capture record"):
        dr.read_chunks([("\n".join(good) + "\n").encode()], "x", ADULT)


def test_two_records_on_one_line_beside_a_blank_one_are_named_not_dropped():
    """msgspec's decode_lines splits at any whitespace: two records glued on one line and a blank line
    elsewhere give as many records as lines, which must not pass for one record per line."""
    rows = csv_rows(synthesize(3, seed=40))
    good = [json.dumps(make_record("text/csv", r.encode(), "text/csv", b"0.5", WHEN, f"e{k}"), separators=(",", ":"))
            for k, r in enumerate(rows)]
    data = (good[0] + good[1] + "\n" + good[2] + "\n\n" + good[0] + "\n").encode()
    with pytest.raises(dr.CaptureError, match=r"^x line 1: not a SageMaker data-capture record"):
        dr.read_chunks([data], "x", ADULT)

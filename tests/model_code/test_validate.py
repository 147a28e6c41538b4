import json

import pandas as pd
import pytest

from model_code.data import write_csv
from model_code.validate import REPORT_NAME, run
from problems.adult.synthetic import ADULT, synthesize
from tests.model_code.conftest import raw_strings, run_step


def _validate(tmp_path, frame: pd.DataFrame):
    write_csv(raw_strings(frame), tmp_path / "in" / "data.csv")
    code, path = run(tmp_path / "in", tmp_path / "out")
    return code, json.loads(path.read_text())


def _only(report, check):
    found = [v for v in report["violations"] if v["check"] == check]
    assert found, f"no {check!r} violation in {report['violations']}"
    assert {v["check"] for v in report["violations"]} == {check}, report["violations"]
    return found


def test_real_dataset_passes_with_profile(adult_csv, tmp_path):
    code, path = run(adult_csv, tmp_path)
    report = json.loads(path.read_text())
    assert code == 0 and report["status"] == "passed", report["violations"]
    assert report["input"]["rows"] == 48842
    prof = report["profile"]
    age = prof["columns"]["age"]
    assert (age["type"], age["dtype"], age["missing_share"], age["min"], age["max"]) == (
        "numeric", "int", 0.0, 17.0, 90.0)
    assert age["mean"] == pytest.approx(38.643585) and age["std"] == pytest.approx(13.71037)
    assert prof["columns"]["workclass"]["top"]["Private"] == pytest.approx(0.694, abs=0.001)
    assert prof["columns"]["workclass"]["missing_share"] == pytest.approx(0.0573, abs=1e-4)
    assert prof["label"]["shares"]["1"] == pytest.approx(0.2393, abs=1e-4)
    # 52 exact duplicate rows are reported, but stay under the 1% threshold
    assert prof["duplicate_rows"] == 52
    assert any(w["check"] == "duplicates" for w in report["warnings"])


def test_clean_synthetic_passes(tmp_path, small):
    code, report = _validate(tmp_path, small)
    assert code == 0, report["violations"]


def test_wrong_type_names_column_and_rows(tmp_path, small):
    raw = raw_strings(small)
    raw.loc[[5, 17], "age"] = "forty"
    write_csv(raw, tmp_path / "in" / "d.csv")
    code, path = run(tmp_path / "in", tmp_path / "out")
    report = json.loads(path.read_text())
    (v,) = _only(report, "type")
    assert code == 1 and v["column"] == "age" and v["rows"] == [5, 17]
    assert v["locations"][0] == {"file": "d.csv", "row": 5, "line": 7}
    assert v["examples"] == ["forty", "forty"]


def test_fractional_value_in_integer_column(tmp_path, small):
    small.loc[3, "hours_per_week"] = 40.5
    code, report = _validate(tmp_path, small)
    (v,) = _only(report, "type")
    assert code == 1 and v["column"] == "hours_per_week" and v["rows"] == [3]


def test_out_of_range(tmp_path, small):
    small.loc[[2, 9], "age"] = [130, 5]
    code, report = _validate(tmp_path, small)
    (v,) = _only(report, "range")
    assert code == 1 and v["column"] == "age" and v["rows"] == [2, 9] and v["examples"] == [130, 5]


def test_unknown_category(tmp_path, small):
    small.loc[11, "workclass"] = "Space-force"
    code, report = _validate(tmp_path, small)
    (v,) = _only(report, "category")
    assert code == 1 and v["column"] == "workclass" and v["rows"] == [11]
    assert "Space-force" in v["message"]


def test_missing_values_over_the_allowed_share(tmp_path, small):
    small.loc[[4, 8], "sex"] = None  # sex allows no missing values
    code, report = _validate(tmp_path, small)
    (v,) = _only(report, "missing")
    assert code == 1 and v["column"] == "sex" and v["rows"] == [4, 8]


def test_missing_values_within_the_allowed_share_are_a_warning(tmp_path, small):
    code, report = _validate(tmp_path, small)
    assert code == 0
    assert any(w["check"] == "missing" and w["column"] == "workclass" for w in report["warnings"])


def test_missing_label(tmp_path, small):
    small[small.columns[-1]] = small[small.columns[-1]].astype(object)
    small.loc[6, "income_gt_50k"] = None
    code, report = _validate(tmp_path, small)
    (v,) = _only(report, "missing")
    assert code == 1 and v["column"] == "income_gt_50k" and v["rows"] == [6]


def test_bad_label_value(tmp_path, small):
    small.loc[7, "income_gt_50k"] = 2
    code, report = _validate(tmp_path, small)
    (v,) = _only(report, "label")
    assert code == 1 and v["rows"] == [7]


def test_duplicates_over_the_allowed_share(tmp_path, small):
    dup = pd.concat([small, small.iloc[:30]], ignore_index=True)  # 30 of 2030 rows = 1.5% > 1%
    code, report = _validate(tmp_path, dup)
    (v,) = _only(report, "duplicates")
    assert code == 1 and v["count"] == 30 and v["rows"][:3] == [2000, 2001, 2002]


def test_label_imbalance(tmp_path):
    frame = synthesize(20_000, seed=4)
    positives = frame.index[frame.income_gt_50k == 1]
    frame = frame.drop(positives[100:]).reset_index(drop=True)  # ~0.7% positives
    code, report = _validate(tmp_path, frame)
    (v,) = _only(report, "label_balance")
    assert code == 1 and v["column"] == "income_gt_50k" and "class 1" in v["message"]


def test_too_few_rows(tmp_path):
    code, report = _validate(tmp_path, synthesize(500, seed=1))
    (v,) = _only(report, "row_count")
    assert code == 1 and "500 row(s)" in v["message"]


def test_missing_and_unexpected_columns(tmp_path, small):
    frame = small.drop(columns=["race"]).assign(customer_id=range(len(small)))
    code, report = _validate(tmp_path, frame)
    expected = ADULT.columns
    assert code == 1
    assert [v["message"] for v in _only(report, "columns")] == [
        f"missing column(s) ['race']; expected {expected}",
        f"unexpected column(s) ['customer_id']; expected {expected}",
    ]


def test_rows_are_located_per_file(tmp_path, small):
    raw = raw_strings(small)
    write_csv(raw.iloc[:1200], tmp_path / "in" / "a.csv")
    part = raw.iloc[1200:].copy()
    part.loc[1250, "race"] = "Martian"
    write_csv(part, tmp_path / "in" / "b.csv")
    code, path = run(tmp_path / "in", tmp_path / "out")
    (v,) = _only(json.loads(path.read_text()), "category")
    assert v["rows"] == [1250]
    assert v["locations"] == [{"file": "b.csv", "row": 50, "line": 52}]


def test_unreadable_input_exits_2_with_report(tmp_path):
    code, path = run(tmp_path / "nothing-here", tmp_path / "out")
    report = json.loads(path.read_text())
    assert code == 2 and report["violations"][0]["check"] == "input"
    assert "does not exist" in report["violations"][0]["message"]


def test_command_line_exit_code_and_thresholds(tmp_path):
    write_csv(synthesize(500, seed=1), tmp_path / "in" / "d.csv")
    failed = run_step("validate", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "o1"))
    assert failed.returncode == 1, failed.stderr
    assert "row_count" in failed.stderr
    assert (tmp_path / "o1" / REPORT_NAME).is_file()
    passed = run_step("validate", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "o2"),
                      "--min-rows", "100")
    assert passed.returncode == 0, passed.stderr

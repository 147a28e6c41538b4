import json

import numpy as np
import pandas as pd
import pytest

from model_code import baseline as bl
from model_code.data import read_split, write_csv
from model_code.preprocess import SPLITS, SplitConfig, preprocess, split_indices
from problems.adult.synthetic import ADULT, synthesize
from tests.model_code.conftest import raw_strings, run_step


@pytest.fixture()
def raw_input(tmp_path):
    write_csv(raw_strings(synthesize(6000, seed=21)), tmp_path / "raw" / "data.csv")
    return tmp_path / "raw"


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_outputs(raw_input, tmp_path):
    for out in ("a", "b"):
        r = run_step("preprocess", "--input", str(raw_input), "--output", str(tmp_path / out), "--seed", "7")
        assert r.returncode == 0, r.stderr
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert set(a) == {"train/train.csv", "validation/validation.csv", "test/test.csv", "baseline/baseline.json"}
    assert a == b
    preprocess(raw_input, tmp_path / "c", SplitConfig(seed=8))
    assert _files(tmp_path / "c")["train/train.csv"] != a["train/train.csv"]


def test_splits_are_disjoint_complete_and_stratified():
    labels = np.r_[np.zeros(800, int), np.ones(200, int)]
    idx = split_indices(labels, SplitConfig(seed=1, validation_share=0.2, test_share=0.1))
    everything = np.concatenate([idx[s] for s in SPLITS])
    assert sorted(everything.tolist()) == list(range(1000))
    assert {s: len(idx[s]) for s in SPLITS} == {"train": 700, "validation": 200, "test": 100}
    for s in SPLITS:
        assert labels[idx[s]].mean() == pytest.approx(0.2)


def test_duplicates_dropped_and_integers_written_without_decimals(tmp_path):
    frame = synthesize(3000, seed=5)
    frame = pd.concat([frame, frame.iloc[:10]], ignore_index=True)
    write_csv(raw_strings(frame), tmp_path / "raw" / "d.csv")
    result = preprocess(tmp_path / "raw", tmp_path / "out")
    assert result.duplicates_dropped == 10
    assert sum(result.rows.values()) == 3000
    first = (tmp_path / "out" / "train" / "train.csv").read_text().splitlines()[1]
    assert ".0," not in first


def test_baseline_is_fitted_on_the_train_split_only(raw_input, tmp_path):
    preprocess(raw_input, tmp_path / "one", SplitConfig(seed=3))
    base = bl.load_baseline(tmp_path / "one" / "baseline" / "baseline.json")
    train, _ = read_split(tmp_path / "one" / "train", ADULT)
    expected = bl.compute_baseline(train, ADULT, base["source"])
    assert json.loads(bl.dumps(expected)) == base
    assert base["source"]["rows"] == len(train)

    # Changing only rows that land in validation/test leaves the baseline byte-identical.
    raw = pd.read_csv(raw_input / "data.csv", dtype=str, keep_default_na=False, na_values=[""])
    assert not raw.duplicated().any()  # so preprocess keeps every row and positions line up
    idx = split_indices(raw["income_gt_50k"].astype(int).to_numpy(), SplitConfig(seed=3))
    mask = np.zeros(len(raw), dtype=bool)
    mask[np.concatenate([idx["validation"], idx["test"]])] = True
    raw.loc[mask, "age"] = "90"
    raw.loc[mask, "workclass"] = "Never-worked"
    write_csv(raw, tmp_path / "raw2" / "data.csv")
    preprocess(tmp_path / "raw2", tmp_path / "two", SplitConfig(seed=3))
    assert (tmp_path / "two" / "train" / "train.csv").read_bytes() == \
        (tmp_path / "one" / "train" / "train.csv").read_bytes()
    base2 = bl.load_baseline(tmp_path / "two" / "baseline" / "baseline.json")
    assert base2["features"] == base["features"]
    assert base2["label"] == base["label"]


def test_baseline_format(raw_input, tmp_path):
    preprocess(raw_input, tmp_path / "out")
    base = bl.load_baseline(tmp_path / "out" / "baseline" / "baseline.json")
    assert base["format"] == "mlops-stack/drift-baseline" and base["format_version"] == 1
    age = base["features"]["age"]
    assert age["kind"] == "numeric"
    assert len(age["bin_shares"]) == len(age["bin_edges"]) + 1
    assert sum(age["bin_shares"]) == pytest.approx(1.0)
    assert all(a < b for a, b in zip(age["bin_edges"], age["bin_edges"][1:], strict=False))
    work = base["features"]["workclass"]
    assert work["kind"] == "categorical" and sum(work["frequencies"].values()) == pytest.approx(1.0)
    assert 0.03 < work["missing_share"] < 0.09
    assert set(base["label"]["shares"]) == {"0", "1"}
    assert base["prediction"] is None
    # the drift job re-bins new data with the same helpers
    train, _ = read_split(tmp_path / "out" / "train", ADULT)
    assert bl.numeric_shares(train["age"].to_numpy(), age["bin_edges"]) == age["bin_shares"]
    shares, unseen = bl.categorical_shares(train["workclass"], list(work["frequencies"]))
    assert shares == work["frequencies"] and unseen == 0.0


def test_bad_types_fail_naming_file_column_and_rows(tmp_path):
    raw = raw_strings(synthesize(2000, seed=2))
    raw.loc[[3, 4], "capital_gain"] = "lots"
    write_csv(raw, tmp_path / "raw" / "d.csv")
    r = run_step("preprocess", "--input", str(tmp_path / "raw"), "--output", str(tmp_path / "out"))
    assert r.returncode == 1
    assert "d.csv" in r.stderr and "'capital_gain'" in r.stderr and "3, 4" in r.stderr
    assert not (tmp_path / "out").exists()


def test_bad_split_shares_are_rejected(raw_input, tmp_path):
    r = run_step("preprocess", "--input", str(raw_input), "--output", str(tmp_path / "o"),
                 "--validation-share", "0.6", "--test-share", "0.5")
    assert r.returncode == 1 and "leaves no training rows" in r.stderr

import numpy as np
import pandas as pd
import pytest

from model_code.data import Drift
from problems.adult.synthetic import ADULT, main, synthesize


def test_same_seed_same_rows_and_different_seed_differs():
    a, b = synthesize(5000, seed=3), synthesize(5000, seed=3)
    pd.testing.assert_frame_equal(a, b)
    c = synthesize(5000, seed=4)
    assert not a.equals(c)


def test_schema_shape_ranges_and_label_rate():
    frame = synthesize(50_000, seed=1)
    assert list(frame.columns) == ADULT.columns
    for f in ADULT.numeric:
        v = frame[f.name].dropna()
        assert v.between(f.minimum, f.maximum).all(), f.name
    for f in ADULT.categorical:
        assert frame[f.name].dropna().isin(f.categories).all(), f.name
    assert 0.18 < frame[ADULT.label].mean() < 0.32
    # missing workclass implies missing occupation, as in the census data
    assert frame.loc[frame.workclass.isna(), "occupation"].isna().all()


def test_one_million_rows():
    # how fast: bench/, not here
    frame = synthesize(1_000_000, seed=5)
    assert len(frame) == 1_000_000 and list(frame.columns) == ADULT.columns


def _changed_columns(base: pd.DataFrame, drifted: pd.DataFrame) -> set[str]:
    return {c for c in base.columns if not base[c].equals(drifted[c])}


@pytest.mark.parametrize("drift, column", [
    (Drift(mean_shift={"age": 10}), "age"),
    (Drift(variance_scale={"hours_per_week": 2.0}), "hours_per_week"),
    (Drift(new_category={"workclass": ("Gig-economy", 0.2)}), "workclass"),
    (Drift(missing_surge={"occupation": 0.5}), "occupation"),
    (Drift(missing_surge={"capital_gain": 0.3}), "capital_gain"),
])
def test_each_drift_knob_changes_exactly_its_feature(drift, column):
    base = synthesize(20_000, seed=9)
    drifted = synthesize(20_000, seed=9, drift=drift)
    assert _changed_columns(base, drifted) == {column}


def test_drift_knob_semantics():
    n = 20_000
    base = synthesize(n, seed=2)
    d = synthesize(n, seed=2, drift=Drift(
        mean_shift={"age": 10}, variance_scale={"hours_per_week": 2.0},
        new_category={"workclass": ("Gig-economy", 0.2)}, missing_surge={"occupation": 0.5}))
    np.testing.assert_array_equal(d.age.to_numpy(), base.age.to_numpy() + 10)
    assert d.hours_per_week.std() == pytest.approx(2 * base.hours_per_week.std(), rel=0.01)
    assert d.hours_per_week.mean() == pytest.approx(base.hours_per_week.mean(), abs=0.5)
    assert (d.workclass == "Gig-economy").sum() == round(0.2 * n)
    assert d.occupation.isna().sum() >= round(0.5 * n)
    assert d.occupation.isna().sum() <= round(0.5 * n) + base.occupation.isna().sum()


@pytest.mark.parametrize("drift, message", [
    (Drift(mean_shift={"workclass": 1}), "not a numeric feature"),
    (Drift(new_category={"age": ("x", 0.1)}), "not a categorical feature"),
    (Drift(new_category={"workclass": ("Private", 0.1)}), "already a category"),
    (Drift(missing_surge={"occupation": 1.5}), "within [0, 1]"),
    (Drift(missing_surge={"nope": 0.1}), "not a feature"),
])
def test_bad_drift_specs_are_rejected_by_name(drift, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        synthesize(10, seed=0, drift=drift)


def test_command_line_writes_drifted_csv(tmp_path):
    out = tmp_path / "s.csv"
    assert main(["synthetic", "--rows", "300", "--seed", "1", "--out", str(out),
                 "--new-category", "workclass=Gig-economy:0.5", "--mean-shift", "age=5"]) == 0
    frame = pd.read_csv(out)
    assert len(frame) == 300
    assert (frame.workclass == "Gig-economy").sum() == 150

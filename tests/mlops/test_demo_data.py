"""The demo's population change, derived from any declaration: the covariate shift and the label change
(concept drift) on the new population's upper half, for each task type."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops.demo_data import LABEL_SHIFT_STDS, load_sample, population_change
from mlops.settings import REPO_ROOT
from model_code.problem import load_problem


def _changed(name: str) -> tuple[object, pd.DataFrame, pd.DataFrame, object]:
    problem = load_problem(REPO_ROOT / "problems" / name)
    frame = load_sample(problem)
    change = population_change(problem, frame)
    return problem, frame, change.apply(frame, 3, new_category=False), change


@pytest.mark.parametrize("name", ["adult", "wine"])
def test_classes_rotate_on_the_upper_half_only_and_every_class_stays(name: str) -> None:
    problem, before, after, change = _changed(name)
    schema = problem.schema  # type: ignore[attr-defined]
    label, numeric = schema.label, change.numeric  # type: ignore[attr-defined]
    upper = after[numeric] >= change.labels.cut  # type: ignore[attr-defined]
    assert 0.3 < upper.mean() < 0.7  # about half the new population: the median before the shift
    classes = len(schema.label_values)
    assert (after.loc[upper, label] == (before.loc[upper, label] + 1) % classes).all()
    assert (after.loc[~upper, label] == before.loc[~upper, label]).all()
    shares = after[label].value_counts(normalize=True)
    # validate's class-share rule still passes: the retrain's data is a legitimate dataset
    assert len(shares) == classes and shares.min() >= schema.min_minority_share
    other = [c for c in schema.feature_names if c != numeric]
    pd.testing.assert_frame_equal(after[other], before[other])


def test_a_regression_label_moves_up_within_the_declared_range() -> None:
    problem, before, after, change = _changed("diabetes")
    schema = problem.schema  # type: ignore[attr-defined]
    offset = change.labels.offset  # type: ignore[attr-defined]
    assert offset == pytest.approx(LABEL_SHIFT_STDS * before[schema.label].std(ddof=0), rel=1e-2)
    upper = after[change.numeric] >= change.labels.cut  # type: ignore[attr-defined]
    expected = np.minimum(before.loc[upper, schema.label] + offset, schema.label_maximum)
    assert np.allclose(after.loc[upper, schema.label], expected)
    assert (after.loc[~upper, schema.label] == before.loc[~upper, schema.label]).all()
    assert after[schema.label].max() <= schema.label_maximum


def test_traffic_without_labels_changes_its_features_only() -> None:
    problem, before, _, change = _changed("adult")
    features = before.drop(columns=[problem.schema.label])  # type: ignore[attr-defined]
    shifted = change.apply(features, 3, new_category=True)  # type: ignore[attr-defined]
    assert list(shifted.columns) == list(features.columns)
    assert (shifted[change.numeric] >= features[change.numeric]).all()  # type: ignore[attr-defined]


def test_the_change_says_what_happens_to_the_label() -> None:
    _, _, _, adult = _changed("adult")
    assert adult.describe().endswith("the label changes: income_gt_50k: where age >= 52 the classes swap (0 <-> 1)")  # type: ignore[attr-defined]
    _, _, _, wine = _changed("wine")
    assert "each class becomes the next (class_0 -> class_1 -> class_2 -> class_0)" in wine.describe()  # type: ignore[attr-defined]
    _, _, _, diabetes = _changed("diabetes")
    assert "progression: where age >= " in diabetes.describe() and "(within [0.0, 400.0])" in diabetes.describe()  # type: ignore[attr-defined]

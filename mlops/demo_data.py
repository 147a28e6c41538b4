"""The demo's data, for any problem: the sample split into disjoint parts, the population change the
drifted traffic comes from, and a model's metrics on fresh rows.

The change is chosen from the declaration, not from knowledge of a dataset: the first declared
numeric feature moves by 1.1 standard deviations of the training rows (clipped to its declared
maximum: beyond it a row is a data error, not drift), and, when the problem has categorical
features, the first one takes a value the declaration does not know on 10% of the rows.

The label changes too (concept drift: what the champion learnt no longer holds, so its quality
falls, which a covariate shift alone seldom shows): on the upper half of the new population (the
moved feature at or above the training median plus the shift) a class becomes the next declared
class (binary: the two classes swap), a number moves up by two standard deviations of the
training labels, within the declared label range. The rule depends on the moved feature alone, so
a challenger trained on labelled rows of the new population can learn it: Adult's and diabetes's
retrains beat the champion on the new population and clear their bars; wine's 62 labelled rows
(`--small`) beat it too but miss wine's bar, so that retrain registers nothing. A rotation keeps
every class above the problems' min_class_share, where "every upper-half row takes the rarest
class" emptied one of wine's classes (measured on the shipped problems before choosing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from model_code.problem import Problem
from model_code.schema import CategoricalFeature, NumericFeature

SHIFT_STDS = 1.1
NEW_CATEGORY_SHARE = 0.10
LABEL_SHIFT_STDS = 2.0
MIN_TRAFFIC_ROWS = 2000
SMALL_FRACTIONS = {"train": 0.45, "challenger": 0.35, "comparison": 0.20}
"""A sample too small for the requested sizes is split by these shares; its traffic reuses the comparison rows."""


@dataclass(frozen=True)
class LabelChange:
    """On rows whose moved feature is at least `cut`: a class index becomes the next of `classes` (canonical
    frames hold class indices, model_code.schema.coerce), or a number moves by `offset` within [minimum, maximum]."""

    label: str
    cut: float
    classes: tuple[str, ...]
    offset: float = 0.0
    minimum: float | None = None
    maximum: float | None = None

    def describe(self, numeric: str) -> str:
        where = f"where {numeric} >= {self.cut:g}"
        if len(self.classes) == 2:
            return f"{self.label}: {where} the classes swap ({self.classes[0]} <-> {self.classes[1]})"
        if self.classes:
            cycle = " -> ".join([*self.classes, self.classes[0]])
            return f"{self.label}: {where} each class becomes the next ({cycle})"
        return f"{self.label}: {where} {self.offset:+g} (within [{self.minimum}, {self.maximum}])"

    def apply_in_place(self, frame: pd.DataFrame, numeric: str) -> None:
        rows = frame[numeric].to_numpy(dtype=float) >= self.cut
        label = frame[self.label]
        if self.classes:
            frame[self.label] = label.where(~rows, (label + 1) % len(self.classes))
        else:
            frame[self.label] = label.where(~rows, (label + self.offset).clip(self.minimum, self.maximum))


@dataclass(frozen=True)
class PopulationChange:
    numeric: str
    shift: float
    maximum: float
    categorical: str | None
    new_category: str | None
    labels: LabelChange
    share: float = NEW_CATEGORY_SHARE

    def describe(self) -> str:
        text = f"{self.numeric} {self.shift:+g}"
        if self.categorical:
            text += (f", a {self.categorical} the declaration does not know ('{self.new_category}') on "
                     f"{self.share:.0%} of rows")
        return f"{text}; the label changes: {self.labels.describe(self.numeric)}"

    def apply(self, frame: pd.DataFrame, seed: int, *, new_category: bool) -> pd.DataFrame:
        out = frame.copy()
        out[self.numeric] = (out[self.numeric] + self.shift).clip(upper=self.maximum)
        if self.labels.label in out:
            self.labels.apply_in_place(out, self.numeric)
        if new_category and self.categorical:
            rows = np.random.default_rng(seed).choice(len(out), size=round(self.share * len(out)), replace=False)
            out[self.categorical] = out[self.categorical].astype(object)
            out.iloc[rows, out.columns.get_loc(self.categorical)] = self.new_category
        return out


def _std(frame: pd.DataFrame, column: str) -> float:
    """The standard deviation of a training column; 1 when it is constant (a shift must move it)."""
    return float(np.nanstd(frame[column].to_numpy(dtype=float))) or 1.0


def population_change(problem: Problem, train: pd.DataFrame) -> PopulationChange:
    numeric = next((f for f in problem.schema.features if isinstance(f, NumericFeature)), None)
    if numeric is None:
        raise ValueError(f"problem {problem.name} has no numeric feature for the demo's population change")
    shift = SHIFT_STDS * _std(train, numeric.name)
    shift = float(max(1, round(shift))) if numeric.dtype == "int" else float(f"{shift:.3g}")
    categorical = next((f for f in problem.schema.features if isinstance(f, CategoricalFeature)), None)
    schema = problem.schema
    cut = float(np.nanmedian(train[numeric.name].to_numpy(dtype=float))) + shift
    if schema.is_classification:
        labels = LabelChange(schema.label, cut, tuple(str(v) for v in schema.label_values))
    else:
        offset = float(f"{LABEL_SHIFT_STDS * _std(train, schema.label):.3g}")
        labels = LabelChange(schema.label, cut, (), offset, schema.label_minimum, schema.label_maximum)
    return PopulationChange(numeric.name, shift, numeric.maximum, categorical.name if categorical else None,
                            f"new-{categorical.name}" if categorical else None, labels)


def partition(rows: int, seed: int, **sizes: int) -> dict[str, np.ndarray]:
    """Disjoint random row sets of the given sizes and `rest` (the traffic's rows, at least
    MIN_TRAFFIC_ROWS when the sample allows). A sample smaller than the sizes and the traffic is split
    by SMALL_FRACTIONS, and `rest` is then the comparison rows again (traffic trains nothing)."""
    order = np.random.default_rng(seed).permutation(rows)
    parts, position = {}, 0
    small = rows < sum(sizes.values()) / 4 + MIN_TRAFFIC_ROWS
    if small:
        for name in sizes:
            take = int(rows * SMALL_FRACTIONS.get(name, 0.0))
            parts[name] = order[position : position + take]
            position += take
        parts["rest"] = parts.get("comparison", order[position:])
        return parts
    scale = min(1.0, max(rows - MIN_TRAFFIC_ROWS, 0) / max(sum(sizes.values()), 1))
    for name, size in sizes.items():
        take = int(size * scale)
        parts[name] = order[position : position + take]
        position += take
    parts["rest"] = order[position:]
    return parts


def load_sample(problem: Problem) -> pd.DataFrame:
    """The problem's sample data in canonical dtypes (model_code.schema.coerce)."""
    from model_code.data import read_split

    if problem.sample_path is None:
        raise ValueError(f"problem {problem.name} declares no data.sample: the demo needs data")
    frame, _ = read_split(problem.sample_path, problem.schema)
    return frame


def write_rows(frame: pd.DataFrame, problem: Problem, path: Any) -> Any:
    """A canonical frame as the CSV a pipeline reads: classes as their declared values, integers without '.0'."""
    from model_code.preprocess import to_csv_bytes

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(to_csv_bytes(frame, problem.schema))
    return path

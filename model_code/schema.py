"""The feature schema of a problem: the one contract shared by every step (model_code/problem.py
reads it from the problem's declaration).

Validation checks data against it, the model artifact embeds it (``Schema.to_dict``) so a server
can check requests, and the synthetic generator produces data of exactly this shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

SCHEMA_FORMAT = "mlops-stack/schema"
SCHEMA_FORMAT_VERSION = 2


class DataError(ValueError):
    """Data does not fit the schema. The message names the file, column and rows."""


@dataclass(frozen=True)
class NumericFeature:
    name: str
    dtype: Literal["int", "float"]
    minimum: float
    maximum: float
    max_missing_share: float = 0.0
    description: str = ""
    kind: Literal["numeric"] = field(default="numeric", init=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "dtype": self.dtype, "minimum": self.minimum,
            "maximum": self.maximum, "max_missing_share": self.max_missing_share,
            "description": self.description,
        }


@dataclass(frozen=True)
class CategoricalFeature:
    name: str
    categories: tuple[str, ...]
    max_missing_share: float = 0.0
    description: str = ""
    kind: Literal["categorical"] = field(default="categorical", init=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "categories": list(self.categories),
            "max_missing_share": self.max_missing_share, "description": self.description,
        }


Feature = NumericFeature | CategoricalFeature


@dataclass(frozen=True)
class Schema:
    """Columns, types, ranges, the label and dataset-level rules.

    ``task`` is binary, multiclass or regression. Classification: ``label_values`` are the classes
    in the model's column order (binary: ``positive_label``, the scored class, last); ``coerce``
    turns a label into its class index. Regression: the label is a number within
    [``label_minimum``, ``label_maximum``]. Dataset-level rules: at least ``min_rows`` rows, at most
    ``max_duplicate_share`` fully duplicated rows, and (classification) the rarest class at least
    ``min_minority_share`` of the rows.
    """

    name: str
    features: tuple[Feature, ...]
    label: str
    label_values: tuple[Any, ...] = (0, 1)
    positive_label: Any = 1
    min_rows: int = 1000
    max_duplicate_share: float = 0.01
    min_minority_share: float = 0.10
    task: Literal["binary", "multiclass", "regression"] = "binary"
    label_minimum: float | None = None
    label_maximum: float | None = None

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def columns(self) -> list[str]:
        return [*self.feature_names, self.label]

    @property
    def numeric(self) -> list[NumericFeature]:
        return [f for f in self.features if isinstance(f, NumericFeature)]

    @property
    def categorical(self) -> list[CategoricalFeature]:
        return [f for f in self.features if isinstance(f, CategoricalFeature)]

    @property
    def is_classification(self) -> bool:
        return self.task != "regression"

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(f"schema {self.name!r} has no feature {name!r}; features: {self.feature_names}")

    def label_rule(self) -> str:
        if self.is_classification:
            return f"one of {list(self.label_values)}"
        return f"a number within [{self.label_minimum}, {self.label_maximum}]"

    def label_indices(self, raw: pd.Series) -> pd.Series:
        """Class index per row (float, NaN where the value is not a class): integer classes match
        numerically ("1" and "1.0" are class 1), text classes exactly."""
        if all(isinstance(v, int) for v in self.label_values):
            index = {float(v): float(i) for i, v in enumerate(self.label_values)}
            return pd.to_numeric(raw, errors="coerce").map(index).astype("float64")
        index_text = {str(v): float(i) for i, v in enumerate(self.label_values)}
        return raw.map(lambda v: index_text.get(str(v), np.nan) if pd.notna(v) else np.nan).astype("float64")

    def label_bad(self, raw: pd.Series) -> pd.Series:
        """Rows whose (present) label breaks the rule: not a class, or not a number in range."""
        if self.is_classification:
            return raw.notna() & self.label_indices(raw).isna()
        values = pd.to_numeric(raw, errors="coerce")
        return raw.notna() & (values.isna() | (values < self.label_minimum) | (values > self.label_maximum))

    def label_output(self, index: Any) -> Any:
        """The class value of a class index (classification); the value itself (regression)."""
        return self.label_values[int(index)] if self.is_classification else float(index)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": SCHEMA_FORMAT,
            "format_version": SCHEMA_FORMAT_VERSION,
            "name": self.name,
            "task": self.task,
            "features": [f.to_dict() for f in self.features],
            "label": self.label,
            "label_values": list(self.label_values),
            "positive_label": self.positive_label,
            "label_minimum": self.label_minimum,
            "label_maximum": self.label_maximum,
            "min_rows": self.min_rows,
            "max_duplicate_share": self.max_duplicate_share,
            "min_minority_share": self.min_minority_share,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Schema:
        if data.get("format") != SCHEMA_FORMAT or data.get("format_version") not in (1, SCHEMA_FORMAT_VERSION):
            raise ValueError(
                f"not a {SCHEMA_FORMAT} v{SCHEMA_FORMAT_VERSION} document: "
                f"format={data.get('format')!r} format_version={data.get('format_version')!r}"
            )
        features: list[Feature] = []
        for f in data["features"]:
            if f["kind"] == "numeric":
                features.append(NumericFeature(
                    f["name"], f["dtype"], f["minimum"], f["maximum"], f["max_missing_share"],
                    f.get("description", ""),
                ))
            elif f["kind"] == "categorical":
                features.append(CategoricalFeature(
                    f["name"], tuple(f["categories"]), f["max_missing_share"], f.get("description", ""),
                ))
            else:
                raise ValueError(f"feature {f.get('name')!r}: unknown kind {f['kind']!r}")
        return cls(  # v1 documents (before tasks) are binary
            name=data["name"], features=tuple(features), label=data["label"],
            label_values=tuple(data["label_values"]), positive_label=data["positive_label"],
            min_rows=data["min_rows"], max_duplicate_share=data["max_duplicate_share"],
            min_minority_share=data["min_minority_share"], task=data.get("task", "binary"),
            label_minimum=data.get("label_minimum"), label_maximum=data.get("label_maximum"),
        )


def _rows(mask: pd.Series, limit: int = 20) -> str:
    idx = np.flatnonzero(mask.to_numpy())
    shown = ", ".join(str(i) for i in idx[:limit])
    more = f" (+{len(idx) - limit} more)" if len(idx) > limit else ""
    return f"{shown}{more}"


def coerce(frame: pd.DataFrame, schema: Schema, *, source: str = "<frame>",
           require_label: bool = True) -> pd.DataFrame:
    """Return the schema's columns in canonical dtypes: numeric float64, categorical object.

    Missing values become NaN; a classification label becomes its class index (int64), a
    regression label a float64. Raises DataError naming source, column and (0-based) rows when a
    column is absent or a numeric column holds text. Ranges and categories are checked by
    ``validate``, not here: coercion only guarantees the dtypes the model code relies on.
    """
    wanted = schema.columns if require_label else schema.feature_names
    absent = [c for c in wanted if c not in frame.columns]
    if absent:
        raise DataError(f"{source}: missing column(s) {absent}; expected {wanted}")
    out: dict[str, pd.Series] = {}
    for f in schema.features:
        s = frame[f.name]
        if isinstance(f, NumericFeature):
            num = pd.to_numeric(s, errors="coerce")
            bad = s.notna() & num.isna()
            if bad.any():
                raise DataError(
                    f"{source}: column {f.name!r} must be numeric; non-numeric values at rows "
                    f"{_rows(bad)} (e.g. {s[bad].iloc[0]!r})"
                )
            out[f.name] = num.astype("float64")
        else:
            obj = s.astype(object)
            out[f.name] = obj.where(s.notna(), np.nan)
    if require_label:
        raw = frame[schema.label]
        bad = raw.isna() | schema.label_bad(raw)
        if bad.any():
            raise DataError(f"{source}: label {schema.label!r} must be {schema.label_rule()}; "
                            f"bad values at rows {_rows(bad)}")
        if schema.is_classification:
            out[schema.label] = schema.label_indices(raw).astype("int64")
        else:
            out[schema.label] = pd.to_numeric(raw).astype("float64")
    return pd.DataFrame(out, index=frame.index)

"""The model for the edge: the fitted pipeline as one ONNX graph, checked against scikit-learn.

Train writes ``model.onnx`` beside ``model.joblib`` (so it travels in the model package's
``model.tar.gz``) when the pipeline converts and scores the same within ``PARITY_TOLERANCE`` on
``PARITY_ROWS`` rows drawn from the schema; the artifact's ``onnx`` entry records the file's
sha256 and the measured difference, or why there is no file.

The graph's contract (what an edge device feeds onnxruntime):
- one input per feature, shape ``[rows, 1]``: ``double`` for a numeric feature (NaN when
  missing), ``string`` for a categorical one (``MISSING``, the empty string, when missing; a value
  outside the categories scores as scikit-learn scores it: as missing in the trees, with no one-hot
  column in a linear model);
- outputs ``probabilities`` (``double [rows, classes]``) and ``label`` for classification,
  ``variable`` (``double [rows, 1]``) for regression: before any decision threshold.

How: skl2onnx converts the encoding (and linear models); the trees of HistGradientBoosting
(whose native categorical splits skl2onnx gets wrong) and of random forests (whose missing-value
routing it drops) come from ``edge/trees.py``; derived-feature expressions from ``edge/derive.py``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from model_code.estimators import HGB_DEFAULT_LOSSES
from model_code.schema import CategoricalFeature, NumericFeature, Schema

ONNX_FILENAME = "model.onnx"
MISSING = ""
"""A missing categorical value in the graph's string inputs (ONNX strings have no NaN)."""
UNKNOWN = "\x00"
"""What ``feeds`` sends for a present empty string: a value outside the categories, as scikit-learn sees it."""
PARITY_ROWS = 10_000
PARITY_TOLERANCE = 1e-5
"""The largest absolute difference from scikit-learn's output that the export accepts."""
OUTPUTS = ("label", "probabilities", "variable")
OPSET = 18
"""The default domain's opset (ai.onnx.ml is 5, for TreeEnsemble: edge/trees.py)."""


class NotExportable(ValueError):
    """A pipeline with no faithful ONNX form; the message names the part."""


def _input_types(schema: Schema, derived_names: Sequence[str]) -> list[tuple[str, Any]]:
    from skl2onnx.common.data_types import DoubleTensorType, StringTensorType

    types: list[tuple[str, Any]] = [
        (f.name, StringTensorType([None, 1]) if isinstance(f, CategoricalFeature) else DoubleTensorType([None, 1]))
        for f in schema.features]
    return [*types, *((name, DoubleTensorType([None, 1])) for name in derived_names)]


def to_onnx(estimator: Any, schema: Schema) -> Any:
    """The fitted pipeline (model_code/estimators.py) as an ONNX ModelProto; NotExportable says why not."""
    import onnx
    from skl2onnx import convert_sklearn
    from sklearn.pipeline import Pipeline

    from model_code.edge import derive, trees

    steps = dict(estimator.named_steps)
    if "columns" not in steps:
        raise NotExportable(f"the estimator {type(steps['model']).__name__} comes from the problem's module, "
                            f"which has no ONNX converter")
    for f in schema.categorical:
        if MISSING in f.categories:
            raise NotExportable(f"{f.name!r} declares the empty category, which the graph uses for a missing value")
    derived = tuple(steps["derive"].derived) if "derive" in steps else ()
    clash = sorted({*schema.feature_names, *(d.name for d in derived)} & set(OUTPUTS))
    if clash:
        raise NotExportable(f"feature {clash[0]!r} has the name of one of the graph's outputs {list(OUTPUTS)}")
    columns, model = _without_nan_categories(steps["columns"]), steps["model"]
    loss = getattr(model, "loss", None) if trees.is_hgb(model) else None
    if loss is not None and loss not in HGB_DEFAULT_LOSSES:
        raise NotExportable(f"HistGradientBoosting's loss {loss!r}: the graph has the links of "
                            f"{sorted(HGB_DEFAULT_LOSSES)} only")
    types = _input_types(schema, [d.name for d in derived])
    ml_opset = 3
    proto: Any  # convert_sklearn's declared union: a ModelProto when given a fitted estimator
    try:
        if trees.is_hgb(model) or trees.is_forest(model):
            proto = convert_sklearn(columns, initial_types=types, target_opset={"": OPSET, "ai.onnx.ml": 3})
            _rename(proto.graph, proto.graph.output[0].name, "encoded")
            for reserved in OUTPUTS:  # skl2onnx names inner results so too: the graph's outputs keep the names
                _rename(proto.graph, reserved, f"encoding_{reserved}")
            del proto.graph.output[:]
            proto.graph.output.extend(trees.append_trees(proto.graph, "encoded", model))
            ml_opset = trees.ML_OPSET
        else:
            from sklearn.impute import SimpleImputer

            options = None if schema.task == "regression" else {id(model): {"zipmap": False}}
            proto = convert_sklearn(Pipeline([("columns", columns), ("model", model)]), initial_types=types,
                                    options=options, target_opset={"": OPSET, "ai.onnx.ml": 3},
                                    custom_conversion_functions={SimpleImputer: _convert_imputer})
        derive.prepend_derived(proto.graph, derived)
    except derive.Unsupported as exc:
        raise NotExportable(str(exc)) from None
    except (RuntimeError, NameError, TypeError, ValueError) as exc:  # skl2onnx's errors for what it cannot convert
        raise NotExportable(f"skl2onnx: {type(exc).__name__}: {exc}") from None
    for entry in proto.opset_import:
        if entry.domain == "ai.onnx.ml":
            entry.version = ml_opset
    _outputs_in_double(proto)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _without_nan_categories(columns: Any) -> Any:
    """A copy of the encoding whose ordinal encoders list no NaN category. scikit-learn keeps NaN as the last
    category when the training data had missing values (encoded as missing anyway), and skl2onnx would give it a
    real code under the key "nan", a string scikit-learn treats as unknown."""
    import copy

    columns = copy.deepcopy(columns)
    for _, transformer, _ in columns.transformers_:
        if type(transformer).__name__ == "OrdinalEncoder" and hasattr(transformer, "categories_"):  # has columns
            transformer.categories_ = [c[~pd.isna(c)] for c in transformer.categories_]
    return columns


def _convert_imputer(scope: Any, operator: Any, container: Any) -> None:
    """SimpleImputer as ``Where(missing, statistics, x)``: skl2onnx's converter refuses string columns whose
    missing value is NaN (the graph's is ``MISSING``), and answers doubles with ai.onnx.ml's Imputer, which
    onnxruntime runs for float32 only."""
    from onnx import TensorProto, helper
    from skl2onnx.common.data_types import StringTensorType

    imputer = operator.raw_operator
    name = scope.get_unique_variable_name
    (x,) = [i.full_name for i in operator.inputs] if len(operator.inputs) == 1 else [None]
    if x is None:
        x = name("imputer_input")
        container.add_node("Concat", [i.full_name for i in operator.inputs], [x], axis=1)
    statistics, missing = name("imputer_statistics"), name("imputer_missing")
    if isinstance(operator.inputs[0].type, StringTensorType):
        values = [str(v).encode() for v in imputer.statistics_]
        container.add_initializer(statistics, TensorProto.STRING, [1, len(values)], values)
        flags = name("imputer_flags")  # Equal takes strings from opset 19 only: a lookup instead
        container.add_node("LabelEncoder", [x], [flags], op_domain="ai.onnx.ml", op_version=2,
                           keys_strings=[MISSING], values_int64s=[1], default_int64=0)
        container.add_node("Cast", [flags], [missing], to=TensorProto.BOOL)
    else:
        container.add_initializer(statistics, TensorProto.DOUBLE, [1, len(imputer.statistics_)],
                                  np.asarray(imputer.statistics_, dtype=np.float64).tolist())
        container.nodes.append(helper.make_node("IsNaN", [x], [missing], name=scope.get_unique_operator_name("IsNaN")))
    container.add_node("Where", [missing, statistics, x], [operator.outputs[0].full_name])


def _rename(graph: Any, old: str, new: str) -> None:
    for node in graph.node:
        node.output[:] = [new if o == old else o for o in node.output]
        node.input[:] = [new if i == old else i for i in node.input]


def _outputs_in_double(proto: Any) -> None:
    """skl2onnx's linear and forest models answer in float for some inputs: the graph's contract is double."""
    from onnx import TensorProto, helper

    for output in proto.graph.output:
        kind = output.type.tensor_type
        if kind.elem_type == TensorProto.FLOAT:
            inner = f"{output.name}_float"
            _rename(proto.graph, output.name, inner)
            proto.graph.node.append(helper.make_node("Cast", [inner], [output.name], to=TensorProto.DOUBLE))
            kind.elem_type = TensorProto.DOUBLE


def feeds(schema: Schema, numeric: Mapping[str, np.ndarray], categorical: Mapping[str, Sequence[Any]]) -> dict:
    """The graph's inputs from feature columns (None or NaN is missing)."""
    out: dict[str, np.ndarray] = {}
    for f in schema.features:
        if isinstance(f, NumericFeature):
            out[f.name] = np.asarray(numeric[f.name], dtype=np.float64).reshape(-1, 1)
        else:
            out[f.name] = np.array([MISSING if v is None or v != v else str(v) or UNKNOWN
                                    for v in categorical[f.name]], dtype=object).reshape(-1, 1)
    return out


def frame_feeds(schema: Schema, frame: pd.DataFrame) -> dict:
    """The graph's inputs from a frame of the schema's columns (schema.coerce's dtypes)."""
    numeric = {f.name: frame[f.name].to_numpy(np.float64) for f in schema.numeric}
    categorical = {f.name: frame[f.name].tolist() for f in schema.categorical}
    return feeds(schema, numeric, categorical)


class OnnxModel:
    """An onnxruntime session of the graph, answering what ``model.estimator_output`` answers."""

    def __init__(self, serialized: bytes, schema: Schema, threads: int = 1) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(serialized, options, providers=["CPUExecutionProvider"])
        self.schema = schema
        self.output_name = "variable" if schema.task == "regression" else "probabilities"

    def run(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        (out,) = self.session.run([self.output_name], dict(inputs))
        out = np.asarray(out)
        return np.asarray(out, dtype=np.float64).reshape(-1) if self.schema.task == "regression" else out

    def output(self, frame: pd.DataFrame) -> np.ndarray:
        return self.run(frame_feeds(self.schema, frame))


def parity_rows(schema: Schema, rows: int = PARITY_ROWS, seed: int = 0) -> pd.DataFrame:
    """Rows covering the schema: numerics across their ranges (integers where declared, bounds and
    missing values included), every category, missing and unknown values (the strings "nan" and "" among them:
    scikit-learn sees both as unknown)."""
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {}
    for f in schema.features:
        if isinstance(f, NumericFeature):
            values = rng.uniform(f.minimum, f.maximum, rows)
            if f.dtype == "int":
                values = np.round(values)
            values[rng.random(rows) < 0.05] = np.nan
            values[:2] = [f.minimum, f.maximum]
            data[f.name] = values
        else:
            choices = np.array([*f.categories, "<unknown>", "nan", ""], dtype=object)
            values = choices[rng.integers(0, len(choices), rows)]
            values[rng.random(rows) < 0.05] = np.nan
            data[f.name] = values
    return pd.DataFrame(data, columns=schema.feature_names)


def parity(estimator: Any, schema: Schema, session: OnnxModel, frame: pd.DataFrame) -> float:
    """The largest absolute difference between scikit-learn's and onnxruntime's outputs on ``frame``."""
    from model_code.model import estimator_output

    expected = estimator_output(estimator, schema.task, frame)
    got = session.output(frame)
    if expected.shape != got.shape:
        return float("inf")
    return float(np.max(np.abs(expected - got), initial=0.0))


def export(estimator: Any, schema: Schema, model_dir: Path, check: pd.DataFrame | None = None) -> dict[str, Any]:
    """Write ``model_dir/model.onnx`` when the pipeline converts and agrees with scikit-learn on the
    parity rows (and ``check``, e.g. the validation split); return the artifact's ``onnx`` entry."""
    import onnxruntime
    import skl2onnx

    target = model_dir / ONNX_FILENAME
    target.unlink(missing_ok=True)  # a file from an earlier run must not sit beside a model it was not made from
    frames = [parity_rows(schema)] + ([check] if check is not None and len(check) else [])
    try:
        proto = to_onnx(estimator, schema)
        serialized = proto.SerializeToString()
        session = OnnxModel(serialized, schema)
        difference = max(parity(estimator, schema, session, frame) for frame in frames)
    except NotExportable as exc:
        return {"exported": False, "reason": str(exc)}
    except Exception as exc:  # noqa: BLE001 -- the export is an extra: any failure is recorded, the model trains
        return {"exported": False, "reason": f"{type(exc).__name__}: {exc}"}
    rows = sum(len(frame) for frame in frames)
    measured = {"rows": rows, "max_abs_difference": difference, "tolerance": PARITY_TOLERANCE}
    if not difference <= PARITY_TOLERANCE:
        return {"exported": False, "parity": measured,
                "reason": f"onnxruntime's output differs from scikit-learn's by up to {difference:.3g} on {rows} "
                          f"rows (the limit is {PARITY_TOLERANCE:g})"}
    model_dir.mkdir(parents=True, exist_ok=True)
    target.write_bytes(serialized)
    return {"exported": True, "file": ONNX_FILENAME, "sha256": hashlib.sha256(serialized).hexdigest(),
            "parity": measured, "opsets": {e.domain or "ai.onnx": e.version for e in proto.opset_import},
            "versions": {"skl2onnx": skl2onnx.__version__, "onnxruntime": onnxruntime.__version__}}


def load(model_path: Path, artifact: Mapping[str, Any], schema: Schema) -> OnnxModel:
    """The session of the ONNX file beside ``model_path`` (model.joblib), checked against the
    artifact's record of it; ValueError says why there is none."""
    entry = artifact.get("onnx") or {"reason": "the artifact predates the ONNX export"}
    if not entry.get("exported"):
        raise ValueError(f"{model_path}: the model has no ONNX export: {entry.get('reason')}")
    path = Path(model_path).parent / entry["file"]
    if not path.is_file():
        raise ValueError(f"{path}: the artifact records an ONNX export, and the file is not beside it")
    serialized = path.read_bytes()
    if hashlib.sha256(serialized).hexdigest() != entry["sha256"]:
        raise ValueError(f"{path}: sha256 differs from the one the artifact records")
    return OnnxModel(serialized, schema)

"""Tree ensembles in ONNX, as scikit-learn walks them: the converters skl2onnx lacks.

Random forests: skl2onnx drops the trees' missing-value routing (``missing_go_to_left``), which
scikit-learn's trees learn since 1.3; here each split keeps it, on float32 inputs as scikit-learn
compares them.

skl2onnx converts a HistGradientBoosting model's categorical splits as numeric thresholds, so a
model with ``categorical_features`` scores differently in ONNX (onnx/sklearn-onnx#1051, #1101;
measured here: up to 0.75 in probability on 10,000 rows of the Adult schema). ONNX's ``TreeEnsemble``
(ai.onnx.ml opset 5) has set membership (``BRANCH_MEMBER``) and double precision, which is
exactly what the trees need: this module writes each tree as scikit-learn's predictor walks it
(``sklearn/ensemble/_hist_gradient_boosting/_predictor.pyx``) after the encoding skl2onnx
converts. (skl2onnx itself emits ai.onnx.ml opset 3 at most, so the trees are appended to its
graph rather than registered as its converter.)

A node's left child is ONNX's "true" branch:
- numeric split: ``x <= num_threshold``, missing values follow ``missing_go_to_left``;
- categorical split: ``x in left categories``; a missing value, and a code the model never saw,
  follow ``missing_go_to_left`` (an unseen code among the reachable ones joins the left set when
  missing goes left).

The model's own inner encoder (scikit-learn puts one in front of categorical features, reordering
columns: categorical first) is folded in: node features and categories are mapped back to the
columns and codes the pipeline's encoder hands the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MODE_LEQ, MODE_MEMBER = 0, 6
"""TreeEnsemble's node modes (ai.onnx.ml opset 5): BRANCH_LEQ and BRANCH_MEMBER."""
ML_OPSET = 5


@dataclass
class _Ensemble:
    """TreeEnsemble's node and leaf arrays, grown tree by tree."""

    features: list[int] = field(default_factory=list)
    modes: list[int] = field(default_factory=list)
    splits: list[float] = field(default_factory=list)
    true_ids: list[int] = field(default_factory=list)
    true_leaf: list[int] = field(default_factory=list)
    false_ids: list[int] = field(default_factory=list)
    false_leaf: list[int] = field(default_factory=list)
    missing_true: list[int] = field(default_factory=list)
    members: list[float] = field(default_factory=list)
    roots: list[int] = field(default_factory=list)
    leaf_targets: list[int] = field(default_factory=list)
    leaf_weights: list[float] = field(default_factory=list)

    def single_leaf(self, leaf: int) -> None:
        """A tree that is one leaf: a split whose both branches reach it (TreeEnsemble's roots are nodes)."""
        self.roots.append(len(self.features))
        self.features.append(0)
        self.modes.append(MODE_LEQ)
        self.splits.append(0.0)
        self.true_ids.append(leaf)
        self.false_ids.append(leaf)
        self.true_leaf.append(1)
        self.false_leaf.append(1)
        self.missing_true.append(0)

    def attributes(self, targets: int) -> dict[str, Any]:
        def tensor(values: Sequence[float], dtype: Any) -> Any:
            return numpy_helper.from_array(np.asarray(values, dtype=dtype))

        attrs = {
            "aggregate_function": 1,  # SUM
            "post_transform": 0,  # NONE: the link function is applied after the baseline is added
            "n_targets": targets,
            "tree_roots": self.roots,
            "nodes_featureids": self.features,
            "nodes_modes": tensor(self.modes, np.uint8),
            "nodes_splits": tensor(self.splits, np.float64),
            "nodes_truenodeids": self.true_ids,
            "nodes_trueleafs": self.true_leaf,
            "nodes_falsenodeids": self.false_ids,
            "nodes_falseleafs": self.false_leaf,
            "nodes_missing_value_tracks_true": self.missing_true,
            "leaf_targetids": self.leaf_targets,
            "leaf_weights": tensor(self.leaf_weights, np.float64),
        }
        if self.members:
            attrs["membership_values"] = tensor(self.members, np.float64)
        return attrs


@dataclass(frozen=True)
class _Columns:
    """How the model's inner encoder maps its columns back to the input's, and its categories back to codes."""

    source: list[int]
    """inner column -> input column"""
    codes: dict[int, np.ndarray]
    """inner categorical column -> the input code of each of its positions"""


def _columns(model: Any) -> _Columns:
    inner = getattr(model, "_preprocessor", None)
    if inner is None:
        return _Columns(list(range(model.n_features_in_)), {})
    categorical = np.asarray(model.is_categorical_, dtype=bool)
    source = [*np.flatnonzero(categorical).tolist(), *np.flatnonzero(~categorical).tolist()]
    encoder = inner.named_transformers_["encoder"]
    codes = {}
    for position, categories in enumerate(encoder.categories_):
        values = np.asarray(categories, dtype=np.float64)
        codes[position] = values[~np.isnan(values)]
    return _Columns(source, codes)


def _bits(bitset: np.ndarray) -> list[int]:
    """The set members of one scikit-learn bitset row (8 x uint32: values 0..255)."""
    return [i for i in range(256) if (int(bitset[i // 32]) >> (i % 32)) & 1]


def _add_tree(ensemble: _Ensemble, predictor: Any, target: int, columns: _Columns) -> None:
    nodes = predictor.nodes
    first_node, first_leaf = len(ensemble.features), len(ensemble.leaf_weights)
    internal: dict[int, int] = {}
    leaves: dict[int, int] = {}
    for i, node in enumerate(nodes):
        if node["is_leaf"]:
            leaves[i] = first_leaf + len(leaves)
            ensemble.leaf_targets.append(target)
            ensemble.leaf_weights.append(float(node["value"]))
        else:
            internal[i] = first_node + len(internal)
    if not internal:
        ensemble.single_leaf(leaves[0])
        return
    ensemble.roots.append(internal[0])
    for node in nodes:
        if node["is_leaf"]:
            continue
        inner_feature = int(node["feature_idx"])
        ensemble.features.append(columns.source[inner_feature])
        left, right = int(node["left"]), int(node["right"])
        ensemble.true_ids.append(leaves.get(left, internal.get(left, 0)))
        ensemble.true_leaf.append(int(left in leaves))
        ensemble.false_ids.append(leaves.get(right, internal.get(right, 0)))
        ensemble.false_leaf.append(int(right in leaves))
        ensemble.missing_true.append(int(node["missing_go_to_left"]))
        if node["is_categorical"]:
            ensemble.modes.append(MODE_MEMBER)
            ensemble.splits.append(0.0)
            # a set with no member (only missing values go left) is the code -1, which no input has
            ensemble.members.extend(_left_codes(predictor, node, inner_feature, columns) or [-1.0])
            ensemble.members.append(np.nan)
        else:
            ensemble.modes.append(MODE_LEQ)
            ensemble.splits.append(float(node["num_threshold"]))


def _left_codes(predictor: Any, node: Any, inner_feature: int, columns: _Columns) -> list[float]:
    """The input codes a categorical node sends left (ONNX's true branch)."""
    left = _bits(predictor.raw_left_cat_bitsets[node["bitset_idx"]])
    codes = columns.codes.get(inner_feature)
    if codes is None:  # no inner encoder: the model's categories are the input codes
        return [float(c) for c in left]
    values = [float(codes[p]) for p in left if p < len(codes)]
    if node["missing_go_to_left"] and len(codes):
        # a code the model never saw is treated as missing; of the codes the encoder can produce
        # (0 .. the largest seen), those go left with the missing values
        seen = set(codes.tolist())
        values.extend(float(c) for c in range(int(codes.max()) + 1) if float(c) not in seen)
    return values


def hgb_attributes(model: Any) -> tuple[dict[str, Any], np.ndarray]:
    """TreeEnsemble's attributes for a fitted HistGradientBoosting model, and its baseline (1 x targets)."""
    columns = _columns(model)
    ensemble = _Ensemble()
    for iteration in model._predictors:
        for target, predictor in enumerate(iteration):
            _add_tree(ensemble, predictor, target, columns)
    baseline = np.asarray(model._baseline_prediction, dtype=np.float64).reshape(1, -1)
    return ensemble.attributes(baseline.shape[1]), baseline


def forest_attributes(model: Any) -> dict[str, Any]:
    """TreeEnsemble's attributes for a fitted random forest: the mean of its trees' leaf values
    (class fractions, one copy of each tree per class, as a leaf feeds one target), split as
    scikit-learn's trees split (``x <= threshold`` on float32 inputs, missing values by
    ``missing_go_to_left``)."""
    ensemble = _Ensemble()
    trees = [e.tree_ for e in model.estimators_]
    targets = len(model.classes_) if hasattr(model, "classes_") else 1
    for tree in trees:
        values = tree.value[:, 0, :]
        if targets > 1:
            values = values / values.sum(axis=1, keepdims=True)
        for target in range(targets):
            _add_sklearn_tree(ensemble, tree, values[:, target] / len(trees), target)
    return ensemble.attributes(targets)


def _add_sklearn_tree(ensemble: _Ensemble, tree: Any, leaf_values: np.ndarray, target: int) -> None:
    left_of, right_of = tree.children_left, tree.children_right
    is_leaf = left_of == -1
    first_node, first_leaf = len(ensemble.features), len(ensemble.leaf_weights)
    leaves = {int(i): first_leaf + k for k, i in enumerate(np.flatnonzero(is_leaf))}
    internal = {int(i): first_node + k for k, i in enumerate(np.flatnonzero(~is_leaf))}
    for i in leaves:
        ensemble.leaf_targets.append(target)
        ensemble.leaf_weights.append(float(leaf_values[i]))
    if not internal:
        ensemble.single_leaf(leaves[0])
        return
    ensemble.roots.append(internal[0])
    missing_left = getattr(tree, "missing_go_to_left", np.zeros(len(left_of), dtype=np.uint8))
    for i in internal:
        left, right = int(left_of[i]), int(right_of[i])
        ensemble.features.append(int(tree.feature[i]))
        ensemble.modes.append(MODE_LEQ)
        ensemble.splits.append(float(tree.threshold[i]))
        ensemble.true_ids.append(leaves.get(left, internal.get(left, 0)))
        ensemble.true_leaf.append(int(left in leaves))
        ensemble.false_ids.append(leaves.get(right, internal.get(right, 0)))
        ensemble.false_leaf.append(int(right in leaves))
        ensemble.missing_true.append(int(missing_left[i]))


# --- the graph --------------------------------------------------------------------------------------
def is_hgb(model: Any) -> bool:
    return type(model).__name__ in ("HistGradientBoostingClassifier", "HistGradientBoostingRegressor")


def is_forest(model: Any) -> bool:
    return type(model).__name__ in ("RandomForestClassifier", "RandomForestRegressor")


def append_trees(graph: onnx.GraphProto, features: str, model: Any) -> list[onnx.ValueInfoProto]:
    """Nodes scoring ``features`` (the encoded matrix, any numeric type) with ``model`` (a
    HistGradientBoosting model or a random forest), appended to ``graph``; returns the outputs as
    skl2onnx names them: ``label`` and ``probabilities`` for a classifier, ``variable`` for a
    regressor (all double but the label)."""
    classifier = hasattr(model, "classes_")
    nodes = graph.node
    if is_forest(model):
        # scikit-learn's trees compare float32 inputs with their (double) thresholds
        nodes.append(helper.make_node("Cast", [features], ["trees_features32"], to=TensorProto.FLOAT))
        nodes.append(helper.make_node("Cast", ["trees_features32"], ["trees_features"], to=TensorProto.DOUBLE))
        output = "probabilities" if classifier else "variable"
        nodes.append(helper.make_node("TreeEnsemble", ["trees_features"], [output], domain="ai.onnx.ml",
                                      name="forest", **forest_attributes(model)))
        if not classifier:
            return [helper.make_tensor_value_info("variable", TensorProto.DOUBLE, [None, 1])]
        nodes.append(helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0))
        return [helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
                helper.make_tensor_value_info("probabilities", TensorProto.DOUBLE, [None, len(model.classes_)])]
    attrs, baseline = hgb_attributes(model)
    nodes.append(helper.make_node("Cast", [features], ["hgb_features"], to=TensorProto.DOUBLE))
    nodes.append(helper.make_node("TreeEnsemble", ["hgb_features"], ["hgb_trees"], domain="ai.onnx.ml",
                                  name="hgb_trees", **attrs))
    graph.initializer.append(numpy_helper.from_array(baseline, "hgb_baseline"))
    raw = "hgb_raw" if classifier else "variable"
    nodes.append(helper.make_node("Add", ["hgb_trees", "hgb_baseline"], [raw]))
    if not classifier:
        return [helper.make_tensor_value_info("variable", TensorProto.DOUBLE, [None, 1])]
    if baseline.shape[1] == 1:  # binary: the sigmoid of the raw score (the log-loss's link), both columns
        graph.initializer.append(numpy_helper.from_array(np.ones(1), "hgb_one"))
        nodes.append(helper.make_node("Sigmoid", [raw], ["hgb_positive"]))
        nodes.append(helper.make_node("Sub", ["hgb_one", "hgb_positive"], ["hgb_negative"]))
        nodes.append(helper.make_node("Concat", ["hgb_negative", "hgb_positive"], ["probabilities"], axis=1))
    else:
        nodes.append(helper.make_node("Softmax", [raw], ["probabilities"], axis=1))
    # the classes are the label's indices 0..k-1 (train fits on them), so the label is the argmax
    nodes.append(helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0))
    return [helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
            helper.make_tensor_value_info("probabilities", TensorProto.DOUBLE, [None, len(model.classes_)])]

"""Derived-feature expressions as ONNX nodes: the model's first step, for the edge.

A problem's expressions are arithmetic over numeric features and pandas' math functions, checked
against that grammar when the declaration is read (model_code/features.py); each node of that
grammar has an ONNX operator, so the expression's syntax tree is compiled node by node, in double
precision, and the result is made NaN where it is not finite, as ``features.derive`` does. A
derived feature computed by a function of the problem's module has no ONNX form.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from model_code.features import DerivedFeature

_BINARY = {ast.Add: "Add", ast.Sub: "Sub", ast.Mult: "Mul", ast.Div: "Div", ast.Pow: "Pow"}
_UNARY = {"sin": "Sin", "cos": "Cos", "exp": "Exp", "log": "Log", "sqrt": "Sqrt", "tanh": "Tanh", "abs": "Abs"}
"""Functions with an ONNX operator onnxruntime runs in double precision."""
_FUNCTION_NAMES = frozenset({*_UNARY, "log1p", "expm1", "log10", "sinh", "cosh", "arcsinh", "arccosh", "arctanh",
                             "arcsin", "arccos", "arctan", "arctan2"})
NO_DOUBLE_KERNEL = frozenset({"arcsin", "arccos", "arctan", "arctan2"})
"""Functions whose ONNX operators onnxruntime runs in float32 only (the rest of the hyperbolic family is
computed from Exp, Log and Sqrt below), or that have no ONNX operator (arctan2)."""


class Unsupported(ValueError):
    """An expression (or a derived feature) with no ONNX form; the message says which part."""


class _Compiler:
    def __init__(self, graph: onnx.GraphProto, feature: str) -> None:
        self.graph, self.feature, self.count = graph, feature, 0

    def name(self, what: str) -> str:
        self.count += 1
        return f"derive_{self.feature}_{what}{self.count}"

    def node(self, op: str, inputs: list[str], **attrs: Any) -> str:
        out = self.name(op.lower())
        self.graph.node.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def constant(self, value: float) -> str:
        out = self.name("const")
        self.graph.initializer.append(numpy_helper.from_array(np.array([value], dtype=np.float64), out))
        return out

    def compile(self, tree: ast.AST) -> str:
        if isinstance(tree, ast.Expression):
            return self.compile(tree.body)
        if isinstance(tree, ast.Name):
            return tree.id
        if isinstance(tree, ast.Constant) and isinstance(tree.value, int | float):
            return self.constant(float(tree.value))
        if isinstance(tree, ast.UnaryOp) and isinstance(tree.op, ast.USub | ast.UAdd):
            operand = self.compile(tree.operand)
            return self.node("Neg", [operand]) if isinstance(tree.op, ast.USub) else operand
        if isinstance(tree, ast.BinOp):
            left, right = self.compile(tree.left), self.compile(tree.right)
            if isinstance(tree.op, ast.Mod):  # numpy's (and pandas') remainder takes the divisor's sign
                return self._floor_mod(left, right)
            op = _BINARY.get(type(tree.op))
            if op is None:
                raise Unsupported(f"operator {type(tree.op).__name__}")
            return self.node(op, [left, right])
        if isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name):
            args = [self.compile(a) for a in tree.args]
            return self._call(tree.func.id, args)
        raise Unsupported(f"{type(tree).__name__}")

    def _floor_mod(self, left: str, right: str) -> str:
        # numpy's remainder: C's fmod, moved by the divisor when its sign differs from the divisor's (ONNX's Mod
        # with fmod=0 is for integers only; x - floor(x / y) * y rounds differently, e.g. 1 % 0.1)
        rest = self.node("Mod", [left, right], fmod=1)
        zero = self.constant(0.0)
        moved = self.node("And", [self.node("Not", [self.node("Equal", [rest, zero])]),
                                  self.node("Not", [self.node("Equal", [self.node("Sign", [rest]),
                                                                        self.node("Sign", [right])])])])
        return self.node("Where", [moved, self.node("Add", [rest, right]), rest])

    def _call(self, function: str, args: list[str]) -> str:
        if function in _UNARY and len(args) == 1:
            return self.node(_UNARY[function], args)
        if function == "log1p" and len(args) == 1:
            return self.node("Log", [self.node("Add", [args[0], self.constant(1.0)])])
        if function == "expm1" and len(args) == 1:
            return self.node("Sub", [self.node("Exp", args), self.constant(1.0)])
        if function == "log10" and len(args) == 1:
            return self.node("Div", [self.node("Log", args), self.constant(math.log(10.0))])
        if function in ("sinh", "cosh") and len(args) == 1:  # (e^x -+ e^-x) / 2
            grow, shrink = self.node("Exp", args), self.node("Exp", [self.node("Neg", args)])
            return self.node("Div", [self.node("Sub" if function == "sinh" else "Add", [grow, shrink]),
                                     self.constant(2.0)])
        if function == "arcsinh" and len(args) == 1:  # sign(x) log(|x| + sqrt(x^2 + 1)): no cancellation below 0
            size = self.node("Abs", args)
            root = self.node("Sqrt", [self.node("Add", [self.node("Mul", [size, size]), self.constant(1.0)])])
            return self.node("Mul", [self.node("Sign", args), self.node("Log", [self.node("Add", [size, root])])])
        if function == "arccosh" and len(args) == 1:  # log(x + sqrt(x^2 - 1)); NaN below 1, as numpy
            square = self.node("Mul", [args[0], args[0]])
            root = self.node("Sqrt", [self.node("Sub", [square, self.constant(1.0)])])
            return self.node("Log", [self.node("Add", [args[0], root])])
        if function == "arctanh" and len(args) == 1:  # log((1 + x) / (1 - x)) / 2
            one = self.constant(1.0)
            ratio = self.node("Div", [self.node("Add", [one, args[0]]), self.node("Sub", [one, args[0]])])
            return self.node("Div", [self.node("Log", [ratio]), self.constant(2.0)])
        if function in NO_DOUBLE_KERNEL:
            raise Unsupported(f"function {function}() (onnxruntime computes it in float32 only, or not at all)")
        raise Unsupported(f"function {function}() with {len(args)} argument(s)")


def prepend_derived(graph: onnx.GraphProto, derived: Sequence[DerivedFeature]) -> None:
    """Compute ``derived`` inside ``graph`` from its numeric inputs: each derived input becomes the
    output of nodes placed before the graph's own. Raises Unsupported naming the feature."""
    original = list(graph.node)
    del graph.node[:]
    for feature in derived:
        if feature.function:
            raise Unsupported(f"derived feature {feature.name!r} is the function {feature.function}() of the "
                              f"problem's module, which has no ONNX form")
        compiler = _Compiler(graph, feature.name)
        tree = ast.parse(feature.expression, mode="eval")
        if not any(isinstance(node, ast.Name) and node.id not in _FUNCTION_NAMES for node in ast.walk(tree)):
            raise Unsupported(f"derived feature {feature.name!r} ({feature.expression}) is a constant, which the "
                              f"graph would not repeat per row")
        try:
            value = compiler.compile(tree)
        except Unsupported as exc:
            raise Unsupported(f"derived feature {feature.name!r} ({feature.expression}): {exc} has no ONNX form") \
                from None
        # not finite (a division by zero, log of 0) -> NaN, as features.derive makes it
        finite = compiler.node("Not", [compiler.node("Or", [compiler.node("IsInf", [value]),
                                                             compiler.node("IsNaN", [value])])])
        nan = compiler.constant(math.nan)
        graph.node.append(helper.make_node("Where", [finite, value, nan], [feature.name]))
    graph.node.extend(original)
    names = {f.name for f in derived}
    kept = [i for i in graph.input if i.name not in names]
    del graph.input[:]
    graph.input.extend(kept)

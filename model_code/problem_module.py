"""A problem's own Python module (``module: <file>.py`` in problem.yaml): estimators and derived
features that no declaration can express.

The control plane never runs it: the parameters of an estimator function are read from its source
(``signature``), so a pipeline definition, the offline plan and CI know the hyperparameters without
importing the data scientist's code or its libraries. Only the steps that build or load a model
(train, evaluate, serve, drift) import it, inside the image.

The module is imported under a name of its content, ``mlops_problem_<sha256 prefix>``: the fitted
model pickles its classes and functions by that name, two versions of one module never collide in
one process, and a model artifact carries the source (``to_dict``) so ``model_code/model.py`` can
install exactly that module before it unpickles the estimator. Installing runs the module's code:
the same trust as unpickling, i.e. only models from your own model bucket.
"""

from __future__ import annotations

import ast
import hashlib
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PARAM_TYPES = ("int", "float", "bool", "str")
"""The annotations an estimator function's keyword-only parameters may carry."""


class ModuleError(ValueError):
    """The module or a function it should define is unusable; the message says why."""


@dataclass(frozen=True)
class ProblemModule:
    file: str
    """The file's name in the problem folder (what problem.yaml's ``module`` names)."""
    source: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.source.encode("utf-8")).hexdigest()

    @property
    def name(self) -> str:
        """The import name: fitted models refer to the module's classes and functions by it."""
        return f"mlops_problem_{self.sha256[:16]}"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "sha256": self.sha256, "source": self.source}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProblemModule:
        module = cls(data["file"], data["source"])
        if data.get("sha256") not in (None, module.sha256):
            raise ModuleError(f"{module.file}: the source does not match its recorded sha256")
        return module


def read_module(folder: Path, file: str) -> ProblemModule:
    """The module ``file`` of the problem ``folder``, checked to parse (not run)."""
    path = folder / file
    if Path(file).name != file or not file.endswith(".py"):
        raise ModuleError(f"{file!r} must be the name of a .py file in the problem's folder")
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModuleError(f"{path} cannot be read: {exc}") from None
    try:
        ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        raise ModuleError(f"{file}: line {exc.lineno}: {exc.msg}") from None
    return ProblemModule(file, source)


@dataclass(frozen=True)
class FunctionParam:
    """One keyword-only parameter of an estimator function: ``*, name: type = default``."""

    name: str
    type: str
    default: Any


def _top_level_function(module: ProblemModule, function: str) -> ast.FunctionDef:
    for node in ast.parse(module.source).body:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            return node
    raise ModuleError(f"{module.file} defines no top-level function {function!r}")


def signature(module: ProblemModule, function: str) -> tuple[FunctionParam, ...]:
    """The parameters of estimator function ``function``, read from the source.

    The contract: ``def <function>(columns, seed, *, <param>: int|float|bool|str = <literal>, ...)``
    returning an unfitted scikit-learn estimator (model_code/estimators.py says what it gets)."""
    node = _top_level_function(module, function)
    where = f"{module.file}: {function}()"
    positional = [a.arg for a in (*node.args.posonlyargs, *node.args.args)]
    if len(positional) != 2 or node.args.vararg or node.args.kwarg or node.args.defaults:
        raise ModuleError(f"{where} must take exactly two positional parameters (columns, seed), then its "
                          f"hyperparameters keyword-only after '*'; it takes {positional}")
    params = []
    for arg, default in zip(node.args.kwonlyargs, node.args.kw_defaults, strict=True):
        kind = arg.annotation.id if isinstance(arg.annotation, ast.Name) else None
        if kind not in PARAM_TYPES:
            raise ModuleError(f"{where}: parameter {arg.arg!r} must be annotated with one of {list(PARAM_TYPES)}")
        if default is None:
            raise ModuleError(f"{where}: parameter {arg.arg!r} needs a default value")
        try:
            value = ast.literal_eval(default)
        except ValueError:
            raise ModuleError(f"{where}: the default of {arg.arg!r} must be a literal") from None
        ok = {"int": isinstance(value, int) and not isinstance(value, bool),
              "float": isinstance(value, int | float) and not isinstance(value, bool),
              "bool": isinstance(value, bool), "str": isinstance(value, str)}[kind]
        if not ok:
            raise ModuleError(f"{where}: the default of {arg.arg!r}, {value!r}, is not a {kind}")
        params.append(FunctionParam(arg.arg, kind, float(value) if kind == "float" else value))
    return tuple(params)


def check_derive_function(module: ProblemModule, function: str) -> None:
    """A derived feature's function takes one parameter: the feature frame (raw plus earlier derived)."""
    node = _top_level_function(module, function)
    if len([*node.args.posonlyargs, *node.args.args]) != 1 or node.args.kwonlyargs or node.args.vararg:
        raise ModuleError(f"{module.file}: {function}() must take exactly one parameter, the feature frame")


def install(module: ProblemModule) -> types.ModuleType:
    """Import the module under its content name (once per process) and return it."""
    loaded = sys.modules.get(module.name)
    if loaded is not None:
        return loaded
    loaded = types.ModuleType(module.name, f"the problem module {module.file}")
    loaded.__file__ = module.file
    sys.modules[module.name] = loaded  # before running it: its classes look their module up while defined
    try:
        exec(compile(module.source, module.file, "exec"), loaded.__dict__)  # noqa: S102 -- the point of the module
    except Exception as exc:
        del sys.modules[module.name]
        raise ModuleError(f"{module.file} fails on import: {type(exc).__name__}: {exc}") from exc
    return loaded


def function(module: ProblemModule, name: str) -> Callable[..., Any]:
    found = getattr(install(module), name, None)
    if not callable(found):
        raise ModuleError(f"{module.file} defines no function {name!r}")
    return found
